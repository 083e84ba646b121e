"""FFN neuron activations: NMF / PCA factors (ecco's ``run_nmf``), top neurons, one neuron's trace.

Everything here is a pure function of ``seq.activations`` (layer, neuron, pos); nothing re-runs the
model. Results are dataclasses of numpy arrays that pickle and hold no reference to the run.

On an encoder-decoder, ``side='decoder'`` (the default) reads the decoder's activations and
``side='encoder'`` the encoder's (``seq.stack``). Positions then index that stack's own tokens
(``Stack.tokens``): 0 is the first encoder token, or the decoder's start token.
"""

from __future__ import annotations

from collections.abc import Generator

import numpy as np
import torch

from ..errors import ComponentsError, InputError, ModelTypeError, NumericalError
from ..results.neurons import Factorization, NeuronTrace, Routing, TopNeurons, top_indices
from ..results.progress import Progress, drain
from ..run import OutputSeq
from . import checks
from .checks import (
    activation_layer_indices,
    require_activations,
    stack_position,
    stack_positions,
)

METHODS = ("nmf", "pca")


# ----- the matrix, and its factorisation -----------------------------------------------------------


def activation_matrix(
    seq: OutputSeq, layer_idx: list[int], positions: np.ndarray, side: str = "decoder"
) -> tuple[np.ndarray, float, float]:
    """(layer * neuron, position) clipped activations, plus the negative share and mass clipped."""
    return drain(activation_matrix_steps(seq, layer_idx, positions, side))


def activation_matrix_steps(
    seq: OutputSeq, layer_idx: list[int], positions: np.ndarray, side: str = "decoder"
) -> Generator[Progress, None, tuple[np.ndarray, float, float]]:
    """``activation_matrix`` a layer at a time (30 layers x 1536 neurons x 340 positions in float64
    took 3.6 s in one go on a loaded machine)."""
    acts = require_activations(seq, side)  # (layer, neuron, position)
    n_neurons = acts.shape[1]
    matrix = np.empty((len(layer_idx) * n_neurons, len(positions)))  # (layer * neuron, position)
    negatives, negative_mass, total = 0, 0.0, 0.0
    for i, layer in enumerate(layer_idx):
        block = acts[layer][:, positions].astype(np.float64)  # (neuron, position)
        negative = block < 0
        negatives += int(negative.sum())
        negative_mass -= float(block[negative].sum())
        total += float(np.abs(block).sum())
        matrix[i * n_neurons : (i + 1) * n_neurons] = np.clip(block, 0, None)
        yield Progress(0, NMF_MAX_SWEEPS, f"{i + 1} of {len(layer_idx)} layers' activations gathered")
    mass = negative_mass / total if total > 0 else 0.0
    return matrix, negatives / max(matrix.size, 1), mass


def check_components(n_components: int, n_positions: int, n_features: int) -> None:
    if n_components < 1:
        raise ComponentsError(f"n_components must be at least 1, not {n_components}.")
    if n_components > n_positions:
        raise ComponentsError(
            f"n_components={n_components} is more factors than the {n_positions} positions being "
            f"factorised; pick at most {n_positions} (or a longer text)."
        )
    if n_components > n_features:
        raise ComponentsError(
            f"n_components={n_components} is more factors than the {n_features} neurons selected; "
            f"pick at most {n_features} (or more layers)."
        )


