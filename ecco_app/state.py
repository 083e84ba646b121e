"""Session state: its keys, their first values, the last good run and each view's last good result.

Every key is initialised once per session behind ``if key not in st.session_state`` (``init``),
so a value set before the first run (a test's, a widget's) is never overwritten. The run itself
and the views' last good results live in the byte-bounded ``ecco_app.store`` (released when the
session goes); session state keeps a ``RunHandle``. A test may still put an ``OutputSeq`` under
``SEQ``: the next script run moves it into the store.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

import ecco_core
from ecco_app import store
from ecco_app.store import RunHandle
from ecco_core.model import budget
from ecco_core.model.weights import DEFAULT_MODEL, EMBEDDED_ENCODER

SEQ = "seq"  # a RunHandle of the last good OutputSeq (in the store)
RUN_ERROR = "run_error"  # message of the last failed run (the last good seq stays)
NOTICE = "run_notice"  # a note about the last good run (e.g. attention kept for some layers only)
SETTINGS = "run_settings"  # the settings that produced SEQ
LAST_GOOD = "last_good"  # (store key) {view key: result} of the current run only

PRESENTER = "presenter_mode"  # larger type, fewer controls
CUSTOM_EXAMPLE = "✎ Your own prompt"  # the example box once the prompt was edited

EXAMPLES = {
    "EU countries (list recall)": (
        "The countries of the European Union are:\n1. Austria\n2. Belgium\n3. Bulgaria\n4."
    ),
    "Keys to the cabinet (agreement)": "The keys to the cabinet",
    "Capital cities (facts)": "The capital of France is Paris. The capital of Germany is",
    "Counting": "one, two, three, four,",
    "Mixed: list, date, sentence": (
        "Shopping list:\n1. apples\n2. bread\n3. milk\nThe party is on 12 March 2024, "
        "and everyone is invited to bring a friend."
    ),
}
MODEL_CHOICES = {  # short labels: the sidebar cuts long ones off
    DEFAULT_MODEL: DEFAULT_MODEL,
    f"{EMBEDDED_ENCODER} (encoder)": EMBEDDED_ENCODER,
    "Other (hub id, folder, .gguf)": None,
}


def init() -> None:
    """Give every app-level key its first value, once per session."""
    first_values: dict[str, Any] = {SEQ: None, RUN_ERROR: None, NOTICE: None, SETTINGS: {}, LAST_GOOD: {}}
    for key, value in first_values.items():
        if key not in st.session_state:
            st.session_state[key] = value


def prompt_edited() -> None:
    """A prompt typed by hand no longer is the example the box shows."""
    example = st.session_state.get("example")
    if EXAMPLES.get(example) != st.session_state.get("prompt"):
        st.session_state["example"] = st.session_state["example_shown"] = CUSTOM_EXAMPLE


def store_run(seq: ecco_core.OutputSeq, settings: dict[str, Any], notice: str | None) -> None:
    """A run that worked: it becomes the last good run (views' last good results start afresh).

    It replaces the session's previous run, whose views' results are released. A run larger
    than the whole store is refused with a message and the previous run stays.
    """
    sid = store.session_id()
    shared = store.shared_store()
    if not shared.put(sid, store.RUN, seq):
        store_run_error(
            f"This run needs {budget.nbytes(seq) / 2**20:.0f} MB, more than the "
            f"{shared.max_bytes / 2**20:.0f} MB this server keeps for all runs: use a shorter prompt, "
            "fewer tokens or turn off attention."
        )
        return
    shared.drop_key(sid, lambda key: isinstance(key, tuple) and len(key) > 1 and key[1] != seq.run_id)
    st.session_state[SEQ] = RunHandle(sid, seq.run_id)
    st.session_state[SETTINGS] = settings
    st.session_state[RUN_ERROR] = None
    st.session_state[NOTICE] = notice


def store_run_error(message: str) -> None:
    """A run that failed: its one-line message; the last good run stays."""
    st.session_state[RUN_ERROR] = message


def current_seq() -> ecco_core.OutputSeq:
    """The last good run, or an invitation to make one (stops the page)."""
    seq = stored_seq()
    if seq is None:
        if store.shared_store().evicted(store.session_id()):
            st.warning(
                "Your last run was released to keep this server within its memory budget "
                "(other visitors' runs came later). Press **Run** again to redo it."
            )
        st.info("Type a prompt in the sidebar and press **Run** to see this view.")
        st.stop()
    return seq


def stored_seq() -> ecco_core.OutputSeq | None:
    """The last good run, or None (no run yet, or released from the store); never stops the page."""
    value = st.session_state.get(SEQ)
    if isinstance(value, ecco_core.OutputSeq):  # placed directly (a test): move it into the store
        sid = store.session_id()
        store.shared_store().drop_session(sid)
        store.shared_store().put(sid, store.RUN, value)
        st.session_state[SEQ] = RunHandle(sid, value.run_id)
        return value
    if isinstance(value, RunHandle):
        return value.resolve()
    return None


def run_settings() -> dict[str, Any]:
    """The settings (model, prompt, generation) that produced the last good run."""
    return st.session_state.get(SETTINGS) or {}


def last_good(seq: ecco_core.OutputSeq, key: str) -> Any:
    """The last result view ``key`` drew for this run (None if none, or if it was another run's)."""
    return store.shared_store().get(store.session_id(), (LAST_GOOD, seq.run_id, key))


def keep_good(seq: ecco_core.OutputSeq, key: str, result: Any) -> None:
    """Remember ``result`` as view ``key``'s last good result for this run; another run's are dropped."""
    sid, shared = store.session_id(), store.shared_store()
    shared.drop_key(sid, lambda k: isinstance(k, tuple) and k[0] == LAST_GOOD and k[1] != seq.run_id)
    shared.put(sid, (LAST_GOOD, seq.run_id, key), result)
