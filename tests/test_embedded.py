"""The real embedded model: the EU continuation, logit parity, and the disk cache."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from tests import cold_cache
from tests.conftest import EU_PROMPT

pytestmark = pytest.mark.embedded


def test_eu_continuation_begins_with_croatia(eu_seq):
    assert eu_seq.n_input_tokens == 23
    assert eu_seq.tokens[23] == " Croatia"
    assert eu_seq.output_text.startswith(" Croatia\n5.")
    assert eu_seq.hidden_states.shape == (31, 43, 576)
    assert eu_seq.activations.shape == (30, 1536, 43)


def test_last_layer_reproduces_the_models_logits(smol, eu_seq):
    ids = torch.tensor(eu_seq.token_ids)[None]
    with torch.no_grad():
        logits = smol.model(ids).logits[0]
    mine = smol.unembed(torch.from_numpy(eu_seq.hidden_states[-1]))
    torch.testing.assert_close(mine, logits, rtol=1e-4, atol=1e-4)
    assert mine[22].argmax().item() == eu_seq.token_ids[23]


def test_second_process_loads_from_the_disk_cache(smol):
    code = "import ecco_core; print(ecco_core.from_pretrained(device='cpu').source)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=".")
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "disk-cache"


def test_readable_tokens_have_no_byte_artefacts(smol):
    seq = smol("Héllo wörld 🙂 ok\nnext")
    assert "".join(seq.tokens) == "Héllo wörld 🙂 ok\nnext"
    assert not any("Ġ" in t or "Ċ" in t for t in seq.tokens)


def test_text_and_ids_give_the_same_capture(smol):
    ids = smol.encode(EU_PROMPT)
    a, b = smol(EU_PROMPT), smol(ids.tolist())
    np.testing.assert_array_equal(a.hidden_states, b.hidden_states)


@pytest.fixture
def cold_run():
    """The converting process and the one after it, started at collection by conftest.py (or now)."""
    run = cold_cache.take()
    yield run
    run.close()


def test_a_cold_cache_converts_once_and_every_process_gets_the_same_model(smol, cold_run):
    """The process that converts the GGUF and the ones that read the cache run the same class."""
    runs = []
    for code, stdout, stderr in cold_run.results(timeout=1200):
        assert code == 0, stderr[-2000:]
        runs.append(stdout.strip().splitlines()[-1].split(" ", 2))
    model_class = "LlamaForCausalLM"
    assert [r[:2] for r in runs] == [[model_class, "gguf"], [model_class, "disk-cache"]]
    assert runs[0][2] == runs[1][2] == smol.generate("2, 4, 6,", generate=3).output_text.strip()
