"""The adaptive IG rule: exact interval errors on functions whose trapezoid error is known by
hand, and parity with a float64 plain loop over the rule's own points on a tiny model."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from ecco_core.analysis import attribution as attr
from ecco_core.analysis.attribution.adaptive import (
    TOLERANCE,
    PathRule,
    _moments,
    adaptive_integrated_gradients,
)
from ecco_core.analysis.attribution.methods import _objective_values
from ecco_core.errors import NumericalError


def cube(alphas):
    """f(a) = a^3 and f'(a) = 3 a^2: the composite trapezoid on f' over n equal intervals of
    [0, 1] errs by n h^3 f'''/12 = 1 / (2 n^2) exactly (f' has a constant second derivative 6)."""
    a = np.asarray(alphas, dtype=np.float64)
    return a**3, 3 * a**2


def evaluate(rule: PathRule, fn, budget: int) -> int:
    """Run the rule's rounds with exact slopes; the number of gradient nodes it used."""
    while len(new := rule.next_points(budget - int((~np.isnan(rule.slopes)).sum()))):
        rule.add(new, *fn(new))
    return int((~np.isnan(rule.slopes)).sum())


def test_interval_errors_are_the_trapezoid_errors_computed_by_hand():
    f, _ = cube([0, 0.5, 1])
    rule = PathRule.scanned([0, 0.5, 1], f)
    used, errors = rule.intervals()
    assert not used.any()  # no gradients yet: the whole path is one interval left out
    np.testing.assert_allclose(errors, [-1.0])
    assert rule.error == pytest.approx(1.0)
    # the scanned points where f moves (never alpha 0: no finite gradient at a zero input), and the
    # middle of [0.5, 1], where f changes by 0.875 of the whole (more than ``STEEP``)
    assert list(rule.next_points(8)) == [0.5, 0.75, 1.0]
    rule.add(np.array([0.5, 0.75, 1.0]), *cube([0.5, 0.75, 1.0]))
    used, errors = rule.intervals()
    assert list(used) == [False, True, True]
    # trapezoids of h = 1/4 on f' = 3 a^2 err by h^3 f''' / 12 = 1/128 each; [0, 1/2] left out: -1/8
    np.testing.assert_allclose(errors, [-0.125, 1 / 128, 1 / 128])
    assert rule.error == pytest.approx(0.125 - 1 / 64)
    np.testing.assert_allclose(rule.weights(), [0.0, 0.125, 0.25, 0.125])
    # the worst first: split [0, 1/2] at its middle; then rounds take at least MIN_ROUND = 4 nodes
    # while the budget allows, so both trapezoids are split too
    np.testing.assert_allclose(rule.next_points(8), [0.25, 0.625, 0.875])
    rule.add(np.array([0.25, 0.625, 0.875]), *cube([0.25, 0.625, 0.875]))
    # [0, 1/4] left out: -1/64; [1/4, 1/2]: 1/128; four trapezoids of h = 1/8: 1/1024 each
    np.testing.assert_allclose(rule.intervals()[1], [-1 / 64, 1 / 128] + [1 / 1024] * 4)
    assert rule.error == pytest.approx(1 / 256)
    assert (rule.weights() * cube(rule.alphas)[1]).sum() - 1 == pytest.approx(-1 / 256)
    assert rule.evaluations == 6


def test_a_gradient_that_is_not_finite_is_a_numerical_error_naming_where():
    rule = PathRule.scanned([0, 0.5, 1], [0.0, 0.2, 1.0])
    with pytest.raises(NumericalError, match=r"not finite at alphas \[0.5\].*baseline='pad'"):
        rule.add(np.array([0.5, 1.0]), np.array([0.2, 1.0]), np.array([np.nan, 2.0]))


