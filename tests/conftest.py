"""Shared fixtures: tiny random models (no download) and the real embedded model."""

from __future__ import annotations

import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before huggingface_hub is imported: it reads this once

import pytest  # noqa: E402
import torch  # noqa: E402
from hypothesis import settings  # noqa: E402

# The property tests draw the same examples on every machine, so CI's verdict does not depend on
# luck; HYPOTHESIS_PROFILE=explore draws fresh ones (run it to hunt, then pin what it finds).
settings.register_profile("reproducible", derandomize=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "reproducible"))

from tests.tiny import FAMILIES, tiny_lm  # noqa: E402

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

EU_PROMPT = "The countries of the European Union are:\n1. Austria\n2. Belgium\n3. Bulgaria\n4."


def pytest_collection_finish(session):
    """Start the cold-cache conversion in the background when its test will run (tests/cold_cache.py)."""
    from tests import cold_cache

    if not session.config.option.collectonly and any(i.name == cold_cache.TEST_NAME for i in session.items):
        cold_cache.start_early()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A failed browser test shows the browser's last page and console errors (CI keeps no files)."""
    browser_support = sys.modules.get("tests.browser_support")
    if call.when == "setup" and browser_support:
        browser_support.RECENT_CONSOLE.clear()  # this test's errors only
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed and browser_support and browser_support.RECENT_CONSOLE:
        report.sections.append(("browser errors", "\n".join(browser_support.RECENT_CONSOLE)))


def pytest_sessionfinish(session):
    from tests import cold_cache

    cold_cache.close_early()


@pytest.fixture(scope="session")
def tiny():
    """A tiny random Llama-style LM (3 layers, d_model 32, character tokenizer)."""
    return tiny_lm("llama")


@pytest.fixture(scope="session", params=sorted(FAMILIES))
def tiny_family(request):
    """One tiny random LM per supported family."""
    return tiny_lm(request.param)


@pytest.fixture(scope="session")
def smol():
    """The real embedded SmolLM2-135M-Instruct (loads from the disk cache after the first run)."""
    import ecco_core

    return ecco_core.from_pretrained(device="cpu")


@pytest.fixture(scope="session")
def eu_seq(smol):
    """20 greedy tokens after the EU prompt on the embedded model, with attention."""
    return smol.generate(EU_PROMPT, generate=20, attention=True)


@pytest.fixture(scope="module")
def browser():
    """Debian's headless Chromium, one per test module (skips where it is not installed)."""
    from tests.browser_support import launch, require_browser

    sync_playwright = require_browser()
    with sync_playwright() as playwright:
        chromium = launch(playwright)
        try:
            yield chromium
        finally:
            chromium.close()
