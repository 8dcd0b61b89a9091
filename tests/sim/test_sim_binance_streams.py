"""Binance stream wire protocol (protocols.md §3.1, §3.5, §3.6, §3.8), plain websockets client."""

from __future__ import annotations

import asyncio
import itertools
import json
import re
from typing import Any

import pytest
from simkit import collect, loads, recv, recv_until
from test_sim_binance_kit import WIRE_NUM, RefBook, cfg, http_get
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from gapless.sim.binance import BinancePair, BinanceSim

NUM = re.compile(WIRE_NUM)


async def _events(ws: ClientConnection, seconds: float) -> list[Any]:
    return [loads(f) for f in await collect(ws, seconds)]


async def _control(ws: ClientConnection, msg: dict[str, Any] | str) -> Any:
    """Send a control message; return the first reply (a frame with ``id``)."""
    await ws.send(msg if isinstance(msg, str) else json.dumps(msg))
    reply, _ = await recv_until(ws, lambda m: isinstance(m, dict) and "id" in m)
    return reply


@pytest.mark.looptime
async def test_raw_trade_stream_in_url() -> None:
    async with (
        BinanceSim(cfg()) as sim,
        connect(sim.ws_url + "/ws/btcusdt@trade", ping_interval=None) as ws,
    ):
        events = await _events(ws, 3.0)
        assert len(events) > 10
        for e in events:
            assert list(e) == ["e", "E", "s", "t", "p", "q", "T", "m", "M"]
            assert e["e"] == "trade"
            assert e["s"] == "BTCUSDT"
            assert NUM.match(e["p"])
            assert NUM.match(e["q"])
            assert isinstance(e["m"], bool)
            assert e["M"] is True
        ids = [e["t"] for e in events]
        assert ids == list(range(ids[0], ids[0] + len(ids)))  # consecutive trade ids
        truth = {r["trade_id"]: r for r in sim.truth if r["k"] == "trade"}
        for e in events:
            r = truth[e["t"]]
            assert (r["symbol"], r["price"], r["qty"]) == ("BTCUSDT", e["p"], e["q"])
            assert r["ts_ns"] == e["E"] * 1_000_000
            assert e["m"] == (r["side"] == "sell")


@pytest.mark.looptime
async def test_combined_stream_envelopes() -> None:
    url = "/stream?streams=btcusdt@depth@100ms/ethusdt@trade/btcusdt@bookTicker/ethusdt@depth"
    async with BinanceSim(cfg()) as sim, connect(sim.ws_url + url, ping_interval=None) as ws:
        events = await _events(ws, 2.5)
        seen = set()
        for m in events:
            assert list(m) == ["stream", "data"]
            stream, data = m["stream"], m["data"]
            seen.add(stream)
            if stream.endswith("@bookTicker"):
                assert list(data) == ["u", "s", "b", "B", "a", "A"]
                assert data["s"] == "BTCUSDT"
                assert all(NUM.match(data[k]) for k in "bBaA")
            elif "@depth" in stream:
                assert list(data) == ["e", "E", "s", "U", "u", "b", "a"]
                assert data["e"] == "depthUpdate"
                assert data["s"] == stream.split("@")[0].upper()
                for p, q in data["b"] + data["a"]:
                    assert NUM.match(p)
                    assert NUM.match(q)
            else:
                assert data["e"] == "trade"
                assert data["s"] == "ETHUSDT"
        assert seen == {
            "btcusdt@depth@100ms",
            "ethusdt@trade",
            "btcusdt@bookTicker",
            "ethusdt@depth",
        }


