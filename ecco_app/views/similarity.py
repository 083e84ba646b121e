"""Layer similarity: how alike each pair of layers represents this text (CKA, CCA, SVCCA, PWCCA)."""

import streamlit as st

from ecco_app import cached, state, widgets
from ecco_core.results import similarity as similarity_results
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

left, middle, right = st.columns([1.6, 1.1, 1.3])
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

result = widgets.keep_last_good(
    seq,
    "similarity",
    lambda: cached.layer_similarity(
        seq,
        method=method,
        source=source,
        dims=dims,
        skip_first=skip_first,
        normalize=normalize,
        side=side,
    ),
)
if result is None:
    st.stop()

st.plotly_chart(result.figure(), width="stretch", key="similarity_heatmap")
neighbours, n = similarity_results.neighbour_count(result.most_alike()), len(result.layers)
st.markdown(
    f"For **{neighbours} of {n}** layers the most similar other layer is a direct neighbour. " + result.note
)
if method != "cka":
    st.caption(
        "With only a few dozen tokens the CCA-family scores run high for any pair of layers; "
        "compare the squares with each other rather than with a fixed threshold."
    )
widgets.download_buttons(
    result.to_frame(),
    result.to_dict(),
    f"layer_similarity_{method}_{source}{'_' + result.side if result.side else ''}",
    key="sim",
)
