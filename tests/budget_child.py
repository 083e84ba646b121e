"""Child process of tests/test_app_reliability_budget.py: a long prompt through every page of the
app (AppTest, the embedded model), with this process's peak RSS after each step, as JSON on stdout.

Run alone: ``python -m tests.budget_child [n_words] [n_generate]``. A fresh process, so the peak
(VmHWM, reset at the start) is the app's own: Python, torch, the model, the run and every view.
"""

from __future__ import annotations

import json
import os
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ["ECCO_PRELOAD"] = "0"

SENTENCES = [
    "The river town woke slowly while fishermen mended nets beside the old stone bridge.",
    "In 1887 the council voted to build a library, a school and a market hall near the square.",
    "Prices of bread, milk and coal rose every winter, and families shared what little they had.",
    "A travelling doctor wrote that the air smelled of salt, smoke and apples from the orchards.",
    "Children learned to count boats, name the stars and read the tides from the harbour wall.",
    "When the railway came, merchants from three countries opened shops along the new avenue.",
    "Her letters describe storms, weddings, a fire at the mill and the long summer of the flood.",
    "Nobody remembers who planted the chestnut trees, but everyone agrees they are beautiful.",
]


def prompt_of(n_words: int) -> str:
    words: list[str] = []
    i = 0
    while len(words) < n_words:
        words += f"{i + 1}. {SENTENCES[i % len(SENTENCES)]}".split()
        i += 1
    return " ".join(words[:n_words])


def status_mb(field: str) -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise KeyError(field)


def reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")  # resets VmHWM to the current RSS
        return True
    except OSError:
        return False


PAGES = [
    "output",
    "layer_predictions",
    "rankings",
    "watch",
    "saliency",
    "factors",
    "neurons",
    "similarity",
    "attention",
]


def main(n_words: int, n_generate: int) -> dict:
    import torch

    torch.set_num_threads(2)
    from streamlit.testing.v1 import AppTest

    from ecco_core.model import budget

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    report: dict = {"budget_mb": budget.budget_bytes() / 2**20, "steps": []}
    report["peak_reset"] = reset_peak()
    at = AppTest.from_file(os.path.join(root, "streamlit_app.py"), default_timeout=1200)
    at.run()

    def step(name: str) -> None:
        texts = {
            kind: [e.value for e in getattr(at, kind)] for kind in ("error", "warning", "info", "caption")
        }
        report["steps"].append(
            {
                "step": name,
                "rss_mb": round(status_mb("VmRSS"), 1),
                "peak_mb": round(status_mb("VmHWM"), 1),
                "seconds": round(time.monotonic() - started, 1),
                "exception": [str(e.value)[:300] for e in at.exception],
                **{k: [t[:300] for t in v] for k, v in texts.items()},
            }
        )

    started = time.monotonic()
    step("start")
    at.text_area(key="prompt").set_value(prompt_of(n_words))
    at.number_input(key="n_generate").set_value(n_generate)
    at.button(key="run").click()
    at.run()
    step("run")
    for page in PAGES:
        at.switch_page(os.path.join(root, "ecco_app", "views", f"{page}.py"))
        at.run()
        step(page)
    seq = at.session_state["seq"]
    report["n_tokens"] = int(seq.n_tokens)
    report["notice"] = at.session_state["run_notice"]
    report["peak_mb"] = max(s["peak_mb"] for s in report["steps"])
    return report


if __name__ == "__main__":
    words = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    new = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    print("BUDGET-REPORT " + json.dumps(main(words, new)), flush=True)
