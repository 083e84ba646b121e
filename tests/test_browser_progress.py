"""A long lesson in headless Chromium at 1024 x 768 (issue 15): rankings of a ~130-token prompt
with its prompt positions draw block by block with a progress line and Stop; Stop keeps the
positions drawn and Continue finishes; presenter mode enlarges the charts' type; and the tick
labels of every chart with a position axis never overlap, presenter mode on.

Screenshots land in tests/artifacts/progress-*.png.
"""

from __future__ import annotations

import re
import time

import pytest

from tests.browser_support import (
    ARTIFACTS,
    EXCEPTION,
    MAIN,
    VIEW,
    click_run,
    open_app,
    open_nav,
    running_app,
    screenshot,
    set_tokens_to_generate,
    type_prompt,
    wait_idle,
)
from tests.test_browser_classroom import OVERLAPS, SIZE

pytestmark = [pytest.mark.browser, pytest.mark.embedded]
PROMPT = (
    "The countries of the European Union are:\n1. Austria\n2. Belgium\n3. Bulgaria\n4. Croatia\n"
    "5. Cyprus\n6. Czechia\n7. Denmark\n8. Estonia\n9. Finland\n10. France\n11. Germany\n12. Greece\n"
    "13. Hungary\n14. Ireland\n15. Italy\n16. Latvia\n17. Lithuania\n18. Luxembourg\n19. Malta\n"
    "20. Netherlands\n21. Poland\n22. Portugal\n23."
)
CHART_FONT = """() => [...document.querySelectorAll('.js-plotly-plot .xtick text')]
  .map(t => parseFloat(getComputedStyle(t).fontSize)).filter(s => s > 0)"""


@pytest.fixture(scope="module")
def lesson(browser):
    with running_app(ARTIFACTS / "server-progress.log") as url:
        page = open_app(browser, url, **SIZE)
        try:
            type_prompt(page, PROMPT)
            set_tokens_to_generate(page, 4)
            click_run(page)
            page.wait_for_selector(VIEW, timeout=240_000)
            yield page
        finally:
            page.close()


def test_rankings_show_progress_stop_keeps_the_drawn_positions_and_continue_finishes(lesson):
    page = lesson
    open_nav(page, "Rankings")
    page.locator(MAIN).get_by_text("Include prompt positions").click()
    progress = page.locator(f"{MAIN} [data-testid='stProgress']").filter(has_text="Ranking each token")
    progress.first.wait_for(timeout=30_000)  # progress shows at once, not a bare spinner
    said = progress.first.inner_text()
    assert re.search(r"\d+ of \d+ positions", said) or "Ranking each token" in said, said
    stop = page.get_by_role("button", name="Stop", exact=True)
    stop.wait_for(timeout=30_000)
    stop.click()
    page.get_by_text("Stopped:").wait_for(timeout=60_000)
    wait_idle(page)
    screenshot(page, "progress-01-rankings-stopped")
    text = page.locator(MAIN).inner_text()
    done, total = map(int, re.search(r"Stopped: (\d+) of (\d+) positions", text).groups())
    assert 0 < done < total, (done, total)
    assert page.locator(f"{MAIN} .js-plotly-plot").count() >= 1  # what was done stays drawn
    time.sleep(2.0)
    assert f"Stopped: {done} of {total}" in page.locator(MAIN).inner_text()  # nothing more ran
    page.get_by_role("button", name="Continue", exact=True).click()
    page.get_by_text("Stopped:").wait_for(state="detached", timeout=60_000)
    page.locator(f"{MAIN} [data-testid='stProgress']").first.wait_for(state="detached", timeout=300_000)
    wait_idle(page)
    assert "Stopped:" not in page.locator(MAIN).inner_text()
    assert not page.locator(f"{MAIN} [data-testid='stProgress']").count()
    assert not page.locator(EXCEPTION).count()
    screenshot(page, "progress-02-rankings-finished")


def test_presenter_mode_enlarges_chart_type_and_no_labels_overlap_at_1024x768(lesson):
    page = lesson
    open_nav(page, "Rankings")
    plain = page.evaluate(CHART_FONT)
    page.locator('[data-testid="stSidebar"]').get_by_text("Presenter mode").click()
    time.sleep(0.5)
    wait_idle(page)
    big = page.evaluate(CHART_FONT)
    assert plain and big and max(big) >= 1.25 * max(plain), (plain, big)
    problems = {}
    for title in ("Rankings", "Neuron factors", "Top neurons", "Attention", "Saliency"):
        open_nav(page, title)
        time.sleep(1.0)
        wait_idle(page)
        screenshot(page, f"progress-03-presenter-{title.lower().replace(' ', '-')}")
        found = page.evaluate(OVERLAPS)
        if found:
            problems[title] = found[:5]
        assert not page.locator(EXCEPTION).count(), title
    if problems:
        pytest.fail(f"overlapping tick labels: {problems}")
