"""KuCoin level2, match and ticker streams vs REST snapshots and truth (protocols.md §2.5, §2.6)."""

from __future__ import annotations

import itertools
import random
import re
from decimal import Decimal
from typing import Any

import pytest
from test_sim_kucoin_kit import (
    GapError,
    RefL2,
    dec_levels,
    frames_for,
    http,
    is_l2,
    kcfg,
    open_ws,
    recv_json,
    sub,
)
from websockets.asyncio.client import ClientConnection

from gapless.sim import Fault
from gapless.sim.kucoin import KUCOIN_PAIRS, KucoinSim
from gapless.sim.kucoin_feed import SymbolFeed
from gapless.sim.market import SymbolMarket

NUM = re.compile(r"^(0|[1-9]\d*)(\.\d*[1-9])?$")


def test_reference_reproduces_the_documented_example() -> None:
    """TV-C2 (protocols.md §2.5, with the doc's swapped start/end read as 15..19)."""
    ref = RefL2(
        {
            "sequence": "16",
            "asks": [["3988.62", "8"], ["3988.61", "32"], ["3988.60", "47"], ["3988.59", "3"]],
            "bids": [["3988.51", "56"], ["3988.50", "15"], ["3988.49", "100"], ["3988.48", "10"]],
        }
    )
    assert ref.apply(
        {
            "sequenceStart": 15,
            "sequenceEnd": 19,
            "changes": {
                "asks": [["3988.62", "8", "15"], ["3988.59", "3", "16"], ["3988.61", "0", "19"]],
                "bids": [["3988.50", "44", "18"]],
            },
        }
    )
    bids, asks = ref.book()
    assert asks == dec_levels([["3988.59", "3"], ["3988.60", "47"], ["3988.62", "8"]])
    assert bids == dec_levels(
        [["3988.51", "56"], ["3988.50", "44"], ["3988.49", "100"], ["3988.48", "10"]]
    )
    assert ref.seq == 19
    assert ref.skipped_entries == 2
    with pytest.raises(GapError):
        ref.apply({"sequenceStart": 21, "sequenceEnd": 22, "changes": {"asks": [], "bids": []}})


def test_feed_stale_snapshot_is_an_exact_past_book() -> None:
    """Undoing ticks rebuilds the exact book at an older sequence, at any depth."""
    pair = KUCOIN_PAIRS[2]
    market = SymbolMarket(pair, random.Random(3), levels=200, min_levels=180)
    feed = SymbolFeed(market, random.Random(4), aggregate_prob=0.5, history_s=1.0)
    states = {feed.seq: feed.snapshot(None)}
    for i in range(600):
        feed.tick(i * 0.01)
        states[feed.seq] = feed.snapshot(None)
    now = 599 * 0.01
    for age in (0.05, 0.3, 0.99, 5.0):
        seq, bids, asks = feed.stale_snapshot(None, age, now) or (0, [], [])
        assert seq < feed.seq
        assert (seq, bids, asks) == states[seq]
        for depth in (1, 20, 100):
            top = feed.stale_snapshot(depth, age, now)
            assert top == (seq, bids[:depth], asks[:depth])
    # only history_s of ticks is kept
    oldest = feed.stale_snapshot(None, 5.0, now)
    assert oldest is not None
    assert oldest[0] > min(states)


async def _subscribe(ws: ClientConnection, topic: str) -> None:
    assert (await recv_json(ws))["type"] == "welcome"
    await ws.send(sub(topic, "s"))
    while (await recv_json(ws)).get("type") != "ack":
        pass


