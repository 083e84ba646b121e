"""Neuron factors: ecco's NMF explorer of the feed-forward neurons, painted over the text."""

import streamlit as st

from ecco_app import cached, state, stepwise, widgets
from ecco_app.panels import factors as panel
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
if stack.activations is None and seq.lm is not None and seq.lm.arch.neuron_note:
    st.info(f"Neuron views are not available: {seq.lm.arch.neuron_note}.")
    st.stop()
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
widgets.fit_kept(f"factors_layers::{side}", layers[0], layers[-1])
low, high = (
    right.slider("Layers", layers[0], layers[-1], (layers[0], layers[-1]), key=f"factors_layers::{side}")
    if len(layers) > 1
    else (layers[0], layers[0])
)
left, toggle = st.columns([1, 1.4])
most = max(3, min(20, stack.n_tokens - 1))
widgets.fit_kept("factors_k", 2, most)
n_components = left.slider("Number of factors", 2, most, min(8, most), key="factors_k")
skip_first = toggle.toggle(
    "Leave out the first token",
    True,
    key="factors_skip_first",
    help="The first token's activations are often 10-100x the rest (an 'attention sink'); "
    "left in, it takes a factor of its own.",
)

params = {
    "n_components": n_components,
    "from_layer": low,
    "to_layer": high + 1,
    "positions": positions,
    "method": method,
    "skip_first": skip_first,
    "side": side,
}
gated = panel.gated_ffn(seq)
stepwise.show(
    seq,
    "factors",
    params,
    lambda: cached.factors_steps(seq, **params),
    lambda result: panel.draw(result, gated),
    "Factorising the neuron activations",
)
