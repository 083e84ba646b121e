"""Widgets every view shares: the intro, errors and refusals, position pickers, download buttons."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

import pandas as pd
import streamlit as st

import ecco_core
from ecco_app import state
from ecco_core.errors import EccoError, ModelTypeError
from ecco_core.results.labels import token_label

T = TypeVar("T")


def intro(what: str, how: str) -> None:
    """Two sentences every view opens with: what it shows and how to read it."""
    st.markdown(f"{what} {how}")


def show_run_error() -> None:
    """Show the last run's error above the (kept) last good result."""
    if st.session_state.get(state.RUN_ERROR):
        st.error(st.session_state[state.RUN_ERROR])


def refuse(error: ModelTypeError) -> NoReturn:
    """A view that does not apply to this kind of model: say why in one line and stop the page."""
    st.info(str(error))
    st.stop()


def require_causal(seq: ecco_core.OutputSeq, view: str) -> None:
    """Stop a view that needs next-token predictions on a masked LM, with a one-line reason."""
    try:
        seq.require_causal(view)
    except ModelTypeError as error:
        refuse(error)


def keep_last_good(seq: ecco_core.OutputSeq, key: str, make: Callable[[], T]) -> T | None:
    """Compute a view's result; on an EccoError show it and return this run's last good result.

    A result never outlives its run: after a new Run, a failing view shows nothing rather than
    the previous run's result.
    """
    try:
        result = make()
    except ModelTypeError as error:  # not this model's view: no stale result from another model
        refuse(error)
    except EccoError as error:
        st.error(str(error))
        return state.last_good(seq, key)
    state.keep_good(seq, key, result)
    return result


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
    """A select box over positions ``first .. n_tokens - 1`` showing each token (state key per run)."""
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
        return "⟨next⟩" if p >= seq.n_tokens else (token_label(seq.tokens[p]) or "·")

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


def download_buttons(frame: pd.DataFrame, data: dict[str, Any], stem: str, key: str) -> None:
    """CSV and JSON downloads of a view's result."""
    left, right = st.columns(2)
    left.download_button(
        "Download CSV", frame.to_csv(index=False), f"{stem}.csv", "text/csv", key=f"{key}-csv"
    )
    right.download_button(
        "Download JSON", json.dumps(data, indent=1), f"{stem}.json", "application/json", key=f"{key}-json"
    )
