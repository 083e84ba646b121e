"""Interventions on a model's forward: zero- or mean-ablate neurons, an attention head or a
layer's MLP; add a steering direction to the residual stream or to the FFN neurons. Each is a
plain description; ``intervened`` turns a list of them into hooks for the body of a ``with``
(removed on exit, exception or not; see ``sites.hooked``)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from ...errors import InputError
from ...model.lm import LanguageModel
from ...results.neurons import Factorization
from .sites import SiteHook, check_layer, hooked, n_heads, out_projection, recorder

MODES = ("zero", "mean")
"""'zero' sets the activation to 0; 'mean' to its mean over the prompt's positions."""


@dataclass(frozen=True)
class Ablation:
    """Set some activations of one layer to 0 or to their mean over the prompt.

    ``kind`` 'neurons' (FFN neurons ``units``), 'head' (attention head ``units[0]``'s output
    before the output projection) or 'mlp' (the MLP's whole output).
    """

    kind: str
    layer: int
    units: tuple[int, ...] = ()
    mode: str = "zero"

    def describe(self) -> str:
        what = {
            "neurons": f"{len(self.units)} neuron(s) {list(self.units)[:8]}{'…' * (len(self.units) > 8)}",
            "head": f"head {self.units[0] if self.units else '?'}",
            "mlp": "the MLP",
        }[self.kind]
        return f"{self.mode}-ablate {what} of layer {self.layer}"


@dataclass(frozen=True)
class Steering:
    """Add ``strength * direction`` at every position: to the residual stream after block
    ``layer`` (``kind`` 'resid', direction (d_model,)) or to its FFN neurons ('neurons', (neuron,))."""

    layer: int
    direction: tuple[float, ...]
    strength: float
    kind: str = "resid"
    label: str = "a direction"

    def describe(self) -> str:
        where = "the residual stream after block" if self.kind == "resid" else "the FFN neurons of layer"
        return f"add {self.strength:g} x {self.label} to {where} {self.layer}"


Intervention = Ablation | Steering


def ablate_neurons(layer: int, neurons: Sequence[int], mode: str = "zero") -> Ablation:
    return Ablation("neurons", int(layer), tuple(int(n) for n in neurons), mode)


def ablate_head(layer: int, head: int, mode: str = "zero") -> Ablation:
    return Ablation("head", int(layer), (int(head),), mode)


def ablate_mlp(layer: int, mode: str = "zero") -> Ablation:
    return Ablation("mlp", int(layer), (), mode)


def steer(layer: int, direction: np.ndarray, strength: float, label: str = "a direction") -> Steering:
    vector = np.asarray(direction, dtype=np.float64).ravel()
    return Steering(int(layer), tuple(vector.tolist()), float(strength), "resid", label)


def ablate_factor(factors: Factorization, factor: int, top: int = 20, mode: str = "zero") -> list[Ablation]:
    """Ablate the ``top`` neurons with the largest loading on an NMF factor (one Ablation per layer)."""
    if not isinstance(top, int) or top < 1:
        raise InputError(f"top must be a whole number of neurons >= 1, not {top!r}.")
    frame = factors.top_neurons(factor, top)
    by_layer: dict[int, list[int]] = {}
    for layer, neuron in zip(frame["layer"], frame["neuron"]):
        by_layer.setdefault(int(layer), []).append(int(neuron))
    return [ablate_neurons(layer, neurons, mode) for layer, neurons in sorted(by_layer.items())]


def steer_factor(factors: Factorization, factor: int, strength: float) -> list[Steering]:
    """Add ``strength`` x an NMF factor's loadings (unit norm over its layers) to the FFN neurons."""
    if not 0 <= factor < factors.n_factors:
        raise InputError(f"factor must be in 0..{factors.n_factors - 1}, not {factor!r}.")
    return [
        Steering(
            int(layer),
            tuple(factors.loadings[factor, i].astype(float).tolist()),
            float(strength),
            "neurons",
            f"factor {factor}",
        )
        for i, layer in enumerate(factors.layers)
    ]


def steering_direction(lm: LanguageModel, positive: str, negative: str, layer: int) -> np.ndarray:
    """(d_model,) mean residual state after block ``layer`` over ``positive``'s positions minus
    the same over ``negative``'s (the difference of two prompts' mean activations)."""
    check_layer(lm, layer)
    means = []
    for text in (positive, negative):
        store: dict = {}
        with hooked(lm, [SiteHook("resid", layer + 1, recorder(store, "h"))]), torch.inference_mode():
            lm.model(input_ids=lm.encode(text)[None].to(lm.device), use_cache=False, **lm._no_logits)
        means.append(store["h"][0].double().mean(0))
    return (means[0] - means[1]).cpu().numpy()


