"""The logit lens: parity with the model's own logits and with a plain per-position argsort loop."""

from __future__ import annotations

import copy
import json
import pickle

import numpy as np
import plotly.graph_objects as go
import pytest
import torch

from ecco_core.errors import EccoError, InputError, ModelTypeError, PositionError, TokenError
from ecco_core.facade import OutputSeq
from tests.tolerance import assert_rank_within_ties, assert_topk_within_ties, dot_error_bound


@pytest.fixture(scope="module")
def tiny_seq(tiny):
    return tiny.generate("hello there", generate=8)


def model_logits(lm, seq: OutputSeq) -> torch.Tensor:
    """(pos, vocab) the model's own next-token logits."""
    with torch.inference_mode():
        return lm.model(input_ids=torch.as_tensor(seq.token_ids)[None]).logits[0].float()


def argsort_rank(logits: torch.Tensor, token_id: int) -> int:
    order = torch.argsort(logits, descending=True)
    return int(torch.nonzero(order == token_id)[0, 0]) + 1


def exact_logits(lm, hidden: np.ndarray, lens_mode: str = "normed") -> tuple[torch.Tensor, torch.Tensor]:
    """(..., vocab) float64 logits of float32 residual states (..., d) and the float32 error
    bound of each (the tolerance policy's ``dot_error_bound``), for a plain norm + linear read-out."""
    arch = lm.arch
    x = torch.as_tensor(np.asarray(hidden), dtype=torch.float64)
    if lens_mode == "normed" and arch.final_norm is not None:
        x = copy.deepcopy(arch.final_norm).double()(x)
    weight = arch.unembedding.weight.detach().double()
    return x @ weight.T, dot_error_bound(x, weight)


def check_ranks_within_ties(ranks, logits: torch.Tensor, bound: torch.Tensor, tokens) -> int:
    """Assert each rank (n,) lies in its tie window over (n, vocab) exact logits; the number of
    ranks whose window is one rank (where float32 leaves no doubt)."""
    exact = 0
    for rank, row, row_bound, token in zip(ranks, logits, bound, tokens, strict=True):
        exact += assert_rank_within_ties(int(rank), row, row_bound, int(token))
    return exact


# ----- parity with the model ------------------------------------------------------------------
@pytest.mark.parametrize("name", ["tiny_seq", "eu_seq"])
def test_final_layer_matches_the_model(name, request):
    if name == "eu_seq":
        pytest.importorskip("gguf")
    seq = request.getfixturevalue(name)
    lm = seq.lm
    logits = model_logits(lm, seq)  # (pos, vocab)
    probs = torch.softmax(logits, -1).numpy()
    last = seq.n_layers
    for position in range(1, seq.n_tokens + 1):
        pred = seq.layer_predictions(position, topk=5, layer=last)
        assert pred.token_ids[0, 0] == int(logits[position - 1].argmax())
        np.testing.assert_allclose(
            pred.probs[0], probs[position - 1, pred.token_ids[0]], rtol=1e-4, atol=1e-6
        )
    ranked = seq.rankings(include_prompt=True)
    next_ids = seq.token_ids[1:]
    np.testing.assert_allclose(
        ranked.probs[-1], probs[np.arange(seq.n_tokens - 1), next_ids], rtol=1e-4, atol=1e-6
    )
    argmax = logits[:-1].argmax(-1).numpy()
    np.testing.assert_array_equal(ranked.predicted_ids[-1], argmax)
    np.testing.assert_array_equal(ranked.ranks[-1] == 1, argmax == next_ids)


