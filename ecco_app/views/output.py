"""Output: the prompt and the model's continuation, token by token."""

import pandas as pd
import streamlit as st

from ecco_app import state, widgets
from ecco_core.highlight import output_text_html
from ecco_core.results.labels import token_label

st.header("📝 Output")
widgets.intro(
    "This page shows the text the model read and the tokens it wrote after it, split the way the "
    "model sees them.",
    "Each token sits in its own thin box; prompt tokens are plain, generated tokens are shaded; ▶ "
    "marks where generation starts, ↵ is a newline and dashed boxes are special tokens such as "
    "end-of-text.",
)
widgets.show_run_error()
if state.stored_seq() is None:
    widgets.start_here()
seq = state.current_seq()

settings = state.run_settings()
st.caption(
    f"Model **{widgets.escape_markdown(seq.model_name)}** ({seq.model_type}, {seq.n_layers} layers) · "
    f"{seq.n_input_tokens} prompt tokens · {seq.n_output_tokens} generated"
    + (" · sampled" if settings.get("do_sample") else " · greedy" if seq.n_output_tokens else "")
)
st.markdown(output_text_html(seq.tokens, seq.n_input_tokens, seq.special), unsafe_allow_html=True)

if seq.n_output_tokens:
    st.subheader("Continuation")
    st.code(seq.output_text, language=None)

with st.expander("Tokens", expanded=False):
    frame = pd.DataFrame(
        {
            "position": range(seq.n_tokens),
            "token": [token_label(t, spaces=True) for t in seq.tokens],
            "id": seq.token_ids,
            "part": ["prompt" if p < seq.n_input_tokens else "output" for p in range(seq.n_tokens)],
            "special": seq.special,
        }
    )
    st.dataframe(frame, hide_index=True, width="stretch")
    st.caption("In the table ␣ is a space and ↵ a newline, so ' are' and 'are' differ.")
