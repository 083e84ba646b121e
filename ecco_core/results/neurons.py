"""FFN neuron results: NMF / PCA factors, the most active neurons, one neuron's trace."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..errors import InputError
from .base import Drawable


@dataclass
class Factorization(Drawable):
    """NMF (or PCA) factors of FFN activations: ``activations ~ components.T @ loadings``."""

    components: np.ndarray
    """(factor, position) how strongly each factor fires at each chosen position (activation units)."""
    loadings: np.ndarray
    """(factor, layer, neuron) each factor's weight on every neuron; unit L2 norm per factor."""
    positions: np.ndarray
    """(position,) the sequence position of each column of ``components``."""
    tokens: list[str]
    """All tokens of the factorised stack (not only the chosen positions), so its text can be painted."""
    n_input_tokens: int
    layers: list[int]
    """The model layers the loadings' second axis holds."""
    method: str = "nmf"
    """'nmf' (non-negative parts) or 'pca' (signed, centred directions)."""
    fit_error: float = 0.0
    """||X - fit||_F / ||X||_F of the (clipped) neuron x position matrix X (PCA: of centred X)."""
    explained_variance: np.ndarray | None = None
    """(factor,) PCA only: the share of the matrix's variance each component explains."""
    negative_share: float = 0.0
    """Share of the selected activations that were negative (and clipped to 0)."""
    negative_mass: float = 0.0
    """Share of the selected activations' total |value| that was negative (and clipped to 0)."""
    special: np.ndarray | None = field(default=None, repr=False)
    """(pos,) bool special tokens of the run, for painting."""
    side: str = ""
    """'encoder' or 'decoder' on an encoder-decoder run; '' otherwise."""

    @property
    def n_factors(self) -> int:
        return self.components.shape[0]

    @property
    def signed(self) -> bool:
        return self.method == "pca"

    def full_components(self) -> np.ndarray:
        """(factor, pos) components over the whole run; 0 at positions that were not chosen."""
        full = np.zeros((self.n_factors, len(self.tokens)), dtype=np.float32)
        full[:, self.positions] = self.components
        return full

    def strongest_factor(self) -> np.ndarray:
        """(pos,) the factor with the largest value (PCA: largest |value|) at each position; -1 if none."""
        full = self.full_components()
        score = np.abs(full) if self.signed else full
        best = score.argmax(axis=0)
        return np.where(score.max(axis=0) > 0, best, -1)

    def top_neurons(self, factor: int, k: int = 10) -> pd.DataFrame:
        """The ``k`` neurons with the largest loading (PCA: largest |loading|) on ``factor``."""
        if not 0 <= factor < self.n_factors:
            raise InputError(f"factor must be in 0..{self.n_factors - 1}, not {factor}.")
        flat = self.loadings[factor].ravel()  # (layer * neuron,)
        score = np.abs(flat) if self.signed else flat
        order = top_indices(score, k)
        layer_pos, neuron = np.unravel_index(order, self.loadings.shape[1:])
        return pd.DataFrame(
            {
                "factor": factor,
                "layer": np.asarray(self.layers)[layer_pos],
                "neuron": neuron,
                "loading": flat[order].astype(float),
            }
        )

    def explore(self, top_k: int = 10) -> dict:
        """JSON-ready data for the factor explorer: tokens, factor values per token, top neurons."""
        return {
            "method": self.method,
            "side": self.side,
            "tokens": list(self.tokens),
            "n_input_tokens": int(self.n_input_tokens),
            "positions": self.positions.tolist(),
            "layers": list(self.layers),
            "factors": self.full_components().astype(float).tolist(),
            "strongest_factor": self.strongest_factor().tolist(),
            "top_neurons": [self.top_neurons(f, top_k).to_dict("records") for f in range(self.n_factors)],
        }

    def to_frame(self) -> pd.DataFrame:
        """Long table of the factor matrix: one row per (factor, position)."""
        factors, cols = np.meshgrid(np.arange(self.n_factors), np.arange(len(self.positions)), indexing="ij")
        positions = self.positions[cols.ravel()]
        return pd.DataFrame(
            {
                "factor": factors.ravel(),
                "position": positions,
                "token": [self.tokens[p] for p in positions],
                "value": self.components.ravel().astype(float),
            }
        )

    def loadings_frame(self) -> pd.DataFrame:
        """Wide table of the loadings: one row per (layer, neuron), one column per factor."""
        n_layers, n_neurons = self.loadings.shape[1:]
        frame = pd.DataFrame(
            {
                "layer": np.repeat(np.asarray(self.layers), n_neurons),
                "neuron": np.tile(np.arange(n_neurons), n_layers),
            }
        )
        for f in range(self.n_factors):
            frame[f"factor_{f}"] = self.loadings[f].ravel()
        return frame

    def to_dict(self) -> dict:
        """JSON-ready summary: the factor matrix, fit and clipping figures, top neurons per factor.

        The full loadings (factor x layer x neuron) are in ``loadings`` / ``loadings_frame()``.
        """
        data = self.explore()
        data.update(
            components=self.components.astype(float).tolist(),
            fit_error=float(self.fit_error),
            negative_share=float(self.negative_share),
            negative_mass=float(self.negative_mass),
            explained_variance=None
            if self.explained_variance is None
            else self.explained_variance.astype(float).tolist(),
        )
        return data

    def clipping_note(self) -> str:
        """What clipping negatives to 0 meant for this run, in words a reader can act on."""
        share, mass = 100 * self.negative_share, 100 * self.negative_mass
        if share == 0:
            return "No activation was negative, so nothing was clipped before factorising."
        head = f"{share:.0f}% of these activations were negative ({mass:.0f}% of their total size) and "
        head += "were set to 0 first, ecco's convention, because NMF needs non-negative numbers."
        if mass < 5:
            return head + " That is little (GELU-like neurons dip only slightly below 0)."
        return head + (
            " In a gated FFN (SwiGLU, as in Llama and SmolLM) a neuron's value is silu(gate) x up and "
            "its sign carries meaning, so these factors describe only the positive half of each "
            "neuron's firing." + ("" if self.signed else " PCA shows both signs.")
        )


