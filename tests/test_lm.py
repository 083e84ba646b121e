"""Generation and the one capture forward, on tiny random models of every family."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from ecco_core.errors import EmptyPromptError, GenerationSettingsError, InputError, PromptTooLongError
from ecco_core.facade import OutputSeq
from ecco_core.model.capture import hook_count


def test_capture_shapes(tiny_family):
    lm = tiny_family
    seq = lm.generate("abc", generate=5, attention=True)
    n = seq.n_tokens
    assert seq.n_input_tokens == 3 and n == 8
    assert seq.hidden_states.shape == (4, n, 32)  # (layer + 1, pos, d_model)
    assert seq.activations.shape == (3, lm.arch.n_neurons, n)  # (layer, neuron, pos)
    assert seq.attentions.shape[:2] == (3, 4) and seq.attentions.shape[2:] == (n, n)
    np.testing.assert_allclose(seq.attentions.sum(-1), 1.0, atol=1e-5)
    assert hook_count(lm.arch) == 0


def test_hidden_states_match_the_models_own(tiny_family):
    """Block outputs equal HF's hidden states (except the last, which HF stores normed)."""
    lm = tiny_family
    ids = torch.tensor([10, 20, 30, 40, 50])
    seq = lm(ids)
    with torch.no_grad():
        ref = lm.model(ids[None], output_hidden_states=True)
    for layer in range(lm.arch.n_layers):  # HF's last entry is normed on most families
        np.testing.assert_allclose(seq.hidden_states[layer], ref.hidden_states[layer][0].numpy(), atol=1e-5)
    logits = lm.unembed(torch.from_numpy(seq.hidden_states[-1]))
    np.testing.assert_allclose(logits.numpy(), ref.logits[0].numpy(), atol=1e-4)


def test_ffn_activation_is_input_of_output_projection(tiny):
    ids = torch.tensor([11, 12, 13])
    seen = {}
    site = tiny.arch.ffn_sites[1]
    handle = site.register_forward_pre_hook(lambda m, a: seen.setdefault("x", a[0][0].clone()))
    try:
        seq = tiny(ids)
    finally:
        handle.remove()
    np.testing.assert_allclose(seq.activations[1], seen["x"].T.numpy(), atol=1e-6)


def test_greedy_generation_matches_hf_generate(tiny):
    seq = tiny.generate("hello", generate=6)
    ids = torch.tensor(seq.token_ids[:5])[None]
    with torch.no_grad():
        ref = tiny.model.generate(ids, max_new_tokens=6, do_sample=False, pad_token_id=3)
    assert seq.token_ids.tolist() == ref[0].tolist()


def test_same_seed_same_sample(tiny):
    a = tiny.generate("hey", generate=8, do_sample=True, seed=7, temperature=1.5)
    b = tiny.generate("hey", generate=8, do_sample=True, seed=7, temperature=1.5)
    assert a.token_ids.tolist() == b.token_ids.tolist()


def test_hooks_removed_after_an_exception(tiny):
    def boom(*_):
        raise RuntimeError("boom")

    handle = tiny.arch.blocks[1].register_forward_hook(boom)
    try:
        with pytest.raises(RuntimeError, match="boom"):
            tiny(torch.tensor([5, 6, 7]))
    finally:
        handle.remove()
    assert hook_count(tiny.arch) == 0


def test_activation_layer_subset(tiny):
    seq = tiny(torch.tensor([5, 6, 7]), activation_layers=[2])
    full = tiny(torch.tensor([5, 6, 7]))
    assert seq.activations.shape[0] == 1 and seq.activation_layers == [2]
    np.testing.assert_allclose(seq.activations[0], full.activations[2])


def test_concurrent_calls_give_serial_results(tiny):
    prompts = ["abc", "hello there", "xyz 123", "The cat"]
    serial = [tiny.generate(p, generate=4).hidden_states for p in prompts]
    results: dict[int, np.ndarray] = {}

    def work(i: int) -> None:
        results[i] = tiny.generate(prompts[i], generate=4).hidden_states

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in range(4):
        np.testing.assert_array_equal(results[i], serial[i])
    assert hook_count(tiny.arch) == 0


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"text": "   "}, EmptyPromptError),
        ({"text": ""}, EmptyPromptError),
        ({"text": "abc", "generate": 0}, GenerationSettingsError),
        ({"text": "abc", "generate": -3}, GenerationSettingsError),
        ({"text": "abc", "generate": 10**6}, GenerationSettingsError),
        ({"text": "abc", "do_sample": True, "temperature": 0}, GenerationSettingsError),
        ({"text": "abc", "do_sample": True, "top_p": 1.5}, GenerationSettingsError),
        ({"text": "x" * 200, "generate": 5}, PromptTooLongError),
        ({"text": [5, 9999]}, InputError),
    ],
)
def test_bad_input_raises_clear_errors(tiny, kwargs, error):
    text = kwargs.pop("text")
    with pytest.raises(error) as info:
        tiny.generate(text, **kwargs)
    assert len(str(info.value)) > 20


def test_save_and_load_round_trip(tiny, tmp_path):
    seq = tiny.generate("abc", generate=3, attention=True)
    path = seq.save(tmp_path / "run")
    back = OutputSeq.load(path)
    assert back.tokens == seq.tokens and back.n_input_tokens == seq.n_input_tokens
    np.testing.assert_array_equal(back.hidden_states, seq.hidden_states)
    np.testing.assert_array_equal(back.attentions, seq.attentions)
    assert back.lm is None and back.model_name == "tiny-llama"


def test_progress_reports_every_stage(tiny):
    stages = []
    tiny.generate("abc", generate=4, progress=lambda s, f: stages.append((s, round(f, 2))))
    assert ("generate", 1.0) in stages and ("capture", 1.0) in stages
    assert [f for s, f in stages if s == "generate"] == sorted(f for s, f in stages if s == "generate")
