"""Plotly builders for the logit lens: layer predictions, rankings, watched-token rankings.

Layers run top to bottom (0, the embeddings, on top; the last layer next to the output). Ranks
use a log colour scale where dark means rank 1.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import plotly.graph_objects as go

from ..errors import InputError
from ..results.labels import token_label
from .base import WINDOW, base_layout, fitted_text, scroll_long, thinned_ticks

if TYPE_CHECKING:
    from ..results.lens import LayerPredictions, Rankings, WatchRankings

RANK_COLORS = "Blues"
PROB_COLORS = "Purples"
LAYER_AXIS = "layer (0 = embeddings)"
ECCO_LAYER_AXIS = "layer (ecco's: 0 = first block)"


def layer_axis_title(lens: str) -> str:
    """The layer axis's title: lens 'ecco' numbers blocks from 0, the others hidden states."""
    return ECCO_LAYER_AXIS if lens == "ecco" else LAYER_AXIS


def compact_rank(rank: int) -> str:
    """1, 42, 613, 1.2k, 45k."""
    if rank < 1000:
        return str(int(rank))
    return f"{rank / 1000:.1f}".removesuffix(".0") + "k" if rank < 10_000 else f"{rank // 1000}k"


def _rank_colorbar(max_rank: int) -> dict:
    decades = range(int(np.ceil(np.log10(max(max_rank, 10)))) + 1)
    return {
        "title": {"text": "rank"},
        "tickvals": list(decades),
        "ticktext": [compact_rank(10**d) for d in decades],
    }


def _layer_axis(layers: np.ndarray, lens: str = "normed") -> dict:
    step = max(1, int(np.ceil(len(layers) / 40)))  # at most ~40 tick labels
    shown = list(range(0, len(layers), step))
    return {
        "title": {"text": layer_axis_title(lens)},
        "tickvals": shown,
        "ticktext": [str(int(layers[i])) for i in shown],
        "autorange": "reversed",
    }


def _rows_height(n_rows: int, per_row: int = 24, extra: int = 150) -> int:
    return max(320, n_rows * per_row + extra)


def layer_predictions_figure(pred: LayerPredictions, title: str | None = None) -> go.Figure:
    """Layers x top-k boxes: each box holds a predicted token, shaded by its probability.

    The token that actually came at the position is outlined wherever a layer ranks it in its top-k.
    """
    n_layers, k = pred.token_ids.shape
    custom = np.stack([pred.tokens, pred.token_ids.astype(str), np.repeat(pred.layers, k).reshape(-1, k)], -1)
    fig = go.Figure(
        go.Heatmap(
            z=pred.probs,
            x=np.arange(1, k + 1),
            y=np.arange(n_layers),
            text=fitted_text([[token_label(t) for t in row] for row in pred.tokens], k),
            texttemplate="%{text}",
            textfont={"size": 11},
            customdata=custom,
            hovertemplate="layer %{customdata[2]} · #%{x}: %{customdata[0]}"
            " (id %{customdata[1]})<br>probability %{z:.2%}<extra></extra>",
            colorscale=PROB_COLORS,
            zmin=0,
            zmax=1,
            xgap=2,
            ygap=2,
            colorbar={"title": {"text": "probability"}, "tickformat": ".0%"},
        )
    )
    for row, col in zip(*np.nonzero(pred.token_ids == pred.target_id)):
        fig.add_shape(
            type="rect",
            x0=col + 0.5,
            x1=col + 1.5,
            y0=row - 0.5,
            y1=row + 0.5,
            line={"color": "#e8590c", "width": 2},
        )
    target = (
        f" → actual ‘{token_label(pred.target_token, spaces=True)}’ (outlined)"
        if pred.target_id >= 0
        else " → the next token"
    )
    context = token_label(pred.context_token, spaces=True)
    default = f"Predictions after ‘{context}’ at position {pred.position - 1}{target}"
    fig.update_xaxes(title={"text": "top predictions, most likely first"}, tickvals=list(range(1, k + 1)))
    fig.update_yaxes(**_layer_axis(pred.layers, pred.lens))
    return base_layout(fig, title if title is not None else default, _rows_height(n_layers))


