"""ecco_core.similarity: CKA, CCA, SVCCA, PWCCA against plain numpy references, and layer x layer."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest

from ecco_core.analysis import similarity
from ecco_core.errors import InputError
from ecco_core.facade import OutputSeq


def random_orthogonal(n: int, rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(n, n)))
    return q * np.sign(np.diag(r))


def shared_pair(n=600, p=8, q=6, shared=3, noise=0.1, seed=0):
    """x (n, p) and y (n, q) that share ``shared`` latent directions plus independent parts."""
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=(n, shared))
    x = np.hstack([latent, rng.normal(size=(n, p - shared))]) @ rng.normal(size=(p, p))
    y = np.hstack([latent, rng.normal(size=(n, q - shared))]) @ rng.normal(size=(q, q))
    return x + noise * rng.normal(size=x.shape), y + noise * rng.normal(size=y.shape)


def inv_sqrt(cov: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh(cov)
    return vectors @ np.diag(values**-0.5) @ vectors.T


def reference_cca(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Textbook CCA: singular values of Sxx^-1/2 Sxy Syy^-1/2, and x's canonical directions."""
    x, y = x - x.mean(0), y - y.mean(0)
    sxx, syy, sxy = x.T @ x, y.T @ y, x.T @ y
    u, rho, _ = np.linalg.svd(inv_sqrt(sxx) @ sxy @ inv_sqrt(syy))
    return rho, inv_sqrt(sxx) @ u  # rho (k,), directions (p, k)


def reference_pwcca(x: np.ndarray, y: np.ndarray) -> float:
    rho, directions = reference_cca(x, y)
    xc = x - x.mean(0)
    k = len(rho)
    variates = xc @ directions[:, :k]  # (n, k)
    variates /= np.linalg.norm(variates, axis=0)
    weights = np.abs(variates.T @ xc).sum(axis=1)
    return float(np.sum(weights * rho) / weights.sum())


def svd_reduce(x: np.ndarray, dims: int) -> np.ndarray:
    xc = x - x.mean(0)
    u, s, _ = np.linalg.svd(xc, full_matrices=False)
    return u[:, :dims] * s[:dims]


# ----- CKA --------------------------------------------------------------------------------------
def test_cka_of_identical_inputs_is_one():
    x = np.random.default_rng(0).normal(size=(50, 20))
    assert similarity.linear_cka(x, x) == pytest.approx(1.0, abs=1e-12)


def test_cka_is_invariant_to_orthogonal_transforms_and_isotropic_scaling():
    rng = np.random.default_rng(1)
    x, y = shared_pair(n=200, seed=1)
    base = similarity.linear_cka(x, y)
    assert similarity.linear_cka(x @ random_orthogonal(8, rng), y) == pytest.approx(base, rel=1e-10)
    assert similarity.linear_cka(x, 7.5 * y @ random_orthogonal(6, rng)) == pytest.approx(base, rel=1e-10)
    assert similarity.linear_cka(x + 3.0, y) == pytest.approx(base, rel=1e-10)  # centring


def test_cka_of_independent_inputs_is_small():
    rng = np.random.default_rng(2)
    assert similarity.linear_cka(rng.normal(size=(1000, 10)), rng.normal(size=(1000, 10))) < 0.05


def test_cka_equals_the_feature_space_formula():
    x, y = shared_pair(n=100, seed=3)
    x, y = x - x.mean(0), y - y.mean(0)
    expected = np.linalg.norm(y.T @ x) ** 2 / (np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y))
    assert similarity.linear_cka(x, y) == pytest.approx(expected, rel=1e-10)


# ----- CCA family -------------------------------------------------------------------------------
def test_canonical_correlations_match_the_textbook_reference():
    x, y = shared_pair()
    rho_ref, _ = reference_cca(x, y)
    rho = similarity.canonical_correlations(x, y)
    np.testing.assert_allclose(rho, rho_ref[: len(rho)], atol=1e-8)
    assert np.all(rho[:3] > 0.9) and np.all(rho[3:] < 0.3)  # the 3 shared directions
    assert similarity.mean_cca(x, y) == pytest.approx(rho_ref.mean(), abs=1e-8)


def test_cca_of_a_linear_map_is_one():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(100, 5))
    assert similarity.mean_cca(x, x @ rng.normal(size=(5, 5)) + 2.0) == pytest.approx(1.0, abs=1e-9)


def test_svcca_matches_reduce_then_reference_cca():
    x, y = shared_pair(p=12, q=10, seed=5)
    for dims in (3, 5, 8):
        rho_ref, _ = reference_cca(svd_reduce(x, dims), svd_reduce(y, dims))
        assert similarity.svcca(x, y, dims=dims) == pytest.approx(rho_ref.mean(), abs=1e-8)


def test_pwcca_matches_the_plain_reference():
    x, y = shared_pair(p=8, q=8, seed=6)
    assert similarity.pwcca(x, y) == pytest.approx(reference_pwcca(x, y), abs=1e-8)
    # the shared directions carry most of x here, so PWCCA weighs them above the plain mean
    assert similarity.pwcca(x, y) > similarity.mean_cca(x, y)


