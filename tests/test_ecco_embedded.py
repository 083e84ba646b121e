"""ecco's call surface on the real embedded model (SmolLM2-135M): ecco's lens reads raw middle
layers and the model's own last layer; the views, printJson layouts and NMF run end to end."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ecco_core.compat import EccoLM
from ecco_core.compat.config import ecco_config
from tests.conftest import EU_PROMPT

pytestmark = pytest.mark.embedded


@pytest.fixture(scope="module")
def output(smol):
    lm = EccoLM(smol, ecco_config(smol, None), activations=True)
    return lm.generate(EU_PROMPT, generate=5, do_sample=False, attribution=["grad_x_input"])


def test_eccos_lens_on_the_embedded_model(output, smol):
    data = output.rankings(printJson=True)
    ranks = data["rankings"]  # (layer, generated)
    assert ranks.shape == (30, 5)
    assert (ranks[-1] == 1).all()  # greedy: the model's own last layer ranks its choice first
    assert data["output_tokens"][0] == "'Croatia'"  # ecco strips the 'Ġ' prefix before repr
    # ecco's raw middle layers are far from the normed lens there (FIELD-NOTES: noise)
    normed = output.run.rankings().ranks[1:-1]  # hidden states 1..29 = ecco's layers 0..28
    assert np.median(ranks[:-1]) > 10 * np.median(normed)
    # the last layer's top token is the model's own prediction at the first generated position
    ids = output.token_ids
    with torch.no_grad():
        logits = smol.model(ids).logits[0, output.n_input_tokens - 1]
    top = output.layer_predictions(position=output.n_input_tokens, topk=1, layer=29)
    assert int(top.token_ids[0, 0]) == int(logits.argmax())


def test_views_and_nmf_on_the_embedded_model(output):
    assert output.tokens[0][0] == "The" and output.tokens[0][1] == "Ġcountries"
    assert output.output_text.startswith(EU_PROMPT) and " Croatia" in output.output_text
    watch = output.rankings_watch(
        watch=[" Croatia", " Cyprus"], position=output.n_input_tokens, printJson=True
    )
    assert watch["rankings"].shape == (30, 2) and watch["rankings"][-1, 0] == 1
    scores = output.attribution["grad_x_input"]
    assert [len(s) for s in scores] == list(range(output.n_input_tokens, output.n_input_tokens + 5))
    nmf = output.run_nmf(n_components=8, from_layer=0, to_layer=6)
    assert nmf.components.shape == (8, len(output.tokens[0]) - 1)
    assert "eccoFactors" in nmf.explore()._repr_html_()
