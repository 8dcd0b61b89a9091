"""Wire protocol of the simulator, checked with a plain websockets client (protocols.md §1)."""

from __future__ import annotations

import asyncio
import itertools
import json
import re
from typing import Any

import pytest
from simkit import (
    RFC3339_US,
    RefBook,
    closed,
    collect,
    is_ack,
    loads,
    recv,
    recv_until,
    sub,
    ts_us,
)
from websockets.asyncio.client import connect

from gapless.sim import KrakenSim, SimConfig

PREC = {"BTC/USD": (1, 8), "ETH/USD": (2, 8), "MATIC/USD": (4, 8), "ALGO/USD": (5, 8)}


def cfg(**kw: Any) -> SimConfig:
    base: dict[str, Any] = {"seed": 7, "symbols": ("BTC/USD", "ALGO/USD")}
    base.update(kw)
    return SimConfig(**base)


async def test_status_is_first_frame() -> None:
    async with KrakenSim(cfg()) as sim, connect(sim.url) as ws:
        raw = await ws.recv()
        assert isinstance(raw, str)
        m = loads(raw)
        assert m["channel"] == "status"
        assert m["type"] == "update"
        (d,) = m["data"]
        assert d["api_version"] == "v2"
        assert d["system"] == "online"
        assert d["version"] == "2.0.0"
        cid = d["connection_id"]
        assert isinstance(cid, int)
        assert cid > 2**53
        assert f'"connection_id":{cid}' in raw  # printed as an exact integer


async def test_connection_ids_differ_and_follow_seed() -> None:
    async def ids(seed: int) -> list[int]:
        out = []
        async with KrakenSim(cfg(seed=seed)) as sim:
            for _ in range(3):
                async with connect(sim.url) as ws:
                    out.append((await recv(ws))["data"][0]["connection_id"])
        return out

    a = await ids(5)
    assert len(set(a)) == 3
    assert a == await ids(5)
    assert a != await ids(6)


async def test_book_acks_one_per_symbol_then_snapshots() -> None:
    async with KrakenSim(cfg()) as sim, connect(sim.url) as ws:
        await recv(ws)
        await ws.send(sub("book", ["BTC/USD", "ALGO/USD"], req_id=42, depth=25))
        msgs = [await recv(ws) for _ in range(4)]
        acks = [m for m in msgs if is_ack(m)]
        assert [a["result"]["symbol"] for a in acks] == ["BTC/USD", "ALGO/USD"]
        for a in acks:
            assert "channel" not in a
            assert "type" not in a
            assert a["method"] == "subscribe"
            assert a["success"] is True
            assert a["req_id"] == 42
            assert a["result"]["channel"] == "book"
            assert a["result"]["depth"] == 25
            assert a["result"]["snapshot"] is True
            assert RFC3339_US.match(a["time_in"])
            assert RFC3339_US.match(a["time_out"])
            assert ts_us(a["time_in"]) <= ts_us(a["time_out"])
        # each snapshot follows right after its own ack
        assert is_ack(msgs[0])
        assert msgs[1]["type"] == "snapshot"
        assert msgs[1]["data"][0]["symbol"] == "BTC/USD"
        assert is_ack(msgs[2])
        assert msgs[3]["type"] == "snapshot"
        snap = msgs[3]["data"][0]
        assert len(snap["bids"]) == 25
        assert len(snap["asks"]) == 25
        assert ts_us(snap["timestamp"]) < ts_us(msgs[2]["time_out"])
        prices = [lv["price"] for lv in snap["bids"]]
        assert prices == sorted(prices, reverse=True)
        prices = [lv["price"] for lv in snap["asks"]]
        assert prices == sorted(prices)
        assert snap["bids"][0]["price"] < snap["asks"][0]["price"]