def test_more_features_than_positions_is_reduced_not_trivially_one():
    rng = np.random.default_rng(7)
    x, y = rng.normal(size=(12, 300)), rng.normal(size=(12, 300))
    # without reduction two 11-dimensional centred spans of R^12 coincide: every correlation 1
    assert similarity.mean_cca(x, y, max_dims=11) == pytest.approx(1.0, abs=1e-9)
    assert similarity.mean_cca(x, y) < 0.95
    assert similarity.mean_cca(x, x) == pytest.approx(1.0, abs=1e-9)
    assert similarity.svcca(x, y, dims=40) == pytest.approx(similarity.mean_cca(x, y), abs=1e-12)


def test_bad_inputs_are_refused():
    x = np.zeros((10, 3))
    with pytest.raises(InputError, match="same positions"):
        similarity.linear_cka(x, np.zeros((9, 3)))
    with pytest.raises(InputError, match="at least 3"):
        similarity.mean_cca(x[:2], x[:2])
    with pytest.raises(InputError, match="method"):
        similarity.similarity(x, x, method="rsa")


# ----- layer x layer ----------------------------------------------------------------------------
def layered_seq(n_layers=5, n_pos=40, d=16, seed=0) -> OutputSeq:
    """Hidden states that drift layer by layer (a random walk), so neighbours are most alike."""
    rng = np.random.default_rng(seed)
    states = [rng.normal(size=(n_pos, d))]
    for _ in range(n_layers):
        states.append(states[-1] + 0.6 * rng.normal(size=(n_pos, d)))
    hidden = np.stack(states).astype(np.float32)  # (layer + 1, pos, d)
    return OutputSeq(
        token_ids=np.arange(n_pos),
        tokens=["t"] * n_pos,
        n_input_tokens=n_pos,
        hidden_states=hidden,
        activations=np.abs(hidden[1:]).transpose(0, 2, 1).copy(),  # (layer, neuron, pos)
        activation_layers=list(range(n_layers)),
    )


@pytest.mark.parametrize("method", similarity.METHODS)
def test_layer_matrix_entries_equal_the_pairwise_scores(method):
    seq = layered_seq()
    result = similarity.layer_similarity(seq, method=method, dims=6)
    reps = seq.hidden_states[:, 1:].astype(np.float64)
    n = len(reps)
    assert result.matrix.shape == (n, n)
    np.testing.assert_allclose(np.diag(result.matrix), 1.0, atol=1e-9)
    np.testing.assert_allclose(result.matrix, result.matrix.T, atol=1e-12)
    for i, j in [(0, 1), (2, 5), (4, 3)]:
        if method == "pwcca":
            cap = (reps.shape[1] - 1) // 2
            expected = (similarity.pwcca(reps[i], reps[j], cap) + similarity.pwcca(reps[j], reps[i], cap)) / 2
        else:
            expected = similarity.similarity(reps[i], reps[j], method, dims=6)
        assert result.matrix[i, j] == pytest.approx(expected, abs=1e-9)
    assert np.all(np.abs(result.most_alike() - np.arange(n)) == 1)


def test_layer_similarity_of_ffn_activations_and_plain_outputs():
    seq = layered_seq()
    result = similarity.layer_similarity(seq, "cka", source="ffn", skip_first=False)
    acts = seq.activations.transpose(0, 2, 1)  # (layer, pos, neuron)
    assert result.matrix[1, 3] == pytest.approx(similarity.linear_cka(acts[1], acts[3]), abs=1e-9)
    assert result.labels() == ["0", "1", "2", "3", "4"] and result.n_positions == 40
    data = json.loads(json.dumps(result.to_dict()))
    assert data["matrix"][1][3] == pytest.approx(result.matrix[1, 3])
    assert len(result.to_frame()) == 25 and len(result.figure().data) == 1
    assert pickle.loads(pickle.dumps(result)).method == "cka"
    with pytest.raises(InputError, match="source"):
        similarity.layer_similarity(seq, source="attention")


def test_normalize_scales_every_token_to_unit_length():
    seq = layered_seq()
    seq.hidden_states[:, 7] *= 50.0  # one token with a "massive activation"
    result = similarity.layer_similarity(seq, "cka", normalize=True)
    reps = seq.hidden_states[:, 1:].astype(np.float64)
    unit = reps / np.linalg.norm(reps, axis=2, keepdims=True)
    assert result.matrix[0, 4] == pytest.approx(similarity.linear_cka(unit[0], unit[4]), abs=1e-9)
    assert "unit length" in result.note
    raw = similarity.layer_similarity(seq, "cka")
    assert raw.matrix[0, 4] > result.matrix[0, 4] + 0.2  # the big token made far layers look alike


def test_layer_similarity_on_a_tiny_model(tiny):
    seq = tiny("The keys to the cabinet are on the table")
    for method in similarity.METHODS:
        result = similarity.layer_similarity(seq, method)
        assert result.matrix.shape == (4, 4) and result.labels()[0] == "emb"
        assert np.all(np.isfinite(result.matrix))


@pytest.mark.embedded
def test_neighbouring_layers_are_most_alike_on_the_embedded_model(smol):
    from ecco_app.state import EXAMPLES

    seq = smol(EXAMPLES["Mixed: list, date, sentence"])
    for method in ("cka", "pwcca"):
        result = similarity.layer_similarity(seq, method, "hidden", normalize=True)
        offsets = np.abs(result.most_alike() - np.arange(len(result.layers)))
        assert np.mean(offsets == 1) >= 0.8, (method, offsets)
