"""Rankings: how highly each layer ranked the token that came next, at every position."""

import pandas as pd
import streamlit as st

from ecco_app import cached, state, widgets
from ecco_core.results import lens as lens_results

st.header("📶 Rankings")
widgets.intro(
    "For every token the model wrote, this shows how highly each layer ranked it among all "
    "tokens before the model chose it.",
    "Columns are tokens and rows are layers, embeddings on top; dark cells and the number 1 mean "
    "that layer's top prediction was the token, and hovering a cell shows what that layer "
    "would have predicted instead.",
)
widgets.show_run_error()
seq = state.current_seq()
widgets.require_causal(seq, "Rankings")

left, middle, right = st.columns([1, 2, 1])
has_output = seq.n_tokens > max(seq.n_input_tokens, seq.first_predicted_position)
prompt = left.toggle(
    "Include prompt positions",
    not has_output,
    key=f"rank_prompt::{seq.run_id}",
    disabled=not has_output or seq.model_type == "enc-dec",
    help="Also rank each prompt token as the prediction made at the token before it.",
)
low, high = middle.slider("Layers", 0, seq.n_layers, (0, seq.n_layers), key=f"rank_layers::{seq.n_layers}")
normed = right.toggle(
    "Apply the final norm",
    True,
    key="rank_normed",
    help="On: each layer goes through the model's final norm before the unembedding, as the last "
    "layer does. Off: ecco's raw lens, where the middle layers of Llama-style models look like noise.",
)

ranked = widgets.keep_last_good(
    seq,
    "rankings",
    lambda: cached.rankings(
        seq,
        include_prompt=bool(prompt),
        layers=list(range(low, high + 1)),
        lens="normed" if normed else "raw",
    ),
)
if ranked is None:
    st.stop()

st.plotly_chart(ranked.figure(), width="stretch")
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
widgets.download_buttons(ranked.to_frame(), ranked.to_dict(), "rankings", "rank-download")