@pytest.mark.looptime
async def test_subscribe_unsubscribe_and_list() -> None:
    async with BinanceSim(cfg()) as sim, connect(sim.ws_url + "/ws", ping_interval=None) as ws:
        assert await _events(ws, 0.5) == []  # no welcome frame, no data without streams
        await ws.send(json.dumps({"method": "SUBSCRIBE", "params": ["btcusdt@trade"], "id": 1}))
        assert await ws.recv() == '{"result":null,"id":1}'  # the ack comes before the data
        first = await recv(ws)
        assert first["e"] == "trade"
        assert first["s"] == "BTCUSDT"
        reply = await _control(
            ws,
            {
                "method": "SUBSCRIBE",
                "params": ["ethusdt@depth@100ms", "btcusdt@trade"],  # re-subscribing is fine
                "id": "req-2",
            },
        )
        assert reply == {"result": None, "id": "req-2"}
        await asyncio.sleep(1.0)  # stay under 5 messages per second
        reply = await _control(ws, {"method": "LIST_SUBSCRIPTIONS", "id": 3})
        assert reply == {"result": ["btcusdt@trade", "ethusdt@depth@100ms"], "id": 3}
        await ws.send(json.dumps({"method": "UNSUBSCRIBE", "params": ["btcusdt@trade"], "id": 4}))
        _, before = await recv_until(ws, lambda m: m.get("id") == 4)
        after = await _events(ws, 1.5)
        assert after
        assert all(m.get("e") == "depthUpdate" and m["s"] == "ETHUSDT" for m in after)
        assert all(m.get("e") in ("trade", "depthUpdate") for m in before)
        await asyncio.sleep(1.0)
        reply = await _control(ws, {"method": "LIST_SUBSCRIPTIONS", "id": None})
        assert reply == {"result": ["ethusdt@depth@100ms"], "id": None}
        reply = await _control(ws, {"method": "UNSUBSCRIBE", "params": ["ethusdt@trade"], "id": 5})
        assert reply == {"result": None, "id": 5}  # not subscribed: still a success


async def test_control_errors_are_nested_and_keep_the_connection() -> None:
    async with (
        BinanceSim(cfg(max_inbound_per_s=None)) as sim,
        connect(sim.ws_url + "/ws", ping_interval=None) as ws,
    ):
        r = await _control(ws, '{"method": "SUBSCRIBE", "params": [')
        assert r["id"] is None
        assert r["error"]["code"] == 3
        assert r["error"]["msg"].startswith("Invalid JSON:")
        assert list(r) == ["error", "id"]
        r = await _control(ws, {"method": "PING", "id": 9})
        assert r["id"] == 9
        assert r["error"]["code"] == 2
        assert r["error"]["msg"].startswith("Invalid request: unknown variant `PING`")
        r = await _control(ws, {"params": [], "id": 10})
        assert r == {
            "error": {"code": 2, "msg": r["error"]["msg"]},
            "id": 10,
        }
        assert r["error"]["msg"].startswith("Invalid request: missing field `method`")
        r = await _control(ws, {"method": "SUBSCRIBE", "params": ["btcusdt@kline_1m"], "id": 11})
        assert r == {"error": {"code": 2, "msg": "Invalid request: invalid stream"}, "id": 11}
        r = await _control(ws, {"method": "SUBSCRIBE", "params": ["BTCUSDT@trade"], "id": 12})
        assert r["error"]["code"] == 2  # symbols are lower case (§3.1)
        r = await _control(ws, {"method": "SUBSCRIBE", "params": "btcusdt@trade", "id": 13})
        assert r["error"]["code"] == 2
        for bad_id in (1.5, "x" * 37, "no spaces", 2**63, True):
            r = await _control(ws, {"method": "LIST_SUBSCRIPTIONS", "id": bad_id})
            assert r["error"]["code"] == 2
            assert r["id"] is None
        for good_id in (-(2**63), "a" * 36, "3f2b-11"):
            r = await _control(ws, {"method": "LIST_SUBSCRIPTIONS", "id": good_id})
            assert r == {"result": [], "id": good_id}
        r = await _control(ws, {"method": "SET_PROPERTY", "params": ["speed", True], "id": 14})
        assert r == {"error": {"code": 0, "msg": "Unknown property"}, "id": 14}
        r = await _control(ws, {"method": "SET_PROPERTY", "params": ["combined", 1], "id": 15})
        assert r == {"error": {"code": 1, "msg": "Invalid value type: expected Boolean"}, "id": 15}
        r = await _control(ws, {"method": "GET_PROPERTY", "params": [7], "id": 16})
        assert r == {
            "error": {"code": 2, "msg": "Invalid request: property name must be a string"},
            "id": 16,
        }
        r = await _control(ws, {"method": "LIST_SUBSCRIPTIONS", "id": 17})
        assert r == {"result": [], "id": 17}  # errors never closed the connection


