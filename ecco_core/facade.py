"""ecco's call surface over the layers below: ``LM.generate`` / ``LM(...)`` return an
``OutputSeq`` whose methods are ecco's views. The one module that reaches down into analysis
from the run's side (the sanctioned back-edge of the layer plan)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .analysis import attribution as saliency_methods
from .analysis import lens, masked, neurons
from .model import loading
from .model.lm import LanguageModel, Progress
from .model.weights import DEFAULT_MODEL
from .results import Factorization, LayerPredictions, MaskedPredictions, Rankings, Saliency, WatchRankings
from .run import OutputSeq as RunData


class OutputSeq(RunData):
    """One run of a model (``ecco_core.run.OutputSeq``) with ecco's methods."""

    def layer_predictions(
        self, position: int = 1, topk: int = 10, layer: int | None = None, **kwargs
    ) -> LayerPredictions:
        """Top-k tokens and probabilities per layer for the token at ``position``."""
        return lens.layer_predictions(self, position=position, topk=topk, layer=layer, **kwargs)

    def rankings(self, **kwargs) -> Rankings:
        """Rank per layer of the token that was actually chosen, per position."""
        return lens.rankings(self, **kwargs)

    def rankings_watch(self, watch, position: int = -1, **kwargs) -> WatchRankings:
        """Rank per layer of watched tokens (ids or strings) at one position."""
        return lens.rankings_watch(self, watch=watch, position=position, **kwargs)

    def saliency(self, attr_method: str = "grad_x_input", style: str = "minimal", **kwargs) -> Saliency:
        """Input saliency of every output token (ecco's name)."""
        return saliency_methods.saliency(self, attr_method=attr_method, style=style, **kwargs)

    def primary_attributions(self, attr_method: str = "grad_x_input", style: str = "minimal", **kwargs):
        """Alias of ``saliency`` (ecco's newer name)."""
        return self.saliency(attr_method=attr_method, style=style, **kwargs)

    def masked_predictions(self, position: int | None = None, topk: int = 10) -> MaskedPredictions:
        """Masked LMs: top-k tokens at ``position`` (default: the first mask token) per layer."""
        return masked.masked_predictions(self, position=position, topk=topk)

    def run_nmf(self, n_components: int = 10, **kwargs) -> Factorization:
        """Factorise the FFN activations with NMF (ecco's ``run_nmf``)."""
        return neurons.run_nmf(self, n_components=n_components, **kwargs)


class LM(LanguageModel):
    """A loaded model with ecco's ``generate`` and ``__call__``, returning ``OutputSeq`` runs."""

    def generate(
        self,
        text: str | Sequence[int] | torch.Tensor,
        generate: int = 20,
        *args,
        attribution: Sequence[str] = (),
        progress: Progress | None = None,
        **kwargs,
    ) -> OutputSeq:
        """Generate ``generate`` tokens after ``text``, capture everything in one forward, and
        compute ``attribution`` methods (ecco's names) with the run. See ``LanguageModel.generate``."""
        capture = super().generate(text, generate, *args, progress=progress, **kwargs)
        seq = OutputSeq.from_capture(capture, self)
        if attribution:
            saliency_methods.compute_attributions(seq, list(attribution), progress=progress)
        return seq

    def __call__(self, text: str | Sequence[int] | torch.Tensor, *args, **kwargs) -> OutputSeq:
        """Analyse text without generating: one capture forward (see ``LanguageModel.__call__``)."""
        return OutputSeq.from_capture(super().__call__(text, *args, **kwargs), self)


def from_pretrained(
    name_or_path: str | None = DEFAULT_MODEL,
    device: str | torch.device = "auto",
    dtype: str | torch.dtype | None = None,
) -> LM:
    """Load a model once per process (cached by name, device and dtype).

    Args:
        name_or_path: ``DEFAULT_MODEL`` (embedded SmolLM2-135M-Instruct), ``EMBEDDED_ENCODER``,
            a local folder, a ``.gguf`` file or a hub id.
        device: 'auto' (CUDA when present), 'cpu', 'cuda', 'cuda:1', ...
        dtype: None (float32), 'float16', 'bfloat16' or a torch dtype.

    Raises:
        ModelNotFoundError, NoNetworkError, NotALanguageModelError, UnsupportedArchitectureError.
    """
    return loading.from_pretrained(name_or_path, device, dtype, lm_class=LM)


clear_cache = loading.clear_cache
