"""Input saliency: how much each earlier token drove each generated token.

Every method has one signature, ``method(ctx) -> MethodScores``: ``ctx`` holds the sequence's
embeddings, the positions to explain, their token ids, an optional foil and the target
function; the result holds a (n_targets, pos) score per earlier token. Gradient methods share
one gradient computation per context (``backends``). Parameters never get gradients (the model
keeps them ``requires_grad=False``).

Encoder-decoders (T5, BART): ``embeds`` is the encoder's embeddings followed by the decoder's
(the layout of ``seq.tokens``); each forward splits it at ``n_encoder`` into ``inputs_embeds``
and ``decoder_inputs_embeds``, so scores cover the whole prompt and the decoder tokens before
each target. Gradient methods and integrated gradients apply; erasure and attention do not.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

from ...errors import InputError, ModelTypeError
from ...results.attribution import Saliency
from ...run import OutputSeq
from .. import checks
from ..attention import rollout_matrices
from .adaptive import adaptive_integrated_gradients
from .backends import objective_gradients
from .context import AttributionContext, MethodScores, build_context, report
from .gradients import head_pass
from .quadrature import _rule, quadrature

if TYPE_CHECKING:
    from ...model.lm import Progress

ERASURE_BATCH = 16
"""Leave-one-out sequences per forward."""
DEFAULTS = ("prob", None, 16, "zero", "auto", None, "auto")
"""(target, foil, n_steps, baseline, quadrature, positions, backend) of ``compute_attributions``."""


# ----- the shared context and what a method returns ----------------------------------------------


# ----- the result ----------------------------------------------------------------------------------


# ----- gradients: one forward per chunk of targets, one batched backward ----------------------------


def _plain_gradients(ctx: AttributionContext) -> torch.Tensor:
    """(n_targets, pos, d_model) gradients at the real input (memoised across methods)."""
    if "grads" not in ctx.memo:
        values, grads = objective_gradients(ctx, ctx.embeds[None])
        ctx.memo["grads"], ctx.memo["target_values"] = grads, values[0]
    return ctx.memo["grads"]


def target_values(ctx: AttributionContext) -> torch.Tensor:
    """(n_targets,) the target function at the real input."""
    if "target_values" not in ctx.memo:
        ctx.memo["target_values"] = _objective_values(ctx, ctx.embeds[None])[0]
    return ctx.memo["target_values"]


def _objective_values(ctx: AttributionContext, embeds: torch.Tensor) -> torch.Tensor:
    """(batch, n_targets) the target function for inputs (batch, pos, d_model), no gradients."""
    with torch.no_grad():
        return ctx.objective(head_pass(ctx, embeds, ctx.positions - 1).logits, slice(None))


def share_before(scores: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """(n_targets, pos) non-negative scores normalised to sum to 1 over the tokens before each target."""
    before = torch.arange(scores.shape[1], device=scores.device)[None] < positions[:, None]
    scores = scores * before
    total = scores.sum(-1, keepdim=True)
    return torch.where(total > 0, scores / total.clamp_min(1e-30), torch.zeros_like(scores))


# ----- the methods (one signature) -----------------------------------------------------------------
def gradient(ctx: AttributionContext) -> MethodScores:
    """Saliency: L2 norm over embedding dims of the gradient, normalised per target."""
    grads = _plain_gradients(ctx)  # (n_t, pos, d)
    return MethodScores(share_before(grads.norm(dim=-1), ctx.positions))


def grad_x_input(ctx: AttributionContext) -> MethodScores:
    """ecco's default: L2 norm over embedding dims of gradient x input, normalised per target."""
    product = _plain_gradients(ctx) * ctx.embeds.float()[None]  # (n_t, pos, d)
    return MethodScores(share_before(product.norm(dim=-1), ctx.positions), signed=product.sum(-1))


def baseline_embeds(ctx: AttributionContext) -> torch.Tensor:
    """(pos, d_model) the IG baseline: zeros, or the pad (else EOS) token's embedding everywhere."""
    if ctx.baseline == "zero":
        return torch.zeros_like(ctx.embeds)
    tok = ctx.lm.tokenizer
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    if pad is None:
        raise InputError("This tokenizer has no pad or end-of-text token: use baseline='zero'.")
    with torch.no_grad():
        row = ctx.lm.model.get_input_embeddings()(torch.tensor([pad], device=ctx.embeds.device))
    return row.expand_as(ctx.embeds).clone()


