"""Neuron factors: ecco's NMF explorer of the feed-forward neurons, painted over the text."""

import pandas as pd
import streamlit as st

from ecco_app import cached, state, widgets
from ecco_core import highlight
from ecco_core.figures import neurons as figs
from ecco_core.highlight import factor_html, legend_html
from ecco_core.run import SIDES

st.header("🧬 Neuron factors")
widgets.intro(
    "This page squeezes the firing of thousands of feed-forward neurons into a few factors: groups of "
    "neurons that fire together on the same tokens.",
    "Each token is tinted in the colour of its strongest factor (deeper is stronger); pick one factor "
    "to repaint the text by it alone, and read its line below to see where it fires.",
)
widgets.show_run_error()
seq = state.current_seq()

top, middle, right = st.columns([1, 1, 1.4])
side, positions = "decoder", "all"
if seq.model_type == "enc-dec":  # each stack's own tokens; the encoder's need no generation
    side = middle.radio("Stack", SIDES, format_func=str.title, horizontal=True, key="factors_side")
stack = seq.stack(side)
if stack.activations is None or stack.n_tokens < 3:
    st.info(f"This view needs activations of 3 tokens or more ({stack.n_tokens} here): run longer text.")
    st.stop()
layers = stack.activation_layers
method = top.radio(
    "Factorisation",
    ["nmf", "pca"],
    format_func={"nmf": "NMF (parts)", "pca": "PCA (signed)"}.get,
    horizontal=True,
    key="factors_method",
    help="NMF finds non-negative parts that add up; PCA finds signed directions of largest variance.",
)
if not stack.name:
    positions = middle.radio(
        "Positions",
        ["all", "input", "output"],
        format_func={"all": "all", "input": "prompt", "output": "generated"}.get,
        horizontal=True,
        key="factors_positions",
    )
low, high = (
    right.slider("Layers", layers[0], layers[-1], (layers[0], layers[-1]), key=f"factors_layers::{side}")
    if len(layers) > 1
    else (layers[0], layers[0])
)
left, toggle = st.columns([1, 1.4])
most = max(3, min(20, stack.n_tokens - 1))
n_components = left.slider("Number of factors", 2, most, min(8, most), key="factors_k")
skip_first = toggle.toggle(
    "Leave out the first token",
    True,
    key="factors_skip_first",
    help="The first token's activations are often 10-100x the rest (an 'attention sink'); "
    "left in, it takes a factor of its own.",
)

result = widgets.keep_last_good(
    seq,
    "factors",
    lambda: cached.factors(
        seq,
        n_components=n_components,
        from_layer=low,
        to_layer=high + 1,
        positions=positions,
        method=method,
        skip_first=skip_first,
        side=side,
    ),
)
if result is None:
    st.stop()
names = figs.factor_names(result.n_factors, result.method)
fit = f"The factors reproduce the activations up to a {100 * result.fit_error:.0f}% error."
st.caption(f"**Clipping.** {result.clipping_note()} {fit}")

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
full = result.full_components()  # (factor, pos)
share = highlight.peak_shares(full)  # (factor, pos) in [0, 1]
colors = [figs.factor_color(f) for f in range(result.n_factors)]
if choice == "all":
    strongest = result.strongest_factor()
    strength = highlight.strongest_shares(share, strongest)  # (pos,)
    html = factor_html(result.tokens, strongest, strength, colors, result.n_input_tokens, names)
else:
    html = factor_html(  # PCA: positive in the factor's colour, negative in grey
        result.tokens,
        highlight.sign_classes(full[choice]),
        share[choice],
        [colors[choice], "#7f7f7f"],
        result.n_input_tokens,
        [f"{names[choice]} +", f"{names[choice]} −"],
    )
st.markdown(html, unsafe_allow_html=True)
st.markdown(legend_html(names, colors), unsafe_allow_html=True)
if result.signed:
    st.caption("PCA scores are signed: grey marks tokens on the negative side of the chosen component.")

selected = None if choice == "all" else int(choice)
st.plotly_chart(figs.factor_sparklines(result, selected), width="stretch", key="factors_sparklines")

heatmap, neurons_col = st.columns([1.5, 1])
heatmap.plotly_chart(figs.factor_heatmap(result), width="stretch", key="factors_heatmap")
with neurons_col:
    if selected is None:
        st.markdown("**Top neurons of each factor** (layer · neuron · loading)")
        frames = [result.top_neurons(f, 3).assign(factor=names[f]) for f in range(result.n_factors)]
        st.dataframe(pd.concat(frames), hide_index=True, width="stretch", height=360)
    else:
        frame = result.top_neurons(selected, 12)
        st.plotly_chart(figs.factor_top_neurons_bar(frame, selected, result.method), width="stretch")

st.markdown("**Downloads:** the factor matrix (factor x position) and the neuron loadings.")
widgets.download_buttons(result.to_frame(), result.to_dict(), "factors", key="factors-matrix")
st.download_button(
    "Download loadings CSV (layer, neuron, one column per factor)",
    lambda: result.loadings_frame().to_csv(index=False),
    "factor_loadings.csv",
    "text/csv",
    key="factors-loadings",
    on_click="ignore",
)
