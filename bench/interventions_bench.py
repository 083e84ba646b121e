"""Interventions (issue 16): attribution patching, an exact patching row, ablate + regenerate,
direct logit attribution per head; medians as ratios to G (a bare 20-token generate measured
around them). ``python -m bench --only interventions`` runs this section alone and merges it
into bench/results.json under ``interventions``."""

from __future__ import annotations

import statistics

from bench import workload as w
from ecco_core.analysis import interventions as iv

CLEAN = "The Eiffel Tower is a famous tower in the city of"  # 12 tokens, as its corrupted twin
CORRUPTED = "The Colosseum is a famous arena in the city of"
TARGETS = {  # ratio to G: limit
    "attribution_patching_G": 1.5,
    "exact_patching_row_G": 1.5,
    "ablate_regenerate_G": 2.0,
    "dla_heads_G": 0.3,
}


def _median(fn, runs: int) -> float:
    fn()  # warm-up
    return statistics.median(w.timed(fn)[0] for _ in range(runs))


def measure(lm, yardstick, runs: int) -> dict:
    """Seconds and ratios to G of the four figures; ``yardstick`` samples G around them."""
    seconds: dict[str, float] = {}
    yardstick.sample(runs)

    def grid():  # a fresh pair each time: both forwards and the backward are timed
        return lm.compare(CLEAN, CORRUPTED, answer=" Paris", foil=" Rome").attribution_patching()

    seconds["attribution_patching"] = _median(grid, runs)
    pair = lm.compare(CLEAN, CORRUPTED, answer=" Paris", foil=" Rome")
    pair.attribution_patching()  # the page has the grid (and the corrupted run) before a row is asked for
    last = pair.n_tokens - 1
    seconds["exact_patching_row"] = _median(lambda: pair.exact_patching("resid", position=last), runs)
    yardstick.sample(runs)
    seq = w.generate(lm)
    edit = [iv.ablate_mlp(3)]  # zero-ablation; a mean-ablation adds one forward of the prompt
    seconds["ablate_regenerate"] = _median(lambda: seq.regenerate(edit, generate=w.N_GENERATE), runs)
    seconds["dla_heads"] = _median(lambda: seq.direct_logit_attribution(position=seq.n_input_tokens), runs)
    yardstick.sample(runs)
    g = yardstick.median
    out = {f"{key}_s": round(value, 4) for key, value in seconds.items()}
    out |= {f"{key}_G": round(value / g, 3) for key, value in seconds.items()}
    out["exact_patching_row_cells"] = lm.arch.n_layers + 1
    out["pair_tokens"] = pair.n_tokens
    out["G_s"] = round(g, 4)
    out["targets_met"] = all(out[key] <= limit for key, limit in TARGETS.items())
    return out


def print_table(r: dict) -> None:
    print(f"\ninterventions (G = {r['G_s']:.3f} s)")
    for key, limit in TARGETS.items():
        value = r[key]
        print(f"{key:<26}{value:>8.3f} G  (<= {limit} G)  {'yes' if value <= limit else 'NO'}")
