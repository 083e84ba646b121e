"""Saved runs: ``save`` keeps everything and is atomic; ``load`` treats the file as untrusted."""

from __future__ import annotations

import errno
import io
import json
import logging
import os
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ecco_core import run_io
from ecco_core.errors import RunFileError
from ecco_core.facade import OutputSeq
from ecco_core.results import Saliency


@pytest.fixture(scope="module")
def run(tiny) -> OutputSeq:
    return tiny.generate("hello world", generate=4, attention=True, attribution=["grad_x_input", "erasure"])


@pytest.fixture(scope="module")
def saved(run, tmp_path_factory) -> Path:
    return run.save(tmp_path_factory.mktemp("runs") / "good.npz")


def same_run(a: OutputSeq, b: OutputSeq) -> None:
    assert a.tokens == b.tokens and a.n_input_tokens == b.n_input_tokens and a.run_id == b.run_id
    for key in ("token_ids", "hidden_states", "activations", "attentions", "special"):
        np.testing.assert_array_equal(getattr(a, key), getattr(b, key))
    assert a.activation_layers == b.activation_layers and a.attention_layers == b.attention_layers


# ----- save keeps everything -------------------------------------------------------------------------------


def test_save_keeps_the_attributions_computed_by_generate(run, saved, tiny):
    back = OutputSeq.load(saved, lm=tiny)
    same_run(run, back)
    assert set(back.attribution) == {"grad_x_input", "erasure"}
    for name, original in run.attribution.items():
        copy = back.attribution[name]
        assert isinstance(copy, Saliency)
        for field in ("method", "target", "tokens", "n_input_tokens", "unit", "backend", "style", "foil"):
            assert getattr(copy, field) == getattr(original, field), field
        for field in ("positions", "values", "target_values", "token_ids"):
            np.testing.assert_array_equal(getattr(copy, field), getattr(original, field))
    assert back.saliency("grad_x_input") is back.attribution["grad_x_input"]  # served from the file


def test_save_names_what_it_leaves_out(run, tmp_path, caplog):
    seq = OutputSeq.from_capture(run, None)
    seq.attribution = {"grad_x_input": run.attribution["grad_x_input"], "mine": object()}
    seq.extras = {"notes": {"callback": print, "label": "kept"}}
    with caplog.at_level(logging.WARNING, logger="ecco_core.run"):
        path = seq.save(tmp_path / "partial.npz")
    assert "attribution['mine'] (a object)" in caplog.text and "callback" in caplog.text
    back = OutputSeq.load(path)
    assert set(back.attribution) == {"grad_x_input"}
    assert back.extras["notes"] == {"label": "kept"}
    with zipfile.ZipFile(path) as archive, archive.open("meta.npy") as member:
        meta = json.loads(str(np.lib.format.read_array(member)[()]))
    assert meta["left_out"] == ["extras['notes']['callback']", "attribution['mine'] (a object)"]


# ----- save is atomic ---------------------------------------------------------------------------


def test_a_full_disk_keeps_the_previous_file(run, tmp_path, monkeypatch, tiny):
    path = run.save(tmp_path / "run.npz")
    before = path.read_bytes()

    def full_disk(handle, arrays):
        handle.write(b"PK\x03\x04" + b"\x00" * 1000)  # half an archive, then the disk fills up
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(run_io, "write_archive", full_disk)
    with pytest.raises(RunFileError) as info:
        run.save(path)
    assert "No space left on device" in str(info.value) and "unchanged" in str(info.value)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.npz"]  # no temporary file left
    monkeypatch.undo()
    same_run(run, OutputSeq.load(path, lm=tiny))


def test_saving_into_a_missing_folder_is_an_eccoerror(run, tmp_path):
    with pytest.raises(RunFileError, match="Could not save"):
        run.save(tmp_path / "no" / "such" / "run.npz")


@pytest.mark.parametrize("name", ["\x00", "run\x00.npz", "a/\x00/run.npz"])
def test_a_name_with_a_null_byte_is_an_eccoerror_on_save_and_load(run, tmp_path, name):
    # found by the property test: open() raises ValueError, not OSError, on a null byte
    with pytest.raises(RunFileError, match="null byte"):
        run.save(str(tmp_path) + "/" + name)
    with pytest.raises(RunFileError, match="null byte"):
        OutputSeq.load(str(tmp_path) + "/" + name)
    assert list(tmp_path.iterdir()) == []


# ----- load: untrusted files ----------------------------------------------------------------------


def _rewrite(saved: Path, path: Path, change) -> Path:
    """A copy of ``saved`` with ``change(meta, arrays)`` applied (written by plain numpy)."""
    meta, arrays = run_io.read_archive(saved)
    change(meta, arrays)
    np.savez(path, meta=np.array(json.dumps(meta)), **arrays)
    return path


