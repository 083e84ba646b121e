"""AppTest: the main page (streamlit_app.py + views/output.py) runs a prompt on the embedded model."""

from __future__ import annotations

import html as htmllib
import re

import pytest

from tests.app_helpers import new_app, run_prompt
from tests.conftest import EU_PROMPT

pytestmark = pytest.mark.embedded


def run_app(prompt: str, n_generate: int = 5):
    return run_prompt(new_app(), prompt, n_generate)


def test_main_page_invites_a_run_first():
    at = new_app()
    assert not at.exception
    assert any("press **Run**" in i.value for i in at.info)


@pytest.fixture(scope="module")
def eu_app():
    """One session with the EU run (5 tokens): read by the next test, then given a bad prompt."""
    return run_app(EU_PROMPT)


def test_main_page_shows_the_continuation(eu_app):
    at = eu_app
    assert not at.exception
    assert any(" Croatia" in c.value for c in at.code)
    html = " ".join(m.value for m in at.markdown)
    assert "out-marker" in html and "Croatia" in html


def test_bad_prompt_shows_an_error_and_keeps_the_last_result(eu_app):
    at = eu_app
    assert any(" Croatia" in c.value for c in at.code) and not at.error  # the good run to keep
    at.text_area(key="prompt").set_value("   ")
    at.button(key="run").click()
    at.run()
    assert any("prompt is empty" in e.value for e in at.error)
    assert any(" Croatia" in c.value for c in at.code)  # the last good result stays


def test_prompt_html_is_escaped():
    at = run_app("<img src=x onerror=alert(1)>", n_generate=2)
    html = " ".join(m.value for m in at.markdown)
    assert "<img" not in html and "&lt;" in html
    shown = htmllib.unescape(re.sub(r"<[^>]+>", "", html))  # the text a reader sees
    assert "<img src=x onerror=alert(1)>" in shown


def test_pages_have_no_stray_strings_that_streamlit_magic_would_draw():
    """A bare string after the module docstring (e.g. a constant's "docstring") is drawn by magic."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    stray = []
    for path in [root / "streamlit_app.py", *sorted((root / "ecco_app" / "views").glob("*.py"))]:
        body = ast.parse(path.read_text()).body
        for node in body[1:]:
            if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
                stray.append(f"{path.name}:{node.lineno}")
    assert not stray, stray
