"""Real-browser helpers: start the app on a free port, drive Debian's Chromium with Playwright.

Never a downloaded browser: ``/usr/bin/chromium`` (``scripts/ensure_chromium.sh`` installs it).
A missing Chromium or Playwright fails the test with a message; it never skips silently.
"""

from __future__ import annotations

import ast
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections import deque
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "tests" / "artifacts"
CHROMIUM = os.environ.get("ECCO_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
MAIN = '[data-testid="stMain"]'
VIEW = ", ".join(f'{MAIN} [data-stale="false"] {kind}' for kind in (".js-plotly-plot", ".tok"))
BUSY = ", ".join(
    [f'[data-testid="{testid}"]' for testid in ("stStatusWidget", "stStatusWidgetRunningIcon", "stSpinner")]
    # The app root mirrors the script's run state at once; the status widget shows only after 0.5 s.
    + [
        f'[data-testid="stApp"][data-test-script-state="{state}"]'
        for state in ("initial", "running", "rerunRequested", "stopRequested")
    ]
)
ERROR_ALERT = '[data-testid="stMain"] [data-testid="stAlertContentError"]'
EXCEPTION = '[data-testid="stException"]'


def require_browser():
    """The Playwright sync API, or a failure that says how to install what is missing."""
    if not Path(CHROMIUM).exists():
        pytest.fail(
            f"Chromium is missing at {CHROMIUM}: run `bash scripts/ensure_chromium.sh` "
            "(make test and .ci/run do) to install Debian's chromium with apt."
        )
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("The playwright package is missing: pip install -r requirements-dev.txt")
    return sync_playwright


def app_pages() -> list[tuple[str, str]]:
    """(file, title) of every page in streamlit_app.PAGES whose file exists (read without running it)."""
    tree = ast.parse((ROOT / "streamlit_app.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "PAGES" for t in node.targets):
            pages = ast.literal_eval(node.value)
            return [(file, title) for file, title, *_ in pages if (ROOT / file).exists()]
    raise AssertionError("streamlit_app.py has no PAGES list")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _python() -> str:
    venv = ROOT / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


@contextmanager
def running_app(log_path: Path, timeout: float = 180, port: int | None = None, env: dict | None = None):
    """Start ``streamlit run streamlit_app.py`` on ``port`` (default: a free one) with extra
    environment ``env``; yield its URL; always kill it."""
    port = port or free_port()
    command = [_python(), "-m", "streamlit", "run", "streamlit_app.py", "--server.port", str(port)]
    command += ["--server.headless", "true", "--browser.gatherUsageStats", "false"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1", **(env or {})}
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w") as log:
        server = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            _wait_healthy(server, port, log_path, timeout)
            yield f"http://127.0.0.1:{port}/"
        finally:
            _stop(server)


def _wait_healthy(server: subprocess.Popen, port: int, log_path: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"the app exited with {server.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as reply:
                if reply.read().strip() == b"ok":
                    return
        except OSError:
            pass
        time.sleep(0.5)
    pytest.fail(f"the app did not answer on port {port} within {timeout:.0f} s")


def _stop(server: subprocess.Popen) -> None:
    """SIGTERM the server's process group (it was started in its own session), SIGKILL if it lingers."""
    if server.poll() is not None:
        return
    try:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=15)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        with suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGKILL)
        server.wait(timeout=15)


def launch(playwright):
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


def wait_idle(page, timeout: float = 240, settle: float = 0.3) -> None:
    """Wait until the script has finished: not running, no running indicator and no stale elements
    for ``settle`` s (the run state on the app root flips at once, so a short settle is enough)."""
    deadline = time.monotonic() + timeout
    quiet_since = None
    while time.monotonic() < deadline:
        busy = page.locator(f'{BUSY}, [data-stale="true"]').count() > 0
        if busy:
            quiet_since = None
        elif quiet_since is None:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since >= settle:
            return
        time.sleep(0.1)
    raise AssertionError(f"the app was still running after {timeout:.0f} s")


CONSOLE_LOG = ARTIFACTS / "browser-console.log"
"""Every page error and console error of every browser test, appended (the app has been seen to
go entirely blank in Chromium with nothing in the server's log: this is where the cause shows)."""


RECENT_CONSOLE: deque[str] = deque(maxlen=8)
"""The last page and console errors, quoted in a failed navigation's message (CI shows no files)."""


def _log_console(line: str) -> None:
    RECENT_CONSOLE.append(line)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with CONSOLE_LOG.open("a", encoding="utf-8") as out:
        out.write(f"{time.strftime('%H:%M:%S')} {line}\n")


def open_app(browser, url: str, width: int = 1400, height: int = 1000):
    page = browser.new_page(viewport={"width": width, "height": height})
    page.on("pageerror", lambda error: _log_console(f"pageerror: {error}"))
    page.on("console", lambda message: message.type == "error" and _log_console(f"console: {message.text}"))
    page.on("response", lambda got: got.status >= 400 and _log_console(f"http {got.status}: {got.url}"))
    page.goto(url)
    page.wait_for_selector('textarea[aria-label="Prompt"]', timeout=120_000)
    wait_idle(page)
    return page


def type_prompt(page, text: str, attempts: int = 3) -> None:
    """Replace the sidebar prompt and apply it (Ctrl+Enter), checking the app kept it.

    A rerun that lands while typing can re-render the box; typing again then sticks.
    """
    box = page.locator('textarea[aria-label="Prompt"]')
    for _ in range(attempts):
        box.click()
        box.press("Control+a")
        box.press("Delete")
        box.fill(text)
        box.press("Control+Enter")
        time.sleep(0.5)
        wait_idle(page)
        if box.count() == 1 and box.input_value() == text:
            return
    raise AssertionError(f"the prompt box did not keep the typed text: {box.all_inner_texts()}")


def set_tokens_to_generate(page, n: int) -> None:
    """Open the sidebar's generation settings and set "Tokens to generate" to ``n``."""
    box = page.locator('input[aria-label="Tokens to generate"]')
    if not box.is_visible():
        page.locator('[data-testid="stSidebar"]').get_by_text("Generation settings").click()
        box.wait_for(state="visible", timeout=30_000)
    box.fill(str(n))
    box.press("Enter")
    time.sleep(0.5)
    wait_idle(page)
    if box.input_value() != str(n):
        raise AssertionError(f"Tokens to generate shows {box.input_value()!r}, not {n}")


def click_run(page) -> None:
    page.get_by_role("button", name="Run", exact=True).click()
    time.sleep(0.5)
    wait_idle(page)


NAV_LINKS = ", ".join(
    f'[data-testid="{testid}"]' for testid in ("stSidebarNavLink", "stTopNavLink", "stTopNavDropdownLink")
)


def nav_link(page, title: str, timeout: float = 120):
    """The navigation link to page ``title``: in the sidebar, the top bar, or a top-bar section's
    menu. A loaded machine draws a menu late, or reruns while one is open and covers the next
    section, so every click is bounded, a missed menu is closed, and the sections are looked up
    afresh until ``timeout`` s have passed."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    link = page.locator(NAV_LINKS).filter(has_text=title).first
    sections = page.locator('[data-testid="stTopNavSection"]')
    deadline = time.monotonic() + timeout
    wait_s = 1.0
    while time.monotonic() < deadline:
        if link.count() and link.is_visible():
            return link
        for index in range(sections.count()):
            try:
                sections.nth(index).click(timeout=5000)
                link.wait_for(state="visible", timeout=wait_s * 1000)
                return link
            except PlaywrightTimeout:
                page.keyboard.press("Escape")
        wait_s = min(2 * wait_s, 8.0)
        time.sleep(0.5)
    blank = "" if page.locator('[data-testid="stSidebar"]').count() else " (the app is blank: no sidebar)"
    raise AssertionError(
        f"no navigation link to {title!r} within {timeout:.0f} s{blank}; "
        f"the browser's last errors: {list(RECENT_CONSOLE) or 'none'}"
    )


def open_nav(page, title: str, timeout: float = 240) -> bool:
    """Open a page through the sidebar navigation; True once its view has drawn."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    nav_link(page, title).click()
    try:
        page.locator(f"{MAIN} h2").filter(has_text=title).first.wait_for(timeout=timeout * 1000)
        page.locator(VIEW).first.wait_for(timeout=timeout * 1000)
        drawn = True
    except PlaywrightTimeout:
        drawn = False
    wait_idle(page)
    return drawn


def screenshot(page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def main_text(page) -> str:
    """The visible text of the main area (zero-width placeholders removed)."""
    return page.locator('[data-testid="stMain"]').inner_text().replace("\u200b", "")
