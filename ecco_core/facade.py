"""ecco's call surface over the layers below: ``LM.generate`` / ``LM(...)`` return an
``OutputSeq`` whose methods are ecco's views. The one module that reaches down into analysis
from the run's side (the sanctioned back-edge of the layer plan)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from .analysis import attribution as saliency_methods
from .analysis import checks, lens, masked, neurons
from .analysis.interventions.methods import InterventionModelMethods, InterventionRunMethods
from .errors import InputError, UnsupportedIdiomError
from .model import loading
from .model.hub import DownloadProgress
from .model.lm import LanguageModel, Progress
from .model.weights import DEFAULT_MODEL
from .notebook import run_html
from .results import (
    Factorization,
    LayerPredictions,
    MaskedPredictions,
    Rankings,
    Routing,
    Saliency,
    WatchRankings,
)
from .run import OutputSeq as RunData

ECCO_IG = {"n_steps": 50, "quadrature": "gauss", "baseline": "zero", "target": "prob"}
"""ecco's integrated gradients (Captum's defaults): 50 Gauss-Legendre points from a zero embedding,
the probability of the token; scores are the L2 norm over the embedding, normalised to sum 1.
``seq.saliency("ig", preset="ecco")`` here; ``generate(attribution=["ig"])`` on ecco's objects."""

PRESETS = {"ecco": ECCO_IG}


def _engine_kwargs(view: str, kwargs: dict) -> dict:
    """Refuse ecco's ``printJson`` on the engine's run (it would be ignored, not honoured)."""
    if "printJson" in kwargs:
        raise UnsupportedIdiomError(
            f"{view}(printJson=...) is ecco's spelling; the engine's result has to_dict() (JSON) and "
            "to_frame(). For ecco's dict, load with ecco_core.from_pretrained(name) (no device=)."
        )
    return kwargs


class OutputSeq(InterventionRunMethods, RunData):  # interventions (issue 16): a mixin
    """One run of a model (``ecco_core.run.OutputSeq``) with the engine's views (this project's
    layouts; ``ecco_core.compat.EccoOutputSeq`` has ecco's)."""

    def _repr_html_(self) -> str:
        return run_html(self.tokens, self.n_input_tokens, self.special)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        text = (
            f"<OutputSeq {self.model_name}: {self.n_input_tokens} prompt + {self.n_output_tokens} new tokens>"
        )
        return {"text/html": self._repr_html_(), "text/plain": text}

    def layer_predictions(
        self, position: int = 1, topk: int = 10, layer: int | None = None, **kwargs
    ) -> LayerPredictions:
        """Top-k tokens and probabilities per layer for the token at ``position``."""
        kwargs = _engine_kwargs("layer_predictions", kwargs)
        return lens.layer_predictions(self, position=position, topk=topk, layer=layer, **kwargs)

    def rankings(self, **kwargs) -> Rankings:
        """Rank per layer of the token that was actually chosen, per position."""
        return lens.rankings(self, **_engine_kwargs("rankings", kwargs))

    def rankings_watch(self, watch, position: int = -1, **kwargs) -> WatchRankings:
        """Rank per layer of watched tokens (ids or strings) at one position."""
        kwargs = _engine_kwargs("rankings_watch", kwargs)
        return lens.rankings_watch(self, watch=watch, position=position, **kwargs)

    def saliency(
        self, attr_method: str = "grad_x_input", style: str = "minimal", preset: str | None = None, **kwargs
    ) -> Saliency:
        """Input saliency of every output token (ecco's name). ``preset="ecco"`` takes ecco's
        settings (``ECCO_IG``) for what ``kwargs`` leaves unset."""
        kwargs = _engine_kwargs("saliency", kwargs)
        if preset is not None:
            if preset not in PRESETS:
                raise InputError(f"preset must be one of {sorted(PRESETS)} or None, not {preset!r}.")
            kwargs = {**PRESETS[preset], **kwargs}
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

    def routing(self) -> Routing:
        """Mixture-of-experts models: the experts each token went to per layer, with the router's weights."""
        return neurons.routing(self)


class LM(InterventionModelMethods, LanguageModel):  # interventions (issue 16): a mixin
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
        checks.calls.generate_arguments(self, (text, generate, *args), {"progress": progress, **kwargs})
        attribution = [saliency_methods.method_name(m) for m in checks.calls.attribution_names(attribution)]
        capture = super().generate(text, generate, *args, progress=progress, **kwargs)
        seq = OutputSeq.from_capture(capture, self)
        if attribution:
            saliency_methods.compute_attributions(seq, list(attribution), progress=progress)
        return seq

    def __call__(self, text: str | Sequence[int] | torch.Tensor, *args, **kwargs) -> OutputSeq:
        """Analyse text without generating: one capture forward (see ``LanguageModel.__call__``)."""
        checks.calls.call_arguments(self, (text, *args), kwargs)
        return OutputSeq.from_capture(super().__call__(text, *args, **kwargs), self)


def from_pretrained(
    name_or_path: str | None = DEFAULT_MODEL,
    device: str | torch.device = "auto",
    dtype: str | torch.dtype | None = None,
    *,
    timeout: float | None = None,
    on_progress: Callable[[DownloadProgress], None] | None = None,
) -> LM:
    """Load a model once per process (cached by name, device and dtype).

    Args:
        name_or_path: ``DEFAULT_MODEL`` (embedded SmolLM2-135M-Instruct), ``EMBEDDED_ENCODER``,
            a local folder, a ``.gguf`` file or a hub id.
        device: 'auto' (CUDA when present), 'cpu', 'cuda', 'cuda:1', ...
        dtype: None (float32), 'float16', 'bfloat16' or a torch dtype.
        timeout: seconds to wait for a model from the hub (None: ``ECCO_LOAD_TIMEOUT_S``, 120);
            the download goes on in the background after it, and a later call picks it up.
        on_progress: called with a ``DownloadProgress`` (files and bytes done of the total) as a
            hub download goes on.

    Raises:
        ModelNotFoundError, NoNetworkError, HubTimeoutError, NotALanguageModelError,
        UnsupportedArchitectureError, InputError (an argument of the wrong type).
    """
    checks.calls.from_pretrained_arguments(name_or_path, device, dtype, timeout, on_progress)
    return loading.from_pretrained(
        name_or_path, device, dtype, lm_class=LM, timeout=timeout, on_progress=on_progress
    )


clear_cache = loading.clear_cache
