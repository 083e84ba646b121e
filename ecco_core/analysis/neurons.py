"""FFN neuron activations: NMF / PCA factors (ecco's ``run_nmf``), top neurons, one neuron's trace.

Everything here is a pure function of ``seq.activations`` (layer, neuron, pos); nothing re-runs the
model. Results are dataclasses of numpy arrays that pickle and hold no reference to the run.

On an encoder-decoder, ``side='decoder'`` (the default) reads the decoder's activations and
``side='encoder'`` the encoder's (``seq.stack``). Positions then index that stack's own tokens
(``Stack.tokens``): 0 is the first encoder token, or the decoder's start token.
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import ComponentsError, InputError, NumericalError
from ..results.neurons import Factorization, NeuronTrace, TopNeurons, top_indices
from ..run import OutputSeq
from .checks import (
    activation_layer_indices,
    require_activations,
    stack_position,
    stack_positions,
)

METHODS = ("nmf", "pca")


# ----- selecting the matrix ---------------------------------------------------------------------


# ----- factorisation ----------------------------------------------------------------------------


def activation_matrix(
    seq: OutputSeq, layer_idx: list[int], positions: np.ndarray, side: str = "decoder"
) -> tuple[np.ndarray, float, float]:
    """(layer * neuron, position) clipped activations, plus the negative share and mass clipped."""
    acts = require_activations(seq, side)[layer_idx][:, :, positions]  # (layer, neuron, position)
    matrix = acts.reshape(-1, len(positions)).astype(np.float64)  # (layer * neuron, position)
    negative = matrix < 0
    total = np.abs(matrix).sum()
    mass = float(-matrix[negative].sum() / total) if total > 0 else 0.0
    return np.clip(matrix, 0, None), float(negative.mean()), mass


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
    if method not in METHODS:
        raise InputError(f"method must be one of {METHODS}, not {method!r}.")
    view = seq.stack(side)
    layer_idx = activation_layer_indices(seq, from_layer, to_layer, side)
    chosen = stack_positions(seq, positions, skip_first, side)
    matrix, neg_share, neg_mass = activation_matrix(seq, layer_idx, chosen, side)
    check_components(int(n_components), matrix.shape[1], matrix.shape[0])
    fit = _fit_pca if method == "pca" else _fit_nmf
    components, loadings, error, explained = fit(matrix.T, int(n_components))  # (factor, position)
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


def _fit_nmf(data: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, float, None]:
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
    scores, parts = _hals(scaled, k)  # (position, k), (k, feature)
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


def _hals(data: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Fit data (position, feature) ~ scores (position, k) @ parts (k, feature), both >= 0.

    The wide side (parts, ~46k features) runs in torch (its thin matmuls and fused row updates
    beat numpy's); the fit error, which needs float64, is checked every few sweeps.
    """
    scores, parts = _nndsvda(data, k)
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
            continue
        fit = float(torch.dot(scores_data.ravel().double(), parts_t.ravel().double()))
        model = float((scores_gram.double() * (parts_t @ parts_t.T).double()).sum())
        error = np.sqrt(max(total - 2 * fit + model, 0.0) / total)
        if previous - error < NMF_TOL * NMF_CHECK_EVERY * previous:
            break
        previous = error
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
    if int(k) < 1:
        raise InputError(f"k must be at least 1, not {k}.")
    view = seq.stack(side)
    position = stack_position(seq, position, side)
    layer_idx = activation_layer_indices(seq, from_layer, to_layer, side)
    acts = require_activations(seq, side)[layer_idx]  # (layer, neuron, pos)
    at_pos = acts[:, :, position].ravel()  # (layer * neuron,)
    above = at_pos - acts.mean(axis=2).ravel()  # (layer * neuron,)
    order = top_indices(above if relative else at_pos, int(k))
    layer_pos, neuron = np.unravel_index(order, acts.shape[:2])
    return TopNeurons(
        position=position,
        token=view.tokens[position],
        layers=np.asarray([view.activation_layers[i] for i in layer_idx])[layer_pos],
        neurons=neuron.astype(np.int64),
        values=at_pos[order].astype(np.float32),
        above_mean=above[order].astype(np.float32),
        relative=bool(relative),
        side=view.name,
    )


def neuron_activations(seq: OutputSeq, layer: int, neuron: int, side: str = "decoder") -> NeuronTrace:
    """The activation of neuron ``neuron`` of model layer ``layer`` across ``side``'s positions."""
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
