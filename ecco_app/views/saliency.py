"""Saliency: which earlier tokens drove each generated token (ecco's input saliency).

The picked token is computed first (one target: about a second), then the other generated
tokens a chunk at a time inside a fragment that shows its progress and has a Stop button.
"""

import streamlit as st

from ecco_app import progressive, state, widgets
from ecco_app.panels import saliency as panel
from ecco_core.analysis.attribution import ADAPTIVE_TOLERANCE, LABELS

st.header("✨ Saliency")
widgets.intro(
    "This page shows how much each earlier token mattered for each token the model wrote, by "
    "gradients, integrated gradients, erasure or attention.",
    "Hover or click a generated token (underlined, after ▶): earlier tokens turn darker purple "
    "the more they drove it. With **signed** values (gradient × input, integrated gradients, "
    "erasure) orange marks tokens that worked against it.",
)
widgets.show_run_error()
seq = state.current_seq()
if seq.model_type == "mlm":
    st.info("Saliency explains generated tokens: run a causal model (e.g. SmolLM2) or an encoder-decoder.")
    st.stop()

left, middle, right = st.columns([1.2, 1.4, 1])
method = left.selectbox("Method", list(LABELS), format_func=LABELS.get, key="saliency_method")
target = middle.selectbox("Target", list(panel.TARGETS), format_func=panel.TARGETS.get, key="saliency_target")
foil = None
if target.startswith("contrast"):
    foil = right.text_input(
        "Foil token",
        " is",
        key="saliency_foil",
        help="The token the model did not choose, e.g. ' is' (one token; mind the leading space).",
    )
ig = method == "integrated_gradients"
n_steps, baseline = progressive.IG_STEPS, "zero"
if ig:
    steps_col, base_col = st.columns([2, 1])
    n_steps = steps_col.slider(
        "Integration steps",
        4,
        64,
        progressive.IG_STEPS,
        4,
        key="saliency_steps",
        help=(
            "The most gradient evaluations per token: the adaptive rule places them where the "
            "target changes along the path and stops once completeness is within "
            f"{100 * ADAPTIVE_TOLERANCE:.1f} %."
        ),
    )
    baseline = base_col.radio("Baseline", ["zero", "pad"], horizontal=True, key="saliency_baseline")

first = seq.n_input_tokens if seq.n_output_tokens else 1
explainable = list(range(max(first, seq.first_predicted_position), seq.n_tokens))
picker_key = f"saliency_pos::{seq.run_id}"
position = widgets.position_picker(
    seq,
    "saliency_pos",
    first=explainable[0] if explainable else first,
    default=explainable[0] if explainable else first,
    label="Explain the token at",
    help="Type to search, or click a generated token in the text below.",
)
signable = method in panel.SIGNED_METHODS
shown_as = "share"
if signable:
    shown_as = st.radio(
        "Values",
        ["share", "signed"],
        format_func={"share": "share of the total (magnitudes)", "signed": "signed (for / against)"}.get,
        horizontal=True,
        key="saliency_sign",
        help="Share: each token's share of the attribution's size (the row sums to 1). Signed: the "
        "attribution summed over embedding dimensions, positive for tokens that raised the target.",
    )

if foil == "":
    st.info("Type a foil token to contrast with, e.g. ' is'.")
    st.stop()
params = {
    "method": method,
    "target": target,
    "foil": foil,
    "n_steps": int(n_steps),
    "baseline": baseline,
    "quadrature": "adaptive" if ig else "auto",
}
job = progressive.get_job(seq, params)


def explain_picked():
    if position not in job.done:
        progressive.add(job, seq, [position])
    return job.result


with st.spinner(f"Explaining {widgets.position_label(seq, position)} by {LABELS[method]}…"):
    result = widgets.keep_last_good(seq, "saliency", explain_picked)
if result is None:
    st.stop()
panel.explain_progressively(seq, job, result, position, explainable, picker_key, shown_as)
