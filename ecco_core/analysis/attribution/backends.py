"""Where attribution gradients come from: autograd, or the hand-written Llama-family backward.

Both give ``(values (batch, n_targets), grads (n_targets, pos, d_model))`` for a batch of
inputs; the hand-written one applies to one sequence (batch 1) of a model whose plan passed its
self-check. Plans are made once per model and kept here, not on the model.
"""

from __future__ import annotations

import threading
import weakref
from typing import TYPE_CHECKING, Protocol

import torch

from . import hand_written, self_check
from .context import AttributionContext, report
from .gradients import autograd_gradients

if TYPE_CHECKING:
    from ...model.lm import LanguageModel


class GradientBackend(Protocol):
    name: str

    def applies(self, ctx: AttributionContext, embeds: torch.Tensor) -> bool: ...

    def gradients(
        self, ctx: AttributionContext, embeds: torch.Tensor, weights: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]: ...


class AutogradBackend:
    """Any model, any batch: one forward per chunk of targets, one batched backward."""

    name = "autograd"

    def applies(self, ctx: AttributionContext, embeds: torch.Tensor) -> bool:
        return True

    def gradients(self, ctx, embeds, weights):
        return autograd_gradients(ctx, embeds, weights)


class HandWrittenBackend:
    """Llama-family decoders in float32, one sequence at a time (``hand_written``)."""

    name = hand_written.BACKEND

    def __init__(self) -> None:
        self._plans: weakref.WeakKeyDictionary[LanguageModel, hand_written.LlamaPlan | None] = (
            weakref.WeakKeyDictionary()
        )
        self._lock = threading.Lock()

    def plan_for(self, lm: LanguageModel, length: int = 0) -> hand_written.LlamaPlan | None:
        """The model's plan (made and self-checked on first use), or None where the hand-written
        passes do not apply; ``length`` rows beyond a sliding attention window do not either."""
        with self._lock:
            if lm not in self._plans:
                self._plans[lm] = self_check.make_plan(lm)
            plan = self._plans[lm]
        if plan is not None and plan.window and length > plan.window:
            return None
        return plan

    def forget(self, lm: LanguageModel) -> None:
        """Drop the model's plan (the next use checks the model again)."""
        with self._lock:
            self._plans.pop(lm, None)

    def applies(self, ctx: AttributionContext, embeds: torch.Tensor) -> bool:
        batch, n_pos, _ = embeds.shape
        return batch == 1 and not ctx.n_encoder and self.plan_for(ctx.lm, n_pos) is not None

    def gradients(self, ctx, embeds, weights):
        plan = self.plan_for(ctx.lm, embeds.shape[1])
        values, grads = hand_written.objective_gradients(plan, embeds[0], ctx.positions, ctx.target_function)
        report(ctx, 1.0)
        return values[None], grads * (1.0 if weights is None else weights[0])


AUTOGRAD = AutogradBackend()
HAND_WRITTEN = HandWrittenBackend()


def objective_gradients(
    ctx: AttributionContext, embeds: torch.Tensor, weights: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Target values and gradients w.r.t. the embeddings, for every target at once, by the
    backend ``ctx.backend`` allows (recorded in ``ctx.memo["backend"]``).

    Args:
        embeds: (batch, pos, d_model) inputs (the sequence, or IG path points).
        weights: (batch,) weights to sum the gradients over the batch (default: all 1).

    Returns:
        values: (batch, n_targets) the target function.
        grads: (n_targets, pos, d_model) weighted sum over the batch of d target / d embeddings.
    """
    use_hand_written = ctx.backend == "auto" and HAND_WRITTEN.applies(ctx, embeds)
    backend: GradientBackend = HAND_WRITTEN if use_hand_written else AUTOGRAD
    ctx.memo["backend"] = backend.name
    return backend.gradients(ctx, embeds, weights)
