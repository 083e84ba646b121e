"""The hand-written Llama-family backward equals autograd, and refuses what it cannot compute."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ecco_core.analysis.attribution import hand_written, self_check
from ecco_core.analysis.attribution.backends import HAND_WRITTEN
from ecco_core.analysis.attribution.targets import Target
from tests.tiny import tiny_lm
from tests.tolerance import float32_tolerance, relative_error


def saliency_both_ways(seq, method: str, **settings):
    """The same saliency with the hand-written path and with the generic autograd path."""
    lm = seq.lm
    assert HAND_WRITTEN.plan_for(lm) is not None, f"{lm.name}: the hand-written path should apply"
    return seq.saliency(method, **settings), seq.saliency(method, backend="autograd", **settings)


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
    plan = HAND_WRITTEN.plan_for(tiny)
    embeds = tiny.model.get_input_embeddings()(torch.as_tensor(seq.token_ids)).float()
    positions = torch.arange(seq.n_input_tokens, seq.n_tokens)
    ids = torch.as_tensor(seq.token_ids)[positions]
    values, grads = hand_written.objective_gradients(plan, embeds, positions, Target("logit", ids))
    for i, p in enumerate(positions.tolist()):
        assert grads[i, p:].abs().max() == 0
        assert grads[i, :p].abs().sum(-1).min() > 0  # every earlier token gets a gradient
        with torch.no_grad():
            expected = tiny.model(input_ids=torch.as_tensor(seq.token_ids[:p])[None]).logits[0, -1, ids[i]]
        assert float(values[i]) == pytest.approx(float(expected), rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("family", ["gpt2", "gpt_neox", "opt", "gemma", "phi"])
def test_other_families_keep_the_generic_path(family):
    assert HAND_WRITTEN.plan_for(tiny_lm(family)) is None


def test_the_self_check_refuses_a_model_that_does_not_match(caplog):
    """A Llama whose MLP is not SiLU-gated (here: GELU swapped in after loading, so the config
    still says silu) fails the comparison with the model's own logits: the generic path stays,
    and a WARNING says so with the measured errors."""
    lm = tiny_lm("llama", seed=5)
    plan = self_check.make_plan(lm)
    assert plan is not None and self_check.self_check(plan)
    for block in lm.model.model.layers:
        block.mlp.act_fn = torch.nn.GELU()
    with caplog.at_level("WARNING", logger="ecco_core.analysis.attribution.self_check"):
        assert not self_check.self_check(plan)
    assert "refused" in caplog.text and "logit error" in caplog.text and "tolerance" in caplog.text
    assert self_check.check(plan).logit_error > 100 * self_check.float32_tolerance(len(plan.layers))


def test_the_self_check_catches_a_wrong_backward(monkeypatch):
    """The forward still matches, so only the float64 gradient comparison can refuse this one;
    a wrong sign is orders of magnitude beyond float32's error, not at its edge."""
    lm = tiny_lm("llama", seed=6)
    plan = self_check.make_plan(lm)
    monkeypatch.setattr(
        hand_written, "_rotate_half_transposed", hand_written.rotate_half
    )  # the sign is wrong
    result = self_check.check(plan)
    assert result.logit_error <= result.tolerance < result.gradient_error / 100
    assert not self_check.self_check(plan)


def test_the_self_check_judges_against_float64():
    """On a correct model the hand-written float32 gradients sit well inside the tolerance,
    and that tolerance is what float32 loses over the model's depth (not a fixed number)."""
    lm = tiny_lm("qwen2", seed=2)
    result = self_check.check(self_check.make_plan(lm))
    assert result.passed and result.gradient_error < result.tolerance / 4
    assert result.tolerance == pytest.approx(float32_tolerance(lm.arch.n_layers))


def test_bfloat16_and_sliding_windows_keep_the_generic_path():
    lm = tiny_lm("mistral")
    plan = HAND_WRITTEN.plan_for(lm)
    assert plan.window == lm.model.config.sliding_window
    plan.window = 8  # as if the config said so (the self-check runs 9 tokens)
    assert HAND_WRITTEN.plan_for(lm, length=8) is plan
    assert HAND_WRITTEN.plan_for(lm, length=9) is None
    half = tiny_lm("llama", seed=1)
    half.model.to(torch.bfloat16)
    assert HAND_WRITTEN.plan_for(half) is None


@pytest.mark.embedded
def test_applies_to_the_embedded_model_and_equals_autograd(eu_seq):
    """The self-check accepts the embedded model on this CPU (the figures are in the log when it
    does not), and both backends agree within float32's error over 30 layers."""
    plan = HAND_WRITTEN.plan_for(eu_seq.lm)
    assert plan is not None, self_check.check(self_check.make_plan(eu_seq.lm))
    fast, generic = saliency_both_ways(eu_seq, "grad_x_input")
    assert (fast.backend, generic.backend) == ("hand-written", "autograd")
    np.testing.assert_allclose(fast.values, generic.values, atol=2e-5)
    assert relative_error(fast.signed, generic.signed, axis=-1).max() <= 2 * float32_tolerance(
        eu_seq.n_layers
    )
    assert fast.tokens[int(np.argmax(fast.values[0]))]  # a real row
