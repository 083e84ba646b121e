"""Masked LMs: capture on a tiny random BERT with an MLM head, masked predictions, one-line refusals."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from transformers import BertConfig, BertForMaskedLM, BertModel, PreTrainedTokenizerFast

from ecco_core.analysis import attention
from ecco_core.errors import ModelTypeError, PositionError
from ecco_core.facade import LM
from ecco_core.model.capture import hook_count
from ecco_core.model.weights import LoadedWeights

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = [
    "the",
    "cat",
    "sat",
    "on",
    "mat",
    "a",
    "dog",
    "keys",
    "to",
    "cabinet",
    "is",
    "are",
    "was",
    "paris",
    "capital",
    "of",
    "france",
    ".",
    "##s",
    "##ed",
]


def wordpiece_tokenizer() -> PreTrainedTokenizerFast:
    """A BERT-style WordPiece tokenizer over a few words, built locally (no download)."""
    vocab = {token: i for i, token in enumerate(SPECIALS + WORDS)}
    core = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    core.normalizer = normalizers.BertNormalizer(lowercase=True)
    core.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    core.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    core.decoder = decoders.WordPiece()
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )


def tiny_bert(head: bool = True) -> LM:
    config = BertConfig(
        vocab_size=len(SPECIALS) + len(WORDS),
        hidden_size=32,
        num_hidden_layers=3,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    torch.manual_seed(0)
    model = (BertForMaskedLM if head else BertModel)(config).eval()
    name = "tiny-bert-mlm" if head else "tiny-bert-encoder"
    return LM(LoadedWeights(model, wordpiece_tokenizer(), name, "random", ""), torch.device("cpu"))


TEXT = "The cat [MASK] on the mats."


@pytest.fixture(scope="module")
def bert():
    return tiny_bert(head=True)


@pytest.fixture(scope="module")
def bert_seq(bert):
    return bert(TEXT, attention=True)


def test_architecture_parts_of_bert(bert):
    arch = bert.arch
    names = {id(m): n for n, m in bert.model.named_modules()}
    assert names[id(arch.blocks)] == "bert.encoder.layer"
    assert names[id(arch.ffn_sites[0])] == "bert.encoder.layer.0.output.dense"
    assert arch.final_norm is None  # BERT's LayerNorms sit inside each block
    assert names[id(arch.mlm_head)] == "cls.predictions"
    assert bert.model_type == "mlm"


def test_capture_shapes_and_conventions(bert, bert_seq):
    seq = bert_seq
    assert seq.tokens == ["[CLS]", " the", " cat", " [MASK]", " on", " the", " mat", "s", ".", " [SEP]"]
    assert "".join(seq.tokens) == "[CLS] the cat [MASK] on the mats. [SEP]"  # word boundaries back
    n = seq.n_tokens
    assert seq.n_input_tokens == n and seq.n_output_tokens == 0 and seq.state_offset == 0
    assert seq.hidden_states.shape == (4, n, 32)
    assert seq.activations.shape == (3, 64, n)
    assert seq.attentions.shape == (3, 4, n, n)
    np.testing.assert_allclose(seq.attentions.sum(-1), 1.0, atol=1e-5)
    assert seq.special.tolist() == [True, False, False, True, False, False, False, False, False, True]
    assert hook_count(bert.arch) == 0


def test_hidden_states_match_the_models_own(bert, bert_seq):
    ids = torch.tensor(bert_seq.token_ids)[None]
    with torch.no_grad():
        out = bert.model(ids, output_hidden_states=True)
    for layer in range(4):
        np.testing.assert_allclose(
            bert_seq.hidden_states[layer], out.hidden_states[layer][0].numpy(), atol=1e-5
        )
    logits = bert.unembed(torch.from_numpy(bert_seq.hidden_states[-1]))  # the whole MLM head
    torch.testing.assert_close(logits, out.logits[0], rtol=1e-5, atol=1e-5)


def test_masked_predictions_last_layer_is_the_models_argmax(bert, bert_seq):
    result = bert_seq.masked_predictions(topk=5)
    assert result.position == 3 and result.token == " [MASK]"
    assert result.probs.shape == (4, 5) and result.token_ids.shape == (4, 5)
    with torch.no_grad():
        logits = bert.model(torch.tensor(bert_seq.token_ids)[None]).logits[0, 3]
    top = torch.softmax(logits, -1).topk(5)
    assert result.token_ids[-1].tolist() == top.indices.tolist()
    np.testing.assert_allclose(result.probs[-1], top.values.numpy(), rtol=1e-5)
    assert np.all(np.diff(result.probs, axis=1) <= 0)  # best first
    frame = result.to_frame()
    assert len(frame) == 20 and set(frame["layer"]) == {0, 1, 2, 3}
    assert result.to_dict()["token"] == " [MASK]"
    assert result.figure().data[0].z.shape == (4, 5)


def test_masked_predictions_refusals(bert, bert_seq):
    plain = bert("The cat sat on the mat.")
    with pytest.raises(PositionError, match="no \\[MASK\\]"):
        plain.masked_predictions()
    with pytest.raises(PositionError, match="outside"):
        bert_seq.masked_predictions(position=99)
    assert plain.masked_predictions(position=2).position == 2


def test_causal_views_refuse_in_one_line(bert, bert_seq):
    with pytest.raises(ModelTypeError) as info:
        bert_seq.require_causal("Layer predictions")
    message = str(info.value)
    assert "\n" not in message and "masked LM" in message and "causal" in message
    with pytest.raises(ModelTypeError, match="cannot generate"):
        bert.generate(TEXT, generate=3)
    with pytest.raises(ModelTypeError, match="encoder-decoders"):
        attention.mean_attention(bert_seq, 0, side="encoder")


def test_attention_views_work_on_an_encoder(bert_seq):
    amap = attention.rollout(bert_seq)
    np.testing.assert_allclose(amap.weights.sum(-1), 1.0, atol=1e-5)
    assert not np.allclose(np.triu(amap.weights, 1), 0)  # bidirectional: later tokens get weight
    grid = attention.attention_grid(bert_seq)
    assert grid.thumbnails.shape[:2] == (3, 4)


def test_encoder_without_head_refuses_predictions_but_captures():
    lm = tiny_bert(head=False)
    assert lm.model_type == "mlm" and lm.arch.unembedding is None and lm.arch.mlm_head is None
    seq = lm(TEXT, attention=True)
    assert seq.activations.shape == (3, 64, 10) and seq.attentions.shape == (3, 4, 10, 10)
    with pytest.raises(ModelTypeError, match="no masked-LM head") as info:
        seq.masked_predictions()
    assert "\n" not in str(info.value)


def test_causal_model_refuses_masked_predictions(tiny):
    with pytest.raises(ModelTypeError, match="layer predictions"):
        tiny("abc").masked_predictions(position=1)


def test_save_and_load_keeps_attention_layers(bert, tmp_path):
    seq = bert(TEXT, attention=True, attention_layers=[1])
    back = type(seq).load(seq.save(tmp_path / "mlm"), lm=bert)
    assert back.attention_layers == [1] and back.model_type == "mlm"
    np.testing.assert_array_equal(back.attentions, seq.attentions)


def test_a_saved_folder_loads_as_a_masked_lm(bert, tmp_path):
    import ecco_core

    bert.model.save_pretrained(tmp_path)
    bert.tokenizer.save_pretrained(tmp_path)
    lm = ecco_core.from_pretrained(str(tmp_path), device="cpu")
    try:
        assert lm.model_type == "mlm" and type(lm.model).__name__ == "BertForMaskedLM"
        seq = lm(TEXT)
        assert seq.masked_predictions(topk=3).token_ids.shape == (4, 3)
    finally:  # forget only this model; others stay cached
        from ecco_core.model import loading

        loading._models.pop((str(tmp_path), "cpu", "torch.float32"), None)


HEADS_ON_THE_MODEL = {  # masked LMs whose prediction head is parts of the model itself
    "electra": {"embedding_size": 32, "intermediate_size": 64},
    "distilbert": {"dim": 32, "n_layers": 2, "n_heads": 4, "hidden_dim": 64},
}


@pytest.mark.parametrize("family", sorted(HEADS_ON_THE_MODEL))
def test_masked_predictions_use_the_whole_head_where_it_hangs_on_the_model(family):
    """ELECTRA's generator_predictions (dense, activation, norm) and DistilBERT's vocab_transform
    chain sit before the unembedding: the last layer must give the model's own predictions."""
    from transformers import AutoConfig, AutoModelForMaskedLM

    from ecco_core.facade import LM
    from ecco_core.model.weights import LoadedWeights
    from tests.tiny import _COMMON, char_tokenizer

    shape = {
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "max_position_embeddings": 128,
    }
    config = AutoConfig.for_model(family, **_COMMON, **shape, **HEADS_ON_THE_MODEL[family])
    torch.manual_seed(0)
    model = AutoModelForMaskedLM.from_config(config).eval()
    lm = LM(LoadedWeights(model, char_tokenizer(), f"tiny-{family}", "random", ""), torch.device("cpu"))
    seq = lm("hello there")
    with torch.no_grad():
        probs = torch.softmax(model(torch.as_tensor(seq.token_ids)[None]).logits[0], -1)
    for position in range(seq.n_tokens):
        result = seq.masked_predictions(position=position, topk=3)
        top = probs[position].topk(3)
        assert result.token_ids[-1].tolist() == top.indices.tolist()
        np.testing.assert_allclose(result.probs[-1], top.values.numpy(), rtol=1e-5, atol=1e-7)