def rankings_figure(rankings: Rankings, title: str | None = None) -> go.Figure:
    """Layers x positions: the rank of the token that came next, log colour scale, each cell annotated."""
    n_layers, n_pos = rankings.ranks.shape
    tokens = np.broadcast_to(rankings.tokens, (n_layers, n_pos))
    shown_ranks = np.vectorize(compact_rank)(rankings.ranks).astype(str)
    custom = np.stack(
        [tokens, rankings.predicted_tokens, np.char.mod("%.2e", rankings.probs.astype(float)), shown_ranks],
        -1,
    )  # (layer, pos, 4)
    fig = go.Figure(
        go.Heatmap(
            x=np.arange(n_pos),
            y=np.arange(n_layers),
            textfont={"size": 9 if n_pos > 24 else 11},
            customdata=custom,
            hovertemplate="%{customdata[0]} ranks <b>%{customdata[3]}</b> (p=%{customdata[2]})<br>"
            "this layer predicts %{customdata[1]}<extra></extra>",
            xgap=1,
            **_rank_cells(rankings.ranks, n_pos),
        )
    )
    prompt_end = int(np.searchsorted(rankings.positions, rankings.n_input_tokens))
    if 0 < prompt_end < n_pos:
        fig.add_vline(x=prompt_end - 0.5, line={"color": "#e8590c", "width": 2, "dash": "dot"})
    labels = [token_label(str(t), p) for p, t in zip(rankings.positions, rankings.tokens)]
    fig.update_xaxes(title={"text": "token that came next (position: token)"}, **thinned_ticks(labels))
    fig.update_yaxes(**_layer_axis(rankings.layers, rankings.lens))
    scroll_long(fig, n_pos)
    default = f"Rank of the token that came next, per layer ({rankings.lens} lens)"
    extra = 220 + (60 if n_pos > WINDOW else 0)
    return base_layout(fig, title if title is not None else default, _rows_height(n_layers, extra=extra))


def _rank_cells(ranks: np.ndarray, n_cols: int | None = None) -> dict:
    """Heatmap settings shared by the rank views: log10 colour, rank 1 darkest, each cell labelled.

    Args:
        ranks: (layer, column) int ranks, 1 = top prediction.
    """
    return {
        "z": np.log10(ranks),
        "text": fitted_text([[compact_rank(r) for r in row] for row in ranks], n_cols or ranks.shape[1]),
        "texttemplate": "%{text}",
        "colorscale": RANK_COLORS,
        "reversescale": True,
        "zmin": 0,
        "zmax": max(1.0, float(np.log10(ranks.max()))),
        "ygap": 1,
        "colorbar": _rank_colorbar(int(ranks.max())),
    }


def watch_heatmap_figure(watch: WatchRankings, title: str | None = None) -> go.Figure:
    """Layers x watched tokens: each cell the rank of that token at that layer."""
    n_layers, n_cand = watch.ranks.shape
    predicted = np.broadcast_to(watch.predicted_tokens[:, None], (n_layers, n_cand))
    custom = np.stack([predicted, np.char.mod("%.2e", watch.probs.astype(float))], -1)
    fig = go.Figure(
        go.Heatmap(
            x=[token_label(str(t), spaces=True) for t in watch.watch_tokens],
            y=np.arange(n_layers),
            customdata=custom,
            hovertemplate="%{x} ranks <b>%{text}</b> (p=%{customdata[1]})<br>"
            "this layer predicts %{customdata[0]}<extra></extra>",
            xgap=2,
            **_rank_cells(watch.ranks),
        )
    )
    fig.update_xaxes(type="category")
    fig.update_yaxes(**_layer_axis(watch.layers, watch.lens))
    default = f"Ranks at position {watch.position} (␣ = space)"
    return base_layout(fig, title if title is not None else default, _rows_height(n_layers, per_row=20))


def watch_lines_figure(watch: WatchRankings, title: str | None = None) -> go.Figure:
    """Rank of each watched token by layer; log y axis with rank 1 on top."""
    fig = go.Figure()
    for j, token in enumerate(watch.watch_tokens):
        fig.add_trace(
            go.Scatter(
                x=watch.layers,
                y=watch.ranks[:, j],
                mode="lines+markers",
                name=token_label(str(token), spaces=True),
                customdata=watch.probs[:, j],
                hovertemplate=f"{token_label(str(token), spaces=True)}: layer %{{x}}, rank %{{y}} "
                "(p=%{customdata:.2e})"
                "<extra></extra>",
            )
        )
    decades = [10**d for d in range(int(np.log10(max(int(watch.ranks.max()), 1))) + 2)]
    fig.update_yaxes(
        type="log",
        autorange="reversed",
        title={"text": "rank (1 = top prediction)"},
        tickvals=decades,
        ticktext=[compact_rank(d) for d in decades],
    )
    fig.update_xaxes(title={"text": layer_axis_title(watch.lens)}, gridcolor="#eee")
    fig.update_layout(legend={"title": {"text": "watched token"}}, hovermode="x unified")
    default = f"Rank by layer at position {watch.position}"
    return base_layout(fig, title if title is not None else default, 420)


def watch_figure(watch: WatchRankings, kind: str = "heatmap", **kwargs) -> go.Figure:
    """``kind='heatmap'``: layers x candidates; ``kind='lines'``: rank by layer, rank 1 on top."""
    if kind not in ("heatmap", "lines"):
        raise InputError(f"kind must be 'heatmap' or 'lines', not {kind!r}.")
    return (watch_heatmap_figure if kind == "heatmap" else watch_lines_figure)(watch, **kwargs)
