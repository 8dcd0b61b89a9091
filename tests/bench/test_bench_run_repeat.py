"""``python -m bench.run --repeat N``: how repeated runs become one result (no server)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from bench.run import _repeated, combine_runs, format_report, parse_args


def _run(
    rate: int | None, cpu: float | None, rss: float | None = 40.0, **kw: Any
) -> dict[str, Any]:
    return {
        "ok": True,
        "version": "0.1.0",
        "checksum": "verified",
        "messages": 1000,
        "callbacks": 1000,
        "notes": [f"rate {rate}"],
        "msgs_per_s": rate,
        "cpu_s_per_million": cpu,
        "rss_mb": rss,
        "books_equal": True,
        **kw,
    }


def test_odd_count_takes_each_median_and_keeps_every_run() -> None:
    runs = [_run(300, 3.0, 41.0), _run(100, 5.0, 44.5), _run(200, 3.5, 40.0)]
    out = combine_runs(runs)
    assert out["ok"] is True
    assert out["msgs_per_s"] == 200
    assert out["cpu_s_per_million"] == 3.5
    assert out["rss_mb"] == 44.5  # the highest peak, not a median
    assert out["notes"] == ["rate 200"]  # the rest comes from the median run
    assert out["runs"] == [
        {"ok": True, "msgs_per_s": r, "cpu_s_per_million": c, "rss_mb": m, "callbacks": 1000}
        for r, c, m in ((300, 3.0, 41.0), (100, 5.0, 44.5), (200, 3.5, 40.0))
    ]
    assert runs[0]["msgs_per_s"] == 300  # the inputs are not modified
    assert "runs" not in runs[0]


def test_medians_are_independent_and_even_counts_average_the_middle_pair() -> None:
    # the fastest run is not the one with the least CPU: each figure gets its own median
    out = combine_runs([_run(100, 2.0), _run(400, 9.0), _run(200, 3.0), _run(300, 2.5)])
    assert out["msgs_per_s"] == 250
    assert out["cpu_s_per_million"] == 2.75
    assert out["notes"] == ["rate 200"]  # the lower of the two middle runs
    assert len(out["runs"]) == 4


def test_missing_figures_are_left_out_of_the_median() -> None:
    out = combine_runs([_run(100, None, None), _run(300, 4.0, None)])
    assert out["msgs_per_s"] == 200
    assert out["cpu_s_per_million"] == 4.0
    assert out["rss_mb"] is None


def test_one_failed_run_fails_the_result() -> None:
    bad = _run(900, 1.0, ok=False, error="BTC/USD bids differ", books_equal=False)
    out = combine_runs([_run(100, 5.0), bad, _run(200, 4.0)])
    assert out["ok"] is False
    assert out["error"] == "run 2 of 3: BTC/USD bids differ"
    assert out["msgs_per_s"] == 900  # the failed run as it was, not a median
    assert [r["ok"] for r in out["runs"]] == [True, False, True]
    assert out["runs"][1]["error"] == "BTC/USD bids differ"
    # a harness error (no "ok" at all) counts as a failure too
    out = combine_runs([{"error": "client timed out"}])
    assert (out["ok"], out["error"]) == (False, "run 1 of 1: client timed out")


def test_combine_needs_a_run() -> None:
    with pytest.raises(ValueError, match="no runs"):
        combine_runs([])


def test_repeated_measures_n_times_and_stops_at_a_failure() -> None:
    def measure_from(results: list[dict[str, Any]]) -> tuple[list[int], Any]:
        calls: list[int] = []
        it: Iterator[dict[str, Any]] = iter(results)

        def measure() -> dict[str, Any]:
            calls.append(1)
            return next(it)

        return calls, measure

    calls, measure = measure_from([_run(100, 2.0), _run(300, 4.0), _run(200, 3.0)])
    out = _repeated(measure, 3)
    assert (len(calls), out["msgs_per_s"], len(out["runs"])) == (3, 200, 3)

    calls, measure = measure_from([_run(100, 2.0), _run(0, None, ok=False, error="x"), _run(1, 1)])
    out = _repeated(measure, 3)
    assert len(calls) == 2  # no point in measuring again: the result is a failure
    assert (out["ok"], out["error"], len(out["runs"])) == (False, "run 2 of 2: x", 2)

    calls, measure = measure_from([_run(100, 2.0)])
    out = _repeated(measure, 1)
    assert "runs" not in out  # --repeat 1 writes the same shape as before
    assert out["msgs_per_s"] == 100


def test_parse_args_repeat() -> None:
    assert parse_args([]).repeat == 1
    assert parse_args(["--repeat", "5"]).repeat == 5
    with pytest.raises(SystemExit):
        parse_args(["--repeat", "0"])


def test_report_shows_the_spread_of_repeated_runs() -> None:
    combined = combine_runs([_run(100_000, 5.0), _run(120_000, 4.0), _run(90_000, 6.0)])
    report: dict[str, Any] = {
        "date": "2026-11-23",
        "machine": {"cpu_model": "Test CPU", "cores": 2, "python": "3.11.7"},
        "config": {"tls": True, "repeat": 3},
        "workloads": {"W1": {"gapless": combined}},
        "targets": {},
    }
    text = format_report(report)
    assert "median of 3 runs" in text
    assert "| W1 | gapless | 100,000 (90,000–120,000) | 5.00 |" in text
    report["config"]["repeat"] = 1
    report["workloads"]["W1"]["gapless"] = _run(100_000, 5.0)
    text = format_report(report)
    assert "median" not in text
    assert "| W1 | gapless | 100,000 | 5.00 |" in text
