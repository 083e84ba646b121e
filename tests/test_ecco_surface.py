"""ecco's call surface (../shared/reference/ecco-calls.md) end to end on tiny random models:
loading flags, lm(tokenizer output), generate, the OutputSeq's ecco layouts, the views with
ecco's numbering and printJson layouts, NMF, and the idioms that refuse with a replacement."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.decomposition import NMF

import ecco_core
from ecco_core import neurons, notebook, similarity
from ecco_core.compat import EccoLM, EccoOutputSeq
from ecco_core.compat.config import ecco_config
from ecco_core.errors import EccoError, InputError, UnsupportedIdiomError
from ecco_core.facade import LM
from tests.test_encdec import tiny_enc_dec
from tests.test_mlm import TEXT as BERT_TEXT
from tests.test_mlm import tiny_bert
from tests.tiny import char_tokenizer, tiny_model
from tests.tolerance import assert_rank_within_ties, float32_tolerance

PROMPT = "hello wor"


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-llama-ecco")
    tiny_model("llama").save_pretrained(folder)
    char_tokenizer().save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def lm(tiny_folder):
    return ecco_core.from_pretrained(tiny_folder, activations=True, attention=True, verbose=False, gpu=False)


@pytest.fixture(scope="module")
def output(lm):
    return lm.generate(PROMPT, generate=4, do_sample=False, attribution=["ig", "grad_x_input", "saliency"])


@pytest.fixture(scope="module")
def model64(lm):
    return tiny_model("llama").double()


def test_spelling_decides_the_objects(tiny_folder, lm):
    assert isinstance(lm, EccoLM) and lm.collect_activations_flag and lm.device == "cpu"
    assert isinstance(ecco_core.from_pretrained(tiny_folder), EccoLM)  # ecco's bare call
    modern = ecco_core.from_pretrained(tiny_folder, device="cpu")
    assert type(modern) is LM and modern is lm.engine  # one cached model underneath
    assert ecco_core.load(tiny_folder, device="cpu") is modern
    assert isinstance(lm.model, torch.nn.Module) and lm.tokenizer is modern.tokenizer


def test_flags_are_checked(tiny_folder):
    with pytest.raises(InputError, match="gpu=False"):
        ecco_core.from_pretrained(tiny_folder, gpu=False, device="cuda")
    with pytest.raises(InputError, match="activations must be True or False"):
        ecco_core.from_pretrained(tiny_folder, activations="yes")
    with pytest.raises(InputError, match=r"activations_layer_nums \[7\]"):
        ecco_core.from_pretrained(tiny_folder, activations=True, activations_layer_nums=[0, 7])
    with pytest.raises(InputError, match="model_config must be a dict"):
        ecco_core.from_pretrained(tiny_folder, "cpu")
    with pytest.raises(InputError, match="input embeddings"):
        ecco_core.from_pretrained(tiny_folder, model_config={"embedding": "model.norm"})
    with pytest.raises(InputError, match="'mlm'"):
        ecco_core.from_pretrained(tiny_folder, model_config={"type": "mlm"})
    with pytest.raises(InputError, match="matches no module"):
        ecco_core.from_pretrained(tiny_folder, model_config={"activations": [r"no\.such"]})
    good = {
        "embedding": "model.embed_tokens.weight",
        "type": "causal",
        "activations": [r"mlp\.down_proj"],
        "token_prefix": "",
        "partial_token_prefix": "",
    }
    assert ecco_core.from_pretrained(tiny_folder, model_config=good).model_config["type"] == "causal"


def test_call_takes_the_tokenizers_output(lm):
    out = lm(lm.tokenizer([PROMPT], return_tensors="pt"))
    assert isinstance(out, EccoOutputSeq)
    assert out.tokens[0] == list(PROMPT) and out.token_ids.shape == (1, len(PROMPT))
    assert out.output_text == PROMPT and out.n_input_tokens == len(PROMPT)
    assert out.activations["decoder"].shape == (1, 3, 64, len(PROMPT))  # no generation: every position
    with pytest.raises(UnsupportedIdiomError, match="one at a time"):
        lm(lm.tokenizer([PROMPT, "hello"], return_tensors="pt", padding=True))
    with pytest.raises(UnsupportedIdiomError, match="padded"):
        lm({"input_ids": torch.tensor([[5, 6, 7]]), "attention_mask": torch.tensor([[1, 1, 0]])})
    with pytest.raises(InputError, match="input_ids"):
        lm({"ids": torch.tensor([[5]])})


def test_generate_arguments(lm):
    by_length = lm.generate(PROMPT, max_length=len(PROMPT) + 2)
    assert by_length.token_ids.shape == (1, len(PROMPT) + 2) and by_length.attribution == {}
    with pytest.raises(InputError, match="max_length"):
        lm.generate(PROMPT)  # ecco's default max_length=8 is below the 9-token prompt
    with pytest.raises(UnsupportedIdiomError, match="beam search"):
        lm.generate(PROMPT, generate=2, beam_size=3)
    with pytest.raises(UnsupportedIdiomError, match="no_repeat_ngram_size"):
        lm.generate(PROMPT, generate=2, no_repeat_ngram_size=2)
    with pytest.raises(UnsupportedIdiomError, match="DeepLift"):
        lm.generate(PROMPT, generate=2, attribution=["dl"])
    sampled = lm.generate(PROMPT, generate=3, do_sample=True, temperature=0.7, top_k=5, top_p=0.9)
    assert sampled.token_ids.shape == (1, len(PROMPT) + 3)


def test_ecco_layouts(output, model64):
    n = len(PROMPT) + 4
    assert output.tokens[0][: len(PROMPT)] == list(PROMPT) and len(output.tokens[0]) == n
    assert output.output_text.startswith(PROMPT) and len(output.output_text) == n
    ids = output.token_ids
    with torch.no_grad():
        reference = model64(ids, output_hidden_states=True).hidden_states  # (layer + 1) x (1, pos, d)
    assert output.hidden_states.shape == (4, n, 32)
    np.testing.assert_allclose(output.embedding_states[0].numpy(), reference[0][0].numpy(), atol=1e-6)
    assert output.decoder_hidden_states.shape == (3, 1, n, 32) and output.encoder_hidden_states is None
    np.testing.assert_allclose(output.decoder_hidden_states[1, 0].numpy(), reference[2][0].numpy(), atol=1e-5)
    # activations: (batch, layer, neuron, position), the positions the model read (not the last token)
    assert output.activations["decoder"].shape == (1, 3, 64, n - 1)
    assert output.attention_values.shape == (3, 1, 4, n, n)
    assert output.lm_head is output.lm.model.get_output_embeddings() and output.device == "cpu"
    assert set(output.attribution) == {"ig", "grad_x_input", "saliency"}
    for scores in output.attribution.values():
        assert [len(s) for s in scores] == list(range(len(PROMPT), n))
        np.testing.assert_allclose([s.sum() for s in scores], 1.0, atol=1e-5)


def _ecco_ig(model64, ids: torch.Tensor, target: int, steps: int = 50) -> np.ndarray:
    """ecco's IG in float64: Captum's Gauss-Legendre (50 points) from a zero embedding, the
    probability of ``target``; L2 norm over the embedding, normalised."""
    x = model64.get_input_embeddings()(ids)[None].detach()  # (1, pos, d)
    nodes, weights = np.polynomial.legendre.leggauss(steps)
    total = torch.zeros_like(x)
    for alpha, weight in zip((nodes + 1) / 2, weights / 2):
        point = (alpha * x).requires_grad_(True)
        prob = torch.softmax(model64(inputs_embeds=point).logits[0, -1], -1)[target]
        (grad,) = torch.autograd.grad(prob, point)
        total += weight * grad
    norm = (total * x)[0].norm(dim=-1)
    return (norm / norm.sum()).numpy()


def test_ig_has_eccos_settings(output, model64):
    ids = output.token_ids[0]
    for i, position in enumerate(range(len(PROMPT), len(ids))):
        reference = _ecco_ig(model64, ids[:position], int(ids[position]))
        np.testing.assert_allclose(output.attribution["ig"][i], reference, atol=1e-5)


def test_rankings_equal_eccos_cell_for_cell(output, model64):
    """ecco's rankings: each block's raw output through the unembedding, the last layer the
    model's own logits; rows are blocks (no embedding row)."""
    ids = output.token_ids
    data = output.rankings(printJson=True)
    ranks = data["rankings"]
    n_layers = 3
    assert ranks.shape == (n_layers, 4) and ranks.dtype == np.int32
    with torch.no_grad():
        out = model64(ids, output_hidden_states=True)
    head = model64.get_output_embeddings()
    single = 0
    for layer in range(n_layers):
        for j, position in enumerate(range(len(PROMPT), ids.shape[1])):
            state = out.hidden_states[layer + 1][0, position - 1]
            logits = out.logits[0, position - 1] if layer == n_layers - 1 else head(state)
            bound = float32_tolerance(n_layers) * logits.abs().max() * torch.ones_like(logits)
            single += assert_rank_within_ties(int(ranks[layer, j]), logits, bound, int(ids[0, position]))
    assert single >= 0.8 * ranks.size
    assert data["output_tokens"] == [repr(t) for t in output.tokens[0][len(PROMPT) :]]
    assert data["input_tokens"] == [repr(t) for t in output.tokens[0][len(PROMPT) - 1 : -1]]
    np.testing.assert_array_equal(data["token_found_mask"], (ranks != 1).astype(float))


