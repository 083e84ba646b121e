"""Generation a few tokens at a time (``LanguageModel.start_generation``): the same tokens and the
same captured run as one uninterrupted generate, greedy and seeded, and an early end."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ecco_core.facade import OutputSeq

PROMPT = "Hello there, "
SAMPLED = {"do_sample": True, "temperature": 1.3, "top_k": 20, "top_p": 0.9, "seed": 7}


def stepped(lm, n: int, most: int, **options):
    generation = lm.start_generation(PROMPT, n, **options)
    sizes = []
    while not generation.done:
        sizes.append(generation.step(most))
    return generation, sizes


@pytest.mark.parametrize("options", [{}, SAMPLED], ids=["greedy", "seeded"])
def test_steps_write_the_tokens_and_capture_the_run_of_one_generate(tiny, options):
    whole = tiny.generate(PROMPT, generate=23, attention=True, **options)
    generation, sizes = stepped(tiny, 23, 4, **options)
    written = whole.n_tokens - whole.n_input_tokens
    assert written == 23 or whole.token_ids[-1] == tiny.model.generation_config.eos_token_id
    assert sum(sizes) == written and all(size == 4 for size in sizes[:-1]) and len(sizes) == -(-written // 4)
    assert generation.ids.tolist() == whole.token_ids.tolist()
    seq = OutputSeq.from_capture(generation.capture(attention=True), tiny)
    assert seq.n_input_tokens == whole.n_input_tokens and seq.tokens == whole.tokens
    # the same ids through the same capture forward: the code promises bit-equal arrays
    np.testing.assert_array_equal(seq.hidden_states, whole.hidden_states)
    np.testing.assert_array_equal(seq.activations, whole.activations)
    np.testing.assert_array_equal(seq.attentions, whole.attentions)


def test_greedy_steps_equal_a_plain_hf_generate(tiny):
    generation, _ = stepped(tiny, 17, 3)
    ids = tiny.encode(PROMPT)[None]
    with torch.no_grad():
        plain = tiny.model.generate(ids, max_new_tokens=17, do_sample=False, pad_token_id=3)
    assert generation.ids.tolist() == plain[0].tolist()


def test_seeded_steps_equal_the_seeds_sampler_in_one_step(tiny):
    one, _ = stepped(tiny, 15, 15, **SAMPLED)
    many, _ = stepped(tiny, 15, 2, **SAMPLED)
    other, _ = stepped(tiny, 15, 2, **{**SAMPLED, "seed": 8})
    assert many.ids.tolist() == one.ids.tolist()
    assert other.ids.tolist() != one.ids.tolist(), "the seed matters (else the test could not fail)"


def test_a_step_after_the_first_feeds_one_token_from_the_cache(tiny):
    fed = []

    def record(module, args, kwargs):
        ids = kwargs.get("input_ids")
        fed.append((ids if ids is not None else kwargs["inputs_embeds"]).shape[1])

    handle = tiny.model.model.register_forward_pre_hook(record, with_kwargs=True)
    try:
        stepped(tiny, 9, 4)
    finally:
        handle.remove()
    assert fed == [len(tiny.encode(PROMPT))] + [1] * 8


def test_an_end_of_sequence_token_ends_the_steps_where_generate_ends(tiny):
    free, _ = stepped(tiny, 20, 20)
    written = free.ids[free.n_input :].tolist()
    end = written[5]  # make the sixth written token the end-of-sequence token
    first = written.index(end)
    config = tiny.model.generation_config
    previous = config.eos_token_id
    config.eos_token_id = end
    try:
        whole = tiny.generate(PROMPT, generate=20)
        generation, sizes = stepped(tiny, 20, 4)
    finally:
        config.eos_token_id = previous
    assert generation.done and generation.n_new == first + 1 < 20
    assert generation.ids.tolist() == whole.token_ids.tolist()
    assert generation.step(4) == 0 and sum(sizes) == first + 1


def test_stopping_early_captures_a_valid_shorter_run(tiny):
    generation = tiny.start_generation(PROMPT, 40)
    generation.step(4)
    generation.step(4)
    seq = OutputSeq.from_capture(generation.capture(), tiny)
    full = tiny.generate(PROMPT, generate=8)
    assert seq.n_tokens == full.n_tokens and seq.token_ids.tolist() == full.token_ids.tolist()
    np.testing.assert_array_equal(seq.hidden_states, full.hidden_states)
    nothing = OutputSeq.from_capture(tiny.start_generation(PROMPT, 40).capture(), tiny)
    assert nothing.n_tokens == nothing.n_input_tokens == len(tiny.encode(PROMPT))


@pytest.mark.parametrize("options", [{}, SAMPLED], ids=["greedy", "seeded"])
def test_every_family_steps_like_one_generate(tiny_family, options):
    """The KV cache carries over between steps in every family's cache layout (29 causal families
    of the architecture matrix were checked the same way by hand: all equal)."""
    one, _ = stepped(tiny_family, 13, 13, **options)
    many, _ = stepped(tiny_family, 13, 4, **options)
    assert many.ids.tolist() == one.ids.tolist()
