"""The notebook explorables in a real browser with the network cut: hovering repaints, the factor
chips switch paintings, Plotly draws from the embedded library, and the app's component code is
the same highlighter loaded as a module. No app server: the HTML goes straight into a page."""

from __future__ import annotations

import pytest

from ecco_app.components.saliency import _JS as COMPONENT_JS
from ecco_core import notebook
from ecco_core.compat import EccoLM
from ecco_core.compat.config import ecco_config
from tests.browser_support import CHROMIUM, CHROMIUM_ARGS, require_browser

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def output(tiny):
    lm = EccoLM(tiny, ecco_config(tiny, None), activations=True)
    return lm.generate("hello wor", generate=4, attribution=["grad_x_input"])


@pytest.fixture(scope="module")
def page():
    with require_browser()() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context()
        requests: list[str] = []

        def cut(route):
            requests.append(route.request.url)
            route.abort()

        context.route("**/*", cut)  # no network at all: anything fetched fails and is recorded
        tab = context.new_page()
        tab.requests = requests
        yield tab
        browser.close()


def _show(page, html: str) -> None:
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.set_content(f"<html><body>{html}</body></html>")
    assert not errors, errors
    assert not page.requests, page.requests


def test_saliency_hover_repaints_and_shows_the_bars(page, output):
    result = output.saliency(style="detailed")
    _show(page, result._repr_html_())
    spans = page.locator(".ecco-sal .tok")
    assert spans.count() == len(output.tokens[0])
    last = len(output.tokens[0]) - 1
    spans.nth(last).hover()
    painted = spans.nth(0).evaluate("el => getComputedStyle(el).backgroundColor")
    assert painted not in ("rgba(0, 0, 0, 0)", "transparent")
    assert page.locator(f'.ecco-detail[data-pos="{last}"]').is_visible()
    assert not page.locator(f'.ecco-detail[data-pos="{last - 1}"]').is_visible()
    assert "Explaining" in page.locator(".ecco-sal-info").inner_text()


def test_factor_chips_switch_the_painting(page, output):
    nmf = output.run_nmf(n_components=3, from_layer=0, to_layer=2)
    _show(page, nmf.explore()._repr_html_())
    assert page.locator('.ecco-painting[data-key="all"]').is_visible()
    page.locator('.ecco-chip[data-key="1"]').hover()
    assert page.locator('.ecco-painting[data-key="1"]').is_visible()
    assert not page.locator('.ecco-painting[data-key="all"]').is_visible()


def test_plotly_draws_offline(page, output):
    notebook.reset_plotly()
    _show(page, output.rankings()._repr_html_())
    page.wait_for_selector(".ecco-plot .main-svg", timeout=20_000)


def test_component_is_the_same_highlighter_as_a_module(page):
    page.set_content("<html><body></body></html>")
    kind = page.evaluate(
        """async (code) => {
            const url = URL.createObjectURL(new Blob([code], {type: "text/javascript"}));
            const module = await import(url);
            return typeof module.default;
        }""",
        COMPONENT_JS,
    )
    assert kind == "function"
