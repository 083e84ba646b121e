"""AppTest: what a classroom needs (issue 15): progressive saliency with Stop, signed values and
true captions, settings that survive page switches, the share link, saved runs, the first screen.

Most tests drive a tiny random Llama's run placed in the session (no download); the share link
runs the embedded model, as a student's browser would.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from ecco_app import progressive, session
from ecco_app import state as app
from ecco_core.model.weights import DEFAULT_MODEL
from tests.app_helpers import APP, ROOT, new_app, open_page

SALIENCY = "ecco_app/views/saliency.py"


def captions(at) -> str:
    return " ".join(c.value for c in at.caption)


def job_of(at) -> progressive.Job:
    jobs = at.session_state[progressive.JOBS]
    method = at.selectbox(key="saliency_method").value
    return next(j for j in jobs.values() if j.params["method"] == method)


@pytest.fixture()
def tiny_app(tiny):
    """A fresh session holding a tiny random Llama's run (6 generated tokens, attention kept)."""
    at = new_app()
    at.session_state[app.SEQ] = tiny.generate("The list: 1. ab 2.", generate=6, attention=True)
    at.run()
    return at


def test_saliency_explains_the_picked_token_first_then_the_rest(tiny_app, monkeypatch):
    monkeypatch.setattr(progressive, "CHUNK_SECONDS", 0.0)  # one token per chunk, however fast
    at = open_page(tiny_app, SALIENCY)
    assert not at.exception and not at.error
    seq = at.session_state[app.SEQ]
    explainable = list(range(seq.n_input_tokens, seq.n_tokens))
    job = job_of(at)
    assert seq.n_input_tokens in job.done  # the picked token (the first generated one) is drawn
    for _ in range(len(explainable)):  # each run of the fragment adds a chunk
        if job.done >= set(explainable):
            break
        at.run()
        job = job_of(at)
    assert job.done == set(explainable) and len(job.seconds) > 2  # in several chunks
    # every row is the engine's own result for that token alone
    seq_rows = job.result
    alone = seq.saliency("grad_x_input", positions=[explainable[-1]])
    np.testing.assert_allclose(seq_rows.row(explainable[-1]), alone.values[0], atol=1e-6)


def test_stop_keeps_what_is_drawn_and_continue_resumes(tiny_app, monkeypatch):
    monkeypatch.setattr(progressive, "CHUNK_SECONDS", 0.0)
    at = open_page(tiny_app, SALIENCY)
    seq = at.session_state[app.SEQ]
    at.selectbox(key="saliency_method").set_value("erasure")
    at.run()
    job = job_of(at)
    if job.done == set(range(seq.n_input_tokens, seq.n_tokens)):
        pytest.fail("the whole run was explained in one go: nothing left to stop")
    at.button(key="saliency_stop").click()
    at.run()
    job = job_of(at)
    done = set(job.done)
    assert job.stopped and "Stopped:" in captions(at)
    at.run()
    assert job_of(at).done == done  # stopped: nothing more is computed
    assert not at.exception and "drop in the target" in captions(at)  # the drawn result stays
    at.button(key="saliency_continue").click()
    at.run()
    assert len(job_of(at).done) > len(done)


def test_signed_values_and_captions_say_what_is_drawn(tiny_app):
    at = open_page(tiny_app, SALIENCY)
    assert "share of the attribution's size (the row sums to 1)" in captions(at)
    at.radio(key="saliency_sign").set_value("signed")
    at.run()
    assert "signed values: purple raised the target, orange lowered it" in captions(at)
    result = job_of(at).result
    assert (result.signed < 0).any()  # there is something to draw orange
    at.selectbox(key="saliency_method").set_value("gradient")
    at.run()
    assert "has no sign" in captions(at)
    assert all(r.key != "saliency_sign" for r in at.radio)  # no signed toggle for a norm


def test_contrastive_caption_asks_why_this_token_rather_than_the_foil(tiny_app):
    at = open_page(tiny_app, SALIENCY)
    seq = at.session_state[app.SEQ]
    at.selectbox(key="saliency_target").set_value("contrast")
    at.run()
    at.text_input(key="saliency_foil").set_value("b")
    at.run()
    picked = seq.tokens[seq.n_input_tokens]
    assert not at.exception and not at.error
    assert f"why {picked!r} rather than 'b'" in captions(at)
    assert "share of the total (sums to 1)" not in captions(at)