async def test_l2update_shape_continuity_and_truth() -> None:
    config = kcfg(l2_aggregate_prob=0.5, zero_price_prob=0.2)
    async with KucoinSim(config) as sim, await open_ws(sim) as ws:
        await _subscribe(ws, "/market/level2:BTC-USDT,ETH-USDT")
        frames = await frames_for(ws, 1.0)
    msgs = [m for m in frames if is_l2(m)]
    assert {m["data"]["symbol"] for m in msgs} == {"BTC-USDT", "ETH-USDT"}
    zero_entries = 0
    for sym in ("BTC-USDT", "ETH-USDT"):
        mine = [m for m in msgs if m["data"]["symbol"] == sym]
        assert len(mine) > 20
        for prev, cur in itertools.pairwise(mine):
            assert cur["data"]["sequenceStart"] == prev["data"]["sequenceEnd"] + 1
        for m in mine:
            assert m["type"] == "message"
            assert m["topic"] == f"/market/level2:{sym}"
            d = m["data"]
            assert list(d) == ["changes", "sequenceEnd", "sequenceStart", "symbol", "time"]
            assert isinstance(d["sequenceStart"], int)
            assert isinstance(d["sequenceEnd"], int)
            assert isinstance(d["time"], int)
            assert d["sequenceStart"] <= d["sequenceEnd"]
            seqs = []
            for side in ("asks", "bids"):
                entries = d["changes"][side]
                side_seqs = [int(e[2]) for e in entries]
                assert side_seqs == sorted(side_seqs)  # applied one after another
                prices = [e[0] for e in entries if e[0] != "0"]
                assert len(prices) == len(set(prices))  # only the latest per price
                for e in entries:
                    assert len(e) == 3
                    assert all(isinstance(x, str) for x in e)
                    assert NUM.match(e[0])
                    assert NUM.match(e[1])
                    zero_entries += e[0] == "0"
                seqs += side_seqs
            assert seqs
            assert min(seqs) >= d["sequenceStart"]
            assert max(seqs) == d["sequenceEnd"]
            assert len(set(seqs)) == len(seqs)
        truth = [
            (r["seq_start"], r["seq_end"])
            for r in sim.truth
            if r["k"] == "book" and r["symbol"] == sym
        ]
        wire = [(m["data"]["sequenceStart"], m["data"]["sequenceEnd"]) for m in mine]
        i = truth.index(wire[0])
        assert truth[i : i + len(wire)] == wire
    assert zero_entries > 0  # price "0" entries occur (§2.5 rule 5)


async def _sync(
    sim: KucoinSim, ws: ClientConnection, symbol: str, path: str
) -> tuple[RefL2, list[Any]]:
    """Buffer l2updates, fetch the snapshot, replay (§2.5 steps 1-4)."""
    buffered = [m for m in await frames_for(ws, 0.05) if is_l2(m, symbol)]
    while not buffered:
        buffered = [m for m in await frames_for(ws, 0.05) if is_l2(m, symbol)]
    r = await http(sim.ports[0], "GET", f"{path}?symbol={symbol}")
    ref = RefL2(r.json()["data"])
    assert buffered[0]["data"]["sequenceStart"] <= ref.seq + 1
    return ref, buffered


async def test_calibration_straddles_and_matches_final_books() -> None:
    """The REST snapshot lines up with the stream; a client book equals ``final_books``."""
    config = kcfg(l2_aggregate_prob=1.0, l2_aggregate_max=3, symbols=("BTC-USDT",))
    sym = "BTC-USDT"
    async with KucoinSim(config) as sim, await open_ws(sim) as ws:
        await _subscribe(ws, f"/market/level2:{sym}")
        straddled = False
        for _ in range(30):  # usually the first or second try
            ref, buffered = await _sync(sim, ws, sym, "/api/v3/market/orderbook/level2")
            for m in buffered:
                ref.apply(m["data"])
            while not ref.applied:  # the first message after the snapshot may straddle it
                m = await recv_json(ws)
                if is_l2(m, sym):
                    ref.apply(m["data"])
            if ref.skipped_entries:
                straddled = True
                break
        assert straddled, "no snapshot ever fell inside an aggregated message"
        for m in await frames_for(ws, 0.5):
            if is_l2(m, sym):
                assert ref.apply(m["data"])
        await sim.quiesce()
        final = sim.final_books()[sym]
        while ref.seq < final["sequence"]:
            m = await recv_json(ws)
            if is_l2(m, sym):
                ref.apply(m["data"])
        assert ref.seq == final["sequence"]
        bids, asks = ref.book()
        assert bids == dec_levels(final["bids"])
        assert asks == dec_levels(final["asks"])
        assert len(bids) > 1000
        (rec,) = [r for r in sim.truth if r["k"] == "final_book"]
        assert rec["sequence"] == final["sequence"]
        assert rec["bids"] == [list(x) for x in final["bids"]]
        assert rec["venue"] == "kucoin"
        # after quiesce the REST snapshot is the frozen final book
        snap = await http(sim.ports[0], "GET", f"/api/v1/market/orderbook/level2_20?symbol={sym}")
        data = snap.json()["data"]
        assert int(data["sequence"]) == final["sequence"]
        assert data["bids"] == [list(x) for x in final["bids"][:20]]


