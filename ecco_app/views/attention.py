"""Attention: every head at a glance, one head (or the mean, or the rollout) enlarged, and the text view."""

import streamlit as st

from ecco_app import cached, state, widgets
from ecco_core.analysis import attention
from ecco_core.figures.attention import head_grid_figure
from ecco_core.highlight import attention_text_html
from ecco_core.results import attention as attention_results

st.header("🎯 Attention")
widgets.intro(
    "This page shows where each token looks when the model reads it: the attention weights of "
    "every head in every layer, token to token.",
    "In the grid each small square is one head (rows: the attending token, columns: the token "
    "attended to, darker is more weight); click one to enlarge it, or switch to the mean over "
    "heads or the rollout, which follows attention through all layers to the input.",
)
widgets.show_run_error()
seq = state.current_seq()

sides = attention.available_sides(seq)
if not sides:
    widgets.info(attention.missing_attention_message(seq))
    st.stop()
SIDE_NAMES = {
    "self": "Decoder self-attention" if seq.model_type == "enc-dec" else "Self-attention",
    "encoder": "Encoder self-attention",
    "cross": "Cross-attention (decoder → encoder)",
}
side = st.radio("Attention", sides, format_func=SIDE_NAMES.get, horizontal=True, key="attn_side")
stack = seq.stack("encoder" if side == "encoder" else "decoder")
captured = list(
    seq.extras["decoder"]["cross_attention_layers"] if side == "cross" else stack.attention_layers
)
n_heads = int((seq.extras["decoder"]["cross_attentions"] if side == "cross" else stack.attentions).shape[1])

# ----- the grid: every head of the chosen layers ---------------------------------------------------
shown = st.multiselect(
    "Layers in the grid",
    captured,
    default=attention_results.default_grid_layers(captured),
    key=f"attn_grid_layers::{seq.run_id}::{side}",
)
grid = None
if shown:
    grid = widgets.keep_last_good(
        seq,
        f"attention-grid::{side}",
        lambda: cached.attention_grid(seq, layers=sorted(shown), side=side),
    )
layer_key, head_key, applied_key = "attn_layer", "attn_head", f"attn_click::{seq.run_id}::{side}"
if st.session_state.get(layer_key) not in captured:
    st.session_state[layer_key] = captured[-1]
if st.session_state.get(head_key, 0) >= n_heads:
    st.session_state[head_key] = 0
if grid is not None:
    selected = (st.session_state[layer_key], st.session_state.get(head_key, 0))
    event = widgets.chart(
        head_grid_figure(grid, selected),
        width="stretch",
        config={"displayModeBar": False},
        on_select="rerun",
        selection_mode="points",
        key=f"attn_grid::{seq.run_id}::{side}",
    )
    points = event.selection.points if event and event.selection else []
    clicked = attention_results.clicked_head(points, grid.layers, n_heads)
    if clicked and clicked != st.session_state.get(applied_key):
        st.session_state[applied_key] = clicked
        st.session_state[layer_key], st.session_state[head_key] = clicked
        st.session_state["attn_method"] = "head"
        st.rerun()
    if grid.pooled:
        n_tokens, cells = max(grid.n_queries, grid.n_keys), grid.thumbnails.shape[-1]
        st.caption(
            f"Long run: {n_tokens} tokens drawn in {cells} cells a side; a cell holds up to "
            f"{-(-n_tokens // cells)} neighbouring tokens and shows their largest weight."
        )

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
amap = widgets.keep_last_good(
    seq,
    f"attention-map::{side}",
    lambda: cached.attention_map(seq, method=method, layer=int(layer), head=int(head), side=side),
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
zmax = attention_results.max_past_first(amap.weights) if past_sink else None  # weights: (query, key)
widgets.chart(amap.figure(zmax=zmax or None), width="stretch", config={"displaylogo": False})

# ----- the text view: what one token attends to ------------------------------------------------------
st.subheader("What a token attends to")
queries = list(range(len(amap.query_tokens)))
query = st.selectbox(
    "Attending token",
    queries,
    index=len(queries) - 1,
    format_func=lambda i: widgets.position_label(seq, i + amap.query_offset),
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
        vmax=attention_results.max_past_first(amap.weights[query]) if past_sink else None,
    ),
    unsafe_allow_html=True,
)
top = widgets.escape_markdown(", ".join(f"{tok!r} ({w:.0%})" for _, tok, w in amap.top_keys(query, 3)))
st.caption(
    f"Shaded by the weight from the outlined token; most attended: {top}. Hover any token for its own."
)

with st.expander("Per-head numbers and downloads", expanded=False):
    if grid is not None:
        st.dataframe(grid.to_frame(), hide_index=True, width="stretch")
        widgets.download_buttons(grid, "attention-heads", "attn-heads", what="per-head numbers")
    widgets.download_buttons(amap, "attention-map", "attn-map", what="enlarged map")