def top_indices(values: np.ndarray, k: int) -> np.ndarray:
    """(k,) indices of the ``k`` largest of ``values`` (1-D), largest first; ties by lower index."""
    k = min(int(k), len(values))
    if k <= 0:
        return np.zeros(0, dtype=np.int64)
    part = np.argpartition(-values, k - 1)[:k] if k < len(values) else np.arange(len(values))
    return part[np.lexsort((part, -values[part]))]


@dataclass
class TopNeurons(Drawable):
    """The most active neurons at one position."""

    position: int
    token: str
    layers: np.ndarray
    """(k,) model layer of each neuron, most active first."""
    neurons: np.ndarray
    """(k,) neuron index within its layer."""
    values: np.ndarray
    """(k,) activation value."""
    above_mean: np.ndarray
    """(k,) activation minus the neuron's mean over the run's positions."""
    relative: bool = False
    """True: ranked by ``above_mean`` (what is special about this token); False: by ``values``."""
    side: str = ""
    """'encoder' or 'decoder' on an encoder-decoder run (``position`` indexes that side's tokens)."""
    experts: np.ndarray | None = None
    """(k,) MoE layers: the expert each neuron is a unit of (-1: the shared expert), else None."""
    router_weights: np.ndarray | None = None
    """(k,) MoE layers: the router's weight on that expert for this token (0: not routed there;
    the shared expert's sigmoid gate), which the neuron's value already includes."""

    def labels(self) -> list[str]:
        """'L1 · N7', or 'L1 · E3 · N7' in an MoE layer ('shared' for the shared expert)."""
        if self.experts is None:
            return [f"L{layer} · N{neuron}" for layer, neuron in zip(self.layers, self.neurons, strict=True)]
        experts = ["shared" if e < 0 else f"E{e}" for e in self.experts.tolist()]
        return [f"L{la} · {e} · N{n}" for la, e, n in zip(self.layers, experts, self.neurons, strict=True)]

    def to_frame(self) -> pd.DataFrame:
        frame = pd.DataFrame(
            {"rank": np.arange(1, len(self.values) + 1), "layer": self.layers, "neuron": self.neurons}
            | {"activation": self.values.astype(float), "above_mean": self.above_mean.astype(float)}
        )
        if self.experts is not None:
            frame["expert"] = self.experts
            frame["router_weight"] = np.asarray(self.router_weights, dtype=float)
        return frame

    def to_dict(self) -> dict:
        return {
            "position": int(self.position),
            "side": self.side,
            "token": self.token,
            "relative": bool(self.relative),
            "neurons": self.to_frame().to_dict("records"),
        }


