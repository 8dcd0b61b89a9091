"""Ground-truth log, the ordering guarantee, trades/ticker, quiesce and final books."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from simkit import RefBook, collect, is_ack, loads, recv, recv_until, sub, ts_us
from websockets.asyncio.client import connect

from gapless.sim import KrakenSim, SimConfig

SYMS = ("BTC/USD", "ETH/USD")


def cfg(**kw: Any) -> SimConfig:
    base: dict[str, Any] = {"seed": 7, "symbols": SYMS}
    base.update(kw)
    return SimConfig(**base)


async def test_truth_file_matches_memory_and_meta_first(tmp_path: Path) -> None:
    path = tmp_path / "truth" / "run.jsonl"
    async with KrakenSim(cfg(truth_path=path)) as sim:
        async with connect(sim.url) as ws:
            await recv(ws)
            await ws.send(sub("book", ["BTC/USD"]))
            await collect(ws, 0.3)
        await sim.quiesce()
    records = list(sim.truth)
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert lines == records
    assert records[0] == {
        "k": "meta",
        "venue": "kraken",
        "seed": 7,
        "symbols": ["BTC/USD", "ETH/USD"],
        "precisions": {"BTC/USD": [1, 8], "ETH/USD": [2, 8]},
    }
    kinds = {r["k"] for r in records}
    assert {
        "trade",
        "book",
        "ticker",
        "snapshot",
        "ack",
        "conn_open",
        "conn_close",
        "final_book",
    } <= kinds
    shapes = {
        "trade": {"k", "symbol", "ts_ns", "trade_id", "price", "qty", "side"},
        "book": {"k", "symbol", "depth", "ts_ns", "checksum"},
        "ticker": {"k", "symbol", "ts_ns"},
        "snapshot": {"k", "conn", "symbol", "depth", "ts_ns", "checksum"},
        "ack": {"k", "conn", "channel", "symbol", "depth", "ts_ns"},
        "conn_open": {"k", "conn", "ts_ns"},
        "conn_close": {"k", "conn", "ts_ns", "how"},
        "final_book": {"k", "symbol", "depth", "ts_ns", "checksum", "bids", "asks"},
    }
    for r in records:
        if r["k"] in shapes:
            assert set(r) == shapes[r["k"]], r
        if "ts_ns" in r:
            assert r["ts_ns"] % 1000 == 0
    closes = [r for r in records if r["k"] == "conn_close"]
    assert [c["how"] for c in closes] == ["client"]
    opens = [r for r in records if r["k"] == "conn_open"]
    assert opens[0]["conn"] == closes[0]["conn"]


async def test_trades_consecutive_and_published_without_clients() -> None:
    async with KrakenSim(cfg()) as sim:
        await asyncio.sleep(1.0)
        for sym in SYMS:
            ids = [r["trade_id"] for r in sim.truth if r["k"] == "trade" and r["symbol"] == sym]
            assert len(ids) > 5
            assert ids == list(range(ids[0], ids[0] + len(ids)))
        # no feed was ever subscribed: no book records
        assert not [r for r in sim.truth if r["k"] == "book"]
        assert [r for r in sim.truth if r["k"] == "ticker"]


async def test_trade_snapshot_and_ordering_guarantee_for_trades_and_ticker() -> None:
    async with KrakenSim(cfg(tick_rate_hz=200.0)) as sim:
        await asyncio.sleep(1.0)  # let more than 50 trades happen
        async with connect(sim.url) as ws:
            await recv(ws)
            await ws.send(sub("trade", ["BTC/USD"], snapshot=True))
            ack, _ = await recv_until(ws, is_ack)
            snap = await recv(ws)
            assert snap["channel"] == "trade"
            assert snap["type"] == "snapshot"
            await ws.send(sub("ticker", ["BTC/USD"]))
            tack, _ = await recv_until(ws, lambda m: is_ack(m, "ticker"))
            frames = [loads(f) for f in await collect(ws, 1.0)]
        t_ack = ts_us(ack["time_out"]) * 1000
        t_tack = ts_us(tack["time_out"]) * 1000
        trades = [t for f in frames if f.get("channel") == "trade" for t in f["data"]]
        tickers = [f for f in frames if f.get("channel") == "ticker" and f["type"] == "update"]
    snap_ids = [t["trade_id"] for t in snap["data"]]
    assert len(snap_ids) == 50
    ids = snap_ids + [t["trade_id"] for t in trades]
    assert ids == list(range(ids[0], ids[0] + len(ids)))
    assert all(ts_us(t["timestamp"]) * 1000 <= t_ack for t in snap["data"])
    truth_trades = [r for r in sim.truth if r["k"] == "trade" and r["symbol"] == "BTC/USD"]
    last = ts_us(trades[-1]["timestamp"]) * 1000
    expected = [r["trade_id"] for r in truth_trades if t_ack < r["ts_ns"] <= last]
    assert [t["trade_id"] for t in trades] == expected
    by_id = {r["trade_id"]: r for r in truth_trades}
    for t in trades:
        r = by_id[t["trade_id"]]
        assert r["ts_ns"] == ts_us(t["timestamp"]) * 1000
        assert r["side"] == t["side"]
        assert json.dumps(r["price"]) != ""  # text form
    # ticker: one update per trade tick, exactly the truth records after the ack
    last_t = ts_us(tickers[-1]["data"][0]["timestamp"]) * 1000
    truth_tickers = [
        r["ts_ns"]
        for r in sim.truth
        if r["k"] == "ticker" and r["symbol"] == "BTC/USD" and t_tack < r["ts_ns"] <= last_t
    ]
    assert [ts_us(t["data"][0]["timestamp"]) * 1000 for t in tickers] == truth_tickers


async def test_book_ordering_guarantee_and_unsubscribe() -> None:
    async with KrakenSim(cfg()) as sim, connect(sim.url) as ws:
        await recv(ws)
        await ws.send(sub("book", ["ETH/USD"], depth=25))
        ack, _ = await recv_until(ws, is_ack)
        snap = await recv(ws)
        frames = [loads(f) for f in await collect(ws, 1.0)]
        await ws.send(sub("book", ["ETH/USD"], depth=25, method="unsubscribe", req_id=8))
        uack, before = await recv_until(ws, lambda m: m.get("req_id") == 8)
        assert uack["success"] is True
        assert uack["result"] == {"channel": "book", "depth": 25, "symbol": "ETH/USD"}
        after = await collect(ws, 0.5)
        assert not [f for f in after if '"channel":"book"' in f]
    t_ack = ts_us(ack["time_out"]) * 1000
    t_unsub = ts_us(uack["time_out"]) * 1000
    wire = [m["data"][0] for m in frames + before if m.get("channel") == "book"]
    truth = [
        r
        for r in sim.truth
        if r["k"] == "book"
        and r["symbol"] == "ETH/USD"
        and r["depth"] == 25
        and t_ack < r["ts_ns"] <= t_unsub
    ]
    assert [(ts_us(u["timestamp"]) * 1000, u["checksum"]) for u in wire] == [
        (r["ts_ns"], r["checksum"]) for r in truth
    ]
    snaps = [r for r in sim.truth if r["k"] == "snapshot"]
    assert snaps[0]["ts_ns"] == ts_us(snap["data"][0]["timestamp"]) * 1000
    assert snaps[0]["checksum"] == snap["data"][0]["checksum"]
    # the feed keeps being published after the last subscriber left
    await asyncio.sleep(0)
    assert [r for r in sim.truth if r["k"] == "book" and r["ts_ns"] > t_unsub]


async def test_timestamps_unique_and_increasing() -> None:
    async with KrakenSim(cfg()) as sim:
        async with connect(sim.url) as ws:
            await recv(ws)
            await ws.send(sub("book", ["BTC/USD", "ETH/USD"], depth=10))
            await ws.send(sub("book", ["BTC/USD"], depth=100))
            await collect(ws, 1.0)
        await sim.quiesce()
    seen: dict[int, tuple[Any, ...]] = {}
    for r in sim.truth:
        if r["k"] in ("snapshot", "final_book", "meta"):
            continue  # these repeat the timestamp of the book change they describe
        key = (r["k"], r.get("symbol"))
        if r["ts_ns"] in seen:
            # only the feeds (depths) of one market change share a timestamp
            assert seen[r["ts_ns"]] == key == ("book", r["symbol"]), r
        seen[r["ts_ns"]] = key
    for sym in ("BTC/USD", "ETH/USD"):
        stamps = [
            r["ts_ns"] for r in sim.truth if r["k"] in ("trade", "ticker") and r["symbol"] == sym
        ]
        assert stamps == sorted(stamps)
        assert len(stamps) == len(set(stamps))


async def test_quiesce_final_books_equal_client_books() -> None:
    async with KrakenSim(cfg(heartbeat_interval_s=0.2)) as sim, connect(sim.url) as ws:
        await recv(ws)
        await ws.send(sub("book", ["BTC/USD", "ETH/USD"], depth=10))
        books: dict[str, RefBook] = {}
        loop = asyncio.get_running_loop()
        end = loop.time() + 1.0
        quiesced = False
        heartbeats = 0
        while True:
            if not quiesced and loop.time() > end:
                await sim.quiesce()
                quiesced = True
                end = loop.time() + 0.6
            if quiesced and loop.time() > end:
                break
            try:
                m = await recv(ws, limit_s=0.1)
            except TimeoutError:
                continue
            if m.get("channel") == "heartbeat":
                heartbeats += 1
                continue
            if m.get("channel") != "book":
                continue
            assert not quiesced or ts_us(m["data"][0]["timestamp"]) * 1000 <= max(
                r["ts_ns"] for r in sim.truth if r["k"] == "final_book"
            )
            d = m["data"][0]
            pp = 1 if d["symbol"] == "BTC/USD" else 2
            if m["type"] == "snapshot":
                books[d["symbol"]] = RefBook(10, pp, 8)
                books[d["symbol"]].load(d)
            else:
                books[d["symbol"]].apply(d)
            assert books[d["symbol"]].checksum() == d["checksum"]
        assert heartbeats >= 2  # the server keeps serving after quiesce
        finals = sim.final_books()
        assert set(finals) == {("BTC/USD", 10), ("ETH/USD", 10)}
        for sym, book in books.items():
            bids, asks = book.as_text()
            assert finals[(sym, 10)]["bids"] == bids
            assert finals[(sym, 10)]["asks"] == asks
            assert finals[(sym, 10)]["checksum"] == book.checksum()
        records = [r for r in sim.truth if r["k"] == "final_book"]
        assert {(r["symbol"], r["depth"]) for r in records} == set(finals)
        for r in records:
            f = finals[(r["symbol"], r["depth"])]
            assert r["bids"] == [list(x) for x in f["bids"]]
            assert r["checksum"] == f["checksum"]
        # a fresh subscription after quiesce gets the frozen book as snapshot
        await ws.send(sub("book", ["BTC/USD"], depth=25))
        snap, _ = await recv_until(ws, lambda m: m.get("type") == "snapshot")
        assert [
            (f"{lv['price']:.1f}", f"{lv['qty']:.8f}") for lv in snap["data"][0]["bids"][:10]
        ] == finals[("BTC/USD", 10)]["bids"]


@pytest.mark.looptime
async def test_stats_counters() -> None:
    async with KrakenSim(cfg(tick_rate_hz=10.0)) as sim:
        async with connect(sim.url) as ws:
            await recv(ws)
            await ws.send(sub("book", ["BTC/USD"]))
            await collect(ws, 2.0)
        await asyncio.sleep(0.1)
        s = sim.stats
        assert s["connections"] == 1
        assert s["open_connections"] == 0
        assert s["frames_sent"] > 10
        assert s["bytes_sent"] > 1000
        assert s["client_messages"] == 1
        assert 38 <= s["ticks"] <= 42  # 2 symbols x 10 Hz x ~2 s
        assert s["trades"] > 0
        assert s["book_updates"] > 0
