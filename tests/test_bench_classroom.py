"""The benchmark's classroom section runs end to end (on a tiny random model: structure, not speed)."""

from __future__ import annotations

from bench import __main__ as bench_main
from bench import classroom


def test_classroom_section_records_every_target(tiny):
    r = classroom.measure(tiny, bench_main.long_prompt, long_tokens=80)  # the tiny model reads 128
    assert set(r["targets_met"]) == set(classroom.TARGETS)
    assert r["long_tokens"] == 80 + 20
    assert len(r["ig_default_errors"]) == len(r["ig_default_steps"]) == 20  # every generated token
    assert abs(r["ig_default_completeness_error"] - max(r["ig_default_errors"])) < 1e-4  # rounded list
    assert set(r["method_change_by_method_s"]) == {
        "grad_x_input",
        "gradient",
        "erasure",
        "attention",
        "attention_rollout",
    }
    assert abs(r["method_change_s"] - max(r["method_change_by_method_s"].values())) < 1e-3