async def test_trade_ticker_instrument_acks() -> None:
    async with KrakenSim(cfg()) as sim, connect(sim.url) as ws:
        await recv(ws)
        await ws.send(sub("trade", ["BTC/USD"], req_id=1))
        ack, _ = await recv_until(ws, is_ack)
        assert ack["result"] == {"channel": "trade", "snapshot": False, "symbol": "BTC/USD"}
        await ws.send(sub("ticker", ["BTC/USD"], req_id=2))
        ack, _ = await recv_until(ws, is_ack)
        assert ack["result"] == {
            "channel": "ticker",
            "event_trigger": "trades",
            "snapshot": True,
            "symbol": "BTC/USD",
        }
        snap, _ = await recv_until(ws, lambda m: m.get("channel") == "ticker")
        assert snap["type"] == "snapshot"
        keys = set(snap["data"][0])
        assert keys == {
            "symbol",
            "bid",
            "bid_qty",
            "ask",
            "ask_qty",
            "last",
            "volume",
            "vwap",
            "low",
            "high",
            "change",
            "change_pct",
            "timestamp",
        }
        await ws.send(sub("instrument", req_id=3))
        ack, _ = await recv_until(ws, lambda m: is_ack(m, "instrument"))
        assert ack["result"]["warnings"] == ["tick_size is deprecated, use price_increment"]
        assert "symbol" not in ack["result"]
        assert ack["req_id"] == 3
        raw = ""
        async with asyncio.timeout(3):
            while '"channel":"instrument"' not in raw:
                got = await ws.recv()
                assert isinstance(got, str)
                raw = got
        inst = json.loads(raw)
        assert inst["type"] == "snapshot"
        assert isinstance(inst["data"], dict)
        pairs = {p["symbol"]: p for p in inst["data"]["pairs"]}
        assert set(pairs) == {"BTC/USD", "ALGO/USD"}
        assert pairs["BTC/USD"]["price_precision"] == 1
        assert pairs["BTC/USD"]["qty_precision"] == 8
        assert pairs["ALGO/USD"]["price_precision"] == 5
        for field in (
            "price_increment",
            "qty_increment",
            "qty_min",
            "status",
            "base",
            "quote",
            "cost_min",
            "cost_precision",
            "has_index",
            "marginable",
            "tick_size",
        ):
            assert field in pairs["BTC/USD"]
        assert '"qty_increment":1e-08' in raw  # exponent notation, as live
        assert {a["id"] for a in inst["data"]["assets"]} == {"BTC", "ALGO", "USD"}


async def test_subscription_errors_keep_connection_open() -> None:
    async with KrakenSim(cfg()) as sim, connect(sim.url) as ws:
        await recv(ws)
        await ws.send(sub("book", ["BTC/USD"], req_id=9, depth=27))
        m = await recv(ws)
        assert m["error"] == "Subscription depth not supported"
        assert m["success"] is False
        assert m["method"] == "subscribe"
        assert m["req_id"] == 9
        assert "symbol" not in m
        assert RFC3339_US.match(m["time_in"])
        assert RFC3339_US.match(m["time_out"])
        await ws.send(sub("book", ["XBT/USD", "BTC/USD"], req_id=10))
        err = await recv(ws)
        assert err == {
            **err,
            "error": "Currency pair not supported XBT/USD",
            "success": False,
            "symbol": "XBT/USD",
            "req_id": 10,
            "method": "subscribe",
        }
        ack = await recv(ws)
        assert ack["success"] is True
        assert ack["result"]["symbol"] == "BTC/USD"
        await ws.send(sub("book", ["BTC/USD"], req_id=11))
        dup, _ = await recv_until(ws, lambda m: m.get("req_id") == 11)
        assert dup["error"] == "Already subscribed"
        assert dup["symbol"] == "BTC/USD"
        await ws.send(sub("trade", ["ALGO/USD"], req_id=12, method="unsubscribe"))
        nf, _ = await recv_until(ws, lambda m: m.get("req_id") == 12)
        assert nf["error"] == "Subscription Not Found"
        assert nf["method"] == "unsubscribe"
        assert nf["symbol"] == "ALGO/USD"
        # a different depth on the same symbol is a different subscription
        await ws.send(sub("book", ["BTC/USD"], req_id=13, depth=100))
        ok, _ = await recv_until(ws, lambda m: m.get("req_id") == 13)
        assert ok["success"] is True
        await ws.send(json.dumps({"method": "ping", "req_id": 14}))
        pong, _ = await recv_until(ws, lambda m: m.get("method") == "pong")
        assert pong["req_id"] == 14


