"""ecco's ``ecco.analysis``: CKA, CCA, SVCCA and PWCCA on arrays laid out (neurons, positions).

The same formulas as ecco (which wraps Google's ``svcca`` library), written again in float64 and
without Python loops: covariances scaled by their largest entry, directions with a variance below
``epsilon`` dropped, ``epsilon`` added to the diagonal, inverse square roots by eigendecomposition,
the canonical correlations as singular values, and ecco's "mean" as the mean of the leading
coefficients that hold 98% of their sum. ``ecco_core.analysis.similarity`` holds this project's own
measures on (positions, features) arrays, regularised for few positions; these keep ecco's values.
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError, NumericalError

THRESHOLD = 0.98
"""Share of the coefficients' sum that ecco's CCA "mean" covers (``cca_core.get_cca_similarity``)."""


def _pair(
    acts1: np.ndarray, acts2: np.ndarray, name: str, fewer_neurons: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Both as float64 (neurons, positions) arrays over the same positions."""
    a, b = np.asarray(acts1, dtype=np.float64), np.asarray(acts2, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2:
        raise InputError(
            f"{name}(acts1, acts2) needs 2-D (neurons, positions) arrays; got {a.shape} and {b.shape}."
        )
    if a.shape[1] != b.shape[1]:
        raise InputError(
            f"{name}: acts1 has {a.shape[1]} positions and acts2 {b.shape[1]}; both are (neurons, positions) "
            "over the same positions."
        )
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise NumericalError(f"{name}: an activation matrix contains NaN or inf.")
    if fewer_neurons and (a.shape[0] >= a.shape[1] or b.shape[0] >= b.shape[1]):
        raise InputError(
            f"{name} needs fewer neurons than positions (ecco's layout is (neurons, positions)); got acts1 "
            f"{a.shape} and acts2 {b.shape}. Slice neurons (acts[:50]) as ecco's notebook does, use "
            "svcca(acts1, acts2, dims=...), or cka, which has no such limit."
        )
    return a, b


def _inverse_sqrt(sigma: np.ndarray) -> np.ndarray:
    """(n, n) square root of the pseudo-inverse of a symmetric positive matrix (ecco's route)."""
    w, v = np.linalg.eigh(np.linalg.pinv(sigma))  # (n,), (n, n)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def cca_directions(acts1: np.ndarray, acts2: np.ndarray, epsilon: float = 0.0) -> dict:
    """ecco's ``cca_core.get_cca_similarity`` on (neurons, positions) arrays.

    Returns:
        dict with ``coefs`` (k,) canonical correlations, largest first; ``mean`` ecco's summary;
        ``u`` (kx, kx) and ``v`` (ky, ky) the singular vectors; ``x_keep`` (nx,) and ``y_keep``
        (ny,) bool neurons kept (variance at least ``epsilon``); ``means1`` (nx, 1), ``means2``.
    """
    nx = acts1.shape[0]
    cov = np.cov(acts1, acts2)  # (nx + ny, nx + ny)
    sxx, sxy, syy = cov[:nx, :nx], cov[:nx, nx:], cov[nx:, nx:]
    xmax, ymax = np.max(np.abs(sxx)), np.max(np.abs(syy))
    if xmax == 0 or ymax == 0:
        raise NumericalError("An activation matrix does not vary across these positions.")
    sxx, syy, sxy = sxx / xmax, syy / ymax, sxy / np.sqrt(xmax * ymax)
    x_keep, y_keep = np.abs(np.diag(sxx)) >= epsilon, np.abs(np.diag(syy)) >= epsilon
    if not x_keep.any() or not y_keep.any():
        raise NumericalError(f"No neuron varies by epsilon={epsilon} or more.")
    sxx, syy, sxy = sxx[x_keep][:, x_keep], syy[y_keep][:, y_keep], sxy[x_keep][:, y_keep]
    sxx = sxx + epsilon * np.eye(len(sxx))
    syy = syy + epsilon * np.eye(len(syy))
    u, s, v = np.linalg.svd(_inverse_sqrt(sxx) @ sxy @ _inverse_sqrt(syy))
    s = np.abs(s)
    return {
        "coefs": s,
        "mean": threshold_mean(s),
        "u": u,
        "v": v,
        "x_keep": x_keep,
        "y_keep": y_keep,
        "means1": acts1.mean(axis=1, keepdims=True),
        "means2": acts2.mean(axis=1, keepdims=True),
    }


def threshold_mean(coefs: np.ndarray, threshold: float = THRESHOLD) -> float:
    """Mean of ``coefs[:i]`` for the first i whose partial sum reaches ``threshold`` of the total
    (ecco's ``sum_threshold``; all of them when none does)."""
    shares = np.concatenate([[0.0], np.cumsum(coefs)])[: len(coefs)] / np.sum(coefs)  # share before i
    reached = np.flatnonzero(shares >= threshold)
    return float(np.mean(coefs[: reached[0]] if len(reached) else coefs))


def cca(acts1: np.ndarray, acts2: np.ndarray) -> float:
    """Mean canonical correlation (ecco's ``analysis.cca``, epsilon 1e-10).

    Args:
        acts1: (neurons1, positions) activations, fewer neurons than positions.
        acts2: (neurons2, positions) activations over the same positions.
    """
    a, b = _pair(acts1, acts2, "cca", fewer_neurons=True)
    return cca_directions(a, b, epsilon=1e-10)["mean"]


def svcca(acts1: np.ndarray, acts2: np.ndarray, dims: int = 20) -> float:
    """SVCCA (ecco's ``analysis.svcca``): each side's top ``dims`` singular directions over the
    positions, then the plain mean of all canonical correlations.

    Args:
        acts1: (neurons1, positions); acts2: (neurons2, positions).
        dims: singular directions kept per side (fewer than positions).
    """
    if isinstance(dims, bool) or not isinstance(dims, (int, np.integer)) or dims < 1:
        raise InputError(f"svcca: dims must be a whole number of at least 1, not {dims!r}.")
    a, b = _pair(acts1, acts2, "svcca", fewer_neurons=False)
    if dims >= a.shape[1] or dims > min(a.shape[0], b.shape[0]):
        raise InputError(
            f"svcca: dims={dims} must be below the {a.shape[1]} positions and at most the neurons "
            f"({a.shape[0]} and {b.shape[0]})."
        )

    def reduced(x: np.ndarray) -> np.ndarray:  # (dims, positions): s_i v_i of the centred data
        _, s, vt = np.linalg.svd(x - x.mean(axis=1, keepdims=True), full_matrices=False)
        return s[:dims, None] * vt[:dims]

    return float(np.mean(cca_directions(reduced(a), reduced(b), epsilon=1e-10)["coefs"]))


def pwcca(acts1: np.ndarray, acts2: np.ndarray, epsilon: float = 1e-10) -> float:
    """Projection-weighted CCA (ecco's ``analysis.pwcca``): canonical correlations weighted by how
    much of the side with fewer kept neurons each canonical variate accounts for.

    ecco's library, when acts2 keeps fewer neurons than acts1, builds acts2's variates from acts1's
    rows; here each side's variates come from its own activations (the published method). On arrays
    where acts1 keeps no more neurons than acts2 (the usual case) the two agree.

    Args:
        acts1: (neurons1, positions), fewer neurons than positions; acts2: (neurons2, positions).
    """
    a, b = _pair(acts1, acts2, "pwcca", fewer_neurons=True)
    fit = cca_directions(a, b, epsilon=epsilon)
    if fit["x_keep"].sum() <= fit["y_keep"].sum():
        acts, keep, coef, means = a, fit["x_keep"], fit["u"].T, fit["means1"]
    else:
        acts, keep, coef, means = b, fit["y_keep"], fit["v"], fit["means2"]
    kept = acts[keep]  # (k, positions)
    variates = coef @ (kept - means[keep]) + means[keep]  # (k, positions)
    basis, _ = np.linalg.qr(variates.T)  # (positions, k)
    weights = np.abs(basis.T @ kept.T).sum(axis=1)  # (k,)
    weights = weights / weights.sum()
    return float(np.sum(weights * fit["coefs"]))


def cka(acts1: np.ndarray, acts2: np.ndarray) -> float:
    """Linear CKA (ecco's ``analysis.cka``): feature-space linear CKA of the positions.

    Args:
        acts1: (neurons1, positions); acts2: (neurons2, positions). Any number of neurons.
    """
    a, b = _pair(acts1, acts2, "cka", fewer_neurons=False)
    x = (a - a.mean(axis=1, keepdims=True)).T  # (positions, neurons1)
    y = (b - b.mean(axis=1, keepdims=True)).T  # (positions, neurons2)
    xy = np.linalg.norm(x.T @ y) ** 2
    norm = np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y)
    return float(xy / norm) if norm > 0 else 0.0