def test_layer_predictions_number_layers_like_ecco(output):
    position = len(PROMPT) + 1
    every = output.layer_predictions(position=position, topk=3)
    assert every.layers.tolist() == [0, 1, 2] and every.lens == "ecco"
    assert "0 = first block" in every.figure().layout.yaxis.title.text  # the picture says so too
    last = output.layer_predictions(position=position, topk=3, layer=2, printJson=True)
    assert [row["layer"] for row in last[0]] == [2, 2, 2] and [row["ranking"] for row in last[0]] == [1, 2, 3]
    assert set(last[0][0]) == {"token", "prob", "ranking", "layer"} and isinstance(last[0][0]["prob"], str)
    assert last[0][0]["token"] == output.tokens[0][position]  # greedy: the model's own top token
    with pytest.raises(InputError, match="ecco's numbering"):
        output.layer_predictions(position=position, layer=3)


def test_rankings_watch(output):
    ids = [5, 9]
    data = output.rankings_watch(watch=ids, position=len(PROMPT), printJson=True)
    assert data["rankings"].shape == (3, 2)
    assert data["output_tokens"] == [repr(output.tokenizer.decode([i])) for i in ids]
    assert data["input_tokens"] == [t.strip() for t in output.tokens[0]]
    last = output.rankings_watch(watch=ids)  # -1: where the last token was predicted (ecco's meaning)
    assert last.position == len(output.tokens[0]) - 1
    with pytest.raises(InputError, match="watch"):
        output.rankings_watch()


