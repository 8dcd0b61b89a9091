"""Binance connection rules (protocols.md §3.2-§3.4): keepalive, rate, lifetime, attempts."""

from __future__ import annotations

import asyncio
import json

import pytest
from simkit import closed, collect, loads, recv
from test_sim_binance_kit import SpyConnection, cfg, http_get, send_pong
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from gapless.sim.binance import BinanceSim

QUIET = {"tick_rate_hz": 1.0}  # long virtual waits stay cheap


@pytest.mark.looptime
async def test_server_pings_every_20_s_and_a_pong_keeps_the_connection() -> None:
    loop = asyncio.get_running_loop()
    async with BinanceSim(cfg(**QUIET)) as sim:
        t0 = loop.time()
        async with connect(
            sim.ws_url + "/ws/btcusdt@trade", ping_interval=None, create_connection=SpyConnection
        ) as ws:
            assert isinstance(ws, SpyConnection)
            await collect(ws, 130.0)  # websockets answers each ping with its payload
            offsets = [round(t - t0) for t, _ in ws.pings]
            assert offsets == [20, 40, 60, 80, 100, 120]
            payloads = [p for _, p in ws.pings]
            assert all(p.isdigit() for p in payloads)  # event-time milliseconds
            assert len(set(payloads)) == len(payloads)
            assert sim.stats["pings_sent"] == 6
            assert sim.stats["open_connections"] == 1
            assert sim.stats["violations"] == 0


@pytest.mark.looptime
async def test_no_pong_within_a_minute_closes_with_1008() -> None:
    loop = asyncio.get_running_loop()
    async with BinanceSim(cfg(**QUIET)) as sim:
        t0 = loop.time()
        async with connect(
            sim.ws_url + "/ws/btcusdt@trade",
            ping_interval=None,
            close_timeout=1.0,
            create_connection=SpyConnection,
        ) as ws:
            assert isinstance(ws, SpyConnection)
            ws.answer_pings = False

            async def unsolicited() -> None:
                while True:  # allowed, but does not prevent the disconnect (§3.3)
                    await asyncio.sleep(10.0)
                    await send_pong(ws, b"")

            pinger = asyncio.ensure_future(unsolicited())
            try:
                exc = await closed(ws, limit_s=200.0)
            finally:
                pinger.cancel()
            t_close = loop.time() - t0
            assert exc.rcvd is not None
            assert (exc.rcvd.code, exc.rcvd.reason) == (1008, "Pong timeout")
            assert 80.0 <= t_close <= 81.0  # first ping at 20 s + 60 s
            assert [round(t - t0) for t, _ in ws.pings] == [20, 40, 60]
        await asyncio.sleep(0.1)
        assert [r["rule"] for r in sim.truth if r["k"] == "violation"] == ["pong_timeout"]
        assert [r["how"] for r in sim.truth if r["k"] == "conn_close"] == ["close:1008"]


@pytest.mark.looptime
async def test_a_late_pong_for_the_latest_ping_acknowledges_earlier_ones() -> None:
    async with (
        BinanceSim(cfg(ping_interval_s=2.0, pong_timeout_s=5.0, **QUIET)) as sim,
        connect(sim.ws_url + "/ws", ping_interval=None, create_connection=SpyConnection) as ws,
    ):
        assert isinstance(ws, SpyConnection)
        ws.answer_pings = False
        for _ in range(4):  # answer only every other ping, 2 s late
            await collect(ws, 4.0)
            await send_pong(ws, ws.pings[-1][1])
        assert len(ws.pings) >= 7
        assert sim.stats["open_connections"] == 1
        await send_pong(ws, b"wrong payload")
        exc = await closed(ws, limit_s=10.0)
        assert exc.rcvd is not None
        assert exc.rcvd.code == 1008


