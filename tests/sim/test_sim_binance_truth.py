"""Ground truth of the Binance simulator: record shapes, JSONL mirror, continuity, determinism."""

from __future__ import annotations

import asyncio
import itertools
import json
from pathlib import Path
from typing import Any

import pytest
from simkit import closed, collect
from test_sim_binance_kit import cfg, http_get
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from gapless.sim import Fault
from gapless.sim.binance import BinanceSim

SHAPES: dict[str, set[str]] = {
    "meta": {"k", "venue", "seed", "symbols", "precisions", "start_update_ids"},
    "book": {"k", "venue", "symbol", "speed", "ts_ns", "U", "u"},
    "trade": {"k", "venue", "symbol", "ts_ns", "trade_id", "price", "qty", "side"},
    "book_ticker": {"k", "venue", "symbol", "u", "ts_ns"},
    "snapshot": {"k", "venue", "symbol", "last_update_id", "stale", "limit", "ts_ns"},
    "conn_open": {"k", "venue", "conn", "ts_ns", "path"},
    "conn_close": {"k", "venue", "conn", "ts_ns", "how"},
    "server_shutdown": {"k", "venue", "conn", "ts_ns"},
    "refused": {"k", "venue", "status", "ts_ns"},
    "rest_limited": {"k", "venue", "status", "path", "retry_after_s", "cause", "ts_ns"},
    "violation": {"k", "venue", "rule", "ts_ns"},
    "fault": {"k", "venue", "kind", "ts_ns", "params"},
    "final_book": {"k", "venue", "symbol", "last_update_id", "ts_ns", "bids", "asks"},
}


@pytest.mark.looptime
async def test_record_shapes_and_jsonl_mirror(tmp_path: Path) -> None:
    path = tmp_path / "truth.jsonl"
    config = cfg(truth_path=path, max_inbound_per_s=2, connect_limit=3, rest_weight_limit=10)
    async with BinanceSim(config) as sim:
        async with connect(sim.ws_url + "/stream?streams=btcusdt@trade") as ws:
            await collect(ws, 1.0)
            await sim.inject(Fault.make("server_shutdown", delay_s=0.2))
            await closed(ws)
        async with connect(sim.ws_url + "/ws") as ws:
            for _ in range(3):
                await ws.pong(b"")
            await closed(ws)
        for _ in range(3):
            await http_get(sim, "/api/v3/depth?symbol=ETHUSDT&limit=5")
        await sim.inject(Fault.make("depth_gap", symbol="ETHUSDT", speed="1000ms"))
        await asyncio.sleep(1.5)
        async with connect(sim.ws_url + "/ws"):  # third attempt: allowed
            pass
        with pytest.raises(InvalidStatus):  # fourth: over connect_limit
            async with connect(sim.ws_url + "/ws"):
                pass
        await sim.quiesce()
    records = sim.truth
    kinds = {r["k"] for r in records}
    assert kinds == set(SHAPES)
    for r in records:
        want = set(SHAPES[r["k"]])
        if r["k"] == "violation" and r["rule"] in ("inbound_rate", "pong_timeout"):
            want.add("conn")
        if r["k"] == "book" and "skipped" in r:
            want.add("skipped")
            assert r["skipped"] is True
        assert set(r) == want, r
        assert r["venue"] == "binance"
    lines = path.read_text().splitlines()
    assert [json.loads(line) for line in lines] == json.loads(json.dumps(records))
    meta = records[0]
    assert meta["k"] == "meta"
    assert meta["seed"] == 7
    assert meta["symbols"] == ["BTCUSDT", "ETHUSDT"]
    assert meta["precisions"]["BTCUSDT"] == {"price": 2, "qty": 5, "wire": 8}
    rules = sorted(r["rule"] for r in records if r["k"] == "violation")
    assert rules == ["connect_rate", "inbound_rate", "rest_weight"]
    assert any(r["k"] == "book" and r.get("skipped") for r in records)


