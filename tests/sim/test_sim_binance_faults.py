"""Every Binance simulator fault kind is observable on the wire (design.md §4, protocols.md §5)."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import pytest
from simkit import closed, collect, loads, recv, recv_until
from test_sim_binance_kit import GapError, RefBook, SpyConnection, cfg, http_get
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosedError, InvalidStatus

from gapless.sim import Fault, Scenario
from gapless.sim.binance import BINANCE_FAULT_KINDS, BinanceSim

QUIET = {"tick_rate_hz": 5.0}


def _closes(sim: BinanceSim) -> list[str]:
    return [r["how"] for r in sim.truth if r["k"] == "conn_close"]


async def _events(ws: ClientConnection, seconds: float) -> list[Any]:
    return [loads(f) for f in await collect(ws, seconds)]


@pytest.mark.looptime
async def test_server_shutdown_then_1001_after_delay() -> None:
    loop = asyncio.get_running_loop()
    async with (
        BinanceSim(cfg(**QUIET)) as sim,
        connect(sim.ws_url + "/ws/btcusdt@trade") as raw,
        connect(sim.ws_url + "/stream?streams=btcusdt@trade") as comb,
    ):
        await asyncio.sleep(0.5)
        t0 = loop.time()
        await sim.inject(Fault.make("server_shutdown", delay_s=2.0))
        m, _ = await recv_until(raw, lambda m: m.get("e") == "serverShutdown")
        assert list(m) == ["e", "E"]
        c, _ = await recv_until(comb, lambda m: m.get("stream") == "!serverShutdown")
        assert c == {"stream": "!serverShutdown", "data": {"e": "serverShutdown", "E": m["E"]}}
        for ws in (raw, comb):
            exc = await closed(ws)
            assert exc.rcvd is not None
            assert exc.rcvd.code == 1001
        assert 2.0 <= loop.time() - t0 <= 2.2
        await asyncio.sleep(0.1)
        assert _closes(sim) == ["close:1001", "close:1001"]
        assert [r["conn"] for r in sim.truth if r["k"] == "server_shutdown"] == [1, 2]
        (f,) = [r for r in sim.truth if r["k"] == "fault"]
        assert f["kind"] == "server_shutdown"
        assert f["params"] == {"delay_s": 2.0}
        assert f["venue"] == "binance"


@pytest.mark.looptime
@pytest.mark.parametrize(
    ("kind", "code", "reason"),
    [("lifetime_close", 1001, ""), ("rate_limit_close", 1008, "Too many requests")],
)
async def test_lifetime_and_rate_limit_closes(kind: str, code: int, reason: str) -> None:
    async with (
        BinanceSim(cfg(**QUIET)) as sim,
        connect(sim.ws_url + "/stream?streams=btcusdt@trade") as ws,
    ):
        await sim.inject(Fault(kind))
        exc = await closed(ws)
        assert exc.rcvd is not None
        assert (exc.rcvd.code, exc.rcvd.reason) == (code, reason)
        await asyncio.sleep(0.1)
        assert _closes(sim) == [f"close:{code}"]
        assert not [r for r in sim.truth if r["k"] == "server_shutdown"]
        assert sim.stats["faults_injected"] == {kind: 1}


@pytest.mark.looptime
async def test_depth_gap_skips_update_ids_on_one_speed() -> None:
    url = "/stream?streams=btcusdt@depth@100ms/btcusdt@depth/ethusdt@depth@100ms"
    async with BinanceSim(cfg()) as sim, connect(sim.ws_url + url, ping_interval=None) as ws:
        book = RefBook()
        first, _ = await recv_until(ws, lambda m: m["stream"] == "btcusdt@depth@100ms")
        book.feed(first["data"])
        assert book.load((await http_get(sim, "/api/v3/depth?symbol=BTCUSDT&limit=5000")).json())
        await sim.inject(Fault.make("depth_gap", symbol="BTCUSDT", speed="100ms", events=2))
        frames = await _events(ws, 2.5)
        fast = [first["data"]] + [m["data"] for m in frames if m["stream"] == first["stream"]]
        slow = [m["data"] for m in frames if m["stream"] == "btcusdt@depth"]
        eth = [m["data"] for m in frames if m["stream"] == "ethusdt@depth@100ms"]
        pairs = itertools.pairwise(fast)
        jumps = [(a["u"], b["U"]) for a, b in pairs if b["U"] != a["u"] + 1]
        assert len(jumps) == 1
        last_u, next_u = jumps[0]
        skipped = [r for r in sim.truth if r["k"] == "book" and r.get("skipped")]
        assert [(r["symbol"], r["speed"]) for r in skipped] == [("BTCUSDT", "100ms")] * 2
        assert skipped[0]["U"] == last_u + 1
        assert skipped[1]["U"] == skipped[0]["u"] + 1
        assert skipped[1]["u"] == next_u - 1  # exactly the ids the client did not get
        for events in (slow, eth):
            assert all(b["U"] == a["u"] + 1 for a, b in itertools.pairwise(events))
        for e in fast:
            if e["U"] == next_u:
                with pytest.raises(GapError):  # §3.8: the client must resync
                    book.apply(e)
                break
            book.apply(e)
        assert sim.stats["faults_injected"] == {"depth_gap": 1}


@pytest.mark.looptime
async def test_stale_snapshot_forces_a_refetch_and_is_a_true_past_book() -> None:
    async with (
        BinanceSim(cfg()) as sim,
        connect(sim.ws_url + "/ws/btcusdt@depth@100ms", ping_interval=None) as ws,
    ):
        events = [await recv(ws)]
        events += await _events(ws, 3.0)
        await sim.inject(Fault.make("stale_snapshot", symbol="BTCUSDT", count=1))
        stale = (await http_get(sim, "/api/v3/depth?symbol=BTCUSDT&limit=5000")).json()
        # older than anything this subscription delivered: §3.8 step 3 says fetch again
        assert stale["lastUpdateId"] == events[0]["U"] - 1
        fresh = (await http_get(sim, "/api/v3/depth?symbol=BTCUSDT&limit=5000")).json()
        assert fresh["lastUpdateId"] >= events[0]["U"]
        synced = RefBook()
        for e in events:
            synced.feed(e)
        assert not synced.load(stale)
        assert synced.load(fresh)
        events += await _events(ws, 1.0)
        await sim.quiesce()
        events += await _events(ws, 0.3)
        final = sim.final_books()["BTCUSDT"]
        for e in events:
            synced.apply(e)
        assert synced.as_text() == (final["bids"], final["asks"])
        # the stale snapshot is the real book at its id: every update after it (the whole
        # stream this connection received) turns it into the final book
        replay = RefBook()
        assert replay.load(stale)
        for e in events:
            replay.apply(e)
        assert replay.as_text() == (final["bids"], final["asks"])
        snaps = [(r["last_update_id"], r["stale"]) for r in sim.truth if r["k"] == "snapshot"]
        assert snaps == [(stale["lastUpdateId"], True), (fresh["lastUpdateId"], False)]


@pytest.mark.looptime
async def test_stale_snapshot_without_subscribers_is_age_s_old() -> None:
    async with BinanceSim(cfg()) as sim:
        await asyncio.sleep(10.0)
        await sim.inject(Fault.make("stale_snapshot", count=2, age_s=3.0))
        now_id = sim.update_id("ETHUSDT")
        r1 = (await http_get(sim, "/api/v3/depth?symbol=ETHUSDT&limit=5")).json()
        r2 = (await http_get(sim, "/api/v3/depth?symbol=BTCUSDT&limit=5")).json()
        r3 = (await http_get(sim, "/api/v3/depth?symbol=ETHUSDT&limit=5")).json()
        assert 140 <= now_id - r1["lastUpdateId"] <= 160  # 3 s at 50 updates/s
        assert r2["lastUpdateId"] < sim.update_id("BTCUSDT") - 100
        assert r3["lastUpdateId"] >= now_id
        assert sim.stats["stale_snapshots"] == 2


@pytest.mark.looptime
async def test_rest_429_and_418_faults() -> None:
    async with BinanceSim(cfg(**QUIET)) as sim:
        await sim.inject(Fault.make("rest_429", duration_s=5.0))
        r = await http_get(sim, "/api/v3/depth?symbol=BTCUSDT&limit=5")
        assert (r.status, r.headers["retry-after"]) == (429, "5")
        await asyncio.sleep(2.0)
        r = await http_get(sim, "/api/v3/ping")  # continuing: no 418 escalation for the fault
        assert (r.status, r.headers["retry-after"]) == (429, "3")
        await asyncio.sleep(3.1)
        assert (await http_get(sim, "/api/v3/ping")).status == 200
        await sim.inject(Fault.make("rest_418", duration_s=4.0, retry_after_s=7))
        r = await http_get(sim, "/api/v3/exchangeInfo")
        assert (r.status, r.headers["retry-after"]) == (418, "7")
        assert r.json()["code"] == -1003
        await asyncio.sleep(4.1)
        assert (await http_get(sim, "/api/v3/ping")).status == 200
        causes = [(r["status"], r["cause"]) for r in sim.truth if r["k"] == "rest_limited"]
        assert causes == [(429, "fault"), (429, "fault"), (418, "fault")]
        assert sim.stats["violations"] == 0
        with pytest.raises(ValueError, match="retry_after_s"):
            Fault.make("rest_429", retry_after_s=1)  # shared with KuCoin: no such param


async def test_close_and_abort() -> None:
    async with BinanceSim(cfg(**QUIET)) as sim:
        async with connect(sim.ws_url + "/ws/btcusdt@trade") as ws:
            await sim.inject(Fault.make("close", code=4000, reason="bye"))
            exc = await closed(ws)
            assert exc.rcvd is not None
            assert (exc.rcvd.code, exc.rcvd.reason) == (4000, "bye")
        async with connect(sim.ws_url + "/ws/btcusdt@trade") as ws:
            await sim.inject(Fault("abort"))
            exc = await closed(ws)
            assert isinstance(exc, ConnectionClosedError)
            assert exc.rcvd is None
        await asyncio.sleep(0.05)
        assert _closes(sim) == ["close:4000", "abort"]


@pytest.mark.looptime
async def test_silent_stall_sends_nothing_not_even_pings() -> None:
    async with BinanceSim(cfg(ping_interval_s=1.0, **QUIET)) as sim:
        async with connect(
            sim.ws_url + "/ws/btcusdt@bookTicker",
            ping_interval=None,
            create_connection=SpyConnection,
        ) as ws:
            assert isinstance(ws, SpyConnection)
            await collect(ws, 1.5)
            n_pings = len(ws.pings)
            assert n_pings >= 1
            await sim.inject(Fault.make("silent_stall", duration_s=5.0))
            pong = asyncio.ensure_future(await ws.ping())
            assert await collect(ws, 4.5) == []
            assert len(ws.pings) == n_pings
            assert not pong.done()  # websocket pongs are withheld too
            async with connect(sim.ws_url + "/ws/btcusdt@bookTicker") as fresh:
                assert "BTCUSDT" in str(await fresh.recv())  # new connections are served
            exc = await closed(ws, limit_s=3.0)
            assert exc.rcvd is None  # aborted when the stall ends
        assert sim.stats["violations"] == 0  # no pong-timeout or rate close while frozen


@pytest.mark.looptime
async def test_data_stall_withholds_one_symbol_while_pings_flow() -> None:
    url = "/stream?streams=btcusdt@depth@100ms/ethusdt@depth@100ms"
    async with (
        BinanceSim(cfg(ping_interval_s=1.0)) as sim,
        connect(sim.ws_url + url, create_connection=SpyConnection) as ws,
    ):
        assert isinstance(ws, SpyConnection)
        before = await _events(ws, 0.5)
        last_btc = [m["data"] for m in before if m["stream"].startswith("btc")][-1]
        await sim.inject(Fault.make("data_stall", duration_s=3.0, symbols=["BTCUSDT"]))
        n_pings = len(ws.pings)
        during = await _events(ws, 2.9)
        assert {m["stream"] for m in during} == {"ethusdt@depth@100ms"}
        assert len(ws.pings) >= n_pings + 2
        after = await _events(ws, 1.0)
        btc = [m["data"] for m in after if m["stream"].startswith("btc")]
        assert btc
        assert btc[0]["U"] > last_btc["u"] + 1  # data resumes, with a gap to resync
        withheld = [
            r
            for r in sim.truth
            if r["k"] == "book"
            and r["symbol"] == "BTCUSDT"
            and last_btc["u"] < r["U"] < btc[0]["U"]
        ]
        assert len(withheld) >= 25  # still published in truth
        assert sim.stats["frames_withheld"] >= 25


@pytest.mark.looptime
async def test_burst_multiplies_the_tick_rate() -> None:
    async with BinanceSim(cfg(tick_rate_hz=20.0)) as sim:
        await asyncio.sleep(1.0)
        u0 = sim.stats["ticks"]
        await asyncio.sleep(1.0)
        normal = sim.stats["ticks"] - u0
        await sim.inject(Fault.make("burst", duration_s=1.0, factor=10.0))
        u1 = sim.stats["ticks"]
        await asyncio.sleep(1.0)
        burst = sim.stats["ticks"] - u1
        assert 38 <= normal <= 42  # 2 symbols x 20 Hz
        assert 380 <= burst <= 420
        await asyncio.sleep(0.5)
        u2 = sim.stats["ticks"]
        await asyncio.sleep(1.0)
        assert 38 <= sim.stats["ticks"] - u2 <= 42


@pytest.mark.looptime
async def test_malformed_variants() -> None:
    async with (
        BinanceSim(cfg(**QUIET)) as sim,
        connect(sim.ws_url + "/ws/btcusdt@depth@100ms", ping_interval=None, max_size=None) as raw,
        connect(sim.ws_url + "/stream?streams=ethusdt@depth", ping_interval=None) as comb,
    ):
        await sim.inject(Fault.make("malformed", variant="invalid_json"))
        frames = await collect(raw, 0.5)
        bad = [f for f in frames if not f.endswith("}")]
        assert bad
        assert bad[0].startswith('{"e":"depthUpdate"')
        await sim.inject(Fault.make("malformed", variant="wrong_types"))
        frames = await collect(comb, 1.5)
        wrong = [loads(f) for f in frames if '"soon"' in f]
        assert wrong[0]["stream"] == "ethusdt@depth"
        assert wrong[0]["data"]["U"] == "one"
        await sim.inject(Fault.make("malformed", variant="huge", size_bytes=3_000_000))
        await sim.inject(Fault.make("malformed", variant="deep"))
        frames = await collect(raw, 1.0)
        assert any(len(f) == 3_000_000 for f in frames)
        assert any(f.startswith("[[[[") and len(f) == 20_000 for f in frames)
        exc = await closed(comb)  # the default client refuses the 3 MB frame
        assert exc.sent is not None
        assert exc.sent.code == 1009


@pytest.mark.looptime
async def test_ban_aborts_and_refuses_upgrades() -> None:
    async with BinanceSim(cfg(**QUIET)) as sim:
        async with connect(sim.ws_url + "/ws") as ws:
            await sim.inject(Fault.make("ban", duration_s=30.0, retry_after_s=30))
            exc = await closed(ws)
            assert exc.rcvd is None
        with pytest.raises(InvalidStatus) as ei:
            async with connect(sim.ws_url + "/ws"):
                pass
        assert ei.value.response.status_code == 429
        assert ei.value.response.headers["Retry-After"] == "30"
        assert (await http_get(sim, "/api/v3/ping")).status == 200  # REST is not banned
        await asyncio.sleep(31.0)
        async with connect(sim.ws_url + "/ws/btcusdt@trade") as ws:
            assert (await recv(ws, 5.0))["e"] == "trade"


@pytest.mark.looptime
async def test_scheduled_scenario() -> None:
    loop = asyncio.get_running_loop()
    async with BinanceSim(cfg(**QUIET)) as sim:
        t0 = loop.time()
        sim.schedule(
            Scenario(
                [Fault.make("lifetime_close", 2.0), Fault.make("server_shutdown", 4.0, delay_s=0)]
            )
        )
        async with connect(sim.ws_url + "/ws") as ws:
            exc = await closed(ws)
            assert exc.rcvd is not None
            assert exc.rcvd.code == 1001
            assert 2.0 <= loop.time() - t0 <= 2.1
        async with connect(sim.ws_url + "/ws") as ws:
            m = await recv(ws, 5.0)
            assert m["e"] == "serverShutdown"
            assert 4.0 <= loop.time() - t0 <= 4.1
            await closed(ws)
        assert [r["kind"] for r in sim.truth if r["k"] == "fault"] == [
            "lifetime_close",
            "server_shutdown",
        ]


async def test_unsupported_kinds_and_bad_params_are_refused() -> None:
    assert set(BINANCE_FAULT_KINDS) >= {
        "server_shutdown",
        "lifetime_close",
        "rate_limit_close",
        "depth_gap",
        "stale_snapshot",
        "rest_429",
        "rest_418",
    }
    async with BinanceSim(cfg(**QUIET)) as sim:
        for fault in (
            Fault("maintenance"),
            Fault("drop_update"),
            Fault.make("depth_gap", symbol="XRPUSDT"),
            Fault.make("depth_gap", speed="250ms"),
            Fault.make("depth_gap", events=0),
            Fault.make("stale_snapshot", count=0),
            Fault.make("server_shutdown", delay_s=-1),
        ):
            with pytest.raises(ValueError):  # noqa: PT011 - message varies by case
                await sim.inject(fault)
        assert sim.stats["faults_injected"] == {}
        assert not [r for r in sim.truth if r["k"] == "fault"]
