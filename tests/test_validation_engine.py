"""Issue 18, engine: NMF stops on degenerate text, seeded sampling reproduces under threads, the
model disk cache heals, and a stalled hub download times out without blocking other models."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import ecco_core
from ecco_core.model import weights as models
from ecco_core.model.weights import LoadedWeights
from tests.tiny import tiny_lm


def one_line(error: BaseException) -> str:
    text = str(error)
    assert text and "\n" not in text and "Traceback" not in text, text
    return text


# ----- NMF stops on degenerate text; sampling reproduces under threads ------------------------------------


def test_nmf_stops_at_once_on_an_almost_exact_fit():
    """Identical positions (repetitive text): the fit error reaches rounding level at the first check,
    where a relative stopping test alone compares noise with noise for all NMF_MAX_SWEEPS sweeps."""
    from ecco_core.analysis import neurons

    rng = np.random.default_rng(0)
    column = rng.random(3000).astype(np.float32)
    data = np.tile(column, (60, 1)) * (1 + 1e-7 * rng.random((60, 1), dtype=np.float32))  # (pos, feature)
    data = np.ascontiguousarray(data / np.linalg.norm(data), dtype=np.float32)
    stats: dict = {}
    scores, parts = neurons._hals(data, 5, stats)
    assert stats["sweeps"] <= 2 * neurons.NMF_CHECK_EVERY, stats["sweeps"]
    assert np.linalg.norm(data - scores @ parts) < 1e-3


def test_nmf_stops_on_a_slow_crawl_by_the_absolute_floor(monkeypatch):
    """With the relative test off, the absolute floor alone still ends a fit long before the cap."""
    from ecco_core.analysis import neurons

    monkeypatch.setattr(neurons, "NMF_TOL", 0.0)
    rng = np.random.default_rng(1)
    data = (rng.random((30, 4)) @ rng.random((4, 500)) + 0.05 * rng.random((30, 500))).astype(np.float32)
    data /= np.linalg.norm(data)
    stats: dict = {}
    neurons._hals(data, 3, stats)
    assert stats["sweeps"] < neurons.NMF_MAX_SWEEPS // 2, stats["sweeps"]
    errors = np.array(stats["errors"])
    assert errors[-2] - errors[-1] < neurons.NMF_FLOOR * neurons.NMF_CHECK_EVERY


@pytest.mark.embedded
def test_nmf_on_400_x_stops_quickly(smol):
    """Issue 18: 400 x "x" took 300 sweeps (102 s); it stops at the first checks now."""
    from ecco_core.analysis import neurons

    seq = smol("x" * 400)
    layer_idx = list(range(len(seq.activation_layers)))
    matrix, _, _ = neurons.activation_matrix(seq, layer_idx, np.arange(seq.n_tokens))
    data = np.ascontiguousarray(matrix.T / np.linalg.norm(matrix), dtype=np.float32)
    stats: dict = {}
    neurons._hals(data, 10, stats)
    assert stats["sweeps"] <= 2 * neurons.NMF_CHECK_EVERY, stats
    assert seq.run_nmf(n_components=10).fit_error < 0.01


def _sample(lm, seed: int) -> list[int]:
    seq = lm.generate("hello", generate=12, do_sample=True, temperature=1.3, top_k=40, top_p=0.95, seed=seed)
    return seq.token_ids.tolist()


def test_seeded_sampling_reproduces_while_other_models_sample_in_threads():
    """Two model objects sampling at once in threads give the tokens of their serial twins: each call
    draws from a generator of its own (issue 18: 16 of 16 differed with the process-wide one)."""
    from concurrent.futures import ThreadPoolExecutor

    models = [tiny_lm("llama", seed=0), tiny_lm("gpt2", seed=0)]
    jobs = [(i % 2, seed) for i, seed in enumerate(range(16))]
    serial = [_sample(models[m], seed) for m, seed in jobs]
    with ThreadPoolExecutor(4) as pool:
        threaded = list(pool.map(lambda job: _sample(models[job[0]], job[1]), jobs))
    assert threaded == serial
    assert len({tuple(s) for s in serial}) > 8  # seeds matter: not all the same sample


def test_seeded_sampling_draws_as_transformers_does():
    """Same warpers, same order, same draws as HF's own sampler under the same seed."""
    lm = tiny_lm("llama", seed=0)
    ids = lm.encode("hello")
    for seed in range(4):
        ours = _sample(lm, seed)
        torch.manual_seed(seed)
        theirs = lm.model.generate(
            ids[None],
            attention_mask=torch.ones(1, len(ids), dtype=torch.long),
            max_new_tokens=12,
            do_sample=True,
            temperature=1.3,
            top_k=40,
            top_p=0.95,
            pad_token_id=3,
        )[0].tolist()
        assert ours == theirs


