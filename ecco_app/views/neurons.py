"""Top neurons: the most active feed-forward neurons at a token, and one neuron across the text."""

import streamlit as st

from ecco_app import cached, state, widgets
from ecco_core import highlight, neurons
from ecco_core.highlight import factor_html
from ecco_core.run import SIDES

st.header("🔬 Top neurons")
widgets.intro(
    "This page shows single feed-forward neurons: which ones fire hardest at a token you pick, and "
    "where in the text one neuron fires.",
    "Pick a token to list the neurons that fire most above their usual level there (or, with the "
    "toggle off, the largest activations; L = layer, N = neuron); a neuron can sit above its usual "
    "level and still be negative, drawn in orange. Pick one to tint the text by it, purple where it "
    "is positive and orange where it is negative.",
)
widgets.show_run_error()
seq = state.current_seq()
side = "decoder"
if seq.model_type == "enc-dec":  # each stack's own tokens; the encoder's need no generation
    side = st.radio("Stack", SIDES, format_func=str.title, horizontal=True, key="neurons_side")
stack = seq.stack(side)
if stack.activations is None:
    note = seq.lm.arch.neuron_note if seq.lm is not None else ""
    st.info(
        f"Neuron views are not available: {note}."
        if note
        else "This run has no neuron activations. Run it again with the default settings."
    )
    st.stop()


def token_label(p: int) -> str:
    """'p: token (prompt / start / output)' for index ``p`` of the chosen stack's tokens."""
    kind = "output" if p >= stack.n_input_tokens else "start" if stack.name == "decoder" else "prompt"
    token = stack.tokens[p].replace("\n", "↵")
    return f"{p}: {token!r} ({kind})"


layers, stem = stack.activation_layers, f"_{stack.name}" if stack.name else ""
pick, count, span = st.columns([1.6, 1, 1.2])
default = max(stack.n_input_tokens - 1, min(1, stack.n_tokens - 1))
position = pick.selectbox(
    "Token",
    range(stack.n_tokens),
    default,
    format_func=token_label,
    key=f"neurons_position::{seq.run_id}::{side}",
)
k = count.slider("How many neurons", 5, 50, 15, key="neurons_k")
widgets.fit_kept(f"neurons_layers::{side}", layers[0], layers[-1])
low, high = (
    span.slider(
        "Layers",
        layers[0],
        layers[-1],
        (layers[0], layers[-1]),
        key=f"neurons_layers::{side}",
        help="The last layers' neurons are the largest; narrow the range to see earlier ones.",
    )
    if len(layers) > 1
    else (layers[0], layers[0])
)

relative = st.toggle(
    "Rank by how much more than usual the neuron fires here",
    True,
    key="neurons_relative",
    help="Subtracts each neuron's mean over the text, hiding neurons that are large at every token.",
)
top = widgets.keep_last_good(
    seq,
    "neurons-top",
    lambda: cached.top_neurons(
        seq,
        position=position,
        k=k,
        from_layer=low,
        to_layer=high + 1,
        relative=relative,
        side=side,
    ),
)
if top is None:
    st.stop()
chart, table = st.columns([1.3, 1])
widgets.chart(top.figure(), width="stretch", key="neurons_top_chart", where=chart)
with table:
    st.dataframe(top.to_frame(), hide_index=True, width="stretch", height=360)
    widgets.download_buttons(top, f"top_neurons{stem}_{position}", key="neurons-top")

if "routing" in seq.extras and side == "decoder":  # a mixture of experts: where each token went
    routing = neurons.routing(seq)
    with st.expander("Expert routing", expanded=True):
        st.caption(
            f"Each layer has {routing.n_experts} experts of {routing.expert_size} units"
            + (f" and a shared expert of {routing.shared_size}" if routing.shared_size else "")
            + ". A neuron is one unit of one expert (E = expert), weighted by the router: a token "
            "not routed to an expert has 0 for its units. Blue: the router's weight on each expert."
        )
        widgets.chart(routing.figure(), width="stretch", key="neurons_routing_chart")

st.subheader("One neuron across the text")
listed = top.labels()
choice = st.selectbox("Neuron", [*listed, "Another neuron…"], key="neurons_choice")
if choice == "Another neuron…":
    left, right = st.columns(2)
    layer = left.selectbox("Layer", layers, index=len(layers) - 1, key="neurons_layer")
    widgets.fit_kept("neurons_index", 0, stack.activations.shape[1] - 1)
    neuron = right.number_input("Neuron", 0, stack.activations.shape[1] - 1, 0, key="neurons_index")
else:
    index = listed.index(choice)
    layer, neuron = int(top.layers[index]), int(top.neurons[index])

trace = widgets.keep_last_good(
    seq,
    "neurons-trace",
    lambda: cached.neuron_activations(seq, layer=int(layer), neuron=int(neuron), side=side),
)
if trace is None:
    st.stop()
values = trace.values  # (pos,)
html = factor_html(
    trace.tokens,
    highlight.sign_classes(values),
    highlight.peak_shares(values),
    ["#6a51a3", "#e6550d"],
    trace.n_input_tokens,
    ["positive", "negative"],
)
st.markdown(html, unsafe_allow_html=True)
st.caption(
    f"Layer {trace.layer}, neuron {trace.neuron}: largest {values.max():.3g} at "
    f"{widgets.escape_markdown(token_label(int(values.argmax())))}, smallest {values.min():.3g}. "
    "Hover a token for its value."
)
widgets.chart(trace.figure(), width="stretch", key="neurons_trace_chart")
widgets.download_buttons(trace, f"neuron{stem}_L{layer}_N{neuron}", key="neurons-trace")
