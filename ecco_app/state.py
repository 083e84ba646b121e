"""Session state: its keys, their first values, the last good run and each view's last good result.

Every key is initialised once per session behind ``if key not in st.session_state`` (``init``),
so a value set before the first run (a test's, a widget's) is never overwritten.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

import ecco_core
from ecco_core.model.weights import DEFAULT_MODEL, EMBEDDED_ENCODER

SEQ = "seq"  # the last good OutputSeq
RUN_ERROR = "run_error"  # message of the last failed run (the last good seq stays)
NOTICE = "run_notice"  # a note about the last good run (e.g. attention kept for some layers only)
SETTINGS = "run_settings"  # the settings that produced SEQ
LAST_GOOD = "last_good"  # {"run_id": ..., "results": {view key: result}}: the current run's only

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
MODEL_CHOICES = {
    f"{DEFAULT_MODEL} (embedded, causal)": DEFAULT_MODEL,
    f"{EMBEDDED_ENCODER} (embedded, encoder)": EMBEDDED_ENCODER,
    "Other: hub id, folder or .gguf": None,
}


def init() -> None:
    """Give every app-level key its first value, once per session."""
    first_values: dict[str, Any] = {SEQ: None, RUN_ERROR: None, NOTICE: None, SETTINGS: {}, LAST_GOOD: {}}
    for key, value in first_values.items():
        if key not in st.session_state:
            st.session_state[key] = value


def store_run(seq: ecco_core.OutputSeq, settings: dict[str, Any], notice: str | None) -> None:
    """A run that worked: it becomes the last good run (views' last good results start afresh)."""
    st.session_state[SEQ] = seq
    st.session_state[SETTINGS] = settings
    st.session_state[RUN_ERROR] = None
    st.session_state[NOTICE] = notice


def store_run_error(message: str) -> None:
    """A run that failed: its one-line message; the last good run stays."""
    st.session_state[RUN_ERROR] = message


def current_seq() -> ecco_core.OutputSeq:
    """The last good run, or an invitation to make one (stops the page)."""
    seq = st.session_state.get(SEQ)
    if seq is None:
        st.info("Type a prompt in the sidebar and press **Run** to see this view.")
        st.stop()
    return seq


def run_settings() -> dict[str, Any]:
    """The settings (model, prompt, generation) that produced the last good run."""
    return st.session_state.get(SETTINGS) or {}


def last_good(seq: ecco_core.OutputSeq, key: str) -> Any:
    """The last result view ``key`` drew for this run (None if none, or if it was another run's)."""
    kept = st.session_state.get(LAST_GOOD) or {}
    return kept.get("results", {}).get(key) if kept.get("run_id") == seq.run_id else None


def keep_good(seq: ecco_core.OutputSeq, key: str, result: Any) -> None:
    """Remember ``result`` as view ``key``'s last good result for this run; another run's are dropped."""
    kept = st.session_state.get(LAST_GOOD) or {}
    if kept.get("run_id") != seq.run_id:
        kept = {"run_id": seq.run_id, "results": {}}
    kept["results"][key] = result
    st.session_state[LAST_GOOD] = kept
