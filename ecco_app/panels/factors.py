"""The neuron-factors page's drawing: what was clipped, the painted text, the factor charts, the
top neurons and the downloads."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from ecco_app import widgets
from ecco_core import highlight
from ecco_core.figures import neurons as figs
from ecco_core.highlight import legend_html
from ecco_core.results import Factorization

GATED_FAMILIES = (
    "llama",
    "mistral",
    "mixtral",
    "qwen2",
    "qwen3",
    "gemma",
    "gemma2",
    "gemma3_text",
    "olmo2",
    "phi3",
)


def gated_ffn(seq) -> bool:
    """Whether the run's model has a gated FFN (SwiGLU / GeGLU), where a neuron's sign carries meaning."""
    config = getattr(getattr(seq.lm, "model", None), "config", None)
    return getattr(config, "model_type", "") in GATED_FAMILIES


def fit_note(result: Factorization, gated: bool) -> str:
    """What was done to the activations before factorising, true to the method and the model."""
    fit = f"The factors reproduce the activations up to a {100 * result.fit_error:.0f}% error."
    if result.signed:
        return f"**PCA** centres the activations and keeps their signs: nothing is clipped. {fit}"
    share, mass = 100 * result.negative_share, 100 * result.negative_mass
    if share == 0:
        return f"**Clipping.** No activation was negative, so nothing was clipped. {fit}"
    note = (
        f"**Clipping.** {share:.0f}% of these activations were negative ({mass:.0f}% of their total "
        "size) and were set to 0 first, ecco's convention, because NMF needs non-negative numbers."
    )
    if mass >= 5:
        note += (
            " In this model's gated FFN (SwiGLU) a neuron's sign carries meaning, so these factors "
            "describe only the positive half of each neuron's firing."
            if gated
            else " These factors describe only the positive part of each neuron's firing."
        )
        note += " PCA shows both signs."
    return f"{note} {fit}"


def draw(result: Factorization, gated: bool) -> None:
    """Everything the page shows of one Factorization."""
    names = figs.factor_names(result.n_factors, result.method)
    st.caption(fit_note(result, gated))
    options = ["all", *range(result.n_factors)]
    if st.session_state.get("factors_paint") not in options:
        st.session_state["factors_paint"] = "all"
    choice = st.radio(
        "Paint the text by",
        options,
        format_func=lambda o: "strongest factor" if o == "all" else names[o],
        horizontal=True,
        key="factors_paint",
    )
    colors = [figs.factor_color(f) for f in range(result.n_factors)]
    html = highlight.factor_painting(result, None if choice == "all" else int(choice), colors, names)
    st.markdown(html, unsafe_allow_html=True)
    st.markdown(legend_html(names, colors), unsafe_allow_html=True)
    if result.signed:
        st.caption("PCA scores are signed: grey marks tokens on the negative side of the chosen component.")

    selected = None if choice == "all" else int(choice)
    widgets.chart(figs.factor_sparklines(result, selected), width="stretch", key="factors_sparklines")
    # full width: its position axis is thinned for a full-width chart (figures.base.PLOT_WIDTH)
    widgets.chart(figs.factor_heatmap(result), width="stretch", key="factors_heatmap")
    if selected is None:
        st.markdown("**Top neurons of each factor** (layer · neuron · loading)")
        frames = [result.top_neurons(f, 3).assign(factor=names[f]) for f in range(result.n_factors)]
        st.dataframe(pd.concat(frames), hide_index=True, width="stretch", height=360)
    else:
        frame = result.top_neurons(selected, 12)
        widgets.chart(figs.factor_top_neurons_bar(frame, selected, result.method), width="stretch")

    st.markdown("**Downloads:** the factor matrix (factor x position) and the neuron loadings.")
    widgets.download_buttons(result, "factors", key="factors-matrix")
    st.download_button(
        "Download loadings CSV (layer, neuron, one column per factor)",
        lambda: result.loadings_frame().to_csv(index=False),
        "factor_loadings.csv",
        "text/csv",
        key="factors-loadings",
        on_click="ignore",
    )
