"""Input gradients of many targets through a Llama-family decoder, by a hand-written backward.

The autograd backend (``gradients``) backpropagates every target through the whole sequence:
target ``i`` at position ``p_i`` costs ``max(p) + 1`` rows in every matmul, although its gradient
is zero after row ``p_i - 1`` (the model is causal). Here the backward runs on *packed* rows,
only the ``(target, row)`` pairs with ``row < p_i``, and fuses the element-wise steps of RMSNorm,
SwiGLU and RoPE into a few tensor operations.

Applies to decoders built as Llama is (pre-norm RMSNorm, rotary attention with grouped KV
heads, SiLU-gated MLP, no embedding scale): Llama, Mistral, Qwen2, in float32. ``make_plan``
(run once per model by ``backends.HandWrittenBackend``) checks the hand-written forward against
the model's logits and its backward against a float64 reference on a short sequence, within
what float32 may lose over the model's depth (``float32_tolerance``); a model that does not
match keeps the autograd backend, with a WARNING that gives the measured errors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from .targets import CAST_BLOCK, Target, padded_matmul, unembedding_vjp

if TYPE_CHECKING:
    from ...model.lm import LanguageModel


FAMILIES = ("llama", "mistral", "qwen2")
DENSE_ATTENTION_ROWS = 128
"""Up to this many rows the attention backward is dense and batched over targets; beyond it,
PyTorch's fused kernel (whose cost grows more slowly with the rows) runs once per target."""
ATTENTION_FLOATS = 1 << 24
"""Bound on (targets x heads x rows x rows) floats per attention-backward step (64 MB)."""
BACKEND = "hand-written"
"""What an attribution computed here records as its ``backend`` (the other: "autograd")."""


@dataclass(eq=False)
class LlamaPlan:
    """The parts of one model the hand-written passes read."""

    layers: list
    n_heads: int
    n_kv_heads: int
    head_dim: int
    rotary: torch.nn.Module
    """The model's own rotary embedding: ``rotary(x, position_ids) -> (cos, sin)``."""
    lm: LanguageModel
    window: int | None = None


@dataclass(eq=False)
class _Saved:
    """What one layer's backward needs from the forward (rows = positions)."""

    x_in: torch.Tensor  # (L, d) normalised layer input (x * rms), before the norm weight
    r_in: torch.Tensor  # (L, 1) 1 / rms of the layer input
    q: torch.Tensor  # (H, L, D) queries after RoPE
    k: torch.Tensor  # (Hkv, L, D) keys after RoPE
    v: torch.Tensor  # (Hkv, L, D)
    x_mid: torch.Tensor  # (L, d) normalised residual after attention
    r_mid: torch.Tensor  # (L, 1)
    silu_gate: torch.Tensor  # (L, F) silu(gate)
    up_dsilu: torch.Tensor  # (L, F) up * silu'(gate)


def structure(lm: LanguageModel) -> LlamaPlan | None:
    """The parts the hand-written passes read, or None where the model is not built as Llama is
    (not yet checked against the model: ``plan_for`` does that)."""
    config = lm.model.config
    family = getattr(config, "model_type", "")
    if family not in FAMILIES or lm.model_type != "causal" or lm.dtype != torch.float32:
        return None
    if getattr(config, "hidden_act", "silu") != "silu" or getattr(config, "pretraining_tp", 1) > 1:
        return None
    rope = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {}
    if rope.get("rope_type", rope.get("type", "default")) != "default":
        return None  # scaled RoPE may depend on the length: the short self-check would not see it
    rotary = getattr(getattr(lm.model, "model", None), "rotary_emb", None)
    arch = lm.arch
    plain_read_out = arch.mlm_head is None and arch.logit_scale == 1.0 and arch.logit_bias is None
    plain_read_out = plain_read_out and arch.logit_multiplier == 1.0 and arch.logit_softcap is None
    if rotary is None or not plain_read_out or not isinstance(arch.unembedding, torch.nn.Linear):
        return None
    if getattr(arch.final_norm, "weight", None) is None or arch.unembedding.bias is not None:
        return None
    n_heads = config.num_attention_heads
    return LlamaPlan(
        layers=list(lm.arch.blocks),
        n_heads=n_heads,
        n_kv_heads=getattr(config, "num_key_value_heads", None) or n_heads,
        head_dim=getattr(config, "head_dim", None) or config.hidden_size // n_heads,
        rotary=rotary,
        lm=lm,
        window=getattr(config, "sliding_window", None),
    )


