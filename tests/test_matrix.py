"""The architecture matrix: one tiny random-drawn model per family (tests/matrix_models.py), loaded
from a folder with ``ecco_core.from_pretrained``, every view of its kind checked against
transformers in float64 (the tolerance policy, tests/README.md); views of another kind must refuse
with a ModelTypeError that says why. Each family's model is built once (module-scoped fixture)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch

import ecco_core
from ecco_core.analysis import attention, neurons, similarity
from ecco_core.errors import ModelTypeError
from ecco_core.model import loading
from tests.matrix_models import FAMILIES, FFN_SITE, MOE, float64_copy, save
from tests.test_attribution import loop_gradients
from tests.test_attribution_encdec import _loop_reference
from tests.tolerance import float32_tolerance, relative_error

PROMPT = "hello world"
N_NEW = 3


@dataclass
class Case:
    family: str
    lm: object
    model64: torch.nn.Module
    seq: object

    @property
    def tol(self) -> float:
        """float32's relative error through the model (both stacks of an encoder-decoder)."""
        return float32_tolerance(2 * self.seq.n_layers)


def _case(family: str, tmp_path_factory) -> Case:
    folder = str(save(family, tmp_path_factory.mktemp(family.replace("-", "_"))))
    lm = ecco_core.from_pretrained(folder, device="cpu")
    if FAMILIES[family] == "mlm":
        seq = lm(PROMPT, attention=True)
    else:
        seq = lm.generate(PROMPT, generate=N_NEW, attention=True)
    case = Case(family, lm, float64_copy(lm.model), seq)
    for key in [k for k in loading._models if k[0] == folder]:
        loading._models.pop(key)  # the test holds it; the process cache stays small
    return case


def _of_kind(kind: str) -> list[str]:
    return sorted(f for f, k in FAMILIES.items() if k == kind)


@pytest.fixture(scope="module", params=_of_kind("causal"))
def causal(request, tmp_path_factory) -> Case:
    return _case(request.param, tmp_path_factory)


@pytest.fixture(scope="module", params=_of_kind("mlm"))
def mlm(request, tmp_path_factory) -> Case:
    return _case(request.param, tmp_path_factory)


@pytest.fixture(scope="module", params=_of_kind("enc-dec"))
def encdec(request, tmp_path_factory) -> Case:
    return _case(request.param, tmp_path_factory)


# ----- references ---------------------------------------------------------------------------------


def reference(case: Case, **kwargs):
    """The float64 model's own output on the run's tokens (decoder side for encoder-decoders)."""
    ids = torch.as_tensor(case.seq.token_ids)
    with torch.no_grad():
        if case.seq.model_type != "enc-dec":
            return case.model64(input_ids=ids[None], use_cache=False, **kwargs)
        n = case.seq.n_input_tokens
        pair = {"input_ids": ids[None, :n], "decoder_input_ids": ids[None, n:]}
        return case.model64(**pair, use_cache=False, **kwargs)


def check_read_out(case: Case) -> None:
    """Last-layer logits (the one read-out) and probabilities of both lens modes equal the model's."""
    seq, lm = case.seq, case.lm
    logits64 = reference(case).logits[0]  # (pos, vocab)
    with torch.no_grad():
        mine = lm.unembed(torch.from_numpy(seq.hidden_states[-1])).double()
    assert relative_error(mine.numpy(), logits64.numpy()) <= case.tol, case.family
    bound = case.tol * float(logits64.abs().max())  # float32's logit error
    probs64 = logits64.softmax(-1).numpy()
    start = seq.n_input_tokens if seq.model_type == "enc-dec" else 0
    for lens in ("normed", "raw"):
        ranked = seq.rankings(include_prompt=True, lens=lens)
        rows = ranked.positions - start - 1  # the state that predicts each ranked token
        expected = probs64[rows, ranked.token_ids]
        np.testing.assert_allclose(ranked.probs[-1], expected, rtol=3 * bound, atol=1e-7, err_msg=lens)
        last = seq.layer_predictions(seq.n_tokens - 1, topk=3, layer=seq.n_layers, lens=lens)
        row = probs64[seq.n_tokens - 2 - start]
        np.testing.assert_allclose(last.probs[0], row[last.token_ids[0]], rtol=3 * bound, atol=1e-7)
        assert row[last.token_ids[0, 0]] >= row.max() * (1 - 3 * bound)  # top-1 within float32's ties
        watch = seq.rankings_watch([5, 9], position=seq.n_tokens - 1, lens=lens)
        np.testing.assert_allclose(watch.probs[-1], row[[5, 9]], rtol=3 * bound, atol=1e-7)


