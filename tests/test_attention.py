"""Attention: capture (hooks, layer subsets), head / mean / rollout maps, the head grid, the text view."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from ecco_core.analysis import attention
from ecco_core.analysis.attention import rollout_matrices
from ecco_core.errors import AttentionMissingError, InputError, ModelTypeError
from ecco_core.highlight import attention_text_html
from ecco_core.model.capture import hook_count


@pytest.fixture(scope="module")
def seq(tiny):
    return tiny.generate("hello", generate=4, attention=True)


def test_hooked_attention_equals_the_models_own(tiny_family):
    """Weights read by hooks on the attention modules equal output_attentions=True, per family."""
    lm = tiny_family
    ids = torch.tensor([5, 6, 7, 8, 9, 10])
    seq = lm(ids, attention=True)
    previous = lm.model.config._attn_implementation
    lm.model.set_attn_implementation("eager")
    try:
        with torch.no_grad():
            out = lm.model(ids[None], output_attentions=True)
    finally:
        lm.model.set_attn_implementation(previous)
    reference = torch.stack([a[0] for a in out.attentions]).numpy()  # (layer, head, pos, pos)
    np.testing.assert_allclose(seq.attentions, reference, atol=1e-6)
    np.testing.assert_allclose(seq.attentions.sum(-1), 1.0, atol=1e-5)
    assert hook_count(lm.arch) == 0
    assert lm.model.config._attn_implementation == previous  # the fast kernel is back


def test_attention_layers_keeps_only_those(tiny, seq):
    part = tiny(seq.token_ids, attention=True, attention_layers=[2, 0])
    assert part.attention_layers == [0, 2] and part.attentions.shape[0] == 2
    full = tiny(seq.token_ids, attention=True)
    np.testing.assert_array_equal(part.attentions, full.attentions[[0, 2]])
    with pytest.raises(InputError, match="Layers \\[7\\]"):
        tiny(seq.token_ids, attention=True, attention_layers=[7])


def test_no_attention_without_asking(tiny):
    plain = tiny("abc")
    assert plain.attentions is None and plain.attention_layers == []
    with pytest.raises(AttentionMissingError, match="Capture attention"):
        attention.mean_attention(plain, 0)


def test_head_and_mean_rows_sum_to_one(seq):
    head = attention.head_attention(seq, layer=1, head=2)
    np.testing.assert_array_equal(head.weights, seq.attentions[1, 2])
    mean = attention.mean_attention(seq, layer=-1)
    assert mean.layer == 2
    np.testing.assert_allclose(mean.weights, seq.attentions[2].mean(0), atol=1e-7)
    for amap in (head, mean, attention.rollout(seq)):
        np.testing.assert_allclose(amap.weights.sum(-1), 1.0, atol=1e-5)
        assert np.allclose(np.triu(amap.weights, 1), 0)  # causal: nothing from the future


def test_rollout_on_a_hand_made_three_token_example():
    a0 = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0], [0.2, 0.3, 0.5]])
    a1 = np.array([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    # add the identity and renormalise rows: (A + I) / 2 here, since every row of A sums to 1
    r0 = np.array([[1.0, 0.0, 0.0], [0.25, 0.75, 0.0], [0.1, 0.15, 0.75]])
    # layer 1 after the same step: [[1, 0, 0], [0.5, 0.5, 0], [0, 0, 1]]
    r1 = np.array(  # that step @ r0, by hand
        [[1.0, 0.0, 0.0], [0.5 + 0.125, 0.375, 0.0], [0.1, 0.15, 0.75]]
    )
    out = rollout_matrices(np.stack([a0, a1]))
    np.testing.assert_allclose(out[0], r0)
    np.testing.assert_allclose(out[1], r1)
    np.testing.assert_allclose(out.sum(-1), 1.0)


def test_rollout_from_a_run_equals_a_plain_loop(seq):
    joint = np.eye(seq.n_tokens)
    for layer in range(3):
        step = seq.attentions[layer].mean(0) + np.eye(seq.n_tokens)
        joint = (step / step.sum(-1, keepdims=True)) @ joint
    np.testing.assert_allclose(attention.rollout(seq).weights, joint, atol=1e-6)
    np.testing.assert_allclose(
        attention.rollout(seq, layer=0).weights, rollout_matrices(seq.attentions[:1].mean(1))[0]
    )


def test_rollout_refuses_a_gap_in_the_layers(tiny, seq):
    part = tiny(seq.token_ids, attention=True, attention_layers=[1, 2])
    with pytest.raises(InputError, match="every layer from 0"):
        attention.rollout(part)
    with pytest.raises(InputError, match="holds layers 1, 2"):
        attention.mean_attention(part, 0)


def test_bad_requests_are_clear(seq):
    with pytest.raises(InputError, match="heads 0..3"):
        attention.head_attention(seq, 0, 9)
    with pytest.raises(InputError, match="aggregation"):
        attention.attention(seq, method="max")
    with pytest.raises(ModelTypeError, match="encoder-decoders"):
        attention.mean_attention(seq, 0, side="cross")


def test_grid_statistics_and_thumbnails(seq):
    grid = attention.attention_grid(seq)
    n = seq.n_tokens
    assert grid.thumbnails.shape == (3, 4, n, n) and not grid.pooled
    np.testing.assert_array_equal(grid.thumbnails, seq.attentions)
    np.testing.assert_allclose(grid.to_first, seq.attentions[..., 0].mean(-1), atol=1e-6)
    prev = np.array(
        [[np.mean([seq.attentions[L, h, i, i - 1] for i in range(1, n)]) for h in range(4)] for L in range(3)]
    )
    np.testing.assert_allclose(grid.to_previous, prev, atol=1e-6)
    frame = grid.to_frame()
    assert list(frame.columns[:2]) == ["layer", "head"] and len(frame) == 12
    assert len(grid.to_dict()["heads"]) == 12
    fig = grid.figure()
    assert fig.data[1].customdata.shape == (12, 4)  # click targets: layer, head, entropy, to_first


def test_long_runs_are_max_pooled():
    maps = np.random.default_rng(0).random((2, 3, 50, 50)).astype(np.float32)
    small = attention.pooled(maps, size=24)
    assert small.shape == (2, 3, 24, 24)
    bins = np.array_split(np.arange(50), 24)
    assert small[1, 2, 5, 7] == maps[1, 2][np.ix_(bins[5], bins[7])].max()


def test_results_pickle_and_serialise(seq):
    amap = attention.attention(seq, "head", layer=0, head=1)
    back = pickle.loads(pickle.dumps(amap))
    np.testing.assert_array_equal(back.weights, amap.weights)
    frame = amap.to_frame()
    assert len(frame) == seq.n_tokens**2 and frame["weight"].sum() == pytest.approx(seq.n_tokens, abs=1e-4)
    assert amap.to_dict()["head"] == 1
    fig = amap.figure()
    assert fig.data[0].z.shape == (seq.n_tokens, seq.n_tokens)
    assert amap.top_keys(0, 1)[0][0] == 0  # the first token can only attend to itself


def test_text_view_is_escaped():
    html = attention_text_html(["<b>", "x"], np.array([0.25, 0.75]), query=1, titles=["<i>", "y"])
    assert "<b>" not in html and "&lt;b&gt;" in html and "&lt;i&gt;" in html
    assert "outline:2px solid" in html


def test_layers_within_budget_keeps_all_when_they_fit_and_spreads_them_when_not():
    from ecco_core.analysis.attention import layers_within_budget

    assert layers_within_budget(30, 9, 100) is None  # 30 x 0.34 MB fits in 384 MB
    kept = layers_within_budget(30, 9, 1000)  # 34.3 MB a layer: 11 layers fit
    assert len(kept) == 11 and kept[0] == 0 and kept[-1] == 29
    assert layers_within_budget(30, 9, 5000) == [29]  # not even one layer fits: keep the last


HIDDEN_ATTENTION = {  # families whose attention weights never reach a hook on the attention module
    "falcon": ("causal", {"new_decoder_architecture": False}),  # refuses a run-time switch to eager
    "deberta-v2": ("mlm", {"intermediate_size": 64}),  # returns weights only with output_attentions
}


@pytest.mark.parametrize("family", sorted(HIDDEN_ATTENTION))
def test_attention_comes_from_output_attentions_where_hooks_see_none(family):
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForMaskedLM

    from ecco_core.facade import LM
    from ecco_core.model.weights import LoadedWeights
    from tests.tiny import _COMMON, char_tokenizer

    kind, extra = HIDDEN_ATTENTION[family]
    shape = {
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "max_position_embeddings": 128,
    }
    config = AutoConfig.for_model(family, **_COMMON, **shape, **extra)
    torch.manual_seed(0)
    model = (AutoModelForCausalLM if kind == "causal" else AutoModelForMaskedLM).from_config(config).eval()
    lm = LM(LoadedWeights(model, char_tokenizer(), f"tiny-{family}", "random", ""), torch.device("cpu"))
    seq = lm("hello there", attention=True)
    with torch.no_grad():
        returned = model(torch.as_tensor(seq.token_ids)[None], output_attentions=True).attentions
    assert seq.attention_layers == [0, 1] and lm.model_type == kind
    np.testing.assert_allclose(seq.attentions, torch.stack([a[0] for a in returned]).numpy(), atol=1e-6)
    np.testing.assert_allclose(seq.attentions.sum(-1), 1.0, atol=1e-5)
    assert lm("hello there", attention=True, attention_layers=[1]).attention_layers == [1]