def test_page_settings_survive_a_page_switch(tiny_app):
    at = open_page(tiny_app, "ecco_app/views/rankings.py")
    at.toggle(key="rank_normed").set_value(False)
    at.run()
    at = open_page(at, SALIENCY)
    at.selectbox(key="saliency_method").set_value("erasure")
    at.run()
    at = open_page(at, "ecco_app/views/similarity.py")
    at.radio(key="similarity_method").set_value("svcca")
    at.run()
    at = open_page(at, "ecco_app/views/rankings.py")
    assert at.toggle(key="rank_normed").value is False
    at = open_page(at, SALIENCY)
    assert at.selectbox(key="saliency_method").value == "erasure"
    at = open_page(at, "ecco_app/views/similarity.py")
    assert at.radio(key="similarity_method").value == "svcca"
    assert not at.exception


def test_a_saved_run_opens_on_every_page(tiny_app, tiny):
    seq = tiny_app.session_state[app.SEQ]
    data = session.run_bytes(seq)
    opened, note = session.load_run(data, "run.npz", lambda name: tiny)
    assert note is None and opened.tokens == seq.tokens and opened.run_id == seq.run_id
    np.testing.assert_array_equal(opened.hidden_states, seq.hidden_states)  # a round trip is exact
    at = new_app()
    at.session_state[app.SEQ] = opened
    at.session_state["watch_space"] = False  # the tiny tokenizer has one token per character
    at.session_state["watch_text"] = "a, b"
    at.run()
    pages = sorted((ROOT / "ecco_app" / "views").glob("*.py"))
    for page in pages:
        at = open_page(at, str(page.relative_to(ROOT)))
        assert not at.exception, f"{page.name}: {at.exception}"
        errors = [e.value for e in at.error]
        if page.name == "compare.py":  # its example pair differs in length under a character tokenizer
            errors = [e for e in errors if "needs the same number of tokens" not in e]
        assert not errors, f"{page.name}: {errors}"


def test_a_file_that_is_not_a_run_says_so():
    from ecco_core.errors import EccoError

    with pytest.raises(EccoError, match="not a saved run"):
        session.load_run(b"not a run", "notes.npz", lambda name: None)


def test_first_screen_teaches_and_the_example_box_follows_the_prompt():
    at = new_app()
    shown = " ".join(m.value for m in at.markdown)
    assert "Start here" in shown and "1. **Layer predictions**" in shown
    assert at.selectbox(key="model_label").value == DEFAULT_MODEL  # the name, not cut off
    assert at.selectbox(key="example").value in app.EXAMPLES
    at.text_area(key="prompt").set_value("My own words")
    at.run()
    assert at.selectbox(key="example").value == app.CUSTOM_EXAMPLE
    at.selectbox(key="example").set_value("Counting")
    at.run()
    assert at.text_area(key="prompt").value == app.EXAMPLES["Counting"]


def test_presenter_mode_enlarges_type_and_hides_downloads(tiny_app):
    at = tiny_app
    styles = " ".join(h.proto.body for h in at.get("html"))
    assert "box-shadow" in styles and "stDownloadButton" not in styles
    at.toggle(key=app.PRESENTER).set_value(True)
    at.run()
    styles = " ".join(h.proto.body for h in at.get("html"))
    assert "font-size: 1.25rem" in styles and "stDownloadButton" in styles


@pytest.mark.embedded
def test_a_share_link_reproduces_the_run_page_settings_and_position():
    """A student opens the teacher's link: the same run, the page's settings and the position."""
    link = {
        "model": DEFAULT_MODEL,
        "prompt": "The keys to the cabinet",
        "n": "3",
        "page": "watch",
        "pos": "6",
        "view": json.dumps({"watch_text": "is, are, was"}),
    }
    at = AppTest.from_file(APP, default_timeout=240)
    for key, value in link.items():
        at.query_params[key] = value
    at.run()
    assert not at.exception and not at.error
    seq = at.session_state[app.SEQ]
    assert "".join(seq.tokens[: seq.n_input_tokens]) == link["prompt"] and seq.n_output_tokens == 3
    at = open_page(at, "ecco_app/views/watch.py")
    assert at.text_input(key="watch_text").value == "is, are, was"
    assert at.selectbox(key=f"watch_position::{seq.run_id}").value == 6
    written = at.query_params
    assert written["prompt"] == [link["prompt"]] or written["prompt"] == link["prompt"]
    assert "watch" in str(written["page"]) and "6" in str(written["pos"])
