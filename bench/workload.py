"""The standard workload of issue 7, and the pieces the benchmark times separately."""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

import ecco_core
from ecco_core.facade import OutputSeq

EU_PROMPT = "The countries of the European Union are:\n1. Austria\n2. Belgium\n3. Bulgaria\n4."
N_GENERATE = 20
WATCH = [" Croatia", " Cyprus"]


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    """Seconds and value of ``fn()``; waits for queued GPU work, so CUDA timings are real."""
    _sync()
    start = time.perf_counter()
    value = fn()
    _sync()
    return time.perf_counter() - start, value


def _sync() -> None:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def bare_generate(lm: ecco_core.LM, prompt: str = EU_PROMPT, n: int = N_GENERATE) -> torch.Tensor:
    """A plain greedy ``model.generate`` of ``n`` tokens, nothing else (the yardstick G)."""
    ids = lm.encode(prompt)[None].to(lm.device)
    with torch.inference_mode():
        return lm.model.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=n,
            min_new_tokens=n,
            do_sample=False,
            pad_token_id=lm.tokenizer.eos_token_id,
        )


def generate(lm: ecco_core.LM, prompt: str = EU_PROMPT, n: int = N_GENERATE) -> OutputSeq:
    return lm.generate(prompt, generate=n)


def lens_views(seq: OutputSeq) -> None:
    """rankings + layer predictions (top 10) at every output position + watch of two tokens."""
    seq.rankings()
    for position in range(seq.n_input_tokens, seq.n_tokens):
        seq.layer_predictions(position=position, topk=10)
    seq.rankings_watch(WATCH, position=seq.n_input_tokens)


def grad_x_input(seq: OutputSeq) -> object:
    return seq.saliency("grad_x_input")


def nmf(seq: OutputSeq) -> object:
    return seq.run_nmf(n_components=8)


def standard_workload(lm: ecco_core.LM, prompt: str = EU_PROMPT, n: int = N_GENERATE) -> dict[str, float]:
    """Generate + capture, lens views, grad x input for every output, NMF: seconds per stage."""
    times = {}
    times["generate_capture"], seq = timed(lambda: generate(lm, prompt, n))
    times["lens"], _ = timed(lambda: lens_views(seq))
    times["grad_x_input"], _ = timed(lambda: grad_x_input(seq))
    times["nmf"], _ = timed(lambda: nmf(seq))
    times["total"] = sum(times.values())
    return times
