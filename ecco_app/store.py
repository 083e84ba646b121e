"""Runs and view results of every session, in one store bounded in bytes, released with the session.

``st.cache_data`` bounds entries, not bytes, and ``st.session_state`` outlives a closed tab (a
disconnected session is kept for reconnection). So the large things (each session's run and the
results its views derived) live here instead: one process-wide LRU of ``(session id, key)``
entries whose byte sizes (``ecco_core.model.budget.nbytes``) add up to at most
``budget.store_bytes()``. A session registers with a session-scoped ``st.cache_resource`` whose
``on_release`` Streamlit calls when the session disconnects or shuts down; it drops that session's
entries at once. Session state keeps only a small ``RunHandle``.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import logging
import os
import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import streamlit as st
from streamlit.runtime import Runtime
from streamlit.runtime.scriptrunner_utils.script_run_context import get_script_run_ctx

from ecco_core.model import budget

log = logging.getLogger("ecco_explorer")
RUN = "run"  # the key of a session's current run


class ByteLRU:
    """``(session, key) -> value`` with byte sizes; the least recently used entries go first.

    Thread-safe (every session's script thread uses it). An entry larger than the whole store is
    refused (``put`` returns False). Sessions whose run was evicted are remembered (``evicted``)
    so their page can say why the run is gone.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = int(max_bytes)
        self._entries: OrderedDict[tuple[str, Any], tuple[Any, int]] = OrderedDict()
        self._lock = threading.Lock()
        self._total = 0
        self._evicted: set[str] = set()

    @property
    def total_bytes(self) -> int:
        return self._total

    def put(self, session: str, key: Any, value: Any, size: int | None = None) -> bool:
        """Keep ``value``; evict least recently used entries (never this one) to fit."""
        size = budget.nbytes(value) if size is None else int(size)
        if size > self.max_bytes:
            return False
        with self._lock:
            self._remove((session, key))
            self._entries[(session, key)] = (value, size)
            self._total += size
            if key == RUN:
                self._evicted.discard(session)
            while self._total > self.max_bytes:
                (old_session, old_key), (_, old_size) = next(iter(self._entries.items()))
                self._remove((old_session, old_key))
                if old_key == RUN:
                    self._evicted.add(old_session)
                    log.info("memory budget: dropped session %s's run (%d bytes)", old_session[:8], old_size)
        return True

    def reserve(self, session: str, size: int) -> None:
        """Make room for ``size`` bytes ``session`` is about to keep: evict the least recently used
        entries, this session's own run last (it stays the last good run until the new one is in)."""
        with self._lock:
            own_run = (session, RUN)
            for full_key in [k for k in self._entries if k != own_run] + [own_run]:
                if self._total + size <= self.max_bytes:
                    break
                self._remove(full_key)
                if full_key[1] == RUN and full_key[0] != session:
                    self._evicted.add(full_key[0])

    def get(self, session: str, key: Any) -> Any:
        with self._lock:
            entry = self._entries.get((session, key))
            if entry is None:
                return None
            self._entries.move_to_end((session, key))
            return entry[0]

    def resize(self, session: str, key: Any) -> None:
        """Re-measure an entry that grew in place (a run's own cache of derived results)."""
        value = self.get(session, key)
        if value is not None:
            self.put(session, key, value)

    def evicted(self, session: str) -> bool:
        return session in self._evicted

    def drop_session(self, session: str) -> int:
        """Forget every entry of ``session``; returns the bytes freed."""
        with self._lock:
            keys = [k for k in self._entries if k[0] == session]
            freed = sum(self._remove(k) for k in keys)
            self._evicted.discard(session)
        return freed

    def drop_key(self, session: str, predicate) -> None:
        """Forget ``session``'s entries whose key satisfies ``predicate``."""
        with self._lock:
            for k in [k for k in self._entries if k[0] == session and predicate(k[1])]:
                self._remove(k)

    def sessions(self) -> set[str]:
        with self._lock:
            return {session for session, _ in self._entries}

    def bytes_of(self, session: str) -> int:
        with self._lock:
            return sum(size for (s, _), (_, size) in self._entries.items() if s == session)

    def _remove(self, full_key: tuple[str, Any]) -> int:
        entry = self._entries.pop(full_key, None)
        if entry is None:
            return 0
        self._total -= entry[1]
        return entry[1]


@st.cache_resource(show_spinner=False)
def shared_store() -> ByteLRU:
    """The one store of this server process (shared by every session and thread)."""
    return ByteLRU(budget.store_bytes())


@dataclass
class SessionTicket:
    """What Streamlit releases when a session goes: the store ids used under it (one in a served
    app; AppTest gives every instance the same Streamlit session id, so there may be several)."""

    session_id: str
    store_ids: set[str] = field(default_factory=set)


def _release(ticket: SessionTicket) -> None:
    shared = shared_store()
    freed = sum(shared.drop_session(store_id) for store_id in list(ticket.store_ids))
    if freed:
        log.info("session %s closed: released %.1f MB", ticket.session_id[:8], freed / 2**20)
    return_memory()
    # Streamlit shuts the session down after this call: collect again once its state is gone
    # (an idle server would not run the cycle collector by itself).
    timer = threading.Timer(2.0, return_memory)
    timer.daemon = True
    timer.start()


def return_memory() -> None:
    """Collect, then hand freed heap pages back to the OS (glibc keeps them otherwise, and a
    hosted app is judged by its RSS)."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


@st.cache_resource(scope="session", on_release=_release, show_spinner=False)
def _ticket(session_id: str) -> SessionTicket:
    """Once per session. On a served app the session is also made non-resumable: Streamlit
    otherwise keeps a disconnected session (its state, and the run its widgets' callbacks hold)
    for a reconnection that may never come, until its storage is next touched; a tab that does
    reconnect starts a fresh session (its run was released anyway). ``ECCO_RESUMABLE_SESSIONS=1``
    keeps Streamlit's default."""
    if os.environ.get("ECCO_RESUMABLE_SESSIONS", "0") != "1" and Runtime.exists():
        runtime = Runtime.instance()
        if type(runtime) is Runtime:  # not AppTest's mock runtime
            runtime.mark_session_nonresumable(session_id)
    return SessionTicket(session_id)


_UID = "_ecco_store_id"


def session_id() -> str:
    """This session's id in the store, registered so its entries go when the session does.

    Streamlit's session id plus a random part kept in session state (AppTest runs every
    instance under one Streamlit session id).
    """
    ctx = get_script_run_ctx(suppress_warning=True)
    if ctx is None:
        return "no-session"
    if _UID not in st.session_state:
        st.session_state[_UID] = uuid.uuid4().hex[:12]
    sid = f"{ctx.session_id}/{st.session_state[_UID]}"
    _ticket(ctx.session_id).store_ids.add(sid)
    return sid


@dataclass(frozen=True)
class RunHandle:
    """What session state keeps of a run: the ids to find it in the store.

    Reading an attribute of the handle reads the stored run's (tests and debugging read
    ``session_state["seq"].tokens``); it raises ``LookupError`` when the run was released.
    """

    session_id: str
    run_id: str

    def resolve(self) -> Any:
        seq = shared_store().get(self.session_id, RUN)
        return seq if seq is not None and seq.run_id == self.run_id else None

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        seq = self.resolve()
        if seq is None:
            raise LookupError(f"run {self.run_id} was released")
        return getattr(seq, name)
