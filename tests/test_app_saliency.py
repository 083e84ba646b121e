"""AppTest: the saliency page (method and token pickers, escaping).

The pickers are driven on a tiny random model's run placed in the session (no download, no real
model in the gradient loops); the embedded model keeps a smoke test of its own run through Run.
"""

from __future__ import annotations

import html as htmllib
import re

import pytest

from ecco_app import state as app
from tests.app_helpers import new_app, open_page, run_prompt
from tests.conftest import EU_PROMPT


def bars(at) -> str:
    return " ".join(m.value for m in at.markdown if "ecco-bars" in m.value)


def captions(at) -> str:
    return " ".join(c.value for c in at.caption)


@pytest.fixture(scope="module")
def tiny_run_app(tiny):
    """A tiny random Llama's run (4 generated tokens, attention kept) placed in the session."""
    at = new_app()
    at.session_state[app.SEQ] = tiny.generate("The list: 1. ab 2.", generate=4, attention=True)
    at.run()
    return open_page(at, "ecco_app/views/saliency.py")


def test_pick_a_method_and_a_token_and_the_view_updates(tiny_run_app):
    at = tiny_run_app
    assert not at.exception and not at.error
    seq = at.session_state[app.SEQ]
    assert "Gradient × input" in captions(at)
    assert bars(at).count("explained") == 1
    before = bars(at)
    at.selectbox(key="saliency_method").set_value("erasure")
    at.run()
    assert not at.exception and "drop in the target" in captions(at)
    assert bars(at) != before
    picker = next(s for s in at.selectbox if s.key.startswith("saliency_pos::"))
    assert picker.value == seq.n_input_tokens  # the first generated token
    before = bars(at)
    picker.set_value(picker.value + 1)  # the next generated token
    at.run()
    assert not at.exception
    assert "explained" in bars(at) and bars(at).count("explained") == 1
    assert bars(at) != before  # the bars now explain the picked token
    at.selectbox(key="saliency_method").set_value("integrated_gradients")
    at.run()
    assert not at.exception and "completeness error" in captions(at)


# ----- the embedded model, through the sidebar's Run --------------------------------------------------


@pytest.fixture(scope="module")
def eu_saliency_app():
    return open_page(run_prompt(new_app(), EU_PROMPT, n_generate=2), "ecco_app/views/saliency.py")


@pytest.mark.embedded
def test_the_embedded_run_explains_croatia_and_integrates_gradients(eu_saliency_app):
    """The real model through the page: ' Croatia' explained, and the adaptive IG the page asks for."""
    at = eu_saliency_app
    assert not at.exception and not at.error
    assert "Croatia" in bars(at) and "Gradient × input" in captions(at)
    assert bars(at).count("explained") == 1
    at.selectbox(key="saliency_method").set_value("integrated_gradients")
    at.run()
    assert not at.exception and not at.error and "completeness error" in captions(at)
    assert "Croatia" in bars(at)


@pytest.mark.embedded
def test_contrast_with_a_multi_token_foil_shows_the_pieces(eu_saliency_app):
    at = eu_saliency_app
    at.selectbox(key="saliency_method").set_value("grad_x_input")
    at.selectbox(key="saliency_target").set_value("contrast")
    at.run()
    at.text_input(key="saliency_foil").set_value(" Czech Republic")
    at.run()
    assert any("a foil must be one token" in e.value for e in at.error)


@pytest.mark.embedded
def test_prompt_html_shows_as_text():
    at = open_page(
        run_prompt(new_app(), "<img src=x onerror=alert(1)>", n_generate=2), "ecco_app/views/saliency.py"
    )
    assert not at.exception
    html = bars(at)
    assert "<img" not in html and "&lt;" in html
    assert set(re.findall(r"<\s*([a-zA-Z]+)", html)) <= {"span", "div"}  # no element from the prompt
    tokens_only = re.sub(r'<span style="font-size:0.7rem[^>]*>[^<]*</span>', "", html)  # drop value labels
    shown = htmllib.unescape(re.sub(r"<[^>]+>", "", tokens_only))  # the text a reader sees
    assert shown.startswith("<img src=x onerror=alert(1)>")
