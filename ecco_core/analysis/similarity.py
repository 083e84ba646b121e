"""How alike two layers' representations are: linear CKA, mean CCA, SVCCA, PWCCA (ecco.analysis).

Each measure compares two representations of the same positions, ``x`` (pos, features_x) and ``y``
(pos, features_y). They are computed in float64 on centred data. CCA-family measures whiten each
representation with an SVD, dropping directions whose singular value is below ``tol`` times the
largest (the regularisation: no inverse of a near-singular covariance is ever formed).

Few positions, many features: a run has tens of positions while a layer has 576 hidden or 1536
FFN features. Centred data of n positions spans at most n - 1 directions, and two subspaces whose
dimensions add up to more than n - 1 share directions by pure geometry (canonical correlation
1 for free). So CCA, SVCCA and PWCCA first reduce each side by SVD to at most ``(n - 1) // 2``
directions (``max_dims``); CKA needs no reduction (it works on the n x n Gram matrices). With few
positions every CCA-family score is still biased upwards; compare layers with each other, not
with a fixed threshold.
"""

from __future__ import annotations

from collections.abc import Generator

import numpy as np

from ..errors import InputError, NumericalError
from ..results.progress import Progress, drain
from ..results.similarity import LayerSimilarity
from ..run import OutputSeq
from . import checks
from .checks import require_activations

METHODS = ("cka", "cca", "svcca", "pwcca")
SOURCES = ("hidden", "ffn")
TOLERANCE = 1e-6


