"""The benchmark traffic generator and bench server (bench/traffic.py, bench/server.py).

Pure checks of the traffic (determinism, Kraken v1/v2 carrying the same books with
checksums that verify independently, final books = replay), then real loopback runs: a
small client per protocol written here (websockets + aiohttp), TLS, the latency and
recovery modes, the CLI, and the gapless library itself against the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import signal
import ssl
import subprocess
import sys
import time
import zlib
from collections.abc import AsyncIterator, Iterable
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from bench.server import BenchServer, make_self_signed
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosedError, InvalidStatus

import gapless
from bench import kraken_v1
from bench import traffic as T
from gapless.book import Book
from gapless.events import BookSnapshot, BookUpdate, Trade
from gapless.sim.numbers import fmt_fixed
from gapless.venues import binance as gbinance
from gapless.venues import kraken as gkraken
from gapless.venues import kucoin as gkucoin

ROOT = Path(__file__).resolve().parents[2]
SETTLE = 0.05


@functools.cache
def traffic(workload: str, scale: float, seed: int = T.DEFAULT_SEED) -> T.Traffic:
    return T.build(workload, scale, seed)


def w1() -> T.Traffic:
    return traffic("W1", 0.005)  # 1000 updates, BTC/USD depth 10


def w2() -> T.Traffic:
    return traffic("W2", 0.002)  # 200 updates over 20 symbols, depth 1000


def w3() -> T.Traffic:
    return traffic("W3", 0.004)  # 600 depth events + 400 trades over 50 symbols


def w4() -> T.Traffic:
    return traffic("W4", 0.004)  # 800 level2 updates over 50 symbols


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    return make_self_signed(tmp_path_factory.mktemp("cert"))


@contextlib.asynccontextmanager
async def running(t: T.Traffic, mode: str = "throughput", **kw: Any) -> AsyncIterator[BenchServer]:
    kw.setdefault("settle_s", SETTLE)
    srv = BenchServer(t, mode, **kw)
    await srv.start()
    try:
        yield srv
    finally:
        await srv.close()


def scaled(value: Decimal, prec: int) -> int:
    """Exact scaled int of a wire number printed with exactly ``prec`` decimals."""
    exponent = value.as_tuple().exponent
    assert exponent == -prec, f"{value} is not printed with {prec} decimals"
    return int(value.scaleb(prec))


def kraken_token(text: str) -> str:
    return text.replace(".", "").lstrip("0")


def v1_checksum(asks: dict[str, str], bids: dict[str, str]) -> int:
    """Independent v1 checksum from the wire strings (Kraken's v1 guide)."""
    a = sorted(asks.items(), key=lambda kv: Decimal(kv[0]))[:10]
    b = sorted(bids.items(), key=lambda kv: -Decimal(kv[0]))[:10]
    text = "".join(kraken_token(p) + kraken_token(q) for p, q in [*a, *b])
    return zlib.crc32(text.encode()) & 0xFFFFFFFF


def dec_levels(levels: Iterable[Iterable[Any]]) -> list[tuple[Decimal, Decimal]]:
    return [(Decimal(str(p)), Decimal(str(q))) for p, q, *_ in levels]


def want_books(t: T.Traffic, protocol: str, n: int | None = None) -> dict[str, Any]:
    return {
        sym: {"bids": dec_levels(b["bids"]), "asks": dec_levels(b["asks"])}
        for sym, b in t.final_books(protocol, n).items()
    }


def top_of(bids: dict[Decimal, Decimal], asks: dict[Decimal, Decimal], n: int) -> dict[str, Any]:
    return {
        "bids": sorted(bids.items(), reverse=True)[:n],
        "asks": sorted(asks.items())[:n],
    }


async def recv_json(ws: ClientConnection, wait_s: float = 10.0, **kw: Any) -> Any:
    async with asyncio.timeout(wait_s):
        return json.loads(await ws.recv(), **kw)


# --------------------------------------------------------------------------- traffic


def test_traffic_is_deterministic() -> None:
    for workload, scale in (("W1", 0.002), ("W3", 0.002), ("W4", 0.002)):
        a = T.build(workload, scale)
        b = T.build(workload, scale)
        for proto in a.protocols:
            assert T.encode(a, proto) == T.encode(b, proto)
        c = T.build(workload, scale, seed=7)
        assert T.encode(c, a.protocols[0]) != T.encode(a, a.protocols[0])


@pytest.mark.parametrize(
    ("workload", "scale", "venue", "symbols", "depth"),
    [
        ("W1", 0.002, "kraken", 1, 10),
        ("W2", 0.002, "kraken", 20, 1000),
        ("W3", 0.002, "binance", 50, 100),
        ("W4", 0.002, "kucoin", 50, 100),
        ("W6", 0.002, "kraken", 1, 10),
        ("W7", 0.001, "kraken", 1000, 100),
    ],
)
def test_workload_shapes(workload: str, scale: float, venue: str, symbols: int, depth: int) -> None:
    t = traffic(workload, scale)
    spec = T.WORKLOADS[workload]
    assert (t.workload, t.venue, t.depth, len(t.pairs)) == (workload, venue, depth, symbols)
    assert t.updates == round(spec.updates * scale)
    assert t.trades == round(spec.trades * scale)
    assert len(t.order) == t.updates + t.trades
    for proto, names in t.symbols.items():
        assert len(set(names)) == symbols
        assert proto in T.PROTOCOLS
    if venue == "kraken":
        assert t.symbols["kraken-v1"][0] == "XBT/USD"
        assert t.symbols["kraken-v2"][0] == "BTC/USD"
    assert {u.sym for u in t.book_updates} <= set(range(symbols))
    times = [u.ts_us for u in t.book_updates]
    assert times == sorted(times)


def test_w6_is_w1_traffic() -> None:
    assert T.encode(traffic("W6", 0.002), "kraken-v2") == T.encode(
        traffic("W1", 0.002), "kraken-v2"
    )
    with pytest.raises(ValueError, match="W5"):
        T.build("W5")


def test_kraken_v1_checksum_test_vector_tv_k3() -> None:
    """protocols.md TV-K3 through the v1 encoders: 974947235."""
    asks = [(5005 + 5 * i, 500) for i in range(10)]  # 0.05005 .. 0.05050 at 5 decimals
    bid_prices = [5000, 4995, 4990, 4980, 4975, 4970, 4965, 4960, 4955, 4950]
    bids = [(p, 500) for p in bid_prices]
    snap = json.loads(
        kraken_v1.book_snapshot(42, 10, "XBT/USD", bids, asks, 1534614248123678, 5, 8)
    )
    assert snap[0] == 42
    assert snap[2:] == ["book-10", "XBT/USD"]
    assert snap[1]["as"][0] == ["0.05005", "0.00000500", "1534614248.123678"]
    assert "c" not in snap[1]  # v1 snapshots carry no checksum
    a = {p: q for p, q, _ in snap[1]["as"]}
    b = {p: q for p, q, _ in snap[1]["bs"]}
    assert v1_checksum(a, b) == 974947235
    assert kraken_v1.checksum_strings(list(a.items()), list(b.items())) == 974947235
    # an update touching both sides: "c" is a string in the last (bids) object
    upd = json.loads(
        kraken_v1.book_update(42, 10, "XBT/USD", [(5000, 304)], [(5005, 0)], 7, 1, 5, 8)
    )
    assert upd[1] == {"a": [["0.05005", "0.00000000", "0.000001"]]}
    assert upd[2] == {"b": [["0.05000", "0.00000304", "0.000001"]], "c": "7"}
    assert kraken_token("0.05000") + kraken_token("0.00000304") == "5000304"  # the guide's example
    one = json.loads(kraken_v1.book_update(42, 10, "XBT/USD", [], [(5005, 1)], 9, 1, 5, 8))
    assert len(one) == 4
    assert one[1]["c"] == "9"


def replay_v2(t: T.Traffic, per_step: bool) -> tuple[dict[str, Book], list[dict[str, Any]]]:
    """Decode the v2 snapshot and update frames; every checksum must verify."""
    books: dict[str, Book] = {}
    for i, pair in enumerate(t.pairs):
        s = t.snapshots[i]
        msg = json.loads(T.kraken_v2_snapshot(t, i, s.bids, s.asks, s.ts_us), parse_float=Decimal)
        d = msg["data"][0]
        pp, qp = pair.price_precision, pair.qty_precision
        book = Book("kraken", pair.symbol, t.depth, pp, qp)
        book.apply(
            [(scaled(x["price"], pp), scaled(x["qty"], qp)) for x in d["bids"]],
            [(scaled(x["price"], pp), scaled(x["qty"], qp)) for x in d["asks"]],
        )
        assert book.checksum() == d["checksum"]
        books[pair.symbol] = book
    steps: list[dict[str, Any]] = []
    precs = {p.symbol: (p.price_precision, p.qty_precision) for p in t.pairs}
    for frame in T.encode(t, "kraken-v2"):
        msg = json.loads(frame, parse_float=Decimal)
        assert (msg["channel"], msg["type"]) == ("book", "update")
        d = msg["data"][0]
        pp, qp = precs[d["symbol"]]
        book = books[d["symbol"]]
        book.apply(
            [(scaled(x["price"], pp), scaled(x["qty"], qp)) for x in d["bids"]],
            [(scaled(x["price"], pp), scaled(x["qty"], qp)) for x in d["asks"]],
        )
        assert book.checksum() == d["checksum"]
        if per_step:
            steps.append({"bids": book.bids(), "asks": book.asks()})
    return books, steps


def replay_v1(t: T.Traffic, steps: list[dict[str, Any]] | None) -> dict[str, dict[str, Any]]:
    """Decode the v1 frames into string books; every ``c`` must verify independently."""
    books: dict[str, tuple[dict[str, str], dict[str, str]]] = {}
    for i, pair in enumerate(t.pairs):
        s = t.snapshots[i]
        msg = json.loads(T.kraken_v1_snapshot(t, i, s.bids, s.asks, s.ts_us))
        name = kraken_v1.v1_symbol(pair.symbol)
        assert msg[-2:] == [f"book-{t.depth}", name]
        books[name] = ({p: q for p, q, _ in msg[1]["bs"]}, {p: q for p, q, _ in msg[1]["as"]})
    checked = 0
    for n, frame in enumerate(T.encode(t, "kraken-v1")):
        msg = json.loads(frame)
        assert msg[-2] == f"book-{t.depth}"
        bids, asks = books[msg[-1]]
        checksum: str | None = None
        for obj in msg[1:-2]:
            for key, side in (("a", asks), ("b", bids)):
                for price, vol, _ in obj.get(key, []):
                    if Decimal(vol) == 0:
                        side.pop(price, None)
                    else:
                        side[price] = vol
            checksum = obj.get("c", checksum)
        assert "c" in msg[-3]
        assert isinstance(msg[-3]["c"], str)
        for side, rev in ((bids, True), (asks, False)):
            keep = sorted(side, key=Decimal, reverse=rev)[: t.depth]
            for price in set(side) - set(keep):
                del side[price]
        assert checksum is not None
        assert int(checksum) == v1_checksum(asks, bids)
        checked += 1
        if steps is not None:
            step = steps[n]
            assert [
                (Decimal(p), Decimal(q))
                for p, q in sorted(bids.items(), key=lambda x: -Decimal(x[0]))
            ] == [(lv.price, lv.qty) for lv in step["bids"]]
    assert checked == t.updates
    return {
        name: top_of(
            {Decimal(p): Decimal(q) for p, q in b.items()},
            {Decimal(p): Decimal(q) for p, q in a.items()},
            t.depth,
        )
        for name, (b, a) in books.items()
    }


@pytest.mark.parametrize("which", ["W1", "W2"])
def test_kraken_v1_and_v2_carry_the_same_books(which: str) -> None:
    t = w1() if which == "W1" else w2()
    per_step = which == "W1"
    v2_books, steps = replay_v2(t, per_step)
    v1_books = replay_v1(t, steps if per_step else None)
    want_v2 = want_books(t, "kraken-v2")
    want_v1 = want_books(t, "kraken-v1")
    for pair in t.pairs:
        book = v2_books[pair.symbol]
        got = {
            "bids": [(lv.price, lv.qty) for lv in book.bids()],
            "asks": [(lv.price, lv.qty) for lv in book.asks()],
        }
        assert got == want_v2[pair.symbol]
        assert v1_books[kraken_v1.v1_symbol(pair.symbol)] == got
        assert want_v1[kraken_v1.v1_symbol(pair.symbol)] == got
        assert len(got["bids"]) == len(got["asks"]) == t.depth  # rule 4 keeps the window full


def test_binance_and_kucoin_final_books_equal_replay() -> None:
    """Independent replays (Decimal dicts, Binance U/u chain, KuCoin sequences)."""
    t = w3()
    books = {}
    last = {}
    for i, p in enumerate(t.pairs):
        s = t.snapshots[i]
        body = json.loads(T.binance_depth_body(t, i, s.seq, s.bids, s.asks))
        books[p.symbol] = (
            {Decimal(a): Decimal(b) for a, b in body["bids"]},
            {Decimal(a): Decimal(b) for a, b in body["asks"]},
        )
        last[p.symbol] = body["lastUpdateId"]
    trades = 0
    for frame in T.encode(t, "binance"):
        d = json.loads(frame)
        if d["e"] == "trade":
            trades += 1
            continue
        assert d["U"] == last[d["s"]] + 1
        assert d["u"] >= d["U"]
        assert len(d["b"]) + len(d["a"]) >= 1
        last[d["s"]] = d["u"]
        for key, side in (("b", books[d["s"]][0]), ("a", books[d["s"]][1])):
            for price, qty in d[key]:
                if Decimal(qty) == 0:
                    side.pop(Decimal(price), None)
                else:
                    side[Decimal(price)] = Decimal(qty)
    assert trades == t.trades
    want = want_books(t, "binance")
    for sym, (b, a) in books.items():
        assert top_of(b, a, t.depth) == want[sym]
        assert not b or not a or max(b) < min(a)

    k = w4()
    kbooks: dict[str, tuple[dict[Decimal, Decimal], dict[Decimal, Decimal]]] = {}
    seq: dict[str, int] = {}
    for i, p in enumerate(k.pairs):
        s = k.snapshots[i]
        data = T.kucoin_level2_data(k, i, s.seq, s.bids, s.asks, 0)
        kbooks[p.symbol] = (
            {Decimal(a): Decimal(b) for a, b in data["bids"]},
            {Decimal(a): Decimal(b) for a, b in data["asks"]},
        )
        seq[p.symbol] = int(str(data["sequence"]))
    for frame in T.encode(k, "kucoin"):
        msg = json.loads(frame)
        d = msg["data"]
        assert msg["topic"] == f"/market/level2:{d['symbol']}"
        assert d["sequenceStart"] == seq[d["symbol"]] + 1
        assert d["sequenceEnd"] >= d["sequenceStart"]
        entries = [(e, 0) for e in d["changes"]["bids"]] + [(e, 1) for e in d["changes"]["asks"]]
        for (price, size, entry_seq), which in sorted(entries, key=lambda x: int(x[0][2])):
            assert d["sequenceStart"] <= int(entry_seq) <= d["sequenceEnd"]
            if price == "0":
                continue
            book = kbooks[d["symbol"]][which]
            if Decimal(size) == 0:
                book.pop(Decimal(price), None)
            else:
                book[Decimal(price)] = Decimal(size)
        seq[d["symbol"]] = d["sequenceEnd"]
    want = want_books(k, "kucoin")
    for sym, (b, a) in kbooks.items():
        assert top_of(b, a, k.depth) == want[sym]


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    t = w3()
    path = tmp_path / "w3.pkl"
    T.save(t, path)
    back = T.load(path)
    assert back.book_updates == t.book_updates
    assert back.trade_events == t.trade_events
    assert back.order == t.order
    assert back.final_books("binance") == t.final_books("binance")


# --------------------------------------------------------------------------- clients


async def kraken_v2_client(
    url: str,
    t: T.Traffic,
    symbols: list[str],
    *,
    ssl_ctx: ssl.SSLContext | None = None,
    updates: int | None = None,
) -> tuple[dict[str, Book], int, list[int]]:
    """Subscribe instrument + book, verify every checksum, return the books, the number of
    updates and their receive times (monotonic ns)."""
    expected = t.updates if updates is None else updates
    books: dict[str, Book] = {}
    n = 0
    times: list[int] = []
    async with connect(url, ssl=ssl_ctx, max_size=None) as ws:
        status = await recv_json(ws)
        assert status["channel"] == "status"
        assert status["data"][0]["system"] == "online"
        await ws.send(
            json.dumps({"method": "subscribe", "params": {"channel": "instrument"}, "req_id": 1})
        )
        ack = await recv_json(ws)
        assert ack["success"] is True
        assert ack["req_id"] == 1
        inst = await recv_json(ws)
        assert (inst["channel"], inst["type"]) == ("instrument", "snapshot")
        precs = {
            p["symbol"]: (p["price_precision"], p["qty_precision"]) for p in inst["data"]["pairs"]
        }
        await ws.send(
            json.dumps(
                {
                    "method": "subscribe",
                    "params": {"channel": "book", "symbol": symbols, "depth": t.depth},
                    "req_id": 2,
                }
            )
        )
        while n < expected:
            msg = await recv_json(ws, parse_float=Decimal)
            if msg.get("method") == "subscribe":
                assert msg["success"] is True, msg
                continue
            if msg.get("channel") == "heartbeat":
                continue
            assert msg["channel"] == "book", msg
            d = msg["data"][0]
            pp, qp = precs[d["symbol"]]
            if msg["type"] == "snapshot":
                books[d["symbol"]] = Book("kraken", d["symbol"], t.depth, pp, qp)
            else:
                n += 1
                times.append(time.monotonic_ns())
            book = books[d["symbol"]]
            book.apply(
                [(scaled(x["price"], pp), scaled(x["qty"], qp)) for x in d["bids"]],
                [(scaled(x["price"], pp), scaled(x["qty"], qp)) for x in d["asks"]],
            )
            assert book.checksum() == d["checksum"]
    return books, n, times


def book_levels(book: Book) -> dict[str, Any]:
    return {
        "bids": [(lv.price, lv.qty) for lv in book.bids()],
        "asks": [(lv.price, lv.qty) for lv in book.asks()],
    }


# --------------------------------------------------------------------------- server runs


async def test_kraken_v2_throughput_run_and_errors() -> None:
    t = w1()
    async with running(t) as srv:
        url = f"ws://127.0.0.1:{srv.port}/kraken/v2"
        books, n, _ = await kraken_v2_client(url, t, ["BTC/USD"])
        assert n == t.updates
        assert book_levels(books["BTC/USD"]) == want_books(t, "kraken-v2")["BTC/USD"]
        # after the run: ping/pong, and a request the server does not understand
        async with connect(url) as ws:
            await recv_json(ws)  # status
            await ws.send(json.dumps({"method": "ping", "req_id": 5}))
            pong = await recv_json(ws)
            assert pong["method"] == "pong"
            assert pong["req_id"] == 5
            await ws.send(
                json.dumps(
                    {
                        "method": "subscribe",
                        "params": {"channel": "book", "symbol": ["BTC/USD"], "depth": 25},
                    }
                )
            )
            err = await recv_json(ws)
            assert err["success"] is False
            assert "depth" in err["error"]
            await ws.send(json.dumps({"method": "frobnicate", "req_id": 9}))
            err = await recv_json(ws)
            assert err["success"] is False
            assert err["req_id"] == 9
        for _ in range(100):
            if srv.run_complete and not srv.connections_open:
                break
            await asyncio.sleep(0.01)
        rep = srv.report()
    assert rep["updates_sent"] == t.updates
    assert rep["complete"] is True
    assert rep["start_mono_ns"] < rep["end_mono_ns"]
    assert [e["error"] for e in rep["errors"]][-1].startswith("Method not found")
    assert any("depth" in e["error"] for e in rep["errors"])


async def test_kraken_throughput_several_connections_keep_order() -> None:
    """W2: two connections with ten symbols each; each symbol's frames go where subscribed."""
    t = w2()
    names = t.symbols["kraken-v2"]
    async with running(t) as srv:
        url = f"ws://127.0.0.1:{srv.port}/kraken/v2"
        counts = [
            sum(1 for u in t.book_updates if u.sym < 10),
            sum(1 for u in t.book_updates if u.sym >= 10),
        ]
        (b1, n1, _), (b2, n2, _) = await asyncio.gather(
            kraken_v2_client(url, t, names[:10], updates=counts[0]),
            kraken_v2_client(url, t, names[10:], updates=counts[1]),
        )
    assert (n1, n2) == tuple(counts)
    want = want_books(t, "kraken-v2")
    for sym, book in {**b1, **b2}.items():
        assert book_levels(book) == want[sym]
    assert srv.report()["connections"] == 2


async def test_kraken_v1_throughput_run() -> None:
    t = w1()
    async with running(t) as srv, connect(f"ws://127.0.0.1:{srv.port}/kraken/v1") as ws:
        status = await recv_json(ws)
        assert status["event"] == "systemStatus"
        assert status["status"] == "online"
        await ws.send(json.dumps({"event": "ping", "reqid": 3}))
        assert await recv_json(ws) == {"event": "pong", "reqid": 3}
        await ws.send(
            json.dumps(
                {
                    "event": "subscribe",
                    "pair": ["XBT/USD"],
                    "subscription": {"name": "book", "depth": 10},
                }
            )
        )
        sub = await recv_json(ws)
        assert sub["event"] == "subscriptionStatus"
        assert sub["status"] == "subscribed"
        assert sub["channelName"] == "book-10"
        assert sub["pair"] == "XBT/USD"
        snap = await recv_json(ws)
        assert snap[0] == sub["channelID"]
        assert "as" in snap[1]
        assert "bs" in snap[1]
        bids = {p: q for p, q, _ in snap[1]["bs"]}
        asks = {p: q for p, q, _ in snap[1]["as"]}
        n = 0
        while n < t.updates:
            msg = await recv_json(ws)
            if isinstance(msg, dict):
                assert msg["event"] == "heartbeat", msg
                continue
            checksum = None
            for obj in msg[1:-2]:
                for key, side in (("a", asks), ("b", bids)):
                    for price, vol, _ in obj.get(key, []):
                        if Decimal(vol) == 0:
                            side.pop(price, None)
                        else:
                            side[price] = vol
                checksum = obj.get("c", checksum)
            for side, rev in ((bids, True), (asks, False)):
                for price in sorted(side, key=Decimal, reverse=rev)[10:]:
                    del side[price]
            assert checksum is not None
            assert int(checksum) == v1_checksum(asks, bids)
            n += 1
    got = top_of(
        {Decimal(p): Decimal(q) for p, q in bids.items()},
        {Decimal(p): Decimal(q) for p, q in asks.items()},
        10,
    )
    assert got == want_books(t, "kraken-v1")["XBT/USD"]
    assert srv.report()["errors"] == []


async def get_json(session: aiohttp.ClientSession, url: str, method: str = "GET", **kw: Any) -> Any:
    async with session.request(method, url, **kw) as resp:
        assert resp.status == 200, (url, resp.status, await resp.text())
        return await resp.json(content_type=None)


async def test_binance_throughput_run() -> None:
    t = w3()
    async with running(t) as srv, aiohttp.ClientSession() as session:
        rest = f"http://127.0.0.1:{srv.port}/binance/api/v3"
        assert await get_json(session, f"{rest}/ping") == {}
        assert "serverTime" in await get_json(session, f"{rest}/time")
        info = await get_json(session, f"{rest}/exchangeInfo")
        syms = [s["symbol"] for s in info["symbols"]]
        assert syms == t.symbols["binance"]
        assert info["symbols"][0]["filters"][0]["tickSize"] == "0.01000000"
        # half the streams in the URL, the rest by SUBSCRIBE
        half = len(syms) // 2
        url_streams = "/".join(f"{s.lower()}@depth@100ms/{s.lower()}@trade" for s in syms[:half])
        async with connect(
            f"ws://127.0.0.1:{srv.port}/binance/stream?streams={url_streams}", max_size=None
        ) as ws:
            params = [f"{s.lower()}@{k}" for s in syms[half:] for k in ("depth@100ms", "trade")]
            await ws.send(json.dumps({"method": "SUBSCRIBE", "params": params, "id": 1}))
            books: dict[str, Any] = {}
            for s in syms:
                snap = await get_json(session, f"{rest}/depth?symbol={s}&limit=1000")
                books[s] = [
                    {Decimal(p): Decimal(q) for p, q in snap["bids"]},
                    {Decimal(p): Decimal(q) for p, q in snap["asks"]},
                    snap["lastUpdateId"],
                ]
            n_depth = n_trades = 0
            acked = False
            while n_depth < t.updates or n_trades < t.trades:
                msg = await recv_json(ws)
                if "result" in msg:
                    assert msg == {"result": None, "id": 1}
                    acked = True
                    continue
                d = msg["data"]
                if d["e"] == "trade":
                    assert msg["stream"] == d["s"].lower() + "@trade"
                    n_trades += 1
                    continue
                assert msg["stream"] == d["s"].lower() + "@depth@100ms"
                state = books[d["s"]]
                assert d["U"] == state[2] + 1, "§3.8: the first event must follow the snapshot"
                for key, side in (("b", state[0]), ("a", state[1])):
                    for price, qty in d[key]:
                        if Decimal(qty) == 0:
                            side.pop(Decimal(price), None)
                        else:
                            side[Decimal(price)] = Decimal(qty)
                state[2] = d["u"]
                n_depth += 1
            assert acked
            await ws.send(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": 2}))
            lst = await recv_json(ws)
            assert len(lst["result"]) == 2 * len(syms)
            await ws.send(json.dumps({"method": "NOPE", "id": 3}))
            err = await recv_json(ws)
            assert err["id"] == 3
            assert err["error"]["code"] == 2
        async with session.get(f"{rest}/nothing") as resp:
            assert resp.status == 404
    want = want_books(t, "binance")
    for s in syms:
        assert top_of(books[s][0], books[s][1], t.depth) == want[s]
    rep = srv.report()
    assert (rep["updates_sent"], rep["trades_sent"]) == (t.updates, t.trades)
    assert len(rep["errors"]) == 2  # NOPE and the unknown REST path


async def collect(ws: ClientConnection, n: int) -> list[Any]:
    """The next ``n`` JSON messages of ``ws`` that are not request answers."""
    out: list[Any] = []
    while len(out) < n:
        msg = await recv_json(ws)
        if "result" not in msg and "error" not in msg:
            out.append(msg)
    return out


async def test_binance_agg_trade_streams() -> None:
    """cryptofeed's streams: ``<sym>@depth@100ms/<sym>@aggTrade`` on one combined stream.
    Every trade comes as an aggTrade of that one trade, in the same order as ``@trade``."""
    t = w3()
    syms = t.symbols["binance"]
    lows = [s.lower() for s in syms]
    last = syms[-1]
    # neither connection covers the workload alone, so both are subscribed before the run
    a_streams = [f"{s}@depth@100ms" for s in lows] + [f"{s}@trade" for s in lows[:-1]]
    b_streams = [f"{s}@depth@100ms" for s in lows[1:]] + [f"{s}@aggTrade" for s in lows]
    n_last = sum(1 for e in t.trade_events if t.pairs[e.sym].symbol == last)
    n_first = sum(1 for u in t.book_updates if u.sym == 0)
    async with running(t) as srv:
        base = f"ws://127.0.0.1:{srv.port}/binance/stream?streams="
        async with (
            connect(base + "/".join(a_streams), max_size=None) as wa,
            connect(base + "/".join(b_streams), max_size=None) as wb,
        ):
            got_a = await collect(wa, t.updates + t.trades - n_last)
            got_b = await collect(wb, t.updates - n_first + t.trades)
            await wb.send(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": 9}))
            listed = await recv_json(wb)
        rep = srv.report()
    assert sorted(listed["result"]) == sorted(b_streams)
    trades_a = [m for m in got_a if m["data"]["e"] == "trade"]
    aggs = [m for m in got_b if m["data"]["e"] == "aggTrade"]
    depth_a = [m["data"] for m in got_a if m["data"]["e"] == "depthUpdate"]
    depth_b = [m["data"] for m in got_b if m["data"]["e"] == "depthUpdate"]
    assert len(aggs) == t.trades
    assert len(depth_b) == t.updates - n_first
    assert depth_b == [d for d in depth_a if d["s"] != syms[0]]
    for m, e in zip(aggs, t.trade_events, strict=True):
        pair = t.pairs[e.sym]
        d = m["data"]
        assert m["stream"] == pair.symbol.lower() + "@aggTrade"
        assert list(d) == ["e", "E", "s", "a", "p", "q", "f", "l", "T", "m", "M"]
        assert d["s"] == pair.symbol
        assert d["a"] == d["f"] == d["l"] == e.trade_id
        assert scaled(Decimal(d["p"]), 8) == e.price * 10 ** (8 - pair.price_precision)
        assert scaled(Decimal(d["q"]), 8) == e.qty * 10 ** (8 - pair.qty_precision)
        assert d["T"] == d["E"] == e.ts_us // 1000
        assert d["m"] is (not e.taker_buy)
        assert d["M"] is True
    # the same trades in the same order as on @trade
    same = [m["data"] for m in aggs if m["data"]["s"] != last]
    assert len(same) == len(trades_a) == t.trades - n_last
    for agg, trade in zip(same, (m["data"] for m in trades_a), strict=True):
        assert (agg["s"], agg["a"], agg["p"], agg["q"], agg["T"], agg["m"]) == (
            trade["s"],
            trade["t"],
            trade["p"],
            trade["q"],
            trade["T"],
            trade["m"],
        )
    assert (rep["updates_sent"], rep["trades_sent"]) == (t.updates, t.trades)
    assert rep["errors"] == []


async def test_binance_agg_trade_raw_stream_by_subscribe() -> None:
    """``/binance/ws`` + SUBSCRIBE ``@aggTrade``: raw aggTrade events; ``@trade`` on the same
    connection is refused (it would mean every trade twice) and recorded as an error."""
    t = w3()
    lows = [s.lower() for s in t.symbols["binance"]]
    half = len(lows) // 2
    async with running(t) as srv:
        async with connect(f"ws://127.0.0.1:{srv.port}/binance/ws", max_size=None) as ws:
            first = [f"{s}@{k}" for s in lows[:half] for k in ("depth", "aggTrade")]
            await ws.send(json.dumps({"method": "SUBSCRIBE", "params": first, "id": 1}))
            assert await recv_json(ws) == {"result": None, "id": 1}
            await ws.send(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": 2}))
            assert sorted((await recv_json(ws))["result"]) == sorted(first)
            mixed = {"method": "SUBSCRIBE", "params": [f"{lows[0]}@trade"], "id": 3}
            await ws.send(json.dumps(mixed))
            assert await recv_json(ws) == {"result": None, "id": 3}
            rest = [f"{s}@{k}" for s in lows[half:] for k in ("depth", "aggTrade")]
            await ws.send(json.dumps({"method": "SUBSCRIBE", "params": rest, "id": 4}))
            got = await collect(ws, t.updates + t.trades)
        rep = srv.report()
    assert [m["e"] for m in got] == ["depthUpdate" if k == T.BOOK else "aggTrade" for k in t.order]
    assert [m["a"] for m in got if m["e"] == "aggTrade"] == [e.trade_id for e in t.trade_events]
    assert [e["request"] for e in rep["errors"]] == [f"{lows[0]}@trade"]
    assert "not served" in rep["errors"][0]["error"]


async def test_kucoin_topic_with_spaces_around_symbols() -> None:
    """cryptofeed subscribes ``/market/level2: BTC-USDT,ETH-USDT,..`` (a space after the
    colon): the names are stripped, every symbol is subscribed, nothing is an error."""
    t = w4()
    syms = t.symbols["kucoin"]
    async with running(t) as srv, aiohttp.ClientSession() as session:
        rest = f"http://127.0.0.1:{srv.port}/kucoin"
        bullet = await get_json(session, f"{rest}/api/v1/bullet-public", method="POST")
        endpoint = bullet["data"]["instanceServers"][0]["endpoint"]
        async with connect(f"{endpoint}?token={bullet['data']['token']}") as ws:
            assert (await recv_json(ws))["type"] == "welcome"
            topic = "/market/level2: " + ", ".join(syms[:2]) + "," + ",".join(syms[2:]) + " "
            sub = {
                "id": 1,
                "type": "subscribe",
                "topic": topic,
                "privateChannel": False,
                "response": True,
            }
            await ws.send(json.dumps(sub))
            assert await recv_json(ws) == {"id": "1", "type": "ack"}
            got = [await recv_json(ws) for _ in range(t.updates)]
        rep = srv.report()
    assert {m["data"]["symbol"] for m in got} == set(syms)
    assert [m["data"]["sequenceEnd"] for m in got] == [u.last_id for u in t.book_updates]
    assert rep["updates_sent"] == t.updates
    assert rep["errors"] == []


async def test_kucoin_throughput_run() -> None:
    t = w4()
    syms = t.symbols["kucoin"]
    async with running(t) as srv, aiohttp.ClientSession() as session:
        rest = f"http://127.0.0.1:{srv.port}/kucoin"
        bullet = await get_json(session, f"{rest}/api/v1/bullet-public", method="POST")
        server = bullet["data"]["instanceServers"][0]
        assert server["endpoint"] == f"ws://127.0.0.1:{srv.port}/kucoin/ws"
        assert server["encrypt"] is False
        symbols = await get_json(session, f"{rest}/api/v2/symbols")
        assert [s["symbol"] for s in symbols["data"]] == syms
        assert (await get_json(session, f"{rest}/api/v1/timestamp"))["code"] == "200000"
        async with connect(
            f"{server['endpoint']}?token={bullet['data']['token']}&connectId=c1"
        ) as ws:
            assert await recv_json(ws) == {"id": "c1", "type": "welcome"}
            await ws.send(
                json.dumps(
                    {
                        "id": 77,
                        "type": "subscribe",
                        "topic": "/market/level2:" + ",".join(syms),
                        "privateChannel": False,
                        "response": True,
                    }
                )
            )
            assert await recv_json(ws) == {"id": "77", "type": "ack"}
            await ws.send(json.dumps({"id": "p1", "type": "ping"}))
            books: dict[str, Any] = {}
            for s in syms:
                snap = (
                    await get_json(session, f"{rest}/api/v1/market/orderbook/level2_100?symbol={s}")
                )["data"]
                assert isinstance(snap["sequence"], str)
                books[s] = [
                    {Decimal(p): Decimal(q) for p, q in snap["bids"]},
                    {Decimal(p): Decimal(q) for p, q in snap["asks"]},
                    int(snap["sequence"]),
                ]
            n = 0
            pong = False
            while n < t.updates:
                msg = await recv_json(ws)
                if msg["type"] == "pong":
                    assert msg["id"] == "p1"
                    pong = True
                    continue
                d = msg["data"]
                state = books[d["symbol"]]
                assert d["sequenceStart"] <= state[2] + 1 < d["sequenceEnd"] + 1  # §2.5 step 4
                changes = [(e, 0) for e in d["changes"]["bids"]] + [
                    (e, 1) for e in d["changes"]["asks"]
                ]
                for (price, size, seq), side in sorted(changes, key=lambda x: int(x[0][2])):
                    if int(seq) <= state[2] or price == "0":
                        continue
                    book = state[side]
                    if Decimal(size) == 0:
                        book.pop(Decimal(price), None)
                    else:
                        book[Decimal(price)] = Decimal(size)
                state[2] = d["sequenceEnd"]
                n += 1
            assert pong
    want = want_books(t, "kucoin")
    for s in syms:
        assert top_of(books[s][0], books[s][1], t.depth) == want[s]
    assert srv.report()["errors"] == []


async def test_tls_wss_and_https(cert: tuple[str, str]) -> None:
    t = w1()
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(*cert)
    client_ctx = ssl.create_default_context(cafile=cert[0])
    async with running(t, ssl_context=server_ctx) as srv:
        async with aiohttp.ClientSession() as session:
            pairs = await get_json(
                session,
                f"https://localhost:{srv.port}/kraken/0/public/AssetPairs?pair=BTC/USD",
                ssl=client_ctx,
            )
            entry = pairs["result"]["BTC/USD"]
            assert (entry["wsname"], entry["pair_decimals"], entry["lot_decimals"]) == (
                "XBT/USD",
                1,
                8,
            )
            everything = await get_json(
                session, f"https://127.0.0.1:{srv.port}/kraken/0/public/AssetPairs", ssl=client_ctx
            )
            assert list(everything["result"]) == ["XXBTZUSD"]
            assets = await get_json(
                session, f"https://127.0.0.1:{srv.port}/kraken/0/public/Assets", ssl=client_ctx
            )
            assert assets["result"]["XXBT"]["altname"] == "XBT"
        books, n, _ = await kraken_v2_client(
            f"wss://127.0.0.1:{srv.port}/kraken/v2", t, ["BTC/USD"], ssl_ctx=client_ctx
        )
    assert n == t.updates
    assert book_levels(books["BTC/USD"]) == want_books(t, "kraken-v2")["BTC/USD"]


async def test_latency_mode_paces_and_records_send_times() -> None:
    t = traffic("W1", 0.0015)  # 300 updates
    rate = 3000.0
    async with running(t, "latency", rate=rate) as srv:
        _, n, times = await kraken_v2_client(f"ws://127.0.0.1:{srv.port}/kraken/v2", t, ["BTC/USD"])
        rep = srv.report()
    sent = rep["send_mono_ns"]
    assert n == len(sent) == t.updates == rep["updates_sent"]
    assert sent == sorted(sent)
    span = (sent[-1] - sent[0]) / 1e9
    assert (t.updates - 1) / rate * 0.9 <= span <= (t.updates - 1) / rate + 0.5
    lags = [(r - s) / 1e6 for r, s in zip(times, sent, strict=True)]
    assert min(lags) > 0
    assert sorted(lags)[len(lags) // 2] < 50


async def test_recovery_mode_drops_and_serves_a_fresh_snapshot() -> None:
    t = traffic("W1", 0.0015)  # 300 updates
    url_path = "/kraken/v2"
    async with running(t, "recovery", rate=2000.0, drop_after=100, outage_s=0.05) as srv:
        url = f"ws://127.0.0.1:{srv.port}{url_path}"
        received = 0
        drops = 0
        close_frames: list[object] = []
        before_drop = -1
        book: Book | None = None
        snapshots = 0
        pair = t.pairs[0]
        pp, qp = pair.price_precision, pair.qty_precision
        async with asyncio.timeout(15):
            while True:
                try:
                    async with connect(url) as ws:
                        await recv_json(ws)  # status
                        await ws.send(
                            json.dumps(
                                {
                                    "method": "subscribe",
                                    "params": {
                                        "channel": "book",
                                        "symbol": ["BTC/USD"],
                                        "depth": 10,
                                    },
                                }
                            )
                        )
                        while True:
                            try:
                                msg = await recv_json(ws, wait_s=0.5, parse_float=Decimal)
                            except TimeoutError:
                                if srv.run_complete:
                                    break
                                continue
                            if msg.get("channel") != "book":
                                continue
                            d = msg["data"][0]
                            if msg["type"] == "snapshot":
                                snapshots += 1
                                book = Book("kraken", "BTC/USD", 10, pp, qp)
                            else:
                                received += 1
                            assert book is not None
                            book.apply(
                                [(scaled(x["price"], pp), scaled(x["qty"], qp)) for x in d["bids"]],
                                [(scaled(x["price"], pp), scaled(x["qty"], qp)) for x in d["asks"]],
                            )
                            assert book.checksum() == d["checksum"]
                    break
                except ConnectionClosedError as exc:
                    close_frames.append(exc.rcvd)  # an abort sends no close frame
                    drops += 1
                    before_drop = received
                except (InvalidStatus, OSError):
                    await asyncio.sleep(0.01)  # refused during the outage: retry
        rep = srv.report()
    drop = rep["drop"]
    assert drops == 1
    assert close_frames == [None]
    assert before_drop == drop["drop_after"] == 100
    assert snapshots == 2
    assert received == rep["updates_sent"] == len(rep["send_mono_ns"])
    assert drop["missed"] > 0
    assert rep["updates_sent"] + drop["missed"] == t.updates
    assert drop["drop_mono_ns"] < drop["reaccept_mono_ns"] <= drop["resnapshot_mono_ns"]
    assert (drop["reaccept_mono_ns"] - drop["drop_mono_ns"]) / 1e9 >= 0.05  # the outage
    assert book is not None
    assert book_levels(book) == want_books(t, "kraken-v2")["BTC/USD"]


# --------------------------------------------------------------------------- CLI


def start_cli(*args: str) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.server", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("READY "), line
    return proc, int(line.split()[1])


async def test_cli_run_writes_the_report_and_exits(tmp_path: Path) -> None:
    t = w1()
    path = tmp_path / "w1.pkl"
    T.save(t, path)
    report = tmp_path / "report.json"
    proc, port = start_cli(
        "--traffic",
        str(path),
        "--mode",
        "throughput",
        "--report",
        str(report),
        "--settle-s",
        "0.05",
    )
    try:
        _books, n, _ = await kraken_v2_client(f"ws://127.0.0.1:{port}/kraken/v2", t, ["BTC/USD"])
        assert n == t.updates
        for _ in range(200):  # the client left after the last update: the server ends
            if proc.poll() is not None:
                break
            await asyncio.sleep(0.025)
        assert proc.poll() == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    rep = json.loads(report.read_text())
    for key in ("start_mono_ns", "end_mono_ns", "updates_sent", "trades_sent", "errors"):
        assert key in rep
    assert rep["updates_sent"] == t.updates
    assert rep["complete"] is True


async def test_cli_sigterm_writes_the_report(tmp_path: Path) -> None:
    t = w3()
    path = tmp_path / "w3.pkl"
    T.save(t, path)
    report = tmp_path / "report.json"
    proc, port = start_cli(
        "--traffic", str(path), "--mode", "latency", "--rate", "100", "--report", str(report)
    )
    try:
        async with aiohttp.ClientSession() as session:
            await get_json(session, f"http://127.0.0.1:{port}/binance/api/v3/ping")
            async with session.get(f"http://127.0.0.1:{port}/kraken/0/public/Time") as resp:
                assert resp.status == 404  # a Binance run: other venues are not served
        proc.send_signal(signal.SIGTERM)
        await asyncio.to_thread(proc.wait, 10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0
    rep = json.loads(report.read_text())
    assert rep["complete"] is False
    assert rep["updates_sent"] == 0
    assert rep["send_mono_ns"] == []
    assert rep["rest_requests"] == 2
    assert len(rep["errors"]) == 1


def test_make_cert_cli(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "bench.server", "--make-cert", str(tmp_path / "c")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    paths = json.loads(out.stdout)
    ctx = ssl.create_default_context(cafile=paths["cert"])
    assert ctx.cert_store_stats()["x509_ca"] == 1
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(paths["cert"], paths["key"])


# --------------------------------------------------------------------------- gapless


async def test_gapless_kraken_v2_against_the_server() -> None:
    t = w1()
    async with running(t, settle_s=0.3) as srv:
        url = f"ws://127.0.0.1:{srv.port}/kraken/v2"
        updates = 0
        async with gapless.connect(gkraken.book("BTC/USD", depth=10), urls={"kraken": url}) as feed:
            async with asyncio.timeout(15):
                async for ev in feed:
                    if isinstance(ev, BookUpdate):
                        updates += 1
                        if updates == t.updates:
                            break
            view = feed.book("BTC/USD")
            assert view is not None
            assert view.valid
            got = {
                "bids": [(lv.price, lv.qty) for lv in view.bids()],
                "asks": [(lv.price, lv.qty) for lv in view.asks()],
            }
    assert updates == t.updates
    assert got == want_books(t, "kraken-v2")["BTC/USD"]
    assert srv.report()["errors"] == []


async def test_gapless_binance_against_the_server() -> None:
    t = traffic("W3", 0.002)
    syms = t.symbols["binance"]
    last_u = {t.pairs[u.sym].symbol: u.last_id for u in t.book_updates}
    async with running(t, settle_s=0.5) as srv:
        base = f"127.0.0.1:{srv.port}/binance"
        specs = [f(s) for s in syms for f in (gbinance.book, gbinance.trades)]
        seen: dict[str, int] = {}
        trades = 0
        async with gapless.connect(
            *specs,
            urls={"binance": f"ws://{base}", "binance_rest": f"http://{base}"},
            binance=gbinance.BinanceOptions(snapshot_limit=100),
        ) as feed:
            async with asyncio.timeout(15):
                async for ev in feed:
                    if isinstance(ev, Trade):
                        trades += 1
                    elif isinstance(ev, BookUpdate | BookSnapshot) and ev.seq is not None:
                        seen[ev.symbol] = ev.seq
                    if trades == t.trades and all(seen.get(s) == u for s, u in last_u.items()):
                        break
            want = want_books(t, "binance")
            for s in syms:
                view = feed.book(s, venue="binance")
                assert view is not None
                assert view.valid
                got = {
                    "bids": [(lv.price, lv.qty) for lv in view.bids(t.depth)],
                    "asks": [(lv.price, lv.qty) for lv in view.asks(t.depth)],
                }
                assert got == want[s], s
    assert srv.report()["errors"] == []


async def test_gapless_kucoin_against_the_server() -> None:
    t = traffic("W4", 0.002)
    syms = t.symbols["kucoin"]
    last_seq = {t.pairs[u.sym].symbol: u.last_id for u in t.book_updates}
    async with running(t, settle_s=0.5) as srv:
        seen: dict[str, int] = {}
        async with gapless.connect(
            *[gkucoin.book(s) for s in syms],
            urls={"kucoin_rest": f"http://127.0.0.1:{srv.port}/kucoin"},
        ) as feed:
            async with asyncio.timeout(15):
                async for ev in feed:
                    if isinstance(ev, BookUpdate | BookSnapshot) and ev.seq is not None:
                        seen[ev.symbol] = ev.seq
                    if all(seen.get(s, 0) >= q for s, q in last_seq.items()):
                        break
            want = want_books(t, "kucoin")
            for s in syms:
                view = feed.book(s, venue="kucoin")
                assert view is not None
                assert view.valid
                got = {
                    "bids": [(lv.price, lv.qty) for lv in view.bids(t.depth)],
                    "asks": [(lv.price, lv.qty) for lv in view.asks(t.depth)],
                }
                assert got == want[s], s
    assert srv.report()["errors"] == []


def test_fmt_helpers_match_the_protocols() -> None:
    assert T.level_text("kraken-v2", 628071, 1) == "62807.1"
    assert T.level_text("binance", 628071, 1) == "62807.10000000"
    assert T.level_text("kucoin", 628070, 1) == "62807"
    assert fmt_fixed(0, 8) == "0.00000000"
