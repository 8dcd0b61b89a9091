"""Binance over loopback against the simulator: each fault, then the checker.

Books (§3.8 with REST snapshots), trades (id continuity) and bookTickers of two
symbols through ``gapless.connect``; every published event must be delivered
once or fall inside a declared gap (by update id / trade id), and the final
books (top 50 levels) must equal the simulator's. Virtual time (looptime).
The run and the checks are the shared harness (``harness.py``).
"""

from __future__ import annotations

import pytest
from harness import Case, Venue, check_case, run_faults

from gapless.events import ConnectionState, GapCause
from gapless.sim import BinanceSim, BinanceSimConfig, Fault
from gapless.venues import binance
from gapless.venues.binance.adapter import BinanceOptions

pytestmark = [pytest.mark.looptime, pytest.mark.timeout(120)]

BINANCE = Venue(
    name="binance",
    symbols=("BTCUSDT", "ETHUSDT"),
    config=BinanceSimConfig,
    sim=BinanceSim,
    streams=(binance.book, binance.trades, binance.book_ticker),
    urls=lambda sim: {"binance": sim.ws_url, "binance_rest": sim.rest_url},
    options=BinanceOptions(subscribe_ack_timeout_s=3.0, snapshot_timeout_s=5.0),
)

CASES: dict[str, Case] = {
    "abort": Case([Fault.make("abort", 2.0)], {GapCause.DISCONNECT}),
    "close": Case([Fault.make("close", 2.0, code=1001)], {GapCause.DISCONNECT}),
    "rate_limit_close": Case([Fault.make("rate_limit_close", 2.0)], {GapCause.DISCONNECT}),
    "depth_gap": Case([Fault.make("depth_gap", 2.0, symbol="BTCUSDT")], {GapCause.SEQUENCE_GAP}),
    "stale_snapshot": Case(
        [Fault.make("stale_snapshot", 2.0, symbol="ETHUSDT", count=2), Fault.make("abort", 2.5)],
        {GapCause.DISCONNECT},
    ),
    "rest_429": Case(
        [Fault.make("rest_429", 2.0, duration_s=3.0), Fault.make("abort", 2.5)],
        {GapCause.DISCONNECT},
    ),
    "rest_418": Case(
        [Fault.make("rest_418", 2.0, duration_s=3.0), Fault.make("abort", 2.5)],
        {GapCause.DISCONNECT},
    ),
    "silent_stall": Case([Fault.make("silent_stall", 2.0, duration_s=6.0)], {GapCause.DISCONNECT}),
    "malformed": Case([Fault.make("malformed", 2.0, variant="invalid_json")], set()),
    "burst": Case([Fault.make("burst", 2.0, duration_s=2.0, factor=5.0)], set()),
}


@pytest.mark.parametrize("name", list(CASES))
async def test_binance_fault_without_silent_loss(name: str) -> None:
    await check_case(BINANCE, CASES[name])


async def test_rest_429_is_honoured_not_hammered() -> None:
    report, events, truth, _ = await run_faults(
        BINANCE, [Fault.make("rest_429", 2.0, duration_s=4.0), Fault.make("abort", 2.2)]
    )
    limited = [t for t in truth if t.get("k") == "rest_limited"]
    # one answer per snapshot request in flight at most, then silence until Retry-After
    assert len(limited) <= 4, limited
    assert report.lost == 0
    assert any(isinstance(e, ConnectionState) and e.state == "LIVE" for e in events)
