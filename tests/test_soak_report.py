"""The soak's half-open verdict: detection against the configured bound, with a
``loop_block`` consumer fault that held the loop during the silence counted."""

from __future__ import annotations

from typing import Any

from gapless.demo import DemoResult
from gapless.events import WatchdogFired
from gapless.soak import _half_open, half_open_bound_s

S = 1_000_000_000


def _result(silent_s: float, block: tuple[float, float] | None) -> DemoResult:
    truth: list[dict[str, Any]] = [
        {"k": "fault", "venue": "kucoin", "kind": "blackhole", "ts_ns": 100 * S, "params": {}},
        {"k": "fault", "venue": "kucoin", "kind": "abort", "ts_ns": 120 * S, "params": {}},
    ]
    if block is not None:
        at, d = block
        truth.append(
            {
                "k": "fault",
                "venue": "consumer",
                "kind": "loop_block",
                "ts_ns": round(at * S),
                "params": {"duration_s": d},
            }
        )
    fired = WatchdogFired(
        venue="kucoin",
        local_ts_ns=105 * S,
        conn="kucoin#1",
        kind="dead_peer",
        silent_for_s=silent_s,
    )
    return DemoResult(summary={}, events=[fired], truth=truth)


def test_a_loop_block_inside_the_silence_extends_the_allowance_by_its_overlap() -> None:
    # silence from t=100.5 to t=105; the loop was blocked from 104.5 to 106
    (hole,) = _half_open(_result(4.5, (104.5, 1.5)))
    assert hole["silent_s"] == 4.5
    assert hole["after_fault_s"] == 5.0
    assert hole["loop_blocked_s"] == 0.5  # only the part inside the silence counts


def test_a_loop_block_outside_the_silence_extends_nothing() -> None:
    (hole,) = _half_open(_result(4.0, (90.0, 2.0)))
    assert hole["loop_blocked_s"] == 0.0
    (hole,) = _half_open(_result(4.0, None))
    assert hole["loop_blocked_s"] == 0.0


def test_a_watchdog_after_the_next_fault_is_not_a_detection() -> None:
    r = _result(4.0, None)
    r.events[0] = WatchdogFired(
        venue="kucoin", local_ts_ns=121 * S, conn="kucoin#1", kind="dead_peer", silent_for_s=1.0
    )
    (hole,) = _half_open(r)
    assert "silent_s" not in hole


def test_the_bound_is_probe_delay_plus_pong_deadline_plus_a_tick_plus_slack() -> None:
    # the demo's timers: probe after 1.5 s, pong within 1.5 s, tick 0.75 s, 0.5 s slack
    assert half_open_bound_s() == 4.25
