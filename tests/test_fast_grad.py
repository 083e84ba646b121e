"""The hand-written Llama-family backward equals autograd, and refuses what it cannot compute."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ecco_core import fast_grad
from tests.tiny import tiny_lm


def saliency_both_ways(seq, method: str, **settings):
    """The same saliency with the hand-written path and with the generic autograd path."""
    lm = seq.lm
    plan = fast_grad.plan_for(lm)
    assert plan is not None, f"{lm.name}: the hand-written path should apply"
    fast = seq.saliency(method, **settings)
    lm.__dict__["_fast_grad_plan"] = None  # force the generic path
    try:
        generic = seq.saliency(method, **settings)
    finally:
        lm.__dict__["_fast_grad_plan"] = plan
    return fast, generic


@pytest.mark.parametrize("family", ["llama", "mistral", "qwen2"])
@pytest.mark.parametrize("target", ["prob", "logit", "contrast"])
def test_equals_autograd_on_tiny_llama_family_models(family, target):
    lm = tiny_lm(family, seed=3)
    seq = lm.generate("the cat sat on", generate=7)
    foil = {"foil": " "} if target == "contrast" else {}
    fast, generic = saliency_both_ways(seq, "grad_x_input", target=target, **foil)
    scale = np.abs(generic.signed).max()
    assert scale > 0
    np.testing.assert_allclose(fast.signed, generic.signed, atol=1e-5 * scale)
    np.testing.assert_allclose(fast.values, generic.values, atol=1e-5)
    np.testing.assert_allclose(fast.target_values, generic.target_values, rtol=1e-5, atol=1e-7)


def test_gradients_are_zero_at_and_after_each_target(tiny):
    seq = tiny.generate("abc", generate=5)
    plan = fast_grad.plan_for(tiny)
    embeds = tiny.model.get_input_embeddings()(torch.as_tensor(seq.token_ids)).float()
    positions = torch.arange(seq.n_input_tokens, seq.n_tokens)
    ids = torch.as_tensor(seq.token_ids)[positions]

    def logit(logits):
        return logits.gather(-1, ids[None, :, None])[..., 0]

    values, grads = fast_grad.objective_gradients(plan, embeds, positions, logit)
    for i, p in enumerate(positions.tolist()):
        assert grads[i, p:].abs().max() == 0
        assert grads[i, :p].abs().sum(-1).min() > 0  # every earlier token gets a gradient
        with torch.no_grad():
            expected = tiny.model(input_ids=torch.as_tensor(seq.token_ids[:p])[None]).logits[0, -1, ids[i]]
        assert float(values[i]) == pytest.approx(float(expected), rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("family", ["gpt2", "gpt_neox", "opt", "gemma", "phi"])
def test_other_families_keep_the_generic_path(family):
    assert fast_grad.plan_for(tiny_lm(family)) is None


def test_the_self_check_refuses_a_model_that_does_not_match():
    """A Llama whose MLP is not SiLU-gated (here: GELU swapped in after loading, so the config
    still says silu) fails the comparison with the model's own logits: the generic path stays."""
    lm = tiny_lm("llama", seed=5)
    plan = fast_grad._make_plan(lm)
    assert plan is not None and fast_grad._self_check(plan)
    for block in lm.model.model.layers:
        block.mlp.act_fn = torch.nn.GELU()
    assert not fast_grad._self_check(plan)


def test_the_self_check_catches_a_wrong_backward(monkeypatch):
    """The forward still matches, so only the gradient comparison can refuse this one."""
    lm = tiny_lm("llama", seed=6)
    plan = fast_grad._make_plan(lm)
    monkeypatch.setattr(fast_grad, "_rotate_half_transposed", fast_grad.rotate_half)  # the sign is wrong
    assert not fast_grad._self_check(plan)


def test_bfloat16_and_sliding_windows_keep_the_generic_path():
    lm = tiny_lm("mistral")
    plan = fast_grad.plan_for(lm)
    assert plan.window == lm.model.config.sliding_window
    plan.window = 8  # as if the config said so (the self-check runs 9 tokens)
    assert fast_grad.plan_for(lm, length=8) is plan
    assert fast_grad.plan_for(lm, length=9) is None
    half = tiny_lm("llama", seed=1)
    half.model.to(torch.bfloat16)
    assert fast_grad.plan_for(half) is None


@pytest.mark.embedded
def test_equals_autograd_on_the_embedded_model(eu_seq):
    fast, generic = saliency_both_ways(eu_seq, "grad_x_input")
    np.testing.assert_allclose(fast.values, generic.values, atol=2e-5)
    scale = np.abs(generic.signed).max()
    np.testing.assert_allclose(fast.signed, generic.signed, atol=2e-5 * scale)
    assert fast.tokens[int(np.argmax(fast.values[0]))]  # a real row