def test_primary_attributions(output):
    data = output.primary_attributions("ig", style="detailed", ignore_tokens=[0, 1], printJson=True)
    assert [len(a) for a in data["attributions"]] == [len(s) for s in output.attribution["ig"]]
    assert all(a[0] == 0 and a[1] == 0 for a in data["attributions"])
    token = data["tokens"][2]
    assert set(token) == {"token", "token_id", "is_partial", "type", "value", "position"}
    assert token["value"] == str(output.attribution["ig"][0][2]) and data["tokens"][-1]["type"] == "output"
    minimal, detailed = output.saliency()._repr_html_(), output.saliency(style="detailed")._repr_html_()
    assert 'class="ecco-detail"' in detailed and "ecco-detail" not in minimal
    with pytest.raises(InputError, match="style"):
        output.saliency(style="fancy")


def test_nmf_is_eccos(output):
    nmf = output.run_nmf(n_components=3, from_layer=0, to_layer=2)
    acts = output.activations["decoder"][0]  # (layer, neuron, pos)
    matrix = np.concatenate([acts[0], acts[1]], axis=0)  # (neuron x layer, pos), ecco's stacking
    reference = NMF(n_components=3, init="random", random_state=0, max_iter=500).fit_transform(
        np.maximum(matrix, 0).T
    )
    np.testing.assert_allclose(nmf.components, reference.T, rtol=1e-6, atol=1e-9)
    assert isinstance(nmf.model, NMF)
    data = nmf.explore(printJson=True)
    factors = np.asarray(data["factors"][0])  # (factor, token): the last prompt value repeated
    n_in = output.n_input_tokens
    assert factors.shape == (3, len(output.tokens[0]))
    np.testing.assert_allclose(factors[:, n_in], nmf.components[:, n_in - 1])
    assert "eccoFactors" in nmf.explore()._repr_html_()
    notebook.reset_plotly()  # plotly.js is embedded in a kernel's first figure only (earlier tests drew)
    assert "<svg" in nmf.plot()._repr_html_()
    assert output.run_nmf(n_components=99).n_components == len(output.tokens[0]) - 1
    with pytest.raises(InputError, match="have recorded activations"):
        output.run_nmf(from_layer=0, to_layer=5)


