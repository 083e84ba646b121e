"""Token HTML. Every token string passes through ``html.escape``; nothing else reaches the page.

The hover-driven highlighter (``explorables/highlighter.js`` and ``.css``) is the one painter of the
app's saliency component and of notebooks; ``highlighter_data`` is the JSON it draws.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from plotly.colors import find_intermediate_color, hex_to_rgb, unlabel_rgb

from .figures.base import sequential_color
from .results.labels import visible_text

if TYPE_CHECKING:
    from .results import Factorization, Saliency

EXPLORABLES = Path(__file__).parent / "explorables"
HIGHLIGHTER_JS = (EXPLORABLES / "highlighter.js").read_text(encoding="utf-8")
"""``function eccoHighlighter(component)``: a classic script (no module syntax)."""
HIGHLIGHTER_CSS = (EXPLORABLES / "highlighter.css").read_text(encoding="utf-8")
HIGHLIGHTER_HTML = '<div class="ecco-sal"></div><div class="ecco-sal-info"></div>'

_TOKEN_STYLE = (
    "display:inline;white-space:pre-wrap;border-radius:3px;padding:1px 0;"
    "font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:0.95rem;line-height:1.9;"
)


def token_span(
    token: str,
    background: str = "transparent",
    title: str = "",
    classes: str = "",
    attrs: str = "",
    style: str = "",
) -> str:
    """One escaped token as a ``<span>``; ``attrs`` and ``style`` must come from trusted values only."""
    text = html.escape(visible_text(token)) or "&#8203;"
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


def attention_text_html(
    tokens: Sequence[str],
    weights: np.ndarray,
    query: int | None = None,
    titles: Sequence[str] | None = None,
    offset: int = 0,
    n_input_tokens: int | None = None,
    colorscale: str = "Blues",
    vmax: float | None = None,
) -> str:
    """Escaped HTML of the attended tokens tinted by one query's attention.

    Args:
        tokens: key_pos strings (the tokens attended to).
        weights: (key_pos,) the chosen query's weights; the strongest gets the full colour.
        query: index in ``tokens`` of the attending token (outlined), when it is one of them.
        titles: one hover text per token (e.g. what that token itself attends to most).
        offset: sequence position of ``tokens[0]`` (shown in titles).
        n_input_tokens: sequence position where the ▶ generated-text marker goes.
        vmax: the weight that gets the darkest tint (default: the largest); larger ones clip.
    """
    weights = np.asarray(weights, dtype=float)
    top = vmax if vmax is not None else float(weights.max()) if len(weights) else 0.0
    parts = []
    for i, token in enumerate(tokens):
        pos = i + offset
        if n_input_tokens is not None and pos == n_input_tokens and i > 0:
            parts.append('<span class="out-marker" title="generated text starts here">▶</span>')
        share = 0.0 if top <= 0 else float(np.clip(weights[i] / top, 0, 1))
        # at most 70% of the scale, so dark text stays readable on the strongest tint
        background = sequential_color(0.7 * share, colorscale) if share > 0.02 else "transparent"
        title = f"{pos}: {token!r} · weight {weights[i]:.3f}"
        if titles is not None:
            title += "\n" + titles[i]
        style = "outline:2px solid #d62728;" if query == i else ""
        parts.append(token_span(token, background, title=title, attrs=f'data-pos="{pos}"', style=style))
    return f'<div class="ecco-text attention-text" style="line-height:1.9">{"".join(parts)}</div>'


def factor_html(
    tokens: Sequence[str],
    factor: np.ndarray,
    strength: np.ndarray,
    colors: Sequence[str],
    n_input_tokens: int | None = None,
    names: Sequence[str] | None = None,
) -> str:
    """Escaped HTML of the text with each token tinted in its factor's colour.

    Args:
        tokens: pos strings.
        factor: (pos,) int factor of each token; -1 leaves the token untinted.
        strength: (pos,) in [0, 1], how deep the tint is (0 white, 1 the full colour).
        colors: one colour per factor (hex or 'rgb(...)' strings from trusted code).
        n_input_tokens: where the ▶ marker between prompt and generated text goes.
        names: one display name per factor for the hover title.
    """

    def rgb(color: str) -> tuple[float, ...]:
        return tuple(float(c) for c in (hex_to_rgb(color) if color.startswith("#") else unlabel_rgb(color)))

    parts = []
    for pos, token in enumerate(tokens):
        if n_input_tokens is not None and pos == n_input_tokens:
            parts.append('<span class="out-marker" title="generated text starts here">▶</span>')
        f, share = int(factor[pos]), float(np.clip(strength[pos], 0, 1))
        background, title = "transparent", f"{pos}: {token!r}"
        if f >= 0 and share > 0:
            color = rgb(colors[f % len(colors)])
            tint = find_intermediate_color((255.0, 255.0, 255.0), color, 0.15 + 0.85 * share)
            background = "rgb({:.0f},{:.0f},{:.0f})".format(*tint)
            title += f" · {names[f] if names else f'factor {f}'} {share:.2f}"
        parts.append(token_span(token, background, title=title, attrs=f'data-pos="{pos}"'))
    return f'<div class="ecco-text" style="line-height:1.9">{"".join(parts)}</div>'


def saliency_bars_html(
    tokens: Sequence[str],
    values: np.ndarray,
    explained: int,
    n_input_tokens: int | None = None,
    unit: str = "",
) -> str:
    """Escaped HTML of ecco's detailed saliency view: each earlier token with a bar and its value.

    Args:
        tokens: pos strings.
        values: (pos,) scores of the tokens before ``explained`` (later ones are not shown).
        explained: position of the explained token (outlined at the end).
        n_input_tokens: where the ▶ marker between prompt and generated text goes.
        unit: what the values mean, for the hover title.
    """
    values = np.asarray(values, dtype=float)
    top = float(np.max(np.abs(values[:explained]), initial=0.0)) or 1.0
    cells = []
    for pos in range(explained + 1):
        if n_input_tokens is not None and pos == n_input_tokens:
            cells.append('<span class="out-marker" title="generated text starts here">▶</span>')
        is_target = pos == explained
        value = 0.0 if is_target else float(values[pos])
        share = min(abs(value) / top, 1.0)
        color = "#e4572e" if value < 0 else "#6a3d9a"
        bar = (
            f'<span style="display:block;height:4px;width:{100 * share:.0f}%;background:{color};'
            'border-radius:2px;margin-top:2px"></span>'
        )
        label = "explained" if is_target else f"{value:.3f}"
        token = token_span(
            tokens[pos],
            "transparent" if not is_target else "#fff3b0",
            title=f"{pos}: {tokens[pos]!r} = {value:.4g} {unit}".strip(),
            style="outline:2px solid #c9a400;" if is_target else "",
        )
        cells.append(
            '<span style="display:inline-flex;flex-direction:column;align-items:stretch;margin:2px 3px;'
            f'min-width:2.4em;vertical-align:top">{token}{bar}'
            f'<span style="font-size:0.7rem;color:#555;font-family:monospace">{label}</span></span>'
        )
    return f'<div class="ecco-text ecco-bars" style="line-height:1.4">{"".join(cells)}</div>'


def legend_html(names: Sequence[str], colors: Sequence[str]) -> str:
    """Escaped HTML of coloured name chips (a legend for factor colours)."""
    chips = (
        f'<span style="background:{html.escape(color)};color:white;border-radius:3px;padding:1px 6px;'
        f'margin-right:4px;font-size:0.8rem">{html.escape(name)}</span>'
        for name, color in zip(names, colors)
    )
    return f'<div class="ecco-legend">{" ".join(chips)}</div>'


def peak_shares(values: np.ndarray) -> np.ndarray:
    """Each value's magnitude as a share of its row's largest magnitude (a row of zeros stays 0).

    Args:
        values: (..., pos) float, e.g. (factor, pos) factor scores or (pos,) one neuron's activations.

    Returns:
        (..., pos) float in [0, 1].
    """
    magnitude = np.abs(np.asarray(values, dtype=float))  # (..., pos)
    peak = magnitude.max(axis=-1, keepdims=True)  # (..., 1)
    return magnitude / np.where(peak > 0, peak, 1.0)


def sign_classes(values: np.ndarray) -> np.ndarray:
    """Colour classes for signed values: 0 positive, 1 negative, -1 zero (left unpainted).

    Args:
        values: (pos,) float.

    Returns:
        (pos,) int in {0, 1, -1}.
    """
    values = np.asarray(values)
    return np.where(values > 0, 0, np.where(values < 0, 1, -1))


def strongest_shares(shares: np.ndarray, strongest: np.ndarray) -> np.ndarray:
    """The share of each position's strongest factor.

    Args:
        shares: (factor, pos) float in [0, 1] (see ``peak_shares``).
        strongest: (pos,) int index of the strongest factor, -1 where none.

    Returns:
        (pos,) float: ``shares[strongest[p], p]`` (factor 0's share where ``strongest`` is -1; the
        painter leaves those positions blank).
    """
    strongest = np.asarray(strongest)
    return np.asarray(shares)[np.maximum(strongest, 0), np.arange(strongest.shape[0])]


def highlighter_data(result: Saliency, selected: int, explainable: Sequence[int]) -> dict:
    """The JSON the highlighter draws: display tokens, explained rows, the pinned position.

    Args:
        result: a saliency result; its rows are the explained positions.
        selected: the position painted first (pinned).
        explainable: positions that react to hover and click.
    """
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


def factor_painting(
    result: Factorization, choice: int | None, colors: Sequence[str], names: Sequence[str]
) -> str:
    """The text painted by one factor (``choice``) or, for None, each token by its strongest factor.

    PCA factors are signed: the positive side in the factor's colour, the negative side in grey.

    Args:
        result: a factorisation of a run's activations.
        choice: a factor index, or None for the strongest factor of each token.
        colors: one colour per factor; names: one display name per factor.
    """
    full = result.full_components()  # (factor, pos)
    share = peak_shares(full)  # (factor, pos) in [0, 1]
    if choice is None:
        strongest = result.strongest_factor()
        return factor_html(
            result.tokens, strongest, strongest_shares(share, strongest), colors, result.n_input_tokens, names
        )
    return factor_html(
        result.tokens,
        sign_classes(full[choice]),
        share[choice],
        [colors[choice], "#7f7f7f"],
        result.n_input_tokens,
        [f"{names[choice]} +", f"{names[choice]} −"],
    )