def _set(key, value):
    return lambda meta, arrays: arrays.__setitem__(key, value)


def _meta(key, value):
    return lambda meta, arrays: meta.__setitem__(key, value)


def _nan_hidden(meta, arrays):
    arrays["hidden_states"] = arrays["hidden_states"].copy()
    arrays["hidden_states"][1, 2, 3] = np.nan


CRAFTED = {
    "nan-hidden": (_nan_hidden, "NaN"),
    "negative-id": (lambda m, a: a.__setitem__("token_ids", a["token_ids"] - 1000), "vocabulary"),
    "float-ids": (lambda m, a: a.__setitem__("token_ids", a["token_ids"].astype(np.float32)), "token_ids"),
    "short-ids": (lambda m, a: a.__setitem__("token_ids", a["token_ids"][:-1]), "token_ids"),
    "extra-layer": (
        lambda m, a: a.__setitem__("activations", np.concatenate([a["activations"]] * 2)),
        "activations",
    ),
    "layer-list": (_meta("activation_layers", [0, 1, 7]), "activation_layers"),
    "layer-strings": (_meta("attention_layers", ["a"]), "attention_layers"),
    "n-input": (_meta("n_input_tokens", 999), "n_input_tokens"),
    "n-input-str": (_meta("n_input_tokens", "3"), "n_input_tokens"),
    "tokens": (_meta("tokens", [1, 2]), "tokens"),
    "no-tokens": (_meta("tokens", []), "tokens"),
    "model-type": (_meta("model_type", "<script>"), "model_type"),
    "attention>1": (lambda m, a: a.__setitem__("attentions", a["attentions"] * 3), "attention weights"),
    "hidden-width": (
        lambda m, a: a.__setitem__("hidden_states", a["hidden_states"][:, :, :7]),
        "hidden_states",
    ),
    "hidden-positions": (
        lambda m, a: a.__setitem__("hidden_states", a["hidden_states"][:, :3]),
        "hidden_states",
    ),
    "strings": (_set("special", np.array(["a"] * 15)), "special"),
    "complex": (_set("hidden_states", np.zeros((4, 15, 32), np.complex64)), "complex64"),
    "saliency-positions": (
        lambda m, a: a.__setitem__(
            "attribution__erasure__positions", a["attribution__erasure__positions"] + 50
        ),
        "positions outside",
    ),
}


@pytest.mark.parametrize("name", sorted(CRAFTED))
def test_crafted_runs_are_refused(saved, tmp_path, tiny, name):
    change, words = CRAFTED[name]
    path = _rewrite(saved, tmp_path / f"{name}.npz", change)
    with pytest.raises(RunFileError, match=words if words.isidentifier() else None) as info:
        OutputSeq.load(path, lm=tiny)
    assert words in str(info.value) and "\n" not in str(info.value)


def test_a_run_of_another_model_is_refused_with_that_model(saved, tmp_path):
    from tests.tiny import tiny_lm

    gpt2 = tiny_lm("gpt2")  # 3 layers, width 32 too; same vocabulary: loads
    assert OutputSeq.load(saved, lm=gpt2).n_tokens == 15
    wider = _rewrite(saved, tmp_path / "wide.npz", _set("token_ids", np.full(15, 5000)))
    assert OutputSeq.load(wider).token_ids[0] == 5000  # no model: any id below 2**31
    with pytest.raises(RunFileError, match="vocabulary"):
        OutputSeq.load(wider, lm=gpt2)


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"", "empty"),
        (b"\x93NUMPY\x01\x00", ".npy"),
        (b"hello, not a zip" * 10, "not an .npz"),
        (b"PK\x03\x04" + b"\x00" * 40, "damaged"),
    ],
    ids=["empty", "npy", "garbage", "zip-magic-only"],
)
def test_files_that_are_not_runs_are_refused(tmp_path, content, words):
    path = tmp_path / "x.npz"
    path.write_bytes(content)
    with pytest.raises(RunFileError, match=words.replace(".", r"\.")):
        OutputSeq.load(path)


def test_a_real_npy_file_is_refused(tmp_path):
    path = tmp_path / "array.npy"
    np.save(path, np.zeros(5))
    with pytest.raises(RunFileError, match=r"single \.npy"):
        OutputSeq.load(path)


def test_a_missing_file_is_refused(tmp_path):
    with pytest.raises(RunFileError, match="Cannot read"):
        OutputSeq.load(tmp_path / "nothing.npz")


def test_pickles_are_refused_without_being_unpickled(saved, tmp_path):
    meta, arrays = run_io.read_archive(saved)
    arrays["token_ids"] = np.array([{"evil": 1}], dtype=object)
    path = tmp_path / "pickle.npz"
    np.savez(path, meta=np.array(json.dumps(meta)), **arrays)  # object arrays are pickled
    with pytest.raises(RunFileError, match="Python objects"):
        OutputSeq.load(path)


