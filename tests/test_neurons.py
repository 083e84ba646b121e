"""ecco_core.neurons: NMF / PCA factors, top neurons, one neuron's trace."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

from ecco_core.analysis import neurons
from ecco_core.errors import ComponentsError, EccoError, InputError, PositionError
from ecco_core.facade import OutputSeq
from ecco_core.highlight import factor_html


def synthetic_seq(activations: np.ndarray, n_input: int | None = None, layers=None) -> OutputSeq:
    """An OutputSeq around given (layer, neuron, pos) activations, with one-letter tokens."""
    n_pos = activations.shape[-1]
    return OutputSeq(
        token_ids=np.arange(n_pos),
        tokens=[chr(ord("a") + p % 26) for p in range(n_pos)],
        n_input_tokens=n_pos if n_input is None else n_input,
        activations=activations.astype(np.float32),
        activation_layers=list(range(activations.shape[0])) if layers is None else layers,
        special=np.zeros(n_pos, dtype=bool),
    )


def planted(n_factors=4, n_layers=3, n_neurons=40, n_pos=60, seed=0):
    """Non-negative activations built from sparse non-negative factors: (acts, W (pos, k), H (k, f))."""
    rng = np.random.default_rng(seed)
    scores = rng.random((n_pos, n_factors)) * (rng.random((n_pos, n_factors)) < 0.35)  # (pos, k)
    scores[(np.arange(n_factors) * 3) % n_pos, np.arange(n_factors)] = 1.0  # every factor fires somewhere
    parts = rng.random((n_factors, n_layers * n_neurons)) * (
        rng.random((n_factors, n_layers * n_neurons)) < 0.3
    )
    acts = (scores @ parts).T.reshape(n_layers, n_neurons, n_pos)  # (layer, neuron, pos)
    return acts, scores, parts


def matched_correlations(truth: np.ndarray, found: np.ndarray) -> np.ndarray:
    """Correlation of each true row with its best-matched found row (Hungarian matching)."""
    k = len(truth)
    corr = np.corrcoef(truth, found)[:k, k:]  # (true, found)
    rows, cols = linear_sum_assignment(-corr)
    return corr[rows, cols]


def test_nmf_recovers_planted_factors():
    acts, scores, parts = planted()
    result = neurons.run_nmf(synthetic_seq(acts), n_components=4)
    assert result.components.shape == (4, 60) and result.loadings.shape == (4, 3, 40)
    assert matched_correlations(scores.T, result.components).min() > 0.99
    assert matched_correlations(parts, result.loadings.reshape(4, -1)).min() > 0.99
    assert result.fit_error < 0.01
    np.testing.assert_allclose(np.linalg.norm(result.loadings.reshape(4, -1), axis=1), 1, atol=1e-5)
    fit = result.components.T @ result.loadings.reshape(4, -1)  # (pos, feature) in activation units
    np.testing.assert_allclose(fit, acts.reshape(-1, 60).T, atol=0.02 * acts.max())


def test_nmf_is_deterministic_and_sorted_by_size():
    acts, _, _ = planted(seed=1)
    seq = synthetic_seq(acts)
    first, second = neurons.run_nmf(seq, 4), neurons.run_nmf(seq, 4)
    np.testing.assert_array_equal(first.components, second.components)
    sizes = np.linalg.norm(first.components, axis=1)
    assert np.all(np.diff(sizes) <= 0)


def test_negatives_are_clipped_and_reported():
    acts, scores, _ = planted(seed=2)
    rng = np.random.default_rng(3)
    noisy = np.where(rng.random(acts.shape) < 0.25, -rng.random(acts.shape), acts)  # some negatives
    result = neurons.run_nmf(synthetic_seq(noisy), 4)
    clean = neurons.run_nmf(synthetic_seq(np.clip(noisy, 0, None)), 4)
    np.testing.assert_allclose(result.components, clean.components, rtol=1e-5, atol=1e-6)
    assert result.negative_share == pytest.approx(np.mean(noisy < 0), abs=1e-6)
    expected_mass = -noisy[noisy < 0].sum() / np.abs(noisy).sum()
    assert result.negative_mass == pytest.approx(expected_mass, rel=1e-5)
    assert "set to 0" in result.clipping_note() and clean.clipping_note().startswith("No activation")


def test_layer_and_position_selection():
    acts, _, _ = planted(n_layers=4, n_pos=30)
    seq = synthetic_seq(acts, n_input=20, layers=[2, 3, 4, 5])
    result = neurons.run_nmf(seq, 3, from_layer=3, to_layer=5, positions="output", skip_first=True)
    assert result.layers == [3, 4]
    np.testing.assert_array_equal(result.positions, np.arange(20, 30))
    direct = neurons.run_nmf(synthetic_seq(acts[1:3, :, 20:]), 3)  # the same matrix, built by hand
    np.testing.assert_allclose(result.components, direct.components, rtol=1e-5, atol=1e-6)
    inputs = neurons.run_nmf(seq, 3, positions="input", skip_first=True)
    np.testing.assert_array_equal(inputs.positions, np.arange(1, 20))
    full = inputs.full_components()
    assert full.shape == (3, 30) and not full[:, 0].any() and not full[:, 20:].any()


def test_pca_matches_numpy_svd():
    acts, _, _ = planted(seed=4)
    result = neurons.run_nmf(synthetic_seq(acts), 3, method="pca")
    data = acts.reshape(-1, 60).T.astype(np.float64)  # (pos, feature)
    centred = data - data.mean(axis=0)
    u, s, vt = np.linalg.svd(centred, full_matrices=False)
    for k in range(3):
        sign = np.sign(result.loadings.reshape(3, -1)[k] @ vt[k])
        np.testing.assert_allclose(result.components[k], sign * u[:, k] * s[k], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(result.explained_variance, s[:3] ** 2 / np.sum(s**2), rtol=1e-5)
    assert result.signed and result.strongest_factor().min() >= 0


def test_factor_counts_and_selections_are_refused_clearly():
    acts, _, _ = planted(n_pos=6)
    seq = synthetic_seq(acts, n_input=6)
    with pytest.raises(ComponentsError, match="more factors than the 6 positions"):
        neurons.run_nmf(seq, 7)
    with pytest.raises(ComponentsError, match="at least 1"):
        neurons.run_nmf(seq, 0)
    with pytest.raises(ComponentsError, match="neurons selected"):
        neurons.run_nmf(synthetic_seq(acts[:1, :3]), 5)
    with pytest.raises(InputError, match="No captured layer"):
        neurons.run_nmf(seq, 2, from_layer=2, to_layer=2)
    with pytest.raises(PositionError, match="no generated tokens"):
        neurons.run_nmf(seq, 2, positions="output")
    with pytest.raises(InputError, match="method"):
        neurons.run_nmf(seq, 2, method="ica")
    with pytest.raises(EccoError, match="no FFN neuron activations"):
        neurons.run_nmf(OutputSeq(token_ids=np.arange(3), tokens=list("abc"), n_input_tokens=3), 2)


def test_results_are_plain_data():
    acts, _, _ = planted()
    result = neurons.run_nmf(synthetic_seq(acts), 4)
    data = json.loads(json.dumps(result.to_dict()))
    assert len(data["components"]) == 4 and len(data["factors"][0]) == 60
    assert len(data["top_neurons"]) == 4 and set(data["top_neurons"][0][0]) == {
        "factor",
        "layer",
        "neuron",
        "loading",
    }
    frame = result.to_frame()
    assert len(frame) == 4 * 60 and frame["value"].to_numpy().reshape(4, 60) == pytest.approx(
        result.components
    )
    loadings = result.loadings_frame()
    assert len(loadings) == 3 * 40 and loadings["factor_2"].to_numpy() == pytest.approx(
        result.loadings[2].ravel()
    )
    clone = pickle.loads(pickle.dumps(result))
    np.testing.assert_array_equal(clone.components, result.components)
    assert not any(isinstance(v, OutputSeq) for v in vars(result).values())
    assert len(result.figure().data) == 1


def test_factor_top_neurons_are_the_largest_loadings():
    acts, _, _ = planted()
    result = neurons.run_nmf(synthetic_seq(acts), 4)
    frame = result.top_neurons(1, k=5)
    flat = result.loadings[1].ravel()
    expected = np.argsort(-flat, kind="stable")[:5]
    assert list(zip(frame["layer"], frame["neuron"])) == [divmod(int(i), 40) for i in expected]
    np.testing.assert_allclose(frame["loading"], flat[expected])


def test_sparklines_highlight_the_chosen_factor():
    from ecco_core.figures.neurons import factor_color, factor_sparklines

    acts, _, _ = planted(n_factors=12, n_pos=40)
    result = neurons.run_nmf(synthetic_seq(acts), 12)
    fig = factor_sparklines(result, selected=11)
    assert len(fig.data) == 12
    assert fig.data[11].line.color == factor_color(11) and fig.data[0].line.color == "#c8c8c8"


def test_strongest_factor_and_factor_html_escape():
    acts, _, _ = planted()
    seq = synthetic_seq(acts)
    seq.tokens[0] = "<b>&"
    result = neurons.run_nmf(seq, 4)
    strongest = result.strongest_factor()
    full = result.full_components()
    np.testing.assert_array_equal(strongest, np.where(full.max(0) > 0, full.argmax(0), -1))
    html = factor_html(result.tokens, strongest, np.ones(60), ["#ff0000", "#00ff00", "#0000ff", "#123456"])
    assert "&lt;b&gt;&amp;" in html and "<b>" not in html
    assert "rgb(255,0,0)" in html  # factor 0 at full strength


def test_top_neurons_equal_a_direct_argsort(tiny):
    seq = tiny("The keys to the cabinet")
    acts = seq.activations  # (layer, neuron, pos)
    for position in (0, 5, -1):
        top = neurons.top_neurons(seq, position, k=7)
        column = acts[:, :, position].ravel()  # (layer * neuron,)
        expected = np.argsort(-column, kind="stable")[:7]
        layer, neuron = np.unravel_index(expected, acts.shape[:2])
        np.testing.assert_array_equal(top.layers, layer)
        np.testing.assert_array_equal(top.neurons, neuron)
        np.testing.assert_array_equal(top.values, column[expected])
    relative = neurons.top_neurons(seq, 4, k=6, relative=True)
    above = (acts[:, :, 4] - acts.mean(axis=2)).ravel()  # (layer * neuron,)
    expected = np.argsort(-above, kind="stable")[:6]
    layer, neuron = np.unravel_index(expected, acts.shape[:2])
    np.testing.assert_array_equal(relative.layers, layer)
    np.testing.assert_array_equal(relative.neurons, neuron)
    np.testing.assert_allclose(relative.above_mean, above[expected], rtol=1e-6)
    np.testing.assert_array_equal(relative.values, acts[layer, neuron, 4])
    sub = neurons.top_neurons(seq, 3, k=4, from_layer=1, to_layer=2)
    assert set(sub.layers) == {1}
    np.testing.assert_array_equal(sub.values, np.sort(acts[1, :, 3])[::-1][:4])
    assert json.dumps(sub.to_dict()) and len(sub.to_frame()) == 4
    with pytest.raises(PositionError):
        neurons.top_neurons(seq, seq.n_tokens)


def test_neuron_trace_is_the_captured_row(tiny):
    seq = tiny("The keys to the cabinet")
    trace = neurons.neuron_activations(seq, layer=2, neuron=5)
    np.testing.assert_array_equal(trace.values, seq.activations[2, 5])
    assert trace.to_frame()["activation"].tolist() == pytest.approx(seq.activations[2, 5].tolist())
    with pytest.raises(InputError, match="not captured"):
        neurons.neuron_activations(seq, layer=9, neuron=0)
    with pytest.raises(InputError, match="neuron must be"):
        neurons.neuron_activations(seq, layer=0, neuron=10**6)


def test_factorises_a_tiny_model_run(tiny):
    seq = tiny.generate("one, two, three,", generate=5)
    result = seq.run_nmf(n_components=3)
    assert result.components.shape == (3, seq.n_tokens)
    assert result.loadings.shape == (3, 3, seq.activations.shape[1])
    assert np.all(result.components >= 0)


@pytest.mark.embedded
def test_mixed_prompt_separates_digits_from_words(smol):
    """On the embedded model, one factor fires on the list/date digits and not on words."""
    from ecco_app.state import EXAMPLES

    seq = smol(EXAMPLES["Mixed: list, date, sentence"])
    result = neurons.run_nmf(seq, 8, skip_first=True)
    digit = np.array([t.strip().isdigit() for t in seq.tokens])[result.positions]
    purity = [digit[np.argsort(-c)[:6]].mean() for c in result.components]  # digits among top 6
    best = int(np.argmax(purity))
    assert purity[best] >= 5 / 6
    assert np.mean(result.components[best][digit]) > 3 * np.mean(result.components[best][~digit])


@pytest.mark.parametrize("seed", [0, 1])
def test_nmf_fits_as_well_as_scikit_learn(seed):
    """Same loss and start as scikit-learn's coordinate-descent NMF: no worse a fit (noisy data,
    so no factorisation is exact)."""
    from sklearn.decomposition import NMF

    rng = np.random.default_rng(seed)
    acts, _, _ = planted(n_factors=6, n_pos=45, seed=seed)
    acts = acts + 0.3 * rng.random(acts.shape)  # (layer, neuron, pos)
    ours = neurons.run_nmf(synthetic_seq(acts), 5)
    data = acts.reshape(-1, acts.shape[-1]).T.astype(np.float64)  # (pos, features)
    reference = NMF(5, init="nndsvda", solver="cd", tol=1e-6, max_iter=2000).fit(data)
    theirs = np.linalg.norm(data - reference.transform(data) @ reference.components_) / np.linalg.norm(data)
    assert ours.fit_error <= theirs * 1.002
    rebuilt = ours.full_components().T @ ours.loadings.reshape(5, -1)  # (pos, features)
    assert np.linalg.norm(data - rebuilt) / np.linalg.norm(data) == pytest.approx(ours.fit_error, rel=1e-3)
