"""Property-based: random values of wrong types and ranges thrown at every public function.

Each example replaces one to three arguments of a valid call by hostile values (None, bools, huge
and negative ints, NaN and inf, text, bytes, mixed lists, dicts, float arrays and tensors, plain
objects) and accepts only a result or an ``EccoError`` with a one-line message: never a raw numpy,
torch or Python exception.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ecco_core
from ecco_core.analysis import attention, checks, neurons, similarity
from ecco_core.analysis import attribution as saliency_methods
from ecco_core.errors import EccoError
from ecco_core.facade import OutputSeq

EXAMPLES = 40
"""Examples per public function (about 25 functions: ~1000 calls on the tiny model)."""

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.integers(-3, 40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=6),
    st.sampled_from(
        ["", " ", "auto", "all", "0", "-1", "1.5", "cuda", "nan", "grad_x_input", "cka", "x" * 300]
    ),
    st.binary(max_size=4),
)
HOSTILE = st.one_of(
    SCALARS,
    st.lists(
        st.one_of(st.integers(-5, 60), st.floats(), st.text(max_size=3), st.none(), st.booleans()), max_size=4
    ),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
    st.sampled_from(
        [
            np.array([1.5, 2.0]),
            np.array([[1, 2], [3, 4]]),
            np.int64(3),
            np.float32(0.5),
            np.array([]),
            torch.tensor([2.0]),
            torch.tensor([5, 6]),
            object(),
            (1, 2),
            range(3),
            {1, 2},
            Path("/"),
            "\x00",  # open() raises ValueError on it, not OSError (found by an earlier random draw)
        ]
    ),
)


def _save(seq, path):
    return seq.save(path)


# name -> (call(lm, seq, **kwargs), valid kwargs)
PUBLIC = {
    "generate": (
        lambda model, run, **kw: model.generate(**kw),
        dict(
            text="hi",
            generate=2,
            do_sample=False,
            temperature=1.0,
            top_k=None,
            top_p=None,
            seed=None,
            attention=False,
            activation_layers=None,
            attention_layers=None,
            attribution=(),
        ),
    ),
    "call": (
        lambda model, run, **kw: model(**kw),
        dict(text="hi there", attention=False, activation_layers=None, attention_layers=None),
    ),
    "from_pretrained device/dtype": (
        lambda model, run, **kw: ecco_core.from_pretrained("./no/such/model", **kw),
        dict(device="cpu", dtype=None),
    ),
    "load name": (  # the engine's loader (ecco_core.from_pretrained takes ecco's hf_model_id)
        lambda model, run, **kw: ecco_core.load(device="cpu", **kw),
        dict(name_or_path="./no/such/model"),
    ),
    "layer_predictions": (
        lambda model, run, **kw: run.layer_predictions(**kw),
        dict(position=3, topk=5, layer=None, lens="normed"),
    ),
    "rankings": (
        lambda model, run, **kw: run.rankings(**kw),
        dict(include_prompt=False, layer=None, lens="normed"),
    ),
    "rankings_watch": (
        lambda model, run, **kw: run.rankings_watch(**kw),
        dict(watch=[5, " "], position=-1, layer=None, lens="normed"),
    ),
    "saliency": (
        lambda model, run, **kw: run.saliency(**kw),
        dict(
            attr_method="grad_x_input",
            style="minimal",
            target="prob",
            foil=None,
            n_steps=4,
            baseline="zero",
            quadrature="auto",
            positions=None,
            backend="auto",
        ),
    ),
    "run_nmf": (
        lambda model, run, **kw: run.run_nmf(**kw),
        dict(n_components=2, from_layer=None, to_layer=None, positions="all", method="nmf", skip_first=False),
    ),
    "top_neurons": (
        lambda model, run, **kw: neurons.top_neurons(run, **kw),
        dict(position=3, k=5, from_layer=None, to_layer=None, relative=False, side="decoder"),
    ),
    "neuron_activations": (
        lambda model, run, **kw: neurons.neuron_activations(run, **kw),
        dict(layer=1, neuron=3, side="decoder"),
    ),
    "layer_similarity": (
        lambda model, run, **kw: similarity.layer_similarity(run, **kw),
        dict(method="cka", source="hidden", dims=4, skip_first=True, normalize=False, side="decoder"),
    ),
    "similarity": (
        lambda model, run, **kw: similarity.similarity(**kw),
        dict(x=np.arange(12.0).reshape(4, 3) ** 2, y=np.arange(8.0).reshape(4, 2), method="cka", dims=2),
    ),
    "attention": (
        lambda model, run, **kw: attention.attention(run, **kw),
        dict(method="mean", layer=-1, head=0, side="self"),
    ),
    "head_attention": (
        lambda model, run, **kw: attention.head_attention(run, **kw),
        dict(layer=0, head=1, side="self"),
    ),
    "rollout": (lambda model, run, **kw: attention.rollout(run, **kw), dict(layer=-1, side="self")),
    "attention_grid": (
        lambda model, run, **kw: attention.attention_grid(run, **kw),
        dict(layers=None, side="self", size=8),
    ),
    "layers_within_budget": (
        lambda model, run, **kw: attention.layers_within_budget(**kw),
        dict(n_layers=30, n_heads=9, n_tokens=500, budget_mb=64),
    ),
    "compute_attributions": (
        lambda model, run, **kw: saliency_methods.compute_attributions(
            OutputSeq.from_capture(run, model), **kw
        ),
        dict(methods=["gradient"], progress=None),
    ),
    "prediction_index": (lambda model, run, **kw: run.prediction_index(**kw), dict(position=3)),
    "pwcca": (
        lambda model, run, **kw: similarity.pwcca(**kw),
        dict(x=np.arange(12.0).reshape(4, 3) ** 2, y=np.arange(8.0).reshape(4, 2), max_dims=None, tol=1e-6),
    ),
    "canonical_correlations": (
        lambda model, run, **kw: similarity.canonical_correlations(**kw),
        dict(x=np.arange(12.0).reshape(4, 3) ** 2, y=np.arange(8.0).reshape(4, 2), max_dims=1, tol=1e-6),
    ),
    "stack": (lambda model, run, **kw: run.stack(**kw), dict(side="decoder")),
    "parse_watch_text": (
        lambda model, run, **kw: checks.parse_watch_text(**kw),
        dict(text="is, are", leading_space=True),
    ),
    "save": (lambda model, run, **kw: _save(run, **kw), dict(path="run.npz")),
    "load": (lambda model, run, **kw: OutputSeq.load(**kw), dict(path="run.npz", lm=None, max_bytes=2**24)),
}


@pytest.fixture(scope="module")
def seq(tiny):
    return tiny.generate("hello world", generate=4, attention=True)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, seq):
    folder = tmp_path_factory.mktemp("property")
    seq.save(folder / "run.npz")
    return folder


@pytest.fixture(autouse=True)
def hub_offline(monkeypatch):
    import huggingface_hub.constants as hub

    monkeypatch.setattr(hub, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.mark.parametrize("name", sorted(PUBLIC))
def test_valid_calls_work(tiny, seq, workdir, monkeypatch, name):
    """Each property's baseline: the valid call gives a result (a missing model: an EccoError)."""
    monkeypatch.chdir(workdir)
    call, valid = PUBLIC[name]
    try:
        call(tiny, seq, **valid)
    except EccoError:
        assert name.startswith(("from_pretrained", "load"))


@pytest.mark.parametrize("name", sorted(PUBLIC))
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_hostile_arguments_give_results_or_eccoerror(tiny, seq, workdir, monkeypatch, name, data):
    monkeypatch.chdir(workdir)
    call, valid = PUBLIC[name]
    chosen = data.draw(st.lists(st.sampled_from(sorted(valid)), min_size=1, max_size=3, unique=True))
    kwargs = dict(valid)
    for key in chosen:
        kwargs[key] = data.draw(HOSTILE, label=key)
    if name == "save" and isinstance(kwargs["path"], str) and kwargs["path"].strip("/ ") == "":
        return  # the root folder itself
    try:
        call(tiny, seq, **kwargs)
    except EccoError as error:
        assert str(error) and "\n" not in str(error), repr(error)
