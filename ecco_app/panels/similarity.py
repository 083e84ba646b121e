"""The layer-similarity page's drawing: the layer x layer heatmap, what it says, downloads."""

from __future__ import annotations

import streamlit as st

from ecco_app import widgets
from ecco_core.results import LayerSimilarity
from ecco_core.results import similarity as similarity_results


def draw(result: LayerSimilarity) -> None:
    """Everything the page shows of one LayerSimilarity."""
    widgets.chart(result.figure(), width="stretch", key="similarity_heatmap")
    neighbours, n = similarity_results.neighbour_count(result.most_alike()), len(result.layers)
    st.markdown(
        f"For **{neighbours} of {n}** layers the most similar other layer is a direct neighbour. "
        + result.note
    )
    if result.method != "cka":
        st.caption(
            "With only a few dozen tokens the CCA-family scores run high for any pair of layers; "
            "compare the squares with each other rather than with a fixed threshold."
        )
    widgets.download_buttons(
        result,
        f"layer_similarity_{result.method}_{result.source}{'_' + result.side if result.side else ''}",
        key="sim",
    )
