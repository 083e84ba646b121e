"""A classroom in headless Chromium at 1024 x 768 (issue 15): the first screen, a run shared by
link and reopened after a reload, settings kept across page switches, a run saved and opened
again, Stop on the saliency page, and tick labels that never overlap.

Screenshots land in tests/artifacts/classroom-*.png. One server and one teacher's page serve the
module's tests in order (they are one lesson); a test run alone makes the run it needs first.
"""

from __future__ import annotations

import time

import pytest

from tests.browser_support import (
    ARTIFACTS,
    EXCEPTION,
    MAIN,
    VIEW,
    click_run,
    main_text,
    open_app,
    open_nav,
    running_app,
    screenshot,
    set_tokens_to_generate,
    wait_idle,
)

pytestmark = [pytest.mark.browser, pytest.mark.embedded]
SIZE = {"width": 1024, "height": 768}
OVERLAPS = """() => {
  const found = [];
  document.querySelectorAll('.js-plotly-plot').forEach((plot, n) => {
    for (const axis of ['xtick', 'ytick']) {
      const boxes = [...plot.querySelectorAll(`.${axis} text`)]
        .map(t => t.getBoundingClientRect()).filter(b => b.width > 0 && b.height > 0);
      for (let i = 1; i < boxes.length; i++) {
        const a = boxes[i - 1], b = boxes[i];
        const w = Math.min(a.right, b.right) - Math.max(a.left, b.left);
        const h = Math.min(a.bottom, b.bottom) - Math.max(a.top, b.top);
        if (w > 1 && h > 1) found.push(`chart ${n} ${axis} ${i}`);
      }
    }
    const rows = {};  // heatmap cell text, row by row: neighbours must not touch
    [...plot.querySelectorAll('.heatmaplayer text')].map(t => t.getBoundingClientRect())
      .filter(b => b.width > 0).forEach(b => { (rows[Math.round(b.top)] ||= []).push(b); });
    Object.values(rows).forEach(row => {
      row.sort((a, b) => a.left - b.left);
      for (let i = 1; i < row.length; i++) {
        if (row[i].left - row[i - 1].right < 1) found.push(`chart ${n} cell text ${i}`);
      }
    });
  });
  return found;
}"""


CELL_TEXTS = (
    "() => [...document.querySelectorAll('.js-plotly-plot .heatmaplayer text')]"
    ".filter(t => t.textContent).length"
)


@pytest.fixture(scope="module")
def app_url():
    with running_app(ARTIFACTS / "server-classroom.log") as url:
        yield url


@pytest.fixture(scope="module")
def teacher(browser, app_url):
    page = open_app(browser, app_url, **SIZE)
    try:
        yield page
    finally:
        page.close()


def test_first_screen_teaches_with_run_above_the_fold(teacher):
    screenshot_viewport(teacher, "classroom-01-first-screen")
    run = teacher.get_by_role("button", name="Run", exact=True).bounding_box()
    assert run and run["y"] + run["height"] <= SIZE["height"], run
    assert "Start here" in main_text(teacher)
    model = teacher.locator('[data-testid="stSidebar"] [data-testid="stSelectbox"]').filter(has_text="Model")
    shown = model.evaluate(
        "el => el.innerText + ' ' + [...el.querySelectorAll('input')]"
        ".map(i => i.value || i.placeholder).join(' ')"
        " + ' ' + [...el.querySelectorAll('[title]')].map(e => e.title).join(' ')"
    )
    assert "SmolLM2-135M-Instruct" in shown, shown  # the whole name (the screenshot shows it uncut)


def test_a_run_shared_by_link_opens_the_same_for_a_student(teacher, browser):
    set_tokens_to_generate(teacher, 5)
    click_run(teacher)
    teacher.wait_for_selector(VIEW, timeout=240_000)
    assert "Croatia" in main_text(teacher)
    open_nav(teacher, "Watch tokens")
    box = teacher.locator('input[aria-label="Candidate tokens, comma-separated"]')
    box.fill("Croatia, Cyprus")
    box.press("Enter")
    time.sleep(0.5)
    wait_idle(teacher)
    link = teacher.url
    assert "prompt=" in link and "watch" in link and "Croatia" in link, link
    student = browser.new_page(viewport=SIZE)
    try:
        student.goto(link)
        student.wait_for_selector(VIEW, timeout=240_000)
        wait_idle(student)
        screenshot_viewport(student, "classroom-02-student-opens-the-link")
        assert (
            student.locator('input[aria-label="Candidate tokens, comma-separated"]').input_value()
            == "Croatia, Cyprus"
        )
        assert "Cyprus" in main_text(student) and not student.locator(EXCEPTION).count()
    finally:
        student.close()


