"""The rankings page's drawing: the rank heatmap, its caption, the first-layer table, downloads."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from ecco_app import widgets
from ecco_core.results import Rankings
from ecco_core.results import lens as lens_results


def draw(ranked: Rankings) -> None:
    """Everything the page shows of one Rankings (whole, or the positions ranked so far)."""
    widgets.chart(ranked.figure(), width="stretch", key="rankings_chart")
    if ranked.positions[0] < ranked.n_input_tokens < ranked.positions[-1] + 1:
        st.caption("The dotted line separates prompt tokens (left) from generated ones (right).")
    with st.expander("Where each token becomes the top prediction", expanded=False):
        st.dataframe(
            pd.DataFrame(
                {
                    "position": ranked.positions,
                    "token": ranked.tokens,
                    "first layer at rank 1": lens_results.first_layer_at_rank_1(ranked.ranks, ranked.layers),
                    "rank 1 from layer on": lens_results.settled_layer(ranked.ranks, ranked.layers),
                    f"rank at layer {ranked.layers[-1]}": ranked.ranks[-1],
                }
            ),
            hide_index=True,
            width="stretch",
        )
        st.caption("-1: never at rank 1 in the layers shown.")
    widgets.download_buttons(ranked, "rankings", "rank-download")
