"""Integrated gradients for one output token: time and completeness error."""

from __future__ import annotations

import statistics

from bench.workload import timed
from ecco_core.facade import OutputSeq

ADAPTIVE_STEPS = 12
"""Gradient evaluations for the adaptive rule (plus its forward-only scan of 9 path points); the
saliency page's default (``IG_STEPS`` in ecco_app/views/saliency.py)."""


def ig_one_token(seq: OutputSeq, runs: int, **settings) -> tuple[float, float]:
    """Median seconds of IG for the first generated token, and its completeness error.

    ``settings`` go to ``saliency``; none means the library's defaults (``compute_attributions``).
    """
    position = [seq.n_input_tokens]

    def run():
        return seq.saliency("integrated_gradients", positions=position, **settings)

    run()  # warm-up
    measured = [timed(run) for _ in range(runs)]
    error = float(measured[-1][1].completeness_error[0])
    return statistics.median(t for t, _ in measured), error
