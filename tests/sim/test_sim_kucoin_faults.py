"""Every KuCoin simulator fault kind is observable on the wire (design.md §4), plus lifecycle."""

from __future__ import annotations

import asyncio
import itertools
import json
from typing import Any

import pytest
from simkit import closed
from test_sim_kucoin_kit import bullet, frames_for, is_l2, kcfg, open_ws, recv_json, sub
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosedError

from gapless.sim import Fault, Scenario
from gapless.sim.faults import known_fault_kinds
from gapless.sim.kucoin import KUCOIN_FAULT_KINDS, KucoinSim


async def _level2(ws: ClientConnection, symbols: str = "BTC-USDT") -> None:
    assert (await recv_json(ws))["type"] == "welcome"
    await ws.send(sub(f"/market/level2:{symbols}", "s"))
    while (await recv_json(ws)).get("type") != "ack":
        pass


def _closes(sim: KucoinSim) -> list[tuple[str, Any]]:
    return [(r["how"], r["cause"]) for r in sim.truth if r["k"] == "conn_close"]


def test_kinds_are_registered() -> None:
    assert set(KUCOIN_FAULT_KINDS) <= set(known_fault_kinds())
    f = Fault.from_dict({"at": 1, "kind": "instance_down", "index": 0, "duration_s": 2})
    assert f.resolved() == {"index": 0, "duration_s": 2}
    assert Fault.make("stale_snapshot").resolved() == {"symbol": None, "count": 1, "age_s": 2.0}
    with pytest.raises(ValueError, match="unknown params"):
        Fault.make("level2_gap", sym="BTC-USDT")
    with pytest.raises(ValueError, match="non-negative"):
        Fault.make("rest_429", duration_s=-1)
    chaos = Scenario.chaos(60.0, seed=1, kinds=KUCOIN_FAULT_KINDS, symbols=["BTC-USDT"])
    assert {f.kind for f in chaos} <= set(KUCOIN_FAULT_KINDS)


async def test_unsupported_or_invalid_faults_are_refused() -> None:
    async with KucoinSim(kcfg()) as sim:
        for fault in (
            Fault.make("drop_update"),
            Fault.make("ban"),
            Fault.make("instance_down", index=2),
            Fault.make("level2_gap", symbol="DOGE-USDT"),
            Fault.make("stale_snapshot", count=0),
            Fault.make("topic_limit", limit=-1),
        ):
            with pytest.raises(ValueError, match=r"not supported|must be|not simulated"):
                await sim.inject(fault)
        assert sim.stats["faults_injected"] == {}
        assert not [r for r in sim.truth if r["k"] == "fault"]


async def test_token_expiry() -> None:
    async with KucoinSim(kcfg()) as sim:
        token = (await bullet(sim))["token"]
        async with await open_ws(sim, token=token) as ws:
            await _level2(ws)
            await sim.inject(Fault.make("token_expiry"))
            while (m := await recv_json(ws)).get("type") != "error":
                assert m["subject"] == "trade.l2update"
            assert m == {"type": "error", "code": 401, "data": "token is expired"}
            exc = await closed(ws)
            assert exc.rcvd is not None
            assert exc.rcvd.code == 1000
        async with await open_ws(sim, token=token) as ws:  # the old token is dead
            assert (await recv_json(ws))["data"] == "token is expired"
        async with await open_ws(sim) as ws:  # a new bullet works
            assert (await recv_json(ws))["type"] == "welcome"
        assert _closes(sim)[0] == ("close:1000", "token_expired")
        (f,) = [r for r in sim.truth if r["k"] == "fault"]
        assert (f["venue"], f["kind"], f["params"]) == ("kucoin", "token_expiry", {})


async def test_topic_limit() -> None:
    async with KucoinSim(kcfg()) as sim, await open_ws(sim) as ws:
        await recv_json(ws)
        await ws.send(sub("/market/ticker:BTC-USDT", "a"))
        assert (await recv_json(ws))["type"] == "ack"
        await sim.inject(Fault.make("topic_limit", limit=2, duration_s=0.3))
        await ws.send(sub("/market/match:BTC-USDT,ETH-USDT", "b"))
        assert await recv_json(ws) == {
            "id": "b",
            "type": "error",
            "code": 509,
            "data": "exceed max subscription count limitation of 2 per session",
        }
        await ws.send(sub("/market/match:BTC-USDT", "c"))
        assert (await recv_json(ws))["type"] == "ack"
        # refused under the lowered limit, but the documented 400 was never exceeded
        assert not [t for t in sim.truth if t.get("k") == "violation"]
        await asyncio.sleep(0.35)
        await ws.send(sub("/market/match:ETH-USDT", "d"))
        acks = [m for m in await frames_for(ws, 0.2) if m.get("type") in ("ack", "error")]
        assert acks == [{"id": "d", "type": "ack"}]


