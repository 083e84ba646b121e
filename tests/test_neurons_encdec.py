"""Neurons and layer similarity on encoder-decoders (tiny random T5 / BART): each stack on its own tokens."""

from __future__ import annotations

import numpy as np
import pytest

from ecco_app import state as app
from ecco_core.analysis import neurons, similarity
from ecco_core.errors import EccoError, ModelTypeError, PositionError
from ecco_core.facade import OutputSeq
from tests.app_helpers import new_app, open_page
from tests.test_encdec import PROMPT, tiny_enc_dec

N_ENC, N_DEC = 5, 6  # "hello"; the decoder start token + 5 generated
LAYERS = {"encoder": 3, "decoder": 2}


@pytest.fixture(scope="module", params=["t5", "bart"])
def seq(request) -> OutputSeq:
    return tiny_enc_dec(request.param).generate(PROMPT, generate=N_DEC - 1)


def side_arrays(seq: OutputSeq, side: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(layer, neuron, pos) activations, (layer + 1, pos, d) hidden states and tokens of one stack."""
    if side == "encoder":
        enc = seq.extras["encoder"]
        return enc["activations"], enc["hidden_states"], list(PROMPT)
    return seq.activations, seq.hidden_states, seq.tokens[N_ENC:]


def causal_copy(seq: OutputSeq, side: str) -> OutputSeq:
    """A plain (causal-layout) run holding one stack's arrays: the reference the side must equal."""
    acts, hidden, tokens = side_arrays(seq, side)
    return OutputSeq(
        token_ids=np.arange(len(tokens)),
        tokens=tokens,
        n_input_tokens=len(tokens),
        hidden_states=hidden,
        activations=acts,
        activation_layers=list(range(acts.shape[0])),
    )


def test_stack_is_one_sides_arrays_and_tokens(seq):
    decoder, encoder = seq.stack("decoder"), seq.stack("encoder")
    assert encoder.tokens == list(PROMPT) and encoder.n_input_tokens == N_ENC
    assert decoder.tokens == seq.state_tokens and decoder.n_tokens == N_DEC and decoder.n_input_tokens == 1
    assert decoder.activations.shape[2] == N_DEC and encoder.activations.shape[2] == N_ENC
    assert decoder.special.tolist() == [True] + [False] * (N_DEC - 1)  # the decoder start token
    assert not encoder.special.any()
    with pytest.raises(EccoError, match="side must be"):
        seq.stack("cross")


@pytest.mark.parametrize("side", ["decoder", "encoder"])
@pytest.mark.parametrize("method", ["nmf", "pca"])
def test_run_nmf_factorises_that_sides_activations(seq, side, method):
    acts, _, tokens = side_arrays(seq, side)
    result = neurons.run_nmf(seq, 3, method=method, side=side)
    reference = neurons.run_nmf(causal_copy(seq, side), 3, method=method)
    assert result.components.shape == (3, len(tokens)) and result.full_components().shape == (3, len(tokens))
    assert result.loadings.shape == (3, LAYERS[side], acts.shape[1])
    np.testing.assert_array_equal(result.components, reference.components)
    np.testing.assert_array_equal(result.loadings, reference.loadings)
    assert result.tokens == tokens and result.side == side
    assert result.explore()["tokens"] == tokens and result.to_dict()["side"] == side
    assert result.to_frame()["token"].tolist() == tokens * 3
    assert len(result.strongest_factor()) == len(tokens)
    skipped = neurons.run_nmf(seq, 2, side=side, skip_first=True, from_layer=1)
    assert skipped.positions.tolist() == list(range(1, len(tokens))) and skipped.layers == list(
        range(1, LAYERS[side])
    )


def test_positions_follow_the_side(seq):
    """The decoder's 'output' is its generated tokens; the encoder has none."""
    output = neurons.run_nmf(seq, 2, positions="output")
    assert output.positions.tolist() == list(range(1, N_DEC))
    assert neurons.run_nmf(seq, 2, positions="input", side="encoder").positions.tolist() == list(range(N_ENC))
    with pytest.raises(PositionError, match="no generated tokens on the encoder side"):
        neurons.run_nmf(seq, 2, positions="output", side="encoder")


@pytest.mark.parametrize("side", ["decoder", "encoder"])
def test_top_neurons_and_trace_index_that_side(seq, side):
    acts, _, tokens = side_arrays(seq, side)
    for position in (0, 2, -1):
        top = neurons.top_neurons(seq, position, k=5, side=side)
        column = acts[:, :, position].ravel()  # (layer * neuron,)
        expected = np.argsort(-column, kind="stable")[:5]
        layer, neuron = np.unravel_index(expected, acts.shape[:2])
        np.testing.assert_array_equal(top.layers, layer)
        np.testing.assert_array_equal(top.neurons, neuron)
        np.testing.assert_array_equal(top.values, column[expected])
        assert top.token == tokens[position] and top.to_dict()["side"] == side
    with pytest.raises(PositionError, match=f"0..{len(tokens) - 1}"):
        neurons.top_neurons(seq, len(tokens), side=side)
    last = LAYERS[side] - 1
    trace = neurons.neuron_activations(seq, layer=last, neuron=7, side=side)
    np.testing.assert_array_equal(trace.values, acts[last, 7])
    assert trace.tokens == tokens and trace.to_frame()["token"].tolist() == tokens
    with pytest.raises(EccoError, match="not captured"):
        neurons.neuron_activations(seq, layer=LAYERS[side], neuron=0, side=side)


@pytest.mark.parametrize("side", ["decoder", "encoder"])
def test_layer_similarity_compares_that_sides_layers(seq, side):
    acts, hidden, tokens = side_arrays(seq, side)
    cka = similarity.layer_similarity(seq, "cka", "hidden", side=side)
    assert cka.matrix.shape == (LAYERS[side] + 1,) * 2 and cka.n_positions == len(tokens) - 1
    assert (
        cka.side == side
        and cka.to_dict()["side"] == side
        and f"{side} layers" in cka.figure().layout.title.text
    )
    assert cka.figure().layout.xaxis.type == "category"  # 'emb', '1', '2': labels, not a number line
    for i, j in [(0, 1), (1, LAYERS[side])]:  # a plain pairwise reference
        assert cka.matrix[i, j] == pytest.approx(
            similarity.linear_cka(hidden[i, 1:], hidden[j, 1:]), abs=1e-9
        )
    ffn = similarity.layer_similarity(seq, "cca", "ffn", side=side, skip_first=False)
    assert ffn.matrix.shape == (LAYERS[side],) * 2 and ffn.n_positions == len(tokens)
    x, y = acts[0].T, acts[-1].T  # (pos, neuron)
    assert ffn.matrix[0, -1] == pytest.approx(similarity.mean_cca(x, y), abs=1e-9)
    reference = similarity.layer_similarity(causal_copy(seq, side), "pwcca", "hidden")
    np.testing.assert_allclose(similarity.layer_similarity(seq, "pwcca", side=side).matrix, reference.matrix)


def test_the_encoder_side_needs_no_generation():
    lm = tiny_enc_dec("t5")
    seq = lm(PROMPT)  # the decoder reads only its start token
    assert neurons.run_nmf(seq, 2, side="encoder").components.shape == (2, N_ENC)
    assert similarity.layer_similarity(seq, side="encoder").matrix.shape == (4, 4)
    with pytest.raises(EccoError):
        neurons.run_nmf(seq, 2)
    with pytest.raises(EccoError, match="decoder side"):
        similarity.layer_similarity(seq)


def test_causal_runs_are_unchanged(tiny):
    seq = tiny("The keys to the cabinet")
    plain = seq.stack()
    assert plain.name == "" and plain.tokens == seq.tokens and plain.n_input_tokens == seq.n_input_tokens
    result = neurons.run_nmf(seq, 3)
    assert result.side == "" and result.tokens == seq.tokens and result.components.shape[1] == seq.n_tokens
    assert similarity.layer_similarity(seq).side == ""
    with pytest.raises(ModelTypeError, match="no separate encoder"):
        neurons.run_nmf(seq, 3, side="encoder")


# ----- the pages' Stack picker ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def t5_app():
    at = new_app()
    at.session_state[app.SEQ] = tiny_enc_dec("t5").generate(PROMPT, generate=N_DEC - 1)
    at.run()
    return at


def markdown_text(at) -> str:
    return " ".join(m.value for m in at.markdown)


def test_factor_page_switches_stacks(t5_app):
    at = open_page(t5_app, "ecco_app/views/factors.py")
    assert not at.exception and not at.error
    assert at.radio(key="factors_side").options == ["Decoder", "Encoder"]
    assert not [r for r in at.radio if r.key == "factors_positions"]  # each stack has one kind of token
    html = markdown_text(at).split("ecco-text")[1]
    assert 'data-pos="0">&lt;pad&gt;<' in html and f'data-pos="{N_DEC - 1}">' in html  # the decoder's
    assert f'data-pos="{N_DEC}"' not in html
    at.radio(key="factors_side").set_value("encoder").run()
    assert not at.exception and not at.error
    html = markdown_text(at).split("ecco-text")[1]
    assert all(f'data-pos="{p}">{c}<' in html for p, c in enumerate(PROMPT)) and "&lt;pad&gt;" not in html


def test_neuron_page_lists_the_encoders_neurons(t5_app):
    at = open_page(t5_app, "ecco_app/views/neurons.py")
    assert not at.exception and not at.error
    at.radio(key="neurons_side").set_value("encoder").run()
    box = next(s for s in at.selectbox if s.key and s.key.startswith("neurons_position"))
    assert box.options == [f"{p}: {c!r} (prompt)" for p, c in enumerate(PROMPT)]
    box.set_value(1).run()
    at.toggle(key="neurons_relative").set_value(False).run()
    assert not at.exception and not at.error
    acts = at.session_state[app.SEQ].extras["encoder"]["activations"]  # (layer, neuron, enc_pos)
    column = acts[:, :, 1].ravel()
    frame = at.dataframe[0].value
    assert frame["activation"].to_numpy() == pytest.approx(np.sort(column)[::-1][: len(frame)], rel=1e-6)


def test_similarity_page_compares_encoder_layers(t5_app):
    at = open_page(t5_app, "ecco_app/views/similarity.py")
    assert not at.exception and not at.error
    at.radio(key="similarity_side").set_value("encoder").run()
    assert not at.exception and not at.error
    assert "encoder layers" in at.get("plotly_chart")[0].proto.spec
