"""Stop in a real browser: a click on the sidebar's Stop during a 200-token Run of the embedded
model keeps the tokens written so far as the run, and the sidebar says how many.

Not timed: the Run writes 200 tokens (many seconds on any CPU here) and Stop is clicked as soon
as the progress bar shows the first written tokens; what is asserted is the kept run and its
notice, whatever the count.
"""

from __future__ import annotations

import re

import pytest

from tests.browser_support import (
    ARTIFACTS,
    open_app,
    running_app,
    set_tokens_to_generate,
    type_prompt,
    wait_idle,
)

pytestmark = [pytest.mark.browser, pytest.mark.embedded]


def test_stop_during_a_long_run_keeps_what_was_written(browser):
    with running_app(ARTIFACTS / "server-serving.log", env={"ECCO_HOSTED": "0"}) as url:
        page = open_app(browser, url)
        try:
            type_prompt(page, "Once upon a time")
            set_tokens_to_generate(page, 200)
            page.get_by_role("button", name="Run", exact=True).click()
            page.get_by_text(re.compile(r"Generating: token \d+ of 200")).wait_for(timeout=180_000)
            page.get_by_role("button", name="Stop", exact=True).click()
            wait_idle(page)
            sidebar = page.locator('[data-testid="stSidebar"]').inner_text()
            kept = re.search(r"Stopped after (\d+) of 200 tokens", sidebar)
            assert kept, sidebar[-2000:]
            written = int(kept.group(1))
            assert 1 <= written < 200
            main = page.locator('[data-testid="stMain"]')
            main.locator(".tok").first.wait_for(timeout=60_000)  # the Output page draws the kept run
            assert page.locator('[data-testid="stException"]').count() == 0
            assert page.get_by_role("button", name="Stop", exact=True).count() == 0
        finally:
            page.close()