async def test_malformed_requests_get_error_envelopes() -> None:
    async with KrakenSim(cfg()) as sim, connect(sim.url) as ws:
        await recv(ws)
        await ws.send("{not json")
        m = await recv(ws)
        assert m["success"] is False
        assert "error" in m
        await ws.send(json.dumps({"method": "frobnicate", "req_id": 5}))
        m = await recv(ws)
        assert m["success"] is False
        assert m["method"] == "frobnicate"
        assert m["req_id"] == 5
        await ws.send(json.dumps([1, 2, 3]))
        assert (await recv(ws))["success"] is False
        await ws.send(json.dumps({"method": "subscribe", "req_id": 6}))
        m = await recv(ws)
        assert m["success"] is False
        assert m["req_id"] == 6
        await ws.send(
            json.dumps(
                {"method": "subscribe", "params": {"channel": "ohlc", "symbol": ["BTC/USD"]}}
            )
        )
        assert (await recv(ws))["success"] is False
        await ws.send(b"\xff\xfe binary garbage")
        assert (await recv(ws))["success"] is False
        await ws.send("[" * 5000 + "]" * 5000)
        assert (await recv(ws))["success"] is False
        await ws.send(json.dumps({"method": "ping", "req_id": 7}))
        assert (await recv(ws))["method"] == "pong"


async def test_ping_pong() -> None:
    async with KrakenSim(cfg()) as sim, connect(sim.url) as ws:
        await recv(ws)
        await ws.send(json.dumps({"method": "ping", "req_id": 101}))
        m = await recv(ws)
        assert set(m) == {"method", "req_id", "time_in", "time_out"}
        assert m["method"] == "pong"
        assert m["req_id"] == 101
        assert ts_us(m["time_in"]) < ts_us(m["time_out"])
        await ws.send(json.dumps({"method": "ping"}))
        m = await recv(ws)
        assert m["method"] == "pong"
        assert "req_id" not in m
        # websocket-level ping frames are answered by the server too
        waiter = await ws.ping()
        async with asyncio.timeout(2):
            await waiter


@pytest.mark.looptime
async def test_heartbeat_only_while_subscribed_and_idle() -> None:
    async with KrakenSim(cfg(symbols=("BTC/USD",))) as sim, connect(sim.url) as ws:
        await recv(ws)
        # no subscription: no heartbeat
        assert await collect(ws, 3.0) == []
        # instrument subscription, no data flowing: ~1 Hz heartbeats
        await ws.send(sub("instrument"))
        frames = await collect(ws, 5.05)
        hb = [f for f in frames if f == '{"channel":"heartbeat"}']
        assert len(frames) - len(hb) == 2  # ack + instrument snapshot
        assert 4 <= len(hb) <= 5
        # a book subscription keeps data flowing: no heartbeats any more
        await ws.send(sub("book", ["BTC/USD"]))
        frames = await collect(ws, 3.0)
        assert len(frames) > 50
        assert '{"channel":"heartbeat"}' not in frames
        # unsubscribe everything: heartbeats stop
        await ws.send(sub("book", ["BTC/USD"], method="unsubscribe"))
        await ws.send(sub("instrument", method="unsubscribe"))
        await recv_until(ws, lambda m: is_ack(m, "instrument"))
        assert '{"channel":"heartbeat"}' not in await collect(ws, 3.0)


@pytest.mark.looptime
async def test_heartbeat_interval_measured_in_loop_time() -> None:
    loop = asyncio.get_running_loop()
    async with KrakenSim(cfg(symbols=("BTC/USD",))) as sim, connect(sim.url) as ws:
        await recv(ws)
        await ws.send(sub("instrument"))
        await recv(ws)
        await recv(ws)
        times = []
        for _ in range(4):
            m = await recv(ws, limit_s=5)
            assert m == {"channel": "heartbeat"}
            times.append(loop.time())
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert all(0.95 <= g <= 1.1 for g in gaps), gaps


@pytest.mark.looptime
async def test_idle_timeout_closes_unless_client_pings() -> None:
    async with KrakenSim(cfg(symbols=("BTC/USD",), tick_rate_hz=5.0)) as sim:
        loop = asyncio.get_running_loop()
        async with connect(sim.url) as ws:
            await recv(ws)
            t0 = loop.time()
            exc = await closed(ws, limit_s=120.0)
            assert 59.0 <= loop.time() - t0 <= 61.5
            assert exc.rcvd is not None
            assert exc.rcvd.code == 1001
        async with connect(sim.url) as ws:
            await recv(ws)
            for i in range(10):  # 150 s of pings every 15 s
                await asyncio.sleep(15)
                await ws.send(json.dumps({"method": "ping", "req_id": i}))
                m, _ = await recv_until(ws, lambda m: m.get("method") == "pong")
                assert m["req_id"] == i