@pytest.mark.looptime
async def test_book_records_cover_every_update_exactly_once_per_speed() -> None:
    async with BinanceSim(cfg(symbols=("BTCUSDT", "ETHUSDT", "BNBUSDT"))) as sim:
        await asyncio.sleep(3.35)
        await sim.inject(Fault.make("burst", duration_s=0.5, factor=4.0))
        await asyncio.sleep(1.0)
        await sim.quiesce()
        start = sim.truth[0]["start_update_ids"]
        for sym in sim.symbols:
            final = sim.final_books()[sym]["last_update_id"]
            for speed in ("100ms", "1000ms"):
                recs = [
                    r
                    for r in sim.truth
                    if r["k"] == "book" and r["symbol"] == sym and r["speed"] == speed
                ]
                assert recs[0]["U"] == start[sym] + 1
                for a, b in itertools.pairwise(recs):
                    assert b["U"] == a["u"] + 1
                    assert b["ts_ns"] >= a["ts_ns"]
                assert recs[-1]["u"] == final  # quiesce published the last partial interval
            final_rec = next(r for r in sim.truth if r["k"] == "final_book" and r["symbol"] == sym)
            assert final_rec["last_update_id"] == final
        tickers = [
            r["u"] for r in sim.truth if r["k"] == "book_ticker" and r["symbol"] == "BNBUSDT"
        ]
        assert tickers == sorted(set(tickers))
        trades = [
            r["trade_id"] for r in sim.truth if r["k"] == "trade" and r["symbol"] == "BNBUSDT"
        ]
        assert trades == list(range(trades[0], trades[0] + len(trades)))
        assert sim.stats["updates"] == sum(
            sim.final_books()[s]["last_update_id"] - start[s] for s in sim.symbols
        )


async def _market_history(seed: int, clients: bool) -> list[Any]:
    config = cfg(seed=seed)
    async with BinanceSim(config) as sim:
        if clients:
            async with connect(sim.ws_url + "/stream?streams=btcusdt@depth/ethusdt@trade") as ws:
                await collect(ws, 1.0)
                await http_get(sim, "/api/v3/depth?symbol=BTCUSDT&limit=1000")
        else:
            await asyncio.sleep(1.0)
        await sim.quiesce()
        final = sim.final_books()
    trades = [
        (r["symbol"], r["trade_id"], r["price"], r["qty"], r["side"])
        for r in sim.truth
        if r["k"] == "trade"
    ]
    tickers = [(r["symbol"], r["u"]) for r in sim.truth if r["k"] == "book_ticker"]
    return [trades, tickers, final, sim.truth[0]]


@pytest.mark.looptime
async def test_the_market_depends_only_on_the_seed() -> None:
    a = await _market_history(5, clients=False)
    b = await _market_history(5, clients=True)
    c = await _market_history(6, clients=False)
    n = min(len(a[0]), len(b[0]))
    assert n > 20
    assert a[0][:n] == b[0][:n]
    m = min(len(a[1]), len(b[1]))
    assert a[1][:m] == b[1][:m]
    assert a[3] == b[3]
    assert a[0][:n] != c[0][:n]
    assert a[3]["start_update_ids"] != c[3]["start_update_ids"]


@pytest.mark.looptime
async def test_stats_count_what_happened() -> None:
    async with BinanceSim(cfg(tick_rate_hz=20.0)) as sim:
        async with connect(sim.ws_url + "/ws/btcusdt@trade/btcusdt@bookTicker") as ws:
            frames = await collect(ws, 0.5)
            await ws.send(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": 1}))
            await ws.ping()
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.05)
        s = sim.stats
        assert s["connections"] == 1
        assert s["open_connections"] == 0
        assert s["frames_sent"] >= len(frames) > 0
        assert s["client_messages"] == 1
        assert s["client_frames"] == 2  # the message and the ping
        assert s["ticks"] >= s["updates"] > 0
        assert s["trades"] == len([r for r in sim.truth if r["k"] == "trade"])
