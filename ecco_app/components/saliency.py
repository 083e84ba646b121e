"""ecco's MinimalHighlighter as a Streamlit component: HTML, JS and CSS inline, no CDN, no build step.

The JavaScript (``saliency.js``) and the styles (``saliency.css``) are files beside this module,
read once at import. Token text travels as JSON and is set with ``textContent`` (never as HTML),
so a prompt such as ``<img src=x onerror=alert(1)>`` shows as text. Hovering a generated token
tints every earlier token by its score; clicking pins it and reports the position back to Python.
For the attention methods the colour scale leaves out the first token, where attention sinks pile up.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import streamlit as st

from ecco_core.results import Saliency
from ecco_core.results.labels import visible_text

HERE = Path(__file__).parent
_CSS = (HERE / "saliency.css").read_text(encoding="utf-8")
_JS = (HERE / "saliency.js").read_text(encoding="utf-8")
_HTML = '<div class="ecco-sal"></div><div class="ecco-sal-info"></div>'

_component = st.components.v2.component("ecco_saliency_highlighter", html=_HTML, css=_CSS, js=_JS)


def highlighter_data(result: Saliency, selected: int, explainable: list[int]) -> dict:
    """The JSON the component draws: display tokens, explained rows, the pinned position."""
    values = np.nan_to_num(result.values.astype(float))  # (explained position, pos)
    return {
        "shown": [visible_text(tok) for tok in result.tokens],
        "n_input_tokens": int(result.n_input_tokens),
        "positions": [int(p) for p in result.positions],
        "values": [[round(float(v), 6) for v in row[: int(p)]] for row, p in zip(values, result.positions)],
        "explainable": [int(p) for p in explainable],
        "selected": int(selected),
        "unit": result.unit.split(" (")[0],
        # Attention piles onto the first token (an attention sink): scale colours without it.
        "scale_from": 1 if result.method.startswith("attention") else 0,
    }


def minimal_highlighter(
    result: Saliency,
    selected: int,
    explainable: list[int],
    key: str,
    on_click: Callable[[], None] | None = None,
):
    """Mount the highlighter; ``on_click`` runs when a generated token is clicked.

    Returns the component's result; ``.clicked`` is the clicked position (or None).
    """
    return _component(
        data=highlighter_data(result, selected, explainable),
        key=key,
        on_clicked_change=on_click or (lambda: None),
    )