def test_unsupported_idioms_name_the_replacement(lm, output):
    with pytest.raises(UnsupportedIdiomError, match="ecco_core.attention"):
        output.attention(layer=0)
    plain = ecco_core.from_pretrained(lm.engine.name, gpu=False).generate(PROMPT, generate=2)
    assert plain.activations == {}
    with pytest.raises(EccoError, match="activations=True"):
        plain.run_nmf()
    no_states = EccoLM(lm.engine, lm.model_config, hidden_states=False).generate(PROMPT, generate=1)
    with pytest.raises(EccoError, match="hidden_states=True"):
        no_states.rankings()


def test_engine_spelling_keeps_its_meaning(output):
    """The engine's run under the ecco object: its own layouts, and ecco's IG by preset."""
    run = output.run
    assert run.tokens == list(output.output_text) and run.output_text == output.output_text[len(PROMPT) :]
    assert run.activations.shape == (3, 64, len(run.tokens))
    ecco_ig = run.saliency("ig", preset="ecco")
    first = ecco_ig.row(len(PROMPT))[: len(PROMPT)]
    np.testing.assert_allclose(first, output.attribution["ig"][0], atol=1e-7)
    assert run.saliency("ig").n_steps == 16  # the engine's own default stays
    with pytest.raises(InputError, match="preset"):
        run.saliency("ig", preset="captum")
    with pytest.raises(UnsupportedIdiomError, match="to_dict"):
        run.rankings(printJson=True)  # never silently ignored


def test_every_result_shows_itself(output):
    """Short text and self-contained HTML for the engine's results and both OutputSeq types."""
    run = output.run
    for result in (
        run.rankings(),
        run.layer_predictions(position=10),
        run.rankings_watch([5, 9]),
        neurons.top_neurons(run, position=10),
        similarity.layer_similarity(run, method="cka"),
    ):
        bundle = result._repr_mimebundle_()
        assert "Plotly.newPlot" in bundle["text/html"] and len(bundle["text/plain"]) < 600
    for seq in (run, output):
        bundle = seq._repr_mimebundle_()
        assert 'class="ecco-text"' in bundle["text/html"] and len(bundle["text/plain"]) < 300


def test_masked_lm_as_eccos_bert_notebooks():
    """ecco's BERT notebooks: lm(tokenizer output), activations under 'encoder', NMF over every
    layer, and the CCA notebook's hidden-state slicing."""
    bert = tiny_bert(head=True)
    lm = EccoLM(bert, ecco_config(bert, None), activations=True)
    assert lm.model_config["partial_token_prefix"] == "##"
    out = lm(lm.tokenizer([BERT_TEXT], return_tensors="pt"))
    assert out.tokens[0] == ["[CLS]", "the", "cat", "[MASK]", "on", "the", "mat", "##s", ".", "[SEP]"]
    assert out.activations["encoder"].shape == (1, 3, 64, 10)
    hidden = out._get_encoder_hidden_states()
    embed = out.embedding_states.detach().numpy()[0, :, :].T  # (d, position): ecco's slicing
    layer_0 = [layer.detach().numpy()[0, :, :].T for layer in hidden][0]
    run = out.run
    assert ecco_core.analysis.cka(embed, layer_0) == pytest.approx(
        similarity.linear_cka(run.hidden_states[0], run.hidden_states[1]), abs=1e-9
    )
    assert out.run_nmf(n_components=3).components.shape == (3, 10)
    with pytest.raises(EccoError, match="masked LM"):
        out.rankings()


def test_encoder_decoder_as_eccos_t5_example():
    t5 = tiny_enc_dec("t5")
    lm = EccoLM(t5, ecco_config(t5, None), activations=True)
    out = lm.generate("hello", generate=2, attribution=["ig"])
    n_enc = out.n_input_tokens
    assert n_enc == 5 and len(out.tokens[0]) == n_enc + 3  # the decoder's start token + 2
    assert [len(s) for s in out.attribution["ig"]] == [n_enc + 1, n_enc + 2]  # encoder + decoder before
    data = out.primary_attributions(attr_method="ig", ignore_tokens=[0, 1], printJson=True)
    assert all(a[0] == 0 and a[1] == 0 for a in data["attributions"])
    assert out.encoder_hidden_states.shape[:3] == (3, 1, n_enc) and out.decoder_hidden_states.shape[2] == 3
    assert out.activations["decoder"].shape[-1] == 2  # the decoder positions the model read
    with pytest.raises(EccoError, match="side='encoder'"):
        out.run_nmf()