def _check(lm: LanguageModel, item: Intervention) -> None:
    check_layer(lm, item.layer)
    if isinstance(item, Steering):
        width = lm.arch.d_model if item.kind == "resid" else lm.arch.n_neurons
        if item.kind not in ("resid", "neurons") or len(item.direction) != width:
            raise InputError(
                f"A steering direction for {item.kind!r} must have {width} numbers, "
                f"not {len(item.direction)}."
            )
        if not np.isfinite(item.strength):
            raise InputError(f"strength must be a finite number, not {item.strength!r}.")
        return
    if item.kind not in ("neurons", "head", "mlp"):
        raise InputError(f"An ablation's kind must be 'neurons', 'head' or 'mlp', not {item.kind!r}.")
    if item.mode not in MODES:
        raise InputError(f"mode must be one of {', '.join(MODES)}, not {item.mode!r}.")
    top = {"neurons": lm.arch.n_neurons, "head": n_heads(lm)}.get(item.kind)
    if top is not None and any(not 0 <= u < top for u in item.units):
        what = "neuron" if item.kind == "neurons" else "head"
        raise InputError(f"{what} numbers must lie in 0..{top - 1}; got {sorted(set(item.units))}.")
    if item.kind == "head" and len(item.units) != 1:
        raise InputError("A head ablation names exactly one head.")


def _site(lm: LanguageModel, item: Intervention) -> tuple[str, int]:
    if isinstance(item, Steering):
        return ("resid", item.layer + 1) if item.kind == "resid" else ("neurons", item.layer)
    return {"neurons": "neurons", "head": "heads", "mlp": "mlp"}[item.kind], item.layer


def _columns(lm: LanguageModel, item: Ablation) -> slice | list[int]:
    if item.kind == "neurons":
        return list(item.units)
    if item.kind == "head":
        width = out_projection(lm, item.layer).weight.numel() // lm.arch.d_model // n_heads(lm)
        return slice(item.units[0] * width, (item.units[0] + 1) * width)
    return slice(None)


def prompt_means(lm: LanguageModel, prompt_ids: torch.Tensor, items: Sequence[Intervention]) -> dict:
    """(site, layer) -> (d,) mean over the prompt's positions, for every mean ablation."""
    for item in items:
        _check(lm, item)
    keys = {_site(lm, i) for i in items if isinstance(i, Ablation) and i.mode == "mean"}
    if not keys:
        return {}
    store: dict = {}
    hooks = [SiteHook(site, layer, recorder(store, (site, layer))) for site, layer in sorted(keys)]
    with hooked(lm, hooks), torch.inference_mode():
        lm.model(input_ids=prompt_ids[None].to(lm.device), use_cache=False, **lm._no_logits)
    return {key: value[0].mean(0) for key, value in store.items()}


def _hook(lm: LanguageModel, item: Intervention, means: dict, rows):
    if isinstance(item, Steering):
        vector = torch.tensor(item.direction) * item.strength

        def add(tensor: torch.Tensor) -> torch.Tensor:
            out = tensor.clone()
            out[rows] = out[rows] + vector.to(out.device, out.dtype)
            return out

        return add
    columns = _columns(lm, item)
    mean = means.get(_site(lm, item))

    def ablate(tensor: torch.Tensor) -> torch.Tensor:
        out = tensor.clone()
        target = out[rows]
        target[..., columns] = 0.0 if mean is None else mean[columns].to(out.dtype)
        out[rows] = target
        return out

    return ablate


@contextmanager
def intervened(
    lm: LanguageModel,
    items: Sequence[Intervention],
    prompt_ids: torch.Tensor,
    rows=slice(None),
    means: dict | None = None,
) -> Iterator[None]:
    """Apply ``items`` to every forward in the body (batch rows ``rows`` only); mean ablations
    use the means over ``prompt_ids`` (pos,), or ``means`` from ``prompt_means`` when given."""
    for item in items:
        _check(lm, item)
    with lm.lock:
        means = prompt_means(lm, prompt_ids, items) if means is None else means
        hooks = [SiteHook(*_site(lm, item), _hook(lm, item, means, rows)) for item in items]
        with hooked(lm, hooks):
            yield


def describe(items: Sequence[Intervention]) -> str:
    return "; ".join(item.describe() for item in items) or "nothing (no intervention)"
