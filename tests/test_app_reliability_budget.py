"""A 2,000-word prompt through every page of the app stays within the memory budget.

The pages run under AppTest in a fresh child process (tests/budget_child.py) with the embedded
model, so the peak measured (the kernel's VmHWM, reset at the start) is the app's own: Python,
torch, the model, the run and every view, torch's allocations included.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.embedded


def child_report(n_words: int) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "ECCO_PRELOAD": "0", "ECCO_HOSTED": "1"}
    env.pop("ECCO_MEMORY_BUDGET_MB", None)
    env.pop("ECCO_STORE_MB", None)
    done = subprocess.run(
        [sys.executable, "-m", "tests.budget_child", str(n_words), "5"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1500,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("BUDGET-REPORT ")]
    assert done.returncode == 0 and lines, done.stderr[-3000:]
    return json.loads(lines[-1].removeprefix("BUDGET-REPORT "))


@pytest.fixture(scope="module")
def report():
    return child_report(2000)


def test_every_page_of_a_2000_word_prompt_stays_under_the_budget(report):
    assert report["peak_reset"], "the peak could not be reset: the measure would include the parent's"
    assert report["budget_mb"] == 2200
    assert report["n_tokens"] > 1000
    pages = [s["step"] for s in report["steps"]]
    assert pages[2:] == ["output", "layer_predictions", "rankings", "watch", "saliency", "factors"] + [
        "neurons",
        "similarity",
        "attention",
    ]
    for step in report["steps"]:
        assert not step["exception"], (step["step"], step["exception"])
    over = [(s["step"], s["peak_mb"]) for s in report["steps"] if s["peak_mb"] > report["budget_mb"]]
    assert not over, f"over the {report['budget_mb']:.0f} MB budget: {over}"


def test_what_was_reduced_or_refused_is_said(report):
    steps = {s["step"]: s for s in report["steps"]}
    assert "Long text" in report["notice"], report["notice"]
    assert any("Long text" in c for c in steps["run"]["caption"]), "the sidebar shows the notice"
    for page in ("saliency", "factors", "similarity"):  # each view either draws or says why not
        said = " ".join(steps[page]["error"] + steps[page]["caption"])
        assert "MB" in said or "Clipping" in said or "Compares" in said, (page, said)


def test_a_400_token_run_draws_every_page_saliency_included_under_the_budget():
    """Below the saliency limit (403 tokens here) every view computes, attention on every layer."""
    short = child_report(290)
    assert 300 < short["n_tokens"] <= 403 and short["notice"] is None
    steps = {s["step"]: s for s in short["steps"]}
    for name, step in steps.items():
        assert not step["exception"] and not step["error"], (name, step["exception"], step["error"])
    assert any("Gradient" in c for c in steps["saliency"]["caption"])
    assert short["peak_mb"] <= short["budget_mb"], short["peak_mb"]
