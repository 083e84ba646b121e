"""ecco.analysis (cka, cca, svcca, pwcca) on (neurons, positions) arrays: ecco's values.

The reference is ecco's own recipe (``svcca_lib.cca_core.get_cca_similarity``, ``pwcca``,
``cka_lib.feature_space_linear_cka``) written out step by step in float64 with ecco's loops; the
library's version is vectorised. Both run in float64 on the same arrays, so they agree to
rounding (1e-9).
"""

from __future__ import annotations

import numpy as np
import pytest

import ecco_core
from ecco_core import analysis
from ecco_core.analysis import ecco_similarity, similarity
from ecco_core.errors import InputError


# ----- ecco's formulas, as its library writes them ---------------------------------------------
def _ref_sqrt(array):
    w, v = np.linalg.eigh(array)
    return v @ np.diag(np.sqrt(w)) @ v.T


def _ref_cca(acts1, acts2, epsilon):
    numx = acts1.shape[0]
    cov = np.cov(acts1, acts2)
    sxx, sxy, syx, syy = cov[:numx, :numx], cov[:numx, numx:], cov[numx:, :numx], cov[numx:, numx:]
    xmax, ymax = np.max(np.abs(sxx)), np.max(np.abs(syy))
    sxx, syy = sxx / xmax, syy / ymax
    sxy, syx = sxy / np.sqrt(xmax * ymax), syx / np.sqrt(xmax * ymax)
    x_idx, y_idx = np.abs(np.diagonal(sxx)) >= epsilon, np.abs(np.diagonal(syy)) >= epsilon
    sxx, sxy, syy = sxx[x_idx][:, x_idx], sxy[x_idx][:, y_idx], syy[y_idx][:, y_idx]
    sxx = sxx + epsilon * np.eye(sxx.shape[0])
    syy = syy + epsilon * np.eye(syy.shape[0])
    inv_xx, inv_yy = _ref_sqrt(np.linalg.pinv(sxx)), _ref_sqrt(np.linalg.pinv(syy))
    u, s, v = np.linalg.svd(inv_xx @ sxy @ inv_yy)
    s = np.abs(s)
    idx = None
    for i in range(len(s)):  # ecco's sum_threshold
        if np.sum(s[:i]) / np.sum(s) >= 0.98:
            idx = i
            break
    return {"coef": s, "mean": np.mean(s[:idx]), "u": u, "x_idx": x_idx, "y_idx": y_idx}


def _ref_pwcca(acts1, acts2, epsilon=1e-10):
    r = _ref_cca(acts1, acts2, epsilon)
    assert r["x_idx"].sum() <= r["y_idx"].sum()  # the branch ecco's and ours share
    means = acts1.mean(axis=1, keepdims=True)[r["x_idx"]]
    dirns = r["u"].T @ (acts1[r["x_idx"]] - means) + means
    p, _ = np.linalg.qr(dirns.T)
    weights = np.sum(np.abs(p.T @ acts1[r["x_idx"]].T), axis=1)
    weights = weights / np.sum(weights)
    return np.sum(weights * r["coef"])


def _ref_svcca(acts1, acts2, dims):
    def reduce(a):
        _, s, v = np.linalg.svd(a - a.mean(axis=1, keepdims=True), full_matrices=False)
        return (s[:dims] * np.eye(dims)) @ v[:dims]

    return np.mean(_ref_cca(reduce(acts1), reduce(acts2), 1e-10)["coef"])


def _ref_cka(acts1, acts2):
    x, y = acts1.T - acts1.T.mean(0, keepdims=True), acts2.T - acts2.T.mean(0, keepdims=True)
    return np.linalg.norm(x.T @ y) ** 2 / (np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y))


@pytest.fixture(scope="module")
def layers():
    """Two related (neurons, positions) layers: the second a noisy linear map of the first."""
    rng = np.random.default_rng(0)
    a = rng.normal(size=(30, 120))
    b = rng.normal(size=(40, 30)) @ a + 0.8 * rng.normal(size=(40, 120))
    return a, b


def test_values_equal_eccos_recipe(layers):
    a, b = layers
    assert analysis.cka(a, b) == pytest.approx(_ref_cka(a, b), abs=1e-9)
    assert analysis.cca(a, b) == pytest.approx(_ref_cca(a, b, 1e-10)["mean"], abs=1e-9)
    assert analysis.svcca(a, b, dims=20) == pytest.approx(_ref_svcca(a, b, 20), abs=1e-9)
    assert analysis.pwcca(a, b) == pytest.approx(_ref_pwcca(a, b), abs=1e-9)


def test_threshold_mean_by_hand():
    """ecco's CCA "mean": the first i whose coefficients before it hold 98% of the sum. Shares
    before i for [0.9, 0.5, 0.1, 0.01] are 0, 0.596, 0.927, 0.993: i = 3, mean(0.9, 0.5, 0.1)."""
    assert ecco_similarity.threshold_mean(np.array([0.9, 0.5, 0.1, 0.01])) == pytest.approx(0.5)
    assert ecco_similarity.threshold_mean(np.array([1.0, 1.0, 1.0])) == pytest.approx(1.0)  # never: all


def test_layout_is_neurons_by_positions(layers):
    """ecco's arrays are (neurons, positions): the engine's CKA on (positions, features) of the
    same data gives the same number, and transposing ecco's arrays does not."""
    a, b = layers
    assert analysis.cka(a, b) == pytest.approx(similarity.linear_cka(a.T, b.T), abs=1e-9)
    # ecco's arrays handed to the engine's (positions, features) function mean something else
    assert abs(analysis.cka(a, b[:30]) - similarity.linear_cka(a, b[:30])) > 0.05
    # invariances of linear CKA: an orthogonal map and a scale of one side change nothing
    q, _ = np.linalg.qr(np.random.default_rng(1).normal(size=(30, 30)))
    assert analysis.cka(3.0 * q @ a, b) == pytest.approx(analysis.cka(a, b), abs=1e-9)
    assert analysis.cca(a, a) == pytest.approx(1.0, abs=1e-6)


def test_reachable_as_eccos_module(layers):
    a, b = layers
    assert ecco_core.analysis.cka(a, b) == analysis.cka(a, b)


def test_bad_arrays_name_the_layout(layers):
    a, b = layers
    with pytest.raises(InputError, match="fewer neurons than positions"):
        analysis.cca(a.T, a.T)
    with pytest.raises(InputError, match="same positions"):
        analysis.cka(a, b[:, :50])
    with pytest.raises(InputError, match="dims"):
        analysis.svcca(a, b, dims=500)
