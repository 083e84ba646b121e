"""The hand-written backward's once-per-model check, judged against float64.

The forward is compared with the model's own logits and the backward with autograd through
the same forward in float64, for a fixed mix of three probability targets on a short
sequence; both must lie within what float32 may lose over the model's depth.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from . import hand_written
from .targets import Target, unembedding_vjp

if TYPE_CHECKING:
    from ...model.lm import LanguageModel

log = logging.getLogger(__name__)

ROUNDING_STAGES = 32
"""float32 epsilons of relative error the self-check allows per block (see ``float32_tolerance``)."""


def make_plan(lm: LanguageModel) -> hand_written.LlamaPlan | None:
    """The model's plan once it passed the self-check, or None (the generic path stays)."""
    plan = hand_written.structure(lm)
    if plan is None:
        return None
    try:
        ok = self_check(plan)
    except Exception as error:  # any mismatch of structure: keep the generic path
        log.warning("hand-written gradients do not apply to %s (autograd is used): %s", lm.name, error)
        return None
    return plan if ok else None


@dataclass(frozen=True)
class CheckResult:
    """How far the hand-written float32 passes are from the truth on the check's short sequence."""

    logit_error: float
    """max |hand-written logits - the model's own logits| / max |model logits| (both float32)."""
    gradient_error: float
    """max |hand-written gradients - float64 reference| / max |reference|."""
    tolerance: float
    """What float32 may lose over this model's depth (``float32_tolerance``)."""

    @property
    def passed(self) -> bool:
        return self.logit_error <= self.tolerance and self.gradient_error <= self.tolerance


def float32_tolerance(n_layers: int) -> float:
    """Relative error float32 arithmetic may reach through ``n_layers`` blocks, forward and back.

    Each block adds a few rounding stages (norm, attention, MLP; forward and backward), each
    within a small multiple of float32's epsilon of its inputs' magnitude: ``ROUNDING_STAGES``
    stages per block, plus the read-out.
    """
    return ROUNDING_STAGES * (n_layers + 1) * float(torch.finfo(torch.float32).eps)


def _check_inputs(lm: LanguageModel) -> tuple[torch.Tensor, torch.Tensor, Target]:
    """(9, d) embeddings of a fixed token sequence, (3,) target positions and their target."""
    table = lm.model.get_input_embeddings()
    ids = (torch.arange(9, device=lm.device) * 7919 + 11) % table.num_embeddings
    positions = torch.tensor([4, 7, 9], device=lm.device)
    return table(ids).detach().float(), positions, Target("prob", ids[positions % len(ids)])


def check(plan: hand_written.LlamaPlan) -> CheckResult:
    """Compare the hand-written passes with the model's own logits and with a float64 reference
    of their gradients (autograd through the same forward in float64), for a fixed mix of three
    probability targets on a short sequence."""
    lm = plan.lm
    embeds, positions, target = _check_inputs(lm)
    mix = torch.tensor([1.0, -0.7, 0.45], device=lm.device)  # one reference backward checks all three
    with torch.no_grad():
        model_logits = lm.model(inputs_embeds=embeds[None], use_cache=False).logits[0, positions - 1]
    own_logits, _, fast = hand_written.logits_values_gradients(plan, embeds, positions, target)
    reference = _float64_gradient(plan, embeds, positions, target, mix)  # (L, d)
    fast = torch.einsum("t,tpd->pd", mix, fast)[: reference.shape[0]].double()
    return CheckResult(
        logit_error=_relative_error(own_logits.float(), model_logits.float()),
        gradient_error=_relative_error(fast, reference),
        tolerance=float32_tolerance(len(plan.layers)),
    )


def _float64_gradient(
    plan, embeds: torch.Tensor, positions: torch.Tensor, target: Target, mix
) -> torch.Tensor:
    """(L, d) float64 d (mix . target values) / d embeds, for the rows the targets read.

    Autograd through the hand-written forward in float64, one block at a time (each block's
    forward recomputed from its saved input), so only one block's float64 weights exist at once.
    """
    h = embeds[: int(positions.max())].double()  # (L, d)
    cos, sin = hand_written.rope_tables(plan, h.shape[0], h)
    inputs = []
    with torch.no_grad():
        for block in plan.layers:
            inputs.append(h)
            h, _ = hand_written.block_forward(plan, block, h, cos, sin)
    with torch.enable_grad():
        rows = h[positions - 1].requires_grad_(True)  # (3, d)
        normed, logits = hand_written.read_out(plan, rows)
        _, g_logits = target.values_and_gradients(logits)  # (3, vocab) float64
        g_normed = unembedding_vjp(plan.lm.arch.unembedding, g_logits * mix[:, None].double())
        (g_rows,) = torch.autograd.grad(normed, rows, g_normed)
    grad = torch.zeros_like(h)
    grad[positions - 1] = g_rows
    for block, block_input in zip(reversed(plan.layers), reversed(inputs), strict=True):
        with torch.enable_grad():
            leaf = block_input.requires_grad_(True)
            out, _ = hand_written.block_forward(plan, block, leaf, cos, sin)
            (grad,) = torch.autograd.grad(out, leaf, grad)
    return grad


def self_check(plan: hand_written.LlamaPlan) -> bool:
    """Run ``check`` and say (as a WARNING, with the figures) when it refuses the model."""
    result = check(plan)
    if not result.passed:
        log.warning(
            "hand-written gradients refused for %s (autograd is used, slower): logit error %.2e, "
            "gradient error %.2e against float64, tolerance %.2e",
            plan.lm.name,
            result.logit_error,
            result.gradient_error,
            result.tolerance,
        )
    return result.passed


def _relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    scale = b.abs().max().clamp_min(1e-12)
    return float((a - b).abs().max() / scale)
