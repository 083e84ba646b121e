"""What every figure shares: the look, and colours on a scale."""

from __future__ import annotations

import math
import re

import plotly.graph_objects as go
from plotly.colors import sample_colorscale

FONT = "Inter, system-ui, -apple-system, Segoe UI, sans-serif"


def sequential_color(share: float, colorscale: str = "Purples") -> str:
    """The colour at ``share`` in [0, 1] of a named Plotly colour scale (an 'rgb(...)' string)."""
    return sample_colorscale(colorscale, [min(max(share, 0.0), 1.0)])[0]


def base_layout(fig: go.Figure, title: str = "", height: int | None = None) -> go.Figure:
    """Shared look: title, font, margins, white background."""
    fig.update_layout(
        title={"text": title, "x": 0.01, "xanchor": "left"} if title else None,
        font={"family": FONT, "size": 13},
        margin={"l": 10, "r": 10, "t": 50 if title else 20, "b": 10},
        plot_bgcolor="white",
        paper_bgcolor="white",
        height=height,
    )
    return fig


# ----- readable on a projector (1024 x 768) ----------------------------------------------------------

PLOT_WIDTH = 360
"""Pixels of plot area a full-width chart gets at 1024 x 768 beside the sidebar (the narrowest
screen we design for): cell text and tick labels are sized to fit it. Measured in Chromium on a
20-token run: the chart is 564 px wide and its plot area 395 px (rankings) or 366 px (layer
predictions, whose layer labels are longer); with 640, cell text touched its neighbours."""
CHAR_PX = 0.62
"""Width of one character, as a share of the font size (a sans-serif average)."""
WINDOW = 60
"""Columns shown at once in a long heatmap; a range slider below scrolls through the rest."""
TICK_PX = 16
"""Spacing a rotated tick label needs (its line height at font 11-13)."""


def fitted_text(labels: list[list[str]], n_cols: int, font_size: int = 11) -> list[list[str]]:
    """Cell labels cut to what fits a cell of ``PLOT_WIDTH / min(n_cols, WINDOW)`` pixels; a number
    that does not fit is left out rather than cut (a cut rank would read as another number), and
    every cell is blank where not even three characters fit (the hover still shows the full text)."""
    cell_px = PLOT_WIDTH / max(1, min(n_cols, WINDOW)) - 4
    chars = int(cell_px / (CHAR_PX * font_size))
    if chars < 3:
        return [["" for _ in row] for row in labels]

    def fit(text: str) -> str:
        if len(text) <= chars:
            return text
        return "" if NUMBER.match(text) else text[: chars - 1] + "…"

    return [[fit(t) for t in row] for row in labels]


NUMBER = re.compile(r"^[-+]?[\d.,]+(e[-+]?\d+)?[kKMG%]?$")
"""A cell label that is a number (a rank such as 5.5k, a probability, a percentage)."""


