"""Compare two prompts: attribution patching over layers x positions, exact patching on demand."""

import streamlit as st

from ecco_app import cached, state, widgets
from ecco_core.analysis import interventions as iv
from ecco_core.errors import EccoError, ModelTypeError
from ecco_core.figures.interventions import patching_scatter
from ecco_core.model.weights import DEFAULT_MODEL
from ecco_core.results.interventions import METRICS, SITE_NAMES, site_rows

RESULT = "compare_result"  # {"pair": PromptPair, "grid": Patching}: the last good comparison
CLEAN = "The Eiffel Tower is in the city of"
CORRUPTED = "The Colosseum is in the city of"

st.header("🔀 Compare two prompts")
widgets.intro(
    "Which activations carry the difference between a clean and a corrupted prompt? Each cell "
    "patches one activation of the corrupted run into the clean run and shows how much the metric "
    "(the answer's logit minus the foil's, or the answer's probability) changes.",
    "The left grid is attribution patching, a first-order estimate of every cell from two forwards "
    "and one backward; pick a row, a column or a cell to patch it exactly and see both side by side. "
    "Red cells lower the metric (towards the corrupted answer here), blue cells raise it.",
)
if RESULT not in st.session_state:
    st.session_state[RESULT] = None


def current_lm():
    seq = state.stored_seq()
    if seq is not None and seq.lm is not None:
        return seq.lm
    model = state.MODEL_CHOICES.get(st.session_state.get("model_label", ""))
    return cached.load_lm(model or st.session_state.get("model_other", "") or DEFAULT_MODEL)


with st.form("compare_form"):
    left, right = st.columns(2)
    clean = left.text_input("Clean prompt", CLEAN, key="compare_clean")
    corrupted = right.text_input(
        "Corrupted prompt (same number of tokens)", CORRUPTED, key="compare_corrupted"
    )
    a, b, c = st.columns(3)
    answer = a.text_input("Answer (clean)", " Paris", key="compare_answer", help="One token; mind the space.")
    foil = b.text_input("Foil (corrupted answer)", " Rome", key="compare_foil")
    metric = c.radio(
        "Metric",
        METRICS,
        format_func={"logit_diff": "logit difference", "prob": "answer probability"}.get,
        horizontal=True,
        key="compare_metric",
    )
    submitted = st.form_submit_button("Compare", type="primary", key="compare_submit")

if submitted or st.session_state[RESULT] is None:  # the first visit shows the example pair
    try:
        lm = current_lm()
        with st.spinner("Two forwards and one backward…"), cached.model_turn(lm, "compare"):
            pair = lm.compare(clean, corrupted, answer=answer, foil=foil or None, metric=metric)
            st.session_state[RESULT] = {"pair": pair, "grid": pair.attribution_patching()}
    except ModelTypeError as error:  # not this model's view: say why and stop
        widgets.refuse(error)
    except EccoError as error:
        st.error(str(error))

kept = st.session_state[RESULT]
if kept is None:
    st.info("Type a clean and a corrupted prompt of the same length in tokens and press **Compare**.")
    st.stop()
pair, grid = kept["pair"], kept["grid"]
unit = "logit difference" if grid.metric == "logit_diff" else "probability"
st.markdown(
    f"Clean run: {unit} **{grid.metric_clean:.4g}** · corrupted run: **{grid.metric_corrupted:.4g}** "
    f"· answer {grid.answer!r}" + (f", foil {grid.foil!r}" if grid.foil else "")
)

sites = grid.sites
top, middle = st.columns([2, 1])
site = top.radio("Site", sites, format_func=SITE_NAMES.get, horizontal=True, key="compare_site")
kind = middle.radio(
    "Show",
    ["both", "approx", "exact"],
    format_func={"both": "side by side", "approx": "approximation", "exact": "exact"}.get,
    horizontal=True,
    key="compare_kind",
)
widgets.chart(grid.figure(site=site, kind=kind), width="stretch")

st.subheader("Exact patching")
rows = site_rows(site, grid.approx[site].shape[0])
scope, where_layer, where_pos, press = st.columns([1.2, 1, 1.4, 0.8])
what = scope.radio(
    "Patch",
    ["row", "column", "cell"],
    key="compare_scope",
    format_func={
        "row": "a row: every layer at one position",
        "column": "a column: one layer, every position",
        "cell": "one cell",
    }.get,
)
layer = where_layer.selectbox(
    "Layer", list(range(len(rows))), format_func=rows.__getitem__, key="compare_layer", disabled=what == "row"
)
tokens = grid.clean_tokens
position = where_pos.selectbox(
    "Position",
    list(range(len(tokens))),
    index=len(tokens) - 1,
    format_func=lambda p: f"{p}: {tokens[p]!r}",
    key="compare_position",
    disabled=what == "column",
)
if press.button("Patch exactly", key="compare_exact"):
    try:
        with st.spinner("One batched forward…"), cached.model_turn(pair.lm, "exact patching"):
            grid = iv.with_exact(
                grid, pair, site, None if what == "row" else layer, None if what == "column" else position
            )
        st.session_state[RESULT] = {"pair": pair, "grid": grid}
        st.rerun()
    except EccoError as error:
        st.error(str(error))

table = grid.comparison()
if len(table):
    left, right = st.columns([3, 2])
    left.dataframe(table, hide_index=True, width="stretch")
    widgets.chart(patching_scatter(grid), width="stretch", where=right)
else:
    st.caption("No exact values yet: pick a row, a column or a cell and press **Patch exactly**.")
widgets.download_buttons(grid, "patching", "compare-download")