def test_a_stretch_left_out_counts_by_its_net_change():
    """f rises to 0.3 and falls back on [0, 0.5]: left out as one stretch, it errs by 0."""
    rule = PathRule.scanned([0, 0.25, 0.5, 1], [0.0, 0.3, 0.0, 1.0])
    rule.add(np.array([0.25, 0.5, 1.0]), np.array([0.3, 0.0, 1.0]), np.array([50.0, 0.0, 2.0]))
    used, errors = rule.intervals()
    assert list(used) == [False, False, True]  # the trapezoid on [1/4, 1/2] would err by 6.55
    np.testing.assert_allclose(errors, [-0.3, 0.3, -0.5])
    assert rule.error == pytest.approx(0.5)
    assert list(rule.next_points(8)) == [0.75]  # nothing spent on the stretch


def test_an_interval_whose_trapezoid_is_worse_than_nothing_is_left_out():
    """A spike that returns to where it started: f(0) = f(0.5), but f'(0) is huge."""
    rule = PathRule.scanned([0, 0.5, 1], [0.0, 0.0, 1.0])
    rule.add(np.array([0.0, 0.5, 1.0]), np.zeros(3), np.array([40.0, 0.0, 4.0]))
    used, errors = rule.intervals()
    assert list(used) == [False, True]  # trapezoid on [0, 0.5] would err by 10, leaving it out by 0
    np.testing.assert_allclose(errors, [0.0, 0.25 * 4 - 1], atol=1e-15)
    np.testing.assert_allclose(rule.weights(), [0.0, 0.25, 0.25])


def test_the_rule_stops_at_its_tolerance_and_within_its_budget():
    scan = attr.SCAN_ALPHAS
    rule = PathRule.scanned(scan, cube(scan)[0])
    used = evaluate(rule, cube, budget=24)
    assert rule.error <= TOLERANCE and used <= 24
    budgeted = PathRule.scanned([0, 1], [0.0, 1.0])
    assert evaluate(budgeted, cube, budget=3) <= 3 and budgeted.error > TOLERANCE  # 3 nodes: 1/8 left


def test_a_steep_logistic_is_integrated_where_it_rises():
    def logistic(alphas):
        s = 1 / (1 + np.exp(-(np.asarray(alphas) - 0.55) / 0.02))
        return s, s * (1 - s) / 0.02

    scan = attr.SCAN_ALPHAS
    rule = PathRule.scanned(scan, logistic(scan)[0])
    assert evaluate(rule, logistic, budget=24) <= 24 and rule.error <= TOLERANCE
    weighted = rule.alphas[rule.weights() > 0]
    assert weighted.min() >= 0.3 and weighted.max() <= 0.8  # no nodes spent where f is flat


def logistic_probability(alphas, centre=0.55, width=0.02):
    """p = sigmoid((a - centre) / width): its log-odds is linear in a, so the product rule (the
    sharp sigmoid' integrated exactly, only the constant d log-odds / da interpolated) is exact."""
    a = np.asarray(alphas, dtype=np.float64)
    p = 1 / (1 + np.exp(-(a - centre) / width))
    return p, p * (1 - p) / width


def test_a_probability_with_linear_log_odds_is_exact_from_the_ends_of_its_rise():
    points = np.array([0.3, 0.8, 1.0])
    rule = PathRule.scanned([0, 0.3, 0.8, 1], logistic_probability([0, 0.3, 0.8, 1])[0], probability=True)
    rule.add(points, *logistic_probability(points))
    used, errors = rule.intervals()
    assert list(used) == [False, True, True]
    f0, f03 = logistic_probability([0.0, 0.3])[0]
    # [0, 0.3] left out: -3.7e-6; the others exact up to what float64 moments lose (~1e-12)
    np.testing.assert_allclose(errors, [-(f03 - f0), 0.0, 0.0], atol=1e-9)
    assert rule.error < 1e-5
    # a trapezoid on the same three gradients misses most of the rise
    plain = PathRule.scanned(rule.alphas, rule.values)
    plain.add(points, *logistic_probability(points))
    assert plain.error > 0.5


