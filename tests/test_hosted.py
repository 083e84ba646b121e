"""A real server in headless Chromium: any page URL on a fresh or restarted server shows the full
app; Markdown from a visitor never fetches anything; a hosted server offers its allowlist only.

Chromium missing means a failure with a message, never a silent skip (tests/browser_support.py).
"""

from __future__ import annotations

import http.server
import threading
import time

import pytest

from tests.browser_support import (
    ARTIFACTS,
    NAV_LINKS,
    click_run,
    free_port,
    open_app,
    open_nav,
    running_app,
    screenshot,
    set_tokens_to_generate,
    type_prompt,
    wait_idle,
)

pytestmark = [pytest.mark.browser]

SIDEBAR_PROMPT = '[data-testid="stSidebar"] textarea[aria-label="Prompt"]'


def full_app_shown(page, title: str, timeout: float = 120) -> None:
    """The sidebar with its prompt box and Run button, and the page's own header."""
    page.wait_for_selector(SIDEBAR_PROMPT, timeout=timeout * 1000)
    page.get_by_role("button", name="Run", exact=True).wait_for(timeout=timeout * 1000)
    page.locator('[data-testid="stMain"] h2').filter(has_text=title).first.wait_for(timeout=timeout * 1000)
    # the navigation (in the top bar: its six sections, or a link where a section has one page)
    navigation = page.locator(f'{NAV_LINKS}, [data-testid="stTopNavSection"]')
    assert navigation.count() >= 6, navigation.count()


def test_a_page_url_on_a_fresh_and_a_restarted_server_shows_the_full_app(browser):
    port = free_port()
    with running_app(ARTIFACTS / "server-fresh.log", port=port, env={"ECCO_PRELOAD": "0"}) as url:
        fresh = browser.new_page()
        fresh.goto(url + "saliency")  # the first request this server ever sees
        full_app_shown(fresh, "Saliency")
        screenshot(fresh, "hosted-fresh-saliency")
        rankings = browser.new_page()
        rankings.goto(url + "rankings")
        full_app_shown(rankings, "Rankings")
    # The server is gone; the tab stays open, and a new server comes up on the same port.
    with running_app(ARTIFACTS / "server-restarted.log", port=port, env={"ECCO_PRELOAD": "0"}):
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # Streamlit's client reconnects on its own
            if rankings.locator('[data-testid="stMain"] h2').filter(has_text="Rankings").count():
                break
            time.sleep(0.5)
        full_app_shown(rankings, "Rankings")
        screenshot(rankings, "hosted-restarted-rankings")
        rankings.reload()
        full_app_shown(rankings, "Rankings")
        fresh.close()
        rankings.close()


class _Listener(http.server.BaseHTTPRequestHandler):
    hits: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 - the http.server name
        _Listener.hits.append(self.path)
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@pytest.mark.embedded
def test_markdown_from_a_visitor_fetches_nothing_in_a_real_browser(browser):
    """Image and link syntax through the model field, the prompt, the watch and foil fields:
    a listener on 127.0.0.1 hears no request, and no bold text appears."""
    listener = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Listener)
    threading.Thread(target=listener.serve_forever, daemon=True).start()
    here = f"http://127.0.0.1:{listener.server_address[1]}"
    payload = f"![x]({here}/img.png) **bold** [link]({here}/link) <img src={here}/tag.png>"
    _Listener.hits.clear()
    try:
        with running_app(ARTIFACTS / "server-markdown.log", env={"ECCO_HOSTED": "0"}) as url:
            page = open_app(browser, url)
            page.locator('input[aria-label="Model"]').click()
            page.get_by_role("option", name="Other (hub id, folder, .gguf)").click()
            wait_idle(page)
            field = page.locator('input[aria-label="Hub id, folder or .gguf file"]')
            field.fill(payload)
            field.press("Enter")
            wait_idle(page)
            click_run(page)
            page.locator('[data-testid="stAlertContentError"]').first.wait_for(timeout=60_000)
            page.locator('input[aria-label="Model"]').click()
            page.get_by_role("option", name="SmolLM2-135M-Instruct").click()
            wait_idle(page)
            set_tokens_to_generate(page, 2)
            type_prompt(page, f"Say {payload} now")
            click_run(page)
            for title in ("Output", "Layer predictions", "Watch tokens", "Saliency", "Attention"):
                open_nav(page, title, timeout=120)
            open_nav(page, "Watch tokens", timeout=120)
            box = page.locator('input[aria-label="Candidate tokens, comma-separated"]')
            box.fill(payload)
            box.press("Enter")
            wait_idle(page)
            screenshot(page, "hosted-markdown-watch")
            open_nav(page, "Saliency", timeout=120)
            foil = page.locator('input[aria-label="Foil token"]')
            for _ in range(3):  # a loaded machine can redraw the list under the click: choose again
                page.locator('input[aria-label="Target"]').click()
                page.get_by_role("option", name="Logit difference vs a foil").click()
                wait_idle(page)
                if foil.count():
                    break
            foil.fill(payload)
            foil.press("Enter")
            wait_idle(page)
            screenshot(page, "hosted-markdown-foil")
            assert "bold" in page.locator('[data-testid="stMain"]').inner_text()
            strong = page.locator('[data-testid="stMain"] strong, [data-testid="stSidebar"] strong')
            assert "bold" not in " ".join(strong.all_inner_texts())
            time.sleep(1)
            page.close()
    finally:
        listener.shutdown()
    assert _Listener.hits == [], f"the browser fetched visitor URLs: {_Listener.hits}"


