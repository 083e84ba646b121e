"""ecco's MinimalHighlighter as a Streamlit component: HTML, JS and CSS inline, no CDN, no build step.

The JavaScript and the styles are the engine's one highlighter (``ecco_core/explorables/
highlighter.js`` and ``.css``, which notebooks inline too), read once at import. Token text
travels as JSON and is set with ``textContent`` (never as HTML), so a prompt such as
``<img src=x onerror=alert(1)>`` shows as text. Hovering a generated token
tints every earlier token by its score; clicking pins it and reports the position back to Python.
For the attention methods the colour scale leaves out the first token, where attention sinks pile up.
"""

from __future__ import annotations

from collections.abc import Callable

import streamlit as st

from ecco_core.highlight import HIGHLIGHTER_CSS, HIGHLIGHTER_HTML, HIGHLIGHTER_JS, highlighter_data
from ecco_core.results import Saliency

_CSS = HIGHLIGHTER_CSS
_JS = HIGHLIGHTER_JS + "\nexport default eccoHighlighter;\n"  # a Streamlit v2 component is a module
_component = st.components.v2.component("ecco_saliency_highlighter", html=HIGHLIGHTER_HTML, css=_CSS, js=_JS)

__all__ = ["highlighter_data", "minimal_highlighter"]


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
