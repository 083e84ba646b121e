"""AppTest: the neuron pages (factors, top neurons, layer similarity) on the embedded model."""

from __future__ import annotations

import numpy as np
import pytest

from ecco_app.state import EXAMPLES
from tests.app_helpers import new_app, open_page, run_prompt

pytestmark = pytest.mark.embedded

MIXED = EXAMPLES["Mixed: list, date, sentence"]


@pytest.fixture(scope="module")
def mixed_app():
    """One app session with a run of the mixed prompt (3 generated tokens)."""
    return run_prompt(new_app(), MIXED, n_generate=3)


def page_html(at) -> str:
    return " ".join(m.value for m in at.markdown)


def test_factor_page_paints_the_text_and_repaints_by_one_factor(mixed_app):
    at = open_page(mixed_app, "ecco_app/views/factors.py")
    assert not at.exception and not at.error
    assert any("set to 0 first" in c.value for c in at.caption)  # the clipping note
    html = page_html(at)
    assert "ecco-text" in html and "Factor 0" in html and "milk" in html
    at.slider(key="factors_k").set_value(4).run()
    assert at.radio(key="factors_paint").options == [
        "strongest factor",
        "Factor 0",
        "Factor 1",
        "Factor 2",
        "Factor 3",
    ]
    at.radio(key="factors_paint").set_value(2).run()
    assert not at.exception
    assert "Factor 2 +" in page_html(at)  # every tinted token's title names the chosen factor
    assert "Factor 0 " not in page_html(at).split("ecco-text")[1].split("</div>")[0]
    at.radio(key="factors_method").set_value("pca").run()
    assert not at.exception and any("PCA scores are signed" in c.value for c in at.caption)


def test_factor_page_refuses_more_factors_than_positions():
    at = run_prompt(new_app(), "one two three", n_generate=0)
    at = open_page(at, "ecco_app/views/factors.py")
    at.radio(key="factors_positions").set_value("output").run()
    assert any("no generated tokens" in e.value for e in at.error)


def test_top_neurons_page_lists_a_token_and_paints_a_neuron(mixed_app):
    at = open_page(mixed_app, "ecco_app/views/neurons.py")
    assert not at.exception and not at.error
    position_key = next(s.key for s in at.selectbox if s.key and s.key.startswith("neurons_position"))
    at.selectbox(key=position_key).set_value(5).run()  # the list number "1"
    frame = at.dataframe[0].value
    seq = at.session_state["seq"]
    above = (seq.activations[:, :, 5] - seq.activations.mean(axis=2)).ravel()  # ranked above the mean
    best = np.argsort(-above)[: len(frame)]
    assert frame["above_mean"].to_numpy() == pytest.approx(above[best], rel=1e-5)
    at.toggle(key="neurons_relative").set_value(False).run()
    column = seq.activations[:, :, 5].ravel()
    best = np.argsort(-column)[: len(frame)]
    assert at.dataframe[0].value["activation"].to_numpy() == pytest.approx(column[best], rel=1e-6)
    at.selectbox(key="neurons_choice").set_value("Another neuron…").run()
    at.selectbox(key="neurons_layer").set_value(3).run()
    at.number_input(key="neurons_index").set_value(7).run()
    assert not at.exception
    assert any("Layer 3, neuron 7" in c.value for c in at.caption)


def test_similarity_page_switches_method_and_source(mixed_app):
    at = open_page(mixed_app, "ecco_app/views/similarity.py")
    assert not at.exception and not at.error
    assert any("direct neighbour" in m.value for m in at.markdown)
    at.radio(key="similarity_method").set_value("svcca").run()
    at.slider(key="similarity_dims").set_value(6).run()
    assert any("top 6 directions" in m.value for m in at.markdown)
    at.radio(key="similarity_source").set_value("ffn").run()
    assert not at.exception and not at.error