@pytest.mark.looptime
async def test_combined_property_switches_the_wrapper() -> None:
    async with (
        BinanceSim(cfg()) as sim,
        connect(sim.ws_url + "/ws/btcusdt@bookTicker", ping_interval=None) as ws,
    ):
        m = await recv(ws)
        assert m["s"] == "BTCUSDT"  # raw
        r = await _control(ws, {"method": "GET_PROPERTY", "params": ["combined"], "id": 1})
        assert r == {"result": False, "id": 1}
        r = await _control(ws, {"method": "SET_PROPERTY", "params": ["combined", True], "id": 2})
        assert r == {"result": None, "id": 2}
        m = await recv(ws)
        assert m["stream"] == "btcusdt@bookTicker"
        assert m["data"]["s"] == "BTCUSDT"
        await asyncio.sleep(1.0)
        r = await _control(ws, {"method": "GET_PROPERTY", "params": ["combined"], "id": 3})
        assert r == {"result": True, "id": 3}


@pytest.mark.looptime
async def test_at_most_1024_streams_per_connection() -> None:
    # 256 symbols x 4 stream types = exactly 1024 distinct streams, plus one more symbol
    pairs = tuple(
        BinancePair(f"S{i}USDT", f"S{i}", "USDT", "100.00", 2, 3, "0.001") for i in range(257)
    )
    names = [f"s{i}usdt@{k}" for i in range(257) for k in ("depth", "depth@100ms", "trade")]
    names += [f"s{i}usdt@bookTicker" for i in range(257)]
    config = cfg(
        pairs=pairs,
        symbols=tuple(p.symbol for p in pairs),
        tick_rate_hz=0.2,
        book_levels=20,
        min_levels=10,
    )
    async with BinanceSim(config) as sim, connect(sim.ws_url + "/ws", ping_interval=None) as ws:
        assert sim.config.max_streams == 1024
        r = await _control(ws, {"method": "SUBSCRIBE", "params": names[:1000], "id": 1})
        assert r == {"result": None, "id": 1}
        r = await _control(ws, {"method": "SUBSCRIBE", "params": names[1000:1025], "id": 2})
        assert r == {"error": {"code": 2, "msg": "Invalid request: too many parameters"}, "id": 2}
        r = await _control(ws, {"method": "SUBSCRIBE", "params": names[1000:1024], "id": 3})
        assert r == {"result": None, "id": 3}  # the refused request added nothing
        await asyncio.sleep(1.0)
        r = await _control(ws, {"method": "LIST_SUBSCRIPTIONS", "id": 4})
        assert len(r["result"]) == 1024
        r = await _control(ws, {"method": "SUBSCRIBE", "params": names[1024:1025], "id": 5})
        assert r["error"]["code"] == 2
        r = await _control(ws, {"method": "SUBSCRIBE", "params": names[:3], "id": 6})
        assert r == {"result": None, "id": 6}  # already active: not new streams


async def test_bad_paths_and_stream_names_are_refused() -> None:
    async with BinanceSim(cfg(max_streams=2)) as sim:
        for path, status in (
            ("/v2", 404),
            ("/ws/btcusdt@depth@250ms", 400),
            ("/ws/BTCUSDT@trade", 400),
            ("/stream?streams=btcusdt@trade/xrpusdt@trade", 400),
            ("/stream?streams=btcusdt@trade/ethusdt@trade/btcusdt@depth", 400),  # > max_streams
        ):
            with pytest.raises(InvalidStatus) as ei:
                async with connect(sim.ws_url + path):
                    pass
            assert ei.value.response.status_code == status
        assert [r["status"] for r in sim.truth if r["k"] == "refused"] == [404] + [400] * 4
        async with connect(sim.ws_url + "/ws/btcusdt@trade/ethusdt@trade") as ws:  # 2: fine
            assert (await recv(ws))["e"] == "trade"


def _continuous(events: list[dict[str, Any]]) -> None:
    for prev, cur in itertools.pairwise(events):
        assert cur["U"] == prev["u"] + 1
        assert cur["U"] <= cur["u"]
        assert cur["E"] >= prev["E"]


