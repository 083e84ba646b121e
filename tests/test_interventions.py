"""Interventions on tiny random models in float64 (tests/tiny.py): the identities of patching,
attribution patching against exact patching and a plain autograd loop, direct logit attribution
summing to the logit, ablations and steering that change nothing when they should, and hooks
that never outlive their call or leak into another thread."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from torch import nn

from ecco_core.analysis import interventions as iv
from ecco_core.analysis.interventions.patching import last_logits
from ecco_core.errors import EccoError, InputError, TokenError
from ecco_core.facade import LM
from ecco_core.model.capture import hook_count
from ecco_core.model.weights import LoadedWeights
from tests.tiny import FAMILIES, char_tokenizer, tiny_model

CLEAN, CORRUPTED = "abcdefgh", "abcxefgh"


def float64_lm(family: str = "llama", without_final_norm: bool = False) -> LM:
    model = tiny_model(family).double()
    if without_final_norm:
        model.model.norm = nn.Identity()
    return LM(LoadedWeights(model, char_tokenizer(), f"tiny-{family}-f64", "random", ""), torch.device("cpu"))


@pytest.fixture(scope="module")
def lm64():
    return float64_lm()


@pytest.fixture(scope="module")
def pair(lm64):
    return lm64.compare(CLEAN, CORRUPTED, answer="a", foil="b")


def own_logits(lm: LM, text: str) -> torch.Tensor:
    with torch.inference_mode():
        return lm.model(input_ids=lm.encode(text)[None]).logits[0, -1].double()


def test_patching_nothing_gives_the_clean_logits_and_everything_the_corrupted(lm64, pair):
    assert torch.allclose(iv.patched_logits(pair, [])[0], own_logits(lm64, CLEAN), rtol=0, atol=1e-12)
    corrupted = own_logits(lm64, CORRUPTED)
    assert torch.allclose(iv.patched_logits(pair, [("resid", 0, None)])[0], corrupted, rtol=0, atol=1e-12)
    every = [(s, layer, None) for s in ("attn", "mlp") for layer in range(lm64.arch.n_layers)]
    everything = iv.patched_logits(pair, [("resid", 0, None), *every])[0]
    assert torch.allclose(everything, corrupted, rtol=0, atol=1e-12)
    # the last position reads only its own residual stream: its embedding (unchanged) plus every write
    last = pair.n_tokens - 1
    writes = [(s, layer, [last]) for s in ("attn", "mlp") for layer in range(lm64.arch.n_layers)]
    assert torch.allclose(iv.patched_logits(pair, writes)[0], corrupted, rtol=0, atol=1e-12)
    assert not torch.allclose(
        iv.patched_logits(pair, writes[1:])[0], corrupted, atol=1e-6
    )  # attn 0 reads clean keys
    grid = pair.attribution_patching()
    assert grid.metric_corrupted == pytest.approx(
        float(corrupted[pair.answer_id] - corrupted[pair.foil_id]), abs=1e-12
    )


def test_batched_exact_patching_equals_one_cell_at_a_time(pair):
    cells, values = pair.exact_patching("resid", position=3)
    assert cells == [(layer, 3) for layer in range(4)]
    clean = iv.patched_metric(pair, [])
    one_by_one = [iv.patched_metric(pair, [("resid", layer, [3])]) - clean for layer, _ in cells]
    assert np.allclose(values, one_by_one, rtol=0, atol=1e-12)
    assert np.abs(values).max() > 1e-4  # the changed token matters
    _, column = pair.exact_patching("mlp", layer=1)
    assert np.allclose(column[:3], 0.0, atol=1e-14)  # positions before the change: same activation


def test_attribution_patching_is_exact_where_the_model_is_linear_in_the_site():
    lm = float64_lm(without_final_norm=True)  # logits = W_U h: linear in the last block's writes
    pair = lm.compare(CLEAN, CORRUPTED, answer="a", foil="b")
    grid = pair.attribution_patching()
    last, n = pair.n_tokens - 1, lm.arch.n_layers
    for site, layer in (("resid", n), ("mlp", n - 1)):
        _, exact = pair.exact_patching(site, layer=layer, position=last)
        assert exact[0] == pytest.approx(grid.approx[site][layer, last], rel=1e-9, abs=1e-15)
        assert abs(exact[0]) > 1e-6
    _, exact = pair.exact_patching("resid", layer=n)
    assert np.allclose(exact[:last], 0, atol=1e-15) and np.allclose(
        grid.approx["resid"][n, :last], 0, atol=1e-15
    )


def plain_loop_estimate(lm: LM, pair, site: str, layer: int) -> np.ndarray:
    """(pos,) (a_corrupted - a_clean) . d metric / d a by a fresh autograd forward for this one site."""
    store: dict = {}
    hook = iv.sites.SiteHook(site, layer, iv.sites.recorder(store, "a", grad_leaf=True))
    with iv.hooked(lm, [hook]), torch.enable_grad():
        value = pair.score(last_logits(lm, pair.clean_ids[None]))[0]
        (grad,) = torch.autograd.grad(value, store["a"])
    delta = pair.corrupted_cache()[(site, layer)] - store["a"].detach()[0]
    return (delta * grad[0]).sum(-1).numpy()


def test_attribution_patching_equals_a_plain_autograd_loop(lm64, pair):
    grid = pair.attribution_patching()
    for site, layer in (("resid", 0), ("resid", 2), ("attn", 1), ("mlp", 0), ("mlp", 2)):
        reference = plain_loop_estimate(lm64, pair, site, layer)
        assert np.allclose(grid.approx[site][layer], reference, rtol=1e-9, atol=1e-15), (site, layer)
    frame = grid.to_frame()
    assert len(frame) == sum(g.size for g in grid.approx.values()) and frame["exact"].isna().all()
    filled = iv.with_exact(grid, pair, "attn", 1, None)
    assert filled.comparison()["layer"].eq("L1").all() and len(filled.comparison()) == pair.n_tokens
    assert filled.figure(site="attn").data and grid.to_dict()["exact"]["attn"][0][0] is None


def test_bad_prompt_pairs_raise_clear_errors(lm64):
    with pytest.raises(InputError, match=r"clean prompt is 8 tokens .* corrupted prompt 7 tokens"):
        lm64.compare(CLEAN, "abcefgh", answer="a", foil="b")
    with pytest.raises(TokenError, match="needs a foil"):
        lm64.compare(CLEAN, CORRUPTED, answer="a")
    with pytest.raises(InputError, match="metric must be one of"):
        lm64.compare(CLEAN, CORRUPTED, answer="a", metric="kl")
    pair = lm64.compare(CLEAN, CORRUPTED, answer="a", metric="prob")
    with pytest.raises(InputError, match="site must be one of"):
        pair.exact_patching("heads", position=1)
    with pytest.raises(InputError, match="layer for site 'attn' must be a whole number from 0 to 2"):
        pair.exact_patching("attn", layer=3)
    with pytest.raises(InputError, match="Pick a layer"):
        pair.exact_patching("attn")
    value = pair.attribution_patching().metric_clean
    assert value == pytest.approx(
        float(torch.softmax(own_logits(lm64, CLEAN), -1)[pair.answer_id]), rel=1e-12
    )


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_direct_logit_attribution_sums_to_the_logit(family):
    lm = float64_lm(family)
    seq = lm.generate("hello wor", generate=3)
    for position in (5, seq.n_tokens - 1, -1):
        dla = seq.direct_logit_attribution(position=position)
        assert dla.sum_error <= dla.tolerance, (family, position, dla.sum_error, dla.tolerance)
        assert dla.tolerance < 1e-4 * np.abs(dla.contributions).sum() + 1e-5
    if dla.head_contributions is not None:
        attn = np.array([dla.contributions[dla.labels.index(f"L{i} attn")] for i in range(lm.arch.n_layers)])
        bias = attn - dla.head_contributions.sum(1)  # what the output projection's bias writes
        out = iv.sites.out_projection(lm, 0)
        assert np.allclose(bias, 0, atol=1e-12) or getattr(out, "bias", None) is not None


def test_direct_logit_attribution_matches_a_hand_computed_rmsnorm_read_out(lm64):
    seq = lm64.generate("hello wor", generate=2)
    dla = seq.direct_logit_attribution(position=seq.n_tokens - 1)
    h = torch.tensor(seq.hidden_states[:, seq.n_tokens - 2], dtype=torch.float64)  # (layer + 1, d)
    norm = lm64.arch.final_norm
    scale = torch.sqrt((h[-1] ** 2).mean() + norm.variance_epsilon)
    v = norm.weight.double() * lm64.model.lm_head.weight[seq.token_ids[-1]].double() / scale
    # seq.hidden_states are float32 copies: 1e-6 covers their rounding
    assert dla.contributions[0] == pytest.approx(float(v @ h[0]), rel=1e-6)
    block_writes = np.array(
        [
            dla.contributions[dla.labels.index(f"L{i} attn")]
            + dla.contributions[dla.labels.index(f"L{i} mlp")]
            for i in range(lm64.arch.n_layers)
        ]
    )
    assert np.allclose(block_writes, (v @ (h[1:] - h[:-1]).T).numpy(), rtol=1e-6, atol=1e-8)
    assert dla.figure().data and dla.figure(kind="heads").data and len(dla.to_frame()) == len(dla.labels)


def test_an_ablation_of_nothing_and_a_steering_of_zero_change_nothing(lm64):
    seq = lm64.generate("hello wor", generate=6)
    for nothing in ([], [iv.ablate_neurons(1, [])], [iv.steer(2, np.ones(lm64.arch.d_model), 0.0)]):
        again = seq.regenerate(nothing, generate=6)
        assert again.intervened_ids == again.original_ids == [int(i) for i in seq.token_ids[-6:]]
        assert np.allclose(again.intervened_p, again.intervened_p_original, rtol=1e-10)
        assert np.allclose(again.original_p, again.original_p_intervened, rtol=1e-6)  # float32 states
    loud = seq.regenerate([iv.ablate_mlp(layer) for layer in range(3)], generate=6)
    assert (np.abs(loud.original_p_intervened - loud.original_p) / loud.original_p).max() > 1e-4
    assert loud.figure().data and list(loud.to_frame().columns)[:3] == ["step", "original", "p_original"]


def test_mean_ablation_sets_the_neurons_to_their_prompt_mean(lm64):
    ids = lm64.encode("hello world")
    seen: dict = {}
    ablation = iv.ablate_neurons(1, [3, 7], "mean")
    with iv.intervened(lm64, [ablation], ids):
        spy = iv.sites.SiteHook("neurons", 1, iv.sites.recorder(seen, "x"))
        with iv.hooked(lm64, [spy]), torch.inference_mode():
            lm64.model(input_ids=ids[None])
    plain = lm64(ids).activations[1]  # (neuron, pos)
    assert np.allclose(seen["x"][0, :, [3, 7]].numpy(), plain[[3, 7]].mean(1)[None], rtol=1e-12)
    assert np.allclose(seen["x"][0, :, 4].numpy(), plain[4], rtol=1e-12)


def test_steering_adds_the_direction_to_the_residual_stream(lm64):
    direction = iv.steering_direction(lm64, "good good", "bad bad", layer=1)
    ids = lm64.encode("hello")
    with iv.intervened(lm64, [iv.steer(1, direction, 2.0)], ids), torch.inference_mode():
        store: dict = {}
        with iv.hooked(lm64, [iv.sites.SiteHook("resid", 2, iv.sites.recorder(store, "h"))]):
            lm64.model(input_ids=ids[None])
    plain = lm64(ids).hidden_states[2]
    assert np.allclose(store["h"][0].numpy(), plain + 2.0 * direction, rtol=1e-6, atol=1e-8)  # plain: float32
    with (
        pytest.raises(InputError, match="must have 32 numbers"),
        iv.intervened(lm64, [iv.steer(1, np.ones(3), 1.0)], ids),
    ):
        pass


def test_hooks_are_removed_after_an_exception(lm64):
    ids = lm64.encode("hello")
    before = own_logits(lm64, "hello")
    edits = [iv.ablate_mlp(0), iv.ablate_head(1, 2, "mean")]
    with pytest.raises(RuntimeError, match="boom"), iv.intervened(lm64, edits, ids):
        assert hook_count(lm64.arch) == 2
        raise RuntimeError("boom")
    assert hook_count(lm64.arch) == 0
    assert torch.equal(own_logits(lm64, "hello"), before)
    with (
        pytest.raises(EccoError, match="head numbers must lie in 0..3"),
        iv.intervened(lm64, [iv.ablate_head(1, 9)], ids),
    ):
        pass
    assert hook_count(lm64.arch) == 0


def test_a_concurrent_plain_run_is_unaffected(lm64):
    ids = lm64.encode("hello world")
    reference = own_logits(lm64, "hello world")
    results: dict = {}
    inside, done = threading.Event(), threading.Event()

    def bypassing_the_lock():  # the model called directly, while the hooks are registered
        inside.wait()
        with torch.inference_mode():
            results["direct"] = lm64.model(input_ids=ids[None]).logits[0, -1].double()
        done.set()

    def plain_run():  # the library's own run waits for the lock
        inside.wait()
        results["run"] = lm64(ids).hidden_states

    threads = [threading.Thread(target=bypassing_the_lock), threading.Thread(target=plain_run)]
    for thread in threads:
        thread.start()
    with iv.intervened(lm64, [iv.ablate_mlp(layer) for layer in range(3)], ids):
        inside.set()
        done.wait(60)
        with torch.inference_mode():
            results["intervened"] = lm64.model(input_ids=ids[None]).logits[0, -1].double()
    for thread in threads:
        thread.join(60)
    assert torch.equal(results["direct"], reference)
    assert not torch.allclose(results["intervened"], reference, atol=1e-6)
    with torch.inference_mode():
        assert np.array_equal(results["run"], lm64(ids).hidden_states)