def test_a_zip_bomb_is_refused_before_it_expands(saved, tmp_path):
    """64 MB of zeros compress to ~64 kB: refused from the zip directory, before any allocation."""
    meta, arrays = run_io.read_archive(saved)
    arrays["extras__bomb__zeros"] = np.zeros(16 * 2**20, np.float32)
    path = tmp_path / "bomb.npz"
    np.savez_compressed(path, meta=np.array(json.dumps(meta)), **arrays)
    assert path.stat().st_size < 2**20
    tracemalloc.start()
    with pytest.raises(RunFileError, match="past the limit"):
        OutputSeq.load(path, max_bytes=8 * 2**20)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 2**20, peak


def _crafted_header(path: Path, shape: tuple, body: bytes, meta: dict) -> Path:
    """An .npz whose 'hidden_states' header declares ``shape`` over ``body``."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": shape})
    with zipfile.ZipFile(path, "w") as archive:
        meta_bytes = io.BytesIO()
        np.lib.format.write_array(meta_bytes, np.array(json.dumps(meta)))
        archive.writestr("meta.npy", meta_bytes.getvalue())
        archive.writestr("hidden_states.npy", b"\x93NUMPY\x01\x00" + header.getvalue()[8:] + body)
    return path


def test_a_header_declaring_more_than_the_entry_holds_is_refused(saved, tmp_path):
    meta, _ = run_io.read_archive(saved)
    tracemalloc.start()
    path = _crafted_header(tmp_path / "lie.npz", (10**5, 10**5), b"\x00" * 64, meta)
    with pytest.raises(RunFileError, match="declares shape"):
        OutputSeq.load(path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 2**20, peak


@pytest.mark.parametrize("fraction", [0.1, 0.3, 0.5, 0.7, 0.9, 0.99])
def test_truncated_runs_are_refused(saved, tmp_path, fraction):
    data = saved.read_bytes()
    path = tmp_path / "cut.npz"
    path.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(RunFileError):
        OutputSeq.load(path)


@settings(
    max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_fuzzed_runs_load_or_give_runfileerror(saved, tmp_path_factory, data):
    """Truncations, byte flips and inserted bytes: a run that passes every check, or RunFileError."""
    original = bytearray(saved.read_bytes())
    kind = data.draw(st.sampled_from(["truncate", "flip", "insert"]))
    where = data.draw(st.integers(0, len(original) - 1))
    if kind == "truncate":
        mutated = original[:where]
    elif kind == "flip":
        mutated = original.copy()
        mutated[where] ^= data.draw(st.integers(1, 255))
    else:
        mutated = original[:where] + data.draw(st.binary(min_size=1, max_size=64)) + original[where:]
    path = tmp_path_factory.mktemp("fuzz") / "run.npz"
    path.write_bytes(bytes(mutated))
    try:
        seq = OutputSeq.load(path, max_bytes=4 * 2**20)
    except RunFileError as error:
        assert str(error) and "\n" not in str(error)
    else:
        assert np.isfinite(seq.hidden_states).all() and len(seq.tokens) == len(seq.token_ids)
    finally:
        os.unlink(path)


@pytest.mark.parametrize(
    "change",
    [_set("extras__oops", np.zeros(3)), _set("unknown", np.zeros(3)), _meta("extras", {"encoder": [1, 2]})],
    ids=["two-part-extras", "unknown-entry", "extras-not-mappings"],
)
def test_unknown_entries_are_refused(saved, tmp_path, change):
    path = _rewrite(saved, tmp_path / "odd.npz", change)
    with pytest.raises(RunFileError, match="entry|extras"):
        OutputSeq.load(path)


def test_an_encoder_decoder_run_is_checked_on_both_sides(tmp_path):
    from tests.test_encdec import tiny_enc_dec

    lm = tiny_enc_dec("t5")
    saved = lm.generate("hello", generate=3, attention=True).save(tmp_path / "t5.npz")
    assert OutputSeq.load(saved, lm=lm).extras["encoder"]["hidden_states"].shape[1] == 5
    cut = _set("extras__encoder__hidden_states", np.zeros((4, 2, 32), np.float32))
    with pytest.raises(RunFileError, match="extras__encoder__hidden_states"):
        OutputSeq.load(_rewrite(saved, tmp_path / "enc.npz", cut), lm=lm)
    cross = _set("extras__decoder__cross_attentions", np.full((2, 4, 3, 5), 0.2, np.float32))
    with pytest.raises(RunFileError, match="cross_attentions"):
        OutputSeq.load(_rewrite(saved, tmp_path / "cross.npz", cross), lm=lm)
