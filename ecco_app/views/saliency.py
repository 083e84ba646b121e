"""Saliency: which earlier tokens drove each generated token (ecco's input saliency)."""

import streamlit as st

from ecco_app import cached, state, widgets
from ecco_app.components.saliency import minimal_highlighter
from ecco_core.analysis.attribution import LABELS
from ecco_core.highlight import saliency_bars_html

TARGETS = {
    "prob": "Probability of the token (ecco)",
    "logit": "Logit of the token",
    "contrast": "Logit difference vs a foil",
    "contrast_prob": "Probability difference vs a foil",
}
BACKENDS = {"hand-written": "the hand-written backward", "autograd": "PyTorch autograd"}
IG_STEPS = 12  # with the adaptive rule (make bench records its completeness error and time)

st.header("✨ Saliency")
widgets.intro(
    "This page shows how much each earlier token mattered for each token the model wrote, by "
    "gradients, integrated gradients, erasure or attention.",
    "Hover or click a generated token (underlined, after ▶): earlier tokens turn darker purple "
    "the more they drove it; orange means the token worked against it.",
)
widgets.show_run_error()
seq = state.current_seq()
if seq.model_type == "mlm":
    st.info("Saliency explains generated tokens: run a causal model (e.g. SmolLM2) or an encoder-decoder.")
    st.stop()

left, middle, right = st.columns([1.2, 1.4, 1])
method = left.selectbox("Method", list(LABELS), format_func=LABELS.get, key="saliency_method")
target = middle.selectbox("Target", list(TARGETS), format_func=TARGETS.get, key="saliency_target")
foil = None
if target.startswith("contrast"):
    foil = right.text_input(
        "Foil token",
        " is",
        key="saliency_foil",
        help="The token the model did not choose, e.g. ' is' (one token; mind the leading space).",
    )
ig = method == "integrated_gradients"
n_steps, baseline = IG_STEPS, "zero"
if ig:
    steps_col, base_col = st.columns([2, 1])
    n_steps = steps_col.slider(
        "Integration steps",
        4,
        64,
        IG_STEPS,
        4,
        key="saliency_steps",
        help="Gradient evaluations, placed where the target changes along the path (adaptive rule).",
    )
    baseline = base_col.radio("Baseline", ["zero", "pad"], horizontal=True, key="saliency_baseline")

first = seq.n_input_tokens if seq.n_output_tokens else 1
explainable = list(range(first, seq.n_tokens))
picker_key = f"saliency_pos::{seq.run_id}"
position = widgets.position_picker(
    seq,
    "saliency_pos",
    first=first,
    default=first,
    label="Explain the token at",
    help="Or click a generated token in the text below.",
)


def follow_click() -> None:
    """A click in the highlighter picks that token in the select box."""
    clicked = (st.session_state.get("saliency_view") or {}).get("clicked")
    if clicked in explainable:
        st.session_state[picker_key] = clicked


if foil == "":
    st.info("Type a foil token to contrast with, e.g. ' is'.")
    st.stop()
with st.spinner("Attributing…"):
    result = widgets.keep_last_good(
        seq,
        "saliency",
        lambda: cached.saliency(
            seq,
            method=method,
            target=target,
            foil=foil,
            n_steps=n_steps,
            baseline=baseline,
            quadrature="adaptive" if ig else "auto",
            positions=[position] if ig else None,
        ),
    )
if result is None:
    st.stop()

caption = f"**{LABELS[result.method]}** · values are the {result.unit}"
if result.backend:
    caption += f" · gradients by {BACKENDS.get(result.backend, result.backend)}"
if result.completeness_error is not None:
    error = float(result.completeness_error.max())
    verdict = "✅" if error <= 0.02 else "⚠️ add steps or switch baseline"
    caption += (
        f" · completeness error {100 * error:.1f}% {verdict} (signed attributions sum to "
        f"{result.signed.sum(-1)[0]:.4g}; f(x) − f(baseline) = "
        f"{(result.target_values - result.baseline_values)[0]:.4g})"
    )
st.caption(caption)

minimal, detailed, heatmap = st.tabs(["Minimal", "Detailed", "Heatmap"])
with minimal:
    minimal_highlighter(result, position, explainable, key="saliency_view", on_click=follow_click)
with detailed:
    if position in result.positions:
        row = result.row(position)
        bars = saliency_bars_html(result.tokens, row, position, seq.n_input_tokens, result.unit)
        st.markdown(bars, unsafe_allow_html=True)
with heatmap:
    st.plotly_chart(result.figure(), width="stretch", key="saliency_heatmap")

widgets.download_buttons(result.to_frame(), result.to_dict(), f"saliency-{result.method}", key="saliency")
