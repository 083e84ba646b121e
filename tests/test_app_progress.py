"""AppTest: progress and Stop beyond saliency (issue 15). Rankings, neuron factors and layer
similarity compute a step at a time (``ecco_app.stepwise``): a progress line says what is done,
Stop keeps what is drawn (the positions ranked so far, or the last good result), Continue
finishes, a failure keeps the last good result; presenter mode enlarges every chart's type.

AppTest has no browser to ask for the next step, so a full run normally finishes a job; these
tests make the app believe it is served and take one step per script run (``STEP_SECONDS = 0``).
"""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest

from ecco_app import state as app
from ecco_app import stepwise
from ecco_core.analysis import neurons, similarity
from ecco_core.errors import NumericalError
from ecco_core.figures import base
from tests.app_helpers import new_app, open_page

RANKINGS, FACTORS, SIMILARITY = (f"ecco_app/views/{p}.py" for p in ("rankings", "factors", "similarity"))


@pytest.fixture()
def tiny_app(tiny):
    at = new_app()
    at.session_state[app.SEQ] = tiny.generate("The list: 1. ab 2. cd 3.", generate=6)
    at.run()
    return at


@pytest.fixture()
def one_step_a_run(monkeypatch):
    monkeypatch.setattr(stepwise, "served", lambda: True)
    monkeypatch.setattr(stepwise, "STEP_SECONDS", 0.0)


def progress_texts(at) -> list[str]:
    return [p.proto.text for p in at.get("progress")]


def captions(at) -> str:
    return " ".join(c.value for c in at.caption)


def charts(at) -> list[dict]:
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def array(value) -> np.ndarray:
    """A chart's array: a list, or plotly's typed-array form {'dtype', 'bdata', 'shape'}."""
    if isinstance(value, dict):
        flat = np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"])
        return flat.reshape([int(n) for n in str(value.get("shape", len(flat))).split(",")])
    return np.asarray(value, dtype=float)


def job(at, name: str) -> stepwise.StepJob:
    """The newest job of view ``name`` (the one on screen)."""
    return [j for j in at.session_state[stepwise.JOBS].values() if f'"{name}"' in j.key][-1]


def test_rankings_draw_block_by_block_stop_keeps_them_and_continue_finishes(tiny_app, one_step_a_run):
    at = open_page(tiny_app, RANKINGS)
    at.toggle(key=f"rank_prompt::{at.session_state[app.SEQ].run_id}").set_value(True).run()
    seq = at.session_state[app.SEQ]
    n = seq.n_tokens - 1
    assert not at.exception and not at.error
    texts = progress_texts(at)
    assert texts and f"of {n} positions" in texts[0] and texts[0].startswith("Ranking each token")
    first = len(charts(at)[0]["data"][0]["x"])
    assert 0 < first < n  # a part is drawn while the rest is computed
    at.button(key="stepwise_stop::rankings").click().run()
    stopped = job(at, "rankings")
    assert stopped.stopped and "Stopped:" in captions(at) and "what was done is drawn" in captions(at)
    drawn = len(charts(at)[0]["data"][0]["x"])
    at.run()
    assert len(charts(at)[0]["data"][0]["x"]) == drawn and not progress_texts(at)  # nothing more
    at.button(key="stepwise_continue::rankings").click().run()
    for _ in range(n):
        if job(at, "rankings").finished:
            break
        at.run()
    whole = job(at, "rankings").result
    assert len(whole.positions) == n and not progress_texts(at)
    # the drawn cells are the engine's own ranks (one projection read twice: bit-equal)
    z = array(charts(at)[0]["data"][0]["z"])
    expected = seq.rankings(include_prompt=True)
    np.testing.assert_array_equal(z, np.log10(expected.ranks))


