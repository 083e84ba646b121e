"""Mixture-of-experts neurons (Mixtral, Qwen2-MoE with its shared expert, Qwen3-MoE): each neuron is
one unit of one expert weighted by the router, 0 where the token was not routed there. Checked
against a plain float64 loop over the experts computed from the parameters, and shown to add up
to the MoE block's output through the experts' down projections."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch.nn import functional

import ecco_core
from ecco_core.analysis import neurons
from ecco_core.errors import ModelTypeError
from ecco_core.model import loading
from ecco_core.model.architecture import find_architecture
from ecco_core.model.capture import hook_count
from ecco_core.run import OutputSeq
from tests.matrix_models import MOE, build, float64_copy, save
from tests.tolerance import float32_tolerance, relative_error

PROMPT = "hello world"


@pytest.fixture(scope="module", params=MOE)
def moe(request, tmp_path_factory):
    folder = str(save(request.param, tmp_path_factory.mktemp(request.param)))
    lm = ecco_core.from_pretrained(folder, device="cpu")
    seq = lm.generate(PROMPT, generate=3)
    for key in [k for k in loading._models if k[0] == folder]:
        loading._models.pop(key)
    return request.param, lm, seq, float64_copy(lm.model)


def moe_blocks(model):
    return [layer.mlp for layer in model.model.layers]


def block_inputs_outputs(model, ids) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(token, d) input and output of every layer's MoE block, seen by plain hooks."""
    seen: dict[int, list] = {}
    handles = [
        block.register_forward_hook(
            lambda _m, args, out, i=i: seen.__setitem__(i, (args[0][0], out[0] if out.dim() == 3 else out))
        )
        for i, block in enumerate(moe_blocks(model))
    ]
    try:
        with torch.no_grad():
            model(input_ids=ids[None], use_cache=False)
    finally:
        for handle in handles:
            handle.remove()
    return [seen[i] for i in range(len(seen))]


def loop_over_experts(block, config, x: torch.Tensor):
    """Float64 reference from the parameters: (token, neuron) router-weighted units, (token, top_k)
    experts and weights, one token and one expert at a time."""
    assert config.hidden_act == "silu"
    experts = block.experts
    n_experts, _, size = experts.down_proj.shape
    top_k = config.num_experts_per_tok
    probs = (x @ block.gate.weight.T).softmax(-1)  # (token, expert)
    units = torch.zeros(len(x), n_experts * size, dtype=x.dtype)
    chosen, weights = [], []
    for t in range(len(x)):
        values, index = probs[t].topk(top_k)
        if getattr(config, "norm_topk_prob", True):  # Mixtral always normalises
            values = values / values.sum()
        chosen.append(index)
        weights.append(values)
        for w, e in zip(values, index.tolist(), strict=True):
            gate, up = (experts.gate_up_proj[e] @ x[t]).chunk(2)
            units[t, e * size : (e + 1) * size] = w * functional.silu(gate) * up
    shared = getattr(block, "shared_expert", None)
    if shared is not None:
        gate = torch.sigmoid(block.shared_expert_gate(x))  # (token, 1)
        units = torch.cat([units, gate * functional.silu(shared.gate_proj(x)) * shared.up_proj(x)], 1)
    return units, torch.stack(chosen), torch.stack(weights)


def test_moe_neurons_equal_a_float64_loop_over_experts(moe):
    family, lm, seq, model64 = moe
    tol = float32_tolerance(seq.n_layers)
    ids = torch.as_tensor(seq.token_ids)
    routing = neurons.routing(seq)
    np.testing.assert_array_equal(seq.routing().weights, routing.weights)  # the facade's spelling
    for layer, (x, _out) in enumerate(block_inputs_outputs(model64, ids)):
        units, chosen, weights = loop_over_experts(moe_blocks(model64)[layer], model64.config, x)
        assert seq.activations[layer].shape == units.T.shape
        assert relative_error(seq.activations[layer], units.T.numpy()) <= tol, (family, layer)
        np.testing.assert_array_equal(routing.experts[layer], chosen.numpy())  # no near-ties here
        np.testing.assert_allclose(routing.weights[layer], weights.numpy(), rtol=tol, atol=1e-7)
    assert hook_count(lm.arch) == 0  # the experts' hooks died with the capture
    # a token not routed to an expert has 0 for every unit of it
    dense = routing.dense()  # (layer, expert, pos)
    size = routing.expert_size
    for layer, expert, pos in zip(*np.nonzero(dense == 0), strict=True):
        assert not seq.activations[layer, expert * size : (expert + 1) * size, pos].any()
    assert (dense == 0).any() and (dense > 0).sum(axis=1).max() == lm.model.config.num_experts_per_tok


