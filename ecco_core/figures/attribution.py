"""Plotly builders for input saliency: the explained-token x earlier-token heatmap."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import plotly.graph_objects as go

from ..results.labels import token_label
from .base import WINDOW, base_layout, scroll_long, thinned_ticks

if TYPE_CHECKING:
    from ..results.attribution import Saliency


def saliency_heatmap(result: Saliency, title: str | None = None) -> go.Figure:
    """Heatmap of ``result.values``: one row per explained token, one column per earlier token.

    Cells at and after the explained token are blank (a token cannot depend on them). Signed
    methods (erasure) use a diverging scale centred on 0.
    """
    last = int(result.positions.max()) if len(result.positions) else 0
    grid = result.values[:, :last].astype(float)  # (n_out, last)
    columns = np.arange(last)
    grid = np.where(columns[None] < result.positions[:, None], grid, np.nan)
    labels = [token_label(result.tokens[p], p) for p in columns]
    signed = bool(np.nanmin(grid, initial=0.0) < 0)
    top = float(np.nanmax(np.abs(grid), initial=0.0)) or 1.0
    fig = go.Figure(
        go.Heatmap(
            z=grid,
            x=columns,
            y=[token_label(result.tokens[p], p) for p in result.positions],
            colorscale="RdBu" if signed else "Purples",
            zmid=0 if signed else None,
            zmin=-top if signed else 0,
            zmax=top,
            colorbar={"title": {"text": result.unit.split(" (")[0]}},
            customdata=np.broadcast_to(np.array(labels, dtype=object)[None], grid.shape),
            hovertemplate="explaining %{y}<br>earlier token %{customdata}<br>%{z:.4f}<extra></extra>",
            xgap=1,
            ygap=1,
        )
    )
    fig.add_vline(x=result.n_input_tokens - 0.5, line={"color": "#777", "dash": "dot", "width": 1})
    fig.update_yaxes(autorange="reversed", title="explained token")
    fig.update_xaxes(title="earlier token", **thinned_ticks(labels))
    scroll_long(fig, last)
    height = 160 + 22 * len(result.positions) + (60 if last > WINDOW else 0)
    return base_layout(fig, title if title is not None else _title(result), height=max(height, 320))


def _title(result: Saliency) -> str:
    contrast = f"{result.target} vs {result.foil!r}"
    target = {"prob": "probability", "logit": "logit"}.get(result.target, contrast)
    return f"{result.method.replace('_', ' ')} · target: {target}"
