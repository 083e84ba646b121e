"""A model from the hub (the Cloud path), against a local fake hub (tests/fake_hub.py): the
download reports files and bytes as it goes, a stalled one ends with HubTimeoutError within the
one load timeout while other models load, a refused one is a clear EccoError."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from huggingface_hub import constants

from ecco_app import state as app
from ecco_core.errors import HubTimeoutError, ModelNotFoundError
from ecco_core.model import hub, loading
from tests.app_helpers import ROOT, new_app
from tests.fake_hub import FakeHub
from tests.test_app_serving import run_in_app
from tests.tiny import char_tokenizer, tiny_model


@pytest.fixture(scope="module")
def tiny_saved(tmp_path_factory):
    """A tiny Llama with a character tokenizer, saved (the files the fake hub serves)."""
    folder = tmp_path_factory.mktemp("tiny-llama-hub")
    model = tiny_model("llama")
    model.save_pretrained(folder)
    char_tokenizer().save_pretrained(folder)
    return folder, model


@pytest.fixture
def fake_hub(monkeypatch, tmp_path):
    served = FakeHub()
    monkeypatch.setattr(constants, "ENDPOINT", served.url)  # what HF_ENDPOINT sets at import
    template = served.url + "/{repo_id}/resolve/{revision}/{filename}"
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", template)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(constants, "HF_HUB_DOWNLOAD_TIMEOUT", 60)  # a stall here is released by the test
    monkeypatch.setattr(constants, "DOWNLOAD_CHUNK_SIZE", 4096)  # 10 MB by default: the tiny file is 0.1 MB
    yield served
    served.close()
    for key in list(loading._models):
        if key[0].startswith("fake/"):
            loading._models.pop(key)


def same_logits(lm, model) -> None:
    ids = torch.tensor([[5, 17, 40, 41, 9]])
    with torch.no_grad():  # a download is a byte copy: the same weights give the same logits
        torch.testing.assert_close(lm.model(ids).logits, model(ids).logits, rtol=0, atol=0)


def test_model_files_take_safetensors_configs_and_tokenizers_only():
    listing = [("config.json", 1), ("model.safetensors", 9), ("pytorch_model.bin", 9), ("onnx/model.onnx", 9)]
    listing += [("tokenizer.json", 2), ("merges.txt", 3), ("flax_model.msgpack", 9), ("README.md", 1)]
    assert hub.model_files(listing) == [
        ("config.json", 1),
        ("merges.txt", 3),
        ("tokenizer.json", 2),
        ("model.safetensors", 9),
    ]
    assert hub.model_files([("config.json", 1), ("pytorch_model.bin", 9)])[-1] == ("pytorch_model.bin", 9)


def test_a_hub_download_reports_files_and_bytes_and_loads_the_model(fake_hub, tiny_saved):
    folder, model = tiny_saved
    repo = fake_hub.add("fake/tiny", folder, stall="model.safetensors")
    weights_size = len(repo.files["model.safetensors"])
    heard: list[tuple[int, int, int, int, str]] = []

    def on_progress(got: hub.DownloadProgress) -> None:
        heard.append((got.files_done, got.files_total, got.bytes_done, got.bytes_total, got.text()))
        if got.bytes_done > got.bytes_total - weights_size:  # half the weights came, then it stalled
            repo.release.set()

    lm = loading.from_pretrained("fake/tiny", device="cpu", timeout=60, on_progress=on_progress)
    total = sum(len(b) for b in repo.files.values())
    files = len(repo.files)
    assert heard, "the download was heard while it went on"
    stalled = [h for h in heard if total - weights_size < h[2] < total]  # the weights half there
    # (a poll between the last byte and the model's construction hears 5 of 5 files: not counted)
    assert stalled and all(h[0] == files - 1 and h[1] == files and h[3] == total for h in stalled), heard
    assert stalled[0][2] <= total - weights_size + weights_size // 2 + 1  # half the weights only
    assert f"{files - 1} of {files} files" in stalled[0][4] and "MB" in stalled[0][4]
    assert lm.name == "fake/tiny" and lm.arch.n_layers == 3
    same_logits(lm, model)
    assert "GET /api/models/fake/tiny" in fake_hub.requests  # the listing, then the files


def test_the_public_load_reports_the_download_too(fake_hub, tiny_saved):
    """``ecco_core.load(name, timeout=, on_progress=)``: the engine's download, from the API."""
    import ecco_core

    folder, model = tiny_saved
    repo = fake_hub.add("fake/tiny-public", folder, stall="model.safetensors")
    heard: list[int] = []

    def on_progress(got) -> None:  # polled while the load goes on: the stall makes sure one is heard
        heard.append(got.bytes_done)
        repo.release.set()

    lm = ecco_core.load("fake/tiny-public", device="cpu", timeout=60, on_progress=on_progress)
    total = sum(len(b) for b in repo.files.values())
    assert heard and heard == sorted(heard) and heard[0] < total and heard[-1] <= total
    assert type(lm) is ecco_core.LM
    same_logits(lm, model)


