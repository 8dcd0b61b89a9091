"""Transport faults from the TCP fault proxy (gapless.sim.proxy) against a real feed:
the half-open link (blackhole) is detected, healed and declared; nothing is lost."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from harness import Run, assert_no_silent_loss, runtime_options

import gapless
from gapless import kraken
from gapless.checker import check
from gapless.demo import demo_client_options
from gapless.events import Event, Gap
from gapless.sim import (
    BinanceSim,
    BinanceSimConfig,
    KrakenSim,
    KucoinSim,
    KucoinSimConfig,
    SimConfig,
)
from gapless.sim.proxy import FaultProxy


async def _until(pred: Any, limit_s: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + limit_s
    while not pred():
        if loop.time() > end:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


@dataclass
class _Run:
    run: Run  # the checked run, for harness.assert_no_silent_loss
    proxy: FaultProxy
    detected_s: float | None  # fault on -> the supervisor left LIVE (None: it never did)
    connects: int


async def _through_proxy(
    fault: Callable[[FaultProxy], object], hold_s: float = 3.0, seed: int = 5
) -> _Run:
    """Stream a book and trades from the Kraken simulator through the proxy: 2 s
    clean, ``fault`` for ``hold_s``, then clean again until LIVE and converged.
    The checker classifies every event against the simulator's ground truth."""
    cfg = SimConfig(seed=seed, symbols=("BTC/USD",), tick_rate_hz=40.0)
    async with KrakenSim(cfg) as sim, FaultProxy(sim.port, seed=seed) as proxy:
        kopts, _ = demo_client_options(proxy.rewrite(sim.url))
        ropts = runtime_options()
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
            fault(proxy)
            start = loop.time()
            detected_s: float | None = None
            while loop.time() - start < hold_s:
                if detected_s is None and sup.state.value != "LIVE":
                    detected_s = loop.time() - start
                await asyncio.sleep(0.01)
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
            connects = sup.stats.connects
        truth = list(sim.truth)
    books = {"BTC/USD": frozen[("BTC/USD", 10)]}
    return _Run(Run(report, events, truth, books), proxy, detected_s, connects)


@pytest.mark.looptime
async def test_a_feed_behind_a_blackhole_detects_the_dead_link_and_loses_nothing() -> None:
    """Half-open: the proxy swallows everything; the client's liveness checks
    (ping/pong, data staleness; 3 s in the demo options) must notice, reconnect
    once the path is back, and declare the gap: the checker finds nothing lost."""
    run = await _through_proxy(lambda p: p.set(blackhole=True), hold_s=5.0)
    assert run.detected_s is not None
    assert run.detected_s <= 4.0  # the demo options: 3 s without data or pong, plus slack
    assert run.proxy.stats.blackholed_bytes > 0
    assert any(isinstance(e, Gap) for e in run.run.events)  # what the hole swallowed is declared
    assert run.connects >= 2
    assert_no_silent_loss(run.run)


def _reset(p: FaultProxy) -> None:
    assert p.reset_all() == 1


@pytest.mark.looptime
@pytest.mark.parametrize(
    "fault",
    [
        pytest.param(_reset, id="reset"),
        pytest.param(lambda p: p.set(limit_bytes=4000), id="limit_data"),
    ],
)
async def test_cut_connections_reconnect_declare_and_lose_nothing(
    fault: Callable[[FaultProxy], object],
) -> None:
    """RST now, or a cut after N bytes on every connection while the fault holds:
    each cut is a reconnect and a declared gap; nothing is lost or doubled."""
    run = await _through_proxy(fault)
    assert run.proxy.stats.resets >= 1
    assert run.connects >= 2
    assert any(isinstance(e, Gap) for e in run.run.events)
    assert_no_silent_loss(run.run)


@pytest.mark.looptime
@pytest.mark.parametrize(
    "fault",
    [
        pytest.param(lambda p: p.set(slice_bytes=7), id="slicer"),
        pytest.param(lambda p: p.set(latency_s=0.3, jitter_s=0.2), id="latency_jitter"),
        pytest.param(lambda p: p.set(bandwidth_bps=50_000.0), id="bandwidth"),
    ],
)
async def test_slow_or_sliced_links_stay_connected_without_gaps(
    fault: Callable[[FaultProxy], object],
) -> None:
    """Frames split into tiny segments, delay well under the liveness bounds, a
    throttled link above the stream's rate: the same connection carries on, and
    there is nothing to declare."""
    run = await _through_proxy(fault)
    assert run.connects == 1
    assert run.detected_s is None
    assert not [e for e in run.run.events if isinstance(e, Gap)]
    assert_no_silent_loss(run.run)


async def _silent_link_detected_s(venue: str) -> tuple[float, str]:
    """A KuCoin or Binance feed behind the proxy goes dark: how long until the
    supervisor leaves LIVE, and why. Their own keepalives would take 28 s (KuCoin
    pingInterval + pingTimeout) and 65 s (Binance's floor); the watchdog's ping
    probe must notice in probe_after_s + probe_timeout_s plus a tick."""
    ropts = runtime_options()
    sim: Any
    if venue == "kucoin":
        sim = KucoinSim(KucoinSimConfig(seed=3, symbols=("BTC-USDT",), tick_rate_hz=40.0))
    else:
        sim = BinanceSim(BinanceSimConfig(seed=3, symbols=("BTCUSDT",), tick_rate_hz=40.0))
    async with sim:
        ports = sim.ports if venue == "kucoin" else [sim.port]
        async with contextlib.AsyncExitStack() as stack:
            proxies = [await stack.enter_async_context(FaultProxy(p)) for p in ports]
            if venue == "kucoin":
                sim.advertise([px.rewrite(u) for px, u in zip(proxies, sim.ws_urls, strict=True)])
                spec = gapless.kucoin.book("BTC-USDT")
                urls = {"kucoin_rest": sim.rest_url}
            else:
                spec = gapless.binance.book("BTCUSDT")
                urls = {"binance": proxies[0].rewrite(sim.ws_url), "binance_rest": sim.rest_url}
            async with gapless.connect(spec, urls=urls, runtime=ropts) as feed:
                sup = feed.supervisors[0]
                await _until(lambda: sup.state.value == "LIVE", 20.0)
                await asyncio.sleep(1.0)
                loop = asyncio.get_running_loop()
                for px in proxies:
                    px.set(blackhole=True)
                start = loop.time()
                await _until(lambda: sup.state.value != "LIVE", 60.0)
                detected = loop.time() - start
                return detected, sup.stats.last_close


@pytest.mark.looptime
@pytest.mark.parametrize("venue", ["kucoin", "binance"])
async def test_the_watchdog_probe_finds_a_half_open_link_before_the_venue_keepalive(
    venue: str,
) -> None:
    detected, why = await _silent_link_detected_s(venue)
    ropts = runtime_options()
    assert ropts.probe_after_s is not None
    bound = ropts.probe_after_s + ropts.probe_timeout_s + ropts.probe_after_s / 2
    assert detected <= bound + 0.2, (detected, why)
    assert "no pong" in why
