"""The suite's tolerance policy: what "equal" means for floating-point results (see tests/README.md).

Machines of this kind are an Intel Xeon (AVX-512, AMX) one day and an AMD EPYC (AVX2) the next;
their float32 kernels sum in different orders, so two float32 computations of the same value
differ in their last bits, and which of two near-tied logits is larger can flip. Hence:

1. "Is it right?" is asked against a **float64 reference** (a float64 copy of the model, or the
   same formula in float64), never against another float32 computation with a tighter tolerance
   than float32's own error.
2. Tolerances are **derived from the computation**, depth x float32 epsilon x magnitude:
   ``float32_tolerance(depth)`` for results through ``depth`` blocks (the same bound the
   hand-written backward's self-check applies), ``dot_error_bound`` for one float32 dot product.
3. Ranks and top-k lists are **tie-aware**: a rank is right if it lies within the count of
   logits that are within their float32 error of the target's (``rank_window``), and a rank
   test also asserts that most windows are a single rank, so it still fails on an off-by-one.
4. Bit-equality is asserted only where the code promises it (the same kernels on the same
   inputs, e.g. a result and its cached copy, or a save/load round trip).
"""

from __future__ import annotations

import numpy as np
import torch

from ecco_core.analysis.attribution.self_check import float32_tolerance

__all__ = [
    "EPS32",
    "assert_rank_within_ties",
    "assert_topk_within_ties",
    "dot_error_bound",
    "float32_tolerance",
    "relative_error",
    "rank_window",
]

EPS32 = float(np.finfo(np.float32).eps)
UNIT_ROUNDOFF = EPS32 / 2


def dot_error_bound(inputs: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """(..., out) how far float32 may put ``inputs @ weight.T`` from the exact value.

    A K-term float32 sum of products rounds like a random walk: within ``sqrt(K) u sum|x w|``
    (u the unit roundoff) on any summation order; a factor 2 covers the rounding of the inputs
    themselves (e.g. the final norm before the unembedding). Measured on the embedded model's
    unembedding (K = 576): at most 10 u sum|x w|, against this bound's 48.

    Args:
        inputs: (..., K) float64 copies of the float32 inputs.
        weight: (out, K) float64 copy of the weight.
    """
    k = inputs.shape[-1]
    return 2 * np.sqrt(k) * UNIT_ROUNDOFF * (inputs.abs() @ weight.abs().T)


def relative_error(actual, reference, axis: int | tuple[int, ...] | None = None) -> np.ndarray:
    """max |actual - reference| / max |reference| (over ``axis``; everything by default)."""
    actual, reference = np.asarray(actual, np.float64), np.asarray(reference, np.float64)
    scale = np.maximum(np.abs(reference).max(axis=axis), 1e-300)
    return np.abs(actual - reference).max(axis=axis) / scale


def rank_window(logits: torch.Tensor, bound: torch.Tensor, token: int) -> tuple[int, int]:
    """(lowest, highest) rank float32 may give ``token`` among exact ``logits`` (vocab,), each
    uncertain by ``bound`` (vocab,): rivals surely above count in both, rivals within reach in
    the highest only."""
    lo_target, hi_target = logits[token] - bound[token], logits[token] + bound[token]
    rivals = torch.ones_like(logits, dtype=torch.bool)
    rivals[token] = False
    surely_above = ((logits - bound > hi_target) & rivals).sum()
    maybe_above = ((logits + bound >= lo_target) & rivals).sum()
    return 1 + int(surely_above), 1 + int(maybe_above)


def assert_rank_within_ties(rank: int, logits: torch.Tensor, bound: torch.Tensor, token: int) -> bool:
    """Assert ``rank`` is a rank float32 may give ``token``; True when the window is one rank."""
    lowest, highest = rank_window(logits, bound, token)
    assert lowest <= rank <= highest, (
        f"rank {rank} of token {token} outside its tie window {lowest}..{highest}"
    )
    return lowest == highest


def assert_topk_within_ties(token_ids, logits: torch.Tensor, bound: torch.Tensor) -> None:
    """Assert ``token_ids`` (k,) is a top-k list float32 may produce from exact ``logits``: slot j
    holds a distinct token whose logit is within the errors of the j-th largest one."""
    token_ids = torch.as_tensor(np.asarray(token_ids))
    assert len(set(token_ids.tolist())) == len(token_ids), "top-k repeats a token"
    ordered, order = torch.sort(logits, descending=True)
    for slot, token in enumerate(token_ids.tolist()):
        gap = abs(float(logits[token] - ordered[slot]))
        allowed = float(bound[token] + bound[order[slot]])
        assert gap <= allowed, (
            f"slot {slot}: token {token} is {gap:.3g} from the exact slot value (> {allowed:.3g})"
        )
