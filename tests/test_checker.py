"""Unit tests for gapless.checker: hand-built truth records against hand-built events."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from gapless.book import Book, BookView
from gapless.checker import CheckReport, check
from gapless.events import (
    BookSnapshot,
    BookUpdate,
    Event,
    Gap,
    GapCause,
    Level,
    Subscribed,
    Ticker,
    Trade,
    VenueStatus,
)

SYM = "BTC/USD"
TRADES = "kraken:trade:BTC/USD"
BOOK = "kraken:book:BTC/USD:10"
TICKER = "kraken:ticker:BTC/USD"
T0 = 1_000_000_000_000


def subscribed(stream: str, ts: int | None) -> Subscribed:
    return Subscribed(venue="kraken", local_ts_ns=0, conn="c1", stream=stream, exchange_ts_ns=ts)


def trade(tid: int, ts: int, symbol: str = SYM) -> Trade:
    return Trade(
        venue="kraken",
        local_ts_ns=0,
        symbol=symbol,
        exchange_ts_ns=ts,
        stream=f"kraken:trade:{symbol}",
        trade_id=tid,
        price=Decimal("1.0"),
        qty=Decimal("1"),
        side="buy",
    )


def update(ts: int, checksum: int | None) -> BookUpdate:
    return BookUpdate(
        venue="kraken",
        local_ts_ns=0,
        symbol=SYM,
        exchange_ts_ns=ts,
        stream=BOOK,
        depth=10,
        bids=(),
        asks=(),
        checksum=checksum,
    )


def snapshot(ts: int, checksum: int | None) -> BookSnapshot:
    return BookSnapshot(
        venue="kraken",
        local_ts_ns=0,
        symbol=SYM,
        exchange_ts_ns=ts,
        stream=BOOK,
        depth=10,
        bids=(),
        asks=(),
        checksum=checksum,
    )


def tick(ts: int) -> Ticker:
    one = Decimal(1)
    return Ticker(
        venue="kraken",
        local_ts_ns=0,
        symbol=SYM,
        exchange_ts_ns=ts,
        stream=TICKER,
        bid=one,
        bid_qty=one,
        ask=one,
        ask_qty=one,
        last=one,
        volume=one,
        vwap=one,
        low=one,
        high=one,
        change=one,
        change_pct=one,
    )


def gap(stream: str, start: int | None, end: int | None) -> Gap:
    return Gap(
        venue="kraken",
        local_ts_ns=0,
        stream=stream,
        symbol=SYM,
        cause=GapCause.DISCONNECT,
        start_ts_ns=start,
        end_ts_ns=end,
    )


def t_rec(tid: int, ts: int, symbol: str = SYM) -> dict[str, Any]:
    return {"k": "trade", "symbol": symbol, "trade_id": tid, "ts_ns": ts}


def b_rec(ts: int, checksum: int) -> dict[str, Any]:
    return {"k": "book", "symbol": SYM, "depth": 10, "ts_ns": ts, "checksum": checksum}


def s_rec(ts: int, checksum: int) -> dict[str, Any]:
    return {
        "k": "snapshot",
        "conn": 1,
        "symbol": SYM,
        "depth": 10,
        "ts_ns": ts,
        "checksum": checksum,
    }


def counts(r: CheckReport) -> tuple[int, int, int, int, int, int]:
    return (r.published, r.delivered_once, r.in_declared_gaps, r.lost, r.duplicated, r.unexpected)


# ------------------------------------------------------------------ classification


def test_delivered_once() -> None:
    truth = [t_rec(1, T0 + 1), t_rec(2, T0 + 2), t_rec(3, T0 + 3)]
    events: list[Event] = [
        subscribed(TRADES, T0),
        trade(1, T0 + 1),
        trade(2, T0 + 2),
        trade(3, T0 + 3),
    ]
    r = check(truth, events)
    assert counts(r) == (3, 3, 0, 0, 0, 0)
    assert r.delivered == 3
    assert r.streams[TRADES].delivered_once == 3
    assert r.streams[TRADES].published == 3


def test_lost() -> None:
    truth = [t_rec(i, T0 + i) for i in range(1, 9)]
    events: list[Event] = [subscribed(TRADES, T0), trade(1, T0 + 1)]
    r = check(truth, events)
    assert counts(r) == (8, 1, 0, 7, 0, 0)
    assert r.streams[TRADES].lost == 7
    assert r.streams[TRADES].lost_examples == [t_rec(i, T0 + i) for i in range(2, 7)]  # first 5
    assert not r.ok


def test_gap_interval_start_exclusive_end_inclusive() -> None:
    truth = [t_rec(i, T0 + i) for i in range(1, 6)]
    events: list[Event] = [subscribed(TRADES, T0), trade(1, T0 + 1), gap(TRADES, T0 + 2, T0 + 4)]
    r = check(truth, events)
    # ts 2 == start: not covered (lost); 3, 4 (== end) covered; 5: lost
    assert counts(r) == (5, 1, 2, 2, 0, 0)
    assert [rec["trade_id"] for rec in r.streams[TRADES].lost_examples] == [2, 5]
    assert r.gaps == 1
    assert r.streams[TRADES].gaps == 1


def test_gap_with_open_ends() -> None:
    truth = [t_rec(i, T0 + i) for i in range(1, 6)]
    r = check(truth, [subscribed(TRADES, T0), gap(TRADES, None, T0 + 2), gap(TRADES, T0 + 3, None)])
    assert counts(r) == (5, 0, 4, 1, 0, 0)  # ts 3 is the second gap's (exclusive) start
    r = check(truth, [subscribed(TRADES, T0), gap(TRADES, None, None)])
    assert r.in_declared_gaps == 5


def test_gap_on_another_stream_does_not_cover() -> None:
    truth = [t_rec(1, T0 + 1)]
    r = check(truth, [subscribed(TRADES, T0), gap("kraken:trade:ETH/USD", None, None)])
    assert r.lost == 1


def test_duplicated() -> None:
    truth = [t_rec(1, T0 + 1), t_rec(2, T0 + 2)]
    events: list[Event] = [
        subscribed(TRADES, T0),
        trade(1, T0 + 1),
        trade(1, T0 + 1),
        trade(2, T0 + 2),
    ]
    r = check(truth, events)
    assert counts(r) == (2, 1, 0, 0, 1, 0)
    assert r.delivered == 3
    assert not r.ok


def test_delivered_inside_a_gap_counts_as_delivered() -> None:
    truth = [t_rec(1, T0 + 1)]
    r = check(truth, [subscribed(TRADES, T0), gap(TRADES, T0, T0 + 5), trade(1, T0 + 1)])
    assert counts(r) == (1, 1, 0, 0, 0, 0)


def test_unexpected_unknown_id() -> None:
    truth = [t_rec(1, T0 + 1)]
    r = check(
        truth, [subscribed(TRADES, T0), trade(1, T0 + 1), trade(99, T0 + 2), trade(99, T0 + 2)]
    )
    assert counts(r) == (1, 1, 0, 0, 0, 2)
    assert r.streams[TRADES].unexpected == 2


def test_unexpected_on_a_stream_never_published() -> None:
    r = check([], [subscribed(TRADES, T0), trade(5, T0 + 1, symbol="ETH/USD")])
    assert r.unexpected == 1
    assert r.streams["kraken:trade:ETH/USD"].unexpected == 1


def test_book_update_with_wrong_checksum_is_unexpected() -> None:
    truth = [s_rec(T0, 7), b_rec(T0 + 1, 111), b_rec(T0 + 2, 222)]
    events: list[Event] = [snapshot(T0, 7), update(T0 + 1, 111), update(T0 + 2, 999)]
    r = check(truth, events)
    assert counts(r) == (2, 2, 0, 0, 0, 1)
    assert r.streams[BOOK].unexpected == 1
    none_cs = check(truth, [snapshot(T0, 7), update(T0 + 1, None), update(T0 + 2, 222)])
    assert none_cs.unexpected == 1  # a missing checksum does not match the venue's


def test_tickers_keyed_by_timestamp() -> None:
    truth = [
        {"k": "ticker", "symbol": SYM, "ts_ns": T0 + 1},
        {"k": "ticker", "symbol": SYM, "ts_ns": T0 + 2},
    ]
    r = check(truth, [subscribed(TICKER, T0), tick(T0 + 1)])
    assert counts(r) == (2, 1, 0, 1, 0, 0)


def test_unknown_truth_records_and_events_are_ignored() -> None:
    truth: list[dict[str, Any]] = [
        {"k": "status", "system": "online", "ts_ns": T0},
        {"k": "final_book", "symbol": SYM},
        {"no_kind": True},
    ]
    status = VenueStatus(venue="kraken", local_ts_ns=0, conn="c1", system="online")
    r = check(truth, [status, subscribed(TRADES, None)])
    assert counts(r) == (0, 0, 0, 0, 0, 0)
    assert r.delivered == 0


def test_other_venue_name() -> None:
    truth = [t_rec(1, T0 + 1)]
    ev = Trade(
        venue="sim",
        local_ts_ns=0,
        symbol=SYM,
        exchange_ts_ns=T0 + 1,
        stream="sim:trade:BTC/USD",
        trade_id=1,
        price=Decimal(1),
        qty=Decimal(1),
        side="sell",
    )
    sub = Subscribed(
        venue="sim", local_ts_ns=0, conn="c", stream="sim:trade:BTC/USD", exchange_ts_ns=T0
    )
    r = check(truth, [sub, ev], venue="sim")
    assert r.delivered_once == 1


# ------------------------------------------------------------------ scope


def test_trade_scope_starts_at_first_subscribed() -> None:
    truth = [t_rec(1, T0 - 5), t_rec(2, T0), t_rec(3, T0 + 1)]
    events: list[Event] = [
        subscribed(TRADES, T0),
        trade(3, T0 + 1),
        subscribed(TRADES, T0 + 100),  # a later re-subscription does not move the start
    ]
    r = check(truth, events)
    assert counts(r) == (1, 1, 0, 0, 0, 0)  # ts <= start: never promised


def test_no_subscription_no_scope() -> None:
    r = check([t_rec(1, T0 + 1)], [])
    assert counts(r) == (0, 0, 0, 0, 0, 0)
    # a Subscribed without an exchange time starts no scope
    r = check([t_rec(1, T0 + 1)], [subscribed(TRADES, None)])
    assert r.published == 0


def test_published_trade_delivered_before_scope_is_not_unexpected() -> None:
    """A trade snapshot (protocols.md §1.8, last 50 trades) carries trades published
    before the ack: delivering them is fine, they were published."""
    truth = [t_rec(1, T0 - 2), t_rec(2, T0 - 1), t_rec(3, T0 + 1)]
    events: list[Event] = [
        subscribed(TRADES, T0),
        trade(1, T0 - 2),
        trade(2, T0 - 1),
        trade(3, T0 + 1),
    ]
    r = check(truth, events)
    assert counts(r) == (1, 1, 0, 0, 0, 0)
    # ... but an unpublished one before the scope still is
    r = check(truth, [subscribed(TRADES, T0), trade(7, T0 - 1)])
    assert r.unexpected == 1


def test_book_scope_starts_at_first_snapshot_not_subscribed() -> None:
    truth = [b_rec(T0 - 1, 1), b_rec(T0, 2), b_rec(T0 + 1, 3), s_rec(T0, 2)]
    events: list[Event] = [
        subscribed(BOOK, T0 - 10),  # ignored for books
        snapshot(T0, 2),
        update(T0 + 1, 3),
    ]
    r = check(truth, events)
    assert counts(r) == (1, 1, 0, 0, 0, 0)
    # with only a Subscribed (no snapshot), nothing on the book is in scope
    r = check(truth, [subscribed(BOOK, T0 - 10)])
    assert r.published == 0


# ------------------------------------------------------------------ snapshots


def test_snapshot_verification() -> None:
    truth = [s_rec(T0, 7), s_rec(T0 + 50, 8)]
    r = check(truth, [snapshot(T0, 7), snapshot(T0 + 50, 8)])
    assert (r.snapshots_verified, r.snapshots_unexpected) == (2, 0)
    r = check(truth, [snapshot(T0, 7), snapshot(T0 + 50, 9), snapshot(T0 + 60, 8)])
    assert (r.snapshots_verified, r.snapshots_unexpected) == (1, 2)
    assert not r.ok


# ------------------------------------------------------------------ final books


def _view(
    bids: list[tuple[str, str]], asks: list[tuple[str, str]], *, valid: bool = True
) -> BookView:
    b = Book("kraken", SYM, 10, 1, 8)
    b.apply(
        [(int(Decimal(p) * 10), int(Decimal(q) * 10**8)) for p, q in bids],
        [(int(Decimal(p) * 10), int(Decimal(q) * 10**8)) for p, q in asks],
    )
    b.valid = valid
    return b.view


WANT = {
    "bids": [["100.0", "1.00000000"], ["99.9", "2.5"]],
    "asks": [["100.1", "0.1"]],
}


def test_final_books_equal() -> None:
    view = _view([("100.0", "1"), ("99.9", "2.5")], [("100.1", "0.1")])
    r = check([], [], final_books={(SYM, 10): WANT}, client_books={(SYM, 10): view})
    assert r.books_equal
    assert r.book_diffs == []
    assert r.ok


def test_final_books_truncated_to_depth_before_comparing() -> None:
    want = {"bids": [[str(100 - i), "1"] for i in range(15)], "asks": []}
    view = _view([(str(100 - i), "1") for i in range(15)], [])  # the client keeps 10
    r = check([], [], final_books={(SYM, 10): want}, client_books={(SYM, 10): view})
    assert r.books_equal


@pytest.mark.parametrize(
    ("bids", "asks", "fragment"),
    [
        ([("100.0", "1"), ("99.9", "2.4")], [("100.1", "0.1")], "bids differ at level 1"),
        ([("100.0", "1")], [("100.1", "0.1")], "bids differ at level 1 (sim 2 levels, client 1"),
        ([("100.0", "1"), ("99.9", "2.5")], [("100.2", "0.1")], "asks differ at level 0"),
    ],
)
def test_final_books_different(
    bids: list[tuple[str, str]], asks: list[tuple[str, str]], fragment: str
) -> None:
    r = check([], [], final_books={(SYM, 10): WANT}, client_books={(SYM, 10): _view(bids, asks)})
    assert not r.books_equal
    (diff,) = r.book_diffs
    assert fragment in diff
    assert not r.ok


def test_final_book_invalid_or_missing() -> None:
    view = _view([("100.0", "1"), ("99.9", "2.5")], [("100.1", "0.1")], valid=False)
    r = check([], [], final_books={(SYM, 10): WANT}, client_books={(SYM, 10): view})
    assert not r.books_equal
    assert r.book_diffs == ["BTC/USD@10: client book is not valid"]
    r = check([], [], final_books={(SYM, 10): WANT}, client_books={(SYM, 10): None})
    assert r.book_diffs == ["BTC/USD@10: client has no book"]


def test_final_books_with_nothing_in_common() -> None:
    view = _view([("1.0", "1")], [])
    r = check([], [], final_books={(SYM, 10): WANT}, client_books={("ETH/USD", 10): view})
    assert not r.books_equal
    assert r.book_diffs == ["no final book to compare"]


def test_books_not_compared_unless_both_given() -> None:
    r = check([], [], final_books={(SYM, 10): WANT})
    assert not r.books_equal
    assert r.book_diffs == []


# ------------------------------------------------------------------ report


def test_summary_and_ok() -> None:
    truth = [t_rec(1, T0 + 1), s_rec(T0, 1)]
    view = _view([("100.0", "1"), ("99.9", "2.5")], [("100.1", "0.1")])
    r = check(
        truth,
        [subscribed(TRADES, T0), trade(1, T0 + 1), snapshot(T0, 1)],
        final_books={(SYM, 10): WANT},
        client_books={(SYM, 10): view},
    )
    assert r.ok
    assert r.summary() == {
        "published": 1,
        "delivered": 1,
        "delivered_once": 1,
        "in_declared_gaps": 0,
        "lost": 0,
        "duplicated": 0,
        "unexpected": 0,
        "snapshots_verified": 1,
        "snapshots_unexpected": 0,
        "gaps": 0,
        "books_equal": True,
    }


def test_accepts_generators() -> None:
    truth = (rec for rec in [t_rec(1, T0 + 1)])
    events = (e for e in [subscribed(TRADES, T0), trade(1, T0 + 1)])
    assert check(truth, events).delivered_once == 1


def test_level_type_is_what_book_views_return() -> None:
    view = _view([("100.0", "1")], [])
    assert view.bids() == (Level(Decimal("100.0"), Decimal("1.00000000")),)


def test_book_ticker_scope_starts_at_the_first_delivered_update_id() -> None:
    # Binance acks carry no time and bookTicker carries none either: the first
    # delivered update id opens the scope, like a trade id
    from gapless.events import BookTicker

    stream = "binance:book_ticker:BTCUSDT"

    def bt(u: int) -> BookTicker:
        one = Decimal(1)
        return BookTicker(
            venue="binance",
            local_ts_ns=0,
            symbol="BTCUSDT",
            exchange_ts_ns=0,
            stream=stream,
            bid=one,
            bid_qty=one,
            ask=one,
            ask_qty=one,
            update_id=u,
        )

    truth = [
        {"k": "book_ticker", "venue": "binance", "symbol": "BTCUSDT", "u": u, "ts_ns": 0}
        for u in (5, 9, 12, 15)
    ]
    r = check(truth, [subscribed(stream, None), bt(9), bt(15)])
    assert (r.published, r.delivered_once, r.lost) == (3, 2, 1)  # 5 before scope; 12 lost
    assert r.streams[stream].lost_examples[0]["u"] == 12
