"""Watch tokens: how each layer ranks a few candidate tokens at one position."""

import streamlit as st

from ecco_app import cached, state, widgets
from ecco_core.analysis.checks import parse_watch_text

st.header("👀 Watch tokens")
widgets.intro(
    "This compares a few candidate tokens at one position, layer by layer: for example ' is' "
    "against ' are' after 'The keys to the cabinet', where the model must look past 'cabinet' to "
    "'keys'.",
    "Rank 1 (dark cells, the top of the line chart) means that layer's top prediction; a leading "
    "space is part of a token, so ' are' (the word inside a sentence) and 'are' are different tokens.",
)
widgets.show_run_error()
seq = state.current_seq()
widgets.require_causal(seq, "Watched-token rankings")

text = st.text_input(
    "Candidate tokens, comma-separated",
    "is, are",
    key="watch_text",
    help="Each word must be one token. Quote an item ('are') to take it exactly as typed; #123 is the "
    "token id 123.",
)
middle, right = st.columns(2)
spaced = middle.toggle(
    "Leading space",
    True,
    key="watch_space",
    help="Add one space before each unquoted word: ' are' is how the word appears inside a sentence.",
)
normed = right.toggle(
    "Apply the final norm",
    True,
    key="watch_normed",
    help="Off: ecco's raw lens, where the middle layers of Llama-style models look like noise.",
)
start = (
    seq.n_input_tokens
    if seq.n_tokens > max(seq.n_input_tokens, seq.first_predicted_position)
    else seq.n_tokens
)
position = widgets.token_picker(
    seq, "watch_position", first=seq.first_predicted_position, last=seq.n_tokens, default=start
)
watch = parse_watch_text(text, leading_space=spaced)
st.caption(
    "Watching "
    + widgets.escape_markdown(
        ", ".join(repr(w) if isinstance(w, str) else f"id {w}" for w in watch) or "nothing"
    )
)

result = widgets.keep_last_good(
    seq,
    "watch",
    lambda: cached.watch_rankings(seq, watch=watch, position=position, lens="normed" if normed else "raw"),
)
if result is None:
    st.stop()

heatmap, lines = st.columns([2, 3])
widgets.chart(result.figure(), width="stretch", where=heatmap)
widgets.chart(result.figure(kind="lines"), width="stretch", where=lines)
top_choice = widgets.escape_markdown(repr(str(result.predicted_tokens[-1])))
final = widgets.escape_markdown(
    ", ".join(f"{str(t)!r} rank {r}" for t, r in zip(result.watch_tokens, result.ranks[-1]))
)
st.markdown(f"At the last layer: {final}; the model's own top choice is **{top_choice}**.")
widgets.download_buttons(result, f"watch_{result.position}", "watch-download")