# ----- parity with a plain loop ---------------------------------------------------------------
@pytest.mark.parametrize("lens_mode", ["normed", "raw"])
def test_rankings_topk_and_watch_match_a_float64_loop(tiny, tiny_seq, lens_mode):
    """Every view against a plain per-(layer, position) float64 read-out, ranks tie-aware."""
    seq = tiny_seq
    ranked = seq.rankings(include_prompt=True, lens=lens_mode)
    watch_ids = [5, 17, 40]
    for position in range(1, seq.n_tokens + 1):
        pred = seq.layer_predictions(position, topk=10, lens=lens_mode)
        watch = seq.rankings_watch(watch_ids, position=position, lens=lens_mode)
        for layer in range(seq.n_layers + 1):
            read_as = "normed" if layer == seq.n_layers else lens_mode  # the raw lens's last layer too
            logits, bound = exact_logits(tiny, seq.hidden_states[layer, position - 1], read_as)
            probs = torch.softmax(logits, -1)
            assert_topk_within_ties(pred.token_ids[layer], logits, bound)
            np.testing.assert_allclose(
                pred.probs[layer], probs[pred.token_ids[layer]].numpy(), rtol=1e-5, atol=1e-7
            )
            for rank, token in zip(watch.ranks[layer], watch_ids, strict=True):
                assert_rank_within_ties(int(rank), logits, bound, token)
            np.testing.assert_allclose(watch.probs[layer], probs[watch_ids].numpy(), rtol=1e-5, atol=1e-7)
            if position < seq.n_tokens:
                target = int(seq.token_ids[position])
                assert_rank_within_ties(int(ranked.ranks[layer, position - 1]), logits, bound, target)
                assert pred.target_ranks[layer] == ranked.ranks[layer, position - 1]  # one projection
                np.testing.assert_allclose(ranked.probs[layer, position - 1], probs[target], rtol=1e-5)
                assert_topk_within_ties([ranked.predicted_ids[layer, position - 1]], logits, bound)


@pytest.mark.parametrize("block, chunk", [(7, 5), (16, 1000)])
def test_vocabulary_blocks_and_row_chunks_give_the_float64_ranks(tiny, monkeypatch, block, chunk):
    """Blocks of odd width put each target in a different block than its rivals; ranks, top-k and
    probabilities must not depend on how the vocabulary and rows are cut."""
    from ecco_core.analysis import projection

    monkeypatch.setattr(projection, "VOCAB_BLOCK", block)
    monkeypatch.setattr(projection, "CHUNK_ROWS", chunk)
    monkeypatch.setattr(projection, "MIN_BLOCKED_ROWS", 0)
    seq = tiny.generate("blocks", generate=5)
    ranked = seq.rankings(include_prompt=True)
    exact_windows = 0
    for position in range(1, seq.n_tokens):
        pred = seq.layer_predictions(position, topk=12)
        target = int(seq.token_ids[position])
        logits, bound = exact_logits(tiny, seq.hidden_states[:, position - 1])  # (layer, vocab)
        exact_windows += check_ranks_within_ties(
            ranked.ranks[:, position - 1], logits, bound, [target] * (seq.n_layers + 1)
        )
        probs = torch.softmax(logits, -1)
        for layer in range(seq.n_layers + 1):
            assert_topk_within_ties(pred.token_ids[layer], logits[layer], bound[layer])
            np.testing.assert_allclose(
                pred.probs[layer], probs[layer, pred.token_ids[layer]].numpy(), rtol=1e-5, atol=1e-7
            )
    assert exact_windows >= 0.9 * (seq.n_tokens - 1) * (seq.n_layers + 1)


@pytest.mark.embedded
def test_blocked_projection_gives_the_float64_ranks_on_the_embedded_model(eu_seq):
    """Ranks, top-10 and probabilities of every third layer against a float64 read-out of the
    same states; a rank may sit anywhere in its float32 tie window (the tolerance policy)."""
    seq = eu_seq
    ranked = seq.rankings()
    layers = list(range(0, seq.n_layers + 1, 3))
    exact_windows, cells = 0, 0
    for i, position in enumerate(ranked.positions):
        pred = seq.layer_predictions(int(position), topk=10)
        target = int(seq.token_ids[position])
        logits, bound = exact_logits(seq.lm, seq.hidden_states[layers, int(position) - 1])  # (layers, vocab)
        exact_windows += check_ranks_within_ties(
            ranked.ranks[layers, i], logits, bound, [target] * len(layers)
        )
        cells += len(layers)
        probs = torch.softmax(logits, -1)
        for row, layer in enumerate(layers):
            assert_topk_within_ties(pred.token_ids[layer], logits[row], bound[row])
            np.testing.assert_allclose(ranked.probs[layer, i], probs[row, target], rtol=1e-4, atol=1e-12)
    assert exact_windows >= 0.7 * cells  # most ranks are beyond doubt (180 of 220): an off-by-one fails


