"""The sidebar's Run on the shared model: a few tokens per fair turn, progress by tokens, and a
Stop (or any interruption of the script) that keeps what was written as an ordinary run.

Streamlit stops a running script at its next ``st`` call when the visitor clicks anything (the
Stop button, another page) by raising a ``ScriptControlException`` (with ``runner.fastReruns``,
the default, a ``StopException`` while the click's own script run starts at once beside it);
the loop here calls ``st`` only between turns, so an interruption lands between two chunks,
never inside one. The click's run waits for the stopped one (``serving.stopped_run``) and so
shows what it kept.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from streamlit.runtime.scriptrunner_utils.exceptions import ScriptControlException

import ecco_core
from ecco_core.analysis import checks


def _tokens_per_turn(raw: str | None) -> int:
    """``ECCO_TOKENS_PER_TURN``: a whole number from 1; anything else is said once and ignored."""
    if raw is None or (raw.strip().isdigit() and int(raw) >= 1):
        return int(raw) if raw is not None else 4
    logging.getLogger(__name__).warning("ECCO_TOKENS_PER_TURN=%r is not a whole number >= 1: using 4.", raw)
    return 4


TOKENS_PER_TURN = _tokens_per_turn(os.environ.get("ECCO_TOKENS_PER_TURN"))
"""Tokens written per turn on the model: a request that arrives during a long generation waits
for at most this many tokens of it (about 0.25 s on the embedded model on 2 cores)."""

Turn = Callable[[str, bool], AbstractContextManager]
"""turn(what, quiet): a context manager that holds the model (``FairTurns.turn``, with its waiting
text unless ``quiet``)."""


def generate_in_turns(
    lm: ecco_core.LM,
    text: str | list[int],
    n_new: int,
    options: dict[str, Any],
    kept: dict[str, Any],
    turn: Turn,
    on_token: Callable[[int, int], None],
    on_stop: Callable[[ecco_core.OutputSeq | None, str], None],
    on_capture: Callable[[], None] = lambda: None,
) -> ecco_core.OutputSeq:
    """Generate ``n_new`` tokens after ``text`` a turn of ``TOKENS_PER_TURN`` at a time, then
    capture the run in one more turn.

    Args:
        options: do_sample, temperature, top_k, top_p, seed (``lm.generate``'s).
        kept: attention, attention_layers, activation_layers (what the capture keeps).
        on_token: on_token(written, total), called between turns (it may raise Streamlit's
            interruption: the visitor clicked Stop or something else).
        on_stop: on_stop(run or None, notice) when the script is interrupted: the run holds the
            prompt and what was written so far (None when nothing was); the interruption then
            goes on.
        on_capture: called once writing is over, before the capture (like ``on_token``).
    """
    checks.calls.generate_arguments(lm, (text, n_new), {**options, **kept})
    layers = {k: kept.get(k) for k in ("activation_layers", "attention_layers")}
    generation = lm.start_generation(text, n_new, **options, **layers)
    try:
        while not generation.done:
            with turn(f"generate {TOKENS_PER_TURN}", False):
                generation.step(TOKENS_PER_TURN)
            on_token(generation.n_new, generation.total)
        on_capture()
    except ScriptControlException:
        if generation.n_new == 0:
            on_stop(None, "Stopped before any token was written: nothing was kept.")
        else:
            with turn("capture (stopped)", True):  # quiet: a stopped script's st calls raise again
                seq = ecco_core.OutputSeq.from_capture(generation.capture(**kept), lm)
            on_stop(seq, stopped_notice(generation.n_new, generation.total))
        raise
    with turn("capture", False):
        return ecco_core.OutputSeq.from_capture(generation.capture(**kept), lm)


def stopped_notice(written: int, total: int) -> str:
    return (
        f"Stopped after {written} of {total} tokens: this run holds the prompt and the {written} "
        "tokens written so far."
    )


def token_text(written: int, total: int) -> str:
    return f"Generating: token {written} of {total} (Stop keeps what is written)"
