"""Parts found by inspecting the module tree, for every supported family."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ecco_core.errors import UnsupportedArchitectureError
from ecco_core.model.architecture import find_architecture
from tests.tiny import tiny_model

EXPECTED_FFN = {
    "gpt2": "mlp.c_proj",
    "gpt_neo": "mlp.c_proj",
    "gpt_neox": "mlp.dense_4h_to_h",
    "opt": "fc2",
    "llama": "mlp.down_proj",
    "mistral": "mlp.down_proj",
    "qwen2": "mlp.down_proj",
    "gemma": "mlp.down_proj",
    "phi": "mlp.fc2",
}


@pytest.mark.parametrize("family", sorted(EXPECTED_FFN))
def test_parts_found(family):
    model = tiny_model(family)
    arch = find_architecture(model)
    assert arch.n_layers == 3
    assert arch.d_model == 32
    assert arch.embeddings is model.get_input_embeddings()
    assert arch.unembedding is model.get_output_embeddings()
    assert arch.final_norm is not None and "norm" in type(arch.final_norm).__name__.lower()
    names = {id(m): n for n, m in arch.blocks[0].named_modules()}
    assert names[id(arch.ffn_sites[0])] == EXPECTED_FFN[family]
    assert all(a is not None for a in arch.attentions)
    assert arch.n_neurons == (128 if family in ("gpt2", "gpt_neo") else 64)


def test_final_norm_is_after_the_blocks_not_inside():
    model = tiny_model("gpt2")
    assert find_architecture(model).final_norm is model.transformer.ln_f


class _NoBlocks(nn.Module):
    def __init__(self):
        super().__init__()
        self.config = type("C", (), {"model_type": "strange", "num_hidden_layers": 2})()
        self.emb = nn.Embedding(10, 4)

    def get_input_embeddings(self):
        return self.emb

    def get_output_embeddings(self):
        return None


def test_unsupported_model_names_what_is_missing():
    with pytest.raises(UnsupportedArchitectureError, match="ModuleList of 2 transformer blocks"):
        find_architecture(_NoBlocks())


def test_unembed_normed_matches_model_logits(tiny):
    ids = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad():
        out = tiny.model(ids, output_hidden_states=True)
        seq = tiny(ids[0])
        mine = tiny.unembed(torch.from_numpy(seq.hidden_states[-1]))
    torch.testing.assert_close(mine, out.logits[0], rtol=1e-5, atol=1e-5)
