"""Long computations a step at a time in a fragment: a progress line, Stop / Continue, and the
last good result on screen until the new one is whole (or as far as it got, where a part reads).

A page describes its computation as a generator of ``Progress`` steps that returns the result
(``cached.rankings_steps``, ``factors_steps``, ``layer_similarity_steps``, over the engine's
``lens.rankings_steps``, ``neurons.nmf_steps`` and ``similarity.similarity_steps``). ``show``
keeps one ``StepJob`` per (run, view, settings): each fragment run draws what there is, then
advances the generator for about ``STEP_SECONDS``, and its ticker (``components.ticker``) has the
browser ask for the next run, so the screen never waits longer than one step. Stop leaves the
generator where it is; Continue resumes it. A job that fails shows its error and keeps the last
good result (``widgets.keep_last_good``'s rule).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any

import streamlit as st
from streamlit.runtime import Runtime

import ecco_core
from ecco_app import progressive, state, widgets
from ecco_app.components import ticker
from ecco_core.errors import EccoError, ModelTypeError
from ecco_core.results.progress import Progress

JOBS = "stepwise_jobs"  # session key: {job key: StepJob}, the current run's only
KEEP_JOBS = 8
"""Jobs kept per session (the oldest, never the one on screen, goes first). Finished jobs hold
only their result; of a view's unfinished (stopped) jobs only the newest is kept, because a
generator holds its working memory (an NMF's matrix) outside the byte-bounded store."""
STEP_SECONDS = 0.8
"""A fragment run advances its job for about this long before it draws again."""

Steps = Generator[Progress, None, Any]


@dataclass
class StepJob:
    """One long computation: its generator, how far it got, and its result once whole."""

    run_id: str
    key: str
    steps: Steps | None
    progress: Progress | None = None
    result: Any = None
    stopped: bool = False
    failed: str | None = None
    seconds: list[float] = field(default_factory=list)
    """Wall time of each fragment run's work (for tests and the benchmark)."""

    @property
    def finished(self) -> bool:
        return self.result is not None

    @property
    def working(self) -> bool:
        return not (self.finished or self.stopped or self.failed)

    def advance(self, seconds: float = STEP_SECONDS) -> None:
        """Run steps until ``seconds`` have passed (at least one step), or the result is whole."""
        start = time.perf_counter()
        try:
            while True:
                self.progress = next(self.steps)
                if time.perf_counter() - start >= seconds:
                    break
        except StopIteration as done:
            self.result, self.steps = done.value, None
        finally:
            self.seconds.append(time.perf_counter() - start)


def job_key(seq: ecco_core.OutputSeq, name: str, params: dict[str, Any]) -> str:
    return json.dumps([seq.run_id, name, params], sort_keys=True, default=str)


def get_job(
    seq: ecco_core.OutputSeq, name: str, params: dict[str, Any], start: Callable[[], Steps]
) -> StepJob:
    """This session's job for (run, view, params), started if new; other runs' jobs are dropped."""
    jobs = {k: j for k, j in (st.session_state.get(JOBS) or {}).items() if j.run_id == seq.run_id}
    key = job_key(seq, name, params)
    if key not in jobs:  # a view's unfinished jobs hold their working memory: only one stays
        view = json.dumps([seq.run_id, name])[:-1]
        jobs = {k: j for k, j in jobs.items() if j.finished or not k.startswith(view)}
        jobs[key] = StepJob(seq.run_id, key, start())
    jobs[key] = jobs.pop(key)  # the newest last
    while len(jobs) > KEEP_JOBS:
        jobs.pop(next(iter(jobs)))
    st.session_state[JOBS] = jobs
    return jobs[key]


def status_line(job: StepJob, name: str, doing: str) -> None:
    """The progress bar with a Stop button, or the Stopped note with Continue."""
    text, button = st.columns([4, 1])
    progress = job.progress
    share = progress.share if progress else 0.0
    where = f": {progress.what}" if progress and progress.what else ""
    if job.failed:
        widgets.error(job.failed)
        text.caption(f"{doing} stopped{where}. The last good result stays on screen.")
        button.button("Try again", key=f"stepwise_retry::{name}", on_click=_retry, args=(job,))
    elif job.stopped:
        kept = (
            "what was done is drawn"
            if progress and progress.partial is not None
            else "the last good result stays"
        )
        text.caption(f"Stopped{where}: {kept}. Continue to finish it.")
        resume = lambda: setattr(job, "stopped", False)  # noqa: E731
        button.button("Continue", key=f"stepwise_continue::{name}", on_click=resume)
    else:
        text.progress(min(max(share, 0.0), 1.0), text=f"{doing}{where}…")
        button.button("Stop", key=f"stepwise_stop::{name}", on_click=lambda: setattr(job, "stopped", True))


def _retry(job: StepJob) -> None:
    """A failed job starts again from its first step (its generator is gone)."""
    st.session_state[JOBS].pop(job.key, None)


def show(
    seq: ecco_core.OutputSeq,
    name: str,
    params: dict[str, Any],
    start: Callable[[], Steps],
    draw: Callable[[Any], None],
    doing: str,
) -> None:
    """Draw view ``name``'s result for ``params``, computing it step by step in a fragment.

    Args:
        seq: the run.
        name: the view's key (its last good result, its job, its buttons' keys).
        params: the settings the result depends on (the job's key).
        start: makes the generator of ``Progress`` steps that returns the result.
        draw: draws a result (the whole one, a part from ``Progress.partial``, or the last good).
        doing: what the progress line says, e.g. "Ranking the tokens".
    """
    job = get_job(seq, name, params, start)

    def body() -> None:
        if job.working and not progressive.in_fragment_rerun():  # a full run: work first, then draw
            note = st.empty()
            note.progress(job.progress.share if job.progress else 0.0, text=f"{doing}…")
            work(job, name, doing, first_run_seconds())
            note.empty()
        if job.finished and state.last_good(seq, name) is not job.result:
            state.keep_good(seq, name, job.result)  # the last good result from now on
        elif not job.finished:
            status_line(job, name, doing)
        partial = job.progress.part() if job.progress and not job.finished else None
        shown = job.result if job.finished else partial if partial is not None else state.last_good(seq, name)
        if shown is not None:
            draw(shown)
        stepped = False
        if job.working and progressive.in_fragment_rerun():  # a full run worked before it drew
            work(job, name, doing, STEP_SECONDS)
            stepped = True
        # A step was taken (the next run draws it) or work remains: the browser asks for the next run.
        ticker.tick(f"stepwise_tick::{name}", active=stepped or job.working)

    st.fragment(body)()


def work(job: StepJob, name: str, doing: str, seconds: float) -> None:
    """Advance ``job`` for about ``seconds``; a failure is shown and marks the job failed."""
    if not job.working:
        return
    try:
        job.advance(seconds)
    except ModelTypeError as refusal:
        widgets.refuse(refusal)
    except EccoError as failure:
        job.failed = str(failure)
    except Exception as failure:  # keep what is drawn; say why it stopped
        job.failed = f"{type(failure).__name__}: {failure}"
        logging.getLogger("ecco_explorer").exception("%s stopped", name)


def first_run_seconds() -> float:
    """How long a full script run works before it draws: one step when served (the ticker has the
    browser ask for the rest); to the end under AppTest, where no browser asks (a test of the steps
    patches ``served``)."""
    return STEP_SECONDS if served() else float("inf")


def served() -> bool:
    """True in a real server (not AppTest's mock Runtime)."""
    return Runtime.exists() and type(Runtime.instance()) is Runtime