# ----- the disk cache heals; hub loads time out ----------------------------------------------------------


@pytest.fixture
def cache_entry(tmp_path):
    """A disk-cache entry written by ``write_cache`` from a tiny model (the converted-GGUF layout)."""
    from ecco_core.model import disk_cache
    from tests.tiny import char_tokenizer, tiny_model

    target = tmp_path / "gguf-0123"
    disk_cache.write_cache(tiny_model("llama"), char_tokenizer(), target)
    assert disk_cache.cache_problem(target) is None
    return target


def _truncate(path, keep):
    data = path.read_bytes()
    path.write_bytes(data[:keep] if keep >= 0 else data[:keep])


CACHE_DAMAGE = {
    "short weights": (lambda t: _truncate(t / "model.safetensors", -100), "model.safetensors should be"),
    "no weights": (lambda t: (t / "model.safetensors").unlink(), "model.safetensors should be"),
    "bad config": (lambda t: (t / "config.json").write_text("{" * 3), "config.json"),
    "bad tokenizer": (lambda t: _truncate(t / "tokenizer.json", 20), "tokenizer.json should be"),
}


@pytest.mark.parametrize("damage", sorted(CACHE_DAMAGE))
def test_a_damaged_cache_entry_is_detected(cache_entry, damage):
    from ecco_core.model import disk_cache

    harm, words = CACHE_DAMAGE[damage]
    harm(cache_entry)
    assert words in disk_cache.cache_problem(cache_entry)


def test_a_cache_entry_of_the_first_format_is_checked_by_content(cache_entry):
    """Entries written before the manifest ("ok") are checked by content (safetensors header, JSON
    files); one found whole gets its manifest, so later checks only compare sizes."""
    from ecco_core.model import disk_cache

    weights = cache_entry / "model.safetensors"
    whole = weights.read_bytes()
    for damaged, words in ((whole[:-8], "tensors need"), (b"\xff" * 8 + b"{}", "header runs past")):
        (cache_entry / "COMPLETE").write_text("ok\n")
        weights.write_bytes(damaged)
        assert words in disk_cache.cache_problem(cache_entry)
        assert (cache_entry / "COMPLETE").read_text() == "ok\n"  # no manifest for a damaged entry
    weights.write_bytes(whole)
    assert disk_cache.cache_problem(cache_entry) is None
    manifest = json.loads((cache_entry / "COMPLETE").read_text())
    assert manifest["sizes"]["model.safetensors"] == len(whole)
    weights.write_bytes(whole[:-8])
    assert "model.safetensors should be" in disk_cache.cache_problem(cache_entry)


