"""Rankings: how highly each layer ranked the token that came next, at every position."""

import streamlit as st

from ecco_app import cached, state, stepwise, widgets
from ecco_app.panels import rankings as panel

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

left, middle = st.columns([1.2, 1])  # the toggles stacked: their labels read whole at 1024 px
has_output = seq.n_tokens > max(seq.n_input_tokens, seq.first_predicted_position)
prompt = left.toggle(
    "Include prompt positions",
    not has_output,
    key=f"rank_prompt::{seq.run_id}",
    disabled=not has_output or seq.model_type == "enc-dec",
    help="Also rank each prompt token as the prediction made at the token before it.",
)
low, high = middle.slider("Layers", 0, seq.n_layers, (0, seq.n_layers), key=f"rank_layers::{seq.n_layers}")
normed = left.toggle(
    "Apply the final norm",
    True,
    key="rank_normed",
    help="On: each layer goes through the model's final norm before the unembedding, as the last "
    "layer does. Off: ecco's raw lens, where the middle layers of Llama-style models look like noise.",
)

params = {
    "include_prompt": bool(prompt),
    "layers": list(range(low, high + 1)),
    "lens": "normed" if normed else "raw",
}
stepwise.show(
    seq,
    "rankings",
    params,
    lambda: cached.rankings_steps(seq, **params),
    panel.draw,
    "Ranking each token at every layer",
)