async def test_calibration_from_level2_100() -> None:
    """A top-100 snapshot: every level the client holds is right, and the top is complete."""
    async with KucoinSim(kcfg(symbols=("ETH-USDT",))) as sim, await open_ws(sim) as ws:
        await _subscribe(ws, "/market/level2:ETH-USDT")
        ref, buffered = await _sync(sim, ws, "ETH-USDT", "/api/v1/market/orderbook/level2_100")
        for m in buffered:
            ref.apply(m["data"])
        for m in await frames_for(ws, 1.0):
            if is_l2(m, "ETH-USDT"):
                assert ref.apply(m["data"])
        await sim.quiesce()
        final = sim.final_books()["ETH-USDT"]
        while ref.seq < final["sequence"]:
            m = await recv_json(ws)
            if is_l2(m):
                ref.apply(m["data"])
        true_bids = dict(dec_levels(final["bids"]))
        true_asks = dict(dec_levels(final["asks"]))
        bids, asks = ref.book()
        assert all(true_bids[p] == s for p, s in bids)
        assert all(true_asks[p] == s for p, s in asks)
        assert bids[:20] == dec_levels(final["bids"][:20])
        assert asks[:20] == dec_levels(final["asks"][:20])


async def test_match_sequence_trade_id_and_truth() -> None:
    async with KucoinSim(kcfg()) as sim, await open_ws(sim) as ws:
        await _subscribe(ws, "/market/match:BTC-USDT")
        frames = await frames_for(ws, 1.5)
    matches = [m for m in frames if m.get("subject") == "trade.l3match"]
    assert len(matches) > 5
    for m in matches:
        assert m["topic"] == "/market/match:BTC-USDT"
        d = m["data"]
        assert set(d) == {
            "makerOrderId",
            "price",
            "sequence",
            "side",
            "size",
            "symbol",
            "takerOrderId",
            "time",
            "tradeId",
            "type",
        }
        assert all(isinstance(v, str) for v in d.values())
        assert d["type"] == "match"
        assert d["side"] in ("buy", "sell")
        assert d["tradeId"] == d["sequence"]
        assert NUM.match(d["price"])
        assert NUM.match(d["size"])
        assert len(d["time"]) == 19  # nanoseconds
        assert re.fullmatch(r"[0-9a-f]{24}", d["makerOrderId"])
    seqs = [int(m["data"]["sequence"]) for m in matches]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    truth = [r for r in sim.truth if r["k"] == "trade" and r["symbol"] == "BTC-USDT"]
    by_seq = {r["sequence"]: r for r in truth}
    for m in matches:
        r = by_seq[int(m["data"]["sequence"])]
        assert r["trade_id"] == m["data"]["tradeId"]
        assert r["price"] == m["data"]["price"]
        assert r["size"] == m["data"]["size"]
        assert r["ts_ns"] == int(m["data"]["time"])
        assert r["side"] == m["data"]["side"]
    assert len(truth) >= len(matches)  # published whether subscribed or not


