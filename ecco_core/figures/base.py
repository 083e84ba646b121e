"""What every figure shares: the look, and colours on a scale."""

from __future__ import annotations

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
