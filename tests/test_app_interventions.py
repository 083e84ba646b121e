"""AppTest: the Interventions pages (compare two prompts, intervene and regenerate, direct logit
attribution) on the embedded model: real values, bad input kept beside the last good result."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ecco_app import state, store
from ecco_app.state import MODEL_CHOICES
from ecco_core.model.weights import EMBEDDED_ENCODER
from tests.app_helpers import new_app, open_page, run_prompt
from tests.conftest import EU_PROMPT

pytestmark = pytest.mark.embedded


@pytest.fixture(scope="module")
def eu_app():
    at = run_prompt(new_app(), EU_PROMPT, 3)
    assert not at.exception
    return at


def test_compare_page_grid_exact_row_and_a_bad_pair(eu_app):
    at = open_page(eu_app, "ecco_app/views/compare.py")
    assert not at.exception and not at.error  # the first visit compares the example pair
    first = at.session_state["compare_result"]["grid"]
    at.button(key="compare_submit").click().run()
    assert not at.exception and not at.error
    kept = at.session_state["compare_result"]
    assert np.array_equal(kept["grid"].approx["resid"], first.approx["resid"])
    pair, grid = kept["pair"], kept["grid"]
    with torch.inference_mode():
        logits = pair.lm.model(input_ids=pair.clean_ids[None]).logits[0, -1].double()
    own = float(logits[pair.answer_id] - logits[pair.foil_id])
    assert grid.metric_clean == pytest.approx(own, abs=1e-3 * max(1.0, abs(own)))
    assert grid.metric_clean > 0 > grid.metric_corrupted  # Paris for the tower, Rome for the Colosseum
    assert any("Clean run" in m.value for m in at.markdown) and len(at.get("plotly_chart")) == 1
    at.radio(key="compare_scope").set_value("row").run()
    at.button(key="compare_exact").click().run()
    assert not at.exception and not at.error
    table = at.dataframe[0].value
    assert len(table) == pair.lm.arch.n_layers + 1 and (table["position"] == pair.n_tokens - 1).all()
    # patching the last position's residual stream after the last block gives the corrupted metric
    last = table["exact"].to_numpy()[-1]
    assert last == pytest.approx(grid.metric_corrupted - grid.metric_clean, abs=1e-3)
    at.text_input(key="compare_corrupted").set_value("The Colosseum in Rome is in the city of")
    at.button(key="compare_submit").click().run()
    assert any("same number of tokens" in e.value for e in at.error)
    assert at.session_state["compare_result"]["grid"] is not None and len(at.get("plotly_chart")) >= 1


def test_intervene_page_nothing_changes_nothing_and_an_ablation_changes_probabilities(eu_app):
    at = open_page(eu_app, "ecco_app/views/intervene.py")
    assert not at.exception and not at.error
    seq = at.session_state["seq"]
    first = at.session_state[f"intervene_result::{seq.run_id}"]  # the first visit runs the default
    assert "zero-ablate 3 neuron(s) [0, 1, 2] of layer 3" in first.description
    at.text_input(key="intervene_neurons").set_value("")
    at.number_input(key="intervene_n").set_value(3)
    at.button(key="intervene_run").click().run()
    assert not at.exception and not at.error
    assert any("agree token for token" in c.value for c in at.caption)
    seq = at.session_state["seq"]
    result = at.session_state[f"intervene_result::{seq.run_id}"]
    assert result.original_ids == [int(i) for i in seq.token_ids[seq.n_input_tokens :]]
    assert np.allclose(result.original_p, result.original_p_intervened, atol=1e-6)
    at.radio(key="intervene_kind").set_value("mlp").run()
    at.radio(key="intervene_mode").set_value("mean").run()
    at.number_input(key="intervene_layer").set_value(0).run()
    at.button(key="intervene_run").click().run()
    assert not at.exception and not at.error
    result = at.session_state[f"intervene_result::{seq.run_id}"]
    assert "mean-ablate the MLP of layer 0" in result.description
    assert np.abs(result.original_p_intervened - result.original_p).max() > 1e-3
    at.radio(key="intervene_kind").set_value("neurons").run()
    at.text_input(key="intervene_neurons").set_value("a, b").run()
    at.button(key="intervene_run").click().run()
    assert any("whole numbers separated by commas" in e.value for e in at.error)
    assert at.session_state[f"intervene_result::{seq.run_id}"] is result  # the last good one stays
    at.radio(key="intervene_kind").set_value("steer_prompts").run()
    at.button(key="intervene_run").click().run()
    assert not at.exception and not at.error
    assert "add 4 x (towards - away)" in at.session_state[f"intervene_result::{seq.run_id}"].description


def test_dla_page_sums_to_the_logit_and_keeps_the_last_good_result(eu_app):
    at = open_page(eu_app, "ecco_app/views/dla.py")
    assert not at.exception and not at.error
    handle = at.session_state[state.SEQ]  # the run and its views' last good results live in the store
    result = store.shared_store().get(handle.session_id, (state.LAST_GOOD, handle.run_id, "dla"))
    assert result.sum_error <= result.tolerance and result.token == " Croatia"
    assert any("the contributions sum to" in c.value for c in at.caption)
    at.radio(key="dla_view").set_value("heads").run()
    assert not at.exception and len(at.dataframe[0].value) == 30 * 9
    at.text_input(key="dla_token").set_value(" Cyprus island").run()
    assert any("tokens" in e.value for e in at.error)
    assert len(at.get("plotly_chart")) == 1  # the last good result stays on screen


@pytest.mark.parametrize("page", ["compare", "intervene", "dla"])
def test_interventions_pages_explain_a_masked_lm(page):
    encoder = next(label for label, value in MODEL_CHOICES.items() if value == EMBEDDED_ENCODER)
    at = run_prompt(new_app(), "The keys to the cabinet", n_generate=0, model_label=encoder)
    at = open_page(at, f"ecco_app/views/{page}.py")
    assert not at.exception and not at.error
    shown = " ".join(m.value for m in at.info)
    assert "masked" in shown.lower() or "causal" in shown.lower(), shown