async def test_ticker_shape_and_rate() -> None:
    async with KucoinSim(kcfg()) as sim, await open_ws(sim) as ws:
        await _subscribe(ws, "/market/ticker:ETH-USDT")
        frames = await frames_for(ws, 1.5)
    ticks = [m for m in frames if m.get("subject") == "trade.ticker"]
    assert 5 <= len(ticks) <= 16
    times = [m["data"]["time"] for m in ticks]
    assert all(b - a >= 99 for a, b in itertools.pairwise(times))
    for m in ticks:
        assert m["topic"] == "/market/ticker:ETH-USDT"
        d = m["data"]
        assert isinstance(d["time"], int)
        for key in (
            "sequence",
            "price",
            "size",
            "bestAsk",
            "bestAskSize",
            "bestBid",
            "bestBidSize",
        ):
            assert isinstance(d[key], str)
        assert Decimal(d["bestBid"]) < Decimal(d["bestAsk"])
    truth = {r["sequence"] for r in sim.truth if r["k"] == "ticker" and r["symbol"] == "ETH-USDT"}
    assert {int(m["data"]["sequence"]) for m in ticks} <= truth


async def test_level2_gap_fault() -> None:
    async with KucoinSim(kcfg()) as sim, await open_ws(sim) as ws:
        await _subscribe(ws, "/market/level2:BTC-USDT")
        before = [m for m in await frames_for(ws, 0.2) if is_l2(m, "BTC-USDT")]
        await sim.inject(Fault.make("level2_gap", symbol="BTC-USDT"))
        after = [m for m in await frames_for(ws, 0.3) if is_l2(m, "BTC-USDT")]
        seq = before + after
        gaps = [
            (a["data"]["sequenceEnd"], b["data"]["sequenceStart"])
            for a, b in itertools.pairwise(seq)
            if b["data"]["sequenceStart"] != a["data"]["sequenceEnd"] + 1
        ]
        assert len(gaps) == 1
        last_end, next_start = gaps[0]
        assert next_start > last_end + 1
        (skipped,) = [r for r in sim.truth if r["k"] == "book" and r["skipped"]]
        assert (skipped["seq_start"], skipped["seq_end"]) == (last_end + 1, next_start - 1)
        assert sim.stats["l2_skipped"] == 1
        assert sim.stats["frames_withheld"] == 1


@pytest.mark.looptime
async def test_stale_snapshot_is_old_but_consistent() -> None:
    sym = "BTC-USDT"
    async with KucoinSim(kcfg(symbols=(sym,))) as sim, await open_ws(sim) as ws:
        await _subscribe(ws, f"/market/level2:{sym}")
        early = [m for m in await frames_for(ws, 3.0) if is_l2(m, sym)]
        await sim.inject(Fault.make("stale_snapshot", symbol=sym, count=1, age_s=2.0))
        path = f"/api/v3/market/orderbook/level2?symbol={sym}"
        stale = (await http(sim.ports[0], "GET", path)).json()["data"]
        fresh = (await http(sim.ports[0], "GET", path)).json()["data"]
        s_stale, s_fresh = int(stale["sequence"]), int(fresh["sequence"])
        # older than what the stream has moved past: ~2 s of 50 Hz ticks
        assert s_stale < early[-1]["data"]["sequenceEnd"] - 50
        assert s_fresh >= early[-1]["data"]["sequenceEnd"]
        # consistent: the buffered stream carries the stale book to the fresh one exactly
        ref = RefL2(stale)
        for m in early:
            ref.apply(m["data"])
        await sim.quiesce()
        final = sim.final_books()[sym]
        while ref.seq < final["sequence"]:
            m = await recv_json(ws)
            if is_l2(m, sym):
                ref.apply(m["data"])
        bids, asks = ref.book()
        assert bids == dec_levels(final["bids"])
        assert asks == dec_levels(final["asks"])
        # a client that subscribed late cannot use it: the first message leaves a gap
        late = RefL2(stale)
        with pytest.raises(GapError, match="gap"):
            late.apply(early[-1]["data"])
        snaps = [(r["sequence"], r["stale"]) for r in sim.truth if r["k"] == "snapshot"]
        assert snaps == [(s_stale, True), (s_fresh, False)]
        assert sim.stats["stale_snapshots"] == 1
