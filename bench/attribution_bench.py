"""Integrated gradients for one output token: time and completeness error."""

from __future__ import annotations

import statistics

from bench.workload import timed
from ecco_app import progressive
from ecco_core.facade import OutputSeq

ADAPTIVE_STEPS = progressive.IG_STEPS
"""The most gradient evaluations of the adaptive rule (plus its forward-only scan of
``SCAN_ALPHAS``); the saliency page's default (``ecco_app.progressive.IG_STEPS``)."""


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