# ----- forward -------------------------------------------------------------------------------------
def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """(..., D) the RoPE rotation's partner: (-x2, x1) of the two halves (as the model computes)."""
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def _rope(plan: LlamaPlan, n: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(L, D) float32 cos and sin of positions 0 .. n - 1, from the model's rotary embedding."""
    cos, sin = plan.rotary(torch.empty(0, device=device), torch.arange(n, device=device)[None])
    return cos[0], sin[0]


def _rotate_half_transposed(x: torch.Tensor) -> torch.Tensor:
    """The transpose of ``rotate_half`` (what its backward applies)."""
    half = x.shape[-1] // 2
    return torch.cat((x[..., half:], -x[..., :half]), dim=-1)


def _norm(x: torch.Tensor, norm: torch.nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """(x * r, r) for an RMSNorm (r = 1 / rms)."""
    eps = getattr(norm, "variance_epsilon", getattr(norm, "eps", 1e-6))
    r = torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)
    return x * r, r


def _attention_probs(q: torch.Tensor, k: torch.Tensor, groups: int) -> torch.Tensor:
    """(H, L, L) causal softmax of q (H, L, D) against k (Hkv, L, D)."""
    n = q.shape[1]
    scores = q @ k.repeat_interleave(groups, 0).transpose(1, 2) / math.sqrt(q.shape[-1])
    causal = torch.ones(n, n, dtype=torch.bool, device=q.device).triu(1)
    return scores.masked_fill(causal, float("-inf")).softmax(-1)


def _linear(module: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``module(x)`` in the dtype of ``x`` (float64 for the self-check's reference)."""
    if x.dtype == module.weight.dtype:
        return module(x)
    bias = None if module.bias is None else module.bias.to(x.dtype)
    return torch.nn.functional.linear(x, module.weight.to(x.dtype), bias)


def rope_tables(plan: LlamaPlan, n: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(L, D) cos and sin of positions 0 .. n - 1 in the dtype of ``like``."""
    cos, sin = _rope(plan, n, like.device)
    return cos.to(like.dtype), sin.to(like.dtype)


def block_forward(plan: LlamaPlan, block, h: torch.Tensor, cos, sin) -> tuple[torch.Tensor, _Saved]:
    """One decoder block on the residual stream ``h`` (L, d), in its dtype: the new stream and
    what the block's backward needs."""
    n, groups = h.shape[0], plan.n_heads // plan.n_kv_heads
    attn, mlp = block.self_attn, block.mlp
    x_in, r_in = _norm(h, block.input_layernorm)
    x = block.input_layernorm.weight.to(h.dtype) * x_in
    q = _linear(attn.q_proj, x).view(n, plan.n_heads, plan.head_dim).transpose(0, 1)
    k = _linear(attn.k_proj, x).view(n, plan.n_kv_heads, plan.head_dim).transpose(0, 1)
    v = _linear(attn.v_proj, x).view(n, plan.n_kv_heads, plan.head_dim).transpose(0, 1)
    q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
    probs = _attention_probs(q, k, groups)
    mixed = probs @ v.repeat_interleave(groups, 0)  # (H, L, D)
    h = h + _linear(attn.o_proj, mixed.transpose(0, 1).reshape(n, -1))
    x_mid, r_mid = _norm(h, block.post_attention_layernorm)
    x = block.post_attention_layernorm.weight.to(h.dtype) * x_mid
    gate, up = _linear(mlp.gate_proj, x), _linear(mlp.up_proj, x)
    sig = torch.sigmoid(gate)
    silu = gate * sig
    h = h + _linear(mlp.down_proj, silu * up)
    return h, _Saved(x_in, r_in, q, k, v, x_mid, r_mid, silu, up * sig * (1 + gate * (1 - sig)))


def forward(plan: LlamaPlan, embeds: torch.Tensor) -> tuple[torch.Tensor, list[_Saved]]:
    """The residual stream after the last block, (L, d), and what each layer's backward needs
    (computed in the dtype of ``embeds``)."""
    cos, sin = rope_tables(plan, embeds.shape[0], embeds)
    h, saved = embeds, []
    for block in plan.layers:
        h, block_saved = block_forward(plan, block, h, cos, sin)
        saved.append(block_saved)
    return h, saved


# ----- backward on packed rows ---------------------------------------------------------------------
def _add_norm_backward(out: torch.Tensor, g: torch.Tensor, weight, x_normed, r) -> None:
    """``out += d input`` of y = weight * x * r, for packed rows (x_normed, r gathered per row);
    ``g`` (a temporary) is overwritten."""
    t = g.mul_(weight)
    t.addcmul_(x_normed, (t * x_normed).mean(-1, keepdim=True), value=-1)
    out.addcmul_(t, r)


def backward(
    plan: LlamaPlan, saved: list[_Saved], seeds: torch.Tensor, positions: torch.Tensor
) -> torch.Tensor:
    """Gradients w.r.t. the embeddings of ``n`` targets.

    Args:
        seeds: (n, d) d target / d last residual at each target's row (``positions - 1``).
        positions: (n,) target positions; target ``i`` reads rows ``0 .. positions[i] - 1``.

    Returns:
        (n, max(positions), d) gradients (zero at and after each target's position).
    """
    n, length = len(positions), int(positions.max())
    device = seeds.device
    seed_of = torch.repeat_interleave(torch.arange(n, device=device), positions)
    row_of = torch.cat([torch.arange(int(p), device=device) for p in positions])
    last = torch.cumsum(positions, 0) - 1  # packed index of each target's own row
    ends = (last + 1).tolist()
    spans = [(end - int(p), end, int(p)) for end, p in zip(ends, positions.tolist(), strict=True)]
    g = torch.zeros(len(row_of), seeds.shape[1], device=device, dtype=seeds.dtype)
    g[last] = seeds
    cos, sin = _rope(plan, length, device)
    cos_rows, sin_rows = cos[row_of][:, None], sin[row_of][:, None]  # (R, 1, D)
    for block, s in zip(reversed(plan.layers), reversed(saved), strict=True):
        mlp, attn = block.mlp, block.self_attn
        # MLP: h += down(silu(gate(x)) * up(x)), x = w * norm(h)
        g_hidden = g @ mlp.down_proj.weight  # (R, F)
        gated = torch.empty_like(g_hidden)
        for start, stop, n_rows in spans:  # target i's rows are positions 0 .. p_i - 1: no gather
            torch.mul(g_hidden[start:stop], s.up_dsilu[:n_rows], out=gated[start:stop])
        g_x = gated @ mlp.gate_proj.weight
        for start, stop, n_rows in spans:
            g_hidden[start:stop].mul_(s.silu_gate[:n_rows])
        g_x.addmm_(g_hidden, mlp.up_proj.weight)
        _add_norm_backward(g, g_x, block.post_attention_layernorm.weight, s.x_mid[row_of], s.r_mid[row_of])
        # attention: h += o(softmax(q k^T) v), on (target, head, row, row) blocks
        g_mixed = g @ attn.o_proj.weight  # (R, H * D)
        g_q, g_k, g_v = _attention_backward(plan, s, g_mixed, seed_of, row_of, n, length)
        g_q = g_q * cos_rows + _rotate_half_transposed(g_q * sin_rows)
        g_k = g_k * cos_rows + _rotate_half_transposed(g_k * sin_rows)
        g_x = g_q.flatten(1) @ attn.q_proj.weight
        g_x.addmm_(g_k.flatten(1), attn.k_proj.weight)
        g_x.addmm_(g_v.flatten(1), attn.v_proj.weight)
        _add_norm_backward(g, g_x, block.input_layernorm.weight, s.x_in[row_of], s.r_in[row_of])
    out = torch.zeros(n, length, seeds.shape[1], device=device, dtype=seeds.dtype)
    out[seed_of, row_of] = g
    return out


def _attention_backward(plan, s: _Saved, g_mixed, seed_of, row_of, n: int, length: int):
    """Packed (R, H, D) d queries (after RoPE), (R, Hkv, D) d keys (after RoPE) and d values."""
    heads, kv, d = plan.n_heads, plan.n_kv_heads, plan.head_dim
    groups = heads // kv
    q, k, v = s.q[:, :length], s.k[:, :length], s.v[:, :length]
    k_all, v_all = k.repeat_interleave(groups, 0), v.repeat_interleave(groups, 0)  # (H, L, D)
    padded = torch.zeros(n, length, heads, d, device=g_mixed.device, dtype=g_mixed.dtype)
    padded[seed_of, row_of] = g_mixed.view(-1, heads, d)
    padded = padded.transpose(1, 2)  # (n, H, L, D)
    out_q, out_k, out_v = (torch.empty_like(padded) for _ in range(3))
    if length <= DENSE_ATTENTION_ROWS:
        _dense_attention_backward(q, k_all, v_all, padded, out_q, out_k, out_v)
    else:
        _fused_attention_backward(q, k_all, v_all, padded, out_q, out_k, out_v)
    out_k = out_k.view(n, kv, groups, length, d).sum(2)  # grouped heads share keys and values
    out_v = out_v.view(n, kv, groups, length, d).sum(2)
    pick = (seed_of, slice(None), row_of)
    return out_q[pick], out_k[pick], out_v[pick]  # (R, H, D), (R, Hkv, D), (R, Hkv, D)


def _dense_attention_backward(q, k, v, padded, out_q, out_k, out_v) -> None:
    """Short texts: the (target, head, row, row) softmax backward as a few batched matmuls."""
    n, heads, length, d = padded.shape
    probs = _attention_probs(q, k, 1)  # (H, L, L)
    scale = 1.0 / math.sqrt(d)
    step = max(1, ATTENTION_FLOATS // (heads * length * length))
    for start in range(0, n, step):
        go = padded[start : start + step]  # (m, H, L, D)
        g_probs = go @ v.transpose(1, 2)  # (m, H, L, L)
        g_scores = probs * (g_probs - (g_probs * probs).sum(-1, keepdim=True)) * scale
        out_q[start : start + step] = g_scores @ k
        out_k[start : start + step] = g_scores.transpose(2, 3) @ q
        out_v[start : start + step] = probs.transpose(1, 2) @ go


def _fused_attention_backward(q, k, v, padded, out_q, out_k, out_v) -> None:
    """Long texts: PyTorch's fused (flash) attention backward once per target, which never holds
    a (row, row) matrix; the dense form's element-wise passes over n x H x L x L floats cost
    more than the matmuls beyond a few hundred rows."""
    with torch.enable_grad():
        leaves = [t.detach().requires_grad_(True) for t in (q, k, v)]
        out = torch.nn.functional.scaled_dot_product_attention(*(t[None] for t in leaves), is_causal=True)[0]
        for i in range(padded.shape[0]):
            grads = torch.autograd.grad(out, leaves, padded[i], retain_graph=i + 1 < padded.shape[0])
            out_q[i], out_k[i], out_v[i] = grads


# ----- one call for attribution --------------------------------------------------------------------
def objective_gradients(
    plan: LlamaPlan, embeds: torch.Tensor, positions: torch.Tensor, target: Target
) -> tuple[torch.Tensor, torch.Tensor]:
    """Target values (n,) and gradients (n, L, d) w.r.t. ``embeds`` (L, d) of one sequence, for
    the targets at ``positions`` (read from the logits at rows ``positions - 1``)."""
    _, values, grads = logits_values_gradients(plan, embeds, positions, target)
    return values, grads


def read_out(plan: LlamaPlan, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(n, d) final-normed rows (in the graph) and their (n, vocab) logits, in the rows' dtype."""
    norm, unembedding = plan.lm.arch.final_norm, plan.lm.arch.unembedding
    normed_rows, r = _norm(rows, norm)
    normed = norm.weight.to(rows.dtype) * normed_rows
    weight = unembedding.weight
    with torch.no_grad():
        if weight.dtype == rows.dtype:
            logits = padded_matmul(normed, weight.T)
        else:  # the reference: cast the unembedding block by block
            logits = torch.cat(
                [
                    normed @ weight[s : s + CAST_BLOCK].to(rows.dtype).T
                    for s in range(0, len(weight), CAST_BLOCK)
                ],
                dim=-1,
            )
    return normed, logits


def logits_values_gradients(plan: LlamaPlan, embeds, positions, target: Target):
    """(n, vocab) logits at the target rows, (n,) target values and (n, L, d) gradients."""
    with torch.no_grad():
        hidden, saved = forward(plan, embeds[: int(positions.max())])
    with torch.enable_grad():
        rows = hidden[positions - 1].detach().requires_grad_(True)  # (n, d)
        normed, logits = read_out(plan, rows)
        values, g_logits = target.values_and_gradients(logits)  # (n,), (n, vocab)
        g_normed = unembedding_vjp(plan.lm.arch.unembedding, g_logits.to(rows.dtype))  # (n, d)
        (seeds,) = torch.autograd.grad(normed, rows, g_normed)
    with torch.no_grad():
        grads = backward(plan, saved, seeds, positions)
    full = torch.zeros(len(positions), *embeds.shape, device=embeds.device, dtype=embeds.dtype)
    full[:, : grads.shape[1]] = grads
    return logits, values.detach(), full


# ----- the self-check ------------------------------------------------------------------------------
