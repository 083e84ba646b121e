"""``python -m bench --only serving``: what a second visitor waits for while a long Run goes on.

A 200-token generation runs as the app runs it (``ecco_app.generating.generate_in_turns``: a few
tokens per fair turn, then the capture); a short request (analysing a 5-word prompt, as a Run
with 0 tokens does) arrives at several moments during it. The figure is the time from its
arrival to its result, the median and the worst of those arrivals; the issue's target is 2 s.
Beside it: the long generation in one turn and in turns (what the turns cost it).
"""

from __future__ import annotations

import statistics
import threading
import time

from bench import workload as w
from ecco_app import generating, serving

TARGETS = {"short_request_while_long_generate_s": 2.0, "short_request_worst_s": 2.0}
LONG_TOKENS = 200
SHORT_PROMPT = "The cat sat on the"
ARRIVALS_S = (0.5, 2.0, 4.0, 6.0, 8.0)
"""Seconds after the long generation starts at which a short request arrives."""


def _long_in_turns(lm, turns: serving.FairTurns) -> None:
    generating.generate_in_turns(
        lm,
        w.EU_PROMPT,
        LONG_TOKENS,
        {},
        {"attention": True},
        lambda what, quiet: turns.turn(what),
        lambda done, total: None,
        lambda seq, note: None,
    )


def _short(lm, turns: serving.FairTurns) -> float:
    start = time.perf_counter()
    with turns.turn("short"):
        lm(SHORT_PROMPT)
    return time.perf_counter() - start


def measure(lm) -> dict:
    r: dict = {"long_tokens": LONG_TOKENS, "tokens_per_turn": generating.TOKENS_PER_TURN}
    turns = serving.FairTurns()
    _short(lm, turns)  # warm-up
    r["short_request_alone_s"] = statistics.median(_short(lm, turns) for _ in range(3))
    r["long_one_turn_s"] = w.timed(lambda: lm.generate(w.EU_PROMPT, generate=LONG_TOKENS, attention=True))[0]
    r["long_in_turns_s"] = w.timed(lambda: _long_in_turns(lm, turns))[0]
    waits = []
    for arrival in ARRIVALS_S:
        if arrival >= r["long_in_turns_s"]:
            continue
        long = threading.Thread(target=_long_in_turns, args=(lm, turns))
        long.start()
        time.sleep(arrival)
        waits.append(_short(lm, turns))
        long.join()
    r["short_waits_s"] = [round(x, 3) for x in waits]
    r["short_request_while_long_generate_s"] = statistics.median(waits)
    r["short_request_worst_s"] = max(waits)
    r["bare_generate_s"] = statistics.median(w.timed(lambda: w.bare_generate(lm))[0] for _ in range(3))
    r["targets_met"] = {key: r[key] <= limit for key, limit in TARGETS.items()}
    return r


def print_table(r: dict) -> None:
    long, per_turn = r["long_tokens"], r["tokens_per_turn"]
    print(f"\nserving (a short request during a {long}-token Run, {per_turn} tokens per turn):")
    for key, limit in TARGETS.items():
        print(f"  {key:<40}{r[key]:>9.3f}  <= {limit:<6} {'yes' if r['targets_met'][key] else 'NO'}")
    print(f"  short request alone {r['short_request_alone_s']:.3f} s; waits {r['short_waits_s']}")
    print(f"  the long Run: one turn {r['long_one_turn_s']:.2f} s, in turns {r['long_in_turns_s']:.2f} s")
