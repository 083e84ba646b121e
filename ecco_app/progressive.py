"""Progressive saliency: the picked token first, then the rest a chunk at a time, cancellable.

A job is one (run, method settings) pair. Its rows grow chunk by chunk; each chunk is a cached
``cached.saliency`` call for a few positions, so a revisited job refills from the cache at once.
Integrated gradients use the adaptive rule (``ecco_core.analysis.attribution.adaptive``): each
token gets gradient evaluations until its completeness error is under the rule's tolerance or
``IG_STEPS`` are spent; the caption reports each token's error against ``IG_TARGET`` (see the
README's classroom section for what the EU run reaches).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import streamlit as st
from streamlit.runtime.scriptrunner_utils.script_run_context import get_script_run_ctx

import ecco_core
from ecco_app import cached
from ecco_core.results import Saliency

JOBS = "saliency_jobs"  # session key: {job key: Job}, the current run's only
IG_STEPS = 32
"""The most gradient evaluations per token for integrated gradients (the adaptive rule stops
earlier once a token's completeness error is under its tolerance)."""
IG_TARGET = 0.02
"""Completeness error the page promises (sum of attributions vs f(x) - f(baseline))."""
CHUNK_SECONDS = 0.8
"""A chunk of the rest is sized to take about this long (the screen updates after each)."""


@dataclass
class Job:
    """The rows computed so far for one run and one set of method settings."""

    run_id: str
    params: dict[str, Any]
    result: Saliency | None = None
    stopped: bool = False
    chunk: int = 1
    """Positions per chunk: grows while a chunk takes under ``CHUNK_SECONDS``."""
    seconds: list[float] = field(default_factory=list)

    @property
    def done(self) -> set[int]:
        return set() if self.result is None else {int(p) for p in self.result.positions}


def in_fragment_rerun() -> bool:
    """True while Streamlit reruns a fragment only (not the whole page)."""
    ctx = get_script_run_ctx()
    return bool(ctx and ctx.fragment_ids_this_run)


def job_key(seq: ecco_core.OutputSeq, params: dict[str, Any]) -> str:
    return json.dumps([seq.run_id, params], sort_keys=True)


def get_job(seq: ecco_core.OutputSeq, params: dict[str, Any]) -> Job:
    """This session's job for (run, params); another run's jobs are dropped."""
    jobs = st.session_state.get(JOBS) or {}
    jobs = {k: j for k, j in jobs.items() if j.run_id == seq.run_id}
    key = job_key(seq, params)
    if key not in jobs:
        jobs[key] = Job(seq.run_id, dict(params))
    st.session_state[JOBS] = jobs
    return jobs[key]


def merge(parts: list[Saliency]) -> Saliency:
    """One Saliency whose rows are the union of ``parts``' rows, by position (later parts win)."""
    rows: dict[int, tuple[Saliency, int]] = {}
    for part in parts:
        for i, p in enumerate(part.positions):
            rows[int(p)] = (part, i)
    order = sorted(rows)

    def stack(name: str) -> np.ndarray | None:
        if any(getattr(rows[p][0], name) is None for p in order):
            return None
        return np.stack([getattr(rows[p][0], name)[rows[p][1]] for p in order])

    first = parts[-1]
    steps = [rows[p][0].n_steps for p in order if rows[p][0].n_steps is not None]
    return replace(
        first,
        positions=np.asarray(order, dtype=np.int64),
        values=stack("values"),
        target_values=stack("target_values"),
        signed=stack("signed"),
        baseline_values=stack("baseline_values"),
        evaluations=stack("evaluations"),
        n_steps=max(steps) if steps else first.n_steps,
    )


def compute(
    seq: ecco_core.OutputSeq, params: dict[str, Any], positions: list[int], saliency=None
) -> Saliency:
    """Saliency of ``positions`` by ``params``.

    ``saliency`` is ``cached.saliency`` (the default) or any function of the same keywords (the
    benchmark passes the uncached engine call).
    """
    saliency = saliency or cached.saliency
    return saliency(seq, **params, positions=sorted(positions))


def default_params(method: str = "grad_x_input", target: str = "prob", foil: str | None = None) -> dict:
    """The page's settings for ``method`` before anything is changed (what the benchmark times)."""
    ig = method == "integrated_gradients"
    return {
        "method": method,
        "target": target,
        "foil": foil,
        "n_steps": IG_STEPS,
        "baseline": "zero",
        "quadrature": "adaptive" if ig else "auto",
    }


def add(job: Job, seq: ecco_core.OutputSeq, positions: list[int]) -> None:
    """Compute ``positions`` into ``job`` and size the next chunk by how long this one took."""
    start = time.perf_counter()
    part = compute(seq, job.params, positions)
    seconds = time.perf_counter() - start
    job.result = part if job.result is None else merge([job.result, part])
    job.seconds.append(seconds)
    per_position = seconds / max(len(positions), 1)
    job.chunk = int(np.clip(CHUNK_SECONDS / max(per_position, 1e-3), 1, 64))


def remaining(job: Job, explainable: list[int], picked: int) -> list[int]:
    """Positions still to compute, nearest to the picked one first (then onwards)."""
    done = job.done
    todo = [p for p in explainable if p not in done]
    return sorted(todo, key=lambda p: (abs(p - picked), p))