async def test_instance_down_refuses_then_recovers() -> None:
    async with KucoinSim(kcfg()) as sim:
        down_port = sim.ports[1]
        # ws0 is not read while we wait: an unbounded queue keeps its close handshake quick
        ws0 = await open_ws(sim, instance=0, max_queue=None)
        async with await open_ws(sim, instance=1) as ws1, ws0:
            await _level2(ws1)
            await _level2(ws0)
            await sim.inject(Fault.make("instance_down", index=1, duration_s=0.5))
            exc = await closed(ws1)
            assert isinstance(exc, ConnectionClosedError)
            assert exc.rcvd is None  # aborted, no close frame
            with pytest.raises(OSError, match="Connect call failed"):
                async with await open_ws(sim, instance=1):
                    pass
            # the other instance keeps streaming; failover works with a new bullet
            assert [m for m in await frames_for(ws0, 0.2) if is_l2(m)]
            async with await open_ws(sim, instance=0, connect_id="failover") as fo:
                assert (await recv_json(fo))["id"] == "failover"
            await asyncio.sleep(0.6)
            assert sim.ports[1] == down_port
            async with await open_ws(sim, instance=1, connect_id="back") as back:
                assert (await recv_json(back))["id"] == "back"
        assert ("abort", "instance_down") in _closes(sim)


async def test_lifetime_close_fault_and_scenario() -> None:
    async with KucoinSim(kcfg()) as sim:
        async with await open_ws(sim) as ws:
            await _level2(ws)
            sim.schedule(Scenario([Fault("lifetime_close", 0.2)]))
            exc = await closed(ws)
            assert exc.rcvd is not None
            assert exc.rcvd.code == 1000
        await asyncio.sleep(0.05)
        assert _closes(sim) == [("close:1000", "lifetime")]


async def test_close_and_abort() -> None:
    async with KucoinSim(kcfg()) as sim:
        async with await open_ws(sim) as ws:
            await _level2(ws)
            await sim.inject(Fault.make("close", code=4001, reason="bye"))
            exc = await closed(ws)
            assert exc.rcvd is not None
            assert (exc.rcvd.code, exc.rcvd.reason) == (4001, "bye")
        async with await open_ws(sim) as ws:
            await _level2(ws)
            await sim.inject(Fault("abort"))
            exc = await closed(ws)
            assert exc.rcvd is None
        await asyncio.sleep(0.05)
        assert _closes(sim) == [("close:4001", "fault"), ("abort", "fault")]


@pytest.mark.looptime
async def test_silent_stall_then_abort() -> None:
    async with KucoinSim(kcfg(tick_rate_hz=10.0)) as sim, await open_ws(sim) as ws:
        await _level2(ws)
        await sim.inject(Fault.make("silent_stall", duration_s=5.0))
        await ws.send(json.dumps({"id": "p", "type": "ping"}))
        pong_waiter = asyncio.ensure_future(await ws.ping())
        assert await frames_for(ws, 4.0) == []
        assert not pong_waiter.done()  # even protocol pongs are withheld
        async with await open_ws(sim, connect_id="fresh") as fresh:
            assert (await recv_json(fresh))["id"] == "fresh"
        exc = await closed(ws, limit_s=3.0)
        assert exc.rcvd is None


async def test_data_stall_leaves_a_sequence_gap_while_pongs_flow() -> None:
    async with KucoinSim(kcfg()) as sim, await open_ws(sim) as ws:
        await _level2(ws, "BTC-USDT,ETH-USDT")
        before = [m for m in await frames_for(ws, 0.2) if is_l2(m, "BTC-USDT")]
        await sim.inject(Fault.make("data_stall", duration_s=0.3, symbols=["BTC-USDT"]))
        await ws.send(json.dumps({"id": "p", "type": "ping"}))
        during = await frames_for(ws, 0.25)
        assert {"id": "p", "type": "pong"} in during
        assert not [m for m in during if is_l2(m, "BTC-USDT")]
        assert [m for m in during if is_l2(m, "ETH-USDT")]
        after = [m for m in await frames_for(ws, 0.3) if is_l2(m, "BTC-USDT")]
        assert after
        assert after[0]["data"]["sequenceStart"] > before[-1]["data"]["sequenceEnd"] + 1
        assert sim.stats["frames_withheld"] > 0


