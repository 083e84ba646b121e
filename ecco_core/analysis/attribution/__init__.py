"""Input saliency (ecco's ``saliency`` / ``primary_attributions``): six methods of one signature
over a shared context, with gradients from autograd or a hand-written Llama-family backward."""

from __future__ import annotations

from .adaptive import SCAN_ALPHAS, PathRule
from .adaptive import TOLERANCE as ADAPTIVE_TOLERANCE
from .backends import AUTOGRAD, HAND_WRITTEN, objective_gradients
from .context import (
    BACKEND_CHOICES,
    BASELINES,
    QUADRATURES,
    AttributionContext,
    build_context,
    encoder_decoder_embeds,
    encoder_decoder_logits,
    foil_id,
)
from .methods import (
    ALIASES,
    ENC_DEC_METHODS,
    LABELS,
    METHODS,
    compute_attributions,
    method_name,
    run_method,
    saliency,
)
from .quadrature import quadrature
from .targets import TARGETS, Target

__all__ = [
    "ADAPTIVE_TOLERANCE",
    "ALIASES",
    "AUTOGRAD",
    "BACKEND_CHOICES",
    "BASELINES",
    "ENC_DEC_METHODS",
    "HAND_WRITTEN",
    "PathRule",
    "LABELS",
    "METHODS",
    "QUADRATURES",
    "SCAN_ALPHAS",
    "TARGETS",
    "AttributionContext",
    "Target",
    "build_context",
    "compute_attributions",
    "encoder_decoder_embeds",
    "encoder_decoder_logits",
    "foil_id",
    "method_name",
    "objective_gradients",
    "quadrature",
    "run_method",
    "saliency",
]
