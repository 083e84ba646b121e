"""Quadrature rules for integrated gradients: points and weights on the path [0, 1]."""

from __future__ import annotations

import numpy as np

from .context import AttributionContext

SCAN_INTERVALS = 8
"""Equal path intervals the adaptive rule scans with forward passes only (no gradients)."""


SCAN_FLOOR = 0.02
"""Share of the nodes every scanned interval is owed on top of its share of the change."""


def quadrature(n_steps: int, rule: str = "auto", baseline: str = "zero") -> tuple[np.ndarray, np.ndarray]:
    """(n_steps,) points in [0, 1] and (n_steps,) weights that integrate over [0, 1].

    'gauss' is Gauss-Legendre (exact for polynomials of degree 2n - 1); 'left' is the left
    Riemann sum (ecco / captum's 'riemann_left').
    """
    if rule == "auto":
        rule = "graded" if baseline == "zero" else "gauss"
    if rule == "adaptive":  # needs a scan of the target: see ``adaptive_quadrature``
        rule = "gauss"
    if rule == "gauss":
        nodes, weights = np.polynomial.legendre.leggauss(n_steps)
        return (nodes + 1) / 2, weights / 2
    if rule == "graded":
        return _graded_gauss(n_steps)
    return np.arange(n_steps) / n_steps, np.full(n_steps, 1 / n_steps)


def _graded_gauss(n_steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Composite Gauss-Legendre on panels graded towards 0: [0, 1e-5], then one per decade to 1.

    Near a zero baseline the norm layers make f(a x) change on every scale down to
    a ~ sqrt(eps) / |x|; one panel per decade resolves that with few nodes, and the last panel
    [0.1, 1] (most of the path) gets half of them.
    """
    edges = np.array([0.0, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0])
    n_small = len(edges) - 2
    per_small = max(1, n_steps // (2 * n_small))
    counts = [per_small] * n_small + [max(1, n_steps - per_small * n_small)]
    nodes, weights = [], []
    for (lo, hi), count in zip(zip(edges[:-1], edges[1:]), counts):
        x, w = np.polynomial.legendre.leggauss(count)
        nodes.append(lo + (x + 1) / 2 * (hi - lo))
        weights.append(w / 2 * (hi - lo))
    return np.concatenate(nodes), np.concatenate(weights)


def adaptive_quadrature(scan: np.ndarray, n_steps: int) -> tuple[np.ndarray, np.ndarray]:
    """(nodes,) points and weights: Gauss-Legendre panels on the scanned intervals, with nodes in
    proportion to how much the target function changes on each (intervals owed none get none).

    Args:
        scan: (SCAN_INTERVALS + 1, n_targets) the target function at equally spaced alphas 0 .. 1.
        n_steps: gradient evaluations to place.

    A probability target often sits near 0 for most of the path and rises over a short stretch;
    equal or graded nodes waste most evaluations where nothing happens.
    """
    n_intervals = scan.shape[0] - 1
    change = np.abs(np.diff(scan.astype(np.float64), axis=0))  # (interval, n_targets)
    share = (change / np.maximum(change.sum(0, keepdims=True), 1e-30)).mean(1) + SCAN_FLOOR
    quota = share / share.sum() * n_steps
    counts = np.floor(quota).astype(int)
    counts[np.argsort(counts - quota)[: n_steps - counts.sum()]] += 1  # largest remainders
    edges = np.linspace(0.0, 1.0, n_intervals + 1)
    nodes, weights = [], []
    for lo, hi, count in zip(edges[:-1], edges[1:], counts):
        if count:
            x, w = np.polynomial.legendre.leggauss(int(count))
            nodes.append(lo + (x + 1) / 2 * (hi - lo))
            weights.append(w / 2 * (hi - lo))
    return np.concatenate(nodes), np.concatenate(weights)


def _rule(ctx: AttributionContext) -> str:
    """'auto': graded Gauss from a zero baseline, else Gauss (adaptive is asked for by name: on
    tiny random models the change hides below alpha 0.1, which its equal scan cannot see)."""
    if ctx.quadrature != "auto":
        return ctx.quadrature
    return "graded" if ctx.baseline == "zero" else "gauss"
