"""``make bench``: time the standard workload against a bare generate, write bench/results.json.

Every figure is a median of several runs after a warm-up; memory is the OS's peak RSS of a
fresh process that runs the standard workload once. Ratios to G (a bare 20-token generate
measured in the same run) hold when the machine's speed drifts.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
from pathlib import Path

import torch

from bench import classroom, interventions_bench, serving_bench
from bench import workload as w

RESULTS = Path(__file__).parent / "results.json"
TARGETS = {  # figure -> (limit, unit): "G" means a multiple of bare_generate_s
    "standard_workload_s": (3.0, "G"),
    "lens_s": (0.3, "G"),
    "grad_x_input_s": (1.2, "G"),
    "ig_one_token_s": (1.5, "G"),
    "ig_completeness_error": (0.02, "abs"),
    "warm_load_s": (2.0, "G"),
    "interaction_ms": (0.1, "G_ms"),
    "peak_rss_mb": (1200.0, "abs"),
}
SCALING_TOKENS = (50, 200, 800)
CPU_OVERRIDES = ("ATEN_CPU_CAPABILITY", "MKL_ENABLE_INSTRUCTIONS", "ONEDNN_MAX_CPU_ISA")
"""Environment variables that make one CPU run another's kernels (recorded when set)."""


def median_of(fn, runs: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    return statistics.median(w.timed(fn)[0] for _ in range(runs))


def peak_rss_mb() -> float:
    """This process's peak RSS (VmHWM). ``ru_maxrss`` is not used: after exec it keeps the
    high-water mark of the parent that spawned the child, so it reported the bench's own size."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def long_prompt(lm, n_tokens: int) -> str:
    """A natural-looking prompt of exactly about ``n_tokens`` tokens."""
    filler = "Paris is the capital of France and Rome is the capital of Italy."
    base = w.EU_PROMPT + " " + " ".join([filler] * 200)
    ids = lm.encode(base)[:n_tokens]
    return lm.tokenizer.decode(ids)


def child(tokens: int, device: str) -> dict:
    """Runs in a fresh process: one standard workload (``tokens`` prompt tokens, 0 for the EU
    prompt), its stages and its peak RSS."""
    torch.set_num_threads(2)
    import ecco_core

    lm = ecco_core.from_pretrained(device=device)
    prompt = w.EU_PROMPT if tokens == 0 else long_prompt(lm, tokens)
    out = {"stages": w.standard_workload(lm, prompt)}
    out["peak_rss_mb"] = peak_rss_mb()  # the workload's own peak, before the reference forward
    ids = lm.encode(prompt)[None].to(lm.device)
    with torch.inference_mode():
        out["forward_s"] = median_of(lambda: lm.model(ids, logits_to_keep=1), 2)
    return out


def run_child(kind: str, device: str, tokens: int = 0) -> dict:
    if kind == "load":  # its own module: nothing of ecco_core is imported before the clock starts
        cmd = [sys.executable, "-m", "bench.load_child", device]
    else:
        cmd = [sys.executable, "-m", "bench", "--child", "--tokens", str(tokens), "--device", device]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"bench child {kind} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def interaction_ms(seq) -> float:
    """A change after a run: another position, another top-k, other watched tokens."""
    positions = list(range(seq.n_input_tokens, seq.n_tokens))

    def change(i=[0]):  # noqa: B006 - a counter across calls
        i[0] += 1
        position = positions[i[0] % len(positions)]
        seq.layer_predictions(position=position, topk=5 + i[0] % 10)
        seq.rankings_watch([" is", " are"], position=position)

    return median_of(change, runs=9) * 1000


class Yardstick:
    """G, a bare generate of transformers' own model class (what ecco_core loads), timed again
    before every figure: a figure's ratio uses the G measured around it, so a busy spell on a
    shared machine moves both."""

    def __init__(self, lm) -> None:
        self.lm, self.reference = lm, lm.model
        self.samples = []
        w.bare_generate(lm)  # warm-up

    def sample(self, n: int = 1) -> None:
        for _ in range(n):
            self.samples.append(w.timed(lambda: w.bare_generate(self.lm))[0])

    @property
    def median(self) -> float:
        return statistics.median(self.samples)


def lens_on_fresh_capture(lm, runs: int) -> float:
    """Median seconds of the lens views on a fresh capture each time (lens cache empty)."""
    times = []
    for i in range(runs + 1):
        seq = w.generate(lm)  # not timed
        seconds, _ = w.timed(lambda seq=seq: w.lens_views(seq))
        if i:  # the first run is the warm-up
            times.append(seconds)
    return statistics.median(times)


def measure(runs: int, device: str = "cpu") -> dict:
    import ecco_core
    from bench import attribution_bench

    torch.set_num_threads(2)
    lm = ecco_core.from_pretrained(device=device)
    g = Yardstick(lm)
    r: dict = {}
    g.sample(runs)
    r["standard_workload_s"] = median_of(lambda: w.standard_workload(lm)["total"], runs)
    g.sample(runs)
    r["lens_s"] = lens_on_fresh_capture(lm, runs)
    g.sample(runs)
    seq = w.generate(lm)
    w.lens_views(seq)
    r["interaction_ms"] = interaction_ms(seq)
    r["grad_x_input_s"] = median_of(lambda: w.grad_x_input(seq), runs)
    r["attribution_backend"] = _backend_record(lm, w.grad_x_input(seq))
    g.sample(runs)
    r["nmf_s"] = median_of(lambda: w.nmf(seq), runs)
    adaptive = {"quadrature": "adaptive", "n_steps": attribution_bench.ADAPTIVE_STEPS}
    r["ig_one_token_s"], r["ig_completeness_error"] = attribution_bench.ig_one_token(seq, runs, **adaptive)
    r["ig_settings"] = adaptive
    r["ig_default_s"], r["ig_default_completeness_error"] = attribution_bench.ig_one_token(seq, 1)
    g.sample(runs)
    r["erasure_s"] = median_of(lambda: seq.saliency("erasure"), 1)
    r["classroom"] = classroom.measure(lm, long_prompt)
    loads = [run_child("load", device) for _ in range(3)]
    g.sample(runs)
    r["warm_load_s"] = statistics.median(x["import_s"] + x["load_s"] for x in loads)
    r["warm_import_s"] = statistics.median(x["import_s"] for x in loads)
    r["warm_torch_import_s"] = statistics.median(x["torch_import_s"] for x in loads)
    r["warm_load_source"] = f"{loads[0]['source']} ({loads[0]['model_class']})"
    standard = run_child("workload", device)
    r["peak_rss_mb"] = standard["peak_rss_mb"]
    r["interventions"] = interventions_bench.measure(lm, g, runs)  # issue 16
    r["bare_generate_s"] = g.median
    r["bare_generate_samples_s"] = [round(x, 4) for x in g.samples]
    r["bare_generate_model"] = type(g.reference).__name__
    r["scaling"] = [
        {"prompt_tokens": n, **_scaling_row(run_child("workload", device, n))} for n in SCALING_TOKENS
    ]
    r["machine"] = {
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "device": str(lm.device),
        "gpu": torch.cuda.get_device_name() if lm.device.type == "cuda" else None,
        "cpu": _cpu_name(),
        "instruction_sets": _instruction_sets(),
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_overrides": {k: os.environ[k] for k in CPU_OVERRIDES if k in os.environ},
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average": os.getloadavg(),
    }
    return r


def _backend_record(lm, result) -> dict:
    """Which backend computed grad x input, and the self-check's figures on this CPU."""
    from ecco_core.analysis.attribution import hand_written, self_check

    record = {"grad_x_input": result.backend}
    plan = hand_written.structure(lm)
    if plan is not None:
        check = self_check.check(plan)
        record |= {
            "self_check_logit_error": check.logit_error,
            "self_check_gradient_error_vs_float64": check.gradient_error,
            "self_check_tolerance": check.tolerance,
        }
    return record


def _instruction_sets() -> list[str]:
    """The vector instruction sets this CPU reports (what decides float32 summation order)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                return sorted(f for f in flags if f.startswith(("avx", "amx", "fma", "sse4")))
    except OSError:
        pass
    return []


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _scaling_row(child_out: dict) -> dict:
    stages = child_out["stages"]
    return {
        "workload_s": round(stages["total"], 3),
        "forward_s": round(child_out["forward_s"], 3),
        "peak_rss_mb": round(child_out["peak_rss_mb"], 1),
        **{k + "_s": round(v, 3) for k, v in stages.items() if k != "total"},
    }


def verdicts(r: dict) -> list[tuple[str, float, str, bool]]:
    g = r["bare_generate_s"]
    rows = []
    for key, (limit, unit) in TARGETS.items():
        value = r[key]
        if unit == "G":
            rows.append((key, value, f"{value / g:.2f} G (<= {limit} G)", value <= limit * g))
        elif unit == "G_ms":
            rows.append((key, value, f"{value / 1000 / g:.3f} G (<= {limit} G)", value / 1000 <= limit * g))
        else:
            rows.append((key, value, f"<= {limit}", value <= limit))
    return rows


def print_table(r: dict) -> None:
    g = r["bare_generate_s"]
    print(f"\nG = bare generate of {w.N_GENERATE} tokens (median of all samples): {g:.3f} s\n")
    print(f"{'figure':<24}{'value':>12}  {'vs target':<28}ok")
    for key, value, text, ok in verdicts(r):
        print(f"{key:<24}{value:>12.4f}  {text:<28}{'yes' if ok else 'NO'}")
    print("\nScaling (standard workload by prompt length; forward_s = one plain model forward):")
    print(f"{'tokens':>8}{'workload_s':>12}{'forward_s':>11}{'rss_mb':>9}")
    for row in r["scaling"]:
        print(
            f"{row['prompt_tokens']:>8}{row['workload_s']:>12.2f}{row['forward_s']:>11.3f}{row['peak_rss_mb']:>9.0f}"
        )
    print(f"\nnot a target: nmf_s {r['nmf_s']:.3f}, erasure_s (all outputs) {r['erasure_s']:.3f}")
    print(
        f"IG measured with {r['ig_settings']}; library default (graded, 16 steps): "
        f"{r['ig_default_s']:.3f} s, completeness error {r['ig_default_completeness_error']:.3f}"
    )
    print(f"G samples (s): {r['bare_generate_samples_s']}")
    print(
        f"G is {r['bare_generate_model']}.generate. Warm load = import ecco_core + from_pretrained "
        f"after import torch ({r['warm_torch_import_s']:.2f} s, not counted); source {r['warm_load_source']}"
    )
    print(f"attribution backend: {r['attribution_backend']}")
    if "interventions" in r:
        interventions_bench.print_table(r["interventions"])
    print(f"\nmachine: {r['machine']}")
    if "classroom" in r:
        classroom.print_table(r["classroom"])
    if "serving" in r:
        serving_bench.print_table(r["serving"])


def only_section(name: str, runs: int, device: str) -> int:
    """Run one section (interventions with its own G) and merge it into the results file under ``name``."""
    import ecco_core

    torch.set_num_threads(2)
    lm = ecco_core.from_pretrained(device=device)
    if name == "classroom":
        section, table = classroom.measure(lm, long_prompt), classroom.print_table
    elif name == "serving":
        section, table = serving_bench.measure(lm), serving_bench.print_table
    else:
        section, table = interventions_bench.measure(lm, Yardstick(lm), runs), interventions_bench.print_table
    section["load_average"] = os.getloadavg()
    path = RESULTS if device == "cpu" else RESULTS.with_name(f"results-{device.split(':')[0]}.json")
    results = json.loads(path.read_text()) if path.exists() else {}
    results[name] = section
    path.write_text(json.dumps(results, indent=2))
    table(section)
    print(f"\nwritten: {path} ({name})")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5, help="timed runs per figure (median)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--tokens", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--device", default="cpu", help="cpu (the targets' machine) or cuda")
    parser.add_argument(
        "--only",
        choices=["interventions", "classroom", "serving"],
        help="run one section, merged into the results",
    )
    args = parser.parse_args()
    if args.only:
        return only_section(args.only, args.runs, args.device)
    if args.child:
        print(json.dumps(child(args.tokens, args.device)))
        return 0
    results = measure(args.runs, args.device)
    met = all(ok for *_, ok in verdicts(results))
    met = (
        met and results["interventions"]["targets_met"] and all(results["classroom"]["targets_met"].values())
    )
    results["all_targets_met"] = met
    path = RESULTS if args.device == "cpu" else RESULTS.with_name(f"results-{args.device.split(':')[0]}.json")
    path.write_text(json.dumps(results, indent=2))
    print_table(results)
    print(f"\nwritten: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
