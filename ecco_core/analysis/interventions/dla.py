"""Direct logit attribution: each component's write into the residual stream, read out to one
token's logit through the final norm frozen at the run's own scale.

The residual stream entering the final norm is ``h = embeddings + sum_l (attn_l + mlp_l)``
(pre-norm blocks; whatever a block adds beyond its attention and MLP outputs is reported as
'other'). With the norm's scale ``s`` (and, for LayerNorm, its centring) frozen at ``h``, the
read-out ``logit = v . h + bias`` is linear, so every component gets ``v . x`` and the
contributions sum to the logit. ``v = multiplier * scale * C (g * P^T w_token) / s`` with ``g``
the norm's gain, ``C`` the centring (LayerNorm) or the identity (RMSNorm), ``P`` a projection
after the norm (OPT-350m) and ``w_token`` the token's unembedding row.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ...errors import ModelTypeError
from ...model.architecture import linear_read_out
from ...results.interventions import LogitAttribution
from ...run import OutputSeq
from .. import checks
from .sites import SiteHook, hooked, n_heads, out_projection, projection_weight, recorder, require_causal

UNIT = float(np.finfo(np.float32).eps) / 2
_EPS_NAMES = ("eps", "variance_epsilon", "epsilon", "layer_norm_eps")


def _norm_parts(
    norm: nn.Module | None, d: int, like: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, bool, float]:
    """(gain (d,), bias (d,), centres?, eps) of the final norm, probed on known inputs."""
    if norm is None:
        return torch.ones(d, dtype=torch.float64), torch.zeros(d, dtype=torch.float64), False, 0.0
    eps = next(
        (float(getattr(norm, n)) for n in _EPS_NAMES if isinstance(getattr(norm, n, None), float)), None
    )
    if eps is None or d % 2:
        raise ModelTypeError(
            f"Direct logit attribution cannot freeze this model's final norm ({type(norm).__name__})."
        )
    zeros = torch.zeros(1, d, dtype=like.dtype, device=like.device)
    ones = torch.ones_like(zeros)
    alternating = torch.tensor([1.0, -1.0] * (d // 2), dtype=like.dtype, device=like.device)[None]
    with torch.inference_mode():
        bias = norm(zeros)[0].double()
        centres = bool(torch.allclose(norm(ones)[0].double(), bias, atol=1e-6))
        gain = (norm(alternating)[0].double() - bias) * np.sqrt(1.0 + eps) / alternating[0].double()
    return gain.cpu(), bias.cpu(), centres, eps


def _read_direction(lm, token_id: int, h: torch.Tensor) -> tuple[torch.Tensor, float, bool]:
    """(v (d,), the constant term, whether the frozen map reproduced the norm) for ``h`` (d,)."""
    read_out = linear_read_out(lm.arch, normed=True)
    if read_out is None:
        raise ModelTypeError(
            f"Direct logit attribution needs a linear read-out; {lm.name}'s is not one (a masked-LM head)."
        )
    d = h.shape[-1]
    gain, bias, centres, eps = _norm_parts(read_out.norm, d, h)
    h64 = h.double().cpu()
    centred = h64 - h64.mean() if centres else h64
    scale = (
        torch.sqrt((centred**2).mean() + eps)
        if read_out.norm is not None
        else torch.tensor(1.0, dtype=torch.float64)
    )
    frozen = gain * centred / scale + bias  # (d,) the norm's output, rebuilt
    with torch.inference_mode():
        actual = read_out.norm(h[None])[0].double().cpu() if read_out.norm is not None else h64
    faithful = bool((frozen - actual).abs().max() <= 1e-4 * actual.abs().max() + 1e-6)
    # logit = multiplier * (w . (scale * (P norm(h) + p_bias)) + b), norm(h) = gain * C h / s + beta
    w = read_out.weight[token_id].double().cpu()  # (width,)
    factor = read_out.scale * read_out.multiplier
    bias_term = 0.0 if read_out.bias is None else float(read_out.bias[token_id]) * read_out.multiplier
    u = w * factor
    if read_out.projection is not None:
        p_bias = getattr(read_out.projection, "bias", None)
        if p_bias is not None:
            bias_term += float(u @ p_bias.double().cpu())
        u = read_out.projection.weight.double().cpu().T @ u  # (d,)
    bias_term += float(u @ bias)
    v = gain * u / scale
    if centres:
        v = v - v.mean()
    return v, bias_term, faithful


def direct_logit_attribution(
    seq: OutputSeq, position: int = -1, token: int | str | None = None, heads: bool = True
) -> LogitAttribution:
    """What the embeddings, each attention layer (and head) and each MLP wrote into the logit of
    the token at ``position`` (predicted from the state at ``position - 1``).

    Args:
        position: 1 .. n_tokens; -1 (or n_tokens) is the token after the text.
        token: the token to explain (id or one-token string); default the token at ``position``
            (after the text: the model's top prediction).
        heads: also split each attention layer into its heads.
    """
    lm = seq.require_lm()
    require_causal(lm, "Direct logit attribution")
    position = checks.predicted_position(seq, position)
    ids = torch.as_tensor(seq.token_ids[:position])[None]
    n_layers = lm.arch.n_layers
    store: dict = {}
    hooks = [SiteHook("resid", 0, recorder(store, ("resid", 0)))]
    hooks += [SiteHook("resid", n_layers, recorder(store, ("resid", n_layers)))]
    hooks += [SiteHook("attn", layer, recorder(store, ("attn", layer))) for layer in range(n_layers)]
    if lm.arch.ffn_sites:
        hooks += [SiteHook("mlp", layer, recorder(store, ("mlp", layer))) for layer in range(n_layers)]
    heads = heads and _has_heads(lm)
    if heads:
        hooks += [SiteHook("heads", layer, recorder(store, ("heads", layer))) for layer in range(n_layers)]
    with hooked(lm, hooks), torch.inference_mode():
        out = lm.model(input_ids=ids.to(lm.device), use_cache=False, **lm._no_logits)
    logits = out.logits[0, -1]
    token_id = (
        int(logits.argmax())
        if token is None and position == seq.n_tokens
        else int(seq.token_ids[position])
        if token is None
        else checks.one_token_id(lm.tokenizer, token, logits.shape[-1])
    )
    last = {key: value[0, -1].double().cpu() for key, value in store.items()}  # (d,) each
    h = store[("resid", n_layers)][0, -1]
    v, bias_term, faithful = _read_direction(lm, token_id, h)
    if not faithful:
        raise ModelTypeError(
            f"Direct logit attribution: {lm.name}'s final norm ({type(lm.arch.final_norm).__name__}) is "
            "not an RMSNorm or LayerNorm, so it cannot be frozen into a linear read-out."
        )
    labels, parts = ["embeddings"], [float(v @ last[("resid", 0)])]
    rest = last[("resid", n_layers)] - last[("resid", 0)]
    for layer in range(n_layers):
        for site in ("attn", "mlp"):
            if (site, layer) in last:
                labels.append(f"L{layer} {site}")
                parts.append(float(v @ last[(site, layer)]))
                rest = rest - last[(site, layer)]
    other = float(v @ rest)
    note = "Contributions through the final norm frozen at this run's scale; they sum to the logit."
    if abs(other) > 1e-6 * max(1.0, max(map(abs, parts))) or not lm.arch.ffn_sites:
        labels.append("other")
        parts.append(other)
        note += " 'other': what the blocks add besides their attention and MLP outputs."
    labels.append("bias")
    parts.append(bias_term)
    head_grid = _head_contributions(lm, store, v) if heads else None
    read_out = linear_read_out(lm.arch, normed=True)
    if read_out.softcap is not None:
        logit = float(v @ last[("resid", n_layers)]) + bias_term
        note += (
            f" This model soft-caps its logits at {read_out.softcap}: the sum is the logit before the cap."
        )
    else:
        logit = float(logits[token_id])
    return LogitAttribution(
        labels=labels,
        contributions=np.asarray(parts, dtype=np.float64),
        head_contributions=head_grid,
        logit=logit,
        token=lm.tokenizer.decode([token_id]),
        position=position,
        tolerance=_tolerance(v, store, n_layers, logit),
        note=note,
    )


def _has_heads(lm) -> bool:
    try:
        out_projection(lm, 0)
    except ModelTypeError:
        return False
    return True


def _head_contributions(lm, store: dict, v: torch.Tensor) -> np.ndarray | None:
    """(layer, head) each head's share: v . (W_O[:, head] z_head) at the last position (the head's
    write in float32, as the model computes it; the dot with ``v`` in float64)."""
    heads = n_heads(lm)
    rows = []
    for layer in range(lm.arch.n_layers):
        z = store[("heads", layer)][0, -1]  # (head * head_dim,)
        weight = projection_weight(out_projection(lm, layer))  # (d, head * head_dim)
        writes = torch.einsum("dhk,hk->hd", weight.reshape(weight.shape[0], heads, -1), z.reshape(heads, -1))
        rows.append(writes.double().cpu() @ v)  # (head,)
    return torch.stack(rows).numpy()


def _tolerance(v: torch.Tensor, store: dict, n_layers: int, logit: float) -> float:
    """How far float32 may put the sum of contributions from the model's logit.

    The model's own logit is a float32 dot product of ``d`` terms (within ``2 sqrt(d) u sum|v h|``)
    after a float32 norm (a few ``u`` of ``|logit|``); the residual stream itself is a float32
    running sum of ``2 n_layers + 1`` writes, each rounding by ``u`` of the running state, which
    ``v`` reads as at most ``(2 n_layers + 1) u sum_i |v_i| max_l |h_l,i|``.
    """
    h = store[("resid", n_layers)][0, -1].double().cpu()
    states = [store[("resid", 0)][0, -1].double().cpu().abs(), h.abs()]
    peak = torch.stack(states).max(0).values
    d = h.shape[0]
    dot = 2 * np.sqrt(d) * UNIT * float((v * h).abs().sum())
    depth = 2 * (2 * n_layers + 1) * UNIT * float((v.abs() * peak).sum())
    return dot + depth + 8 * UNIT * abs(logit)
