"""Rankings: how highly each layer ranked the token that came next, at every position."""

import numpy as np
import pandas as pd
import streamlit as st

import app_support as app

st.header("📶 Rankings")
app.intro(
    "For every token the model wrote, this shows how highly each layer ranked it among all "
    "tokens before the model chose it.",
    "Columns are tokens and rows are layers, embeddings on top; dark cells and the number 1 mean "
    "that layer's top prediction was the token, and hovering a cell shows what that layer "
    "would have predicted instead.",
)
app.show_run_error()
seq = app.current_seq()
app.require_causal(seq, "Rankings")

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

ranked = app.keep_last_good(
    f"rankings::{seq.run_id}",
    lambda: app.compute(
        seq,
        "rankings",
        include_prompt=bool(prompt),
        layer=list(range(low, high + 1)),
        lens="normed" if normed else "raw",
    ),
)
if ranked is None:
    st.stop()

st.plotly_chart(ranked.figure(), width="stretch")
if ranked.positions[0] < ranked.n_input_tokens < ranked.positions[-1] + 1:
    st.caption("The dotted line separates prompt tokens (left) from generated ones (right).")

with st.expander("Where each token becomes the top prediction", expanded=False):
    top = ranked.ranks == 1  # (layer, pos)
    settled = top[::-1].cumprod(axis=0)[::-1].astype(bool)  # rank 1 from this layer to the last
    first_settled = np.where(settled.any(0), ranked.layers[settled.argmax(0)], -1)
    st.dataframe(
        pd.DataFrame(
            {
                "position": ranked.positions,
                "token": ranked.tokens,
                "first layer at rank 1": np.where(top.any(0), ranked.layers[top.argmax(0)], -1),
                "rank 1 from layer on": first_settled,
                f"rank at layer {ranked.layers[-1]}": ranked.ranks[-1],
            }
        ),
        hide_index=True,
        width="stretch",
    )
    st.caption("-1: never at rank 1 in the layers shown.")
app.download_buttons(ranked.to_frame(), ranked.to_dict(), "rankings", "rank-download")
