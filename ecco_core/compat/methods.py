"""Attribution methods by ecco's names, with ecco's settings for integrated gradients."""

from __future__ import annotations

from ..errors import InputError, UnsupportedIdiomError
from ..facade import ECCO_IG

_ECCO_METHODS = {
    "ig": ("integrated_gradients", ECCO_IG),
    "integrated_gradients": ("integrated_gradients", ECCO_IG),
    "saliency": ("gradient", {}),
    "gradient": ("gradient", {}),
    "grad_x_input": ("grad_x_input", {}),
    "erasure": ("erasure", {}),
    "attention": ("attention", {}),
    "attention_rollout": ("attention_rollout", {}),
}
_CAPTUM_ONLY = {
    "dl": "DeepLift",
    "deep_lift": "DeepLift",
    "dls": "DeepLiftShap",
    "deep_lift_shap": "DeepLiftShap",
    "gb": "Guided Backprop",
    "guided_backprop": "Guided Backprop",
    "gg": "Guided GradCAM",
    "guided_gradcam": "Guided GradCAM",
    "deconv": "Deconvolution",
    "deconvolution": "Deconvolution",
    "lrp": "LRP",
    "layer_relevance_propagation": "LRP",
}


def ecco_method(name: str) -> tuple[str, dict]:
    """(engine method, settings) of an attribution method named the ecco way.

    Raises:
        UnsupportedIdiomError: one of Captum's methods ecco listed that ecco_core does not run.
        InputError: an unknown name.
    """
    if name in _ECCO_METHODS:
        return _ECCO_METHODS[name]
    offered = "'ig', 'grad_x_input', 'saliency' (gradient), 'erasure', 'attention', 'attention_rollout'"
    if name in _CAPTUM_ONLY:
        raise UnsupportedIdiomError(
            f"attribution method {name!r} ({_CAPTUM_ONLY[name]}) is not provided; pick one of {offered}."
        )
    raise InputError(f"Unknown attribution method {name!r}: pick one of {offered}.")
