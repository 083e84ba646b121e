"""Interventions on the embedded SmolLM2 (float32): the patching identities against the model's
own logits, direct logit attribution summing to the logit within its derived float32 tolerance,
and a regeneration that changes nothing when nothing is done."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ecco_core.analysis import interventions as iv
from tests.tolerance import float32_tolerance

pytestmark = pytest.mark.embedded

CLEAN, CORRUPTED = "The Eiffel Tower is in the city of", "The Colosseum is in the city of"


@pytest.fixture(scope="module")
def pair(smol):
    return smol.compare(CLEAN, CORRUPTED, answer=" Paris", foil=" Rome")


def own_logits(lm, ids: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return lm.model(input_ids=ids[None]).logits[0, -1].double()


def test_patching_identities_on_the_embedded_model(smol, pair):
    clean, corrupted = own_logits(smol, pair.clean_ids), own_logits(smol, pair.corrupted_ids)
    tol = float32_tolerance(smol.arch.n_layers) * float(clean.abs().max())
    assert (iv.patched_logits(pair, [])[0] - clean).abs().max() <= tol
    assert (iv.patched_logits(pair, [("resid", 0, None)])[0] - corrupted).abs().max() <= tol
    grid = pair.attribution_patching()
    assert grid.metric_clean > 1 and grid.metric_corrupted < -1  # Paris against Rome, then Rome
    last = pair.n_tokens - 1
    _, row = pair.exact_patching("resid", position=last)
    assert row[-1] == pytest.approx(grid.metric_corrupted - grid.metric_clean, abs=1e-3)
    assert row[0] == pytest.approx(0.0, abs=1e-3)  # "of" is the same token in both prompts
    _, column = pair.exact_patching("resid", layer=0)  # the embeddings: only tokens 1-3 differ
    assert column[1:4].sum() < -1 and np.allclose(column[4:], 0, atol=1e-3)
    # the last changed token's residual stream, every layer: the estimate follows the exact effect
    _, exact = pair.exact_patching("resid", position=3)
    approx = grid.approx["resid"][:, 3]
    assert np.corrcoef(exact, approx)[0, 1] > 0.5
    strong = np.abs(exact) > 0.2
    assert np.mean(np.sign(exact[strong]) == np.sign(approx[strong])) >= 0.8


def test_direct_logit_attribution_sums_to_the_embedded_models_logit(eu_seq):
    position = eu_seq.n_input_tokens  # " Croatia"
    dla = eu_seq.direct_logit_attribution(position=position)
    assert dla.token == " Croatia" and dla.head_contributions.shape == (30, 9)
    assert dla.sum_error <= dla.tolerance
    assert dla.tolerance < 1e-4 * np.abs(dla.contributions).sum()
    attn = np.array([dla.contributions[dla.labels.index(f"L{i} attn")] for i in range(30)])
    # no o_proj bias; the heads are float32 matvecs of 64 terms each (2 sqrt(K) u sum|x w| with margin)
    assert np.allclose(dla.head_contributions.sum(1), attn, atol=1e-4 * np.abs(attn).max())
    foil = eu_seq.direct_logit_attribution(position=position, token=" Cyprus")
    assert foil.sum_error <= foil.tolerance and foil.logit < dla.logit


def test_regenerating_with_nothing_changed_gives_the_runs_tokens(eu_seq):
    again = eu_seq.regenerate([iv.ablate_neurons(5, [])], generate=8)
    assert again.intervened_ids == again.original_ids == [int(i) for i in eu_seq.token_ids[23:31]]
    assert np.allclose(again.intervened_p, again.intervened_p_original, atol=1e-5)
    zero = eu_seq.regenerate([iv.steer(10, np.ones(576), 0.0)], generate=8)
    assert zero.intervened_ids == again.original_ids
