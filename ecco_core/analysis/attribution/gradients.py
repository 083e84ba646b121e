"""Gradients by autograd: one forward per chunk of targets, one batched backward.

Each chunk's forward over ``inputs_embeds`` is truncated to the last position the chunk reads;
the target's gradient on the unembedding's input is formed in a well-conditioned way
(``targets``) and seeds one batched backward (``is_grads_batched``) from there.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .context import AttributionContext, encoder_decoder_logits, report
from .targets import unembedding_vjp

ROWS_PER_BACKWARD = 64
"""Targets x path points per batched backward (bounds memory; larger chunks are no faster)."""


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


def head_pass(ctx: AttributionContext, embeds: torch.Tensor, rows: torch.Tensor) -> _HeadPass:
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


def autograd_gradients(
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
    weights = torch.ones(batch, device=embeds.device) if weights is None else weights
    n_t = len(ctx.positions)
    values = torch.zeros(batch, n_t, device=embeds.device)
    grads = torch.zeros(n_t, n_pos, embeds.shape[-1], device=embeds.device, dtype=torch.float32)
    with torch.enable_grad():
        for chunk in _chunks(n_t, batch):
            length = int(ctx.positions[chunk].max())  # logits at length - 1 read the last target
            leaf = embeds[:, :length].detach().requires_grad_(True)  # (batch, length, d)
            head = head_pass(ctx, leaf, ctx.positions[chunk] - 1)
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
            report(ctx, chunk.stop / n_t)
    return values, grads


def point_gradients(ctx: AttributionContext, embeds: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Target values and the gradient at every input of the batch, not summed (IG's adaptive rule
    needs each node's own f'(alpha)).

    Args:
        embeds: (batch, length, d_model) inputs, cut to the last position the targets read.

    Returns:
        values: (batch, n_targets) the target function.
        grads: (n_targets, batch, length, d_model) d target / d embeddings at each input.
    """
    with torch.enable_grad():
        leaf = embeds.detach().requires_grad_(True)  # (batch, length, d)
        head = head_pass(ctx, leaf, ctx.positions - 1)
        f, seeds = _head_seeds(ctx, head, slice(None))  # (batch, n_t), (n_t, batch, rows, d)
        if len(seeds) == 1:
            (g,) = torch.autograd.grad(head.head_in, leaf, seeds[0])
            g = g[None]
        else:
            (g,) = torch.autograd.grad(head.head_in, leaf, seeds, is_grads_batched=True)
    return f.detach().float(), g.float()