def test_stale_temporary_folders_are_removed(tmp_path):
    import os
    import time

    from ecco_core.model import disk_cache

    dead = tmp_path / ".tmp-999999999-abc"  # no such process
    mine = tmp_path / f".tmp-{os.getpid()}-def"
    legacy_old, legacy_new, entry = tmp_path / ".tmp-old", tmp_path / ".tmp-new", tmp_path / "gguf-1"
    for folder in (dead, mine, legacy_old, legacy_new, entry):
        folder.mkdir()
        (folder / "model.safetensors").write_bytes(b"x" * 100)
    hour_ago = time.time() - 2 * disk_cache.STALE_SECONDS
    os.utime(legacy_old, (hour_ago, hour_ago))
    removed = disk_cache.remove_stale_temporaries(tmp_path)
    assert sorted(p.name for p in removed) == [".tmp-999999999-abc", ".tmp-old"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([mine.name, ".tmp-new", "gguf-1"])


def test_a_failed_cache_write_leaves_nothing_behind(tmp_path, caplog):
    from ecco_core.model import disk_cache
    from tests.tiny import char_tokenizer, tiny_model

    model = tiny_model("llama")
    original = model.save_pretrained

    def full_disk(folder, *args, **kwargs):
        original(folder, *args, **kwargs)
        raise OSError(28, "No space left on device")

    model.save_pretrained = full_disk
    with caplog.at_level("WARNING", logger="ecco_core.model.disk_cache"):
        disk_cache.write_cache(model, char_tokenizer(), tmp_path / "gguf-9")
    assert "No space left" in caplog.text
    assert list(tmp_path.iterdir()) == []


@pytest.mark.embedded
def test_a_damaged_disk_cache_is_rebuilt_with_a_warning(tmp_path, monkeypatch, caplog):
    """A COMPLETE entry with truncated weights (issue 18: the same raw error in every process) is
    rebuilt from the GGUF, with a WARNING; the next load reads the healed cache."""
    from ecco_core.model import disk_cache, weights

    gguf = weights.embedded_gguf_path()
    if gguf is None:
        pytest.skip("the embedded GGUF package is not installed")
    monkeypatch.setenv("ECCO_CACHE_DIR", str(tmp_path))
    target = disk_cache.gguf_cache_dir(gguf)
    target.mkdir(parents=True)
    (target / "model.safetensors").write_bytes(b"\x10" + b"\x00" * 7 + b"{}")
    (target / "COMPLETE").write_text(json.dumps({"format": 2, "sizes": {"model.safetensors": 10**6}}))
    (tmp_path / ".tmp-999999999-killed").mkdir()
    with caplog.at_level("WARNING"):
        rebuilt = weights.load_weights(weights.DEFAULT_MODEL)
    assert rebuilt.source == "gguf" and "damaged" in caplog.text and "rebuilding" in caplog.text
    assert not (tmp_path / ".tmp-999999999-killed").exists()
    assert disk_cache.cache_problem(target) is None
    again = weights.load_weights(weights.DEFAULT_MODEL)
    assert again.source == "disk-cache"
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        torch.testing.assert_close(again.model(ids).logits, rebuilt.model(ids).logits, rtol=0, atol=0)


def test_a_stalled_hub_download_times_out_and_blocks_no_other_model(monkeypatch):
    """issue 18: a stalling hub held the loading lock for 660 s. Now the caller gets HubTimeoutError
    after LOAD_TIMEOUT_S, another model loads meanwhile, and the stalled one lands when it finishes."""
    import threading

    from ecco_core.errors import HubTimeoutError
    from ecco_core.model import loading
    from tests.tiny import char_tokenizer, tiny_model

    release = threading.Event()
    real_load = loading.load_weights

    def fake_load(name, dtype, progress=None):
        if name == "slow/hub-model":
            assert release.wait(30), "never released"
        if name in ("slow/hub-model", "fast/local-model"):
            return LoadedWeights(tiny_model("llama"), char_tokenizer(), name, "hub", name)
        return real_load(name, dtype, progress)

    monkeypatch.setattr(loading, "load_weights", fake_load)
    monkeypatch.setattr(loading, "LOAD_TIMEOUT_S", 0.5)
    monkeypatch.setattr(models, "needs_hub", lambda name: name.startswith("slow/"))
    try:
        with pytest.raises(HubTimeoutError) as info:
            ecco_core.from_pretrained("slow/hub-model", device="cpu")
        assert "slow/hub-model" in one_line(info.value) and "background" in str(info.value)
        fast = ecco_core.from_pretrained("fast/local-model", device="cpu")  # not held up by the stall
        assert fast.name == "fast/local-model"
        with pytest.raises(HubTimeoutError):  # a second caller waits on the same download
            ecco_core.from_pretrained("slow/hub-model", device="cpu")
        release.set()
        monkeypatch.setattr(loading, "LOAD_TIMEOUT_S", 30.0)
        slow = ecco_core.from_pretrained("slow/hub-model", device="cpu")
        assert slow.name == "slow/hub-model"
        assert ecco_core.from_pretrained("slow/hub-model", device="cpu") is slow  # cached once
    finally:
        release.set()
        for key in list(loading._models):
            if key[0] in ("slow/hub-model", "fast/local-model"):
                loading._models.pop(key)
