"""Widgets every view shares: the intro, errors and refusals, position pickers, download buttons."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

import pandas as pd
import streamlit as st

import ecco_core
from ecco_app import state
from ecco_core.errors import EccoError, ModelTypeError
from ecco_core.figures.base import enlarged
from ecco_core.results.labels import token_label

T = TypeVar("T")
_MARKDOWN_ANYWHERE = re.compile(r"([\\`*_{}\[\]()<>#+!|~$:&^])")
"""Marks that start Markdown (or HTML, entities, ``:emoji:``, ``:red[...]``, ``$maths$``) anywhere."""
_MARKDOWN_LINE_START = re.compile(r"^(\s*\d*)([-=.)])", re.MULTILINE)
"""Marks that only count at the start of a line: lists, rules, setext headings."""


def escape_markdown(text: object) -> str:
    """``text`` as literal Markdown: the marks that would make links, images, emphasis, code,
    HTML tags, entities, headings, lists, tables, ``:emoji:``, ``:red[...]`` colours and
    ``$maths$`` are backslash-escaped (CommonMark allows it for any ASCII punctuation), and
    ``www.`` loses its autolink; quotes, commas, dashes and dots inside a line stay as typed."""
    escaped = _MARKDOWN_ANYWHERE.sub(r"\\\1", str(text))
    escaped = _MARKDOWN_LINE_START.sub(lambda m: m.group(1) + "\\" + m.group(2), escaped)
    escaped = re.sub(r"(?i)\b(www)\.", r"\1\\.", escaped)
    return escaped.replace("\n", "  \n")


def error(message: object) -> None:
    """``st.error`` of a message that may echo visitor text (escaped)."""
    st.error(escape_markdown(message))


def info(message: object) -> None:
    """``st.info`` of a message that may echo visitor text (escaped)."""
    st.info(escape_markdown(message))


PILLS_WINDOW = 24
"""Token pills shown at once around the picked token; a longer text pages through them."""
_TOKEN_BOXES = """
.ecco-text .tok, .ecco-sal .tok { box-shadow: inset 0 0 0 1px rgba(106, 61, 154, 0.28); margin: 0 1px; }
"""
_PRESENTER = """
[data-testid="stMain"] p, [data-testid="stMain"] li, [data-testid="stMain"] label p { font-size: 1.25rem; }
[data-testid="stMain"] h2 { font-size: 2.2rem; }
[data-testid="stMain"] [data-testid="stCaptionContainer"] p { font-size: 1.05rem; }
.ecco-text .tok, .ecco-sal .tok { font-size: 1.35rem !important; }
[data-testid="stMain"] [data-testid="stDownloadButton"], [data-testid="stMain"] [data-testid="stExpander"],
[data-testid="stSidebar"] [data-testid="stExpander"] { display: none; }
"""


def presenter_style() -> None:
    """Token boxes everywhere; in presenter mode larger type and no downloads or expanders."""
    css = _TOKEN_BOXES + _PRESENTER if st.session_state.get(state.PRESENTER) else _TOKEN_BOXES
    st.html(f"<style>{css}</style>")


def chart(fig, where=None, **kwargs):
    """``st.plotly_chart`` of ``fig`` (in ``where``, a column or container, if given), with every
    font enlarged in presenter mode: the one place figures are drawn."""
    if st.session_state.get(state.PRESENTER):
        enlarged(fig)
    return (where or st).plotly_chart(fig, **kwargs)


def start_here() -> None:
    """The first screen: what the app is for and the three things to try first."""
    st.markdown(
        "**Start here.** Press **Run** in the sidebar: the model continues the example prompt "
        "(the countries of the EU). Then try:\n"
        "1. **Layer predictions**: click ' Croatia' and see at which layer the model settles on it.\n"
        "2. **Saliency**: hover the generated tokens to see which earlier tokens drove each one.\n"
        "3. **Watch tokens**: pick *Keys to the cabinet* and compare ' is' with ' are' layer by layer."
    )
    st.caption(
        "Every page works on the last run; the address bar is a share link that reproduces it, "
        "and *Save or open a run* in the sidebar keeps it as a file. *Presenter mode* enlarges the type."
    )


def intro(what: str, how: str) -> None:
    """Two sentences every view opens with: what it shows and how to read it."""
    st.markdown(f"{what} {how}")


def show_run_error() -> None:
    """Show the last run's error above the (kept) last good result."""
    if st.session_state.get(state.RUN_ERROR):
        error(st.session_state[state.RUN_ERROR])


def refuse(error: ModelTypeError) -> NoReturn:
    """A view that does not apply to this kind of model: say why in one line and stop the page."""
    info(error)
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
    except ModelTypeError as refusal:  # not this model's view: no stale result from another model
        refuse(refusal)
    except EccoError as failure:
        error(failure)
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

    shown = options
    if len(options) > PILLS_WINDOW:  # a long text: the tokens around the picked one, paged
        at = options.index(st.session_state[box]) if st.session_state[box] in options else 0
        start = min(max(at - PILLS_WINDOW // 2, 0), len(options) - PILLS_WINDOW)
        shown = options[start : start + PILLS_WINDOW]
        if st.session_state.get(pills) not in shown:
            st.session_state[pills] = None
        st.caption(
            f"Tokens {shown[0]}–{shown[-1]} of {options[0]}–{options[-1]}: type in the box below to "
            "search the whole text."
        )
    st.pills("Click a token", shown, format_func=text, key=pills, on_change=from_pills)
    return st.selectbox(label, options, key=box, on_change=from_box, format_func=describe)


def download_buttons(
    result: Any, stem: str, key: str, what: str | None = None, frame: Callable[[], pd.DataFrame] | None = None
) -> None:
    """CSV and JSON downloads of a view's ``result`` (its ``to_frame()`` and ``to_dict()``, or
    ``frame()`` for the CSV), labelled by ``what`` they hold. Both are made on click: a drawn page
    holds no copy (an 800-token attention map is 640,000 rows)."""
    left, right = st.columns(2)
    name = f" {what}" if what else ""
    left.download_button(
        f"Download{name} CSV",
        lambda: (frame or result.to_frame)().to_csv(index=False),
        f"{stem}.csv",
        "text/csv",
        key=f"{key}-csv",
        on_click="ignore",
    )
    right.download_button(
        f"Download{name} JSON",
        lambda: json.dumps(result.to_dict(), indent=1),
        f"{stem}.json",
        "application/json",
        key=f"{key}-json",
        on_click="ignore",
    )


def fit_kept(key: str, low: int, high: int) -> None:
    """Clamp a kept setting (a number or a (low, high) range) into this run's bounds before its
    widget draws: a value kept from a longer run or a larger model would make Streamlit refuse it."""
    value = st.session_state.get(key)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        st.session_state[key] = min(max(value, low), high)
    elif isinstance(value, (tuple, list)) and len(value) == 2:
        a, b = (min(max(v, low), high) for v in value)
        st.session_state[key] = (min(a, b), max(a, b))
