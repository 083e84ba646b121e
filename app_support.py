"""Streamlit-only helpers: cached loaders, session-state keys, the run, errors, pickers.

The only module with ``st.cache_resource`` / ``st.cache_data``. Pages import it; ecco_core never does.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from typing import Any

import streamlit as st

import ecco_core
from ecco_core.errors import EccoError, ModelTypeError
from ecco_core.figures import visible_label
from ecco_core.models import DEFAULT_MODEL, EMBEDDED_ENCODER

SEQ = "seq"  # the last good OutputSeq
RUN_ERROR = "run_error"  # message of the last failed run (the last good seq stays)
NOTICE = "run_notice"  # a note about the last good run (e.g. attention kept for some layers only)
SETTINGS = "run_settings"  # the settings that produced SEQ

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


@st.cache_resource(max_entries=3, show_spinner=False)
def load_lm(name: str, device: str = "auto", dtype: str | None = None) -> ecco_core.LM:
    """One shared model per (name, device, dtype) for every session."""
    return ecco_core.from_pretrained(name, device=device, dtype=dtype)


@st.cache_data(max_entries=256, ttl=3600, max_size="256MB", show_spinner=False)
def _derived(run_id: str, function: str, params_json: str, _seq: ecco_core.OutputSeq) -> Any:
    params = json.loads(params_json)
    if "." in function:
        module, name = function.rsplit(".", 1)
        return getattr(importlib.import_module(f"ecco_core.{module}"), name)(_seq, **params)
    return getattr(_seq, function)(**params)


def compute(seq: ecco_core.OutputSeq, function: str, **params: Any) -> Any:
    """A derived result of the stored run, cached by (run, function, params); never re-runs the model.

    ``function`` is an OutputSeq method ('rankings') or 'module.function' in ecco_core
    ('neurons.top_neurons'); params must be JSON-serialisable. Results must pickle (plain data).
    """
    try:
        return _derived(seq.run_id, function, json.dumps(params, sort_keys=True), seq)
    except ModelTypeError as error:
        refuse(error)


def refuse(error: ModelTypeError) -> None:
    """A view that does not apply to this kind of model: say why in one line and stop the page."""
    st.info(str(error))
    st.stop()


def require_causal(seq: ecco_core.OutputSeq, view: str) -> None:
    """Stop a view that needs next-token predictions on a masked LM, with a one-line reason."""
    try:
        seq.require_causal(view)
    except ModelTypeError as error:
        refuse(error)


def current_seq() -> ecco_core.OutputSeq:
    """The last good run, or an invitation to make one (stops the page)."""
    seq = st.session_state.get(SEQ)
    if seq is None:
        st.info("Type a prompt in the sidebar and press **Run** to see this view.")
        st.stop()
    return seq


def show_run_error() -> None:
    """Show the last run's error above the (kept) last good result."""
    if st.session_state.get(RUN_ERROR):
        st.error(st.session_state[RUN_ERROR])


def keep_last_good(key: str, make: Callable[[], Any]) -> Any:
    """Compute a view's result; on an EccoError show it and return the view's last good result."""
    slot = f"last_good::{key}"
    try:
        result = make()
    except ModelTypeError as error:  # not this model's view: no stale result from another model
        refuse(error)
    except EccoError as error:
        st.error(str(error))
        return st.session_state.get(slot)
    st.session_state[slot] = result
    return result


def intro(what: str, how: str) -> None:
    """Two sentences every view opens with: what it shows and how to read it."""
    st.markdown(f"{what} {how}")


def position_label(seq: ecco_core.OutputSeq, pos: int) -> str:
    token = seq.tokens[pos].replace("\n", "↵")
    kind = "output" if pos >= seq.n_input_tokens else "prompt"
    return f"{pos}: {token!r} ({kind})"


def position_picker(
    seq: ecco_core.OutputSeq,
    key: str,
    first: int = 1,
    default: int | None = None,
    label: str = "Position",
    help: str | None = None,
) -> int:
    """A select box over positions ``first .. n_tokens - 1`` showing each token."""
    options = list(range(first, seq.n_tokens))
    if not options:
        st.info("This run has no position to pick here.")
        st.stop()
    default = default if default in options else options[0]
    state_key = f"{key}::{seq.run_id}"
    if state_key not in st.session_state:
        st.session_state[state_key] = default
    return st.selectbox(
        label, options, key=state_key, format_func=lambda p: position_label(seq, p), help=help
    )


def token_picker(
    seq: ecco_core.OutputSeq,
    key: str,
    first: int = 1,
    last: int | None = None,
    default: int | None = None,
    label: str = "Position",
) -> int:
    """A position picked by clicking a token of the text (pills) or from a select box, kept in sync.

    ``last`` may be ``seq.n_tokens``: the token after the text, which the model has not written.
    """
    last = seq.n_tokens - 1 if last is None else last
    options = list(range(first, last + 1))
    if not options:
        st.info("This run has no position to pick here.")
        st.stop()
    box, pills = f"{key}::{seq.run_id}", f"{key}::{seq.run_id}::pills"
    if box not in st.session_state:
        st.session_state[box] = st.session_state[pills] = default if default in options else options[0]

    def text(p: int) -> str:
        return "⟨next⟩" if p >= seq.n_tokens else (visible_label(seq.tokens[p]) or "·")

    def from_pills() -> None:  # clicking the chosen token again clears the pills: keep the position
        if st.session_state[pills] is None:
            st.session_state[pills] = st.session_state[box]
        st.session_state[box] = st.session_state[pills]

    def from_box() -> None:
        st.session_state[pills] = st.session_state[box]

    def describe(p: int) -> str:
        return f"{p}: the token after the text" if p >= seq.n_tokens else position_label(seq, p)

    st.pills("Click a token", options, format_func=text, key=pills, on_change=from_pills)
    return st.selectbox(label, options, key=box, on_change=from_box, format_func=describe)


def download_buttons(frame, data: dict, stem: str, key: str) -> None:
    """CSV and JSON downloads of a view's result."""
    left, right = st.columns(2)
    left.download_button(
        "Download CSV", frame.to_csv(index=False), f"{stem}.csv", "text/csv", key=f"{key}-csv"
    )
    right.download_button(
        "Download JSON", json.dumps(data, indent=1), f"{stem}.json", "application/json", key=f"{key}-json"
    )