@pytest.mark.looptime
async def test_burst_multiplies_the_tick_rate() -> None:
    async with KucoinSim(kcfg(symbols=("BTC-USDT",), tick_rate_hz=10.0)) as sim:
        await asyncio.sleep(1.0)
        base = sim.stats["ticks"]
        await sim.inject(Fault.make("burst", duration_s=1.0, factor=10.0))
        await asyncio.sleep(1.0)
        burst = sim.stats["ticks"] - base
        await asyncio.sleep(1.0)
        after = sim.stats["ticks"] - base - burst
        assert 85 <= burst <= 105  # the first burst tick waits out the old period
        assert 8 <= after <= 12


@pytest.mark.parametrize("variant", ["invalid_json", "wrong_types", "huge", "deep"])
async def test_malformed(variant: str) -> None:
    async with KucoinSim(kcfg()) as sim, await open_ws(sim, max_size=None) as ws:
        await recv_json(ws)
        await sim.inject(Fault.make("malformed", variant=variant, size_bytes=2_000_000))
        async with asyncio.timeout(3.0):
            raw = await ws.recv()
        assert isinstance(raw, str)
        if variant == "invalid_json":
            with pytest.raises(json.JSONDecodeError):
                json.loads(raw)
        elif variant == "wrong_types":
            assert isinstance(json.loads(raw)["data"]["sequenceEnd"], str)
        elif variant == "huge":
            assert len(raw) == 2_000_000
        else:
            assert raw.startswith("[[[[")
            assert len(raw) == 20_000


async def _fail_inside_sim() -> None:
    async with KucoinSim(kcfg()) as sim:
        sim.schedule(Scenario([Fault("abort", 100.0)]))
        await sim.inject(Fault.make("instance_down", index=1, duration_s=100.0))
        async with await open_ws(sim) as ws:
            await recv_json(ws)
            raise KeyError("boom")


async def test_body_exception_propagates_unwrapped_and_everything_stops() -> None:
    before = set(asyncio.all_tasks())
    with pytest.raises(KeyError):
        await _fail_inside_sim()
    await asyncio.sleep(0)
    leftover = {t for t in asyncio.all_tasks() - before if not t.done()}
    assert leftover == set()


async def test_not_running_and_config_errors() -> None:
    sim = KucoinSim(kcfg())
    with pytest.raises(RuntimeError, match="not running"):
        await sim.inject(Fault("abort"))
    with pytest.raises(ValueError, match="PairSpec"):
        KucoinSim(kcfg(symbols=("DOGE-USDT",)))
    with pytest.raises(ValueError, match="port"):
        KucoinSim(kcfg(ports=()))


async def test_truth_file_and_record_shapes(tmp_path: Any) -> None:
    path = tmp_path / "truth.jsonl"
    async with KucoinSim(kcfg(truth_path=path)) as sim:
        async with await open_ws(sim) as ws:
            await _level2(ws)
            await frames_for(ws, 0.2)
        await sim.quiesce()
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    assert lines == sim.truth
    meta = lines[0]
    assert meta["k"] == "meta"
    assert meta["venue"] == "kucoin"
    assert meta["increments"]["BTC-USDT"] == {"price": "0.1", "size": "0.00000001"}
    assert meta["instances"] == 2
    keys = {
        "book": {"k", "venue", "symbol", "ts_ns", "seq_start", "seq_end", "skipped"},
        "trade": {"k", "venue", "symbol", "ts_ns", "trade_id", "sequence", "price", "size", "side"},
        "ticker": {"k", "venue", "symbol", "ts_ns", "sequence"},
        "token": {"k", "venue", "issued", "ts_ns", "ttl_s"},
        "conn_open": {"k", "venue", "conn", "connect_id", "instance", "ts_ns"},
        "conn_close": {"k", "venue", "conn", "ts_ns", "how", "cause"},
        "final_book": {"k", "venue", "symbol", "ts_ns", "sequence", "bids", "asks"},
    }
    for r in lines[1:]:
        assert set(r) == keys[r["k"]], r
    assert {r["k"] for r in lines} == {"meta", *keys}
    for sym in ("BTC-USDT", "ETH-USDT"):
        books = [r for r in lines if r["k"] == "book" and r["symbol"] == sym]
        for a, b in itertools.pairwise(books):
            assert b["seq_start"] == a["seq_end"] + 1  # published stream is gap-free
        (final,) = [r for r in lines if r["k"] == "final_book" and r["symbol"] == sym]
        assert final["sequence"] == books[-1]["seq_end"]
    stamps = [r["ts_ns"] for r in lines if r["k"] in ("book", "trade", "ticker")]
    assert stamps == sorted(stamps)
    assert len(stamps) == len(set(stamps))
