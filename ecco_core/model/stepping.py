"""Generation in steps: a few tokens per call on the model, continuing from the KV cache.

Between two steps the caller holds nothing of the model (not its lock), so a server can give
the model to other visitors' requests between steps and a visitor can stop early: what was
written so far is captured as an ordinary run. Each step calls HF ``generate`` with the cache of
the previous one, so the step after the first feeds only the last written token, as one
uninterrupted ``generate`` does; the sampling processors (and their generator) carry over, so
greedy and seeded runs write the same tokens whether they run in one step or in many.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:  # type hints only: lm imports this module
    from .capture import Capture
    from .lm import LanguageModel

Progress = Callable[[str, float], None]
"""progress(stage, fraction): stage is "generate", "capture" or "attribution"."""


class ProgressStreamer:
    """A generate() streamer that reports the share of new tokens produced (``done`` before)."""

    def __init__(self, total: int, progress: Progress | None, done: int = 0) -> None:
        self.total, self.progress, self.seen, self.done = max(total, 1), progress, -1, done

    def put(self, value) -> None:
        self.seen += 1  # the first call carries the input
        if self.progress and self.seen > 0:
            self.progress("generate", min((self.done + self.seen) / self.total, 1.0))

    def end(self) -> None:
        if self.progress:
            self.progress("generate", min((self.done + max(self.seen, 0)) / self.total, 1.0))


@functools.cache
def _cache_field() -> str:
    """transformers' name for the KV cache, in generate's arguments and outputs ("cache" since
    5.2x, "past_key_values" before)."""
    from transformers.generation.utils import GenerateDecoderOnlyOutput

    return "cache" if "cache" in GenerateDecoderOnlyOutput.__dataclass_fields__ else "past_key_values"


class Generation:
    """One generation, run a step at a time: ``step`` writes up to ``most`` tokens, ``capture``
    records the run of everything written so far (the prompt alone when nothing was).

    Made by ``LanguageModel.start_generation``, which checks the prompt and the settings.
    """

    def __init__(self, lm: LanguageModel, ids: torch.Tensor, total: int, processors) -> None:
        self.lm = lm
        self.n_input = len(ids)
        self.total = int(total)
        self.processors = processors
        self.ids = ids
        """(pos,) the prompt, then the tokens written so far (the decoder's on an encoder-decoder)."""
        self.decoder_ids: torch.Tensor | None = None
        self._cache = None
        self._ended = self.total == 0  # an end-of-sequence token was written

    @property
    def n_new(self) -> int:
        """Tokens written so far."""
        if self.decoder_ids is not None:
            return len(self.decoder_ids) - 1  # after the decoder start token
        return len(self.ids) - self.n_input

    @property
    def done(self) -> bool:
        return self._ended or self.n_new >= self.total

    def step(self, most: int | None = None, progress: Progress | None = None) -> int:
        """Write up to ``most`` more tokens (None: all that remain); returns how many were written.

        An encoder-decoder writes all that remain in one step.
        """
        if self.done:
            return 0
        lm = self.lm
        left = self.total - self.n_new
        count = left if most is None or lm.model_type == "enc-dec" else max(1, min(int(most), left))
        before = self.n_new
        with lm.lock, torch.inference_mode():
            if lm.model_type == "enc-dec":
                self.decoder_ids = self._generate(self.ids, count, progress, cache=False)[0].cpu()
                self._ended = True
            else:
                out = self._generate(self.ids, count, progress, cache=True)
                self._cache = getattr(out, _cache_field())
                self.ids = out.sequences[0].cpu()
        written = self.n_new - before
        if written < count or self._wrote_end():
            self._ended = True  # generate stopped early: an end-of-sequence token
        return written

    def _generate(self, ids: torch.Tensor, count: int, progress: Progress | None, cache: bool):
        lm = self.lm
        extra = {_cache_field(): self._cache, "return_dict_in_generate": True} if cache else {}
        return lm.model.generate(
            ids[None].to(lm.device),
            attention_mask=torch.ones(1, len(ids), dtype=torch.long, device=lm.device),
            max_new_tokens=count,
            do_sample=False,  # the last processor samples; greedy then takes its one token
            temperature=None,
            top_k=None,
            top_p=None,
            logits_processor=self.processors,
            pad_token_id=lm._pad_id(),
            streamer=ProgressStreamer(self.total, progress, self.n_new),
            **extra,
        )

    def _wrote_end(self) -> bool:
        if self.n_new == 0:
            return False
        ends = getattr(getattr(self.lm.model, "generation_config", None), "eos_token_id", None)
        ends = {ends} if isinstance(ends, int) else set(ends or ())
        last = self.decoder_ids[-1] if self.decoder_ids is not None else self.ids[-1]
        return int(last) in ends

    def capture(
        self,
        attention: bool = False,
        activation_layers: Sequence[int] | None = None,
        attention_layers: Sequence[int] | None = None,
        progress: Progress | None = None,
    ) -> Capture:
        """One capture forward over the prompt and what was written so far."""
        self._cache = None  # the KV cache is not needed any more: free it before the capture
        lm = self.lm
        if lm.model_type == "enc-dec":
            decoder = self.decoder_ids
            if decoder is None:
                decoder = torch.tensor([lm._decoder_start_id()])
            layers = (activation_layers, attention_layers)
            return lm.capture_enc_dec(self.ids, decoder, attention, *layers, progress)
        return lm.capture(self.ids, self.n_input, attention, activation_layers, progress, attention_layers)
