"""Target functions and their logit gradients, against float64 autograd (the tolerance policy)."""

from __future__ import annotations

import pytest
import torch

from ecco_core.analysis.attribution.targets import MIN_MATMUL_ROWS, Target, padded_matmul, unembedding_vjp
from tests.tolerance import EPS32, dot_error_bound, relative_error


def confident_logits(vocab: int = 49152) -> torch.Tensor:
    """(2, vocab) float32 rows whose first token has p = 0.99995 and 0.6 (a random rest)."""
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(2, vocab, generator=generator)
    rest = torch.logsumexp(logits[:, 1:].double(), -1)
    for row, p in enumerate((0.99995, 0.6)):
        logits[row, 0] = float(rest[row] + torch.log(torch.tensor(p / (1 - p), dtype=torch.float64)))
    return logits


def autograd_reference(kind: str, logits: torch.Tensor, target, foil) -> tuple[torch.Tensor, torch.Tensor]:
    """float64 values and d value / d logits of each row, by autograd."""
    leaf = logits.double().requires_grad_(True)
    scores = leaf.softmax(-1) if kind in ("prob", "contrast_prob") else leaf
    rows = torch.arange(len(leaf))
    value = scores[rows, target] - (scores[rows, foil] if kind.startswith("contrast") else 0)
    (grad,) = torch.autograd.grad(value.sum(), leaf)
    return value.detach(), grad


@pytest.mark.parametrize("kind", ["prob", "logit", "contrast", "contrast_prob"])
def test_gradients_keep_float32_accuracy_at_confident_outputs(kind):
    logits = confident_logits()
    target, foil = torch.tensor([0, 0]), torch.tensor([3, 7])
    values, grads = Target(kind, target, foil if kind.startswith("contrast") else None).values_and_gradients(
        logits
    )
    ref_values, ref_grads = autograd_reference(kind, logits, target, foil)
    assert grads.dtype == torch.float32 and grads.shape == logits.shape
    # a softmax over 49k logits: a handful of float32 roundings per entry, not 1 - p's cancellation
    assert relative_error(grads, ref_grads, axis=-1).max() <= 64 * EPS32
    assert relative_error(values, ref_values) <= 64 * EPS32


def test_autograds_float32_softmax_loses_the_confident_row():
    """What the well-conditioned form avoids: float32 autograd through 1 - p at p = 0.99995."""
    logits = confident_logits()
    leaf = logits.clone().requires_grad_(True)
    (naive,) = torch.autograd.grad(leaf.softmax(-1)[0, 0], leaf)
    _, ref = autograd_reference("prob", logits, torch.tensor([0, 0]), None)
    assert relative_error(naive[0], ref[0]) > 100 * EPS32


def test_a_batch_of_path_points_broadcasts_the_token_ids():
    logits = torch.randn(5, 3, 11)  # (path points, targets, vocab)
    target = Target("prob", torch.tensor([1, 2, 3]))
    values, grads = target.values_and_gradients(logits)
    assert values.shape == (5, 3) and grads.shape == (5, 3, 11)
    torch.testing.assert_close(values, logits.softmax(-1)[..., [1, 2, 3]].diagonal(dim1=-2, dim2=-1))
    torch.testing.assert_close(target.rows(slice(1, 3)).values(logits[:, 1:3]), values[:, 1:3])


@pytest.mark.parametrize("rows", [1, 3, MIN_MATMUL_ROWS, 40])
def test_padded_matmul_and_the_unembedding_vjp_are_the_product(rows):
    generator = torch.Generator().manual_seed(rows)
    grads = torch.randn(rows, 4096, generator=generator)
    head = torch.nn.Linear(64, 4096, bias=False).requires_grad_(False)
    exact = grads.double() @ head.weight.double()
    for product in (padded_matmul(grads, head.weight), unembedding_vjp(head, grads)):
        assert product.shape == (rows, 64)
        assert (
            (product.double() - exact).abs() <= dot_error_bound(grads.double(), head.weight.double().T)
        ).all()
    wide = unembedding_vjp(head, grads.double())  # a float64 reference: the weight cast block by block
    assert wide.dtype == torch.float64 and relative_error(wide, exact) < 1e-12


def test_a_non_linear_unembedding_goes_through_autograd():
    head = torch.nn.Sequential(torch.nn.Linear(8, 20), torch.nn.Tanh())
    inputs = torch.randn(3, 8, requires_grad=True)
    outputs = head(inputs)
    grads = torch.randn(3, 20)
    (expected,) = torch.autograd.grad(outputs, inputs, grads, retain_graph=True)
    torch.testing.assert_close(unembedding_vjp(head, grads, inputs, outputs), expected)
    with pytest.raises(TypeError, match="not linear"):
        unembedding_vjp(head, grads)