def test_a_reload_keeps_the_run_and_settings_survive_page_switches(teacher):
    teacher.reload()
    teacher.wait_for_selector(VIEW, timeout=240_000)
    wait_idle(teacher)
    assert teacher.locator('input[aria-label="Candidate tokens, comma-separated"]').input_value() == (
        "Croatia, Cyprus"
    )
    open_nav(teacher, "Rankings")
    assert final_norm(teacher).is_checked()
    teacher.locator(MAIN).get_by_text("Apply the final norm").click()
    time.sleep(0.5)
    wait_idle(teacher)
    open_nav(teacher, "Layer predictions")
    open_nav(teacher, "Rankings")
    assert not final_norm(teacher).is_checked()


def with_a_run(page):
    """The lesson's run, made here when this test runs alone (in order, it is already there)."""
    if not page.locator(VIEW).count():
        set_tokens_to_generate(page, 5)
        click_run(page)
        page.wait_for_selector(VIEW, timeout=240_000)
        wait_idle(page)
    return page


def test_labels_never_overlap_at_1024x768(teacher):
    with_a_run(teacher)
    problems, cells = {}, {}
    for title in ("Rankings", "Layer predictions", "Saliency", "Attention"):
        open_nav(teacher, title)
        time.sleep(1.0)
        wait_idle(teacher)
        screenshot(teacher, f"classroom-03-{title.lower().replace(' ', '-')}")
        found = teacher.evaluate(OVERLAPS)
        cells[title] = teacher.evaluate(CELL_TEXTS)
        if found:
            problems[title] = found[:5]
    assert not problems, problems
    assert cells["Rankings"] > 0 and cells["Layer predictions"] > 0, cells  # the cell check saw text


def test_stop_keeps_the_drawn_tokens(teacher):
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    with_a_run(teacher)
    open_nav(teacher, "Saliency")
    teacher.locator(f'{MAIN} [data-testid="stSelectbox"]').filter(has_text="Method").click()
    teacher.get_by_role("option", name="Integrated gradients").click()
    stop = teacher.get_by_role("button", name="Stop", exact=True)
    stopped = teacher.get_by_text("Stopped:")
    stop.wait_for(timeout=120_000)
    for _ in range(5):  # the fragment redraws Stop after every chunk: a click during a redraw is lost
        if stop.count():
            stop.first.click(timeout=10_000)
        try:
            stopped.wait_for(timeout=15_000)
            break
        except PlaywrightTimeout:
            continue
    stopped.wait_for(timeout=60_000)
    wait_idle(teacher)
    screenshot_viewport(teacher, "classroom-04-stopped")
    assert teacher.locator(VIEW).count() > 0 and not teacher.locator(EXCEPTION).count()


def test_a_saved_run_opens_again(teacher, browser, app_url):
    with_a_run(teacher)
    teacher.locator('[data-testid="stSidebar"]').get_by_text("Save or open a run").click()
    with teacher.expect_download(timeout=120_000) as download:
        teacher.get_by_role("button", name="Download this run (.npz)").click()
    path = ARTIFACTS / "classroom-run.npz"
    download.value.save_as(path)
    fresh = open_app(browser, app_url, **SIZE)
    try:
        fresh.locator('[data-testid="stSidebar"]').get_by_text("Save or open a run").click()
        fresh.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(str(path))
        fresh.wait_for_selector(VIEW, timeout=240_000)
        wait_idle(fresh)
        assert "Croatia" in main_text(fresh)
        open_nav(fresh, "Layer predictions")
        assert not fresh.locator(EXCEPTION).count()
        screenshot_viewport(fresh, "classroom-05-opened-run")
    finally:
        fresh.close()


def final_norm(page):
    return (
        page.locator(f'{MAIN} [data-testid="stCheckbox"]')
        .filter(has_text="Apply the final norm")
        .locator("input")
    )


def screenshot_viewport(page, name: str):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"))