def test_moe_neurons_add_up_to_the_blocks_output(moe):
    """The layer's output is sum_n neuron_n x its down-projection column, as for a dense FFN."""
    family, _lm, seq, model64 = moe
    ids = torch.as_tensor(seq.token_ids)
    for layer, (_x, out) in enumerate(block_inputs_outputs(model64, ids)):
        block = moe_blocks(model64)[layer]
        acts = torch.from_numpy(seq.activations[layer].T).double()  # (pos, neuron)
        n_experts, _, size = block.experts.down_proj.shape
        routed = acts[:, : n_experts * size].reshape(len(acts), n_experts, size)
        rebuilt = torch.einsum("teu,edu->td", routed, block.experts.down_proj)
        if getattr(block, "shared_expert", None) is not None:
            rebuilt = rebuilt + block.shared_expert.down_proj(acts[:, n_experts * size :])
        assert relative_error(rebuilt.numpy(), out.numpy()) <= float32_tolerance(seq.n_layers), family


def test_routing_result_top_neurons_and_figures(moe):
    family, lm, seq, _ = moe
    routing = neurons.routing(seq)
    n_layers, n_pos, top_k = routing.experts.shape
    assert (n_layers, n_pos, routing.n_experts) == (2, seq.n_tokens, 4)
    shared = 48 if family == "qwen2_moe" else 0
    assert routing.shared_size == shared and seq.activations.shape[1] == 4 * routing.expert_size + shared
    if family == "mixtral":  # Mixtral renormalises the chosen experts' weights
        np.testing.assert_allclose(routing.dense().sum(axis=1), 1.0, rtol=1e-6)
    frame = routing.to_frame()
    assert len(frame) == n_layers * n_pos * top_k and set(frame.columns) >= {"expert", "weight", "token"}
    figure = routing.figure()
    assert len(figure.data[0].y) == n_layers * (4 + bool(shared))
    top = neurons.top_neurons(seq, position=3, k=8)
    table = top.to_frame()
    dense = routing.dense()
    for row in table.itertuples():
        expert = row.neuron // routing.expert_size if row.neuron < 4 * routing.expert_size else -1
        assert row.expert == expert
        if expert >= 0:  # the router's weight of that expert for this token, > 0: it fired
            assert row.router_weight == pytest.approx(dense[row.layer, expert, 3])
            assert row.router_weight > 0
    assert all(" · E" in label or "shared" in label for label in top.labels())
    assert top.figure() is not None and seq.run_nmf(n_components=2).n_factors == 2
    assert json.loads(json.dumps(routing.to_dict()))["n_experts"] == 4  # downloads are plain JSON
    assert json.loads(json.dumps(top.to_dict()))["neurons"][0]["expert"] == table["expert"][0]


def test_routing_survives_save_and_load(moe, tmp_path):
    _, lm, seq, _ = moe
    back = OutputSeq.load(seq.save(tmp_path / "moe"), lm=lm)
    before, after = neurons.routing(seq), neurons.routing(back)
    for field in ("experts", "weights"):
        np.testing.assert_array_equal(getattr(after, field), getattr(before, field))


def test_mixed_dense_and_moe_layers_load_and_say_why_neuron_views_are_missing():
    """Qwen2-MoE with a dense first layer: one (layer, neuron, pos) array cannot hold both widths."""
    from transformers import AutoModelForCausalLM

    from ecco_core.facade import LM
    from ecco_core.model.weights import LoadedWeights
    from tests.matrix_models import config_of
    from tests.tiny import char_tokenizer

    config = config_of("qwen2_moe")
    config.mlp_only_layers = [0]
    model = AutoModelForCausalLM.from_config(config).eval()
    lm = LM(LoadedWeights(model, char_tokenizer(), "tiny-qwen2-moe-mixed", "random", ""), torch.device("cpu"))
    assert "different neuron counts" in lm.arch.neuron_note
    seq = lm.generate("abc", generate=2)
    assert seq.rankings().ranks.shape == (3, 2)
    with pytest.raises(ModelTypeError, match="Neuron views are not available.*dense and MoE mixed"):
        seq.run_nmf(n_components=2)


def test_an_expert_layout_not_computed_here_refuses_saying_which():
    model = build("mixtral")
    for layer in model.model.layers:
        layer.mlp.experts.has_bias = True  # as gpt-oss's experts are
    arch = find_architecture(model)
    assert arch.ffn_sites == () and "has_bias=True" in arch.neuron_note


def test_a_dense_model_has_no_routing(tiny):
    with pytest.raises(ModelTypeError, match="only for mixture-of-experts models"):
        neurons.routing(tiny("abc"))
