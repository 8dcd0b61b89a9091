"""Hostile limits over loopback against the simulators, then the checker (issue 6).

Binance and KuCoin through ``gapless.connect`` with the demo's client options
(``max_frame_bytes`` 4 MiB, ``max_json_depth`` 128 and ``max_rest_body_bytes``
16 MiB by default): the simulator's ``malformed`` fault sends a frame nested
10,000 deep or a 10 MiB frame, and a REST proxy in front of the simulator
answers the first book snapshot with a 17 MiB body. Each is a ``BadFrame``
naming the limit; the session survives (the oversized frame costs a reconnect,
the others not even that), what it may have touched is resynchronised, and
the checker finds nothing lost, duplicated or unexpected, books equal to the
simulator's. (Kraken's ``malformed`` rows are in ``test_fault_matrix.py``.)
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from harness import Run, Venue, assert_no_silent_loss, run_faults

from gapless.events import BadFrame, ConnectionState, Gap, GapCause
from gapless.sim import BinanceSim, BinanceSimConfig, Fault, KucoinSim, KucoinSimConfig
from gapless.venues import binance, kucoin
from gapless.venues.binance.adapter import BinanceOptions
from gapless.venues.kucoin.adapter import KucoinOptions

pytestmark = [pytest.mark.looptime, pytest.mark.timeout(120)]

MiB = 1024 * 1024

VENUES: dict[str, Venue[Any]] = {
    "binance": Venue(
        name="binance",
        symbols=("BTCUSDT", "ETHUSDT"),
        config=BinanceSimConfig,
        sim=BinanceSim,
        streams=(binance.book, binance.trades, binance.book_ticker),
        urls=lambda sim: {"binance": sim.ws_url, "binance_rest": sim.rest_url},
        options=BinanceOptions(subscribe_ack_timeout_s=3.0, snapshot_timeout_s=5.0),
    ),
    "kucoin": Venue(
        name="kucoin",
        symbols=("BTC-USDT", "ETH-USDT"),
        config=KucoinSimConfig,
        sim=KucoinSim,
        streams=(kucoin.book, kucoin.trades, kucoin.ticker),
        urls=lambda sim: {"kucoin_rest": sim.rest_url},
        options=KucoinOptions(subscribe_ack_timeout_s=3.0),
    ),
}
SNAPSHOT_PATH = {"binance": "/api/v3/depth", "kucoin": "/api/v1/market/orderbook/level2_100"}


def _bad_frames(run: Run) -> list[BadFrame]:
    return [e for e in run.events if isinstance(e, BadFrame)]


@pytest.mark.parametrize("venue", list(VENUES))
async def test_a_deeply_nested_frame_is_a_bad_frame_without_a_reconnect(venue: str) -> None:
    run = await run_faults(VENUES[venue], [Fault.make("malformed", 2.0, variant="deep")])
    assert_no_silent_loss(run)
    reasons = [b.reason for b in _bad_frames(run)]
    assert reasons == ["nesting depth 10000 > max_json_depth 128"]
    assert GapCause.BAD_FRAME in {g.cause for g in run.events if isinstance(g, Gap)}
    states = [e.state for e in run.events if isinstance(e, ConnectionState)]
    assert "RECONNECTING" not in states  # one bad frame is not worth a new connection


@pytest.mark.parametrize("venue", list(VENUES))
async def test_an_oversized_frame_is_a_bad_frame_and_a_reconnect(venue: str) -> None:
    fault = Fault.make("malformed", 2.0, variant="huge", size_bytes=10 * MiB)
    run = await run_faults(VENUES[venue], [fault])
    assert_no_silent_loss(run, {GapCause.DISCONNECT})
    assert [b.reason for b in _bad_frames(run)] == [f"frame larger than {4 * MiB} bytes"]
    states = [e.state for e in run.events if isinstance(e, ConnectionState)]
    assert "RECONNECTING" in states


class _RestProxy:
    """In front of a simulator's REST: the first request to ``path`` gets ``size``
    bytes of junk, everything else is forwarded."""

    def __init__(self, path: str, size: int) -> None:
        self.path = path
        self.size = size
        self.target = ""
        self.url = ""
        self.oversized = 0
        self.forwarded = 0
        self._session: aiohttp.ClientSession | None = None

    def route(self, target: str) -> str:
        self.target = target
        return self.url

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if request.path == self.path and not self.oversized:
            self.oversized += 1
            return web.Response(body=b" " * self.size, content_type="application/json")
        assert self._session is not None
        async with self._session.request(
            request.method, self.target + request.path_qs, data=await request.read()
        ) as resp:
            body = await resp.read()
            self.forwarded += 1
            return web.Response(status=resp.status, body=body, content_type="application/json")

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[_RestProxy]:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        async with aiohttp.ClientSession() as session:
            self._session = session
            try:
                yield self
            finally:
                await runner.cleanup()


@pytest.mark.parametrize("venue", list(VENUES))
async def test_an_oversized_rest_snapshot_is_a_bad_frame_and_fetched_again(venue: str) -> None:
    """The first book snapshot comes back 17 MiB long (the limit is 16 MiB): refused
    while it is read, reported, and asked for again; the book syncs from the next
    one and nothing is lost."""
    base = VENUES[venue]
    rest_key = f"{venue}_rest"
    async with _RestProxy(SNAPSHOT_PATH[venue], 17 * MiB).running() as proxy:

        def urls(sim: Any) -> dict[str, str]:
            return {**base.urls(sim), rest_key: proxy.route(sim.rest_url)}

        run = await run_faults(dataclasses.replace(base, urls=urls), [])
    assert proxy.oversized == 1
    assert proxy.forwarded >= 1
    assert_no_silent_loss(run)
    (bad,) = _bad_frames(run)
    assert bad.reason == (
        f"REST GET {proxy.url}{SNAPSHOT_PATH[venue]}: body over max_rest_body_bytes {16 * MiB}"
    )
    assert 16 * MiB < bad.size <= 17 * MiB
