"""ecco's ``NMF``: ``run_nmf(n_components, from_layer, to_layer)``, ``explore()``, ``plot()``, ``model``.

ecco's own recipe, for ecco's values: the FFN activations of layers ``from_layer <= layer <
to_layer`` stacked into a (neuron x layer, position) matrix, negatives clipped to 0, and
scikit-learn's NMF (random init, ``random_state=0``, 500 iterations) over the positions; ``model``
is that scikit-learn object. ecco gave at most one factor per position without a word; here
``n_components`` says how many were fitted and ``n_components_requested`` what was asked. The engine's own
factorisation (``ecco_core.neurons.run_nmf``: deterministic HALS, PCA, position choices) is the
modern spelling.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ComponentsError, EccoError, InputError
from ..figures.neurons import factor_sparklines
from ..notebook import FigureView
from ..results import Factorization
from .ecco_json import EccoData

if TYPE_CHECKING:
    from .output import EccoOutputSeq


def _layer_rows(nums: list[int], from_layer: int | None, to_layer: int | None) -> list[int]:
    """Rows of the activations array for ecco's ``from_layer`` .. ``to_layer`` (exclusive)."""
    if from_layer is None and to_layer is None:
        return list(range(len(nums)))
    low = 0 if from_layer is None else int(from_layer)
    high = max(nums) + 1 if to_layer is None else int(to_layer)
    if low >= high:
        raise InputError(
            f"from_layer ({from_layer}) must be below to_layer ({to_layer}): the range is "
            "from_layer <= layer < to_layer."
        )
    missing = [n for n in range(low, high) if n not in nums]
    if missing:
        raise InputError(
            f"Not all layers between from_layer ({from_layer}) and to_layer ({to_layer}) have recorded "
            f"activations (missing {missing}); layers with activations: {nums}."
        )
    return [nums.index(n) for n in range(low, high)]


class EccoNMF:
    """ecco's NMF object: ``components`` (factor, position), ``model`` (scikit-learn), views."""

    def __init__(
        self,
        output: EccoOutputSeq,
        n_components: int = 10,
        from_layer: int | None = None,
        to_layer: int | None = None,
        **kwargs: Any,
    ) -> None:
        if kwargs:
            raise InputError(
                f"run_nmf() got unexpected arguments {sorted(kwargs)}: it takes n_components, "
                "from_layer and to_layer."
            )
        if (
            isinstance(n_components, bool)
            or not isinstance(n_components, (int, np.integer))
            or n_components < 1
        ):
            raise ComponentsError(f"n_components must be a whole number of at least 1, not {n_components!r}.")
        acts = output.activations
        if not acts:
            raise EccoError(
                "No activation data found: load the model with "
                "ecco_core.from_pretrained(name, activations=True)."
            )
        self.output = output
        if len({a.shape[:3] for a in acts.values()}) > 1:
            raise EccoError(
                "The encoder and the decoder have different layers or neurons, so ecco's joint NMF "
                "over both does not exist; factorise one side: "
                "ecco_core.neurons.run_nmf(output.run, side='encoder')."
            )
        joined = np.concatenate(list(acts.values()), axis=-1)  # (1, layer, neuron, position)
        nums = output.collect_activations_layer_nums or output.run.activation_layers
        rows = _layer_rows(list(nums), from_layer, to_layer)
        self.layers = [list(nums)[r] for r in rows]
        merged = joined[0, rows].reshape(-1, joined.shape[-1])  # (layer x neuron, position)
        self.n_components_requested = int(n_components)
        n_components = self.n_components = min(int(n_components), merged.shape[1])
        self.activations = np.maximum(merged, 0).T  # (position, layer x neuron)
        from sklearn.decomposition import NMF as SklearnNMF  # only ecco's NMF needs it (0.5 s to import)

        self.model = SklearnNMF(n_components=n_components, init="random", random_state=0, max_iter=500)
        self.components = self.model.fit_transform(self.activations).T  # (factor, position)
        self.n_neurons = joined.shape[2]

    def _token_factors(self) -> np.ndarray:
        """(factor, token) ecco's explorer values: a generated run's factor at the last prompt
        token is repeated, so each generated token shows the activation that produced it."""
        n_input = self.output.n_input_tokens
        if self.output.generated and self.components.shape[1] < len(self.output.run.tokens):
            return np.concatenate([self.components[:, :n_input], self.components[:, n_input - 1 :]], axis=1)
        return self.components

    def factorization(self) -> Factorization:
        """The factors as the engine's result, for its explorer and figures."""
        factors = self._token_factors()  # (factor, token)
        loadings = self.model.components_  # (factor, layer x neuron)
        norms = np.linalg.norm(loadings, axis=1, keepdims=True)
        run = self.output.run
        return Factorization(
            components=factors.astype(np.float32),
            loadings=(loadings / np.where(norms > 0, norms, 1)).reshape(len(factors), len(self.layers), -1),
            positions=np.arange(factors.shape[1]),
            tokens=list(run.tokens[: factors.shape[1]]),
            n_input_tokens=self.output.n_input_tokens,
            layers=self.layers,
            method="nmf",
            fit_error=float(self.model.reconstruction_err_ / max(np.linalg.norm(self.activations), 1e-30)),
            special=None if run.special is None else np.asarray(run.special)[: factors.shape[1]],
        )

    def explore(self, input_sequence: int = 0, **kwargs: Any):
        """ecco's factor explorer: the text tinted by each token's strongest factor, one sparkline
        chip per factor to repaint it. ``printJson=True`` returns ecco's dict (``tokens``,
        ``factors`` (1, factor, token))."""
        if input_sequence != 0:
            raise InputError(f"input_sequence={input_sequence}: an OutputSeq holds one text (sequence 0).")
        if set(kwargs) - {"printJson"}:
            raise InputError(f"explore() got unexpected arguments {sorted(set(kwargs) - {'printJson'})}.")
        result = self.factorization()
        if not kwargs.get("printJson"):
            return result
        raw, ids = self.output.tokens[0], self.output.run.token_ids
        tokens = [
            {
                "token": t,
                "token_id": int(i),
                "type": "input" if p < self.output.n_input_tokens else "output",
                "position": p,
            }
            for p, (t, i) in enumerate(zip(raw, ids))
        ]
        return EccoData({"tokens": tokens, "factors": [self._token_factors().tolist()]}, result)

    def plot(self, n_components: int = 3) -> FigureView:
        """ecco's line plot of the first ``n_components`` factors over the positions (Plotly)."""
        result = self.factorization()
        k = max(1, min(int(n_components), result.n_factors))
        shown = Factorization(
            components=result.components[:k],
            loadings=result.loadings[:k],
            positions=result.positions,
            tokens=result.tokens,
            n_input_tokens=result.n_input_tokens,
            layers=result.layers,
        )
        return FigureView(factor_sparklines(shown))