@pytest.mark.looptime
async def test_depth_streams_are_continuous_and_match_truth() -> None:
    url = "/stream?streams=btcusdt@depth@100ms/btcusdt@depth"
    async with BinanceSim(cfg()) as sim, connect(sim.ws_url + url, ping_interval=None) as ws:
        frames = await _events(ws, 5.05)
        fast = [m["data"] for m in frames if m["stream"] == "btcusdt@depth@100ms"]
        slow = [m["data"] for m in frames if m["stream"] == "btcusdt@depth"]
        assert 45 <= len(fast) <= 51  # one event per 100 ms (50 ticks/s: never empty)
        assert 4 <= len(slow) <= 6
        _continuous(fast)
        _continuous(slow)
        # both speeds carry the same update ids, aggregated differently
        assert slow[0]["U"] >= fast[0]["U"]
        fast_ids = {e["u"] for e in fast}
        assert all(e["u"] in fast_ids for e in slow)  # 1000 ms boundaries are 100 ms ones
        for speed, events in (("100ms", fast), ("1000ms", slow)):
            truth = [
                (r["U"], r["u"], r["ts_ns"])
                for r in sim.truth
                if r["k"] == "book" and r["speed"] == speed and r["U"] >= events[0]["U"]
            ]
            got = [(e["U"], e["u"], e["E"] * 1_000_000) for e in events]
            assert truth[: len(got)] == got
        levels = [lv for e in fast for lv in e["b"] + e["a"]]
        assert any(q == "0.00000000" for _, q in levels)  # removals are sent as qty 0
        for e in fast:
            bids = [float(p) for p, _ in e["b"]]
            asks = [float(p) for p, _ in e["a"]]
            assert bids == sorted(bids, reverse=True)
            assert asks == sorted(asks)


@pytest.mark.looptime
async def test_book_ticker_follows_update_ids() -> None:
    async with (
        BinanceSim(cfg()) as sim,
        connect(sim.ws_url + "/ws/ethusdt@bookTicker", ping_interval=None) as ws,
    ):
        events = await _events(ws, 2.0)
        us = [e["u"] for e in events]
        assert us == sorted(set(us))
        truth = [r["u"] for r in sim.truth if r["k"] == "book_ticker" and r["symbol"] == "ETHUSDT"]
        assert us == [u for u in truth if us[0] <= u <= us[-1]]
        for e in events:
            assert float(e["b"]) < float(e["a"])


@pytest.mark.looptime
@pytest.mark.parametrize("stream", ["btcusdt@depth@100ms", "btcusdt@depth"])
async def test_snapshot_and_stream_rebuild_the_final_book(stream: str) -> None:
    """protocols.md §3.8 with the REST snapshot, compared with the simulator's final book."""
    async with (
        BinanceSim(cfg()) as sim,
        connect(sim.ws_url + "/ws/" + stream, ping_interval=None) as ws,
    ):
        book = RefBook()
        first = await recv(ws, 3.0)
        book.feed(first)
        snap = (await http_get(sim, "/api/v3/depth?symbol=BTCUSDT&limit=5000")).json()
        assert snap["lastUpdateId"] >= first["U"]
        for e in await _events(ws, 0.05):
            book.feed(e)
        assert book.load(snap)
        for e in await _events(ws, 3.0):
            book.apply(e)
        await sim.quiesce()  # sends the last partial interval, then freezes
        for e in await _events(ws, 0.5):
            book.apply(e)
        final = sim.final_books()["BTCUSDT"]
        assert book.book_id == final["last_update_id"] == sim.update_id("BTCUSDT")
        bids, asks = book.as_text()
        assert bids == final["bids"]
        assert asks == final["asks"]
        assert len(bids) > 1000
        (rec,) = [r for r in sim.truth if r["k"] == "final_book" and r["symbol"] == "BTCUSDT"]
        assert rec["last_update_id"] == final["last_update_id"]
        assert rec["bids"] == [list(lv) for lv in bids]
        assert rec["asks"] == [list(lv) for lv in asks]
        snaps = [r for r in sim.truth if r["k"] == "snapshot"]
        assert snaps == [
            {
                "k": "snapshot",
                "venue": "binance",
                "symbol": "BTCUSDT",
                "last_update_id": snap["lastUpdateId"],
                "stale": False,
                "limit": 5000,
                "ts_ns": snaps[0]["ts_ns"],
            }
        ]


@pytest.mark.looptime
async def test_snapshot_inside_an_event_range() -> None:
    """lastUpdateId is the last applied update, so it may fall inside the next event's [U, u]."""
    async with (
        BinanceSim(cfg()) as sim,
        connect(sim.ws_url + "/ws/btcusdt@depth", ping_interval=None) as ws,
    ):
        first = await recv(ws, 3.0)
        await asyncio.sleep(0.5)  # half-way through the next 1000 ms interval
        snap = (await http_get(sim, "/api/v3/depth?symbol=BTCUSDT&limit=10")).json()
        nxt = await recv(ws, 3.0)
        assert nxt["U"] == first["u"] + 1
        assert nxt["U"] < snap["lastUpdateId"] < nxt["u"]
        assert len(snap["bids"]) == len(snap["asks"]) == 10
