"""Intervene and regenerate: ablate or steer, then compare the two continuations token by token."""

import pandas as pd
import streamlit as st

from ecco_app import cached, state, widgets
from ecco_core.analysis import interventions as iv
from ecco_core.errors import EccoError, InputError

KINDS = {
    "neurons": "Ablate neurons",
    "head": "Ablate an attention head",
    "mlp": "Ablate a layer's MLP",
    "factor": "Ablate an NMF factor's top neurons",
    "steer_prompts": "Steer: difference of two prompts",
    "steer_factor": "Steer: add an NMF factor",
}

st.header("🛠️ Intervene and regenerate")
widgets.intro(
    "Change one part of the model, generate again from the same prompt, and compare the two "
    "continuations token by token.",
    "Ablating sets activations to 0 (or to their mean over the prompt); steering adds a direction "
    "at every position. Each row shows a token's probability under both models with the same "
    "prefix, so a change shows even where the chosen token stays the same.",
)
widgets.show_run_error()
seq = state.current_seq()
widgets.require_causal(seq, "Intervene and regenerate")
lm = seq.require_lm()
n_layers = lm.arch.n_layers


def parse_numbers(text: str, name: str) -> list[int]:
    try:
        return [int(x) for x in text.replace(" ", "").split(",") if x]
    except ValueError:
        raise InputError(
            f"{name} must be whole numbers separated by commas, e.g. 12, 40, 7; not {text!r}."
        ) from None


def factorization(k: int):
    return cached.factors(
        seq,
        n_components=k,
        from_layer=0,
        to_layer=n_layers,
        positions="all",
        method="nmf",
        skip_first=True,
        side="decoder",
    )


kind = st.radio("Intervention", list(KINDS), format_func=KINDS.get, horizontal=True, key="intervene_kind")
a, b, c = st.columns(3)
mode = "zero"
if kind in ("neurons", "head", "mlp", "factor"):
    mode = c.radio(
        "Set to",
        iv.MODES,
        format_func={"zero": "zero", "mean": "mean over the prompt"}.get,
        horizontal=True,
        key="intervene_mode",
    )
layer = a.number_input(
    "Layer",
    0,
    n_layers - 1,
    min(3, n_layers - 1),
    key="intervene_layer",
    disabled=kind in ("factor", "steer_factor"),
)
units_text, head, positive, negative, strength, factor, n_factors = "", 0, "", "", 0.0, 0, 8
if kind == "neurons":
    units_text = b.text_input("Neurons (comma-separated)", "0, 1, 2", key="intervene_neurons")
elif kind == "head":
    head = b.number_input("Head", 0, iv.n_heads(lm) - 1, 0, key="intervene_head")
elif kind in ("factor", "steer_factor"):
    n_factors = b.slider("Factors (NMF)", 2, 12, 8, key="intervene_k")
    factor = c.number_input("Factor", 0, n_factors - 1, 0, key="intervene_factor")
if kind == "steer_prompts":
    left, right = st.columns(2)
    positive = left.text_input("Towards (prompt)", "I love this, it is wonderful", key="intervene_positive")
    negative = right.text_input("Away from (prompt)", "I hate this, it is terrible", key="intervene_negative")
if kind.startswith("steer"):
    strength = st.slider("Strength", -20.0, 20.0, 4.0, 0.5, key="intervene_strength")
n_new = st.number_input("Tokens to generate", 1, 100, min(20, max(seq.n_output_tokens, 5)), key="intervene_n")


def interventions() -> list:
    if kind == "neurons":
        return [iv.ablate_neurons(int(layer), parse_numbers(units_text, "Neurons"), mode)]
    if kind == "head":
        return [iv.ablate_head(int(layer), int(head), mode)]
    if kind == "mlp":
        return [iv.ablate_mlp(int(layer), mode)]
    if kind == "factor":
        return iv.ablate_factor(factorization(n_factors), int(factor), top=20, mode=mode)
    if kind == "steer_factor":
        return iv.steer_factor(factorization(n_factors), int(factor), float(strength))
    direction = iv.steering_direction(lm, positive, negative, int(layer))
    return [iv.steer(int(layer), direction, float(strength), label="(towards - away)")]


key = f"intervene_result::{seq.run_id}"
if st.button("Regenerate", type="primary", key="intervene_run") or key not in st.session_state:
    try:
        with st.spinner("Generating under the intervention…"), cached.model_turn(lm, "regenerate"):
            st.session_state[key] = seq.regenerate(interventions(), generate=int(n_new))
    except EccoError as error:
        st.error(str(error))
result = st.session_state.get(key)  # the first visit shows the default intervention
if result is None:
    st.info("Pick an intervention and press **Regenerate**.")
    st.stop()

st.markdown(f"**{result.description}**")
diverged = result.first_divergence
st.caption(
    "The continuations agree token for token."
    if diverged is None
    else f"The continuations part at generated token {diverged}."
)
frame = result.to_frame()
shown = pd.DataFrame(
    {
        "step": frame["step"],
        "original": frame["original"],
        "p": frame["p_original"],
        "Δp under intervention": frame["p_original_intervened"] - frame["p_original"],
        "intervened": frame["intervened"],
        "p ": frame["p_intervened"],
        "Δp vs original model": frame["p_intervened"] - frame["p_intervened_original"],
    }
)
st.dataframe(shown.style.format(precision=4, na_rep=""), hide_index=True, width="stretch")
left, right = st.columns(2)
left.caption("Original")
left.code("".join(result.original_tokens), language=None, wrap_lines=True)
right.caption("Intervened")
right.code("".join(result.intervened_tokens), language=None, wrap_lines=True)
widgets.chart(result.figure(), width="stretch")
widgets.download_buttons(result, "regeneration", "intervene-download", frame=lambda: frame)
