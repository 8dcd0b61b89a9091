"""Binance over loopback against the simulator: each fault, then the checker.

Books (§3.8 with REST snapshots), trades (id continuity) and bookTickers of two
symbols through ``gapless.connect``; every published event must be delivered
once or fall inside a declared gap (by update id / trade id), and the final
books (top 50 levels) must equal the simulator's. Virtual time (looptime).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from typing import Any

import pytest

import gapless
from gapless.checker import CheckReport, check
from gapless.demo import _freeze_books, demo_client_options
from gapless.events import ConnectionState, Event, Gap, GapCause
from gapless.runtime.clock import loop_anchored_wall_clock
from gapless.sim import BinanceSim, BinanceSimConfig, Fault, Scenario
from gapless.venues import binance
from gapless.venues.binance.adapter import BinanceOptions

pytestmark = [pytest.mark.looptime, pytest.mark.timeout(120)]

SYMBOLS = ("BTCUSDT", "ETHUSDT")


async def _run(
    faults: list[Fault], run_s: float = 12.0, **sim_kw: Any
) -> tuple[CheckReport, list[Event], list[dict[str, Any]]]:
    config = BinanceSimConfig(seed=5, symbols=SYMBOLS, tick_rate_hz=30.0, **sim_kw)
    events: list[Event] = []
    async with BinanceSim(config) as sim:
        _, ropts = demo_client_options("ws://unused")
        ropts = dataclasses.replace(ropts, wall_clock=loop_anchored_wall_clock())
        bopts = BinanceOptions(subscribe_ack_timeout_s=3.0, snapshot_timeout_s=5.0)
        specs = [f(s) for s in SYMBOLS for f in (binance.book, binance.trades, binance.book_ticker)]
        urls = {"binance": sim.ws_url, "binance_rest": sim.rest_url}
        async with gapless.connect(*specs, urls=urls, binance=bopts, runtime=ropts) as feed:

            async def consume() -> None:
                async for ev in feed:
                    events.append(ev)

            task = asyncio.create_task(consume())
            sim.schedule(Scenario(faults))
            await asyncio.sleep(run_s)
            await sim.quiesce()
            final = sim.final_books()
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 20.0
            while loop.time() < deadline:
                views = [feed.book(s, venue="binance") for s in SYMBOLS]
                if all(v is not None and v.valid for v in views) and all(
                    a.stream_state(k) in ("live", "rejected")
                    for a in feed.adapters
                    for k in a.streams()
                ):
                    break
                await asyncio.sleep(0.2)
            await asyncio.sleep(1.0)
            frozen = _freeze_books({(s, 50): feed.book(s, venue="binance") for s in SYMBOLS})
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await feed.aclose()
            events.extend(feed.drain())
        truth = list(sim.truth)
    want = {(s, 50): {"bids": v["bids"][:50], "asks": v["asks"][:50]} for s, v in final.items()}
    report = check(truth, events, final_books=want, client_books=frozen, venue="binance")
    return report, events, truth


def _causes(events: list[Event]) -> set[GapCause]:
    return {e.cause for e in events if isinstance(e, Gap)}


CASES: dict[str, tuple[list[Fault], set[GapCause]]] = {
    "abort": ([Fault.make("abort", 2.0)], {GapCause.DISCONNECT}),
    "close": ([Fault.make("close", 2.0, code=1001)], {GapCause.DISCONNECT}),
    "rate_limit_close": ([Fault.make("rate_limit_close", 2.0)], {GapCause.DISCONNECT}),
    "depth_gap": ([Fault.make("depth_gap", 2.0, symbol="BTCUSDT")], {GapCause.SEQUENCE_GAP}),
    "stale_snapshot": (
        [Fault.make("stale_snapshot", 2.0, symbol="ETHUSDT", count=2), Fault.make("abort", 2.5)],
        {GapCause.DISCONNECT},
    ),
    "rest_429": (
        [Fault.make("rest_429", 2.0, duration_s=3.0), Fault.make("abort", 2.5)],
        {GapCause.DISCONNECT},
    ),
    "rest_418": (
        [Fault.make("rest_418", 2.0, duration_s=3.0), Fault.make("abort", 2.5)],
        {GapCause.DISCONNECT},
    ),
    "silent_stall": ([Fault.make("silent_stall", 2.0, duration_s=6.0)], {GapCause.DISCONNECT}),
    "malformed": ([Fault.make("malformed", 2.0, variant="invalid_json")], set()),
    "burst": ([Fault.make("burst", 2.0, duration_s=2.0, factor=5.0)], set()),
}


@pytest.mark.parametrize("name", list(CASES))
async def test_binance_fault_without_silent_loss(name: str) -> None:
    faults, causes = CASES[name]
    report, events, truth = await _run(faults)
    assert report.published > 300
    assert report.lost == 0, [s.lost_examples for s in report.streams.values() if s.lost]
    assert report.duplicated == 0
    assert report.unexpected == 0
    assert report.books_equal, report.book_diffs
    assert causes <= _causes(events)
    assert not [t for t in truth if t.get("k") == "violation"], "the client broke a venue rule"


async def test_rest_429_is_honoured_not_hammered() -> None:
    report, events, truth = await _run(
        [Fault.make("rest_429", 2.0, duration_s=4.0), Fault.make("abort", 2.2)]
    )
    limited = [t for t in truth if t.get("k") == "rest_limited"]
    # one answer per snapshot request in flight at most, then silence until Retry-After
    assert len(limited) <= 4, limited
    assert report.lost == 0
    assert any(isinstance(e, ConnectionState) and e.state == "LIVE" for e in events)