def test_the_moments_of_sigmoid_prime_are_exact_against_a_fine_float64_sum():
    rng = np.random.default_rng(0)
    u = np.sort(rng.uniform(-3, 2, 6))
    z = rng.normal(0, 6, 6)
    z[3] = z[2] + 1e-5  # a nearly flat piece takes the Taylor branch
    fine_u = np.linspace(u[0], u[-1], 2_000_001)
    m = 1 / (1 + np.exp(-np.interp(fine_u, u, z)))
    m = m * (1 - m)
    zeroth = np.sum((m[1:] + m[:-1]) * np.diff(fine_u)) / 2
    weighted = m * (fine_u - u[0])
    first = np.sum((weighted[1:] + weighted[:-1]) * np.diff(fine_u)) / 2
    np.testing.assert_allclose(_moments(u, z), [zeroth, first], rtol=1e-6)  # the fine sum errs by ~h^2
    np.testing.assert_allclose(_moments(u, None), [u[-1] - u[0], (u[-1] - u[0]) ** 2 / 2], rtol=1e-12)


@pytest.fixture(scope="module")
def tiny_seq(tiny):
    return tiny.generate("hello wor", generate=6)


def test_adaptive_ig_equals_a_float64_loop_over_its_own_points(tiny_seq):
    ctx = attr.build_context(tiny_seq, n_steps=24, quadrature="adaptive")
    x = ctx.embeds.float()
    result = adaptive_integrated_gradients(ctx, x, torch.zeros_like(x), _objective_values)
    model64 = copy.deepcopy(tiny_seq.lm.model).double().eval()
    x64 = x.double()
    worst = 0.0
    for i, t in enumerate(ctx.positions.tolist()):
        rule, token = result.rules[i], int(tiny_seq.token_ids[t])
        total = torch.zeros(t, x.shape[1], dtype=torch.float64)
        for alpha, weight in zip(rule.alphas, rule.weights(), strict=True):
            if weight:
                leaf = (alpha * x64[:t])[None].requires_grad_(True)
                prob = model64(inputs_embeds=leaf, use_cache=False).logits[0, -1].softmax(-1)[token]
                (g,) = torch.autograd.grad(prob, leaf)
                total += weight * g[0]
        reference = (total * x64[:t]).numpy()
        scale = np.abs(reference).sum()
        worst = max(worst, np.abs(result.attribution[i, :t].numpy() - reference).sum() / scale)
        # the rule's own error is the attribution's completeness error
        change = float(result.ends[0, i] - result.ends[1, i])
        gap = float(result.attribution[i].sum()) - change
        assert abs(gap) / abs(change) == pytest.approx(rule.error, abs=1e-4)
    assert worst < 1e-4  # float32 through 3 tiny blocks against float64 on the same points


def test_the_default_saliency_call_meets_the_tolerance_on_the_tiny_model(tiny_seq):
    result = tiny_seq.saliency("ig", n_steps=32, quadrature="adaptive")
    assert result.quadrature == "adaptive" and result.backend == "autograd"
    assert result.evaluations.max() <= 32 and result.to_dict()["evaluations"] == result.evaluations.tolist()
    met = result.evaluations < 32  # a token stops early only once its error is under the tolerance
    assert np.all(result.completeness_error[met] <= TOLERANCE + 1e-4)
    assert result.completeness_error.max() <= 0.02


def test_the_evaluations_survive_a_save_and_load(tiny_seq, tmp_path):
    tiny_seq.attribution["integrated_gradients"] = tiny_seq.saliency(
        "ig", n_steps=8, quadrature="adaptive", positions=[tiny_seq.n_tokens - 1]
    )
    path = tmp_path / "run.npz"
    tiny_seq.save(path)
    loaded = type(tiny_seq).load(path).attribution["integrated_gradients"]
    saved = tiny_seq.attribution.pop("integrated_gradients")
    np.testing.assert_array_equal(loaded.evaluations, saved.evaluations)
    assert loaded.completeness_error == pytest.approx(saved.completeness_error)