def integrated_gradients(ctx: AttributionContext) -> MethodScores:
    """Integrated gradients along the straight path from the baseline; steps batched.

    ``signed`` sums to f(x) - f(baseline) per target (completeness) up to the quadrature error.
    """
    x, x0 = ctx.embeds.float(), baseline_embeds(ctx).float()

    def path(alphas: np.ndarray) -> torch.Tensor:  # (steps, pos, d)
        a = torch.tensor(alphas, device=x.device, dtype=torch.float32)
        return (x0[None] + a[:, None, None] * (x - x0)[None]).to(ctx.embeds.dtype)

    if _rule(ctx) == "adaptive":  # each target on its own points, to its own error (``adaptive``)
        adaptive = adaptive_integrated_gradients(ctx, x, x0, _objective_values)
        attribution, ends = adaptive.attribution, adaptive.ends  # (n_t, pos, d), (2, n_t)
        ctx.memo["backend"] = "autograd"
        ctx.memo["evaluations"] = np.array([rule.evaluations for rule in adaptive.rules])
    else:
        points = quadrature(ctx.n_steps, _rule(ctx), ctx.baseline)
        weights = torch.tensor(points[1], device=x.device, dtype=torch.float32)
        _, grads = objective_gradients(ctx, path(points[0]), weights)
        attribution = grads * (x - x0)[None]  # (n_t, pos, d)
        ends = _objective_values(ctx, torch.stack([x, x0]).to(ctx.embeds.dtype))  # (2, n_t)
    ctx.memo.setdefault("target_values", ends[0])
    return MethodScores(
        share_before(attribution.norm(dim=-1), ctx.positions),
        signed=attribution.sum(-1),
        baseline_values=ends[1],
    )


def erasure(ctx: AttributionContext) -> MethodScores:
    """Leave one token out: the drop in the target when token j is removed (exact, no gradients)."""
    last = int(ctx.positions.max())
    n_t = len(ctx.positions)
    full = target_values(ctx)  # (n_t,)
    drops = torch.zeros(n_t, len(ctx.token_ids), device=full.device)
    removable = list(range(last))
    # Without token j, the target at t (> j) sits at t - 1 and is read from the logits at t - 2.
    rows = (ctx.positions - 2).clamp_min(0)
    with torch.no_grad():
        for start in range(0, len(removable), ERASURE_BATCH):
            js = removable[start : start + ERASURE_BATCH]
            kept = [torch.cat([ctx.token_ids[:j], ctx.token_ids[j + 1 : last]]) for j in js]
            ids = torch.stack(kept)  # (batch, last - 1)
            if ids.shape[1] == 0:
                continue
            logits = ctx.lm.model(input_ids=ids, use_cache=False, logits_to_keep=rows).logits
            erased = ctx.objective(logits, slice(None))  # (batch, n_t)
            for b, j in enumerate(js):
                valid = (ctx.positions > j) & (ctx.positions >= 2)
                drops[valid, j] = (full - erased[b])[valid]
            report(ctx, (start + len(js)) / len(removable))
    return MethodScores(drops, signed=drops, unit=f"drop in the target ({_target_unit(ctx.target)})")


def _attention_rows(ctx: AttributionContext, weights: np.ndarray) -> MethodScores:
    rows = torch.as_tensor(weights[(ctx.positions - 1).cpu().numpy()])  # (n_t, pos)
    before = torch.arange(rows.shape[1])[None] < ctx.positions.cpu()[:, None]
    return MethodScores(rows * before, unit="attention weight")


def attention(ctx: AttributionContext) -> MethodScores:
    """Last layer's attention from the position that predicts each target, mean over heads."""
    return _attention_rows(ctx, _attention_weights(ctx)[-1].mean(0))  # (pos, pos)


def attention_rollout(ctx: AttributionContext) -> MethodScores:
    """Attention rollout (Abnar & Zuidema 2020) through every layer (``attention.rollout_matrices``)."""
    rollout = rollout_matrices(_attention_weights(ctx).mean(1))[-1]  # (pos, pos)
    return _attention_rows(ctx, rollout.astype(np.float32))


def _attention_weights(ctx: AttributionContext) -> np.ndarray:
    if ctx.attentions is None:
        raise ModelTypeError("Attention weights are not available for this run.")
    return ctx.attentions()


METHODS: dict[str, Callable[[AttributionContext], MethodScores]] = {
    "grad_x_input": grad_x_input,
    "gradient": gradient,
    "integrated_gradients": integrated_gradients,
    "erasure": erasure,
    "attention": attention,
    "attention_rollout": attention_rollout,
}
ENC_DEC_METHODS = ("grad_x_input", "gradient", "integrated_gradients")
"""The gradient methods: over encoder + decoder inputs too (erasure and attention read one
causal stack)."""
ALIASES = {"saliency": "gradient", "ig": "integrated_gradients", "attention_last": "attention"}
LABELS = {
    "grad_x_input": "Gradient × input",
    "gradient": "Gradient (saliency)",
    "integrated_gradients": "Integrated gradients",
    "erasure": "Erasure (leave one out)",
    "attention": "Attention (last layer)",
    "attention_rollout": "Attention rollout",
}