def test_raw_and_normed_lenses_differ(tiny_seq):
    normed = tiny_seq.rankings(include_prompt=True)
    raw = tiny_seq.rankings(include_prompt=True, lens="raw")
    # a freshly initialised RMSNorm (weight 1) only rescales each state: same ranks, other probabilities
    np.testing.assert_array_equal(normed.ranks, raw.ranks)
    assert not np.allclose(normed.probs, raw.probs)


# ----- positions, layers, caching -------------------------------------------------------------
def test_output_and_prompt_positions(tiny_seq):
    seq = tiny_seq
    out = seq.rankings()
    assert out.positions.tolist() == list(range(seq.n_input_tokens, seq.n_tokens))
    assert out.ranks.shape == (seq.n_layers + 1, seq.n_output_tokens)
    assert out.tokens.tolist() == seq.tokens[seq.n_input_tokens :]
    assert out.context_tokens.tolist() == seq.tokens[seq.n_input_tokens - 1 : -1]
    both = seq.rankings(include_prompt=True)
    assert both.positions.tolist() == list(range(1, seq.n_tokens))
    np.testing.assert_array_equal(both.ranks[:, seq.n_input_tokens - 1 :], out.ranks)


def test_layer_filter(tiny_seq):
    pred = tiny_seq.layer_predictions(3, topk=4, layer=2)
    full = tiny_seq.layer_predictions(3, topk=4)
    assert pred.layers.tolist() == [2]
    np.testing.assert_array_equal(pred.token_ids[0], full.token_ids[2])
    some = tiny_seq.rankings(layer=[0, 3])
    np.testing.assert_array_equal(some.ranks, tiny_seq.rankings().ranks[[0, 3]])


def test_the_next_token_after_the_text(tiny_seq):
    n = tiny_seq.n_tokens
    pred = tiny_seq.layer_predictions(-1)
    assert pred.position == n and pred.target_id == -1 and (pred.target_ranks == -1).all()
    assert tiny_seq.rankings_watch("a").position == n
    np.testing.assert_array_equal(tiny_seq.layer_predictions(n).token_ids, pred.token_ids)


def test_projection_is_cached_per_run_and_lens(tiny, tiny_seq):
    seq = tiny.generate("abc", generate=4)
    seq.layer_predictions(2)
    summary = seq.derived.peek((seq.run_id, "lens", "normed"))
    assert summary.done.tolist() == [False, True] + [False] * (seq.n_tokens - 2)
    seq.rankings()
    assert summary.done[seq.n_input_tokens - 1 : -1].all()
    assert seq.derived.peek((seq.run_id, "lens", "normed")) is summary
    assert (seq.run_id, "lens", "raw") not in seq.derived
    assert not seq.extras  # derived results never sit beside the run's data
    seq.run_id = "another run"
    seq.rankings()
    assert seq.derived.peek((seq.run_id, "lens", "normed")) is not summary


def test_analysis_without_generation(tiny):
    seq = tiny("abcd")
    with pytest.raises(PositionError, match="generated no tokens"):
        seq.rankings()
    assert seq.rankings(include_prompt=True).positions.tolist() == [1, 2, 3]


# ----- errors ---------------------------------------------------------------------------------
def test_position_errors(tiny_seq):
    n = tiny_seq.n_tokens
    with pytest.raises(PositionError, match="no layer predicts it"):
        tiny_seq.layer_predictions(0)
    with pytest.raises(PositionError, match=f"pick 1 to {n - 1}"):
        tiny_seq.layer_predictions(n + 1)
    with pytest.raises(PositionError, match="outside"):
        tiny_seq.rankings_watch("a", position=-5)
    with pytest.raises(PositionError, match="whole number"):
        tiny_seq.layer_predictions(1.5)


def test_bad_settings(tiny_seq):
    with pytest.raises(InputError, match="topk"):
        tiny_seq.layer_predictions(1, topk=0)
    with pytest.raises(InputError, match="topk"):
        tiny_seq.layer_predictions(1, topk=51)
    with pytest.raises(InputError, match="layer"):
        tiny_seq.layer_predictions(1, layer=4)
    with pytest.raises(InputError, match="lens"):
        tiny_seq.rankings(lens="tuned")


