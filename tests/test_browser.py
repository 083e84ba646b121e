"""End to end in headless Chromium: run a prompt, open every page, check each view draws.

Screenshots land in tests/artifacts/. Injection payloads go through every page and must show as
text, never run. Chromium missing means a failure with a message, never a silent skip.
"""

from __future__ import annotations

import re

import pytest

from tests.browser_support import (
    ARTIFACTS,
    ERROR_ALERT,
    EXCEPTION,
    VIEW,
    app_pages,
    click_run,
    main_text,
    open_app,
    open_nav,
    running_app,
    screenshot,
    set_tokens_to_generate,
    type_prompt,
    wait_idle,
)

pytestmark = [pytest.mark.browser, pytest.mark.embedded]

PROMPT = "The keys to the cabinet"
PAYLOADS = ["<script>alert(1)</script>", "<img src=x onerror=alert(1)>", "</div>", "{{ 7*7 }}"]
FLAG_PAYLOADS = ["<script>window.__ecco_pwned=1</script>", '<img src=x onerror="window.__ecco_pwned=1">']
INJECTION_PROMPT = "Say " + " and ".join(PAYLOADS + FLAG_PAYLOADS) + " now"
# The payloads are in the prompt; the model writes plain text after it ('.', '\n', 'The above code'),
# so a few generated tokens give every page its output part without 20 tokens' worth of views.
INJECTION_GENERATE = 3


@pytest.fixture(scope="module")
def app_url():
    with running_app(ARTIFACTS / "server.log") as url:
        yield url


def slug(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")


@pytest.fixture(scope="module")
def first_visit(browser, app_url):
    """The server's first session: the prompt box as first shown, then Run pressed untouched.

    Yields (page, the box's text before Run). Requested first by the first test of this module.
    """
    page = open_app(browser, app_url)
    try:
        wait_idle(page)
        shown = page.locator('textarea[aria-label="Prompt"]').input_value()
        click_run(page)
        page.wait_for_selector(VIEW, timeout=120_000)
        yield page, shown
    finally:
        page.close()


def test_first_visit_runs_the_example_prompt_as_is(first_visit):
    """The first session of a fresh server: the example prompt is in the box and Run works untouched.

    (Streamlit's first run with a pages/ folder used to empty the box and interrupt the Run.)
    Must stay the first test of this module: its fixture needs the server's first session.
    """
    from ecco_app.state import EXAMPLES

    page, shown = first_visit
    assert shown == next(iter(EXAMPLES.values()))
    assert "Croatia" in main_text(page)


def test_bad_prompt_shows_one_line_and_keeps_the_last_result(first_visit):
    """On the first visit's session, after its good run: an empty prompt shows one line, the run stays."""
    page, _ = first_visit
    assert "Croatia" in main_text(page)  # the good run this test must keep
    type_prompt(page, "   ")
    click_run(page)
    errors = page.locator(ERROR_ALERT).all_inner_texts()
    screenshot(page, "bad-prompt")
    assert len(errors) == 1 and "prompt is empty" in errors[0] and "\n" not in errors[0].strip()
    assert "Croatia" in main_text(page)  # the last good run is still on screen
    assert page.locator(VIEW).count() > 0
    wait_idle(page)


def test_every_page_draws_after_a_run(browser, app_url):
    pages = app_pages()
    assert pages and pages[0][0] == "ecco_app/views/output.py"
    page = open_app(browser, app_url)
    try:
        screenshot(page, "00-before-run")
        type_prompt(page, PROMPT)
        click_run(page)
        page.wait_for_selector(VIEW, timeout=120_000)
        problems = []
        for index, (file, title) in enumerate(pages, start=1):
            drawn = open_nav(page, title)
            errors = page.locator(f"{ERROR_ALERT}, {EXCEPTION}").all_inner_texts()
            screenshot(page, f"{index:02d}-{slug(title)}")
            if not drawn:
                problems.append(f"{file}: no plot and no highlighted tokens (see {slug(title)}.png)")
            if errors:
                problems.append(f"{file}: {errors}")
        assert not problems, "\n".join(problems)
    finally:
        page.close()


def test_injection_payloads_show_as_text_and_never_run(browser, app_url):
    page = open_app(browser, app_url)
    dialogs: list[str] = []

    def on_dialog(dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    try:
        set_tokens_to_generate(page, INJECTION_GENERATE)
        type_prompt(page, INJECTION_PROMPT)
        click_run(page)
        page.wait_for_selector(VIEW, timeout=120_000)
        shown = main_text(page)
        for payload in PAYLOADS + FLAG_PAYLOADS:
            assert payload in shown, f"{payload!r} is not shown literally on the output page"
        for index, (file, title) in enumerate(app_pages(), start=1):
            open_nav(page, title)
            page.mouse.move(400, 400)  # hover handlers would fire here
            screenshot(page, f"injection-{index:02d}-{slug(title)}")
            assert not _executed(page), f"{file}: a payload ran"
            assert not dialogs, f"{file}: a dialog opened: {dialogs}"
            failures = page.locator(EXCEPTION).all_inner_texts()
            assert not failures, f"{file} failed on the payload prompt: {failures}"
    finally:
        page.close()


def _executed(page) -> bool:
    """True when any frame of the page has the payload's flag set or holds an injected element."""
    for frame in page.frames:
        try:
            if frame.evaluate("() => window.__ecco_pwned !== undefined"):
                return True
            if frame.locator('img[src="x"], script:text("__ecco_pwned"), script:text("alert(1)")').count():
                return True
        except Exception as error:  # a frame that went away while we looked
            if "detached" not in str(error).lower():
                raise
    return False