@pytest.mark.looptime
@pytest.mark.parametrize("kind", ["json", "ping", "pong", "mixed"])
async def test_more_than_5_inbound_messages_per_second_close_with_1008(kind: str) -> None:
    async with BinanceSim(cfg(**QUIET)) as sim:
        async with connect(sim.ws_url + "/ws", ping_interval=None) as ws:

            async def send(i: int) -> None:
                k = kind if kind != "mixed" else ("json", "ping", "pong")[i % 3]
                if k == "json":
                    await ws.send(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": i}))
                elif k == "ping":
                    await ws.ping(str(i))
                else:
                    await ws.pong(str(i))

            for burst in range(3):  # 5 per second is fine
                for i in range(5):
                    await send(burst * 10 + i)
                await asyncio.sleep(1.01)
            assert sim.stats["open_connections"] == 1
            for i in range(6):
                await send(100 + i)
            exc = await closed(ws)
            assert exc.rcvd is not None
            assert (exc.rcvd.code, exc.rcvd.reason) == (1008, "Too many requests")
        await asyncio.sleep(0.1)
        violations = [r for r in sim.truth if r["k"] == "violation"]
        assert [v["rule"] for v in violations] == ["inbound_rate"]
        assert violations[0]["conn"] == 1
        assert sim.stats["client_frames"] >= 21


@pytest.mark.looptime
async def test_the_window_slides() -> None:
    """3 at t, 3 at t+0.5 s: six within one second although no calendar second holds six."""
    async with BinanceSim(cfg(**QUIET)) as sim, connect(sim.ws_url + "/ws") as ws:
        await asyncio.sleep(0.7)
        for _ in range(3):
            await ws.pong(b"")
        await asyncio.sleep(0.5)
        for _ in range(3):
            await ws.pong(b"")
        exc = await closed(ws)
        assert exc.rcvd is not None
        assert exc.rcvd.code == 1008


@pytest.mark.looptime
async def test_lifetime_close_is_1001_without_server_shutdown() -> None:
    loop = asyncio.get_running_loop()
    async with BinanceSim(cfg(lifetime_s=3600.0, **QUIET)) as sim:
        t0 = loop.time()
        async with connect(sim.ws_url + "/stream?streams=btcusdt@bookTicker") as ws:
            exc = await closed(ws, limit_s=4000.0)
            assert exc.rcvd is not None
            assert exc.rcvd.code == 1001
            assert 3600.0 <= loop.time() - t0 <= 3601.0
        await asyncio.sleep(0.1)  # the handler records the close after the handshake
        assert not [r for r in sim.truth if r["k"] == "server_shutdown"]
        assert [r["how"] for r in sim.truth if r["k"] == "conn_close"] == ["close:1001"]


@pytest.mark.looptime
@pytest.mark.parametrize("combined", [False, True])
async def test_server_shutdown_before_the_lifetime_close(combined: bool) -> None:
    loop = asyncio.get_running_loop()
    config = cfg(lifetime_s=60.0, server_shutdown_before_s=5.0, **QUIET)
    path = "/stream?streams=btcusdt@trade" if combined else "/ws/btcusdt@trade"
    async with BinanceSim(config) as sim:
        t0 = loop.time()
        async with connect(sim.ws_url + path) as ws:
            while True:
                raw = await ws.recv()
                m = loads(raw)
                if "serverShutdown" in str(raw):
                    break
            assert 55.0 <= loop.time() - t0 <= 55.5
            if combined:
                assert list(m) == ["stream", "data"]
                assert m["stream"] == "!serverShutdown"
                m = m["data"]
            assert list(m) == ["e", "E"]
            assert m["e"] == "serverShutdown"
            assert isinstance(m["E"], int)
            exc = await closed(ws, limit_s=10.0)
            assert exc.rcvd is not None
            assert exc.rcvd.code == 1001
            assert 60.0 <= loop.time() - t0 <= 60.5
        recs = [r for r in sim.truth if r["k"] == "server_shutdown"]
        assert recs == [
            {"k": "server_shutdown", "venue": "binance", "conn": 1, "ts_ns": m["E"] * 1_000_000}
        ]


async def _attempt(sim: BinanceSim) -> int:
    """One upgrade attempt: 101 on success, else the HTTP status."""
    try:
        async with connect(sim.ws_url + "/ws", ping_interval=None):
            return 101
    except InvalidStatus as exc:
        return exc.response.status_code


@pytest.mark.looptime
async def test_300_connection_attempts_per_5_minutes() -> None:
    loop = asyncio.get_running_loop()
    async with BinanceSim(cfg(**QUIET)) as sim:
        t0 = loop.time()
        for _ in range(300):
            assert await _attempt(sim) == 101
        for _ in range(5):  # REST requests are not connection attempts
            assert (await http_get(sim, "/api/v3/ping")).status == 200
        with pytest.raises(InvalidStatus) as ei:
            async with connect(sim.ws_url + "/ws"):
                pass
        assert ei.value.response.status_code == 429
        assert 299 <= int(ei.value.response.headers["Retry-After"]) <= 300
        assert await _attempt(sim) == 429  # refused attempts count too
        assert sim.stats["violations_by_rule"] == {"connect_rate": 1}  # one per episode
        await asyncio.sleep(300.5 - (loop.time() - t0))
        assert await _attempt(sim) == 101
        assert sim.stats["refused_by_status"] == {429: 2}
        assert [r["status"] for r in sim.truth if r["k"] == "refused"] == [429, 429]


@pytest.mark.looptime
async def test_scaled_down_attempt_limit() -> None:
    async with BinanceSim(cfg(connect_limit=4, connect_window_s=0.5)) as sim:
        assert [await _attempt(sim) for _ in range(5)] == [101] * 4 + [429]
        await asyncio.sleep(0.6)
        assert await _attempt(sim) == 101
        async with connect(sim.ws_url + "/ws/btcusdt@trade") as ws:
            assert (await recv(ws))["e"] == "trade"