def test_watch_errors(tiny_seq):
    with pytest.raises(TokenError, match="Nothing to watch"):
        tiny_seq.rankings_watch([])
    with pytest.raises(TokenError, match="empty string"):
        tiny_seq.rankings_watch([""])
    with pytest.raises(TokenError, match="not in the vocabulary"):
        tiny_seq.rankings_watch([10_000])
    with pytest.raises(TokenError, match=r"2 tokens .*'a' \+ 'b'"):
        tiny_seq.rankings_watch(["ab"])


def test_watch_accepts_ids_and_strings_and_drops_duplicates(tiny_seq):
    watch = tiny_seq.rankings_watch(["a", tiny_seq.lm.tokenizer.convert_tokens_to_ids("a"), " "], position=2)
    assert watch.watch_tokens.tolist() == ["a", " "]
    assert watch.ranks.shape == (tiny_seq.n_layers + 1, 2)
    assert watch.input_tokens == tiny_seq.tokens[:2]


def test_masked_lm_and_detached_runs_are_refused(tiny_seq):
    common = {"token_ids": tiny_seq.token_ids, "tokens": tiny_seq.tokens, "n_input_tokens": 3}
    mlm = OutputSeq(**common, model_type="mlm", hidden_states=tiny_seq.hidden_states, lm=tiny_seq.lm)
    with pytest.raises(ModelTypeError, match="masked LM"):
        mlm.rankings()
    loaded = OutputSeq(**common, hidden_states=tiny_seq.hidden_states)
    with pytest.raises(EccoError, match="no model attached"):
        loaded.rankings_watch("a")


SEQ2SEQ_SIZES = {
    "t5": {"d_model": 32, "d_ff": 64, "num_layers": 2, "num_decoder_layers": 2, "num_heads": 4, "d_kv": 8},
    "bart": {
        "d_model": 32,
        "encoder_layers": 2,
        "decoder_layers": 2,
        "encoder_attention_heads": 4,
        "decoder_attention_heads": 4,
        "encoder_ffn_dim": 64,
        "decoder_ffn_dim": 64,
        "max_position_embeddings": 64,
    },
}


def tiny_seq2seq(family: str):
    """A random-init encoder-decoder of ``family`` (2 + 2 layers) with the character tokenizer."""
    from transformers import AutoConfig, AutoModelForSeq2SeqLM

    from ecco_core.facade import LM
    from ecco_core.model.weights import LoadedWeights
    from tests.tiny import VOCAB, char_tokenizer

    ids = {"vocab_size": VOCAB, "pad_token_id": 3, "eos_token_id": 2, "bos_token_id": 1}
    config = AutoConfig.for_model(family, **ids, decoder_start_token_id=3, **SEQ2SEQ_SIZES[family])
    torch.manual_seed(0)
    model = AutoModelForSeq2SeqLM.from_config(config).eval()
    return LM(LoadedWeights(model, char_tokenizer(), f"tiny-{family}", "random", ""), torch.device("cpu"))


@pytest.mark.parametrize("family", ["t5", "bart"])
def test_encoder_decoder_positions_are_relative_like_ecco(family):
    lm = tiny_seq2seq(family)
    seq = lm.generate("hello", generate=4)
    n_in, first = seq.n_input_tokens, seq.n_input_tokens + 1
    with torch.inference_mode():
        logits = lm.model(
            input_ids=torch.as_tensor(seq.token_ids[:n_in])[None],
            decoder_input_ids=torch.as_tensor(seq.token_ids[n_in:])[None],
        ).logits[0]  # (dec_pos, vocab)
    ranked = seq.rankings(include_prompt=True)
    assert ranked.positions.tolist() == list(range(first, seq.n_tokens))
    assert ranked.predicted_ids[-1].tolist() == logits[:-1].argmax(-1).tolist()
    pred = seq.layer_predictions(first, topk=3)
    assert pred.context_token == seq.tokens[n_in] and pred.token_ids[-1, 0] == int(logits[0].argmax())
    watch = seq.rankings_watch([5, 6], position=-1)
    assert watch.ranks[-1].tolist() == [argsort_rank(logits[-1], i) for i in (5, 6)]
    with pytest.raises(PositionError, match="encoder's input"):
        seq.layer_predictions(n_in)