def thinned_ticks(labels: list[str]) -> dict:
    """Axis settings showing every n-th label, so rotated labels never overlap at PLOT_WIDTH."""
    shown = min(len(labels), WINDOW)
    most = max(1, PLOT_WIDTH // TICK_PX)
    step = max(1, -(-shown // most))
    vals = list(range(0, len(labels), step))
    return {
        "tickvals": vals,
        "ticktext": [labels[i] for i in vals],
        "tickangle": -90,  # upright: one line height across, so the spacing rule is exact
    }


def scroll_long(fig: go.Figure, n_cols: int, **where) -> go.Figure:
    """A heatmap with more than ``WINDOW`` columns opens on the last ``WINDOW`` (the generated
    tokens) with a range slider to scroll through the rest. ``where`` (``row=``, ``col=``) puts
    the slider under one subplot; the window applies to every x axis (shared axes move together)."""
    if n_cols > WINDOW:
        fig.update_xaxes(range=[n_cols - WINDOW - 0.5, n_cols - 0.5])
        fig.update_xaxes(rangeslider={"visible": True, "thickness": 0.05}, **where)
    return fig


def position_axis(fig: go.Figure, labels: list[str], **where) -> go.Figure:
    """An x axis of positions 0 .. len(labels) - 1 that reads at 1024 x 768: upright labels thinned
    to fit (``thinned_ticks``) and, past ``WINDOW`` positions, a window with a range slider."""
    fig.update_xaxes(**thinned_ticks(labels), **where)
    return scroll_long(fig, len(labels), **where)


# ----- presenter mode: every font of a figure larger, in one place ----------------------------------

PRESENTER_SCALE = 1.3
"""How much larger a figure's type is in presenter mode (the page's CSS enlarges text ~1.25x)."""
PRESENTER_ROOM = 1.25
"""Extra room per enlarged tick label: at 1.3x the labels' line height fills all of
``TICK_PX * 1.3`` (Chromium at 1024 x 768 found them touching)."""
THEME_SIZES = {"font": 12, "tick": 12, "axis_title": 14, "title": 16, "legend": 12, "hover": 13}
"""The sizes a chart gets where it sets none: Streamlit's chart theme (its template sets tick
labels to 12 px and axis titles to 14 px, which the layout's base font does not reach) and
plotly's hover label (13 px)."""


def _scaled(font, scale: float, default: float) -> None:
    """Set ``font.size`` to ``scale`` times its size (``default`` where it has none)."""
    if font is not None:
        font.size = round((font.size or default) * scale, 1)


def _thinned_again(axis, scale: float) -> None:
    """Keep every k-th of an x axis's thinned tick labels so that, ``scale`` times larger, each
    still gets ``TICK_PX * scale * PRESENTER_ROOM`` pixels of a ``PLOT_WIDTH`` chart (upright
    labels: one line height each)."""
    if axis.tickangle != -90 or axis.tickvals is None or axis.ticktext is None:
        return  # not a position axis of ``thinned_ticks``
    vals, text = list(axis.tickvals), list(axis.ticktext)
    if len(vals) < 2:
        return
    low, high = sorted(axis.range) if axis.range else (vals[0], vals[-1])
    visible = sum(low <= v <= high for v in vals) or len(vals)
    keep = math.ceil(visible * TICK_PX * scale * PRESENTER_ROOM / PLOT_WIDTH)
    if keep > 1:
        axis.tickvals, axis.ticktext = vals[::keep], text[::keep]


def enlarged(fig: go.Figure, scale: float = PRESENTER_SCALE) -> go.Figure:
    """``fig`` with every font ``scale`` times larger: the base font (colour bars and annotations
    inherit it), titles, legends, every axis's tick labels and title, cell text and hover labels,
    each set explicitly so the Streamlit theme's template sizes do not win. Heatmap cell text is
    cut again to what fits its cell at the larger size (``fitted_text``), and thinned tick labels
    are thinned again (``_thinned_again``). Changes ``fig`` in place and returns it."""
    layout = fig.layout
    _scaled(layout.font, scale, THEME_SIZES["font"])
    _scaled(layout.title.font, scale, THEME_SIZES["title"])
    _scaled(layout.legend.font, scale, THEME_SIZES["legend"])
    _scaled(layout.hoverlabel.font, scale, THEME_SIZES["hover"])

    def axis_fonts(axis) -> None:
        _scaled(axis.tickfont, scale, THEME_SIZES["tick"])
        _scaled(axis.title.font, scale, THEME_SIZES["axis_title"])

    fig.for_each_xaxis(axis_fonts)
    fig.for_each_xaxis(lambda axis: _thinned_again(axis, scale))
    fig.for_each_yaxis(axis_fonts)
    for annotation in layout.annotations or ():
        if annotation.font.size is not None:
            _scaled(annotation.font, scale, layout.font.size)
    for trace in fig.data:
        if "textfont" in trace and trace.textfont.size is not None:
            _scaled(trace.textfont, scale, layout.font.size)
        if trace.type == "heatmap" and trace.text is not None and trace.texttemplate:
            rows = [list(map(str, row)) for row in trace.text]
            size = trace.textfont.size or layout.font.size
            if rows and rows[0]:
                trace.text = fitted_text(rows, len(rows[0]), font_size=size)
    return fig
