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


ENCODERS = {  # family -> (config, the FFN output projection's name in block 0, neurons per layer)
    "distilbert": (
        {"dim": 32, "n_layers": 2, "n_heads": 4, "hidden_dim": 64, "max_position_embeddings": 128},
        "ffn.lin2",
        64,
    ),
    "modernbert": (  # its attention's output is also called Wo: only the mlp's counts
        {
            "hidden_size": 32,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "intermediate_size": 64,
            "max_position_embeddings": 128,
            "global_attn_every_n_layers": 1,
            "local_attention": 16,
            "cls_token_id": 1,
            "sep_token_id": 2,
        },
        "mlp.Wo",
        64,
    ),
}


@pytest.mark.parametrize("family", sorted(ENCODERS))
def test_encoder_ffn_sites_found_by_structure(family):
    from transformers import AutoConfig, AutoModelForMaskedLM

    from ecco_core.facade import LM
    from ecco_core.model.weights import LoadedWeights
    from tests.tiny import _COMMON, char_tokenizer

    config, site, n_neurons = ENCODERS[family]
    model = AutoModelForMaskedLM.from_config(AutoConfig.for_model(family, **_COMMON, **config)).eval()
    arch = find_architecture(model)
    names = {id(m): n for n, m in arch.blocks[0].named_modules()}
    assert names[id(arch.ffn_sites[0])] == site and arch.n_neurons == n_neurons and not arch.neuron_note
    lm = LM(LoadedWeights(model, char_tokenizer(), f"tiny-{family}", "random", ""), torch.device("cpu"))
    seq = lm("hello there")
    assert seq.activations.shape == (2, n_neurons, seq.n_tokens)
    assert seq.run_nmf(n_components=2).n_factors == 2


def test_a_model_without_a_found_ffn_site_loads_and_says_why_its_neuron_views_are_missing(monkeypatch):
    """Every other view works; the neuron views refuse in one line that says why."""
    from ecco_core.errors import ModelTypeError
    from ecco_core.model import architecture
    from tests.tiny import tiny_lm

    monkeypatch.setattr(architecture, "_FFN_OUT_NAMES", ("nothing_like_this",))
    lm = tiny_lm("llama", seed=4)
    assert lm.arch.ffn_sites == () and "feed-forward output projection" in lm.arch.neuron_note
    seq = lm.generate("abc", generate=3)
    assert seq.activations is None and seq.activation_layers == []
    assert seq.rankings().ranks.shape == (4, 3)
    assert seq.saliency("grad_x_input").values.shape == (3, seq.n_tokens)
    with pytest.raises(ModelTypeError, match="Neuron views are not available: ecco_core did not find"):
        seq.run_nmf(n_components=2)