@dataclass
class NeuronTrace(Drawable):
    """One neuron's activation at every position of the run."""

    layer: int
    neuron: int
    values: np.ndarray
    """(pos,) activation of the neuron at each position."""
    tokens: list[str]
    n_input_tokens: int

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame(
            {"position": np.arange(len(self.values)), "token": self.tokens, "activation": self.values}
        )

    def to_dict(self) -> dict:
        return {
            "layer": int(self.layer),
            "neuron": int(self.neuron),
            "tokens": list(self.tokens),
            "activation": self.values.astype(float).tolist(),
        }


@dataclass
class Routing(Drawable):
    """Where a mixture-of-experts model sent each token: the experts of every MoE layer, with the
    router's weights. A neuron of such a layer is one unit of one expert, weighted by these
    weights (0 where the token was not routed to the expert): neuron ``e * expert_size + u`` is
    unit ``u`` of expert ``e``, and the shared expert's units (if any) come last."""

    layers: list[int]
    """The model layers of the first axis."""
    experts: np.ndarray
    """(layer, pos, top_k) int64 the experts each token was routed to, by falling weight."""
    weights: np.ndarray
    """(layer, pos, top_k) their router weights."""
    tokens: list[str]
    n_input_tokens: int
    n_experts: int
    expert_size: int
    """Units per routed expert."""
    shared_size: int = 0
    """Units of the shared expert (Qwen2-MoE), 0 if none."""
    shared_weights: np.ndarray | None = None
    """(layer, pos) the shared expert's sigmoid gate, or None."""

    def dense(self) -> np.ndarray:
        """(layer, expert, pos) router weight of every expert; 0 where a token was not routed."""
        n_layers, n_pos, _ = self.experts.shape
        full = np.zeros((n_layers, self.n_experts, n_pos), dtype=np.float32)
        layer, pos, _slot = np.indices(self.experts.shape)
        inside = (self.experts >= 0) & (self.experts < self.n_experts)
        np.add.at(full, (layer[inside], self.experts[inside], pos[inside]), self.weights[inside])
        return full

    def expert_of(self, neurons: np.ndarray) -> np.ndarray:
        """(n,) the expert of each neuron index (-1: a unit of the shared expert)."""
        neurons = np.asarray(neurons, dtype=np.int64)
        return np.where(neurons < self.n_experts * self.expert_size, neurons // self.expert_size, -1)

    def load(self) -> np.ndarray:
        """(layer, expert) share of the tokens routed to each expert."""
        return (self.dense() > 0).mean(axis=2)

    def to_frame(self) -> pd.DataFrame:
        """One row per (layer, position, routed expert)."""
        layer, pos, slot = np.indices(self.experts.shape)
        return pd.DataFrame(
            {
                "layer": np.asarray(self.layers)[layer.ravel()],
                "position": pos.ravel(),
                "token": [self.tokens[p] for p in pos.ravel()],
                "slot": slot.ravel(),
                "expert": self.experts.ravel(),
                "weight": self.weights.ravel().astype(float),
            }
        )

    def to_dict(self) -> dict:
        return {
            "layers": list(self.layers),
            "tokens": list(self.tokens),
            "n_experts": int(self.n_experts),
            "expert_size": int(self.expert_size),
            "shared_size": int(self.shared_size),
            "experts": self.experts.tolist(),
            "weights": self.weights.astype(float).tolist(),
            "shared_weights": None if self.shared_weights is None else self.shared_weights.tolist(),
        }
