"""Token HTML. Every token string passes through ``html.escape``; nothing else reaches the page."""

from __future__ import annotations

import html
from collections.abc import Sequence

import numpy as np

from .figures import sequential_color

_TOKEN_STYLE = (
    "display:inline;white-space:pre-wrap;border-radius:3px;padding:1px 0;"
    "font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:0.95rem;line-height:1.9;"
)


def visible(token: str) -> str:
    """Token text as shown: newlines as ↵ plus a line break, tabs as →, other controls as ␀-style."""
    out = []
    for ch in token:
        if ch == "\n":
            out.append("↵\n")
        elif ch == "\t":
            out.append("→")
        elif ord(ch) < 32:
            out.append(chr(0x2400 + ord(ch)))
        elif ch in "\u200b\u200c\u200d\u2060\ufeff":
            out.append("·")
        else:
            out.append(ch)
    return "".join(out)


def token_span(
    token: str,
    background: str = "transparent",
    title: str = "",
    classes: str = "",
    attrs: str = "",
    style: str = "",
) -> str:
    """One escaped token as a ``<span>``; ``attrs`` and ``style`` must come from trusted values only."""
    text = html.escape(visible(token)) or "&#8203;"
    return (
        f'<span class="tok {html.escape(classes)}" style="{_TOKEN_STYLE}{style}background:{background}" '
        f'title="{html.escape(title)}" {attrs}>{text}</span>'
    )


def highlight_html(
    tokens: Sequence[str],
    values: np.ndarray | None = None,
    n_input_tokens: int | None = None,
    special: np.ndarray | None = None,
    colorscale: str = "Purples",
    vmax: float | None = None,
) -> str:
    """Escaped HTML of the text with each token tinted by ``values`` (pos,) in [0, vmax].

    A marker separates the prompt from the generated tokens; special tokens are boxed.
    """
    values = np.zeros(len(tokens)) if values is None else np.asarray(values, dtype=float)
    top = vmax if vmax is not None else float(np.nanmax(np.abs(values))) if len(values) else 0.0
    parts = []
    for pos, token in enumerate(tokens):
        if n_input_tokens is not None and pos == n_input_tokens:
            parts.append('<span class="out-marker" title="generated text starts here">▶</span>')
        share = 0.0 if top <= 0 else float(np.clip(abs(values[pos]) / top, 0, 1))
        background = sequential_color(share, colorscale) if share > 0 else "transparent"
        is_special = special is not None and bool(special[pos])
        kind = "output" if n_input_tokens is not None and pos >= n_input_tokens else "input"
        parts.append(
            token_span(
                token,
                background,
                title=f"{pos}: {token!r} = {values[pos]:.4g}",
                classes=f"{kind}{' special' if is_special else ''}",
            )
        )
    return f'<div class="ecco-text" style="line-height:1.9">{"".join(parts)}</div>'


def output_text_html(tokens: Sequence[str], n_input_tokens: int, special: np.ndarray | None = None) -> str:
    """Escaped HTML of a run: prompt tokens plain, generated tokens underlined in colour."""
    parts = []
    for pos, token in enumerate(tokens):
        if pos == n_input_tokens:
            parts.append('<span class="out-marker" title="generated text starts here">▶</span>')
        is_output = pos >= n_input_tokens
        is_special = special is not None and bool(special[pos])
        background = "#ede3f5" if is_output else "transparent"
        border = "outline:1px dashed #9a8aa8;" if is_special else ""
        parts.append(
            token_span(token, background, title=f"{pos}: {token!r}", attrs=f'data-pos="{pos}"', style=border)
        )
    return f'<div class="ecco-text">{"".join(parts)}</div>'