def run_nmf(
    seq: OutputSeq,
    n_components: int = 10,
    from_layer: int | None = None,
    to_layer: int | None = None,
    positions: str = "all",
    method: str = "nmf",
    skip_first: bool = False,
    side: str = "decoder",
) -> Factorization:
    """Factorise the FFN activations into ``n_components`` patterns over the text (ecco's ``run_nmf``).

    The matrix is (neurons of the chosen layers) x (chosen positions) with negatives clipped to 0
    (ecco's convention). NMF (HALS from an NNDSVDa start, float32: deterministic) finds
    non-negative parts; ``method='pca'`` gives signed principal components of the same matrix.
    Factors come sorted by their share of the fit, largest first.

    Args:
        seq: the run.
        n_components: number of factors, at most the number of positions and of neurons.
        from_layer, to_layer: model layers ``from_layer <= layer < to_layer`` (ecco's slicing).
        positions: 'all', 'input' (prompt) or 'output' (generated tokens).
        method: 'nmf' or 'pca'.
        skip_first: leave out position 0, whose activations are often 10-100x the others
            (the attention-sink token) and otherwise take a factor of their own.
        side: encoder-decoders: 'decoder' or 'encoder' activations (positions index that side).

    Raises:
        ComponentsError, InputError, PositionError, NumericalError.
    """
    return drain(nmf_steps(seq, n_components, from_layer, to_layer, positions, method, skip_first, side))


def nmf_steps(
    seq: OutputSeq,
    n_components: int = 10,
    from_layer: int | None = None,
    to_layer: int | None = None,
    positions: str = "all",
    method: str = "nmf",
    skip_first: bool = False,
    side: str = "decoder",
) -> Generator[Progress, None, Factorization]:
    """``run_nmf`` (same arguments) as steps: yields a ``Progress`` every ``NMF_CHECK_EVERY``
    sweeps (NMF) with the fit error so far, or once (PCA, one SVD); returns the Factorization."""
    n_components = checks.views.nmf(n_components, method, skip_first, side, positions)
    view = seq.stack(side)
    layer_idx = activation_layer_indices(seq, from_layer, to_layer, side)
    chosen = stack_positions(seq, positions, skip_first, side)
    check_components(int(n_components), len(chosen), len(layer_idx) * view.activations.shape[1])
    matrix, neg_share, neg_mass = yield from activation_matrix_steps(seq, layer_idx, chosen, side)
    if method == "pca":
        yield Progress(0, 1, "one singular value decomposition")
        components, loadings, error, explained = _fit_pca(matrix.T, int(n_components))
    else:
        components, loadings, error, explained = yield from _fit_nmf_steps(matrix.T, int(n_components))
    n_neurons = view.activations.shape[1]
    return Factorization(
        components=components.astype(np.float32),
        loadings=loadings.reshape(len(components), len(layer_idx), n_neurons).astype(np.float32),
        positions=chosen,
        tokens=view.tokens,
        n_input_tokens=view.n_input_tokens,
        layers=[view.activation_layers[i] for i in layer_idx],
        method=method,
        fit_error=error,
        explained_variance=explained,
        negative_share=neg_share,
        negative_mass=neg_mass,
        special=view.special,
        side=view.name,
    )


def _fit_nmf_steps(data: np.ndarray, k: int) -> Generator[Progress, None, tuple]:
    """data (position, feature) >= 0 -> components (k, position), unit loadings (k, feature).

    Deterministic HALS (hierarchical alternating least squares) in float32, started from NNDSVDa
    computed through the small (position x position) Gram matrix. The feature side has ~46k
    columns and the position side ~40 rows, so each sweep is two thin matmuls plus k row updates;
    it reaches scikit-learn's coordinate-descent fit (same loss, same init; a test holds it).
    """
    norm = float(np.linalg.norm(data))
    if norm == 0:
        raise NumericalError(
            "Every selected activation is 0 or negative, so NMF has nothing to factorise. "
            "Pick other layers or positions, or use PCA."
        )
    scaled = np.ascontiguousarray(data / norm, dtype=np.float32)  # (position, feature), unit norm
    yield Progress(0, NMF_MAX_SWEEPS, "the activations scaled")
    scores, parts = yield from _hals_steps(scaled, k)  # (position, k), (k, feature)
    error = float(np.linalg.norm(scaled - scores @ parts))
    size = np.linalg.norm(parts, axis=1).astype(np.float64)  # (k,)
    size = np.where(size > 0, size, 1.0)
    components = (scores * size * norm).T  # (k, position), activation units
    loadings = parts / size[:, None]  # (k, feature), unit length
    order = np.argsort(-np.linalg.norm(components, axis=1), kind="stable")
    return components[order], loadings[order], error, None


