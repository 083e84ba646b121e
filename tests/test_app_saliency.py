"""AppTest: the saliency page on the embedded model (method and token pickers, escaping)."""

from __future__ import annotations

import html as htmllib
import re

import pytest

from tests.app_helpers import new_app, open_page, run_prompt
from tests.conftest import EU_PROMPT

pytestmark = pytest.mark.embedded


def bars(at) -> str:
    return " ".join(m.value for m in at.markdown if "ecco-bars" in m.value)


def test_pick_a_method_and_a_token_and_the_view_updates():
    at = open_page(run_prompt(new_app(), EU_PROMPT, n_generate=4), "ecco_app/views/saliency.py")
    assert not at.exception
    assert "Croatia" in bars(at) and "Gradient × input" in " ".join(c.value for c in at.caption)
    before = bars(at)
    at.selectbox(key="saliency_method").set_value("erasure")
    at.run()
    assert not at.exception and "drop in the target" in " ".join(c.value for c in at.caption)
    assert bars(at) != before
    picker = next(s for s in at.selectbox if s.key.startswith("saliency_pos::"))
    picker.set_value(picker.value + 1)  # the token after ' Croatia'
    at.run()
    assert not at.exception
    assert "explained" in bars(at) and bars(at).count("explained") == 1
    at.selectbox(key="saliency_method").set_value("integrated_gradients")
    at.run()
    assert not at.exception and "completeness error" in " ".join(c.value for c in at.caption)


def test_contrast_with_a_multi_token_foil_shows_the_pieces():
    at = open_page(run_prompt(new_app(), EU_PROMPT, n_generate=2), "ecco_app/views/saliency.py")
    at.selectbox(key="saliency_target").set_value("contrast")
    at.run()
    at.text_input(key="saliency_foil").set_value(" Czech Republic")
    at.run()
    assert any("a foil must be one token" in e.value for e in at.error)


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
