"""Type and range checks of the views' settings, one function per view, called first thing.

Run-dependent ranges (positions, layers, tokens) are checked where the run is read (``checks``);
these check what can be judged from the values alone, so a wrong type never reaches numpy.
"""

from __future__ import annotations

from ...errors import ComponentsError, InputError, PositionError, TokenError
from .values import choice, flag, is_whole, optional_callable, optional_whole, shown, whole

SIDES = ("decoder", "encoder")
LENSES = ("normed", "raw", "ecco")
"""normed: the final norm applied; raw: ecco's read-out; ecco: raw with ecco's layer numbers."""


def lens(lens_name: object, include_prompt: object = False) -> None:
    choice("lens", lens_name, LENSES)
    flag("include_prompt", include_prompt)


def nmf(n_components: object, method: object, skip_first: object, side: object, positions: object) -> int:
    """``run_nmf``'s settings; returns ``n_components`` as an int (2.5 is refused, not truncated)."""
    choice("method", method, ("nmf", "pca"))
    flag("skip_first", skip_first)
    choice("side", side, SIDES)
    choice("positions", positions, ("all", "input", "output"))
    return whole("n_components", n_components, 1, error=ComponentsError)


def layer_bounds(from_layer: object, to_layer: object, n_layers: int) -> None:
    """``from_layer`` in 0 .. n_layers - 1 and ``to_layer`` (exclusive) in 1 .. n_layers, from < to."""
    low = optional_whole(
        "from_layer", from_layer, 0, n_layers - 1, allowed=f"None or a layer from 0 to {n_layers - 1}"
    )
    high = optional_whole(
        "to_layer",
        to_layer,
        1,
        n_layers,
        allowed=f"None or a layer from 1 to {n_layers} (exclusive, as in ecco)",
    )
    if low is not None and high is not None and low > high:
        raise InputError(f"from_layer={low} must be below to_layer={high} (to_layer is exclusive).")


def neurons(position: object, k: object, relative: object, side: object) -> None:
    whole("position", position)
    whole("k", k, 1)
    flag("relative", relative)
    choice("side", side, SIDES)


def similarity(
    method: object, source: object, dims: object, skip_first: object, normalize: object, side: object
):
    choice("method", method, ("cka", "cca", "svcca", "pwcca"))
    choice("source", source, ("hidden", "ffn"))
    whole("dims", dims, 1)
    flag("skip_first", skip_first)
    flag("normalize", normalize)
    choice("side", side, SIDES)


def attention(layer: object, head: object = 0, side: object = "self", method: object = "mean") -> None:
    whole("layer", layer)
    whole("head", head, 0)
    choice("side", side, ("self", "encoder", "cross"))
    if not isinstance(method, str) or method not in ("head", "mean", "rollout"):
        raise InputError(f"Unknown aggregation method={shown(method)}: use 'head', 'mean' or 'rollout'.")


def saliency(
    attr_method: object,
    style: object,
    target: object,
    foil: object,
    n_steps: object,
    baseline: object,
    quadrature: object,
    progress: object,
    backend: object,
) -> None:
    """``saliency``'s settings whose range does not depend on the run."""
    if not isinstance(attr_method, str):
        raise InputError(f"attr_method must be a method name (a str), not {shown(attr_method)}.")
    choice("style", style, ("minimal", "detailed"))
    choice("target", target, ("prob", "logit", "contrast", "contrast_prob"))
    if foil is not None and not isinstance(foil, str) and not is_whole(foil):
        raise TokenError(f"foil must be None, one token as a string or a token id, not {shown(foil)}.")
    whole("n_steps", n_steps, 1, 512)
    choice("baseline", baseline, ("zero", "pad"))
    choice("quadrature", quadrature, ("auto", "adaptive", "gauss", "graded", "left"))
    choice("backend", backend, ("auto", "autograd"))
    optional_callable("progress", progress)


def masked(position: object, topk: object, vocab_size: int) -> None:
    optional_whole("position", position, error=PositionError)
    whole("topk", topk, 1, vocab_size)
