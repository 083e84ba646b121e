"""Direct logit attribution: which components wrote a token's logit, through the frozen final norm."""

import streamlit as st

from ecco_app import cached, state, widgets

st.header("🧮 Direct logit attribution")
widgets.intro(
    "Which parts of the model wrote a token? The final residual stream is the sum of the "
    "embeddings and every attention and MLP output; read through the final norm frozen at this "
    "run's scale, each part's share of the token's logit adds up to the logit itself.",
    "Bars up push the token, bars down push against it; the heads view splits each attention layer "
    "into its heads (the layer's bar is their sum plus the output projection's bias).",
)
widgets.show_run_error()
seq = state.current_seq()
widgets.require_causal(seq, "Direct logit attribution")

first = seq.first_predicted_position
default = seq.n_input_tokens if seq.n_tokens > seq.n_input_tokens else seq.n_tokens
position = widgets.token_picker(seq, "dla_position", first=first, last=seq.n_tokens, default=default)
left, middle, right = st.columns([1.2, 1, 1])
token_text = left.text_input(
    "Token to explain (blank: the token written there)",
    "",
    key="dla_token",
    help="One token, e.g. ' Croatia' (mind the leading space); #123 is the token id 123. After the text, "
    "blank means the model's top prediction.",
)
view = middle.radio(
    "View",
    ["waterfall", "heads"],
    horizontal=True,
    key="dla_view",
    format_func={"waterfall": "components", "heads": "heads (layer x head)"}.get,
)
token = None
if token_text:
    token = int(token_text[1:]) if token_text.startswith("#") and token_text[1:].isdigit() else token_text


def direct_logit_attribution(position: int, token):
    with cached.model_turn(seq.lm, "direct logit attribution"):
        return seq.direct_logit_attribution(position, token)


result = widgets.keep_last_good(
    seq,
    "dla",
    lambda: seq.cached(("dla", position, token), lambda: direct_logit_attribution(position, token)),
)
if result is None:
    st.stop()
right.metric("Logit", f"{result.logit:.3f}", help="The model's own logit of the token.")
widgets.chart(
    result.figure(kind=view if result.head_contributions is not None else "waterfall"), width="stretch"
)
st.caption(
    f"{result.token!r} at position {result.position}: the contributions sum to {result.total:.5f}, "
    f"{result.sum_error:.1e} from the logit {result.logit:.5f} (float32 allows {result.tolerance:.1e}). "
    + result.note
)
frame = result.to_frame() if view == "waterfall" else result.heads_frame()
st.dataframe(frame, hide_index=True, width="stretch", height=260)
widgets.download_buttons(result, f"dla_{result.position}", "dla-download", frame=lambda: frame)
