"""What an attribution explains, and its gradient w.r.t. the logits in a well-conditioned form.

Autograd's softmax backward forms ``p_t * (1 - p_t)``; at a confident output (p_t = 0.99995)
``1 - p_t`` loses most of its float32 digits, and the whole gradient of that output with it.
Here ``1 - p_t`` is the sum of the *other* probabilities, each small and exact, and the softmax
is normalised in float64 (a 49k-term float32 sum is only as exact as the CPU's summation
order), so every output's gradient keeps float32's relative accuracy on any CPU.

The map from those logit gradients back onto the unembedding's input, (rows, vocab) @
(vocab, d_model), is a matmul with very few rows; some CPU kernels accumulate such a product
along the 49k-long vocabulary with a relative error near 1e-4 (and 1e-6 from 4 rows on), so
``unembedding_vjp`` pads it to ``MIN_MATMUL_ROWS`` rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

TARGETS = ("prob", "logit", "contrast", "contrast_prob")
"""What a method explains: the token's probability (ecco), its logit, or target minus foil in
logits ('contrast') or in probabilities ('contrast_prob')."""
MIN_MATMUL_ROWS = 16
"""Rows a vocabulary-long float32 matmul is padded to (where every kernel measured blocks its sums)."""
CAST_BLOCK = 8192
"""Vocabulary rows of a weight cast to another dtype at a time."""


@dataclass(frozen=True)
class Target:
    """The target function of ``n`` explained tokens: their probability, logit, or a contrast."""

    kind: str
    """One of ``TARGETS``."""
    token_ids: torch.Tensor
    """(n,) the explained tokens."""
    foil_ids: torch.Tensor | None = None
    """(n,) the foil of each, for the contrastive kinds."""

    def rows(self, rows: slice | torch.Tensor) -> Target:
        """The target of a subset of the ``n`` tokens."""
        foils = None if self.foil_ids is None else self.foil_ids[rows]
        return Target(self.kind, self.token_ids[rows], foils)

    def _ids(self, logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """(..., n, 1) ``ids`` broadcast over the batch dims of (..., n, vocab) logits."""
        return ids.to(logits.device).expand(*logits.shape[:-1])[..., None]

    def values(self, logits: torch.Tensor) -> torch.Tensor:
        """(..., n, vocab) logits -> (..., n) values (float32, or the logits' dtype if wider)."""
        logits = _at_least_float32(logits)
        scores = _softmax(logits) if self.kind in ("prob", "contrast_prob") else logits
        value = scores.gather(-1, self._ids(logits, self.token_ids))[..., 0]
        if self.kind.startswith("contrast"):
            value = value - scores.gather(-1, self._ids(logits, self.foil_ids))[..., 0]
        return value

    def values_and_gradients(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(..., n) values and (..., n, vocab) d value / d logits, without ``1 - p`` cancellation."""
        logits = _at_least_float32(logits).detach()
        target = self._ids(logits, self.token_ids)
        foil = None if self.foil_ids is None else self._ids(logits, self.foil_ids)
        if self.kind in ("logit", "contrast"):
            grads = torch.zeros_like(logits).scatter_(-1, target, 1.0)
            if foil is not None:
                grads.scatter_add_(-1, foil, torch.full_like(foil, -1.0, dtype=logits.dtype))
            return self.values(logits), grads
        probs = logits.double().softmax(-1)  # (..., n, vocab), normalised in float64
        p_target = probs.gather(-1, target)  # (..., n, 1)
        grads = _softmax_row_gradient(probs, target) * p_target  # d p_t / d logits
        value = p_target[..., 0]
        if foil is not None:
            p_foil = probs.gather(-1, foil)
            grads -= _softmax_row_gradient(probs, foil) * p_foil
            value = value - p_foil[..., 0]
        return value.to(logits.dtype), grads.to(logits.dtype)


def _softmax(logits: torch.Tensor) -> torch.Tensor:
    """Probabilities in the logits' dtype, normalised in float64 (a 49k-term float32 sum is only
    as exact as the CPU's summation order)."""
    return logits.double().softmax(-1).to(logits.dtype)


def _at_least_float32(logits: torch.Tensor) -> torch.Tensor:
    return logits if logits.dtype == torch.float64 else logits.float()


def _softmax_row_gradient(probs: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """(..., n, vocab) ``one_hot(index) - probs``, its entry at ``index`` computed as the sum of the
    other probabilities (not ``1 - p``, which cancels when p is near 1)."""
    others = probs.scatter(-1, index, 0.0)
    return (-others).scatter_(-1, index, others.sum(-1, keepdim=True))


def padded_matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(rows, k) @ (k, m) with the rows padded to ``MIN_MATMUL_ROWS`` (see the module docstring)."""
    rows = a.shape[0]
    if rows >= MIN_MATMUL_ROWS:
        return a @ b
    padded = torch.zeros(MIN_MATMUL_ROWS, a.shape[1], dtype=a.dtype, device=a.device)
    padded[:rows] = a
    return (padded @ b)[:rows]


def unembedding_vjp(
    unembedding: nn.Module, grads: torch.Tensor, inputs: torch.Tensor | None = None, outputs=None
) -> torch.Tensor:
    """(..., d_model) d value / d unembedding input, from (..., vocab) d value / d its output.

    A plain linear unembedding (every family we know) is one padded matmul with its weight;
    anything else is backpropagated by autograd from ``outputs`` to ``inputs``.
    """
    if isinstance(unembedding, nn.Linear):
        flat = grads.reshape(-1, grads.shape[-1])  # (rows, vocab)
        weight = unembedding.weight  # (vocab, d_model)
        if weight.dtype != flat.dtype:  # cast the weight block by block, not all at once
            out = sum(
                padded_matmul(flat[:, s : s + CAST_BLOCK], weight[s : s + CAST_BLOCK].to(flat.dtype))
                for s in range(0, weight.shape[0], CAST_BLOCK)
            )
        else:
            out = padded_matmul(flat, weight)
        return out.reshape(*grads.shape[:-1], weight.shape[1])
    if inputs is None or outputs is None:
        raise TypeError(f"{type(unembedding).__name__} is not linear: pass its inputs and outputs")
    (grad_in,) = torch.autograd.grad(outputs, inputs, grads.to(outputs.dtype), retain_graph=True)
    return grad_in
