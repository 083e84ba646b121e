"""Layer similarity: how alike each pair of layers represents this text (CKA, CCA, SVCCA, PWCCA)."""

import streamlit as st

from ecco_app import cached, state, stepwise, widgets
from ecco_app.panels import similarity as panel
from ecco_core.run import SIDES

METHODS = {
    "cka": "CKA (linear)",
    "cca": "CCA (mean)",
    "svcca": "SVCCA",
    "pwcca": "PWCCA",
}
HELP = {
    "cka": "Compares which tokens each layer treats as alike; robust with few tokens.",
    "cca": "Mean correlation of the best-matching directions of the two layers.",
    "svcca": "CCA on each layer's top directions only (set how many below).",
    "pwcca": "CCA weighted by how much of the layer each matching direction explains.",
}

st.header("🪞 Layer similarity")
widgets.intro(
    "This page compares every layer with every other layer: how alike their representations of this "
    "text are, from 0 (unrelated) to 1 (the same up to a rotation or linear map).",
    "Bright squares near the diagonal mean neighbouring layers are alike; a bright block is a "
    "stretch of layers that changes the text's representation little.",
)
widgets.show_run_error()
seq = state.current_seq()
side = "decoder"
if seq.model_type == "enc-dec":  # compare the layers of one stack; the encoder's need no generation
    side = st.radio("Stack", SIDES, format_func=str.title, horizontal=True, key="similarity_side")

left, middle, right = st.columns([1.4, 1.0, 1.6])
method = left.radio(
    "Method", list(METHODS), format_func=METHODS.get, horizontal=True, key="similarity_method"
)
source = middle.radio(
    "Compare",
    ["hidden", "ffn"],
    format_func={"hidden": "hidden states", "ffn": "FFN neurons"}.get,
    horizontal=True,
    key="similarity_source",
)
skip_first = right.toggle(
    "Leave out the first token",
    True,
    key="similarity_skip_first",
    help="The first token's hidden state is often 100x larger than the rest (an 'attention sink') "
    "and would make the middle layers look identical.",
)
normalize = right.toggle(
    "Scale every token to length 1",
    True,
    key="similarity_normalize",
    help="Each layer reads the residual stream through a norm, so this is what the next layer sees. "
    "Off: a few tokens with a 10x larger vector ('massive activations') decide the score.",
)
st.caption(HELP[method])
dims = 20
if method == "svcca":
    dims = st.slider("SVCCA directions per layer", 2, 40, 10, key="similarity_dims")

params = {
    "method": method,
    "source": source,
    "dims": dims,
    "skip_first": skip_first,
    "normalize": normalize,
    "side": side,
}
stepwise.show(
    seq,
    "similarity",
    params,
    lambda: cached.layer_similarity_steps(seq, **params),
    panel.draw,
    "Comparing every pair of layers",
)