def test_factors_keep_the_last_good_result_while_a_new_fit_runs_and_after_stop(tiny_app, one_step_a_run):
    at = open_page(tiny_app, FACTORS)
    for _ in range(400):  # the first fit, to its end
        if not progress_texts(at):
            break
        at.run()
    assert at.radio(key="factors_paint").options[1:] and not at.exception
    good = len(at.radio(key="factors_paint").options)
    at.slider(key="factors_k").set_value(good - 2).run()  # another number of factors: a new fit
    assert "activations gathered" in progress_texts(at)[0]  # the first step: one layer's activations
    for _ in range(2 * neurons.NMF_CHECK_EVERY + 8):
        if "fit error" in progress_texts(at)[0]:
            break
        at.run()
    assert "sweep" in progress_texts(at)[0] and "fit error" in progress_texts(at)[0]
    assert len(at.radio(key="factors_paint").options) == good  # meanwhile the last good one stays
    at.button(key="stepwise_stop::factors").click().run()
    assert "the last good result stays" in captions(at) and not at.exception
    assert len(at.radio(key="factors_paint").options) == good
    at.slider(key="factors_k").set_value(good - 3).run()  # yet another fit: the stopped one goes
    unfinished = [
        j for j in at.session_state[stepwise.JOBS].values() if '"factors"' in j.key and not j.finished
    ]
    assert len(unfinished) == 1 and not unfinished[0].stopped


def test_a_failing_comparison_keeps_the_last_good_matrix(tiny_app, one_step_a_run, monkeypatch):
    at = open_page(tiny_app, SIMILARITY)
    n_layers = at.session_state[app.SEQ].hidden_states.shape[0]
    texts = progress_texts(at)
    assert texts and f"of {n_layers} layers" in texts[0]
    for _ in range(2 * n_layers):
        if not progress_texts(at):
            break
        at.run()
    good = charts(at)[0]["data"][0]["z"]

    steps = similarity.similarity_steps

    def broken(seq, **params):
        yield from steps(seq, **{**params, "method": "cka"})
        raise NumericalError("The whitening failed on layer 2 (a test).")

    monkeypatch.setattr(similarity, "similarity_steps", broken)
    at.radio(key="similarity_method").set_value("cca").run()
    for _ in range(2 * n_layers):
        if job(at, "similarity").failed:
            break
        at.run()
    assert "The whitening failed on layer 2" in " ".join(e.value for e in at.error)
    assert charts(at)[0]["data"][0]["z"] == good  # the last good matrix stays on screen
    at.run()
    assert "The whitening failed" in " ".join(e.value for e in at.error) and not at.exception


def test_presenter_mode_enlarges_every_chart_font(tiny_app):
    at = open_page(tiny_app, RANKINGS)
    charts_before = charts(at)
    plain = charts_before[0]["layout"]
    at.toggle(key=app.PRESENTER).set_value(True).run()
    big = charts(at)[0]["layout"]
    assert big["font"]["size"] == pytest.approx(plain["font"]["size"] * 1.3)
    assert big["hoverlabel"]["font"]["size"] == pytest.approx(13 * 1.3)
    cells, before = charts(at)[0]["data"][0], charts_before[0]["data"][0]
    assert cells["textfont"]["size"] == pytest.approx(before["textfont"]["size"] * 1.3)
    n_cols = len(cells["text"][0])  # the cell text is fitted again at the larger size
    fits = int((base.PLOT_WIDTH / min(n_cols, base.WINDOW) - 4) / (base.CHAR_PX * cells["textfont"]["size"]))
    assert all(len(t) <= fits for row in cells["text"] for t in row)


def test_presenter_mode_draws_every_page(tiny):
    at = new_app()
    at.session_state[app.SEQ] = tiny.generate("The list: 1. ab 2. cd 3.", generate=6, attention=True)
    at.session_state[app.PRESENTER] = True
    at.run()
    for page in ("layer_predictions", "rankings", "watch", "saliency", "factors", "neurons"):
        at = open_page(at, f"ecco_app/views/{page}.py")
        assert not at.exception, (page, at.exception)
    for page in ("similarity", "attention"):
        at = open_page(at, f"ecco_app/views/{page}.py")
        assert not at.exception, (page, at.exception)
        assert all(c["layout"]["font"]["size"] >= 15.6 for c in charts(at)), page  # 12 or 13, x 1.3
