"""AppTest helpers shared by every page test: start the app, run a prompt, open a page."""

from __future__ import annotations

from pathlib import Path

from streamlit.runtime.pages_manager import PagesManager
from streamlit.testing.v1 import AppTest

# AppTest resets PagesManager.uses_pages_directory before every run, so with a pages/ folder each
# rerun of a page goes down Streamlit's v1 path and runs the page file without streamlit_app.py
# (no sidebar). The real server sets the flag to False once st.navigation runs; do the same here.
_original_init = PagesManager.__init__


def _init_without_v1_pages(self, *args, **kwargs) -> None:
    _original_init(self, *args, **kwargs)
    PagesManager.uses_pages_directory = False


PagesManager.__init__ = _init_without_v1_pages

ROOT = Path(__file__).resolve().parent.parent
APP = str(ROOT / "streamlit_app.py")


def new_app(timeout: float = 240) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=timeout)
    at.run()
    return at


def run_prompt(at: AppTest, prompt: str, n_generate: int = 5, model_label: str | None = None) -> AppTest:
    """Type a prompt in the sidebar, set the tokens to generate, press Run."""
    if model_label is not None:
        at.selectbox(key="model_label").set_value(model_label)
        at.run()
    at.text_area(key="prompt").set_value(prompt)
    at.number_input(key="n_generate").set_value(n_generate)
    at.button(key="run").click()
    at.run()
    return at


def open_page(at: AppTest, page: str) -> AppTest:
    """Switch to ``pages/<name>.py`` keeping the session (and its run)."""
    at.switch_page(str(ROOT / page))
    at.run()
    return at
