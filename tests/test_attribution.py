"""Input saliency: parity with a plain per-token loop, IG completeness, erasure, contrast, errors."""

from __future__ import annotations

import copy
import json
import pickle

import numpy as np
import pytest
import torch

from ecco_app.components.saliency import _JS, highlighter_data
from ecco_core.analysis import attribution as attr
from ecco_core.analysis.attribution.backends import HAND_WRITTEN
from ecco_core.errors import InputError, PositionError, TokenError
from ecco_core.highlight import saliency_bars_html
from tests.tolerance import float32_tolerance, relative_error


@pytest.fixture(scope="module")
def tiny_seq(tiny):
    return tiny.generate("hello wor", generate=6, attention=True)


@pytest.fixture(scope="module")
def eu_float64(eu_seq):
    """A float64 copy of the embedded model (the tolerance policy's reference)."""
    return float64_copy(eu_seq.lm.model)


@pytest.fixture(scope="module")
def eu_loop64(eu_seq, eu_float64):
    """The float64 per-token loop's gradients on the EU run."""
    return loop_gradients(eu_seq, eu_float64)


def float64_copy(model: torch.nn.Module) -> torch.nn.Module:
    return copy.deepcopy(model).double().eval()


def loop_gradients(seq, model64: torch.nn.Module, target: str = "prob") -> list[torch.Tensor]:
    """Reference: one float64 forward and backward per generated token (ecco's way, in float64)."""
    grads = []
    table = model64.get_input_embeddings()
    for t in range(seq.n_input_tokens, seq.n_tokens):
        ids = torch.as_tensor(seq.token_ids[:t])
        embeds = table(ids)[None].detach().requires_grad_(True)
        with torch.enable_grad():
            logits = model64(inputs_embeds=embeds, use_cache=False).logits[0, -1]
            scores = logits.softmax(-1) if target == "prob" else logits
            (grad,) = torch.autograd.grad(scores[int(seq.token_ids[t])], embeds)
        grads.append(grad[0])  # (t, d)
    return grads


def check_parity_with_loop(seq, model64, reference: list[torch.Tensor] | None = None, **settings) -> None:
    """Shares within 1e-5 of float64 (issue 17's bound), signed contributions within float32's
    error over the model's depth (the tolerance policy)."""
    gxi, grad = seq.saliency("grad_x_input", **settings), seq.saliency("gradient", **settings)
    embeds = model64.get_input_embeddings()(torch.as_tensor(seq.token_ids)).detach()
    tolerance = float32_tolerance(seq.n_layers)
    for i, g in enumerate(reference or loop_gradients(seq, model64)):
        t = seq.n_input_tokens + i
        norms = (g * embeds[:t]).norm(dim=-1)
        np.testing.assert_allclose(gxi.values[i, :t], (norms / norms.sum()).numpy(), atol=1e-5)
        assert relative_error(gxi.signed[i, :t], (g * embeds[:t]).sum(-1).numpy()) <= tolerance
        norms = g.norm(dim=-1)
        np.testing.assert_allclose(grad.values[i, :t], (norms / norms.sum()).numpy(), atol=1e-5)
        assert np.all(gxi.values[i, t:] == 0) and gxi.values[i, :t].sum() == pytest.approx(1, abs=1e-5)


def test_gradient_methods_equal_a_float64_loop_on_the_tiny_model(tiny_seq):
    check_parity_with_loop(tiny_seq, float64_copy(tiny_seq.lm.model))


@pytest.mark.embedded
def test_gradient_methods_equal_a_float64_loop_on_the_embedded_model(eu_seq, eu_float64, eu_loop64):
    """Both backends; the EU run's outputs at p = 0.99995 were 1.9e-3 off with autograd's 1 - p."""
    assert HAND_WRITTEN.plan_for(eu_seq.lm) is not None
    assert eu_seq.saliency("grad_x_input").backend == "hand-written"
    check_parity_with_loop(eu_seq, eu_float64, eu_loop64)
    assert eu_seq.saliency("gradient", backend="autograd").backend == "autograd"
    check_parity_with_loop(eu_seq, eu_float64, eu_loop64, backend="autograd")


