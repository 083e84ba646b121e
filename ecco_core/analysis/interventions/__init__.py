"""Interventions: compare two prompts (attribution and exact activation patching), ablate or
steer and regenerate, direct logit attribution. Every hook lives inside one call."""

from __future__ import annotations

from .dla import direct_logit_attribution
from .edits import (
    MODES,
    Ablation,
    Steering,
    ablate_factor,
    ablate_head,
    ablate_mlp,
    ablate_neurons,
    describe,
    intervened,
    steer,
    steer_factor,
    steering_direction,
)
from .patching import (
    PromptPair,
    attribution_patching,
    available_sites,
    compare,
    exact_patching,
    patched_logits,
    patched_metric,
    with_exact,
)
from .regenerate import regenerate
from .sites import SITES, hooked, n_heads

__all__ = [
    "MODES",
    "SITES",
    "Ablation",
    "PromptPair",
    "Steering",
    "ablate_factor",
    "ablate_head",
    "ablate_mlp",
    "ablate_neurons",
    "attribution_patching",
    "available_sites",
    "compare",
    "describe",
    "direct_logit_attribution",
    "exact_patching",
    "hooked",
    "intervened",
    "n_heads",
    "patched_logits",
    "patched_metric",
    "regenerate",
    "steer",
    "steer_factor",
    "steering_direction",
    "with_exact",
]
