"""AppTest helpers shared by every page test: start the app, run a prompt, open a page."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

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


def run_in_app(at: AppTest, model: str, prompt: str, n_generate: int = 3, attention: bool = True) -> AppTest:
    """Pick "Other" as the model, type ``model`` (a hub id, folder or .gguf), the prompt and the
    tokens to generate, set "Capture attention", press Run."""
    at.selectbox(key="model_label").set_value("Other (hub id, folder, .gguf)")
    at.run()
    at.text_input(key="model_other").set_value(model)
    at.text_area(key="prompt").set_value(prompt)
    at.number_input(key="n_generate").set_value(n_generate)
    at.toggle(key="capture_attention").set_value(attention)
    at.button(key="run").click()
    at.run()
    return at


def open_page(at: AppTest, page: str) -> AppTest:
    """Switch to ``ecco_app/views/<name>.py`` keeping the session (and its run)."""
    at.switch_page(str(ROOT / page))
    at.run()
    return at