@pytest.mark.embedded
def test_integrated_gradients_equal_float64_on_the_embedded_model(eu_seq, eu_float64):
    """The same quadrature nodes through the float64 model: shares within 1e-5."""
    positions = [eu_seq.n_input_tokens, eu_seq.n_input_tokens + 5]
    result = eu_seq.saliency("ig", n_steps=4, quadrature="gauss", positions=positions)
    assert result.backend == "autograd"
    nodes, weights = attr.quadrature(4, "gauss")
    table = eu_float64.get_input_embeddings()
    for i, t in enumerate(positions):
        ids = torch.as_tensor(eu_seq.token_ids[:t])
        x = table(ids).detach()
        total = torch.zeros_like(x)
        for alpha, weight in zip(nodes, weights, strict=True):
            leaf = (alpha * x)[None].requires_grad_(True)
            with torch.enable_grad():
                prob = eu_float64(inputs_embeds=leaf, use_cache=False).logits[0, -1].softmax(-1)
                (g,) = torch.autograd.grad(prob[int(eu_seq.token_ids[t])], leaf)
            total += weight * g[0]
        norms = (total * x).norm(dim=-1)
        np.testing.assert_allclose(result.values[i, :t], (norms / norms.sum()).numpy(), atol=1e-5)


@pytest.mark.embedded
def test_croatia_lights_up_the_list(eu_seq):
    """' Croatia' leans on ' Bulgaria' more than on an average prompt token, in every method
    (attention leaving out the first token, an attention sink; rollout collapses onto it)."""
    n_in = eu_seq.n_input_tokens
    assert eu_seq.tokens[n_in] == " Croatia"
    bulgaria = eu_seq.tokens.index(" Bulgaria")
    for method in ("grad_x_input", "gradient", "erasure", "attention"):
        row = eu_seq.saliency(method).row(n_in)
        assert row[bulgaria] > np.abs(row[1:n_in]).mean(), method
    row = eu_seq.saliency("ig", n_steps=8, positions=[n_in]).row(n_in)
    assert row[bulgaria] == row[:n_in].max()


@pytest.mark.parametrize("n_steps", [16, 64])
def test_integrated_gradients_completeness_within_two_percent(tiny_seq, n_steps):
    for target in ("prob", "logit"):
        result = tiny_seq.saliency("ig", target=target, n_steps=n_steps)
        change = result.target_values - result.baseline_values
        np.testing.assert_allclose(result.signed.sum(-1), change, rtol=0.02)
        assert result.completeness_error.max() <= 0.02


def test_graded_quadrature_integrates_exactly_and_stays_inside_the_path():
    for rule in ("gauss", "graded", "left"):
        points, weights = attr.quadrature(16, rule)
        assert weights.sum() == pytest.approx(1.0) and np.all((points >= 0) & (points < 1))
    points, weights = attr.quadrature(32, "graded")  # 3 nodes per small panel: exact for quintics
    assert (weights * points**5).sum() == pytest.approx(1 / 6, rel=1e-9)


def test_adaptive_integrated_gradients_reuse_the_scan_ends(tiny_seq):
    adaptive = tiny_seq.saliency("ig", n_steps=16, quadrature="adaptive")
    graded = tiny_seq.saliency("ig", n_steps=16, quadrature="graded")
    assert adaptive.quadrature == "adaptive" and graded.quadrature == "graded"
    np.testing.assert_allclose(adaptive.target_values, graded.target_values, rtol=1e-6)
    np.testing.assert_allclose(adaptive.baseline_values, graded.baseline_values, rtol=1e-6, atol=1e-9)
    assert np.isfinite(adaptive.signed).all() and adaptive.values.shape == graded.values.shape


