"""Plotly builders for interventions: patching heatmaps (approximation, exact, side by side) and
approximation-vs-exact scatter, a regeneration's two continuations, direct logit attribution as a
waterfall or a layer x head heatmap."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..errors import InputError
from ..results.interventions import SITE_NAMES, site_rows
from ..results.labels import token_label
from .base import base_layout

if TYPE_CHECKING:
    from ..results.interventions import LogitAttribution, Patching, Regeneration

METRIC_NAMES = {"logit_diff": "logit difference", "prob": "probability"}


def _token_axis(result: Patching) -> list[str]:
    return [
        token_label(c, i) if c == k else f"{token_label(c, i)} / {token_label(k)}"
        for i, (c, k) in enumerate(zip(result.clean_tokens, result.corrupted_tokens))
    ]


def _heatmap(grid: np.ndarray, x: list[str], y: list[str], top: float, showscale: bool = True) -> go.Heatmap:
    return go.Heatmap(
        z=grid,
        x=x,
        y=y,
        colorscale="RdBu",
        zmid=0,
        zmin=-top,
        zmax=top,
        showscale=showscale,
        colorbar={"title": {"text": "effect"}},
        hovertemplate="%{y} · %{x}<br>effect %{z:.4g}<extra></extra>",
        xgap=1,
        ygap=1,
    )


def patching_figure(
    result: Patching, site: str = "resid", kind: str = "both", title: str | None = None
) -> go.Figure:
    """Layers x positions heatmap of patching effects for ``site``: kind 'approx', 'exact' or
    'both' (side by side, one colour scale; exact cells not computed are blank)."""
    if kind not in ("approx", "exact", "both"):
        raise InputError(f"kind must be 'approx', 'exact' or 'both', not {kind!r}.")
    approx, exact = result.grid(site, "approx"), result.grid(site, "exact")
    x, y = _token_axis(result), site_rows(site, approx.shape[0])
    shown = [approx, exact] if kind == "both" else [approx if kind == "approx" else exact]
    top = max(float(np.nanmax(np.abs(g), initial=0.0)) for g in shown) or 1.0
    if kind == "both":
        fig = make_subplots(
            rows=1, cols=2, shared_yaxes=True, subplot_titles=("attribution patching", "exact")
        )
        fig.add_trace(_heatmap(approx, x, y, top), row=1, col=1)
        fig.add_trace(_heatmap(exact, x, y, top, showscale=False), row=1, col=2)
    else:
        fig = go.Figure(_heatmap(shown[0], x, y, top))
    fig.update_yaxes(autorange="reversed")
    fig.update_xaxes(tickangle=-60)
    metric = METRIC_NAMES.get(result.metric, result.metric)
    default = f"Patching the {SITE_NAMES.get(site, site)} from the corrupted run · change in {metric}"
    return base_layout(fig, default if title is None else title, height=max(320, 24 * len(y) + 160))


def patching_scatter(result: Patching) -> go.Figure:
    """Exact effect against its first-order approximation for every cell computed both ways."""
    frame = result.comparison()
    fig = go.Figure(
        go.Scatter(
            x=frame["approximation"],
            y=frame["exact"],
            mode="markers",
            text=[
                f"{s} {lay} · pos {p}" for s, lay, p in zip(frame["site"], frame["layer"], frame["position"])
            ],
            hovertemplate="%{text}<br>approx %{x:.4g}<br>exact %{y:.4g}<extra></extra>",
        )
    )
    if len(frame):
        low = float(min(frame["approximation"].min(), frame["exact"].min()))
        high = float(max(frame["approximation"].max(), frame["exact"].max()))
        fig.add_trace(
            go.Scatter(
                x=[low, high],
                y=[low, high],
                mode="lines",
                line={"dash": "dot", "color": "#999"},
                showlegend=False,
                hoverinfo="skip",
            )
        )
    fig.update_xaxes(title="attribution patching (approximation)")
    fig.update_yaxes(title="exact patching")
    return base_layout(fig, "Approximation against exact", height=380)


def regeneration_figure(result: Regeneration, title: str | None = None) -> go.Figure:
    """Each generated token's probability, original and intervened continuation, step by step."""
    fig = go.Figure()
    for name, tokens, p in (
        ("original", result.original_tokens, result.original_p),
        ("intervened", result.intervened_tokens, result.intervened_p),
    ):
        fig.add_trace(
            go.Scatter(
                x=list(range(len(tokens))),
                y=p,
                mode="lines+markers+text",
                name=name,
                text=[token_label(t) for t in tokens],
                textposition="top center",
                hovertemplate="step %{x}: %{text}<br>p %{y:.3f}<extra>" + name + "</extra>",
            )
        )
    fig.update_xaxes(title="generated token")
    fig.update_yaxes(title="probability of the chosen token", range=[0, 1.08])
    return base_layout(fig, title if title is not None else result.description, height=380)


def logit_attribution_figure(
    result: LogitAttribution, kind: str = "waterfall", title: str | None = None
) -> go.Figure:
    """Direct logit attribution: 'waterfall' (components adding up to the logit) or 'heads'
    (layer x head heatmap)."""
    token = repr(token_label(result.token))  # quoted: a leading space shows
    if kind == "heads":
        if result.head_contributions is None:
            raise InputError("This attribution has no per-head values (computed with heads=False).")
        grid = result.head_contributions
        top = float(np.abs(grid).max()) or 1.0
        fig = go.Figure(
            go.Heatmap(
                z=grid,
                x=[f"H{h}" for h in range(grid.shape[1])],
                y=[f"L{layer}" for layer in range(grid.shape[0])],
                colorscale="RdBu",
                zmid=0,
                zmin=-top,
                zmax=top,
                colorbar={"title": {"text": "logit"}},
                hovertemplate="%{y} %{x}<br>%{z:.4f}<extra></extra>",
                xgap=1,
                ygap=1,
            )
        )
        fig.update_yaxes(autorange="reversed")
        default = f"Each head's direct effect on the logit of {token}"
        return base_layout(
            fig, default if title is None else title, height=max(320, 18 * grid.shape[0] + 140)
        )
    if kind != "waterfall":
        raise InputError(f"kind must be 'waterfall' or 'heads', not {kind!r}.")
    fig = go.Figure(
        go.Waterfall(
            x=[*result.labels, "logit"],
            y=[*result.contributions.astype(float), 0.0],
            measure=["relative"] * len(result.labels) + ["total"],
            hovertemplate="%{x}<br>%{y:.4f}<extra></extra>",
        )
    )
    fig.update_xaxes(tickangle=-60)
    fig.update_yaxes(title="contribution to the logit")
    default = f"Direct logit attribution of {token} at position {result.position} · logit {result.logit:.3f}"
    return base_layout(fig, default if title is None else title, height=420)
