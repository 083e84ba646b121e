"""``python -m bench --only classroom``: what a teacher waits for on the saliency page.

Each figure times the computation the page runs (``ecco_app.progressive.compute``, uncached)
after the hand-written backward's one-time self-check: the first picture of a 340-token
paragraph (the picked token only), a method change on the standard run (the picked token), and
integrated gradients at the page's default for a hovered token, with the completeness error
that default reaches (the worst over the generated tokens; the target is 2 %).
"""

from __future__ import annotations

import statistics

from bench import workload as w
from ecco_app import progressive
from ecco_core.analysis import attribution
from ecco_core.analysis.attribution import LABELS

TARGETS = {  # figure -> limit (seconds or an absolute error)
    "first_saliency_long_s": 3.0,
    "method_change_s": 1.5,
    "ig_hover_s": 2.0,
    "ig_default_completeness_error": progressive.IG_TARGET,
}
LONG_TOKENS = 320
"""Prompt tokens of the long paragraph (plus 20 generated: about 340)."""


def engine_saliency(seq, *, method, **settings):
    """The uncached engine call behind ``cached.saliency``."""
    return attribution.saliency(seq, attr_method=method, **settings)


def timed_compute(seq, params: dict, position: int) -> tuple[float, object]:
    return w.timed(lambda: progressive.compute(seq, params, [position], saliency=engine_saliency))


def measure(lm, long_prompt, long_tokens: int = LONG_TOKENS) -> dict:
    seq = w.generate(lm)
    picked = seq.n_input_tokens
    timed_compute(seq, progressive.default_params(), picked)  # the one-time self-check, not timed
    r: dict = {}
    long_seq = lm.generate(long_prompt(lm, long_tokens), generate=w.N_GENERATE)
    r["long_tokens"] = long_seq.n_tokens
    firsts = [
        timed_compute(long_seq, progressive.default_params(), long_seq.n_input_tokens)[0] for _ in range(3)
    ]
    r["first_saliency_long_s"] = statistics.median(firsts)
    changes = {}
    for method in LABELS:
        if method == "integrated_gradients":
            continue
        params = progressive.default_params(method)
        timed_compute(seq, params, picked)  # warm-up (attention methods capture once per run)
        changes[method] = statistics.median(timed_compute(seq, params, picked)[0] for _ in range(3))
    r["method_change_by_method_s"] = {k: round(v, 3) for k, v in changes.items()}
    r["method_change_s"] = max(changes.values())
    ig = progressive.default_params("integrated_gradients")
    times, errors, steps = [], [], []
    for position in range(seq.n_input_tokens, seq.n_tokens):
        seconds, result = timed_compute(seq, ig, position)
        times.append(seconds)
        errors.append(float(result.completeness_error[0]))
        steps.append(int(result.evaluations[0]) if result.evaluations is not None else int(result.n_steps))
    r["ig_hover_s"] = statistics.median(times)
    r["ig_hover_max_s"] = max(times)
    r["ig_default_completeness_error"] = max(errors)
    r["ig_default_errors"] = [round(e, 4) for e in errors]
    r["ig_default_steps"] = steps  # gradient evaluations each token used (at most ig["n_steps"])
    r["ig_default"] = {**ig, "completeness_target": progressive.IG_TARGET}
    r["bare_generate_s"] = statistics.median(w.timed(lambda: w.bare_generate(lm))[0] for _ in range(3))
    r["in_g"] = {k: round(r[k] / r["bare_generate_s"], 2) for k in TARGETS if k.endswith("_s")}
    r["targets_met"] = {key: r[key] <= limit for key, limit in TARGETS.items()}
    return r


def print_table(r: dict) -> None:
    print(f"\nclassroom (saliency page, {r['long_tokens']}-token paragraph for the first picture):")
    for key, limit in TARGETS.items():
        print(f"  {key:<32}{r[key]:>9.3f}  <= {limit:<6} {'yes' if r['targets_met'][key] else 'NO'}")
    print(f"  in G (a bare 20-token generate, {r['bare_generate_s']:.2f} s here): {r['in_g']}")
    print(f"  method change by method (s): {r['method_change_by_method_s']}")
    print(f"  IG per token: gradient evaluations {r['ig_default_steps']}, errors {r['ig_default_errors']}")
    print(f"  IG worst token: {r['ig_hover_max_s']:.2f} s")
