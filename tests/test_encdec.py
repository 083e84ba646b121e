"""Encoder-decoders: tiny random T5 and BART (char tokenizer, no download): capture, positions, read-out."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import AutoConfig, AutoModelForSeq2SeqLM

from ecco_core.analysis import attention
from ecco_core.errors import InputError, PositionError
from ecco_core.facade import LM, OutputSeq
from ecco_core.model.capture import hook_count
from ecco_core.model.weights import LoadedWeights
from tests.tiny import VOCAB, char_tokenizer

CONFIGS = {
    "t5": {
        "d_model": 32,
        "d_kv": 8,
        "d_ff": 64,
        "num_layers": 3,
        "num_decoder_layers": 2,
        "num_heads": 4,
        "decoder_start_token_id": 3,
    },
    "bart": {
        "d_model": 32,
        "encoder_layers": 3,
        "decoder_layers": 2,
        "encoder_attention_heads": 4,
        "decoder_attention_heads": 4,
        "encoder_ffn_dim": 64,
        "decoder_ffn_dim": 64,
        "max_position_embeddings": 128,
        "decoder_start_token_id": 2,
        "forced_eos_token_id": None,
    },
}
COMMON = {"vocab_size": VOCAB, "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 3}
PROMPT = "hello"


def tiny_enc_dec(family: str) -> LM:
    config = AutoConfig.for_model(family, **COMMON, **CONFIGS[family])
    torch.manual_seed(0)
    model = AutoModelForSeq2SeqLM.from_config(config).eval()
    if family == "bart":
        with torch.no_grad():
            model.final_logits_bias.normal_()  # non-zero, so the read-out must add it
    return LM(LoadedWeights(model, char_tokenizer(), f"tiny-{family}", "random", ""), torch.device("cpu"))


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def lm(request):
    return tiny_enc_dec(request.param)


@pytest.fixture(scope="module")
def seq(lm):
    return lm.generate(PROMPT, generate=4, attention=True)


def _reference(lm: LM, seq: OutputSeq):
    enc = torch.tensor(seq.extras["encoder"]["token_ids"])[None]
    dec = torch.tensor(seq.extras["decoder"]["token_ids"])[None]
    previous = lm.model.config._attn_implementation
    lm.model.set_attn_implementation("eager")
    try:
        with torch.no_grad():
            return lm.model(
                input_ids=enc, decoder_input_ids=dec, output_hidden_states=True, output_attentions=True
            )
    finally:
        lm.model.set_attn_implementation(previous)


def test_shapes_and_the_sequence_layout(lm, seq):
    n_enc, n_dec = 5, 5  # "hello"; the decoder start token + 4 generated
    assert lm.model_type == "enc-dec" and seq.model_type == "enc-dec"
    assert seq.n_input_tokens == n_enc and seq.n_tokens == n_enc + n_dec
    assert seq.tokens[:n_enc] == list(PROMPT)
    assert seq.token_ids[n_enc] == lm.model.config.decoder_start_token_id
    assert seq.hidden_states.shape == (3, n_dec, 32)  # decoder: (layer + 1, dec_pos, d_model)
    assert seq.activations.shape == (2, 64, n_dec)
    assert seq.attentions.shape == (2, 4, n_dec, n_dec)
    encoder, decoder = seq.extras["encoder"], seq.extras["decoder"]
    assert encoder["token_ids"].tolist() == seq.token_ids[:n_enc].tolist()
    assert encoder["hidden_states"].shape == (4, n_enc, 32)
    assert encoder["activations"].shape == (3, 64, n_enc) and encoder["activation_layers"] == [0, 1, 2]
    assert encoder["attentions"].shape == (3, 4, n_enc, n_enc)
    assert decoder["cross_attentions"].shape == (2, 4, n_dec, n_enc)
    assert decoder["tokens"] == seq.state_tokens == seq.tokens[n_enc:]
    assert hook_count(lm.arch) == 0


def test_arrays_match_the_models_own(lm, seq):
    ref = _reference(lm, seq)
    encoder = seq.extras["encoder"]
    for layer in range(3):  # HF's last encoder entry is normed on T5
        np.testing.assert_allclose(
            encoder["hidden_states"][layer], ref.encoder_hidden_states[layer][0], atol=1e-5
        )
    for layer in range(2):
        np.testing.assert_allclose(seq.hidden_states[layer], ref.decoder_hidden_states[layer][0], atol=1e-5)
    np.testing.assert_allclose(seq.attentions, torch.stack([a[0] for a in ref.decoder_attentions]), atol=1e-6)
    np.testing.assert_allclose(
        encoder["attentions"], torch.stack([a[0] for a in ref.encoder_attentions]), atol=1e-6
    )
    cross = torch.stack([a[0] for a in ref.cross_attentions])
    np.testing.assert_allclose(seq.extras["decoder"]["cross_attentions"], cross, atol=1e-6)
    np.testing.assert_allclose(seq.extras["decoder"]["cross_attentions"].sum(-1), 1.0, atol=1e-5)


def test_read_out_reproduces_the_logits(lm, seq):
    """Final norm, T5's d_model**-0.5 scale and BART's final_logits_bias all applied."""
    ref = _reference(lm, seq)
    logits = lm.unembed(torch.from_numpy(seq.hidden_states[-1]))  # (dec_pos, vocab)
    torch.testing.assert_close(logits, ref.logits[0], rtol=1e-5, atol=1e-5)
    assert (lm.arch.logit_scale != 1.0) == (lm.arch.family == "t5")
    assert (lm.arch.logit_bias is not None) == (lm.arch.family == "bart")


def test_greedy_generation_matches_hf_generate(lm, seq):
    ids = torch.tensor(seq.extras["encoder"]["token_ids"])[None]
    with torch.no_grad():
        ref = lm.model.generate(ids, max_new_tokens=4, do_sample=False, pad_token_id=3)
    assert seq.extras["decoder"]["token_ids"].tolist() == ref[0].tolist()


def test_positions_are_relative_to_the_decoder(lm, seq):
    n = seq.n_input_tokens
    assert seq.state_offset == n and seq.first_predicted_position == n + 1
    assert seq.prediction_index(n + 1) == 0 and seq.prediction_index(-1) == seq.n_tokens - n - 2
    logits = lm.unembed(torch.from_numpy(seq.hidden_states[-1]))
    for position in range(n + 1, seq.n_tokens):  # greedy: each token is the argmax of its state
        assert logits[seq.prediction_index(position)].argmax().item() == seq.token_ids[position]
    for position in (0, n - 1, n, seq.n_tokens):
        with pytest.raises(PositionError, match=f"from {n + 1}"):
            seq.prediction_index(position)


def test_analysing_text_without_generating(lm):
    seq = lm(PROMPT, attention=True)
    assert seq.n_tokens == seq.n_input_tokens + 1  # the decoder reads only its start token
    assert seq.hidden_states.shape[1] == 1 and seq.extras["encoder"]["hidden_states"].shape[1] == 5
    with pytest.raises(PositionError):
        seq.prediction_index(-1)


def test_layer_subsets_apply_per_stack(lm):
    seq = lm(PROMPT, attention=True, attention_layers=[2], activation_layers=[0, 2])
    assert seq.attention_layers == [] and seq.attentions is None  # the decoder has layers 0..1
    assert seq.extras["encoder"]["attention_layers"] == [2]
    assert seq.extras["decoder"]["cross_attentions"] is None
    assert seq.activation_layers == [0] and seq.extras["encoder"]["activation_layers"] == [0, 2]
    with pytest.raises(InputError, match="do not exist"):
        lm(PROMPT, attention_layers=[5])


def test_attention_sides(seq):
    assert attention.available_sides(seq) == ["self", "encoder", "cross"]
    cross = attention.mean_attention(seq, -1, side="cross")
    assert cross.weights.shape == (5, 5) and cross.query_offset == 5 and cross.key_offset == 0
    assert cross.key_tokens == list(PROMPT)
    enc = attention.rollout(seq, side="encoder")
    np.testing.assert_allclose(enc.weights.sum(-1), 1.0, atol=1e-5)
    with pytest.raises(InputError, match="not 'cross'"):
        attention.rollout(seq, side="cross")
    grid = attention.attention_grid(seq, side="cross")
    assert np.isnan(grid.to_self).all() and grid.thumbnails.shape == (2, 4, 5, 5)
    assert seq.stack("encoder").tokens == list(PROMPT)


def test_save_and_load_keep_both_sides(lm, seq, tmp_path):
    back = OutputSeq.load(seq.save(tmp_path / "encdec"), lm=lm)
    assert back.state_offset == seq.state_offset and back.tokens == seq.tokens
    for side in ("encoder", "decoder"):
        for key, value in seq.extras[side].items():
            if isinstance(value, np.ndarray):
                np.testing.assert_array_equal(back.extras[side][key], value)
            else:
                assert back.extras[side][key] == value


def test_a_saved_folder_loads_as_an_encoder_decoder(tmp_path):
    """The hub path without a network: from_pretrained on a saved folder picks the seq2seq class."""
    import ecco_core

    source = tiny_enc_dec("t5")
    source.model.save_pretrained(tmp_path)
    source.tokenizer.save_pretrained(tmp_path)
    lm = ecco_core.from_pretrained(str(tmp_path), device="cpu")
    try:
        assert lm.model_type == "enc-dec" and type(lm.model).__name__ == "T5ForConditionalGeneration"
        seq = lm.generate(PROMPT, generate=3)
        reference = source.generate(PROMPT, generate=3)
        assert seq.token_ids.tolist() == reference.token_ids.tolist()
    finally:  # forget only this model; others stay cached
        from ecco_core.model import loading

        loading._models.pop((str(tmp_path), "cpu", "torch.float32"), None)
