"""Sampling with a generator of the call's own: seeded runs reproduce whatever else samples.

transformers' sampler draws from torch's process-wide generator, so two models sampling at once
in threads interleave their draws. Here generation runs greedy, with HF's own warpers
(temperature, top-k, top-p, in HF's order) and, last, a processor that draws the token from
this call's ``torch.Generator`` and leaves only it finite; greedy then picks it.
"""

from __future__ import annotations

import torch


class SampleWithGenerator:
    """A logits processor: draws the next token from softmax(scores) with ``generator``."""

    def __init__(self, generator: torch.Generator) -> None:
        self.generator = generator

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        probs = torch.softmax(scores.float(), dim=-1)  # (batch, vocab)
        chosen = torch.multinomial(probs, num_samples=1, generator=self.generator)  # (batch, 1)
        return torch.full_like(scores, -float("inf")).scatter_(-1, chosen, 0.0)


def sampling_processors(
    device: torch.device, temperature: float, top_k: int | None, top_p: float | None, seed: int | None
) -> list:
    """HF's sampling warpers for these settings, then a sampler with a generator of its own
    (seeded with ``seed``, or freshly from the OS when None)."""
    from transformers.generation import (
        LogitsProcessorList,
        TemperatureLogitsWarper,
        TopKLogitsWarper,
        TopPLogitsWarper,
    )

    generator = torch.Generator(device=device)
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(int(seed))
    processors: list = []
    if temperature != 1.0:
        processors.append(TemperatureLogitsWarper(float(temperature)))
    if top_k:
        processors.append(TopKLogitsWarper(top_k=int(top_k)))
    if top_p is not None and top_p < 1.0:
        processors.append(TopPLogitsWarper(top_p=float(top_p)))
    return LogitsProcessorList([*processors, SampleWithGenerator(generator)])