async def test_idle_timeout_can_be_disabled() -> None:
    async with KrakenSim(cfg(idle_timeout_s=None)) as sim, connect(sim.url) as ws:
        await recv(ws)
        await asyncio.sleep(0.3)
        await ws.send(json.dumps({"method": "ping"}))
        assert (await recv(ws))["method"] == "pong"


NUM = re.compile(
    r'"(price|qty|bid|ask|bid_qty|ask_qty|last|volume|vwap|low|high|change)":([^,}\]]+)'
)


def _check_numbers(raw: str, pp: int, qp: int) -> int:
    n = 0
    for key, text in NUM.findall(raw):
        assert "e" not in text.lower(), raw
        assert not text.startswith('"'), raw
        want = qp if key in ("qty", "bid_qty", "ask_qty", "volume") else pp
        assert "." in text, (key, text)
        assert len(text.split(".")[1]) == want, (key, text)
        n += 1
    return n


async def test_numbers_printed_at_exact_precision() -> None:
    async with (
        KrakenSim(cfg(symbols=("BTC/USD", "ALGO/USD", "MATIC/USD"))) as sim,
        connect(sim.url) as ws,
    ):
        await recv(ws)
        syms = ["BTC/USD", "ALGO/USD", "MATIC/USD"]
        await ws.send(sub("book", syms, depth=10))
        await ws.send(sub("trade", syms, snapshot=True))
        await ws.send(sub("ticker", syms))
        frames = await collect(ws, 1.5)
        checked = 0
        zeros = 0
        trailing = 0
        for raw in frames:
            m = json.loads(raw)
            if m.get("channel") not in ("book", "trade", "ticker") or not m["data"]:
                continue
            pp, qp = PREC[m["data"][0]["symbol"]]
            checked += _check_numbers(raw, pp, qp)
            zeros += raw.count('"qty":0.00000000')
            trailing += len(re.findall(r'"qty":\d+\.\d*0[,}]', raw))
        assert checked > 500
        assert zeros > 0  # removals printed as 0.00000000
        assert trailing > 0  # trailing zeros are kept


async def _check_feed(url: str, symbols: list[str], depth: int, seconds: float) -> int:
    """Subscribe one depth on its own connection; verify every checksum and timestamp."""
    async with connect(url) as ws:
        await recv(ws)
        await ws.send(sub("book", symbols, depth=depth))
        books: dict[str, RefBook] = {}
        last_ts: dict[str, int] = {}
        ack_ts: dict[str, int] = {}
        checked = 0
        loop = asyncio.get_running_loop()
        end = loop.time() + seconds
        while loop.time() < end:
            m = await recv(ws)
            if is_ack(m):
                ack_ts[m["result"]["symbol"]] = ts_us(m["time_out"])
                continue
            if m.get("channel") != "book":
                continue
            d = m["data"][0]
            sym = d["symbol"]
            pp, qp = PREC[sym]
            ts = ts_us(d["timestamp"])
            if m["type"] == "snapshot":
                assert sym not in books
                assert ts < ack_ts[sym]
                books[sym] = RefBook(depth, pp, qp)
                books[sym].load(d)
                assert len(d["bids"]) == depth
                assert len(d["asks"]) == depth
            else:
                assert ts > last_ts[sym]
                assert ts > ack_ts[sym]
                books[sym].apply(d)
                assert len(books[sym].bids) == depth
                assert len(books[sym].asks) == depth
                checked += 1
            last_ts[sym] = ts
            assert books[sym].checksum() == d["checksum"]
        assert set(books) == set(symbols)
        return checked


async def test_book_snapshot_and_updates_checksums_self_consistent() -> None:
    """Rebuild each feed with a Decimal reference book; every checksum must match."""
    async with KrakenSim(cfg(symbols=("BTC/USD", "MATIC/USD"))) as sim:
        counts = await asyncio.gather(
            _check_feed(sim.url, ["BTC/USD", "MATIC/USD"], 10, 2.0),
            _check_feed(sim.url, ["BTC/USD"], 25, 2.0),
            _check_feed(sim.url, ["MATIC/USD"], 1000, 2.0),
        )
        assert all(c > 50 for c in counts), counts
