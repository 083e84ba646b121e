"""Figures of FFN neurons: factor heatmap and sparklines, top neurons, one neuron, layer similarity."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import hex_to_rgb, qualitative, unlabel_rgb
from plotly.subplots import make_subplots

from ..results.labels import token_label
from .base import WINDOW, base_layout, position_axis

if TYPE_CHECKING:
    from ..results.neurons import Factorization, NeuronTrace, Routing, TopNeurons
    from ..results.similarity import LayerSimilarity

FACTOR_COLORS = [
    *qualitative.D3,
    *(f"#{int(r):02x}{int(g):02x}{int(b):02x}" for r, g, b in map(unlabel_rgb, qualitative.Dark2)),
]
"""One colour per factor (cycled past 18); the text tint and the sparklines share them."""


def factor_color(factor: int) -> str:
    """The colour of ``factor`` (a hex string)."""
    return FACTOR_COLORS[factor % len(FACTOR_COLORS)]


def factor_names(n_factors: int, method: str = "nmf") -> list[str]:
    prefix = "PC" if method == "pca" else "Factor "
    return [f"{prefix}{f}" for f in range(n_factors)]


def factor_heatmap(result: Factorization) -> go.Figure:
    """Factor x position heatmap of ``result.components`` (diverging around 0 for PCA)."""
    labels = [token_label(result.tokens[p], p) for p in result.positions.tolist()]
    names = factor_names(result.n_factors, result.method)
    signed = result.signed
    limit = float(np.abs(result.components).max()) or 1.0
    fig = go.Figure(
        go.Heatmap(
            z=result.components,
            x=np.arange(len(labels)),
            y=names,
            customdata=np.broadcast_to(np.array(labels, dtype=object), result.components.shape),
            colorscale="RdBu_r" if signed else "Purples",
            zmin=-limit if signed else 0.0,
            zmax=limit,
            colorbar={"title": {"text": "score" if signed else "strength"}, "thickness": 12},
            hovertemplate="%{y} at %{customdata}: %{z:.3g}<extra></extra>",
        )
    )
    fig.update_yaxes(autorange="reversed")
    position_axis(fig, labels)
    title = "Principal components x position" if signed else "Factors x position"
    return base_layout(fig, title, height=230 + 26 * result.n_factors + (60 if len(labels) > WINDOW else 0))


def factor_sparklines(result: Factorization, selected: int | None = None) -> go.Figure:
    """One small line per factor across the chosen positions; ``selected`` drawn bold, others faded."""
    n = result.n_factors
    names = factor_names(n, result.method)
    labels = [token_label(result.tokens[p], p) for p in result.positions.tolist()]
    fig = make_subplots(rows=n, cols=1, shared_xaxes=True, vertical_spacing=0.012)
    for f in range(n):
        faded = selected is not None and f != selected
        red, green, blue = hex_to_rgb(factor_color(f))
        fig.add_trace(
            go.Scatter(
                x=np.arange(len(labels)),
                y=result.components[f],
                customdata=labels,
                mode="lines",
                name=names[f],
                line={"color": "#c8c8c8" if faded else factor_color(f), "width": 1 if faded else 2},
                fill="tozeroy",
                fillcolor="rgba(200,200,200,0.25)" if faded else f"rgba({red},{green},{blue},0.45)",
                hovertemplate=f"{names[f]}" + " at %{customdata}: %{y:.3g}<extra></extra>",
            ),
            row=f + 1,
            col=1,
        )
        fig.add_annotation(
            text=names[f],
            x=0,
            xref="paper",
            xanchor="right",
            y=0.5,
            yref=f"y{f + 1 if f else ''} domain",
            showarrow=False,
            font={"size": 11, "color": factor_color(f)},
        )
        fig.update_yaxes(
            showticklabels=False,
            showgrid=False,
            zeroline=True,
            row=f + 1,
            col=1,
        )
    fig.update_xaxes(showgrid=False)
    position_axis(fig, labels, row=n, col=1)
    fig.update_layout(showlegend=False)
    base_layout(fig, "", height=170 + 46 * n + (60 if len(labels) > WINDOW else 0))
    fig.update_layout(margin={"l": 80})
    return fig


def factor_top_neurons_bar(frame: pd.DataFrame, factor: int, method: str = "nmf") -> go.Figure:
    """Horizontal bars of one factor's top neurons (a ``Factorization.top_neurons`` frame)."""
    labels = [f"L{layer} · N{neuron}" for layer, neuron in zip(frame["layer"], frame["neuron"], strict=True)]
    fig = go.Figure(
        go.Bar(
            x=frame["loading"],
            y=labels,
            orientation="h",
            marker_color=factor_color(factor),
            hovertemplate="layer %{y}: loading %{x:.3g}<extra></extra>",
        )
    )
    fig.update_yaxes(autorange="reversed")
    fig.update_xaxes(title="loading")
    name = factor_names(factor + 1, method)[factor]
    return base_layout(fig, f"Top neurons of {name}", height=120 + 22 * len(frame))


