"""Input saliency: how much each earlier token drove each generated token.

Every method has one signature, ``method(ctx) -> MethodScores``: ``ctx`` holds the sequence's
embeddings, the positions to explain, their token ids, an optional foil and the target
function; the result holds a (n_targets, pos) score per earlier token. Gradient methods share
one forward over ``inputs_embeds`` per chunk of targets (truncated to the last position the
chunk reads) and one batched backward (``is_grads_batched``) from the unembedding's input.
Parameters never get gradients (the LM keeps them ``requires_grad=False``).

Encoder-decoders (T5, BART): ``embeds`` is the encoder's embeddings followed by the decoder's
(the layout of ``seq.tokens``); each forward splits it at ``n_encoder`` into ``inputs_embeds``
and ``decoder_inputs_embeds``, so scores cover the whole prompt and the decoder tokens before
each target. Gradient methods and integrated gradients apply; erasure and attention do not.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch

from . import fast_grad
from .errors import InputError, ModelTypeError, PositionError, TokenError
from .targets import TARGETS, Target, unembedding_vjp

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from .lm import LM, Progress
    from .output import OutputSeq

BASELINES = ("zero", "pad")
QUADRATURES = ("auto", "adaptive", "gauss", "graded", "left")
SCAN_INTERVALS = 8
"""Equal path intervals the adaptive rule scans with forward passes only (no gradients)."""
SCAN_FLOOR = 0.02
"""Share of the nodes every scanned interval is owed on top of its share of the change."""
ROWS_PER_BACKWARD = 64
"""Targets x path points per batched backward (bounds memory; larger chunks are no faster)."""
ERASURE_BATCH = 16
"""Leave-one-out sequences per forward."""
DEFAULTS = ("prob", None, 16, "zero", "auto", None)
"""(target, foil, n_steps, baseline, quadrature, positions) that ``compute_attributions`` uses."""


# ----- the shared context and what a method returns ----------------------------------------------
@dataclass(eq=False)
class AttributionContext:
    """Everything a method needs; built once per ``saliency`` call (and shared by its methods)."""

    lm: LM
    embeds: torch.Tensor
    """(pos, d_model) input embeddings of the sequence (detached, on the model's device)."""
    token_ids: torch.Tensor
    """(pos,) token ids on the model's device."""
    positions: torch.Tensor
    """(n_targets,) positions of the tokens to explain, increasing, each >= 1."""
    target_ids: torch.Tensor
    """(n_targets,) the token at each of those positions."""
    foil_ids: torch.Tensor | None = None
    """(n_targets,) the foil token for contrastive targets."""
    target: str = "prob"
    n_steps: int = 16
    baseline: str = "zero"
    quadrature: str = "auto"
    attentions: Callable[[], np.ndarray] | None = None
    """Returns (layer, head, pos, pos) attention weights (captured on demand)."""
    progress: Progress | None = None
    memo: dict[str, Any] = field(default_factory=dict)
    n_encoder: int = 0
    """Encoder tokens at the front of ``embeds`` (0 unless the model is an encoder-decoder)."""

    @property
    def target_function(self) -> Target:
        """The target of every explained token."""
        return Target(self.target, self.target_ids, self.foil_ids)

    def objective(self, logits: torch.Tensor, rows: slice | torch.Tensor) -> torch.Tensor:
        """(..., n, vocab) logits of targets ``rows`` -> (..., n) values of the target function."""
        return self.target_function.rows(rows).values(logits)


@dataclass
class MethodScores:
    """What one method returns (torch tensors on any device)."""

    values: torch.Tensor
    """(n_targets, pos) score of each token for each target; 0 at and after the target."""
    signed: torch.Tensor | None = None
    """(n_targets, pos) signed contributions (summed over embedding dims), where defined."""
    baseline_values: torch.Tensor | None = None
    """(n_targets,) target function at the IG baseline."""
    unit: str = "share of the total (sums to 1)"


# ----- the result ----------------------------------------------------------------------------------
@dataclass
class Saliency:
    """Input saliency of each explained token over the tokens before it (ecco's ``saliency``)."""

    method: str
    target: str
    tokens: list[str]
    """pos token strings of the whole sequence."""
    token_ids: np.ndarray
    """(pos,) int64 token ids."""
    n_input_tokens: int
    positions: np.ndarray
    """(n_out,) positions of the explained tokens (the generated ones by default)."""
    values: np.ndarray
    """(n_out, pos) score of each earlier token for each explained token; 0 at and after it."""
    target_values: np.ndarray
    """(n_out,) the target function at the real input (probability, logit or difference)."""
    unit: str = ""
    signed: np.ndarray | None = None
    """(n_out, pos) signed contributions (sum over embedding dims of the attribution), or None."""
    baseline_values: np.ndarray | None = None
    """(n_out,) the target function at the IG baseline, or None."""
    foil: str | None = None
    foil_id: int | None = None
    n_steps: int | None = None
    baseline: str | None = None
    quadrature: str | None = None
    style: str = "minimal"
    backend: str | None = None
    """What computed the gradients: "hand-written" (``fast_grad``) or "autograd"; None for
    methods without gradients (erasure, attention)."""

    @property
    def completeness_gap(self) -> np.ndarray | None:
        """(n_out,) sum of signed attributions minus (f(x) - f(baseline)); IG only."""
        if self.signed is None or self.baseline_values is None:
            return None
        return self.signed.sum(-1) - (self.target_values - self.baseline_values)

    @property
    def completeness_error(self) -> np.ndarray | None:
        """(n_out,) |completeness gap| relative to |f(x) - f(baseline)|; IG only."""
        gap = self.completeness_gap
        if gap is None:
            return None
        change = np.abs(self.target_values - self.baseline_values)
        return np.abs(gap) / np.maximum(change, 1e-12)

    def row(self, position: int) -> np.ndarray:
        """(pos,) scores for the explained token at ``position``."""
        hits = np.flatnonzero(self.positions == position)
        if not len(hits):
            raise PositionError(
                f"Position {position} was not explained; explained positions are "
                f"{self.positions.min()}..{self.positions.max()}."
            )
        return self.values[hits[0]]

    def to_frame(self) -> pd.DataFrame:
        """One row per (explained token, earlier token) pair."""
        rows = []
        for i, pos in enumerate(self.positions):
            for j in range(int(pos)):
                rows.append(
                    {
                        "output_position": int(pos),
                        "output_token": self.tokens[pos],
                        "input_position": j,
                        "input_token": self.tokens[j],
                        "value": float(self.values[i, j]),
                        **({"signed": float(self.signed[i, j])} if self.signed is not None else {}),
                    }
                )
        return pd.DataFrame(rows)

    def to_dict(self) -> dict:
        """ecco's ``printJson`` shape: tokens (type input/output) and one attribution list per output."""
        first = self.values[0] if len(self.values) else np.zeros(len(self.tokens))
        tokens = [
            {
                "token": tok,
                "token_id": int(self.token_ids[p]),
                "type": "input" if p < self.n_input_tokens else "output",
                "value": float(first[p]),
                "position": p,
            }
            for p, tok in enumerate(self.tokens)
        ]
        data = {
            "tokens": tokens,
            "attributions": [self.values[i, : int(p)].tolist() for i, p in enumerate(self.positions)],
            "positions": [int(p) for p in self.positions],
            "method": self.method,
            "target": self.target,
            "unit": self.unit,
            "target_values": self.target_values.tolist(),
            "backend": self.backend,
        }
        if self.foil is not None:
            data["foil"] = self.foil
        if self.completeness_error is not None:
            data["completeness_error"] = self.completeness_error.tolist()
            data["n_steps"] = self.n_steps
        return data

    def figure(self) -> go.Figure:
        """The explained-token x earlier-token heatmap."""
        from .figures.attribution import saliency_heatmap

        return saliency_heatmap(self)


# ----- gradients: one forward per chunk of targets, one batched backward ----------------------------
@dataclass(eq=False)
class _HeadPass:
    """One forward's read-out: the unembedding's input and output (in the graph) and the logits."""

    head_in: torch.Tensor
    """(batch, n_rows_or_pos, d) the tensor the unembedding read."""
    head_out: torch.Tensor
    """(batch, n_rows_or_pos, vocab) what the unembedding returned."""
    logits: torch.Tensor
    """(batch, n, vocab) the model's logits at the requested rows."""
    head_rows: torch.Tensor
    """(n,) indices of the requested rows inside ``head_in``."""


def _head_pass(ctx: AttributionContext, embeds: torch.Tensor, rows: torch.Tensor) -> _HeadPass:
    """Forward ``embeds`` (batch, pos, d) and keep the read-out at ``rows``."""
    captured: list[tuple[torch.Tensor, torch.Tensor]] = []
    handle = ctx.lm.arch.unembedding.register_forward_hook(
        lambda _m, args, out: captured.append((args[0], out))
    )
    try:
        if ctx.n_encoder:  # full decoder logits; rows become decoder indices
            logits = encoder_decoder_logits(ctx.lm.model, embeds, ctx.n_encoder)
            rows = rows - ctx.n_encoder
        else:
            logits = _causal_logits(ctx.lm.model, embeds, rows)
    finally:
        handle.remove()
    head_in, head_out = captured[-1]
    if logits.shape[1] != len(rows):
        return _HeadPass(head_in, head_out, logits[:, rows], rows)
    return _HeadPass(head_in, head_out, logits, torch.arange(len(rows), device=rows.device))


def _causal_logits(model: torch.nn.Module, embeds: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """(batch, n_rows or pos, vocab) logits of a causal LM over ``embeds`` (batch, pos, d)."""
    try:
        return model(inputs_embeds=embeds, use_cache=False, logits_to_keep=rows).logits
    except TypeError:  # a model without logits_to_keep: full logits
        return model(inputs_embeds=embeds, use_cache=False).logits


def encoder_decoder_logits(model: torch.nn.Module, embeds: torch.Tensor, n_encoder: int) -> torch.Tensor:
    """(batch, dec_pos, vocab) decoder logits of an encoder-decoder over ``embeds`` (batch, pos, d):
    the first ``n_encoder`` rows are the encoder's input embeddings, the rest the decoder's."""
    return model(
        inputs_embeds=embeds[:, :n_encoder],
        decoder_inputs_embeds=embeds[:, n_encoder:],
        use_cache=False,
    ).logits


def encoder_decoder_embeds(model: torch.nn.Module, encoder_ids: torch.Tensor, decoder_ids: torch.Tensor):
    """(enc_pos + dec_pos, d_model) input embeddings exactly as each stack builds them (BART's
    ``embed_scale`` included: its embedding modules multiply inside their forward)."""
    stacks = (model.get_encoder(), model.get_decoder())
    tables = [getattr(stack, "embed_tokens", None) for stack in stacks]
    tables = [model.get_input_embeddings() if table is None else table for table in tables]
    return torch.cat([tables[0](encoder_ids), tables[1](decoder_ids)])


def _chunks(n_targets: int, batch: int) -> list[slice]:
    size = max(1, ROWS_PER_BACKWARD // max(batch, 1))
    return [slice(s, min(s + size, n_targets)) for s in range(0, n_targets, size)]


def _head_seeds(ctx: AttributionContext, head: _HeadPass, chunk: slice) -> tuple[torch.Tensor, torch.Tensor]:
    """(batch, n_c) target values and (n_c, batch, rows, d) backward seeds on the head input:
    target i seeds only its own row, d value / d head input computed in a well-conditioned form."""
    values, g_logits = ctx.target_function.rows(chunk).values_and_gradients(head.logits)  # (batch, n_c, V)
    if head.logits is head.head_out:
        g_out = g_logits
    else:  # logit scale, soft-cap or a row selection after the unembedding: elementwise, by autograd
        (g_full,) = torch.autograd.grad(
            head.logits, head.head_out, g_logits.to(head.logits.dtype), retain_graph=True
        )
        g_out = g_full[:, head.head_rows]
    g_rows = unembedding_vjp(ctx.lm.arch.unembedding, g_out, head.head_in, head.head_out)  # (batch, n_c, d)
    if g_rows.shape[1] != len(head.head_rows):  # the autograd fallback returns every row
        g_rows = g_rows[:, head.head_rows]
    n_c = len(head.head_rows)
    seeds = torch.zeros(n_c, *head.head_in.shape, device=g_rows.device, dtype=head.head_in.dtype)
    index = torch.arange(n_c, device=g_rows.device)
    seeds[index, :, head.head_rows] = g_rows.transpose(0, 1).to(seeds.dtype)  # (n_c, batch, d) into place
    return values, seeds


def objective_gradients(
    ctx: AttributionContext, embeds: torch.Tensor, weights: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Target values and gradients w.r.t. the embeddings, for every target at once.

    Args:
        embeds: (batch, pos, d_model) inputs (the sequence, or IG path points).
        weights: (batch,) weights to sum the gradients over the batch (default: all 1).

    Returns:
        values: (batch, n_targets) the target function.
        grads: (n_targets, pos, d_model) weighted sum over the batch of d target / d embeddings.
    """
    batch, n_pos, _ = embeds.shape
    if batch == 1 and not ctx.n_encoder:
        plan = fast_grad.plan_for(ctx.lm, n_pos)
        if plan is not None:  # hand-written backward on packed rows (Llama family, float32)
            values, grads = fast_grad.objective_gradients(plan, embeds[0], ctx.positions, ctx.target_function)
            ctx.memo["backend"] = fast_grad.BACKEND
            _report(ctx, 1.0)
            scale = 1.0 if weights is None else weights[0]
            return values[None], grads * scale
    ctx.memo["backend"] = "autograd"
    weights = torch.ones(batch, device=embeds.device) if weights is None else weights
    n_t = len(ctx.positions)
    values = torch.zeros(batch, n_t, device=embeds.device)
    grads = torch.zeros(n_t, n_pos, embeds.shape[-1], device=embeds.device, dtype=torch.float32)
    with torch.enable_grad():
        for chunk in _chunks(n_t, batch):
            length = int(ctx.positions[chunk].max())  # logits at length - 1 read the last target
            leaf = embeds[:, :length].detach().requires_grad_(True)  # (batch, length, d)
            head = _head_pass(ctx, leaf, ctx.positions[chunk] - 1)
            f, seeds = _head_seeds(ctx, head, chunk)  # (batch, n_c), (n_c, batch, rows, d)
            if len(seeds) == 1:  # one target: a plain backward, no batched seeds
                (g,) = torch.autograd.grad(head.head_in, leaf, seeds[0])
                g = g[None]
            else:
                (g,) = torch.autograd.grad(head.head_in, leaf, seeds, is_grads_batched=True)
            grads[chunk, :length] = torch.einsum(
                "b,nbpd->npd", weights.to(g.dtype), g
            ).float()  # (n_c, len, d)
            values[:, chunk] = f.detach().to(values.dtype)
            _report(ctx, chunk.stop / n_t)
    return values, grads


def _report(ctx: AttributionContext, fraction: float) -> None:
    if ctx.progress:
        ctx.progress("attribution", fraction)


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
        return ctx.objective(_head_pass(ctx, embeds, ctx.positions - 1).logits, slice(None))


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


def quadrature(n_steps: int, rule: str = "auto", baseline: str = "zero") -> tuple[np.ndarray, np.ndarray]:
    """(n_steps,) points in [0, 1] and (n_steps,) weights that integrate over [0, 1].

    'gauss' is Gauss-Legendre (exact for polynomials of degree 2n - 1); 'left' is the left
    Riemann sum (ecco / captum's 'riemann_left').
    """
    if rule == "auto":
        rule = "graded" if baseline == "zero" else "gauss"
    if rule == "adaptive":  # needs a scan of the target: see ``adaptive_quadrature``
        rule = "gauss"
    if rule == "gauss":
        nodes, weights = np.polynomial.legendre.leggauss(n_steps)
        return (nodes + 1) / 2, weights / 2
    if rule == "graded":
        return _graded_gauss(n_steps)
    return np.arange(n_steps) / n_steps, np.full(n_steps, 1 / n_steps)


def _graded_gauss(n_steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Composite Gauss-Legendre on panels graded towards 0: [0, 1e-5], then one per decade to 1.

    Near a zero baseline the norm layers make f(a x) change on every scale down to
    a ~ sqrt(eps) / |x|; one panel per decade resolves that with few nodes, and the last panel
    [0.1, 1] (most of the path) gets half of them.
    """
    edges = np.array([0.0, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0])
    n_small = len(edges) - 2
    per_small = max(1, n_steps // (2 * n_small))
    counts = [per_small] * n_small + [max(1, n_steps - per_small * n_small)]
    nodes, weights = [], []
    for (lo, hi), count in zip(zip(edges[:-1], edges[1:]), counts):
        x, w = np.polynomial.legendre.leggauss(count)
        nodes.append(lo + (x + 1) / 2 * (hi - lo))
        weights.append(w / 2 * (hi - lo))
    return np.concatenate(nodes), np.concatenate(weights)


def adaptive_quadrature(scan: np.ndarray, n_steps: int) -> tuple[np.ndarray, np.ndarray]:
    """(nodes,) points and weights: Gauss-Legendre panels on the scanned intervals, with nodes in
    proportion to how much the target function changes on each (intervals owed none get none).

    Args:
        scan: (SCAN_INTERVALS + 1, n_targets) the target function at equally spaced alphas 0 .. 1.
        n_steps: gradient evaluations to place.

    A probability target often sits near 0 for most of the path and rises over a short stretch;
    equal or graded nodes waste most evaluations where nothing happens.
    """
    n_intervals = scan.shape[0] - 1
    change = np.abs(np.diff(scan.astype(np.float64), axis=0))  # (interval, n_targets)
    share = (change / np.maximum(change.sum(0, keepdims=True), 1e-30)).mean(1) + SCAN_FLOOR
    quota = share / share.sum() * n_steps
    counts = np.floor(quota).astype(int)
    counts[np.argsort(counts - quota)[: n_steps - counts.sum()]] += 1  # largest remainders
    edges = np.linspace(0.0, 1.0, n_intervals + 1)
    nodes, weights = [], []
    for lo, hi, count in zip(edges[:-1], edges[1:], counts):
        if count:
            x, w = np.polynomial.legendre.leggauss(int(count))
            nodes.append(lo + (x + 1) / 2 * (hi - lo))
            weights.append(w / 2 * (hi - lo))
    return np.concatenate(nodes), np.concatenate(weights)


def _rule(ctx: AttributionContext) -> str:
    """'auto': graded Gauss from a zero baseline, else Gauss (adaptive is asked for by name: on
    tiny random models the change hides below alpha 0.1, which its equal scan cannot see)."""
    if ctx.quadrature != "auto":
        return ctx.quadrature
    return "graded" if ctx.baseline == "zero" else "gauss"


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

    rule = _rule(ctx)
    if rule == "adaptive":
        scan = _objective_values(ctx, path(np.linspace(0.0, 1.0, SCAN_INTERVALS + 1)))  # (alpha, n_t)
        points = adaptive_quadrature(scan.cpu().numpy(), ctx.n_steps)
        ends = scan[[-1, 0]]  # (2, n_t): f(x), f(baseline)
    else:
        points, ends = quadrature(ctx.n_steps, rule, ctx.baseline), None
    weights = torch.tensor(points[1], device=x.device, dtype=torch.float32)
    _, grads = objective_gradients(ctx, path(points[0]), weights)
    attribution = grads * (x - x0)[None]  # (n_t, pos, d)
    if ends is None:
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
            _report(ctx, (start + len(js)) / len(removable))
    return MethodScores(drops, signed=drops, unit=f"drop in the target ({_target_unit(ctx.target)})")


def _attention_rows(ctx: AttributionContext, weights: np.ndarray) -> MethodScores:
    rows = torch.as_tensor(weights[(ctx.positions - 1).cpu().numpy()])  # (n_t, pos)
    before = torch.arange(rows.shape[1])[None] < ctx.positions.cpu()[:, None]
    return MethodScores(rows * before, unit="attention weight")


def attention(ctx: AttributionContext) -> MethodScores:
    """Last layer's attention from the position that predicts each target, mean over heads."""
    return _attention_rows(ctx, _attention_weights(ctx)[-1].mean(0))  # (pos, pos)


def attention_rollout(ctx: AttributionContext) -> MethodScores:
    """Attention rollout (Abnar & Zuidema 2020): (0.5 A + 0.5 I), rows renormalised, multiplied up."""
    weights = _attention_weights(ctx).mean(1).astype(np.float64)  # (layer, pos, pos)
    eye = np.eye(weights.shape[-1])
    rollout = eye
    for layer in weights:
        mixed = 0.5 * layer + 0.5 * eye
        rollout = (mixed / mixed.sum(-1, keepdims=True)) @ rollout
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


def _target_unit(target: str) -> str:
    return {"prob": "probability", "logit": "logit", "contrast": "logit difference"}.get(
        target, "probability difference"
    )


# ----- building the context and the public entry points ---------------------------------------------
def method_name(attr_method: str) -> str:
    """The canonical method name (ecco's aliases accepted)."""
    name = ALIASES.get(attr_method, attr_method)
    if name not in METHODS:
        raise InputError(
            f"Unknown attribution method {attr_method!r}. Pick one of: {', '.join(METHODS)} "
            f"(aliases: {', '.join(ALIASES)})."
        )
    return name


def foil_id(lm: LM, foil: int | str) -> int:
    """The one token id of a foil given as an id or a string.

    Raises:
        TokenError: empty, out of the vocabulary, or several tokens (the pieces are shown).
    """
    vocab = lm.model.get_input_embeddings().num_embeddings
    if isinstance(foil, (int, np.integer)) and not isinstance(foil, bool):
        if not 0 <= int(foil) < vocab:
            raise TokenError(f"Foil id {foil} is outside the vocabulary 0..{vocab - 1}.")
        return int(foil)
    if not isinstance(foil, str) or foil == "":
        raise TokenError("The foil is empty: type the token the model did not choose, e.g. ' is'.")
    ids = lm.tokenizer(foil, add_special_tokens=False).input_ids
    if len(ids) != 1:
        pieces = [lm.tokenizer.decode([i]) for i in ids]
        raise TokenError(
            f"The foil {foil!r} is {len(ids)} tokens {pieces}; a foil must be one token. "
            f"Try {pieces[0]!r} (mind the leading space)."
        )
    return int(ids[0])


def _explained_positions(seq: OutputSeq, positions: Sequence[int] | None) -> list[int]:
    lowest = seq.first_predicted_position  # 1; the first decoder token after the start on enc-dec
    if positions is None:
        first = seq.n_input_tokens if seq.n_output_tokens else 1
        return list(range(max(first, lowest), seq.n_tokens))
    out = sorted({int(p) + (seq.n_tokens if int(p) < 0 else 0) for p in positions})
    for p in out:
        if not lowest <= p < seq.n_tokens:
            why = (
                "the decoder predicts from its start token on"
                if lowest > 1
                else "position 0 has no earlier tokens"
            )
            raise PositionError(
                f"Position {p} cannot be explained: pick {lowest}..{seq.n_tokens - 1} ({why})."
            )
    return out


def _check_settings(target: str, foil, n_steps: int, baseline: str, rule: str) -> None:
    if target not in TARGETS:
        raise InputError(f"Unknown target {target!r}. Pick one of: {', '.join(TARGETS)}.")
    if target.startswith("contrast") and foil is None:
        raise TokenError(f"target={target!r} needs a foil: the token to contrast with, e.g. ' is'.")
    if foil is not None and not target.startswith("contrast"):
        raise InputError("A foil needs target='contrast' (logits) or target='contrast_prob'.")
    if not isinstance(n_steps, (int, np.integer)) or not 1 <= n_steps <= 512:
        raise InputError(f"n_steps must be a whole number in 1..512, not {n_steps!r}.")
    if baseline not in BASELINES:
        raise InputError(f"Unknown baseline {baseline!r}. Pick one of: {', '.join(BASELINES)}.")
    if rule not in QUADRATURES:
        raise InputError(f"Unknown quadrature {rule!r}. Pick one of: {', '.join(QUADRATURES)}.")


def build_context(
    seq: OutputSeq,
    positions: Sequence[int] | None = None,
    target: str = "prob",
    foil: int | str | None = None,
    n_steps: int = 16,
    baseline: str = "zero",
    quadrature: str = "auto",
    progress: Progress | None = None,
) -> AttributionContext:
    """Check the settings and gather what the methods need from ``seq`` and its model."""
    lm = seq.require_lm()
    if seq.model_type not in ("causal", "enc-dec"):
        raise ModelTypeError(
            f"Input saliency explains next-token predictions; {seq.model_name} is a "
            f"{seq.model_type} model. Pick a causal or encoder-decoder model for this view."
        )
    _check_settings(target, foil, n_steps, baseline, quadrature)
    explained = _explained_positions(seq, positions)
    device = lm.device
    ids = torch.as_tensor(seq.token_ids, dtype=torch.long, device=device)
    pos = torch.tensor(explained, dtype=torch.long, device=device)
    n_encoder = seq.n_input_tokens if seq.model_type == "enc-dec" else 0
    with torch.no_grad():
        if n_encoder:
            encoder_ids = torch.as_tensor(seq.extras["encoder"]["token_ids"], dtype=torch.long, device=device)
            embeds = encoder_decoder_embeds(lm.model, encoder_ids, ids[n_encoder:]).detach()  # (pos, d)
        else:
            embeds = lm.model.get_input_embeddings()(ids).detach()  # (pos, d_model)
    foil_ids = None if foil is None else torch.full_like(pos, foil_id(lm, foil))
    return AttributionContext(
        lm=lm,
        embeds=embeds,
        token_ids=ids,
        positions=pos,
        target_ids=ids[pos],
        foil_ids=foil_ids,
        target=target,
        n_steps=int(n_steps),
        baseline=baseline,
        quadrature=quadrature,
        attentions=lambda: _seq_attentions(seq),
        progress=progress,
        n_encoder=n_encoder,
    )


def _seq_attentions(seq: OutputSeq) -> np.ndarray:
    """(layer, head, pos, pos) the run's attention, or one capture forward with attention."""
    if seq.attentions is None:
        lm = seq.require_lm()
        ids = torch.as_tensor(seq.token_ids, dtype=torch.long)
        captured = lm.capture(ids, seq.n_input_tokens, attention=True, activation_layers=[])
        if captured.attentions is None:
            raise ModelTypeError(f"{seq.model_name} does not expose attention weights.")
        seq.attentions = captured.attentions
    return seq.attentions


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

    Raises:
        InputError, TokenError, PositionError, ModelTypeError.
    """
    if style not in ("minimal", "detailed"):
        raise InputError(f"Unknown style {style!r}: pick 'minimal' or 'detailed'.")
    name = method_name(attr_method)
    stored = seq.attribution.get(name)
    defaults = (target, foil, n_steps, baseline, quadrature, positions) == DEFAULTS
    if isinstance(stored, Saliency) and defaults:
        return stored
    ctx = build_context(seq, positions, target, foil, n_steps, baseline, quadrature, progress)
    result = run_method(ctx, name, seq)
    result.style = style
    return result


def compute_attributions(
    seq: OutputSeq, methods: Sequence[str], progress: Progress | None = None
) -> dict[str, Saliency]:
    """Compute ``methods`` with default settings into ``seq.attribution`` (gradients shared)."""
    ctx = build_context(seq, progress=progress)
    for attr_method in methods:
        name = method_name(attr_method)
        seq.attribution[name] = run_method(ctx, name, seq)
    return seq.attribution