def method_name(attr_method: str) -> str:
    """The canonical method name (ecco's aliases accepted)."""
    name = ALIASES.get(attr_method, attr_method) if isinstance(attr_method, str) else None
    if name not in METHODS:
        raise InputError(
            f"Unknown attribution method {attr_method!r}. Pick one of: {', '.join(METHODS)} "
            f"(aliases: {', '.join(ALIASES)})."
        )
    return name


def _target_unit(target: str) -> str:
    return {"prob": "probability", "logit": "logit", "contrast": "logit difference"}.get(
        target, "probability difference"
    )


# ----- building the context and the public entry points ---------------------------------------------


def run_method(ctx: AttributionContext, attr_method: str, seq: OutputSeq) -> Saliency:
    """Run one method on a built context (holding the model's lock) and package the result."""
    name = method_name(attr_method)
    if ctx.n_encoder and name not in ENC_DEC_METHODS:
        raise ModelTypeError(
            f"{LABELS[name]} is not available on encoder-decoders; pick one of: "
            f"{', '.join(LABELS[m] for m in ENC_DEC_METHODS)}."
        )
    with ctx.lm.lock:
        scores = METHODS[name](ctx)
        values = target_values(ctx)
    foil = None if ctx.foil_ids is None else int(ctx.foil_ids[0])
    is_ig = name == "integrated_gradients"
    return Saliency(
        method=name,
        target=ctx.target,
        tokens=list(seq.tokens),
        token_ids=np.asarray(seq.token_ids),
        n_input_tokens=seq.n_input_tokens,
        positions=ctx.positions.cpu().numpy(),
        values=scores.values.detach().float().cpu().numpy(),
        target_values=values.detach().float().cpu().numpy(),
        unit=scores.unit,
        signed=None if scores.signed is None else scores.signed.detach().float().cpu().numpy(),
        baseline_values=None
        if scores.baseline_values is None
        else scores.baseline_values.detach().float().cpu().numpy(),
        foil=None if foil is None else ctx.lm.tokenizer.decode([foil]),
        foil_id=foil,
        n_steps=ctx.n_steps if is_ig else None,
        baseline=ctx.baseline if is_ig else None,
        quadrature=_rule(ctx) if is_ig else None,
        backend=ctx.memo.get("backend") if name in ENC_DEC_METHODS else None,
        evaluations=ctx.memo.get("evaluations") if is_ig else None,
    )


def saliency(
    seq: OutputSeq,
    attr_method: str = "grad_x_input",
    style: str = "minimal",
    target: str = "prob",
    foil: int | str | None = None,
    n_steps: int = 16,
    baseline: str = "zero",
    quadrature: str = "auto",
    positions: Sequence[int] | None = None,
    progress: Progress | None = None,
    backend: str = "auto",
) -> Saliency:
    """Input saliency of each generated token (or of ``positions``) over the tokens before it.

    Args:
        attr_method: one of ``METHODS`` (or ecco's aliases 'ig', 'saliency').
        style: 'minimal' or 'detailed' (kept on the result for the views).
        target: 'prob' (ecco), 'logit', 'contrast' (logit of the token minus the foil's) or
            'contrast_prob' (the same in probabilities).
        foil: the token to contrast with, as an id or a one-token string.
        n_steps: integrated-gradients path points.
        baseline: integrated-gradients baseline, 'zero' or 'pad' (the pad token everywhere).
        quadrature: 'auto' (graded from a zero baseline, else gauss), 'adaptive' (a
            forward-only scan of the path places Gauss panels where the target changes),
            'gauss' (Gauss-Legendre), 'graded' (panels graded towards 0) or 'left' (left Riemann).
        positions: positions to explain (default: every generated token).
        backend: 'auto' (the hand-written backward where it applies) or 'autograd'; the result
            records which one ran (``Saliency.backend``).

    Raises:
        InputError, TokenError, PositionError, ModelTypeError.
    """
    checks.views.saliency(attr_method, style, target, foil, n_steps, baseline, quadrature, progress, backend)
    name = method_name(attr_method)
    stored = seq.attribution.get(name)
    defaults = (target, foil, n_steps, baseline, quadrature, positions, backend) == DEFAULTS
    if isinstance(stored, Saliency) and defaults:
        return stored
    ctx = build_context(seq, positions, target, foil, n_steps, baseline, quadrature, progress, backend)
    result = run_method(ctx, name, seq)
    result.style = style
    return result


def compute_attributions(
    seq: OutputSeq, methods: Sequence[str], progress: Progress | None = None
) -> dict[str, Saliency]:
    """Compute ``methods`` with default settings into ``seq.attribution`` (gradients shared)."""
    names = [method_name(m) for m in checks.calls.attribution_names(methods, "methods")]
    checks.values.optional_callable("progress", progress)
    ctx = build_context(seq, progress=progress)
    for name in names:
        seq.attribution[name] = run_method(ctx, name, seq)
    return seq.attribution