def check_generation(case: Case) -> None:
    """Each generated token is the argmax of the model's own logits (within float32's ties)."""
    seq = case.seq
    logits64 = reference(case).logits[0].numpy()  # (pos, vocab)
    bound = 4 * case.tol * float(np.abs(logits64).max())
    start = seq.n_input_tokens if seq.model_type == "enc-dec" else 0
    first = seq.n_input_tokens + (1 if seq.model_type == "enc-dec" else 0)
    assert seq.n_tokens - first == N_NEW
    for p in range(first, seq.n_tokens):
        row = logits64[p - 1 - start]
        assert row[seq.token_ids[p]] >= row.max() - bound, (case.family, p)


def site_inputs(model: torch.nn.Module, blocks, name: str, run) -> torch.Tensor:
    """(layer, neuron, pos) inputs of the module ``name`` in every block, seen by plain hooks."""
    seen = {}
    handles = [
        block.get_submodule(name).register_forward_pre_hook(
            lambda _m, args, i=i: seen.__setitem__(i, args[0].reshape(-1, args[0].shape[-1]))
        )
        for i, block in enumerate(blocks)
    ]
    try:
        run()
    finally:
        for handle in handles:
            handle.remove()
    return torch.stack([seen[i].T for i in range(len(blocks))])


def stacks64(case: Case) -> dict[str, object]:
    """The float64 copy's block lists, found by what the model says they are."""
    model = case.model64
    if case.seq.model_type == "enc-dec":
        return {"encoder": _blocks(model.get_encoder()), "decoder": _blocks(model.get_decoder())}
    return {"": _blocks(model)}


def _blocks(module: torch.nn.Module):
    lists = [m for n, m in module.named_modules() if isinstance(m, torch.nn.ModuleList) and len(m) == 2]
    return lists[0]


def check_neurons(case: Case) -> None:
    """Captured FFN activations equal the input of the family's named FFN output projection."""
    seq = case.seq
    for side, blocks in stacks64(case).items():
        name = FFN_SITE[case.family]
        if side == "decoder" and case.family in ("t5", "mt5"):
            name = "layer.2.DenseReluDense.wo"  # after the decoder's cross-attention
        ref = site_inputs(case.model64, blocks, name, lambda: reference(case)).numpy()
        acts = seq.stack(side or "decoder").activations
        assert acts.shape == ref.shape, (case.family, side)
        assert relative_error(acts, ref) <= case.tol, (case.family, side)


def check_neuron_views(case: Case, side: str = "decoder") -> None:
    """Top neurons, one neuron's trace, factors and FFN similarity run and read the captured array."""
    seq, stack = case.seq, case.seq.stack(side)
    top = neurons.top_neurons(seq, position=2, k=5, side=side)
    acts = stack.activations
    assert top.values[0] == pytest.approx(acts[:, :, 2].max(), rel=1e-6)
    trace = neurons.neuron_activations(seq, int(top.layers[0]), int(top.neurons[0]), side=side)
    row = list(stack.activation_layers).index(top.layers[0])
    np.testing.assert_array_equal(trace.values, acts[row, top.neurons[0]])
    # PCA here (NMF's fit is architecture-blind and tested on its own; MoE runs NMF in test_matrix_moe)
    factors = neurons.run_nmf(seq, n_components=2, side=side, method="pca")
    assert factors.loadings.shape == (2, *acts.shape[:2])
    assert similarity.layer_similarity(seq, source="ffn", side=side).matrix.shape == (2, 2)
    assert top.figure() is not None


def check_attention(case: Case, captured: dict[str, np.ndarray], returned: dict[str, str]) -> None:
    out = reference(case, output_attentions=True)
    for key, field in returned.items():
        ref = torch.stack([a[0] for a in getattr(out, field)]).numpy()  # (layer, head, pos, pos)
        assert captured[key] is not None, (case.family, key)
        np.testing.assert_allclose(captured[key], ref, atol=50 * case.tol, err_msg=f"{case.family} {key}")


# ----- causal LMs ---------------------------------------------------------------------------------


def test_causal_read_out_equals_the_model(causal):
    check_read_out(causal)


def test_causal_generation_is_the_models_argmax(causal):
    check_generation(causal)


