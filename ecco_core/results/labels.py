"""How a token reads on screen: one label for plots and tables, one text form for flowing text."""

from __future__ import annotations

_ZERO_WIDTH = "\u200b\u200c\u200d\u2060\ufeff"
MAX_LABEL = 18
"""Characters of a plot label before it is cut with an ellipsis."""


def _visible_char(ch: str, newline: str) -> str:
    if ch == "\n":
        return newline
    if ch == "\t":
        return "→"
    if ord(ch) < 32:
        return chr(0x2400 + ord(ch))  # ␀-style control pictures
    return "·" if ch in _ZERO_WIDTH else ch


def visible_text(token: str) -> str:
    """Token text in a flowing text view: newlines as ↵ plus a line break, tabs as →, other
    controls as their ␀-style pictures, zero-width characters as ·."""
    return "".join(_visible_char(ch, "↵\n") for ch in token)


def token_label(token: str, position: int | None = None, spaces: bool = False) -> str:
    """A token as a one-line plot label: whitespace made visible (spaces as ␣ for a blank token,
    or always with ``spaces=True``, so ' are' and 'are' differ), long tokens cut, and
    'position: ' in front when ``position`` is given (unique axis categories)."""
    text = token.replace(" ", "␣") if spaces or token.strip() == "" else token
    text = "".join(_visible_char(ch, "↵") for ch in text)
    text = text if len(text) <= MAX_LABEL else text[: MAX_LABEL - 1] + "…"
    return text if position is None else f"{position}: {text}"
