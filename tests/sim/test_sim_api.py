"""Public API behaviour: configuration checks, lifecycle, injectable clock, bbo ticker."""

from __future__ import annotations

import asyncio
import itertools

import pytest
from simkit import collect, is_ack, loads, recv, recv_until, sub, ts_us
from websockets.asyncio.client import connect

from gapless.sim import Fault, KrakenSim, PairSpec, Scenario, SimConfig


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="PairSpec"):
        KrakenSim(SimConfig(symbols=("DOGE/USD",)))
    with pytest.raises(ValueError, match="tick_rate_hz"):
        KrakenSim(SimConfig(tick_rate_hz=0))


async def test_not_running_is_an_error() -> None:
    sim = KrakenSim(SimConfig(symbols=("BTC/USD",)))
    with pytest.raises(RuntimeError, match="not running"):
        sim.schedule(Scenario([Fault("abort", 1.0)]))
    with pytest.raises(RuntimeError, match="not running"):
        await sim.inject(Fault("abort"))


async def _fail_inside_sim() -> None:
    async with KrakenSim(SimConfig(symbols=("BTC/USD",))) as sim:
        sim.schedule(Scenario([Fault("abort", 100.0)]))
        async with connect(sim.url) as ws:
            await recv(ws)
            raise KeyError("boom")


async def test_body_exception_propagates_unwrapped_and_everything_stops() -> None:
    before = set(asyncio.all_tasks())
    with pytest.raises(KeyError):
        await _fail_inside_sim()
    await asyncio.sleep(0)
    leftover = {t for t in asyncio.all_tasks() - before if not t.done()}
    assert leftover == set()


async def test_custom_pair_and_frozen_clock() -> None:
    """A user pair and an injected clock that never moves: stamps still strictly increase."""
    pair = PairSpec("FOO/EUR", "12.345", 3, 4, qty_min="1")
    config = SimConfig(
        seed=2, symbols=("FOO/EUR",), pairs=(pair,), clock=lambda: 1_700_000_000_000_000
    )
    async with KrakenSim(config) as sim, connect(sim.url) as ws:
        await recv(ws)
        await ws.send(sub("book", ["FOO/EUR"]))
        ack, _ = await recv_until(ws, is_ack)
        assert ack["time_in"].startswith("2023-11-14T22:13:20.")
        frames = [loads(f) for f in await collect(ws, 0.5)]
    books = [f["data"][0] for f in frames if f.get("channel") == "book"]
    assert len(books) > 5
    stamps = [ts_us(b["timestamp"]) for b in books]
    assert all(b > a for a, b in itertools.pairwise(stamps))
    raw_price = f"{books[0]['bids'][0]['price']}" if books[0]["bids"] else "1.000"
    assert len(raw_price.split(".")[1]) == 3
    assert sim.truth[0]["precisions"] == {"FOO/EUR": [3, 4]}


async def test_bbo_ticker() -> None:
    async with KrakenSim(SimConfig(seed=4, symbols=("ETH/USD",))) as sim, connect(sim.url) as ws:
        await recv(ws)
        await ws.send(sub("ticker", ["ETH/USD"], event_trigger="bbo", req_id=1))
        ack, _ = await recv_until(ws, is_ack)
        assert ack["result"]["event_trigger"] == "bbo"
        frames = [loads(f) for f in await collect(ws, 1.0)]
        await ws.send(sub("ticker", ["ETH/USD"], event_trigger="sometimes", req_id=2))
        err, _ = await recv_until(ws, lambda m: m.get("req_id") == 2)
        assert err["success"] is False
        await ws.send(sub("ticker", ["ETH/USD"], method="unsubscribe", req_id=3))
        uack, _ = await recv_until(ws, lambda m: m.get("req_id") == 3)
        assert uack["result"] == {"channel": "ticker", "event_trigger": "bbo", "symbol": "ETH/USD"}
    updates = [f["data"][0] for f in frames if f.get("type") == "update"]
    assert len(updates) > 5
    pairs = [(u["bid"], u["bid_qty"], u["ask"], u["ask_qty"]) for u in updates]
    assert all(a != b for a, b in itertools.pairwise(pairs))  # only on a top-of-book change
    t_ack = ts_us(ack["time_out"]) * 1000
    last = ts_us(updates[-1]["timestamp"]) * 1000
    truth = [r["ts_ns"] for r in sim.truth if r["k"] == "ticker_bbo" and t_ack < r["ts_ns"] <= last]
    assert [ts_us(u["timestamp"]) * 1000 for u in updates] == truth


async def test_quiesce_twice_writes_final_books_once() -> None:
    async with KrakenSim(SimConfig(seed=4, symbols=("ETH/USD",))) as sim:
        async with connect(sim.url) as ws:
            await recv(ws)
            await ws.send(sub("book", ["ETH/USD"], depth=100))
            await recv_until(ws, lambda m: m.get("type") == "snapshot")
        await sim.quiesce()
        ticks = sim.stats["ticks"]
        await sim.quiesce()
        await asyncio.sleep(0.2)
        assert sim.stats["ticks"] == ticks
    finals = [r for r in sim.truth if r["k"] == "final_book"]
    assert len(finals) == 1
    assert finals[0]["depth"] == 100
    assert len(finals[0]["bids"]) == 100


async def test_port_in_use_raises_oserror() -> None:
    async with KrakenSim(SimConfig(symbols=("BTC/USD",))) as sim:
        with pytest.raises(OSError, match=r"(?i)address.*in use"):
            await _start_on(sim.port)


async def _start_on(port: int) -> None:
    async with KrakenSim(SimConfig(symbols=("BTC/USD",), port=port)):
        pass
