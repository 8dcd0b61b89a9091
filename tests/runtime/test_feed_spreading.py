"""More streams than one connection may carry are spread over several connections.

Binance caps a connection at 1024 streams (protocols.md §3.2), KuCoin at 400
topics (§2.4), and a Kraken book message carries no depth, so one connection
holds one book depth per symbol (§1.7). :func:`gapless.connect` places every
stream on the first logical connection that can carry it and opens another
one when none can (``Feed._place``).

Pure tests check the placement at the real caps. Loopback tests (virtual
time) run the client against the simulators, which enforce the same caps:
Binance at the real 1024 with every stream acknowledged, then Binance and
KuCoin with a small cap configured on both sides, where every stream also
has to deliver data. The last tests pin what a runtime ``Feed.subscribe``
does when the connection it picks is full.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

import pytest

import gapless
from gapless import kraken
from gapless.demo import demo_client_options
from gapless.errors import ConfigError
from gapless.events import (
    BookSnapshot,
    Event,
    MarketEvent,
    Subscribed,
    SubscriptionRejected,
    Trade,
)
from gapless.runtime.clock import loop_anchored_wall_clock
from gapless.runtime.feed import Feed
from gapless.runtime.supervisor import RuntimeOptions
from gapless.sim import (
    KUCOIN_PAIRS,
    BinancePair,
    BinanceSim,
    BinanceSimConfig,
    KrakenSim,
    KucoinSim,
    KucoinSimConfig,
    PairSpec,
    SimConfig,
)
from gapless.venues import binance, kucoin
from gapless.venues.base import StreamSpec
from gapless.venues.binance.adapter import BinanceOptions
from gapless.venues.kucoin.adapter import KucoinOptions

BINANCE_CAP = 1024  # protocols.md §3.2
KUCOIN_CAP = 400  # protocols.md §2.4 (newer docs; legacy 300)


# ---------------------------------------------------------------------- helpers


def _binance_pairs(n: int) -> tuple[BinancePair, ...]:
    """``n`` synthetic symbols (the simulator's defaults hold only four)."""
    return tuple(
        BinancePair(f"X{i:03d}USDT", f"X{i:03d}", "USDT", "100.00", 2, 5, "0.00001")
        for i in range(n)
    )


def _kucoin_pairs(n: int) -> tuple[PairSpec, ...]:
    """``n`` synthetic KuCoin pairs."""
    return tuple(
        PairSpec(f"X{i:03d}-USDT", "100.00", 2, 4, qty_min="0.01", cost_min="0.1") for i in range(n)
    )


def _binance_specs(symbols: Iterable[str], books: int) -> list[StreamSpec]:
    """trade + bookTicker of every symbol, plus a book for the first ``books``."""
    syms = list(symbols)
    specs = [f(s) for s in syms for f in (binance.trades, binance.book_ticker)]
    return [*specs, *(binance.book(s) for s in syms[:books])]


def _kucoin_specs(symbols: Iterable[str]) -> list[StreamSpec]:
    return [f(s) for s in symbols for f in (kucoin.book, kucoin.trades, kucoin.ticker)]


def _placement(feed: Feed, venue: str) -> list[list[str]]:
    return [a.streams() for a in feed.adapters if a.venue == venue]


def _runtime() -> RuntimeOptions:
    _, ropts = demo_client_options("ws://unused")
    return dataclasses.replace(ropts, wall_clock=loop_anchored_wall_clock())


async def _wait_for(pred: Callable[[], bool], limit_s: float = 60.0) -> None:
    """Poll in virtual time (0.1 s steps: no tiny sleeps under a quantized clock)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + limit_s
    while not pred():
        if loop.time() > end:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.1)


@contextlib.asynccontextmanager
async def _consuming(feed: Feed) -> AsyncIterator[list[Event]]:
    """Collect the feed's events in the background while the body runs."""
    events: list[Event] = []

    async def consume() -> None:
        async for ev in feed:
            events.append(ev)

    task = asyncio.create_task(consume())
    try:
        yield events
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _all_live(feed: Feed) -> bool:
    return all(a.stream_state(k) == "live" for a in feed.adapters for k in a.streams())


def _acked(events: list[Event]) -> Counter[str]:
    """Acknowledged streams per connection (``binance#2.1`` = connection 2, dial 1)."""
    return Counter(e.conn for e in events if isinstance(e, Subscribed))


def _delivering(events: list[Event]) -> set[str]:
    return {e.stream for e in events if isinstance(e, MarketEvent)}


def _violations(truth: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [t for t in truth if t["k"] in ("violation", "refused")]


# ---------------------------------------------------------------------- binance


def test_binance_spreads_1100_streams_over_two_connections_at_the_1024_cap() -> None:
    assert BinanceOptions().max_streams == BINANCE_CAP
    specs = _binance_specs((p.symbol for p in _binance_pairs(400)), books=300)
    assert len(specs) == 1100
    feed = gapless.connect(*specs)  # placement happens here; nothing is dialled
    placed = _placement(feed, "binance")
    assert [len(s) for s in placed] == [BINANCE_CAP, 1100 - BINANCE_CAP]
    keys = [k for streams in placed for k in streams]
    assert sorted(keys) == sorted(s.key for s in specs)  # each stream exactly once


def test_binance_placement_fills_connections_in_order_and_ignores_repeats() -> None:
    specs = _binance_specs((p.symbol for p in _binance_pairs(1500)), books=0)
    assert len(specs) == 3000
    feed = gapless.connect(*specs, *specs[1500:1600])  # repeats of streams on connection 2
    placed = _placement(feed, "binance")
    assert [len(s) for s in placed] == [BINANCE_CAP, BINANCE_CAP, 3000 - 2 * BINANCE_CAP]
    assert [k for streams in placed for k in streams] == [s.key for s in specs]


def test_binance_cap_cannot_be_configured_above_the_venue_limit() -> None:
    with pytest.raises(ConfigError, match="max_streams"):
        BinanceOptions(max_streams=BINANCE_CAP + 1)


@pytest.mark.looptime
async def test_binance_1100_streams_acknowledged_over_loopback_at_the_1024_cap() -> None:
    """Real cap on both sides: the simulator refuses any SUBSCRIBE that would take
    a connection past 1024 streams, so every ack proves the split was right.
    The market ticks slowly (acks, not data volume, are the point here)."""
    pairs = _binance_pairs(500)
    config = BinanceSimConfig(
        seed=3,
        symbols=tuple(p.symbol for p in pairs),
        pairs=pairs,
        tick_rate_hz=0.5,
        book_levels=60,
        min_levels=50,
    )
    assert config.max_streams == BINANCE_CAP
    specs = _binance_specs(config.symbols, books=100)
    assert len(specs) == 1100
    async with BinanceSim(config) as sim:
        bopts = BinanceOptions(snapshot_limit=100, subscribe_ack_timeout_s=5.0)
        urls = {"binance": sim.ws_url, "binance_rest": sim.rest_url}
        async with (
            gapless.connect(*specs, urls=urls, binance=bopts, runtime=_runtime()) as feed,
            _consuming(feed) as events,
        ):
            await _wait_for(lambda: sum(_acked(events).values()) >= len(specs))
            # and data flows on both connections
            await _wait_for(
                lambda: all(set(s) & _delivering(events) for s in _placement(feed, "binance"))
            )
            placed = _placement(feed, "binance")
        truth = list(sim.truth)
    assert [len(s) for s in placed] == [BINANCE_CAP, 1100 - BINANCE_CAP]
    acked = _acked(events)
    assert sorted(acked.values()) == [1100 - BINANCE_CAP, BINANCE_CAP]
    assert {e.stream for e in events if isinstance(e, Subscribed)} == {s.key for s in specs}
    assert not [e for e in events if isinstance(e, SubscriptionRejected)]
    assert len([t for t in truth if t["k"] == "conn_open"]) == 2
    assert not _violations(truth)


@pytest.mark.looptime
async def test_binance_small_cap_every_stream_live_and_delivering_over_loopback() -> None:
    """Cap 50 on both sides, 130 streams (trade, bookTicker, book) -> 3 connections;
    every stream is acknowledged, goes live (books synced) and delivers data."""
    cap = 50
    pairs = _binance_pairs(50)
    config = BinanceSimConfig(
        seed=4,
        symbols=tuple(p.symbol for p in pairs),
        pairs=pairs,
        tick_rate_hz=10.0,
        book_levels=60,
        min_levels=50,
        max_streams=cap,
    )
    specs = _binance_specs(config.symbols, books=30)
    assert len(specs) == 130
    async with BinanceSim(config) as sim:
        bopts = BinanceOptions(max_streams=cap, snapshot_limit=100, subscribe_ack_timeout_s=5.0)
        urls = {"binance": sim.ws_url, "binance_rest": sim.rest_url}
        async with (
            gapless.connect(*specs, urls=urls, binance=bopts, runtime=_runtime()) as feed,
            _consuming(feed) as events,
        ):
            want = {s.key for s in specs}
            await _wait_for(lambda: _delivering(events) >= want and _all_live(feed))
            placed = _placement(feed, "binance")
        truth = list(sim.truth)
    assert [len(s) for s in placed] == [cap, cap, 130 - 2 * cap]
    assert sorted(_acked(events).values()) == [130 - 2 * cap, cap, cap]
    assert not [e for e in events if isinstance(e, SubscriptionRejected)]
    books = {e.stream for e in events if isinstance(e, BookSnapshot)}
    assert books == {s.key for s in specs if s.channel == "book"}
    assert len([t for t in truth if t["k"] == "conn_open"]) == 3
    assert not _violations(truth)


# ---------------------------------------------------------------------- kucoin


@pytest.mark.parametrize("cap", [None, KUCOIN_CAP])
def test_kucoin_spreads_topics_over_connections_at_the_cap(cap: int | None) -> None:
    """The default is the legacy 300 (§2.4: the lower of the documented 300 / 400);
    400 is the most that can be configured."""
    assert KucoinOptions().max_topics_per_connection == 300
    kopts = KucoinOptions() if cap is None else KucoinOptions(max_topics_per_connection=cap)
    limit = kopts.max_topics_per_connection
    specs = _kucoin_specs(p.symbol for p in _kucoin_pairs(334))
    assert len(specs) == 1002
    feed = gapless.connect(*specs, kucoin=kopts)
    placed = _placement(feed, "kucoin")
    full, rest = divmod(len(specs), limit)
    assert [len(s) for s in placed] == [limit] * full + [rest]
    assert [k for streams in placed for k in streams] == [s.key for s in specs]


@pytest.mark.parametrize("limit", [0, KUCOIN_CAP + 1])
def test_kucoin_topic_cap_is_validated(limit: int) -> None:
    with pytest.raises(ConfigError, match="max_topics_per_connection"):
        KucoinOptions(max_topics_per_connection=limit)


@pytest.mark.looptime
async def test_kucoin_small_cap_every_topic_live_and_delivering_over_loopback() -> None:
    """Topic limit 5 on both sides, 18 topics (level2, match, ticker of 6 pairs)
    -> 4 connections, each with its own bullet token; every topic acked and delivering."""
    cap = 5
    pairs = (*KUCOIN_PAIRS, *_kucoin_pairs(3))
    config = KucoinSimConfig(
        seed=4,
        symbols=tuple(p.symbol for p in pairs),
        pairs=pairs,
        tick_rate_hz=20.0,
        max_topics_per_conn=cap,
    )
    specs = _kucoin_specs(config.symbols)
    assert len(specs) == 18
    async with KucoinSim(config) as sim:
        kopts = KucoinOptions(max_topics_per_connection=cap, subscribe_ack_timeout_s=3.0)
        urls = {"kucoin_rest": sim.rest_url}
        async with (
            gapless.connect(*specs, urls=urls, kucoin=kopts, runtime=_runtime()) as feed,
            _consuming(feed) as events,
        ):
            want = {s.key for s in specs}
            await _wait_for(lambda: _delivering(events) >= want and _all_live(feed))
            placed = _placement(feed, "kucoin")
        truth = list(sim.truth)
    assert [len(s) for s in placed] == [cap, cap, cap, 18 - 3 * cap]
    assert sorted(_acked(events).values()) == [18 - 3 * cap, cap, cap, cap]
    assert not [e for e in events if isinstance(e, SubscriptionRejected)]
    assert len([t for t in truth if t["k"] == "conn_open"]) == 4
    assert not _violations(truth)


# ---------------------------------------------------------------------- kraken


def test_kraken_two_depths_of_one_symbol_land_on_two_connections() -> None:
    feed = gapless.connect(
        kraken.book("BTC/USD", depth=10),
        kraken.trades("BTC/USD"),
        kraken.book("BTC/USD", depth=25),
        kraken.book("ETH/USD", depth=25),
    )
    assert _placement(feed, "kraken") == [
        ["kraken:book:BTC/USD:10", "kraken:trade:BTC/USD", "kraken:book:ETH/USD:25"],
        ["kraken:book:BTC/USD:25"],
    ]


@pytest.mark.looptime
async def test_kraken_two_depths_of_one_symbol_both_live_over_loopback() -> None:
    cfg = SimConfig(seed=5, symbols=("BTC/USD",), tick_rate_hz=20.0)
    async with KrakenSim(cfg) as sim:
        kopts, _ = demo_client_options(sim.url)
        specs = (kraken.book("BTC/USD", depth=10), kraken.book("BTC/USD", depth=25))
        async with (
            gapless.connect(*specs, kraken=kopts, runtime=_runtime()) as feed,
            _consuming(feed) as events,
        ):
            await _wait_for(lambda: _delivering(events) >= {s.key for s in specs})
            views = [feed.book("BTC/USD", depth=d) for d in (10, 25)]
            assert [v.depth if v is not None else None for v in views] == [10, 25]
            assert all(v is not None and v.valid for v in views)
    acked = {e.stream: e.conn for e in events if isinstance(e, Subscribed)}
    assert set(acked) == {s.key for s in specs}
    assert len(set(acked.values())) == 2  # one connection each


# ------------------------------------------------------ runtime subscribe (Feed._control)


async def test_kraken_runtime_subscribe_of_a_second_depth_raises_config_error() -> None:
    """The only Kraken connection already has the symbol's book at another depth:
    ``subscribe`` refuses at once (no connection is opened at runtime)."""
    feed = gapless.connect(kraken.book("BTC/USD", depth=10), urls={"kraken": "ws://127.0.0.1:9/v2"})
    async with feed:
        with pytest.raises(ConfigError, match="no connection can carry kraken:book:BTC/USD:25"):
            feed.subscribe(kraken.book("BTC/USD", depth=25))
        feed.subscribe(kraken.book("ETH/USD", depth=25))  # another symbol is fine
        feed.subscribe(kraken.book("BTC/USD", depth=10))  # the same depth is a no-op


@contextlib.asynccontextmanager
async def _binance_cap2(
    *specs: StreamSpec,
) -> AsyncIterator[tuple[BinanceSim, Feed, list[Event]]]:
    """Cap 2 on both sides over loopback; yields once every stream is acked."""
    pairs = _binance_pairs(4)
    config = BinanceSimConfig(
        seed=6,
        symbols=tuple(p.symbol for p in pairs),
        pairs=pairs,
        tick_rate_hz=10.0,
        book_levels=60,
        min_levels=50,
        max_streams=2,
    )
    async with BinanceSim(config) as sim:
        bopts = BinanceOptions(max_streams=2, subscribe_ack_timeout_s=5.0)
        urls = {"binance": sim.ws_url, "binance_rest": sim.rest_url}
        async with (
            gapless.connect(*specs, urls=urls, binance=bopts, runtime=_runtime()) as feed,
            _consuming(feed) as events,
        ):
            await _wait_for(lambda: sum(_acked(events).values()) >= len(specs))
            yield sim, feed, events


def _trades(*idx: int) -> list[StreamSpec]:
    return [binance.trades(f"X{i:03d}USDT") for i in idx]


@pytest.mark.looptime
async def test_binance_runtime_subscribe_when_every_connection_is_full_is_refused() -> None:
    """Connections are opened by ``connect`` only. A runtime subscribe that no
    connection has room for raises a clear ConfigError at once; nothing is sent,
    so the venue's cap is never broken."""
    a, b, c, d = _trades(0, 1, 2, 3)
    async with _binance_cap2(a, b, c, d) as (sim, feed, events):
        assert _placement(feed, "binance") == [[a.key, b.key], [c.key, d.key]]
        new = binance.book_ticker("X000USDT")
        with pytest.raises(ConfigError, match="every binance connection is full"):
            feed.subscribe(new)
        await asyncio.sleep(2.0)
        assert not [e for e in events if isinstance(e, SubscriptionRejected)]
        assert new.key not in _delivering(events)
        assert _placement(feed, "binance") == [[a.key, b.key], [c.key, d.key]]
        truth = list(sim.truth)
    assert not _violations(truth)


@pytest.mark.looptime
async def test_kucoin_runtime_subscribe_when_every_connection_is_full_is_refused() -> None:
    cap = 2
    config = KucoinSimConfig(
        seed=6, symbols=("BTC-USDT",), tick_rate_hz=20.0, max_topics_per_conn=cap
    )
    specs = (kucoin.trades("BTC-USDT"), kucoin.ticker("BTC-USDT"))
    async with KucoinSim(config) as sim:
        kopts = KucoinOptions(max_topics_per_connection=cap, subscribe_ack_timeout_s=3.0)
        urls = {"kucoin_rest": sim.rest_url}
        async with (
            gapless.connect(*specs, urls=urls, kucoin=kopts, runtime=_runtime()) as feed,
            _consuming(feed) as events,
        ):
            await _wait_for(lambda: sum(_acked(events).values()) >= len(specs))
            new = kucoin.book("BTC-USDT")
            with pytest.raises(ConfigError, match="every kucoin connection is full"):
                feed.subscribe(new)
            await asyncio.sleep(2.0)
            assert not [e for e in events if isinstance(e, SubscriptionRejected)]
            assert new.key not in _delivering(events)
            assert _placement(feed, "kucoin") == [[s.key for s in specs]]
        truth = list(sim.truth)
    assert not _violations(truth)


@pytest.mark.looptime
async def test_binance_runtime_subscribe_goes_to_a_connection_with_room() -> None:
    a, b, c = _trades(0, 1, 2)
    async with _binance_cap2(a, b, c) as (_sim, feed, events):
        assert _placement(feed, "binance") == [[a.key, b.key], [c.key]]
        new = binance.book_ticker("X000USDT")
        feed.subscribe(new)
        await asyncio.sleep(3.0)
        assert not [e for e in events if isinstance(e, SubscriptionRejected)]
        assert _placement(feed, "binance") == [[a.key, b.key], [c.key, new.key]]


@pytest.mark.looptime
async def test_binance_runtime_subscribe_of_a_stream_already_carried_is_a_no_op() -> None:
    a, b, c = _trades(0, 1, 2)
    async with _binance_cap2(a, b, c) as (_sim, feed, events):
        feed.unsubscribe(a)  # connection 1 now has room
        feed.subscribe(c)  # already live on connection 2
        await asyncio.sleep(3.0)
        trade_ids = [e.trade_id for e in events if isinstance(e, Trade) and e.stream == c.key]
        assert len(trade_ids) == len(set(trade_ids))  # never twice
        carried = [k for streams in _placement(feed, "binance") for k in streams]
        assert carried.count(c.key) == 1
