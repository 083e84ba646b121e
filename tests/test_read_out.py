"""The one read-out: what lies between the last block and the logits, for families that do more
than norm + unembedding (Gemma 2's soft-cap, Cohere's logit scale, Granite's logits scaling,
OPT-350m's projection), and ecco's raw lens, whose last layer reads the model's own output."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM

from ecco_core.facade import LM
from ecco_core.model.weights import LoadedWeights
from tests.tiny import _COMMON, char_tokenizer, tiny_lm

SHAPE = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "intermediate_size": 64,
    "max_position_embeddings": 128,
}
READ_OUTS = {  # family -> (config extras, the attribute the read-out must pick up, its value)
    "gemma2": (
        {"head_dim": 8, "final_logit_softcapping": 1.5, "query_pre_attn_scalar": 8},
        "logit_softcap",
        1.5,
    ),
    "cohere": ({"logit_scale": 0.25}, "logit_multiplier", 0.25),
    "granite": (
        {"logits_scaling": 4.0, "embedding_multiplier": 2.0, "residual_multiplier": 0.5},
        "logit_multiplier",
        0.25,
    ),
    "opt": (  # the opt-350m layout: no final norm, project_out 32 -> 16 before the unembedding
        {"ffn_dim": 64, "word_embed_proj_dim": 16, "do_layer_norm_before": False},
        "read_out_projection",
        None,
    ),
}


def random_drawn(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Every weight drawn at random (not the init): a dropped gain, bias or scale shows."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            noise = torch.randn(parameter.shape, generator=generator)
            parameter.copy_(1 + 0.3 * noise if "norm" in name else 0.3 * noise)
    return model.eval()


def read_out_lm(family: str) -> LM:
    extras = READ_OUTS[family][0]
    config = AutoConfig.for_model(family, **_COMMON, **SHAPE, **extras)
    torch.manual_seed(0)
    model = random_drawn(AutoModelForCausalLM.from_config(config), seed=1)
    return LM(LoadedWeights(model, char_tokenizer(), f"tiny-{family}", "random", ""), torch.device("cpu"))


def model_probs(lm, seq) -> np.ndarray:
    """(pos, vocab) the model's own next-token probabilities."""
    with torch.inference_mode():
        logits = lm.model(input_ids=torch.as_tensor(seq.token_ids)[None]).logits[0]
    return logits.double().softmax(-1).numpy()


def check_last_layer_is_the_model(seq, lens: str) -> None:
    probs = model_probs(seq.lm, seq)
    for position in range(1, seq.n_tokens + 1):
        pred = seq.layer_predictions(position, topk=5, layer=seq.n_layers, lens=lens)
        assert pred.token_ids[0, 0] == int(probs[position - 1].argmax())
        np.testing.assert_allclose(
            pred.probs[0], probs[position - 1, pred.token_ids[0]], rtol=1e-4, atol=1e-7
        )


@pytest.mark.parametrize("family", sorted(READ_OUTS))
@pytest.mark.parametrize("lens", ["normed", "raw"])
def test_the_last_layer_of_either_lens_is_the_models_own_output(family, lens):
    lm = read_out_lm(family)
    _, attribute, value = READ_OUTS[family]
    if value is None:  # a module: the 350m layout's projection
        assert getattr(lm.arch, attribute).out_features == 16 and lm.arch.final_norm is None
    else:
        assert getattr(lm.arch, attribute) == pytest.approx(value)
    check_last_layer_is_the_model(lm("hello world"), lens)


def test_without_the_soft_cap_the_lens_would_be_wrong():
    """The check above fails on a read-out that drops Gemma 2's soft-cap (it changes probabilities)."""
    lm = read_out_lm("gemma2")
    seq = lm("hello world")
    object.__setattr__(lm.arch, "logit_softcap", None)
    with pytest.raises(AssertionError):
        check_last_layer_is_the_model(seq, "normed")


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_the_raw_lens_reads_the_models_output_at_the_last_layer_only(family):
    lm = tiny_lm(family, seed=2)
    random_drawn(lm.model, seed=3)  # final norm gains away from 1, so raw and normed differ
    seq = lm("hello there")
    check_last_layer_is_the_model(seq, "raw")
    raw, normed = seq.rankings(include_prompt=True, lens="raw"), seq.rankings(include_prompt=True)
    np.testing.assert_allclose(raw.probs[-1], normed.probs[-1], rtol=1e-5, atol=1e-7)
    assert not np.allclose(raw.probs[1:-1], normed.probs[1:-1])  # middle layers stay raw
    watch = seq.rankings_watch([5, 9], position=4, lens="raw")
    np.testing.assert_allclose(watch.probs[-1], model_probs(lm, seq)[3, [5, 9]], rtol=1e-4, atol=1e-7)
