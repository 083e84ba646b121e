"""Layer predictions: the top-k tokens each layer would predict at one position (the logit lens)."""

import streamlit as st

from ecco_app import cached, state, widgets
from ecco_core.results import lens as lens_results

st.header("🧱 Layer predictions")
widgets.intro(
    "For the token you pick, this shows the tokens each layer would have predicted in its place if "
    "the model stopped at that layer (the logit lens).",
    "Rows are layers from the embeddings (top) to the last layer (bottom), boxes run from most to "
    "less likely and are darker when more probable; the token the model really wrote is outlined.",
)
widgets.show_run_error()
seq = state.current_seq()
widgets.require_causal(seq, "Layer predictions")

left, middle, right = st.columns([1, 1.5, 1.5])
topk = left.slider("Top-k", 1, 50, 10, key="lp_topk")
low, high = middle.slider("Layers", 0, seq.n_layers, (0, seq.n_layers), key=f"lp_layers::{seq.n_layers}")
normed = right.toggle(
    "Apply the final norm",
    True,
    key="lp_normed",
    help="On: each layer goes through the model's final norm before the unembedding, as the last "
    "layer does. Off: ecco's raw lens, where the middle layers of Llama-style models look like noise.",
)
start = seq.n_input_tokens if seq.n_output_tokens else seq.n_tokens
position = widgets.token_picker(
    seq, "lp_position", first=seq.first_predicted_position, last=seq.n_tokens, default=start
)

with st.spinner("Reading every layer's predictions…"):
    pred = widgets.keep_last_good(
        seq,
        "layer_predictions",
        lambda: cached.layer_predictions(
            seq,
            position=position,
            topk=topk,
            layers=list(range(low, high + 1)),
            lens="normed" if normed else "raw",
        ),
    )
if pred is None:
    st.stop()

if pred.target_id >= 0:
    top = int(lens_results.first_layer_at_rank_1(pred.target_ranks, pred.layers))  # -1: never
    where = (
        f"first becomes the top prediction at layer **{top}**"
        if top >= 0
        else "is never the top prediction in these layers"
    )
    st.markdown(
        f"The model wrote **{widgets.escape_markdown(repr(pred.target_token))}** at position "
        f"{pred.position}: it {where} "
        f"(rank {pred.target_ranks[-1]} at layer {pred.layers[-1]})."
    )
else:
    st.markdown("This is the token after the text: what each layer would write next.")
widgets.chart(pred.figure(), width="stretch")
widgets.download_buttons(pred, f"layer_predictions_{pred.position}", "lp-download")
