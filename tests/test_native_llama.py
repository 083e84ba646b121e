"""native_llama: parity with transformers' LlamaForCausalLM (logits, attention, gradients,
generate), the load guard, and the embedded model loading without transformers' model code."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from ecco_core import models
from ecco_core.architecture import find_architecture
from ecco_core.lm import LM
from ecco_core.models import LoadedWeights
from ecco_core.native_llama import NativeLlamaForCausalLM, load_native, supports
from tests.conftest import EU_PROMPT
from tests.tiny import VOCAB, char_tokenizer

TINY = {
    "vocab_size": VOCAB,
    "hidden_size": 32,
    "num_hidden_layers": 3,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,  # GQA: two query heads per key/value head
    "intermediate_size": 64,
    "max_position_embeddings": 128,
    "bos_token_id": 1,
    "eos_token_id": 2,
    "pad_token_id": 3,
}


def _pair(folder: Path, tied: bool, seed: int = 0, dtype: torch.dtype = torch.float32):
    """A random HF Llama saved to ``folder``, reloaded by HF and by native_llama."""
    torch.manual_seed(seed)
    LlamaForCausalLM(LlamaConfig(**TINY, tie_word_embeddings=tied)).save_pretrained(folder)
    char_tokenizer().save_pretrained(folder)
    hf = LlamaForCausalLM.from_pretrained(folder, dtype=dtype).eval()
    native, tokenizer = load_native(folder, dtype)
    return hf, native, tokenizer


@pytest.fixture(scope="module", params=[True, False], ids=["tied", "untied"])
def pair(request, tmp_path_factory):
    return _pair(tmp_path_factory.mktemp("llama"), request.param)


@pytest.fixture(scope="module")
def tied(tmp_path_factory):
    return _pair(tmp_path_factory.mktemp("tied"), True)


def _ids(batch: int = 1, length: int = 11, seed: int = 1) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(4, VOCAB, (batch, length), generator=generator)


# ----- the guard ---------------------------------------------------------------------------------
PLAIN = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_act": "silu"}


@pytest.mark.parametrize(
    "change",
    [
        {"rope_scaling": {"rope_type": "linear", "factor": 2.0}},
        {"rope_scaling": {"type": "dynamic", "factor": 2.0}},
        {"rope_parameters": {"rope_type": "llama3", "rope_theta": 5e5, "factor": 8.0}},
        {"attention_bias": True},
        {"mlp_bias": True},
        {"pretraining_tp": 2},
        {"hidden_act": "gelu"},
        {"model_type": "mistral"},
        {"architectures": ["LlamaForSequenceClassification"]},
        {"quantization_config": {"quant_method": "bitsandbytes"}},
        {"partial_rotary_factor": 0.5},
        {"rope_scaling": {"rope_type": "default"}, "rope_parameters": {"rope_type": "yarn", "factor": 4.0}},
        {"rope_scaling": "linear"},
    ],
)
def test_supports_refuses_what_it_does_not_reproduce(change):
    assert supports(PLAIN)
    assert not supports({**PLAIN, **change})


def test_supports_accepts_default_rope_in_both_spellings_and_checks_generation():
    assert supports({**PLAIN, "rope_scaling": None, "rope_theta": 5e5})
    assert supports({**PLAIN, "rope_parameters": {"rope_type": "default", "rope_theta": 1e5}})
    assert supports(PLAIN, {"eos_token_id": 2, "repetition_penalty": 1.0, "top_k": 20})
    assert not supports(PLAIN, {"repetition_penalty": 1.3})
    assert not supports(PLAIN, {"num_beams": 4})


def test_unsupported_config_falls_back_to_transformers(tmp_path, monkeypatch):
    torch.manual_seed(0)
    config = LlamaConfig(**TINY, rope_scaling={"rope_type": "linear", "factor": 2.0})
    LlamaForCausalLM(config).save_pretrained(tmp_path)
    assert models._load_native(tmp_path, "x", torch.float32) is None
    with pytest.raises(ValueError, match="plain Llama"):
        load_native(tmp_path)


def test_ecco_native_0_turns_it_off(tied, tmp_path, monkeypatch):
    tied[0].save_pretrained(tmp_path)
    char_tokenizer().save_pretrained(tmp_path)
    assert isinstance(models._load_native(tmp_path, "x", torch.float32).model, NativeLlamaForCausalLM)
    monkeypatch.setenv("ECCO_NATIVE", "0")
    assert models._load_native(tmp_path, "x", torch.float32) is None


# ----- forward parity --------------------------------------------------------------------------
def test_module_tree_matches_hf(pair):
    hf, native, _ = pair
    hf_shapes = {name: tuple(p.shape) for name, p in hf.state_dict().items()}
    native_shapes = {name: tuple(p.shape) for name, p in native.state_dict().items()}
    assert native_shapes == hf_shapes
    assert (native.lm_head.weight is native.model.embed_tokens.weight) == hf.config.tie_word_embeddings
    arch = find_architecture(native)
    assert arch.final_norm is native.model.norm and arch.unembedding is native.lm_head
    assert arch.ffn_sites[1] is native.model.layers[1].mlp.down_proj
    assert arch.attentions[2] is native.model.layers[2].self_attn
    assert arch.n_layers == 3 and arch.d_model == 32 and arch.n_neurons == 64


def test_logits_equal_hf_for_ids_embeds_and_kept_rows(pair):
    hf, native, _ = pair
    ids = _ids(batch=2)
    embeds = hf.get_input_embeddings()(ids)
    rows = torch.tensor([0, 4, 10])
    with torch.no_grad():
        ref = hf(ids).logits  # (2, 11, vocab)
        torch.testing.assert_close(native(ids).logits, ref, atol=1e-5, rtol=0)
        torch.testing.assert_close(native(inputs_embeds=embeds).logits, ref, atol=1e-5, rtol=0)
        torch.testing.assert_close(native(ids, logits_to_keep=1).logits, ref[:, -1:], atol=1e-5, rtol=0)
        torch.testing.assert_close(native(ids, logits_to_keep=rows).logits, ref[:, rows], atol=1e-5, rtol=0)
        torch.testing.assert_close(
            native(inputs_embeds=embeds, logits_to_keep=rows).logits,
            hf(inputs_embeds=embeds, logits_to_keep=rows).logits,
            atol=1e-5,
            rtol=0,
        )
    assert float(ref.std()) > 0.01  # a real comparison, not two zero tensors


def test_hidden_states_equal_hf(pair):
    hf, native, _ = pair
    ids = _ids()
    with torch.no_grad():
        ref = hf(ids, output_hidden_states=True).hidden_states
        mine = native(ids, output_hidden_states=True).hidden_states
    assert len(mine) == len(ref) == 4
    for a, b in zip(mine, ref):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


def test_padded_batch_equals_hf(tied):
    hf, native, _ = tied
    ids = _ids(batch=2, length=8)
    mask = torch.ones_like(ids)
    mask[1, :3] = 0  # left padding on the second row
    with torch.no_grad():
        ref = hf(ids, attention_mask=mask).logits
        mine = native(ids, attention_mask=mask).logits
    torch.testing.assert_close(mine[0], ref[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(mine[1, 3:], ref[1, 3:], atol=1e-5, rtol=0)


def test_eager_attention_weights_equal_hf(pair):
    hf, native, _ = pair
    ids = _ids(batch=2)
    hf.set_attn_implementation("eager")
    native.set_attn_implementation("eager")
    try:
        with torch.no_grad():
            ref = hf(ids, output_attentions=True)
            mine = native(ids, output_attentions=True)
    finally:
        hf.set_attn_implementation("sdpa")
        native.set_attn_implementation("sdpa")
    assert len(mine.attentions) == 3 and mine.attentions[0].shape == (2, 4, 11, 11)  # (b, head, q, k)
    for a, b in zip(mine.attentions, ref.attentions):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)
    torch.testing.assert_close(mine.logits, ref.logits, atol=1e-5, rtol=0)
    assert torch.all(mine.attentions[0].triu(1) == 0)  # causal
    assert native.config._attn_implementation == "sdpa"


def test_attention_module_returns_weights_only_under_eager(tied):
    _, native, _ = tied
    seen = []
    handle = native.model.layers[0].self_attn.register_forward_hook(lambda _m, _a, out: seen.append(out))
    try:
        with torch.no_grad():
            native(_ids())
            native.set_attn_implementation("eager")
            native(_ids())
    finally:
        native.set_attn_implementation("sdpa")
        handle.remove()
    assert seen[0][1] is None and seen[1][1].shape == (1, 4, 11, 11)
    with pytest.raises(ValueError, match="one of"):
        native.set_attn_implementation("flash_attention_2")


def test_bfloat16_close_to_hf(tmp_path):
    hf, native, _ = _pair(tmp_path, tied=True, dtype=torch.bfloat16)
    assert native.dtype == torch.bfloat16
    ids = _ids()
    with torch.no_grad():
        ref, mine = hf(ids).logits, native(ids).logits
    assert mine.dtype == torch.bfloat16
    torch.testing.assert_close(mine.float(), ref.float(), atol=2e-2, rtol=0)


# ----- gradients ---------------------------------------------------------------------------------
def _grads(model, embeds: torch.Tensor, batched: bool) -> torch.Tensor:
    leaf = embeds.detach().clone().requires_grad_(True)  # (batch, pos, d)
    logits = model(inputs_embeds=leaf, use_cache=False, logits_to_keep=torch.tensor([3, 7])).logits
    picked = logits[:, :, 5].sum(0)  # (2,) one objective per kept row
    if not batched:
        return torch.autograd.grad(picked.sum(), leaf)[0]
    seeds = torch.eye(2)  # one backward per objective, vmapped
    return torch.autograd.grad(picked, leaf, grad_outputs=seeds, is_grads_batched=True)[0]


@pytest.mark.parametrize("batched", [False, True], ids=["plain", "is_grads_batched"])
def test_gradients_wrt_inputs_embeds_equal_hf(pair, batched):
    hf, native, _ = pair
    for module in (hf, native):
        module.requires_grad_(False)
    embeds = hf.get_input_embeddings()(_ids(batch=3)).detach()  # IG-like batch of inputs
    ref, mine = _grads(hf, embeds, batched), _grads(native, embeds, batched)
    assert mine.shape == ((2, 3, 11, 32) if batched else (3, 11, 32))
    torch.testing.assert_close(mine, ref, atol=1e-5, rtol=1e-4)
    assert float(mine.abs().max()) > 1e-4
    if batched:  # each seed's gradient equals its own plain backward
        assert torch.all(mine[0][:, 4:] == 0) and mine[0][:, :4].abs().max() > 0  # row 3 reads 0..3


# ----- generate ----------------------------------------------------------------------------------
class _Recorder:
    def __init__(self) -> None:
        self.calls: list = []

    def put(self, value) -> None:
        self.calls.append(value.tolist())

    def end(self) -> None:
        self.calls.append("end")


def test_greedy_generate_equals_hf_and_streams_the_same(pair):
    hf, native, _ = pair
    ids = _ids(length=5)
    for extra in ({}, {"min_new_tokens": 15}, {"eos_token_id": [2, 7, 9]}):
        streams = _Recorder(), _Recorder()
        ref = hf.generate(
            ids, max_new_tokens=15, do_sample=False, pad_token_id=3, streamer=streams[0], **extra
        )
        mine = native.generate(
            ids, max_new_tokens=15, do_sample=False, pad_token_id=3, streamer=streams[1], **extra
        )
        assert mine.tolist() == ref.tolist(), extra
        assert streams[1].calls == streams[0].calls
        assert streams[1].calls[0] == ids.tolist() and streams[1].calls[-1] == "end"
    assert mine.shape[1] <= 20


def test_eos_stops_unless_min_new_tokens_holds_it_back(tied):
    _, native, _ = tied
    ids = _ids(length=5)
    plain = native.generate(ids, max_new_tokens=12, eos_token_id=0)[0, 5:].tolist()  # <unk>: never drawn
    assert len(plain) == 12
    stop = plain[3]
    early = native.generate(ids, max_new_tokens=12, eos_token_id=stop)[0, 5:].tolist()
    assert early == plain[: plain.index(stop) + 1]  # stops on (and keeps) the first EOS
    held = native.generate(ids, max_new_tokens=12, min_new_tokens=12, eos_token_id=[stop, 0])
    assert held.shape == (1, 17) and stop not in held[0, 5:].tolist()


def test_kv_cache_generation_equals_full_forward_argmax(pair):
    _, native, _ = pair
    ids = _ids(length=4)
    out = native.generate(ids, max_new_tokens=16, min_new_tokens=16, do_sample=False)
    assert out.shape == (1, 20)
    with torch.no_grad():
        logits = native(out).logits[0, 3:-1]  # (16, vocab): each position predicts the next
    logits[:, 2] = -torch.inf  # EOS is held back by min_new_tokens
    assert out[0, 4:].tolist() == logits.argmax(-1).tolist()


@pytest.mark.parametrize(
    "settings",
    [
        {"temperature": 1.0, "top_k": 0, "top_p": 1.0},
        {"temperature": 1.7, "top_k": 0, "top_p": 1.0},
        {"temperature": 0.8, "top_k": 10, "top_p": 1.0},
        {"temperature": 1.2, "top_k": 0, "top_p": 0.7},
        {"temperature": 1.5, "top_k": 25, "top_p": 0.9},
        {},  # HF's defaults: top_k 50
    ],
)
def test_seeded_sampling_equals_hf(tied, settings):
    hf, native, _ = tied
    ids = _ids(length=5)
    for seed in (0, 7):
        torch.manual_seed(seed)
        ref = hf.generate(ids, max_new_tokens=20, do_sample=True, pad_token_id=3, **settings)
        torch.manual_seed(seed)
        mine = native.generate(ids, max_new_tokens=20, do_sample=True, pad_token_id=3, **settings)
        assert mine.tolist() == ref.tolist(), (settings, seed)


def test_left_padded_batch_generate_equals_hf(tied):
    hf, native, _ = tied
    ids = _ids(batch=2, length=6)
    mask = torch.ones_like(ids)
    mask[0, :2] = 0
    ids[0, :2] = 3
    ref = hf.generate(ids, attention_mask=mask, max_new_tokens=8, do_sample=False, pad_token_id=3)
    mine = native.generate(ids, attention_mask=mask, max_new_tokens=8, do_sample=False, pad_token_id=3)
    assert mine.tolist() == ref.tolist()


# ----- through ecco_core's LM --------------------------------------------------------------------
def test_lm_capture_equals_the_hf_backed_lm(tied):
    hf, native, tokenizer = tied
    lm_hf = LM(LoadedWeights(hf, tokenizer, "hf", "random", ""), torch.device("cpu"))
    lm_native = LM(LoadedWeights(native, tokenizer, "native", "disk-cache", ""), torch.device("cpu"))
    assert lm_native.model_type == "causal" and lm_native.context_length == 128
    a = lm_hf.generate("hello there", generate=6, attention=True)
    b = lm_native.generate("hello there", generate=6, attention=True)
    assert a.token_ids.tolist() == b.token_ids.tolist()
    np.testing.assert_allclose(b.hidden_states, a.hidden_states, atol=1e-5)
    np.testing.assert_allclose(b.activations, a.activations, atol=1e-5)
    np.testing.assert_allclose(b.attentions, a.attentions, atol=1e-6)
    assert native.config._attn_implementation == "sdpa"


# ----- the embedded model ----------------------------------------------------------------------
def _cache(smol) -> str:
    return str(models.gguf_cache_dir(models.embedded_gguf_path()))


@pytest.mark.embedded
def test_embedded_model_is_native(smol):
    assert type(smol.model) is NativeLlamaForCausalLM  # also in the process that filled the cache
    assert smol.source in ("disk-cache", "gguf")
    assert (
        smol.model.config.num_hidden_layers == 30 and smol.model.config.get_text_config() is smol.model.config
    )
    assert smol.model.generation_config.eos_token_id == 2
    assert getattr(smol.model.generation_config, "decoder_start_token_id", None) is None


@pytest.mark.embedded
def test_embedded_logits_and_greedy_continuation_equal_hf(smol):
    hf = LlamaForCausalLM.from_pretrained(_cache(smol)).eval()
    ids = smol.encode(EU_PROMPT)[None]
    with torch.no_grad():
        ref, mine = hf(ids).logits, smol.model(ids).logits
        torch.testing.assert_close(mine, ref, atol=1e-4, rtol=0)
        hf_out = hf.generate(ids, max_new_tokens=20, do_sample=False)
        mine_out = smol.model.generate(ids, max_new_tokens=20, do_sample=False)
        torch.manual_seed(11)
        hf_sample = hf.generate(ids, max_new_tokens=20, do_sample=True, temperature=0.9, top_k=40, top_p=0.95)
        torch.manual_seed(11)
        mine_sample = smol.model.generate(
            ids, max_new_tokens=20, do_sample=True, temperature=0.9, top_k=40, top_p=0.95
        )
    assert mine_out.tolist() == hf_out.tolist()
    assert smol.tokenizer.decode(mine_out[0, ids.shape[1] :]).startswith(" Croatia\n5.")
    assert mine_sample.tolist() == hf_sample.tolist()


TEXTS = [
    "Hello world",
    "   leading spaces and  doubled",
    "Héllo wörld 🙂 ok\nnext",
    "日本語のテキストと中文",
    "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
    "\n\n\ttabs and newlines\n",
    EU_PROMPT,
]


@pytest.mark.embedded
def test_embedded_tokenizer_equals_autotokenizer(smol):
    from transformers import AutoTokenizer

    auto, mine = AutoTokenizer.from_pretrained(_cache(smol)), smol.tokenizer
    for text in TEXTS:
        ids = auto(text).input_ids
        assert mine(text).input_ids == ids, text
        assert mine.decode(ids) == auto.decode(ids) and mine.convert_ids_to_tokens(
            ids
        ) == auto.convert_ids_to_tokens(ids)
        assert mine.decode(ids, skip_special_tokens=True) == auto.decode(ids, skip_special_tokens=True)
    assert mine("<|im_start|>hi").input_ids[0] == 1  # the marker is one special token
    assert (
        mine("hi").input_ids == auto("hi").input_ids and mine("hi").input_ids[0] != mine.bos_token_id
    )  # no BOS added
    for attr in (
        "bos_token_id",
        "eos_token_id",
        "pad_token_id",
        "unk_token_id",
        "all_special_ids",
        "all_special_tokens",
    ):
        assert getattr(mine, attr) == getattr(auto, attr), attr
    assert (mine.eos_token_id, mine.pad_token_id, mine.bos_token_id) == (2, 2, 1)
    assert mine.chat_template == auto.chat_template and len(mine) == len(auto)
    chat = [{"role": "user", "content": "hi"}]
    assert mine.apply_chat_template(chat, tokenize=False) == auto.apply_chat_template(chat, tokenize=False)


@pytest.mark.embedded
def test_a_fresh_process_loads_without_transformers_model_code(smol):
    heavy = [
        "transformers.models.llama.modeling_llama",
        "transformers.models.auto.modeling_auto",
        "transformers.generation",
        "torch._dynamo",
        "torch.distributed.tensor",
        "sympy",
        "scipy",
    ]
    code = (
        "import json, sys, ecco_core; lm = ecco_core.from_pretrained(device='cpu'); lm('hi there'); "
        f"print(json.dumps([type(lm.model).__name__, lm.source, [m for m in {heavy!r} if m in sys.modules]]))"
    )
    env = {k: v for k, v in os.environ.items() if k != "ECCO_NATIVE"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    name, source, imported = json.loads(out.stdout.strip().splitlines()[-1])
    assert (name, source, imported) == ("NativeLlamaForCausalLM", "disk-cache", [])
