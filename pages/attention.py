"""Attention: every head at a glance, one head (or the mean, or the rollout) enlarged, and the text view."""

import streamlit as st

import app_support as app
from ecco_core import attention
from ecco_core.figures.attention import head_grid_figure
from ecco_core.highlight import attention_text_html

st.header("🎯 Attention")
app.intro(
    "This page shows where each token looks when the model reads it: the attention weights of "
    "every head in every layer, token to token.",
    "In the grid each small square is one head (rows: the attending token, columns: the token "
    "attended to, darker is more weight); click one to enlarge it, or switch to the mean over "
    "heads or the rollout, which follows attention through all layers to the input.",
)
app.show_run_error()
seq = app.current_seq()

sides = attention.available_sides(seq)
if not sides:
    st.info(attention.missing_attention_message(seq))
    st.stop()
SIDE_NAMES = {
    "self": "Decoder self-attention" if seq.model_type == "enc-dec" else "Self-attention",
    "encoder": "Encoder self-attention",
    "cross": "Cross-attention (decoder → encoder)",
}
side = st.radio("Attention", sides, format_func=SIDE_NAMES.get, horizontal=True, key="attn_side")
layers = seq.side("encoder" if side == "encoder" else "decoder")
captured = list(
    seq.extras["decoder"]["cross_attention_layers"] if side == "cross" else layers["attention_layers"]
)
n_heads = int(
    (seq.extras["decoder"]["cross_attentions"] if side == "cross" else layers["attentions"]).shape[1]
)

# ----- the grid: every head of the chosen layers ---------------------------------------------------
step = max(1, len(captured) // 8) if len(captured) > 12 else 1
shown = st.multiselect(
    "Layers in the grid", captured, default=captured[::step], key=f"attn_grid_layers::{seq.run_id}::{side}"
)
grid = None
if shown:
    grid = app.keep_last_good(
        "attention-grid",
        lambda: app.compute(seq, "attention.attention_grid", layers=sorted(shown), side=side),
    )
layer_key, head_key, applied_key = "attn_layer", "attn_head", f"attn_click::{seq.run_id}::{side}"
if st.session_state.get(layer_key) not in captured:
    st.session_state[layer_key] = captured[-1]
if st.session_state.get(head_key, 0) >= n_heads:
    st.session_state[head_key] = 0
if grid is not None:
    selected = (st.session_state[layer_key], st.session_state.get(head_key, 0))
    event = st.plotly_chart(
        head_grid_figure(grid, selected),
        width="stretch",
        config={"displayModeBar": False},
        on_select="rerun",
        selection_mode="points",
        key=f"attn_grid::{seq.run_id}::{side}",
    )
    points = event.selection.points if event and event.selection else []
    index = points[0].get("point_index") if points and points[0].get("curve_number") == 1 else None
    clicked = (grid.layers[index // n_heads], index % n_heads) if index is not None else None
    if clicked and clicked != st.session_state.get(applied_key):
        st.session_state[applied_key] = clicked
        st.session_state[layer_key], st.session_state[head_key] = clicked
        st.session_state["attn_method"] = "head"
        st.rerun()
    if grid.pooled:
        st.caption(f"Long run: each square is max-pooled to {grid.thumbnails.shape[-1]} cells a side.")

# ----- one map enlarged -----------------------------------------------------------------------------
methods = {"head": "One head", "mean": "Mean of heads", "rollout": "Rollout (all layers to here)"}
if side == "cross":
    methods.pop("rollout")
if st.session_state.get("attn_method") not in methods:
    st.session_state["attn_method"] = "mean"
left, middle, right = st.columns([2, 1, 1])
method = left.radio("Show", list(methods), format_func=methods.get, horizontal=True, key="attn_method")
layer = middle.selectbox("Layer", captured, key=layer_key)
head = right.selectbox("Head", list(range(n_heads)), key=head_key, disabled=method != "head")
amap = app.keep_last_good(
    "attention-map",
    lambda: app.compute(
        seq, "attention.attention", method=method, layer=int(layer), head=int(head), side=side
    ),
)
if amap is None:
    st.stop()
past_sink = st.toggle(
    "Scale colours past the first token",
    False,
    key="attn_past_sink",
    help="Many heads park most of their weight on the first token (an 'attention sink'); this "
    "scales the colours by the largest weight on any other token so the rest shows.",
)
zmax = float(amap.weights[:, 1:].max()) if past_sink and amap.weights.shape[1] > 1 else None
st.plotly_chart(amap.figure(zmax=zmax or None), width="stretch", config={"displaylogo": False})

# ----- the text view: what one token attends to ------------------------------------------------------
st.subheader("What a token attends to")
queries = list(range(len(amap.query_tokens)))
query = st.selectbox(
    "Attending token",
    queries,
    index=len(queries) - 1,
    format_func=lambda i: app.position_label(seq, i + amap.query_offset),
    key=f"attn_query::{seq.run_id}::{side}",
)
aligned = side != "cross"
titles = None
if aligned:  # hovering a token shows what that token itself attends to most
    titles = [
        "attends to: " + " · ".join(f"{tok!r} {w:.2f}" for _, tok, w in amap.top_keys(i, 3)) for i in queries
    ]
st.markdown(
    attention_text_html(
        amap.key_tokens,
        amap.weights[query],
        query=query if aligned else None,
        titles=titles,
        offset=amap.key_offset,
        n_input_tokens=seq.n_input_tokens if side == "self" and seq.model_type != "enc-dec" else None,
        vmax=float(amap.weights[query, 1:].max()) if past_sink and amap.weights.shape[1] > 1 else None,
    ),
    unsafe_allow_html=True,
)
top = ", ".join(f"{tok!r} ({w:.0%})" for _, tok, w in amap.top_keys(query, 3))
st.caption(
    f"Shaded by the weight from the outlined token; most attended: {top}. Hover any token for its own."
)

with st.expander("Per-head numbers and downloads", expanded=False):
    if grid is not None:
        st.dataframe(grid.to_frame(), hide_index=True, width="stretch")
        app.download_buttons(grid.to_frame(), grid.to_dict(), "attention-heads", "attn-heads")
    app.download_buttons(amap.to_frame(), amap.to_dict(), "attention-map", "attn-map")
