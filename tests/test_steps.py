"""Long computations as steps (issue 15): the logit-lens rankings a block of positions at a time,
NMF a few sweeps at a time, layer similarity a layer at a time. Each step generator must return
exactly the one-call result and yield honest progress; a partial result is the final one's part.
Whether the one-call results are right is held against float64 in test_lens, test_neurons and
test_similarity (they now run through these generators)."""

from __future__ import annotations

import numpy as np
import pytest

from ecco_core.analysis import lens, neurons, similarity
from ecco_core.results.progress import Progress, drain

PROMPT = "The list: 1. ab 2. cd 3. ef 4. gh"


@pytest.fixture(scope="module")
def seq(tiny):
    return tiny.generate(PROMPT, generate=6)


def run(steps):
    """Every Progress a generator yields, and what it returns."""
    seen = []
    while True:
        try:
            seen.append(next(steps))
        except StopIteration as done:
            return seen, done.value


def test_rankings_fill_blocks_from_the_end_and_partials_are_parts_of_the_whole(seq):
    seen, whole = run(lens.rankings_steps(seq, include_prompt=True, block=5))
    n = seq.n_tokens - 1  # positions 1 .. n_tokens - 1
    assert [p.done for p in seen] == list(range(5, n, 5)) and all(p.total == n for p in seen)
    for p in seen:
        part = p.part()
        assert len(part.positions) == p.done and part.positions[-1] == seq.n_tokens - 1  # from the end
        at = np.searchsorted(whole.positions, part.positions)
        # one projection read twice: bit-equal (tests/README rule 4)
        np.testing.assert_array_equal(part.ranks, whole.ranks[:, at])
        np.testing.assert_array_equal(part.predicted_tokens, whole.predicted_tokens[:, at])
        assert f"{p.done} of {n} positions" in p.what
    again = lens.rankings(seq, include_prompt=True)  # the one-call form reads the same cache
    np.testing.assert_array_equal(again.ranks, whole.ranks)


def test_nmf_steps_report_sweeps_and_return_run_nmf(seq):
    seen, result = run(neurons.nmf_steps(seq, n_components=3, skip_first=True))
    assert seen, "NMF finished before its first check: no progress was shown"
    sweeps = [p.done for p in seen]
    n_layers = len(seq.activation_layers)
    # each layer's activations, the scaling, the starting point, then every sweep
    assert sweeps == [0] * (n_layers + 1) + list(range(len(seen) - n_layers - 1))
    assert all(p.total == neurons.NMF_MAX_SWEEPS for p in seen)
    assert (
        f"1 of {n_layers} layers' activations gathered" in seen[0].what
        and "NNDSVDa" in seen[n_layers + 1].what
    )
    checked = [p for p in seen if "fit error" in p.what]  # once the error was first checked
    assert (
        checked and checked[0].done == neurons.NMF_CHECK_EVERY and "fit error" not in seen[n_layers + 2].what
    )
    alone = neurons.run_nmf(seq, n_components=3, skip_first=True)  # deterministic: the same fit
    np.testing.assert_array_equal(result.components, alone.components)
    assert result.fit_error == alone.fit_error
    seen, pca = run(neurons.nmf_steps(seq, n_components=3, method="pca"))
    assert len(seen) == n_layers + 1 and pca.method == "pca"  # the layers, then one SVD


@pytest.mark.parametrize("method", ["cka", "pwcca"])
def test_similarity_steps_go_a_layer_at_a_time(seq, method):
    seen, result = run(similarity.similarity_steps(seq, method=method, normalize=True))
    n = seq.hidden_states.shape[0]
    assert len(seen) == (n if method == "cka" else n + n * n - 1)  # PWCCA: every ordered pair
    shares = [p.share for p in seen]
    assert shares == sorted(shares) and shares[0] > 0 and shares[-1] <= 1
    alone = similarity.layer_similarity(seq, method=method, normalize=True)
    np.testing.assert_array_equal(result.matrix, alone.matrix)


def test_progress_share_and_drain():
    assert Progress(3, 12).share == 0.25 and Progress(5, 0).share == 0.0 and Progress(13, 12).share == 1
    assert Progress(1, 2, partial=lambda: "made").part() == "made"

    def steps():
        yield Progress(1, 2)
        return "done"

    assert drain(steps()) == "done"