def _as_pair(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both as centred float64 (pos, features) arrays over the same positions."""
    try:
        x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise InputError(f"Representations must be numeric arrays (pos, features): {error}.") from error
    if x.ndim != 2 or y.ndim != 2:
        raise InputError(f"Representations must be 2-D (pos, features); got {x.shape} and {y.shape}.")
    if x.shape[0] != y.shape[0]:
        raise InputError(f"Both representations need the same positions; got {x.shape[0]} and {y.shape[0]}.")
    if x.shape[0] < 3:
        raise InputError(f"Similarity needs at least 3 positions; got {x.shape[0]}.")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise NumericalError("A representation contains NaN or inf.")
    return x - x.mean(axis=0), y - y.mean(axis=0)


def _gram(x: np.ndarray) -> np.ndarray:
    """(pos, pos) Gram matrix of centred x, scaled to unit Frobenius norm (zeros if x is constant)."""
    gram = x @ x.T  # (pos, pos)
    norm = np.linalg.norm(gram)
    return gram / norm if norm > 0 else gram


def linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Linear CKA (Kornblith et al. 2019): <K, L>_F / (||K||_F ||L||_F) with K = x x^T, L = y y^T.

    In [0, 1]; invariant to orthogonal transforms and isotropic scaling of either side. 0 when a
    side does not vary.
    """
    x, y = _as_pair(x, y)
    return float(np.sum(_gram(x) * _gram(y)))


def whiten(
    x: np.ndarray, max_dims: int | None = None, tol: float = TOLERANCE
) -> tuple[np.ndarray, np.ndarray]:
    """Orthonormal basis of centred ``x``'s top directions, and the features' coordinates in it.

    Args:
        x: (pos, features) centred data.
        max_dims: keep at most this many directions (default ``(pos - 1) // 2``, see module doc).
        tol: drop directions whose singular value is below ``tol`` x the largest.

    Returns:
        basis (pos, k) with orthonormal columns, and ``x`` reduced to those directions (pos, k).
    """
    checks.values.optional_whole("max_dims", max_dims, 1), checks.values.real("tol", tol, 0.0)
    u, s, _ = np.linalg.svd(x, full_matrices=False)  # u (pos, r), s (r,)
    limit = (x.shape[0] - 1) // 2 if max_dims is None else int(max_dims)
    keep = int(min(limit, np.sum(s > tol * (s[0] if len(s) else 0.0))))
    if keep < 1:
        raise NumericalError("A representation does not vary across these positions; it has no directions.")
    return u[:, :keep], u[:, :keep] * s[:keep]


def canonical_correlations(
    x: np.ndarray, y: np.ndarray, max_dims: int | None = None, tol: float = TOLERANCE
) -> np.ndarray:
    """(min(kx, ky),) canonical correlations of x and y, largest first.

    The singular values of Qx^T Qy, with Qx, Qy orthonormal bases of the (reduced) centred data:
    the cosines of the principal angles between the two column spaces (Bjorck and Golub).
    """
    x, y = _as_pair(x, y)
    qx, _ = whiten(x, max_dims, tol)
    qy, _ = whiten(y, max_dims, tol)
    return np.clip(np.linalg.svd(qx.T @ qy, compute_uv=False), 0.0, 1.0)


def mean_cca(x: np.ndarray, y: np.ndarray, max_dims: int | None = None, tol: float = TOLERANCE) -> float:
    """Mean canonical correlation (ecco's ``cca``): 1 when one side is a linear map of the other."""
    return float(np.mean(canonical_correlations(x, y, max_dims, tol)))


def svcca(x: np.ndarray, y: np.ndarray, dims: int = 20, tol: float = TOLERANCE) -> float:
    """SVCCA (Raghu et al. 2017): keep each side's top ``dims`` singular directions, then mean CCA.

    ``dims`` is capped at ``(pos - 1) // 2`` for the reason in the module docstring.
    """
    checks.values.whole("dims", dims, 1)
    cap = (_as_pair(x, y)[0].shape[0] - 1) // 2
    return mean_cca(x, y, max_dims=min(int(dims), cap), tol=tol)


def pwcca(x: np.ndarray, y: np.ndarray, max_dims: int | None = None, tol: float = TOLERANCE) -> float:
    """PWCCA (Morcos et al. 2018): canonical correlations weighted by how much of ``x`` each explains.

    The weight of canonical variate h_i (unit length) is sum_j |<h_i, x_j>| over x's centred
    features x_j, normalised to sum 1. Weighted by ``x``, so pwcca(x, y) != pwcca(y, x) in general.
    """
    x, y = _as_pair(x, y)
    qx, _ = whiten(x, max_dims, tol)
    qy, _ = whiten(y, max_dims, tol)
    u, rho, _ = np.linalg.svd(qx.T @ qy, full_matrices=False)  # u (kx, k), rho (k,)
    variates = qx @ u  # (pos, k) canonical variates of x, orthonormal
    weights = np.abs(variates.T @ x).sum(axis=1)  # (k,)
    return float(np.sum(weights * np.clip(rho, 0.0, 1.0)) / np.sum(weights))


def similarity(x: np.ndarray, y: np.ndarray, method: str = "cka", dims: int = 20) -> float:
    """One score between two (pos, features) representations by ``method`` (see ``METHODS``)."""
    checks.values.choice("method", method, METHODS)
    if method == "cka":
        return linear_cka(x, y)
    if method == "cca":
        return mean_cca(x, y)
    if method == "svcca":
        return svcca(x, y, dims)
    if method == "pwcca":
        return pwcca(x, y)
    raise InputError(f"method must be one of {METHODS}, not {method!r}.")


# ----- layer x layer ----------------------------------------------------------------------------


def representations(
    seq: OutputSeq, source: str = "hidden", side: str = "decoder"
) -> tuple[np.ndarray, list[int]]:
    """(layer, pos, features) stacked representations of ``source`` and their layer numbers.

    On an encoder-decoder ``side`` picks the 'decoder' (default) or 'encoder' stack; pos is that
    stack's tokens.
    """

    if source == "hidden":
        hidden = seq.stack(side).hidden_states
        if hidden is None:
            raise InputError("This run has no hidden states.")
        return hidden, list(range(hidden.shape[0]))
    if source == "ffn":
        ffn = require_activations(seq, side).transpose(0, 2, 1)  # (layer, pos, neuron)
        return ffn, list(seq.stack(side).activation_layers)
    raise InputError(f"source must be one of {SOURCES}, not {source!r}.")


def layer_similarity(
    seq: OutputSeq,
    method: str = "cka",
    source: str = "hidden",
    dims: int = 20,
    skip_first: bool = True,
    normalize: bool = False,
    side: str = "decoder",
) -> LayerSimilarity:
    """Layer x layer similarity of the run's hidden states or FFN activations.

    Args:
        method: 'cka', 'cca', 'svcca' (with ``dims``) or 'pwcca'.
        source: 'hidden' (residual stream, embeddings first) or 'ffn' (neuron activations).
        dims: SVCCA's directions per layer.
        skip_first: leave out position 0. Its residual stream is often 100x larger than the rest
            (the attention-sink token) and would otherwise dominate every comparison.
        normalize: scale every token's vector to unit length first. Each block reads the residual
            stream through RMSNorm / LayerNorm, so this is what the next layer sees (up to the norm's
            centring and learned gain); without it a few tokens with 10x the usual norm
            ("massive activations") decide the score.
        side: encoder-decoders: compare the 'decoder' (default) or the 'encoder' stack's layers.
    """
    return drain(similarity_steps(seq, method, source, dims, skip_first, normalize, side))


def similarity_steps(
    seq: OutputSeq,
    method: str = "cka",
    source: str = "hidden",
    dims: int = 20,
    skip_first: bool = True,
    normalize: bool = False,
    side: str = "decoder",
) -> Generator[Progress, None, LayerSimilarity]:
    """``layer_similarity`` (same arguments) as steps: yields a ``Progress`` after each layer's
    row of the matrix (each layer's basis first, for the CCA family); returns the LayerSimilarity."""
    checks.views.similarity(method, source, dims, skip_first, normalize, side)
    reps, layers = representations(seq, source, side)
    reps = (reps[:, 1:] if skip_first else reps).astype(np.float64)  # (layer, pos, features)
    if reps.shape[1] < 3:
        where = f" on the {side} side" if seq.model_type == "enc-dec" else ""
        raise InputError(
            f"Layer similarity needs at least 3 positions; this run has {reps.shape[1]}{where}"
            f"{' (first token left out)' if skip_first else ''}."
        )
    if normalize:
        norms = np.linalg.norm(reps, axis=2, keepdims=True)  # (layer, pos, 1)
        reps = reps / np.where(norms > 0, norms, 1.0)
    steps = _cka_matrix(reps) if method == "cka" else _cca_matrix(reps, method, dims)
    matrix = yield from steps
    note = _note(method, reps.shape, dims) + (
        " Every token was scaled to unit length first." if normalize else ""
    )
    side_name = side if seq.model_type == "enc-dec" else ""
    return LayerSimilarity(matrix, layers, method, source, reps.shape[1], note, side_name)


def _cka_matrix(reps: np.ndarray) -> Generator[Progress, None, np.ndarray]:
    centred = reps - reps.mean(axis=1, keepdims=True)  # (layer, pos, features)
    grams = []
    for i, layer in enumerate(centred):
        grams.append(_gram(layer).reshape(-1))  # (pos * pos,)
        yield Progress(i + 1, len(reps), f"{i + 1} of {len(reps)} layers' token similarities")
    grams = np.stack(grams)  # (layer, pos * pos)
    return grams @ grams.T  # (layer, layer)


def _cca_matrix(reps: np.ndarray, method: str, dims: int) -> Generator[Progress, None, np.ndarray]:
    n_pos = reps.shape[1]
    cap = (n_pos - 1) // 2
    max_dims = min(int(dims), cap) if method == "svcca" else cap
    centred = [layer - layer.mean(axis=0) for layer in reps]  # layer x (pos, features)
    n = len(reps)
    pairs = [(i, j) for i in range(n) for j in range(n if method == "pwcca" else i + 1)]  # CCA: symmetric
    total = n + len(pairs)
    bases = []
    for i, layer in enumerate(centred):
        bases.append(_basis_or_none(layer, max_dims))
        yield Progress(i + 1, total, f"layer {i + 1} of {n} reduced to its top directions")
    matrix = np.full((n, n), np.nan)
    for done, (i, j) in enumerate(pairs, 1):  # a pair a step (0.01 s each for PWCCA of 340 tokens)
        if bases[i] is not None and bases[j] is not None:
            u, rho, _ = np.linalg.svd(bases[i].T @ bases[j], full_matrices=False)
            rho = np.clip(rho, 0.0, 1.0)
            if method == "pwcca":
                weights = np.abs((bases[i] @ u).T @ centred[i]).sum(axis=1)  # (k,)
                matrix[i, j] = np.sum(weights * rho) / np.sum(weights)
            else:
                matrix[i, j] = matrix[j, i] = rho.mean()
        if done < len(pairs):
            yield Progress(n + done, total, f"{done} of {len(pairs)} pairs of layers compared")
    return (matrix + matrix.T) / 2 if method == "pwcca" else matrix


def _basis_or_none(x: np.ndarray, max_dims: int) -> np.ndarray | None:
    try:
        return whiten(x, max_dims)[0]
    except NumericalError:
        return None


def _note(method: str, shape: tuple[int, ...], dims: int) -> str:
    n_pos, n_features = shape[1], shape[2]
    cap = (n_pos - 1) // 2
    if method == "cka":
        return f"Linear CKA over {n_pos} positions and {n_features} features per layer."
    kept = min(dims, cap) if method == "svcca" else cap
    note = (
        f"{n_pos} positions, {n_features} features per layer: each layer was reduced by SVD to its top "
        f"{kept} directions before CCA (more would make correlations 1 by geometry alone)."
    )
    if method == "pwcca":
        note += " PWCCA is weighted by one side; the matrix shows the mean of both directions."
    return note
