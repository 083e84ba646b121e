"""Attention figures: one token-to-token map, and the layer x head grid of thumbnails."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import plotly.graph_objects as go

from ..results.labels import token_label
from .base import WINDOW, base_layout, scroll_long, thinned_ticks

if TYPE_CHECKING:
    from ..results.attention import AttentionMap, HeadGrid

COLORSCALE = "Blues"
GAP = 2
"""Empty cells between thumbnails in the grid."""


def attention_map_figure(
    amap: AttentionMap, height: int | None = None, zmax: float | None = None
) -> go.Figure:
    """Heatmap of one map: keys along x, queries down y (row i is what query i attends to).

    ``zmax`` caps the colour scale (default: 1 for one head, the largest weight otherwise).
    """
    n_q, n_k = amap.weights.shape
    queries = [token_label(t, i + amap.query_offset) for i, t in enumerate(amap.query_tokens)]
    keys = [token_label(t, i + amap.key_offset) for i, t in enumerate(amap.key_tokens)]
    pairs = np.char.add(np.char.add(np.array(queries)[:, None], " → "), np.array(keys)[None])  # (q, k)
    fig = go.Figure(
        go.Heatmap(
            z=amap.weights,
            x=np.arange(n_k),
            y=np.arange(n_q),
            customdata=pairs,  # one string a cell: a second array would double a long run's chart
            zmin=0.0,
            zmax=zmax or (1.0 if amap.method == "head" else float(max(amap.weights.max(), 1e-6))),
            colorscale=COLORSCALE,
            colorbar={"title": {"text": "weight"}, "thickness": 12},
            hovertemplate="query → key: %{customdata}<br>weight %{z:.3f}<extra></extra>",
        )
    )
    rows = min(n_q, WINDOW)  # a long run shows its last WINDOW queries (and keys); drag or slide for more
    size = height or int(min(900, max(320, 18 * rows + 140))) + (60 if n_k > WINDOW else 0)
    base_layout(fig, amap.title, size)
    fig.update_yaxes(title_text="query (attending token)", tickfont={"size": 11}, **thinned_ticks(queries))
    if n_q > WINDOW:
        fig.update_yaxes(range=[n_q - 0.5, n_q - WINDOW - 0.5])  # reversed: the first query on top
    else:
        fig.update_yaxes(autorange="reversed")
    fig.update_xaxes(title_text="key (attended token)", tickfont={"size": 11}, **thinned_ticks(keys))
    fig.update_yaxes(tickangle=0)
    scroll_long(fig, n_k)
    return fig


def tiled(thumbnails: np.ndarray, gap: int = GAP) -> np.ndarray:
    """(layer, head, r, c) thumbnails as one (layer * (r + gap), head * (c + gap)) image, NaN gaps."""
    n_layers, n_heads, rows, cols = thumbnails.shape
    image = np.full((n_layers * (rows + gap), n_heads * (cols + gap)), np.nan, dtype=np.float32)
    for layer in range(n_layers):
        for head in range(n_heads):
            top, left = layer * (rows + gap), head * (cols + gap)
            image[top : top + rows, left : left + cols] = thumbnails[layer, head]
    return image


def head_grid_figure(grid: HeadGrid, selected: tuple[int, int] | None = None) -> go.Figure:
    """Every head as a small heatmap, layers down, heads across; click a head to enlarge it.

    One tiled heatmap (fast for hundreds of heads) plus an invisible marker at each thumbnail's
    centre carrying ``customdata = [layer, head]`` for click selection.
    """
    n_layers, n_heads, rows, cols = grid.thumbnails.shape
    image = tiled(grid.thumbnails)  # (layer * (rows + gap), head * (cols + gap))
    centres_x = np.arange(n_heads) * (cols + GAP) + (cols - 1) / 2
    centres_y = np.arange(n_layers) * (rows + GAP) + (rows - 1) / 2
    fig = go.Figure(
        go.Heatmap(
            z=image,
            zmin=0.0,
            zmax=1.0,
            colorscale=COLORSCALE,
            showscale=False,
            hoverinfo="skip",
        )
    )
    layer_of, head_of = np.meshgrid(grid.layers, np.arange(n_heads), indexing="ij")  # (layer, head)
    x_of, y_of = np.meshgrid(centres_x, centres_y)  # (layer, head)
    stats = np.stack([grid.entropy, grid.to_first], axis=-1).reshape(-1, 2)  # (layer * head, 2)
    fig.add_trace(
        go.Scatter(
            x=x_of.reshape(-1),
            y=y_of.reshape(-1),
            mode="markers",
            marker={"size": max(8, min(40, cols * 2)), "color": "rgba(0,0,0,0)", "symbol": "square"},
            customdata=np.column_stack([layer_of.reshape(-1), head_of.reshape(-1), stats]),
            hovertemplate="layer %{customdata[0]}, head %{customdata[1]}<br>entropy %{customdata[2]:.2f}"
            " bits<br>on first token %{customdata[3]:.2f}<extra>click to enlarge</extra>",
            showlegend=False,
        )
    )
    if selected is not None and selected[0] in grid.layers:
        row, head = grid.layers.index(selected[0]), selected[1]
        top, left = row * (rows + GAP) - 0.9, head * (cols + GAP) - 0.9
        fig.add_shape(
            type="rect", x0=left, x1=left + cols + 0.8, y0=top, y1=top + rows + 0.8, line={"color": "#d62728"}
        )
    row_px = max(40, min(110, 760 // max(n_heads, 1)))  # about square thumbnails at ~900 px wide
    base_layout(fig, "", 70 + n_layers * row_px)
    fig.update_xaxes(
        tickvals=centres_x,
        ticktext=[str(h) for h in range(n_heads)],  # short: 9+ heads across a projector's chart
        title={"text": "head"},
        side="top",
        showgrid=False,
        zeroline=False,
    )
    fig.update_yaxes(
        tickvals=centres_y,
        ticktext=[f"layer {layer}" for layer in grid.layers],
        autorange="reversed",
        showgrid=False,
        zeroline=False,
    )
    fig.update_layout(clickmode="event+select", dragmode=False, hovermode="closest")
    return fig
