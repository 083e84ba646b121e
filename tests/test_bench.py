"""The benchmark's verdicts (pure arithmetic; the timings themselves are never asserted)."""

from __future__ import annotations

from bench import workload
from bench.__main__ import TARGETS, verdicts


def results(**overrides) -> dict:
    base = {
        "bare_generate_s": 0.5,
        "standard_workload_s": 1.4,  # 2.8 G
        "lens_s": 0.15,  # 0.3 G: at the limit counts as met
        "grad_x_input_s": 0.55,
        "ig_one_token_s": 0.7,
        "ig_completeness_error": 0.019,
        "warm_load_s": 0.9,
        "interaction_ms": 49.0,  # 0.098 G
        "peak_rss_mb": 1100.0,
    }
    return {**base, **overrides}


def test_every_target_is_judged_against_g_or_its_absolute_limit():
    rows = {key: ok for key, _value, _text, ok in verdicts(results())}
    assert set(rows) == set(TARGETS) and all(rows.values())
    worse = results(
        standard_workload_s=1.51, interaction_ms=51.0, peak_rss_mb=1201.0, ig_completeness_error=0.021
    )
    assert [key for key, _v, _t, ok in verdicts(worse) if not ok] == [
        "standard_workload_s",
        "ig_completeness_error",
        "interaction_ms",
        "peak_rss_mb",
    ]


def test_ratios_are_printed_in_g(tiny):
    text = {key: text for key, _v, text, _ok in verdicts(results())}
    assert text["standard_workload_s"] == "2.80 G (<= 3.0 G)"
    assert text["interaction_ms"] == "0.098 G (<= 0.1 G)"
    ids = workload.bare_generate(tiny, "abc", n=4)  # the yardstick: a plain generate of exactly n tokens
    assert ids.shape == (1, len(tiny.encode("abc")) + 4)