def test_a_hosted_server_offers_its_allowlist_only(browser):
    env = {
        "ECCO_HOSTED": "1",
        "ECCO_PRELOAD": "0",
        "ECCO_ALLOWED_MODELS": "SmolLM2-135M-Instruct,all-MiniLM-L6-v2",
    }
    with running_app(ARTIFACTS / "server-hosted.log", env=env) as url:
        page = open_app(browser, url)
        page.locator('input[aria-label="Model"]').click()
        options = page.get_by_role("option").all_inner_texts()
        assert [o.strip() for o in options] == [
            "SmolLM2-135M-Instruct",
            "all-MiniLM-L6-v2 (encoder)",
        ]
        assert page.locator('input[aria-label="Hub id, folder or .gguf file"]').count() == 0
        page.close()


def _server_process(port: int):
    import psutil

    for child in psutil.Process().children(recursive=True):
        try:
            if any(c.laddr.port == port for c in child.net_connections(kind="tcp")):
                return child
        except psutil.Error:
            continue
    raise AssertionError(f"no server process listens on port {port}")


def test_five_browser_sessions_are_bounded_and_released_when_their_tabs_close(browser, tmp_path):
    """A real server: five tabs each run a long prompt on a tiny model (attention on); the server's
    RSS grows by about their runs; after the tabs close, Streamlit's disconnect releases each
    session's entries and the RSS comes back near where it started.

    Measured here (a loaded machine, 800-token prompts): baseline 511 MB, five tabs 1,064 MB,
    closed 657 MB, after one more visitor 655 MB: about 70 % of what the tabs took comes back. The
    store's entries go at once on disconnect; what stays (~30 MB per tab, whatever its prompt
    length) was not traced to an object: with MALLOC_ARENA_MAX=2 in the server's environment 84 %
    came back once, so part of it is glibc arenas. A store that kept a closed tab's run would keep
    most of the growth, which the 35 % bound catches. Part of it only returns once another script
    run happens, so the check is made after one more visitor opens the app, polling the RSS
    rather than sleeping a fixed time (a loaded CI machine is slow).
    """
    from tests.tiny import char_tokenizer, tiny_model

    folder = tmp_path / "tiny"
    model = tiny_model("llama")
    model.config.max_position_embeddings = 4096
    model.save_pretrained(folder)
    char_tokenizer().save_pretrained(folder)
    n_chars = 800  # a char tokenizer: 800 prompt tokens; each run keeps ~29 MB of attention
    prompt = ("the cat sat on the mat and " * 40)[:n_chars]
    port = free_port()
    env = {"ECCO_HOSTED": "0", "ECCO_PRELOAD": "0"}
    with running_app(ARTIFACTS / "server-sessions.log", port=port, env=env) as url:
        server = _server_process(port)

        def rss() -> float:
            return server.memory_info().rss / 2**20

        warm = open_app(browser, url)  # imports and the first script run are not a session's cost
        _run_tiny(warm, str(folder), "warm up")
        warm.close()
        time.sleep(3)
        baseline = rss()
        pages = []
        for _ in range(5):
            page = open_app(browser, url)
            _run_tiny(page, str(folder), prompt)
            open_nav(page, "Attention", timeout=120)
            pages.append(page)
        loaded = rss()
        for page in pages:
            page.close()
        closed = _settled_rss(rss, below=None, seconds=5)
        visitor = open_app(browser, url)
        limit = baseline + 0.35 * (loaded - baseline)
        released = _settled_rss(rss, below=limit, seconds=60)
        visitor.close()
        print(
            f"server RSS MB: baseline {baseline:.0f}, five tabs {loaded:.0f}, closed {closed:.0f}, "
            f"after one more visitor {released:.0f}"
        )
    per_run = 3 * 4 * (n_chars + 2) ** 2 * 4 / 2**20  # the attention each run keeps, MB
    assert loaded - baseline > 3 * per_run, (baseline, loaded)
    assert released < limit, (baseline, loaded, closed, released)


def _settled_rss(rss, below: float | None, seconds: float) -> float:
    """The server's RSS once it is under ``below`` (or after ``seconds``: the last reading)."""
    deadline = time.monotonic() + seconds
    while True:
        time.sleep(1)
        now = rss()
        if (below is not None and now < below) or time.monotonic() > deadline:
            return now


def _run_tiny(page, folder: str, prompt: str) -> None:
    page.locator('input[aria-label="Model"]').click()
    page.get_by_role("option", name="Other (hub id, folder, .gguf)").click()
    wait_idle(page)
    field = page.locator('input[aria-label="Hub id, folder or .gguf file"]')
    field.fill(folder)
    field.press("Enter")
    wait_idle(page)
    set_tokens_to_generate(page, 2)
    type_prompt(page, prompt)
    click_run(page)
    assert page.locator('[data-testid="stAlertContentError"]').count() == 0, page.inner_text("body")[-500:]
