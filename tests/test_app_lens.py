"""AppTest: the logit-lens pages (layer predictions, rankings, watch) on the embedded model."""

from __future__ import annotations

import json

import pytest

from ecco_core.facade import LM
from tests.app_helpers import new_app, open_page, run_prompt
from tests.conftest import EU_PROMPT

pytestmark = pytest.mark.embedded


@pytest.fixture(scope="module")
def runs():
    """Count the model runs (generate and capture) made after the prompt ran."""
    calls = {"n": 0}
    original_generate, original_capture = LM.generate, LM.capture

    def generate(self, *args, **kwargs):
        calls["n"] += 1
        return original_generate(self, *args, **kwargs)

    def capture(self, *args, **kwargs):
        calls["n"] += 1
        return original_capture(self, *args, **kwargs)

    LM.generate, LM.capture = generate, capture
    yield calls
    LM.generate, LM.capture = original_generate, original_capture


@pytest.fixture(scope="module")
def eu_app(runs):
    at = run_prompt(new_app(), EU_PROMPT, 3)
    assert not at.exception
    return at


@pytest.fixture(scope="module")
def keys_app(runs):
    at = run_prompt(new_app(), "The keys to the cabinet", 2)
    assert not at.exception
    return at


def figures(at) -> list[dict]:
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


def heatmap_text(at, index: int = 0) -> list[list[str]]:
    return figures(at)[index]["data"][0]["text"]


def picker(at):
    return next(box for box in at.selectbox if box.label == "Position")


def test_layer_predictions_page_follows_a_clicked_token(eu_app, runs):
    at = open_page(eu_app, "ecco_app/views/layer_predictions.py")
    assert not at.exception and not at.error
    text = " ".join(m.value for m in at.markdown)
    assert "' Croatia'" in text and "top prediction at layer **30**" in text
    grid = heatmap_text(at)
    # 10 cells of a 360 px plot area: 4 characters fit (``figures.base.fitted_text``)
    assert len(grid) == 31 and len(grid[0]) == 10 and grid[30][0] == " Cr…"
    assert [d.key for d in at.get("download_button") if d.key.startswith("lp-")] == [
        "lp-download-csv",
        "lp-download-json",
    ]
    before = runs["n"]
    at.pills[0].set_value(25)  # click the token '5' of the output
    at.run()
    assert not at.exception and picker(at).value == 25
    assert "position 24" in figures(at)[0]["layout"]["title"]["text"]
    at.slider(key="lp_topk").set_value(3)
    at.run()
    assert len(heatmap_text(at)[0]) == 3
    assert runs["n"] == before  # nothing re-ran the model


def test_layer_predictions_page_filters_layers(eu_app):
    at = open_page(eu_app, "ecco_app/views/layer_predictions.py")
    at.slider(key="lp_layers::30").set_value((28, 30))
    at.run()
    assert len(heatmap_text(at)) == 3


def test_rankings_page_with_and_without_prompt(eu_app, runs):
    at = open_page(eu_app, "ecco_app/views/rankings.py")
    assert not at.exception and not at.error
    seq = at.session_state["seq"]
    cells = heatmap_text(at)
    assert len(cells) == 31 and len(cells[0]) == seq.n_output_tokens and cells[30][0] == "1"
    before = runs["n"]
    at.toggle(key=f"rank_prompt::{seq.run_id}").set_value(True)
    at.run()
    assert len(heatmap_text(at)[0]) == seq.n_tokens - 1
    at.toggle(key="rank_normed").set_value(False)
    at.run()
    assert not at.exception and "raw lens" in figures(at)[0]["layout"]["title"]["text"]
    assert runs["n"] == before


def test_watch_page_adds_a_token_and_refuses_a_split_word(keys_app, runs):
    at = open_page(keys_app, "ecco_app/views/watch.py")
    assert not at.exception and not at.error
    assert picker(at).value == 5  # the token right after 'cabinet'
    charts = figures(at)
    assert charts[0]["data"][0]["x"] == ["␣is", "␣are"] and len(charts[1]["data"]) == 2
    before = runs["n"]
    at.text_input(key="watch_text").set_value("is, are, was")
    at.run()
    assert figures(at)[0]["data"][0]["x"] == ["␣is", "␣are", "␣was"]
    at.text_input(key="watch_text").set_value("is, 'Croatia'")  # quoted: exactly as typed, 3 tokens
    at.run()
    assert any("'Croatia' is 3 tokens" in e.value and "' Croatia'" in e.value for e in at.error)
    assert figures(at)[0]["data"][0]["x"] == ["␣is", "␣are", "␣was"]  # the last good result stays
    picker(at).set_value(3)
    at.text_input(key="watch_text").set_value("is, are")
    at.run()
    assert not at.error and "position 3" in figures(at)[1]["layout"]["title"]["text"]
    assert runs["n"] == before