def test_causal_saliency_equals_a_float64_autograd_loop(causal):
    """Shares within 1e-5 of a float64 per-token autograd loop; signed grad x input within float32's
    error, which scales with the logits' size (random weights give logits of tens). Where a
    family's float32 gradients are worse conditioned than that (Bloom: 5e-3), the bound is twice
    what transformers' own float32 autograd loop reaches on the same tokens."""
    seq, model64 = causal.seq, causal.model64
    gxi, grad = seq.saliency("grad_x_input"), seq.saliency("gradient")
    embeds = model64.get_input_embeddings()(torch.as_tensor(seq.token_ids)).detach()
    tolerance = causal.tol * max(1.0, float(reference(causal).logits.abs().max()))
    references = loop_gradients(seq, model64)
    errors = []
    for i, g in enumerate(references):
        t = seq.n_input_tokens + i
        for result, score in ((gxi, (g * embeds[:t]).norm(dim=-1)), (grad, g.norm(dim=-1))):
            np.testing.assert_allclose(result.values[i, :t], (score / score.sum()).numpy(), atol=1e-5)
            assert np.all(result.values[i, t:] == 0)
        errors.append(relative_error(gxi.signed[i, :t], (g * embeds[:t]).sum(-1).numpy()))
    if max(errors) > tolerance:
        signed = [(g * embeds[: len(g)]).sum(-1).numpy() for g in references]
        own = [
            relative_error((g32.double() * embeds[: len(g32)]).sum(-1).numpy(), ref)
            for g32, ref in zip(loop_gradients(seq, causal.lm.model), signed, strict=True)
        ]
        assert max(errors) <= 2 * max(own), (causal.family, errors, own)


def test_causal_attention_equals_output_attentions(causal):
    check_attention(causal, {"self": causal.seq.attentions}, {"self": "attentions"})
    assert attention.attention(causal.seq, method="rollout").figure() is not None


def test_causal_neurons_equal_a_forward_hook(causal):
    if causal.family in MOE:  # router-weighted expert units: tests/test_matrix_moe.py
        assert neurons.routing(causal.seq).n_experts == 4
    else:
        check_neurons(causal)
        with pytest.raises(ModelTypeError, match="only for mixture-of-experts"):
            neurons.routing(causal.seq)
    check_neuron_views(causal)


def test_causal_refuses_masked_predictions(causal):
    with pytest.raises(ModelTypeError, match="Masked-token predictions are for masked LMs"):
        causal.seq.masked_predictions(position=1)


# ----- masked LMs ---------------------------------------------------------------------------------


def test_masked_predictions_equal_the_model(mlm):
    seq = mlm.seq
    logits64 = reference(mlm).logits[0]
    bound = mlm.tol * float(logits64.abs().max())
    probs64 = logits64.softmax(-1).numpy()
    for position in range(seq.n_tokens):
        result = seq.masked_predictions(position=position, topk=3)
        row = probs64[position]
        np.testing.assert_allclose(result.probs[-1], row[result.token_ids[-1]], rtol=3 * bound, atol=1e-7)
        assert row[result.token_ids[-1, 0]] >= row.max() * (1 - 3 * bound), (mlm.family, position)


def test_masked_neurons_and_attention_equal_the_model(mlm):
    check_neurons(mlm)
    check_neuron_views(mlm)
    check_attention(mlm, {"self": mlm.seq.attentions}, {"self": "attentions"})


def test_masked_lm_refuses_next_token_views(mlm):
    seq = mlm.seq
    with pytest.raises(ModelTypeError, match="cannot generate"):
        mlm.lm.generate(PROMPT, generate=2)
    for view in (seq.rankings, lambda: seq.layer_predictions(2), lambda: seq.saliency("grad_x_input")):
        with pytest.raises(ModelTypeError, match="masked LM|is a mlm model"):
            view()


# ----- encoder-decoders ---------------------------------------------------------------------------


def test_encdec_read_out_equals_the_model(encdec):
    check_read_out(encdec)


def test_encdec_generation_is_the_models_argmax(encdec):
    check_generation(encdec)


def test_encdec_saliency_equals_a_per_token_autograd_loop(encdec):
    grad_ref, gxi_ref = _loop_reference(encdec.seq)
    for method, ref in (("gradient", grad_ref), ("grad_x_input", gxi_ref)):
        np.testing.assert_allclose(encdec.seq.saliency(method).values, ref, atol=1e-5, err_msg=method)


def test_encdec_attention_equals_output_attentions(encdec):
    seq = encdec.seq
    captured = {
        "encoder": seq.extras["encoder"]["attentions"],
        "decoder": seq.attentions,
        "cross": seq.extras["decoder"]["cross_attentions"],
    }
    returned = {"encoder": "encoder_attentions", "decoder": "decoder_attentions", "cross": "cross_attentions"}
    check_attention(encdec, captured, returned)


def test_encdec_neurons_equal_a_forward_hook(encdec):
    check_neurons(encdec)
    for side in ("encoder", "decoder"):
        check_neuron_views(encdec, side)


def test_encdec_refuses_masked_predictions_and_erasure(encdec):
    with pytest.raises(ModelTypeError, match="Masked-token predictions are for masked LMs"):
        encdec.seq.masked_predictions(position=1)
    with pytest.raises(ModelTypeError, match="not available on encoder-decoders"):
        encdec.seq.saliency("erasure")