def test_a_stalled_download_times_out_within_the_limit_and_blocks_no_other_model(
    fake_hub, tiny_saved, monkeypatch
):
    folder, model = tiny_saved
    repo = fake_hub.add("fake/stalls", folder, stall="model.safetensors")
    monkeypatch.setattr(loading, "LOAD_TIMEOUT_S", 1.0)
    with pytest.raises(HubTimeoutError) as stalled:
        loading.from_pretrained("fake/stalls", device="cpu")
    message = str(stalled.value)
    assert "within 1 s" in message and "so far" in message and "ECCO_LOAD_TIMEOUT_S" in message
    assert not repo.release.is_set()
    other = loading.from_pretrained(str(folder), device="cpu")  # a local model loads meanwhile
    assert other.arch.n_layers == 3
    repo.release.set()  # the download goes on in the background and lands
    lm = loading.from_pretrained("fake/stalls", device="cpu", timeout=60)
    same_logits(lm, model)


@pytest.mark.parametrize(
    ("where", "status", "said"),
    [("listing", 403, "refused"), ("listing", 401, "gated"), ("files", 403, "refused")],
)
def test_a_refused_download_is_a_clear_error(fake_hub, tiny_saved, where, status, said):
    folder, _ = tiny_saved
    name = f"fake/refused-{where}-{status}"
    fake_hub.add(name, folder, **({"refuse": status} if where == "listing" else {"refuse_files": status}))
    with pytest.raises(ModelNotFoundError) as refused:
        loading.from_pretrained(name, device="cpu", timeout=30)
    assert name in str(refused.value) and said in str(refused.value)


def test_an_unknown_repository_says_so(fake_hub):
    with pytest.raises(ModelNotFoundError, match="no such repository"):
        loading.from_pretrained("fake/nobody", device="cpu", timeout=30)


def test_the_app_shows_the_download_as_it_goes(fake_hub, tiny_saved, monkeypatch):
    """The sidebar's Run on a hub model: the progress bar says files and bytes while it downloads."""
    folder, _ = tiny_saved
    repo = fake_hub.add("fake/app", folder, stall="model.safetensors")
    shown, real = [], hub.DownloadProgress.text

    def text(self) -> str:
        said = real(self)
        shown.append(said)
        if self.files_done == len(repo.files) - 1:
            repo.release.set()
        return said

    monkeypatch.setattr(hub.DownloadProgress, "text", text)
    monkeypatch.setenv("ECCO_HOSTED", "0")
    at = run_in_app(new_app(), "fake/app", "abc", 3)
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert any(f"of {len(repo.files)} files" in s for s in shown), shown
    seq = at.session_state[app.SEQ].resolve()
    assert seq.model_name == "fake/app" and seq.n_tokens - seq.n_input_tokens == 3


def test_one_load_timeout_setting_for_the_engine_and_the_app():
    """``ECCO_LOAD_TIMEOUT_S`` sets the engine's timeout and the app's is derived from it; the old
    ``ECCO_HUB_TIMEOUT`` is gone (setting it changes nothing)."""
    code = (
        "from ecco_core.model import loading; from ecco_app import serving; "
        "print(loading.LOAD_TIMEOUT_S, serving.LOAD_TIMEOUT_S, hasattr(loading, 'HUB_TIMEOUT'))"
    )
    env = {**os.environ, "ECCO_LOAD_TIMEOUT_S": "7", "ECCO_HUB_TIMEOUT": "999"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=ROOT)
    assert out.stdout.split() == ["7.0", "7.0", "False"], out.stderr[-2000:]


def test_a_stalled_download_in_the_app_says_so_and_keeps_the_last_run(fake_hub, tiny_saved, monkeypatch):
    from ecco_app import serving

    folder, _ = tiny_saved
    monkeypatch.setenv("ECCO_HOSTED", "0")
    at = run_in_app(new_app(), str(folder), "abc", 2)  # a good run first
    first = at.session_state[app.SEQ].resolve()
    repo = fake_hub.add("fake/app-stalls", folder, stall="model.safetensors")
    monkeypatch.setattr(serving, "LOAD_TIMEOUT_S", 1.0)
    run_in_app(at, "fake/app-stalls", "abc", 2)
    assert not at.exception
    message = " ".join(e.value for e in at.error).replace("\\", "")
    assert "did not finish within 1 s" in message and "so far" in message, message
    assert at.session_state[app.SEQ].resolve().run_id == first.run_id
    repo.release.set()