NMF_MAX_SWEEPS = 300
NMF_TOL = 1e-6
"""Stop when a sweep lowers the relative fit error by less than this fraction of it (on average
over the sweeps between two checks)."""
NMF_FLOOR = 2e-6
"""The absolute floor of that test: a sweep that lowers the relative fit error by less than this
stops the fit, whatever the error's size (repetitive text fits almost exactly, and a relative
test alone then runs every sweep chasing digits no view shows)."""
NMF_EXACT = 1e-3
"""A relative fit error below this stops at once: the fit holds 99.9999% of the data's energy, and
the error's estimate (a difference of float32 sums) is mostly rounding there."""
NMF_CHECK_EVERY = 4
"""Sweeps between two fit-error checks."""


def _nndsvda(data: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """NNDSVDa start (Boutsidis & Gallopoulos; zeros set to the mean) via the position Gram matrix.

    Args:
        data: (position, feature) non-negative float32.
        k: number of factors.

    Returns:
        scores (position, k) and parts (k, feature), float32.
    """
    gram = (data @ data.T).astype(np.float64)  # (position, position)
    evals, evecs = np.linalg.eigh(gram)
    order = np.argsort(-evals, kind="stable")[:k]
    sing = np.sqrt(np.clip(evals[order], 0, None))  # (k,)
    left = evecs[:, order]  # (position, k)
    right = (data.T @ left.astype(np.float32)).T / np.where(sing > 0, sing, 1)[:, None]  # (k, feature)
    scores = np.zeros((data.shape[0], k))
    parts = np.zeros((k, data.shape[1]))
    for j in range(k):
        u, v = left[:, j], right[j].astype(np.float64)
        pos_u, neg_u, pos_v, neg_v = np.maximum(u, 0), np.maximum(-u, 0), np.maximum(v, 0), np.maximum(-v, 0)
        n_pu, n_nu = np.linalg.norm(pos_u), np.linalg.norm(neg_u)
        n_pv, n_nv = np.linalg.norm(pos_v), np.linalg.norm(neg_v)
        u, v, sigma = (
            (pos_u, pos_v, n_pu * n_pv) if n_pu * n_pv >= n_nu * n_nv else (neg_u, neg_v, n_nu * n_nv)
        )
        if sigma > 0:
            scale = np.sqrt(sing[j] * sigma)
            scores[:, j] = scale * u / np.linalg.norm(u)
            parts[j] = scale * v / np.linalg.norm(v)
    mean = float(data.mean())
    scores[scores == 0] = mean
    parts[parts == 0] = mean
    return scores.astype(np.float32), parts.astype(np.float32)


def _hals(data: np.ndarray, k: int, stats: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``_hals_steps`` run to its end."""
    return drain(_hals_steps(data, k, stats))


def _hals_steps(
    data: np.ndarray, k: int, stats: dict | None = None
) -> Generator[Progress, None, tuple[np.ndarray, np.ndarray]]:
    """Fit data (position, feature) ~ scores (position, k) @ parts (k, feature), both >= 0.

    The wide side (parts, ~46k features) runs in torch (its thin matmuls and fused row updates
    beat numpy's); the fit error, which needs float64, is checked every few sweeps.
    """
    scores, parts = _nndsvda(data, k)
    yield Progress(0, NMF_MAX_SWEEPS, "the starting point (NNDSVDa)")
    said = ""  # the fit error, once checked
    x = torch.from_numpy(data)  # (position, feature)
    x_t = x.T.contiguous()  # (feature, position)
    scores_t, parts_t = torch.from_numpy(scores), torch.from_numpy(parts)  # share memory
    total = float(np.square(data, dtype=np.float64).sum())
    tiny = np.float32(1e-12)
    previous = np.inf
    for sweep in range(NMF_MAX_SWEEPS):
        data_parts = (parts_t @ x_t).T.numpy()  # (position, k)
        parts_gram = (parts_t @ parts_t.T).numpy()  # (k, k)
        for _ in range(6):  # the score side is tiny: several passes cost nothing
            for j in range(k):
                step = (data_parts[:, j] - scores @ parts_gram[:, j]) / max(parts_gram[j, j], tiny)
                scores[:, j] = np.maximum(scores[:, j] + step, tiny)
        scores_data = scores_t.T @ x  # (k, feature)
        scores_gram = scores_t.T @ scores_t  # (k, k)
        diagonal = scores_gram.diagonal().tolist()
        for _ in range(2):
            for j in range(k):
                if diagonal[j] > 0:  # parts[j] += (scores_data[j] - scores_gram[j] @ parts) / gram[j, j]
                    step = torch.addmv(scores_data[j], parts_t.T, scores_gram[j], alpha=-1)
                    parts_t[j].add_(step, alpha=1 / diagonal[j]).clamp_min_(0)
        if (sweep + 1) % NMF_CHECK_EVERY and sweep + 1 < NMF_MAX_SWEEPS:
            yield Progress(sweep + 1, NMF_MAX_SWEEPS, f"sweep {sweep + 1} (at most {NMF_MAX_SWEEPS}){said}")
            continue
        fit = float(torch.dot(scores_data.ravel().double(), parts_t.ravel().double()))
        model = float((scores_gram.double() * (parts_t @ parts_t.T).double()).sum())
        error = np.sqrt(max(total - 2 * fit + model, 0.0) / total)
        if stats is not None:
            stats["sweeps"], stats["error"] = sweep + 1, error
            stats.setdefault("errors", []).append(error)
        if error < NMF_EXACT or previous - error < max(NMF_TOL * previous, NMF_FLOOR) * NMF_CHECK_EVERY:
            break
        previous, said = error, f", fit error {100 * error:.1f}%"
        yield Progress(sweep + 1, NMF_MAX_SWEEPS, f"sweep {sweep + 1} (at most {NMF_MAX_SWEEPS}){said}")
    return scores, parts


def _fit_pca(data: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, float, np.ndarray]:
    """data (position, feature) -> signed scores (k, position), unit loadings (k, feature)."""
    centred = data - data.mean(axis=0)  # (position, feature)
    u, s, vt = np.linalg.svd(centred, full_matrices=False)  # u (position, r), vt (r, feature)
    total = float((s**2).sum())
    if total == 0:
        raise NumericalError(
            "The selected activations do not vary across positions: PCA has nothing to show."
        )
    signs = np.sign(vt[:k][np.arange(k), np.abs(vt[:k]).argmax(axis=1)])  # (k,) largest loading > 0
    signs = np.where(signs == 0, 1.0, signs)
    components = (u[:, :k] * s[:k] * signs).T  # (k, position)
    loadings = vt[:k] * signs[:, None]  # (k, feature)
    error = float(np.sqrt(max(total - (s[:k] ** 2).sum(), 0.0) / total))
    return components, loadings, error, (s[:k] ** 2) / total


# ----- single neurons ---------------------------------------------------------------------------


def top_neurons(
    seq: OutputSeq,
    position: int,
    k: int = 20,
    from_layer: int | None = None,
    to_layer: int | None = None,
    relative: bool = False,
    side: str = "decoder",
) -> TopNeurons:
    """The ``k`` neurons (over the chosen layers) with the largest activation at ``position``.

    With ``relative=True`` they are ranked by activation minus the neuron's mean over the run, which
    hides neurons that are large everywhere (common in the last layers) and shows what fires for
    this token in particular. On an encoder-decoder ``position`` indexes ``side``'s tokens.
    """
    checks.views.neurons(position, k, relative, side)
    view = seq.stack(side)
    position = stack_position(seq, position, side)
    layer_idx = activation_layer_indices(seq, from_layer, to_layer, side)
    acts = require_activations(seq, side)[layer_idx]  # (layer, neuron, pos)
    at_pos = acts[:, :, position].ravel()  # (layer * neuron,)
    above = at_pos - acts.mean(axis=2).ravel()  # (layer * neuron,)
    order = top_indices(above if relative else at_pos, int(k))
    layer_pos, neuron = np.unravel_index(order, acts.shape[:2])
    layers = np.asarray([view.activation_layers[i] for i in layer_idx])[layer_pos]
    experts, router_weights = _experts_of(seq, side, layers, neuron, position)
    return TopNeurons(
        position=position,
        token=view.tokens[position],
        layers=layers,
        neurons=neuron.astype(np.int64),
        values=at_pos[order].astype(np.float32),
        above_mean=above[order].astype(np.float32),
        relative=bool(relative),
        side=view.name,
        experts=experts,
        router_weights=router_weights,
    )


def _experts_of(seq: OutputSeq, side: str, layers: np.ndarray, neurons: np.ndarray, position: int):
    """(expert, router weight at ``position``) of each (layer, neuron) of an MoE run, else (None, None)."""
    if "routing" not in seq.extras or seq.stack(side).name == "encoder":
        return None, None
    routes = routing(seq)
    experts = routes.expert_of(neurons)  # (k,)
    rows = [routes.layers.index(int(layer)) for layer in layers]
    dense = routes.dense()[rows, np.maximum(experts, 0), position]  # (k,)
    if routes.shared_weights is not None:
        shared = routes.shared_weights[rows, position]
    else:
        shared = np.ones(len(rows), dtype=np.float32)
    return experts, np.where(experts < 0, shared, dense).astype(np.float32)


def routing(seq: OutputSeq) -> Routing:
    """Which experts each token went to in every MoE layer, with the router's weights.

    Raises:
        ModelTypeError: the model is not a mixture of experts (its FFN is dense).
    """
    data = seq.extras.get("routing")
    if not data:
        raise ModelTypeError(
            f"Expert routing exists only for mixture-of-experts models; {seq.model_name or 'this model'} "
            "has a dense feed-forward layer (every neuron sees every token)."
        )
    shared = data.get("shared_weights")
    return Routing(
        layers=[int(layer) for layer in data["layers"]],
        experts=np.asarray(data["experts"], dtype=np.int64),
        weights=np.asarray(data["weights"], dtype=np.float32),
        tokens=list(seq.tokens),
        n_input_tokens=seq.n_input_tokens,
        n_experts=int(data["n_experts"]),
        expert_size=int(data["expert_size"]),
        shared_size=int(data.get("shared_size", 0)),
        shared_weights=None if shared is None else np.asarray(shared, dtype=np.float32),
    )


def neuron_activations(seq: OutputSeq, layer: int, neuron: int, side: str = "decoder") -> NeuronTrace:
    """The activation of neuron ``neuron`` of model layer ``layer`` across ``side``'s positions."""
    checks.values.whole("layer", layer), checks.values.whole("neuron", neuron)
    acts = require_activations(seq, side)
    view = seq.stack(side)
    layers = view.activation_layers
    if int(layer) not in layers:
        where = f" on the {side} side" if view.name else ""
        raise InputError(
            f"Layer {layer} was not captured; this run has layers {layers[0]}..{layers[-1]}{where}."
        )
    if not 0 <= int(neuron) < acts.shape[1]:
        raise InputError(f"neuron must be in 0..{acts.shape[1] - 1}, not {neuron}.")
    values = acts[layers.index(int(layer)), int(neuron)]  # (pos,)
    return NeuronTrace(int(layer), int(neuron), values.astype(np.float32), view.tokens, view.n_input_tokens)
