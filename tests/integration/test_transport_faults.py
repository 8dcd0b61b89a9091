"""Transport faults from the TCP fault proxy (gapless.sim.proxy) against a real feed:
the half-open link (blackhole) is detected, healed and declared; nothing is lost."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from typing import Any

import pytest

import gapless
from gapless import kraken
from gapless.checker import check
from gapless.demo import demo_client_options
from gapless.events import Event, Gap
from gapless.runtime.clock import loop_anchored_wall_clock
from gapless.sim import KrakenSim, SimConfig
from gapless.sim.proxy import FaultProxy


async def _until(pred: Any, limit_s: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + limit_s
    while not pred():
        if loop.time() > end:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


@pytest.mark.looptime
async def test_a_feed_behind_a_blackhole_detects_the_dead_link_and_loses_nothing() -> None:
    """Half-open: the proxy swallows everything; the client's liveness checks
    (ping/pong, data staleness; 3 s in the demo options) must notice, reconnect
    once the path is back, and declare the gap: the checker finds nothing lost."""
    cfg = SimConfig(seed=5, symbols=("BTC/USD",), tick_rate_hz=40.0)
    async with KrakenSim(cfg) as sim, FaultProxy(sim.port) as proxy:
        kopts, ropts = demo_client_options(proxy.rewrite(sim.url))
        ropts = dataclasses.replace(ropts, wall_clock=loop_anchored_wall_clock())
        events: list[Event] = []
        async with gapless.connect(
            kraken.book("BTC/USD"), kraken.trades("BTC/USD"), kraken=kopts, runtime=ropts
        ) as feed:

            async def consume() -> None:
                async for ev in feed:
                    events.append(ev)

            consumer = asyncio.create_task(consume())
            sup = feed.supervisors[0]
            await _until(lambda: sup.state.value == "LIVE", 20.0)
            await asyncio.sleep(2.0)
            loop = asyncio.get_running_loop()
            proxy.set(blackhole=True)
            holed_at = loop.time()
            await _until(lambda: sup.state.value != "LIVE", 30.0)
            detected_s = loop.time() - holed_at
            await asyncio.sleep(2.0)
            proxy.clear()
            await _until(lambda: sup.state.value == "LIVE", 30.0)
            await asyncio.sleep(2.0)
            await sim.quiesce()
            final = sim.final_books()
            view = feed.book("BTC/USD")
            await _until(
                lambda: (
                    view is not None
                    and view.valid
                    and view.checksum() == final[("BTC/USD", 10)]["checksum"]
                ),
                20.0,
            )
            consumer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await consumer
            frozen = {("BTC/USD", 10): feed.book("BTC/USD")}
            report = check(
                sim.truth, [*events, *feed.drain()], final_books=final, client_books=frozen
            )
    assert detected_s <= 4.0  # the demo options: 3 s without data or pong, plus slack
    assert proxy.stats.blackholed_bytes > 0
    assert any(isinstance(e, Gap) for e in events)  # what the hole swallowed is declared
    assert report.lost == 0
    assert report.duplicated == 0
    assert report.unexpected == 0
    assert report.books_equal, report.book_diffs
