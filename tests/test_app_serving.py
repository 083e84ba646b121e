"""Serving many visitors one model: generation takes a turn per few tokens, a waiting request says
its place in the queue, a Stop keeps what was written. Deterministic (events and threads on a
tiny random model), never timed."""

from __future__ import annotations

import threading
from contextlib import contextmanager

import numpy as np
import pytest
from streamlit.runtime.scriptrunner_utils.exceptions import RerunException
from streamlit.runtime.scriptrunner_utils.script_requests import RerunData
from streamlit.runtime.scriptrunner_utils.script_run_context import get_script_run_ctx

from ecco_app import cached, generating, serving
from ecco_app import state as app
from tests.app_helpers import new_app, run_in_app
from tests.tiny import save_tiny_folder

PROMPT = "The list: 1. ab 2. cd 3."


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    return save_tiny_folder(tmp_path_factory.mktemp("tiny-llama-serving"))


def no_stop(seq, note):  # pragma: no cover - called only when a test's run is interrupted
    raise AssertionError(f"interrupted: {note}")


# ----- fair turns ---------------------------------------------------------------------------------------


def test_a_short_request_waits_for_one_chunk_of_a_long_generation(tiny):
    """A 40-token generation writes 4 tokens per turn; a request that arrives during its third
    turn runs right after that turn, and the long run still equals one uninterrupted generate."""
    turns = serving.FairTurns()
    arrived, queued, out = threading.Event(), threading.Event(), {}

    @contextmanager
    def long_turn(what: str, quiet: bool = False):
        with turns.turn(what):
            if len(turns.log) == 3 and not arrived.is_set():  # in its third turn: a request comes
                arrived.set()
                assert queued.wait(60)
            yield

    def short() -> None:
        with turns.turn("short", on_wait=lambda ahead: out.setdefault("ahead", ahead)):
            out["short"] = tiny("ab")

    def long() -> None:
        out["long"] = generating.generate_in_turns(
            tiny, PROMPT, 40, {}, {}, long_turn, lambda done, total: None, no_stop
        )

    writer = threading.Thread(target=long, name="long")
    writer.start()
    assert arrived.wait(60)
    waiter = threading.Thread(target=short, name="short")
    waiter.start()
    while turns.waiting() < 2:  # the long run's third turn and the short request
        threading.Event().wait(0.001)
    queued.set()
    waiter.join(60)
    writer.join(120)
    order = [who for who, _ in turns.log]
    written = out["long"].n_tokens - out["long"].n_input_tokens  # 40 unless the model wrote its end
    assert order.count("long") == -(-written // 4) + 1 >= 6, order  # turns of 4 tokens, the capture
    assert order.index("short") == 3, order  # after the long run's third turn, not its eleventh
    assert out["ahead"] == 1  # the short request was told one request is ahead of it
    whole = tiny.generate(PROMPT, generate=40)
    assert out["long"].token_ids.tolist() == whole.token_ids.tolist()
    np.testing.assert_array_equal(out["long"].hidden_states, whole.hidden_states)


def test_a_waiting_request_hears_its_place_and_leaves_the_queue_when_interrupted():
    turns = serving.FairTurns()
    heard: dict[str, list[int]] = {"b": [], "c": []}
    queued, c_heard_one = threading.Barrier(3), threading.Event()

    def waiter(name: str, stop_at: int | None = None) -> None:
        def on_wait(ahead: int) -> None:
            heard[name].append(ahead)
            if len(heard[name]) == 1:
                queued.wait(10)
            if stop_at is not None and ahead == stop_at:
                c_heard_one.set()
                raise RerunException(RerunData())  # what Streamlit raises when the visitor clicks

        try:
            with turns.turn(name, on_wait=on_wait):
                assert name != "b" or c_heard_one.wait(10)  # b's turn lasts until c moved up
        except RerunException:
            heard[name].append(-1)

    with turns.turn("a"):
        b = threading.Thread(target=waiter, args=("b",))
        b.start()
        while turns.waiting() < 2:
            threading.Event().wait(0.001)
        c = threading.Thread(target=waiter, args=("c", 1))
        c.start()
        queued.wait(10)  # both have heard their first place
    b.join(10)
    c.join(10)
    assert heard == {"b": [1], "c": [2, 1, -1]}, heard
    assert turns.waiting() == 0, "an interrupted request left the queue"
    assert serving.waiting_text(1).startswith("Waiting for the model: 1 request ahead")
    assert "2 requests ahead" in serving.waiting_text(2)


# ----- in the app ---------------------------------------------------------------------------------------


def test_the_run_says_its_place_while_another_request_holds_the_model(tiny_folder, monkeypatch):
    monkeypatch.setenv("ECCO_HOSTED", "0")
    lm = cached.load_lm(tiny_folder, "auto", None)
    said, release = [], threading.Event()
    real = serving.waiting_text

    def recorded(ahead: int) -> str:
        said.append(ahead)
        release.set()
        return real(ahead)

    monkeypatch.setattr(serving, "waiting_text", recorded)
    at = new_app()
    runner = threading.Thread(target=run_in_app, args=(at, tiny_folder, "abc", 6))
    with cached.turns(lm).turn("another visitor"):
        runner.start()
        assert release.wait(120), "the Run never said it was waiting"
    runner.join(240)
    assert said == [1]
    assert not at.exception and not at.error, [e.value for e in at.error]
    seq = at.session_state[app.SEQ].resolve()
    assert seq.n_tokens - seq.n_input_tokens == 6


@pytest.mark.parametrize("click", ["stop", "rerun"])
def test_stop_keeps_the_tokens_written_so_far_as_the_run(tiny_folder, monkeypatch, click):
    """The visitor clicks during the run. On a server (``runner.fastReruns``, the default) the
    click stops the running script (a stop request) and starts its own run at once; without fast
    reruns it asks the running script to rerun. Either way the run keeps the 8 tokens of the
    first two turns, the next script run shows it and says so."""
    monkeypatch.setenv("ECCO_HOSTED", "0")
    real = generating.token_text

    def click_at_eight(done: int, total: int) -> str:
        if done == 8:
            ctx = get_script_run_ctx()
            if click == "stop":
                ctx.script_requests.request_stop()
            else:
                ctx.script_requests.request_rerun(
                    RerunData(query_string=ctx.query_string, page_script_hash=ctx.page_script_hash)
                )
        return real(done, total)

    monkeypatch.setattr(generating, "token_text", click_at_eight)
    at = run_in_app(new_app(), tiny_folder, "abc", 40)
    if click == "stop":
        at.run()  # the click's own script run
    assert not at.exception, at.exception
    seq = at.session_state[app.SEQ].resolve()
    assert seq.n_tokens - seq.n_input_tokens == 8
    notice = at.session_state[app.NOTICE]
    assert "Stopped after 8 of 40 tokens" in notice
    assert any("Stopped after 8 of 40" in c.value.replace("\\", "") for c in at.caption)
    assert at.session_state[app.SETTINGS]["generate"] == 8  # the share link redoes the kept run
    lm = cached.load_lm(tiny_folder, "auto", None)
    whole = lm.generate("abc", generate=8, attention=True)
    assert seq.token_ids.tolist() == whole.token_ids.tolist()


def test_stop_before_any_token_keeps_the_last_good_run_and_says_nothing_was_kept(tiny_folder, monkeypatch):
    monkeypatch.setenv("ECCO_HOSTED", "0")
    at = run_in_app(new_app(), tiny_folder, "abc", 3)
    first = at.session_state[app.SEQ].resolve()
    lm = cached.load_lm(tiny_folder, "auto", None)
    real_turn = serving.FairTurns.turn

    def interrupted_turn(self, what="", on_wait=None):
        if what.startswith("generate"):
            raise RerunException(RerunData())  # clicked while waiting for the first turn
        return real_turn(self, what, on_wait)

    monkeypatch.setattr(serving.FairTurns, "turn", interrupted_turn)
    at.number_input(key="n_generate").set_value(5)
    at.button(key="run").click()
    at.run()
    monkeypatch.setattr(serving.FairTurns, "turn", real_turn)
    assert at.session_state[app.SEQ].resolve().run_id == first.run_id
    assert "nothing was kept" in at.session_state[app.RUN_ERROR]
    assert lm is cached.load_lm(tiny_folder, "auto", None)


def test_a_saliency_chunk_waiting_for_the_model_says_its_place(tiny, monkeypatch):
    seq = tiny.generate("abcd", generate=3)
    said: list[str] = []
    monkeypatch.setattr(cached, "get_script_run_ctx", lambda: object())  # as in a page's script run
    monkeypatch.setattr(cached.st, "toast", lambda text, icon=None: said.append(text))
    params = dict(method="grad_x_input", target="prob", foil=None, n_steps=12, baseline="zero")
    params.update(quadrature="auto", positions=None)
    out: dict = {}
    page = threading.Thread(target=lambda: out.update(result=cached.saliency.__wrapped__(seq, **params)))
    with cached.turns(tiny).turn("another visitor"):
        page.start()
        for _ in range(60_000):
            if said:
                break
            threading.Event().wait(0.001)
    page.join(60)
    assert said == [serving.waiting_text(1)]
    assert out["result"].positions.tolist() == [4, 5, 6]


def test_tokens_per_turn_from_the_environment_is_checked(caplog):
    from ecco_app import generating

    assert generating._tokens_per_turn(None) == 4 and generating._tokens_per_turn("7") == 7
    for bad in ("0", "-2", "2.5", "many", ""):
        assert generating._tokens_per_turn(bad) == 4
    assert "ECCO_TOKENS_PER_TURN='many' is not a whole number" in caplog.text
