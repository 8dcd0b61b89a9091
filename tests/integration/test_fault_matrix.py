"""The fault matrix (design.md §4) as parametrized integration tests.

Each test runs the real simulator and the real client over loopback sockets,
injects one fault kind (twice where that matters), lets the market run on,
then asserts the promise with the checker: every published event delivered
once or inside a declared gap, nothing lost, duplicated or unexpected, final
books equal to the simulator's. Fault-specific expectations are checked on
the event stream. Waiting happens in virtual time (``looptime``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from gapless.demo import DemoResult, run_demo
from gapless.events import (
    BadFrame,
    ConnectionState,
    Event,
    Gap,
    GapCause,
    SubscriptionRejected,
    VenueStatus,
    WatchdogFired,
)
from gapless.sim import Fault, Scenario

pytestmark = [pytest.mark.looptime, pytest.mark.timeout(120)]


def _of(events: list[Event], cls: type[Any]) -> list[Any]:
    return [e for e in events if isinstance(e, cls)]


def _states(events: list[Event]) -> list[str]:
    return [e.state for e in _of(events, ConnectionState)]


def _gap_causes(events: list[Event]) -> set[GapCause]:
    return {g.cause for g in _of(events, Gap)}


@dataclass
class Case:
    faults: list[Fault]
    expect: Callable[[DemoResult], None]
    run_s: float = 14.0
    extra: dict[str, Any] = field(default_factory=dict)


def _expect_disconnect_gap(r: DemoResult) -> None:
    assert GapCause.DISCONNECT in _gap_causes(r.events)
    assert "RECONNECTING" in _states(r.events)


def _expect_clean_close(r: DemoResult) -> None:
    _expect_disconnect_gap(r)
    reasons = [e.reason for e in _of(r.events, ConnectionState) if e.state == "RECONNECTING"]
    assert any("code 4001" in x for x in reasons), reasons


def _expect_abort(r: DemoResult) -> None:
    _expect_disconnect_gap(r)
    reasons = [e.reason for e in _of(r.events, ConnectionState) if e.state == "RECONNECTING"]
    assert any("code 1006" in x for x in reasons), reasons


def _expect_silent_stall(r: DemoResult) -> None:
    fired = [w for w in _of(r.events, WatchdogFired) if w.kind == "dead_peer"]
    assert fired, "dead-peer watchdog never fired"
    assert all(w.silent_for_s >= 3.0 for w in fired)
    # the staleness watchdog (same 3 s in the demo settings) may name the gap first
    assert _gap_causes(r.events) & {GapCause.DISCONNECT, GapCause.STALE}


def _expect_data_stall(r: DemoResult) -> None:
    stale = [w for w in _of(r.events, WatchdogFired) if w.kind == "stale"]
    assert stale, "staleness watchdog never fired"
    assert GapCause.STALE in _gap_causes(r.events) or GapCause.DISCONNECT in _gap_causes(r.events)


def _expect_maintenance(r: DemoResult) -> None:
    assert any(s.system == "maintenance" for s in _of(r.events, VenueStatus))
    assert "MAINTENANCE" in _states(r.events)
    # protocols.md §1.2: at least 5 s between attempts after maintenance
    states = _of(r.events, ConnectionState)
    m_at = next(i for i, e in enumerate(states) if e.state == "MAINTENANCE")
    back_live = next(i for i, e in enumerate(states) if i > m_at and e.state == "LIVE")
    waits = [e for e in states[m_at:back_live] if e.delay_s is not None]
    assert waits
    assert all(e.delay_s is not None and e.delay_s >= 5.0 for e in waits), waits
    dials = [e.local_ts_ns for e in states[m_at : back_live + 1] if e.state == "CONNECTING"]
    spacing = [b - a for a, b in zip([states[m_at].local_ts_ns, *dials], dials, strict=False)]
    assert all(g >= 4.99e9 for g in spacing), spacing


def _expect_status(r: DemoResult) -> None:
    systems = [s.system for s in _of(r.events, VenueStatus)]
    assert {"cancel_only", "post_only", "limit_only"} <= set(systems)


def _expect_rejection(r: DemoResult) -> None:
    rej = _of(r.events, SubscriptionRejected)
    assert rej
    assert all(x.retry_in_s is not None for x in rej)
    assert any("EService:Unavailable" in x.error for x in rej)


def _expect_ban(r: DemoResult) -> None:
    opened = [e for e in _of(r.events, ConnectionState) if e.state == "CIRCUIT_OPEN"]
    assert opened
    assert all((e.delay_s or 0) >= 2.0 for e in opened)
    assert not [t for t in r.truth if t.get("k") == "violation"], "client tripped the ban itself"


def _expect_checksum_gap(r: DemoResult) -> None:
    gaps = [g for g in _of(r.events, Gap) if g.cause is GapCause.CHECKSUM_MISMATCH]
    assert gaps
    assert all(g.end_ts_ns is not None and g.start_ts_ns is not None for g in gaps)
    assert r.summary["checksum_mismatch"] >= 1
    assert "RECONNECTING" not in _states(r.events)  # resubscribe, not reconnect


def _expect_burst(r: DemoResult) -> None:
    assert r.summary["checksum_mismatch"] == 0
    assert not _of(r.events, Gap)


def _expect_bad_frame(r: DemoResult) -> None:
    assert _of(r.events, BadFrame)


CASES: dict[str, Case] = {
    "close": Case([Fault.make("close", 2.0, code=4001, reason="test")], _expect_clean_close),
    "abort": Case([Fault.make("abort", 2.0), Fault.make("abort", 6.0)], _expect_abort),
    "silent_stall": Case([Fault.make("silent_stall", 2.0, duration_s=8.0)], _expect_silent_stall),
    "data_stall": Case([Fault.make("data_stall", 2.0, duration_s=6.0)], _expect_data_stall),
    "maintenance": Case(
        [Fault.make("maintenance", 2.0, duration_s=8.0, cancel_only_s=2.0)],
        _expect_maintenance,
        run_s=24.0,
    ),
    "status": Case(
        [
            Fault.make("status", 1.0, system="cancel_only"),
            Fault.make("status", 2.0, system="post_only"),
            Fault.make("status", 3.0, system="limit_only"),
            Fault.make("status", 4.0, system="online"),
        ],
        _expect_status,
        run_s=8.0,
    ),
    "reject_subscriptions": Case(
        [Fault.make("reject_subscriptions", 2.0, count=2)], _expect_rejection
    ),
    "ban": Case([Fault.make("ban", 2.0, duration_s=5.0, retry_after_s=3.0)], _expect_ban),
    "drop_update": Case(
        [Fault.make("drop_update", 2.0, symbol="BTC/USD"), Fault.make("drop_update", 5.0)],
        _expect_checksum_gap,
    ),
    "corrupt_checksum": Case(
        [Fault.make("corrupt_checksum", 2.0, symbol="ETH/USD")], _expect_checksum_gap
    ),
    "burst": Case([Fault.make("burst", 2.0, duration_s=3.0, factor=10.0)], _expect_burst),
    "malformed_invalid_json": Case(
        [Fault.make("malformed", 2.0, variant="invalid_json")], _expect_bad_frame
    ),
    "malformed_wrong_types": Case(
        [Fault.make("malformed", 2.0, variant="wrong_types")], _expect_bad_frame
    ),
    "malformed_huge": Case(
        [Fault.make("malformed", 2.0, variant="huge", size_bytes=10 * 1024 * 1024)],
        _expect_bad_frame,
    ),
    "malformed_deep": Case([Fault.make("malformed", 2.0, variant="deep")], _expect_bad_frame),
}


@pytest.mark.parametrize("name", list(CASES))
async def test_fault_is_survived_without_silent_loss(name: str) -> None:
    case = CASES[name]
    result = await run_demo(
        case.run_s,
        seed=11,
        venues=("kraken",),
        symbols=("BTC/USD", "ETH/USD"),
        scenario=Scenario(case.faults),
        tick_rate_hz=20.0,
        converge_timeout_s=30.0,
    )
    s = result.summary
    assert s["faults"] == len(case.faults)
    assert s["published"] > 100
    assert s["lost"] == 0, s.get("lost_examples")
    assert s["duplicated"] == 0
    assert s["unexpected"] == 0
    assert s["books_equal"], s.get("book_diffs")
    assert s["every_fault_recovered"], s["recovery"]
    case.expect(result)
