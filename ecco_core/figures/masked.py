"""Masked-token predictions figure: layers down, ranks across, each cell a token and its probability."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import plotly.graph_objects as go

from ..results.labels import token_label
from .base import base_layout

if TYPE_CHECKING:
    from ..results.masked import MaskedPredictions


def masked_predictions_figure(result: MaskedPredictions) -> go.Figure:
    """Heatmap of probabilities (layer x rank) with the predicted tokens written in the cells."""
    n_layers, k = result.probs.shape
    text = np.array([[token_label(t) for t in row] for row in result.tokens], dtype=object)
    fig = go.Figure(
        go.Heatmap(
            z=result.probs,
            x=[f"#{r}" for r in range(1, k + 1)],
            y=[f"layer {layer}" for layer in range(n_layers)],
            text=text,
            texttemplate="%{text}",
            zmin=0.0,
            zmax=1.0,
            colorscale="Purples",
            colorbar={"title": {"text": "p"}, "thickness": 12},
            hovertemplate="%{y}, rank %{x}<br>%{text}: %{z:.3f}<extra></extra>",
        )
    )
    title = f"Predictions at position {result.position} ({token_label(result.token.strip())})"
    base_layout(fig, title, 90 + 28 * n_layers)
    fig.update_yaxes(autorange="reversed")
    return fig