def top_neurons_bar(top: TopNeurons) -> go.Figure:
    """Horizontal bars of the top neurons at one position (orange: a negative value)."""
    labels = top.labels()
    shown = top.above_mean if top.relative else top.values
    fig = go.Figure(
        go.Bar(
            x=shown,
            y=labels,
            orientation="h",
            marker_color=["#6a51a3" if v >= 0 else "#e6550d" for v in shown],
            customdata=top.values,
            hovertemplate="%{y}: %{x:.4g} (activation %{customdata:.4g})<extra></extra>",
        )
    )
    fig.update_yaxes(autorange="reversed")
    fig.update_xaxes(title="activation above the neuron's mean" if top.relative else "activation")
    token = top.token.replace("\n", "↵")
    stack = f" ({top.side})" if top.side else ""
    what = "Neurons most above their usual level" if top.relative else "Largest activations"
    return base_layout(fig, f"{what} at {top.position}: {token!r}{stack}", height=120 + 22 * len(labels))


def neuron_trace_figure(trace: NeuronTrace) -> go.Figure:
    """Bars of one neuron's activation at every position: purple positive, orange negative.

    A dotted line marks where the generated tokens start.
    """
    labels = [token_label(t, p) for p, t in enumerate(trace.tokens)]
    colors = np.where(trace.values >= 0, "#6a51a3", "#e6550d").tolist()
    fig = go.Figure(
        go.Bar(
            x=np.arange(len(labels)),
            y=trace.values,
            customdata=labels,
            marker_color=colors,
            hovertemplate="%{customdata}: %{y:.4g}<extra></extra>",
        )
    )
    if 0 < trace.n_input_tokens < len(labels):
        fig.add_vline(
            x=trace.n_input_tokens - 0.5,
            line={"dash": "dot", "color": "#555"},
            annotation_text="generated ▶",
            annotation_position="top right",
        )
    position_axis(fig, labels)
    fig.update_yaxes(title="activation", zeroline=True, zerolinecolor="#999")
    height = 440 + (60 if len(labels) > WINDOW else 0)
    return base_layout(fig, f"Layer {trace.layer}, neuron {trace.neuron} across the text", height=height)


def routing_heatmap(result: Routing) -> go.Figure:
    """(layer, expert) rows x positions: the router's weight on each expert for each token (blank:
    not routed), every MoE layer stacked; the shared expert's gate as its own row where there is one."""
    dense = result.dense()  # (layer, expert, pos)
    rows, names = [], []
    for i, layer in enumerate(result.layers):
        rows.extend(np.where(dense[i] > 0, dense[i], np.nan))
        names.extend(f"L{layer} · E{e}" for e in range(result.n_experts))
        if result.shared_weights is not None:
            rows.append(result.shared_weights[i])
            names.append(f"L{layer} · shared")
    labels = [token_label(t, p) for p, t in enumerate(result.tokens)]
    fig = go.Figure(
        go.Heatmap(
            z=np.asarray(rows),
            x=np.arange(len(labels)),
            y=names,
            customdata=np.broadcast_to(np.array(labels, dtype=object), (len(names), len(labels))),
            colorscale="Blues",
            zmin=0.0,
            zmax=1.0,
            colorbar={"title": {"text": "router weight"}, "thickness": 12},
            hovertemplate="%{y} at %{customdata}: %{z:.3f}<extra></extra>",
        )
    )
    fig.update_yaxes(autorange="reversed", type="category", tickfont={"size": 10})
    position_axis(fig, labels)
    title = "Expert routing: which experts each token went to (blank: not routed)"
    return base_layout(fig, title, height=230 + 16 * len(names) + (60 if len(labels) > WINDOW else 0))


def similarity_heatmap(result: LayerSimilarity) -> go.Figure:
    """Layer x layer heatmap of a ``LayerSimilarity`` (0 to 1, brighter is more alike)."""
    labels = result.labels()
    name = {"cka": "Linear CKA", "cca": "Mean CCA", "svcca": "SVCCA", "pwcca": "PWCCA"}[result.method]
    source = "hidden states" if result.source == "hidden" else "FFN activations"
    fig = go.Figure(
        go.Heatmap(
            z=result.matrix,
            x=labels,
            y=labels,
            colorscale="Viridis",
            zmin=0.0,
            zmax=1.0,
            colorbar={"title": {"text": name}, "thickness": 12},
            hovertemplate="layers %{y} and %{x}: %{z:.3f}<extra></extra>",
        )
    )
    axis = "layer (emb = embeddings)" if result.source == "hidden" else "layer"
    # category axes: the numeric-looking labels ('emb', '1', '2', ...) must not become a number line
    fig.update_xaxes(title=axis, type="category", constrain="domain", tickfont={"size": 10})
    fig.update_yaxes(
        title=axis, type="category", autorange="reversed", scaleanchor="x", tickfont={"size": 10}
    )
    stack = f"{result.side} " if result.side else ""
    return base_layout(fig, f"{name} between {stack}layers ({source})", height=620)
