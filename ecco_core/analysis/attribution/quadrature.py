"""Quadrature rules for integrated gradients: points and weights on the path [0, 1]."""

from __future__ import annotations

import numpy as np

from .context import AttributionContext


def quadrature(n_steps: int, rule: str = "auto", baseline: str = "zero") -> tuple[np.ndarray, np.ndarray]:
    """(n_steps,) points in [0, 1] and (n_steps,) weights that integrate over [0, 1].

    'gauss' is Gauss-Legendre (exact for polynomials of degree 2n - 1); 'left' is the left
    Riemann sum (ecco / captum's 'riemann_left').
    """
    if rule == "auto":
        rule = "graded" if baseline == "zero" else "gauss"
    if rule == "adaptive":  # points of its own per target: see ``adaptive``
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


def _rule(ctx: AttributionContext) -> str:
    """'auto': graded Gauss from a zero baseline, else Gauss (adaptive is asked for by name)."""
    if ctx.quadrature != "auto":
        return ctx.quadrature
    return "graded" if ctx.baseline == "zero" else "gauss"