# ----- results --------------------------------------------------------------------------------
def test_results_export_and_draw(tiny_seq):
    results = [
        tiny_seq.layer_predictions(4, topk=3),
        tiny_seq.rankings(include_prompt=True),
        tiny_seq.rankings_watch(["a", "b"], position=4),
    ]
    for result in results:
        frame = result.to_frame()
        assert len(frame) == result.layers.size * (frame.shape[0] // result.layers.size)
        json.dumps(result.to_dict())
        assert isinstance(result.figure(), go.Figure)
        clone = pickle.loads(pickle.dumps(result))
        assert not any(isinstance(v, OutputSeq) for v in vars(clone).values())
    assert isinstance(results[2].figure(kind="lines"), go.Figure)
    pred = results[0].to_dict()["predictions"]
    assert len(pred) == tiny_seq.n_layers + 1 and set(pred[0][0]) == {"token", "prob", "ranking", "layer"}
    ranked = results[1].to_dict()
    assert set(ranked) >= {
        "input_tokens",
        "output_tokens",
        "rankings",
        "predicted_tokens",
        "token_found_mask",
    }
    assert np.array(ranked["rankings"]).shape == results[1].ranks.shape


def test_figures_show_ranks_and_tokens(tiny_seq):
    ranked = tiny_seq.rankings()
    heat = ranked.figure().data[0]
    assert np.array(heat.text).shape == ranked.ranks.shape
    assert heat.text[0][0] == lens_rank_text(ranked.ranks[0, 0])
    pred = tiny_seq.layer_predictions(3, topk=4)
    assert pred.figure().data[0].text[1][0] != ""


def lens_rank_text(rank: int) -> str:
    from ecco_core.figures.lens import compact_rank

    return compact_rank(int(rank))


# ----- the embedded model ---------------------------------------------------------------------
@pytest.mark.embedded
def test_croatia_becomes_the_top_prediction_only_at_the_last_layer(eu_seq):
    assert eu_seq.tokens[23] == " Croatia"
    ranked = eu_seq.rankings()
    column = list(ranked.positions).index(23)
    ranks = ranked.ranks[:, column]
    assert ranks[-1] == 1 and (ranks[:-1] > 1).all()
    assert ranks[25] > ranks[28] > 1  # it climbs in the last layers
    # over every output token, ecco's raw lens leaves the middle layers near-random (FIELD-NOTES)
    raw = eu_seq.rankings(lens="raw").ranks
    assert np.median(raw[6:25]) > 10 * np.median(ranked.ranks[6:25])


@pytest.mark.embedded
def test_watch_needs_one_token_and_offers_the_leading_space(eu_seq):
    with pytest.raises(TokenError, match=r"'Croatia' is 3 tokens.*' Croatia' \(with a leading space\)"):
        eu_seq.rankings_watch(["Croatia"], position=23)
    watch = eu_seq.rankings_watch([" Croatia", " Czech"], position=23)
    ranked = eu_seq.rankings()
    column = list(ranked.positions).index(23)
    np.testing.assert_array_equal(watch.ranks[:, 0], ranked.ranks[:, column])


@pytest.mark.embedded
def test_keys_to_the_cabinet(smol):
    seq = smol("The keys to the cabinet")
    watch = seq.rankings_watch([" is", " are"])
    logits, bound = exact_logits(smol, seq.hidden_states[-1, -1:])
    ids = watch.watch_ids
    check_ranks_within_ties(watch.ranks[-1], logits.expand(len(ids), -1), bound.expand(len(ids), -1), ids)
    assert watch.ranks[-1, 1] < watch.ranks[-1, 0]  # ' are' (the plural keys) above ' is'
    assert watch.watch_tokens.tolist() == [" is", " are"]


def test_a_saved_run_gives_the_same_lens(tiny_seq, tmp_path):
    before = tiny_seq.rankings(include_prompt=True)
    loaded = OutputSeq.load(tiny_seq.save(tmp_path / "run.npz"), lm=tiny_seq.lm)
    assert not loaded.derived.keys()
    np.testing.assert_array_equal(loaded.rankings(include_prompt=True).ranks, before.ranks)
