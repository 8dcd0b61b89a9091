"""Every fault kind is observable on the wire (design.md §4), checked with a plain client."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from simkit import RefBook, closed, collect, is_ack, loads, recv, recv_until, sub, ts_us
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosedError, InvalidStatus

from gapless.sim import Fault, KrakenSim, SimConfig

HB = '{"channel":"heartbeat"}'


def cfg(**kw: Any) -> SimConfig:
    base: dict[str, Any] = {"seed": 11, "symbols": ("BTC/USD", "ALGO/USD"), "tick_rate_hz": 20.0}
    base.update(kw)
    return SimConfig(**base)


async def _subscribed(ws: ClientConnection, symbols: list[str] | None = None) -> None:
    await recv(ws)
    syms = symbols or ["BTC/USD"]
    await ws.send(sub("book", syms, depth=10))
    for _ in syms:
        await recv_until(ws, lambda m: m.get("type") == "snapshot")


def _closes(sim: KrakenSim) -> list[str]:
    return [r["how"] for r in sim.truth if r["k"] == "conn_close"]


async def test_close_with_code_and_reason() -> None:
    async with KrakenSim(cfg()) as sim, connect(sim.url) as ws:
        await _subscribed(ws)
        await sim.inject(Fault.make("close", code=4000, reason="bye"))
        exc = await closed(ws)
        assert exc.rcvd is not None
        assert exc.rcvd.code == 4000
        assert exc.rcvd.reason == "bye"
        await asyncio.sleep(0.05)
        assert _closes(sim) == ["close:4000"]
        assert sim.stats["faults_injected"] == {"close": 1}
        faults = [r for r in sim.truth if r["k"] == "fault"]
        assert faults[0]["params"] == {"code": 4000, "reason": "bye"}


async def test_abort_sends_no_close_frame() -> None:
    async with KrakenSim(cfg()) as sim, connect(sim.url) as ws:
        await _subscribed(ws)
        await sim.inject(Fault("abort"))
        exc = await closed(ws)
        assert isinstance(exc, ConnectionClosedError)
        assert exc.rcvd is None
        await asyncio.sleep(0.05)
        assert _closes(sim) == ["abort"]


@pytest.mark.looptime
async def test_silent_stall_then_abort() -> None:
    async with KrakenSim(cfg()) as sim, connect(sim.url, ping_interval=None) as ws:
        await _subscribed(ws)
        await sim.inject(Fault.make("silent_stall", duration_s=5.0))
        await ws.send(json.dumps({"method": "ping", "req_id": 1}))
        pong_waiter = asyncio.ensure_future(await ws.ping())
        assert await collect(ws, 4.0) == []  # no data, heartbeats, pongs
        assert not pong_waiter.done()  # even websocket pong frames are withheld
        async with connect(sim.url) as fresh:  # new connections are served normally
            assert (await recv(fresh))["channel"] == "status"
            await fresh.send(json.dumps({"method": "ping", "req_id": 2}))
            assert (await recv(fresh))["method"] == "pong"
        exc = await closed(ws, limit_s=3.0)
        assert exc.rcvd is None  # aborted when the stall ends


@pytest.mark.looptime
async def test_silent_stall_without_duration_lasts_until_client_closes() -> None:
    async with KrakenSim(cfg(idle_timeout_s=5.0)) as sim:
        async with connect(sim.url, ping_interval=None, close_timeout=1.0) as ws:
            await _subscribed(ws)
            await sim.inject(Fault("silent_stall"))
            assert await collect(ws, 30.0) == []  # not even the idle-timeout close
        await asyncio.sleep(0.5)
        assert _closes(sim) == ["client"]


@pytest.mark.looptime
async def test_data_stall_keeps_heartbeats_and_pongs() -> None:
    async with KrakenSim(cfg()) as sim, connect(sim.url) as ws:
        await _subscribed(ws, ["BTC/USD", "ALGO/USD"])
        await collect(ws, 0.5)
        loop = asyncio.get_running_loop()
        t0 = sim._ts()
        await sim.inject(Fault.make("data_stall", duration_s=3.0, symbols=["BTC/USD"]))
        frames = await collect(ws, 2.9)
        t1 = sim._ts()
        books = [loads(f)["data"][0] for f in frames if '"channel":"book"' in f]
        # frames queued before the fault may still go out; nothing newer for BTC/USD
        books = [b for b in books if ts_us(b["timestamp"]) > t0]
        assert books, "ALGO/USD is not stalled"
        assert {b["symbol"] for b in books} == {"ALGO/USD"}
        # heartbeats only flow when no other frame went out for 1 s, so stall everything now
        t2 = sim._ts()
        await sim.inject(Fault.make("data_stall", duration_s=3.0))
        frames = await collect(ws, 2.9)
        late = [f for f in frames if f != HB and ts_us(loads(f)["data"][0]["timestamp"]) > t2]
        assert late == []
        assert HB in frames
        await ws.send(json.dumps({"method": "ping", "req_id": 3}))
        assert (await recv(ws))["method"] == "pong"
        # published in truth meanwhile
        stalled = [
            r
            for r in sim.truth
            if r["k"] == "book" and r["symbol"] == "BTC/USD" and t0 * 1000 < r["ts_ns"] < t1 * 1000
        ]
        assert len(stalled) > 10
        # data resumes afterwards
        m, _ = await recv_until(ws, lambda m: m.get("channel") == "book", limit_s=3.0)
        assert m["type"] == "update"
        assert loop.time() > 0


@pytest.mark.looptime
async def test_maintenance_window() -> None:
    async with KrakenSim(cfg()) as sim:
        loop = asyncio.get_running_loop()
        async with connect(sim.url) as ws:
            await _subscribed(ws)
            t0 = loop.time()
            await sim.inject(Fault.make("maintenance", duration_s=6.0, cancel_only_s=2.0))
            m, _ = await recv_until(ws, lambda m: m.get("channel") == "status")
            assert m["data"][0]["system"] == "maintenance"
            exc = await closed(ws)
            assert exc.rcvd is not None
            assert exc.rcvd.code == 1001
            assert 0.15 <= loop.time() - t0 <= 0.5
        with pytest.raises(InvalidStatus) as ei:
            async with connect(sim.url):
                pass
        assert ei.value.response.status_code == 503
        await asyncio.sleep(6.0 - (loop.time() - t0) + 0.05)
        async with connect(sim.url) as ws:
            m = await recv(ws)
            assert m["data"][0]["system"] == "cancel_only"
            m = await recv(ws, limit_s=3.0)
            assert m["channel"] == "status"
            assert m["data"][0]["system"] == "online"
            assert 7.9 <= loop.time() - t0 <= 8.3
        assert sim.stats["refused_by_status"] == {503: 1}
        assert [r["status"] for r in sim.truth if r["k"] == "refused"] == [503]


async def test_status_push_keeps_connection() -> None:
    async with KrakenSim(cfg()) as sim, connect(sim.url) as ws:
        await _subscribed(ws)
        await sim.inject(Fault.make("status", system="post_only"))
        m, _ = await recv_until(ws, lambda m: m.get("channel") == "status")
        assert m["data"][0]["system"] == "post_only"
        await ws.send(json.dumps({"method": "ping", "req_id": 4}))
        await recv_until(ws, lambda m: m.get("method") == "pong")
        async with connect(sim.url) as ws2:
            assert (await recv(ws2))["data"][0]["system"] == "post_only"
        assert sim.system_status == "post_only"


async def test_reject_subscriptions_then_close() -> None:
    async with KrakenSim(cfg()) as sim:
        async with connect(sim.url) as ws:
            await _subscribed(ws)
            await sim.inject(Fault.make("reject_subscriptions", count=1, symbol="BTC/USD"))
            exc = await closed(ws)
            assert exc.rcvd is not None
            assert exc.rcvd.code == 1000
        async with connect(sim.url) as ws:
            await recv(ws)
            await ws.send(sub("book", ["BTC/USD", "ALGO/USD"], req_id=5))
            err = await recv(ws)
            assert err["success"] is False
            assert err["error"] == "EService:Unavailable"
            assert err["symbol"] == "BTC/USD"
            assert err["req_id"] == 5
            ack, _ = await recv_until(ws, is_ack)
            assert ack["result"]["symbol"] == "ALGO/USD"
            await ws.send(sub("book", ["BTC/USD"], req_id=6))
            ack, _ = await recv_until(ws, lambda m: m.get("req_id") == 6)
            assert ack["success"] is True


@pytest.mark.looptime
async def test_ban_answers_429_with_retry_after() -> None:
    async with KrakenSim(cfg()) as sim:
        loop = asyncio.get_running_loop()
        async with connect(sim.url) as ws:
            await _subscribed(ws)
            t0 = loop.time()
            await sim.inject(Fault.make("ban", duration_s=5.0, retry_after_s=7))
            exc = await closed(ws)
            assert exc.rcvd is None
        with pytest.raises(InvalidStatus) as ei:
            async with connect(sim.url):
                pass
        assert ei.value.response.status_code == 429
        assert ei.value.response.headers["Retry-After"] == "7"
        await asyncio.sleep(5.0 - (loop.time() - t0) + 0.05)
        async with connect(sim.url) as ws:
            assert (await recv(ws))["channel"] == "status"
        # default Retry-After: the remaining ban time
        await sim.inject(Fault.make("ban", duration_s=30.0))
        await asyncio.sleep(10.0)
        with pytest.raises(InvalidStatus) as ei:
            async with connect(sim.url):
                pass
        assert ei.value.response.headers["Retry-After"] == "20"
        assert sim.stats["refused_by_status"] == {429: 2}
        assert sim.stats["violations"] == 0


async def _feed_vs_truth(
    sim: KrakenSim, fault: Fault, seconds: float = 1.0
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """Run a depth-10 BTC feed around ``fault``; return (wire updates, truth records, snapshots)."""
    async with connect(sim.url) as ws:
        await recv(ws)
        await ws.send(sub("book", ["BTC/USD"], depth=10))
        ack, _ = await recv_until(ws, is_ack)
        snap = await recv(ws)
        before = await collect(ws, 0.3)
        await sim.inject(fault)
        frames = [loads(f) for f in before + await collect(ws, seconds)]
    ack_ts = ts_us(ack["time_out"]) * 1000
    wire = [f["data"][0] for f in frames if f.get("channel") == "book"]
    last = ts_us(wire[-1]["timestamp"]) * 1000
    truth = [
        r
        for r in sim.truth
        if r["k"] == "book"
        and r["symbol"] == "BTC/USD"
        and r["depth"] == 10
        and ack_ts < r["ts_ns"] <= last
    ]
    return wire, truth, [snap["data"][0]]


@pytest.mark.parametrize("seed", [11, 12, 13, 14, 15])
async def test_drop_update_is_a_gap_the_next_checksum_reveals(seed: int) -> None:
    async with KrakenSim(cfg(seed=seed, tick_rate_hz=50.0)) as sim:
        wire, truth, snaps = await _feed_vs_truth(
            sim, Fault.make("drop_update", symbol="BTC/USD"), seconds=0.6
        )
    wire_ts = [ts_us(u["timestamp"]) * 1000 for u in wire]
    truth_ts = [r["ts_ns"] for r in truth]
    # exactly one published update never arrived; everything else arrived in order
    missing = [t for t in truth_ts if t not in set(wire_ts)]
    assert len(missing) == 1
    assert wire_ts == [t for t in truth_ts if t != missing[0]]
    # a client that missed it notices at the very next update
    book = RefBook(10, 1, 8)
    book.load(snaps[0])
    first_bad = None
    for u in wire:
        book.apply(u)
        if book.checksum() != u["checksum"]:
            first_bad = ts_us(u["timestamp"]) * 1000
            break
    assert first_bad == truth_ts[truth_ts.index(missing[0]) + 1]


async def test_drop_update_not_required_to_be_detectable() -> None:
    async with KrakenSim(cfg(tick_rate_hz=50.0)) as sim:
        wire, truth, _ = await _feed_vs_truth(
            sim, Fault.make("drop_update", symbol="BTC/USD", detectable=False), seconds=0.4
        )
    wire_ts = {ts_us(u["timestamp"]) * 1000 for u in wire}
    assert len([r for r in truth if r["ts_ns"] not in wire_ts]) == 1


async def test_corrupt_checksum_once() -> None:
    async with KrakenSim(cfg(tick_rate_hz=50.0)) as sim:
        wire, truth, snaps = await _feed_vs_truth(
            sim, Fault.make("corrupt_checksum", symbol="BTC/USD")
        )
    by_ts = {r["ts_ns"]: r["checksum"] for r in truth}
    bad = [u for u in wire if by_ts[ts_us(u["timestamp"]) * 1000] != u["checksum"]]
    assert len(bad) == 1
    book = RefBook(10, 1, 8)
    book.load(snaps[0])
    mismatches = 0
    for u in wire:
        book.apply(u)
        mismatches += book.checksum() != u["checksum"]
    assert mismatches == 1  # the book itself stays right; only that one checksum lies


@pytest.mark.looptime
async def test_burst_multiplies_tick_rate() -> None:
    async with KrakenSim(cfg(symbols=("BTC/USD",), tick_rate_hz=50.0)) as sim:
        await asyncio.sleep(1.0)
        n0 = sim.stats["ticks"]
        await asyncio.sleep(2.0)
        normal = sim.stats["ticks"] - n0
        await sim.inject(Fault.make("burst", duration_s=2.0, factor=10.0))
        n1 = sim.stats["ticks"]
        await asyncio.sleep(2.0)
        burst = sim.stats["ticks"] - n1
        await asyncio.sleep(1.0)
        n2 = sim.stats["ticks"]
        await asyncio.sleep(2.0)
        after = sim.stats["ticks"] - n2
    assert 95 <= normal <= 105
    assert 950 <= burst <= 1050
    assert 95 <= after <= 105


def _valid_book(raw: str) -> bool:
    try:
        m = json.loads(raw)
    except (ValueError, RecursionError):
        return False
    return (
        isinstance(m, dict)
        and m.get("channel") == "book"
        and isinstance(m["data"][0]["checksum"], int)
        and all(isinstance(lv["price"], float) for lv in m["data"][0]["bids"])
    )


@pytest.mark.parametrize("variant", ["invalid_json", "wrong_types", "huge", "deep"])
async def test_malformed_frames(variant: str) -> None:
    async with KrakenSim(cfg()) as sim, connect(sim.url, max_size=None) as ws:
        await _subscribed(ws)
        await sim.inject(Fault.make("malformed", variant=variant, size_bytes=2 * 1024 * 1024))
        frames = await collect(ws, 0.5)
        odd = [f for f in frames if f != HB and not _valid_book(f)]
        assert len(odd) == 1
        raw = odd[0]
        if variant == "invalid_json":
            with pytest.raises(json.JSONDecodeError):
                json.loads(raw)
        elif variant == "wrong_types":
            m = json.loads(raw)
            assert m["channel"] == "book"
            assert m["data"][0]["symbol"] == "BTC/USD"
            assert m["data"][0]["bids"][0]["price"] == "abc"
            assert isinstance(m["data"][0]["bids"][0]["qty"], dict)
        elif variant == "huge":
            assert len(raw.encode()) == 2 * 1024 * 1024
            assert isinstance(json.loads(raw), dict)
        else:
            assert raw == "[" * 10_000 + "]" * 10_000
    truth_kinds = {r["k"] for r in sim.truth}
    assert "fault" in truth_kinds


async def test_huge_frame_trips_a_default_client_limit() -> None:
    async with KrakenSim(cfg()) as sim, connect(sim.url) as ws:  # max_size 1 MiB
        await _subscribed(ws)
        await sim.inject(Fault.make("malformed", variant="huge"))
        exc = await closed(ws)
        assert exc.sent is not None
        assert exc.sent.code == 1009