def test_erasure_equals_recomputed_probabilities_without_the_token(tiny_seq):
    result = tiny_seq.saliency("erasure")
    model = tiny_seq.lm.model

    def prob(ids: list[int], token: int) -> float:
        with torch.no_grad():
            return model(input_ids=torch.tensor([ids])).logits[0, -1].softmax(-1)[token].item()

    ids = [int(i) for i in tiny_seq.token_ids]
    for i, t in enumerate(result.positions):
        assert result.target_values[i] == pytest.approx(prob(ids[:t], ids[t]), abs=1e-6)
        for j in (0, t // 2, t - 1):
            dropped = prob(ids[:j] + ids[j + 1 : t], ids[t])
            assert result.values[i, j] == pytest.approx(result.target_values[i] - dropped, abs=1e-6)


def single_target(seq, method: str, token_ids: torch.Tensor | None = None, **kwargs) -> np.ndarray:
    ctx = attr.build_context(seq, target="logit", **kwargs)
    if token_ids is not None:
        ctx.target_ids = token_ids
    return attr.run_method(ctx, method, seq).signed


@pytest.mark.parametrize("method", ["grad_x_input", "integrated_gradients"])
def test_contrast_equals_the_difference_of_two_logit_attributions(tiny_seq, method):
    foil = tiny_seq.lm.tokenizer.convert_tokens_to_ids("e")
    contrast = tiny_seq.saliency(method, target="contrast", foil="e", n_steps=8)
    n_out = len(contrast.positions)
    own = single_target(tiny_seq, method, n_steps=8)
    other = single_target(tiny_seq, method, torch.full((n_out,), foil), n_steps=8)
    np.testing.assert_allclose(contrast.signed, own - other, atol=1e-5)
    assert contrast.foil == "e" and contrast.foil_id == foil


def test_attention_scores_read_the_captured_weights(tiny_seq):
    last = tiny_seq.saliency("attention")
    t = tiny_seq.n_input_tokens
    np.testing.assert_allclose(last.row(t)[:t], tiny_seq.attentions[-1].mean(0)[t - 1, :t], atol=1e-6)
    rollout = tiny_seq.saliency("attention_rollout")
    np.testing.assert_allclose(rollout.values.sum(-1), 1.0, atol=1e-5)  # causal rows stay distributions


def test_parameters_never_get_gradients(tiny, tiny_seq):
    tiny_seq.saliency("ig", n_steps=4)
    assert all(not p.requires_grad and p.grad is None for p in tiny.model.parameters())


def test_generate_with_attribution_stores_results(tiny):
    seq = tiny.generate("hello", generate=3, attribution=["grad_x_input", "ig"])
    assert set(seq.attribution) == {"grad_x_input", "integrated_gradients"}
    assert seq.saliency("grad_x_input") is seq.attribution["grad_x_input"]
    assert seq.primary_attributions("ig") is seq.attribution["integrated_gradients"]


def test_result_is_plain_data_in_ecco_json_shape(tiny_seq):
    result = tiny_seq.saliency("grad_x_input", style="detailed")
    data = json.loads(json.dumps(result.to_dict()))
    assert [t["type"] for t in data["tokens"]].count("output") == tiny_seq.n_output_tokens
    assert [len(a) for a in data["attributions"]] == [int(p) for p in result.positions]
    clone = pickle.loads(pickle.dumps(result))
    assert not hasattr(clone, "lm") and np.array_equal(clone.values, result.values)
    frame = result.to_frame()
    assert len(frame) == sum(int(p) for p in result.positions)
    assert len(result.figure().data[0].y) == len(result.positions)


def test_bad_settings_raise_errors_a_person_can_act_on(tiny_seq):
    with pytest.raises(TokenError, match=r"2 tokens \['a', 'b'\]"):
        tiny_seq.saliency("grad_x_input", target="contrast", foil="ab")
    with pytest.raises(TokenError, match="needs a foil"):
        tiny_seq.saliency("grad_x_input", target="contrast")
    with pytest.raises(InputError, match="Unknown attribution method"):
        tiny_seq.saliency("deeplift")
    with pytest.raises(PositionError, match="position 0"):
        tiny_seq.saliency("gradient", positions=[0])
    with pytest.raises(InputError, match="n_steps"):
        tiny_seq.saliency("ig", n_steps=0)


def test_token_text_reaches_the_views_as_text_only(tiny_seq):
    tokens = ["<img src=x onerror=alert(1)>", " a", " b"]
    html = saliency_bars_html(tokens, np.array([0.7, 0.3, 0.0]), 2, 1)
    assert "<img" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    result = tiny_seq.saliency("gradient")
    result.tokens = list(result.tokens)
    result.tokens[0] = tokens[0]
    data = highlighter_data(result, int(result.positions[0]), list(result.positions))
    assert data["shown"][0] == tokens[0]  # JSON data, drawn with textContent
    assert "innerHTML" not in _JS and "textContent" in _JS
