"""Unit tests for gapless.venues.kraken.adapter, driven purely by Now() and text frames.

No sockets and no sleeping: every call gets ``Now(mono, wall_ns)`` from a
hand-advanced clock, and the venue's frames are built from the wire shapes in
protocols.md §1.4-1.9 (see ``kraken_frames``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kraken_frames import (
    BASE_NS,
    VenueBook,
    ack,
    ack_error,
    book_frame,
    heartbeat,
    instrument_snapshot,
    instrument_update,
    iso,
    json_paths,
    json_set,
    json_values,
    pong,
    sent,
    status,
    ticker_frame,
    trade_frame,
)

from gapless.events import (
    BadFrame,
    BookSnapshot,
    BookUpdate,
    Event,
    Gap,
    GapCause,
    Level,
    Subscribed,
    SubscriptionRejected,
    Ticker,
    Trade,
    VenueStatus,
    WatchdogFired,
)
from gapless.venues.base import Now, Phase, Step, StreamSpec
from gapless.venues.kraken import book, ticker, trades
from gapless.venues.kraken.adapter import KrakenAdapter, KrakenOptions

WALL0 = 1_700_000_000_000_000_000
E = TypeVar("E", bound=Event)

MATIC = "MATIC/USD"
BTC = "BTC/USD"
PAIRS: list[tuple[str, int, int]] = [(MATIC, 4, 8), (BTC, 1, 8), ("ETH/USD", 2, 8)]


def of(events: Iterable[Event], cls: type[E]) -> list[E]:
    return [e for e in events if isinstance(e, cls)]


def subs(step: Step, method: str = "subscribe") -> list[dict[str, Any]]:
    return [r for r in sent(step.sends) if r.get("method") == method]


class H:
    """A hand-driven adapter: virtual monotonic clock and a venue exchange clock."""

    def __init__(
        self, specs: Sequence[StreamSpec] = (), *, passive: bool = False, **opts: Any
    ) -> None:
        self.a = KrakenAdapter(list(specs), KrakenOptions(**opts), passive=passive)
        self.t = 0.0
        self.ex = BASE_NS
        self.books: dict[str, VenueBook] = {}

    def now(self) -> Now:
        return Now(self.t, WALL0 + round(self.t * 1e9))

    def ts(self) -> int:
        """Next exchange timestamp (strictly increasing, 1 ms apart)."""
        self.ex += 1_000_000
        return self.ex

    def at(self, t: float) -> H:
        assert t >= self.t
        self.t = t
        return self

    def connect(self, conn: str = "c1") -> Step:
        return self.a.on_connected(conn, self.now())

    def disconnect(self, reason: str = "connection lost") -> Step:
        return self.a.on_disconnected(reason, self.now())

    def feed(self, text: str | bytes) -> Step:
        return self.a.on_frame(text, self.now())

    def timer(self) -> Step:
        return self.a.on_timer(self.now())

    def phase(self) -> Phase:
        return self.a.phase

    def ack_all(self, step: Step, *, skip_instrument: bool = True) -> Step:
        """Answer every subscribe request in ``step`` with one success ack per symbol."""
        out = Step()
        for req in subs(step):
            params = req["params"]
            if params["channel"] == "instrument":
                if not skip_instrument:
                    out.extend(self.feed(ack("instrument", None, req["req_id"], self.ts())))
                continue
            for sym in params["symbol"]:
                out.extend(
                    self.feed(
                        ack(
                            params["channel"],
                            sym,
                            req["req_id"],
                            self.ts(),
                            depth=params.get("depth"),
                        )
                    )
                )
        return out

    def venue_book(self, symbol: str, depth: int = 10) -> VenueBook:
        pp, qp = {s: (pp, qp) for s, pp, qp in PAIRS}[symbol]
        vb = VenueBook(symbol, depth, pp, qp)
        tick = Decimal(1).scaleb(-pp)
        mid = Decimal(100 if pp < 3 else 1)
        vb.apply(
            [(str(mid - tick * i), str(Decimal(i + 1))) for i in range(depth + 3)],
            [(str(mid + tick * (i + 1)), str(Decimal(i + 2))) for i in range(depth + 3)],
        )
        self.books[symbol] = vb
        return vb

    def snapshot(self, symbol: str) -> Step:
        vb = self.books.get(symbol) or self.venue_book(symbol, self.depth_of(symbol))
        return self.feed(vb.snapshot(self.ts()))

    def depth_of(self, symbol: str) -> int:
        b = self.a.book(symbol)
        assert b is not None
        return b.depth

    def bring_up(self, conn: str = "c1", pairs: Sequence[tuple[str, int, int]] = PAIRS) -> Step:
        """connect → status → instrument ack + snapshot → acks → book snapshots."""
        out = Step()
        first = self.connect(conn)
        out.extend(first)
        out.extend(self.feed(status()))
        out.extend(self.ack_all(first, skip_instrument=False))
        second = self.feed(instrument_snapshot(pairs))
        out.extend(second)
        out.extend(self.ack_all(second))
        for spec_key in self.a.streams():
            if spec_key.startswith("kraken:book:") and self.a.stream_state(spec_key) == "syncing":
                out.extend(self.snapshot(spec_key.split(":")[2]))
        return out


# ------------------------------------------------------------------ connect / subscribe


def test_connect_sends_instrument_first_and_books_only_after_its_snapshot() -> None:
    h = H([book(MATIC, 10), trades(MATIC), ticker(BTC)])
    s = h.connect()
    reqs = subs(s)
    assert reqs[0] == {
        "method": "subscribe",
        "params": {"channel": "instrument", "snapshot": True},
        "req_id": reqs[0]["req_id"],
    }
    # trades and tickers need no precision: subscribed at once; books wait
    assert [r["params"]["channel"] for r in reqs] == ["instrument", "trade", "ticker"]
    assert reqs[1]["params"] == {"channel": "trade", "symbol": [MATIC], "snapshot": False}
    assert reqs[2]["params"] == {"channel": "ticker", "symbol": [BTC], "snapshot": False}
    assert h.phase() is Phase.SUBSCRIBING
    assert h.a.stream_state("kraken:book:MATIC/USD:10") == "wait_instrument"

    st = h.feed(status())
    assert not subs(st)
    # the instrument ack (with the documented deprecation warning) is not a stream event
    st = h.feed(
        ack(
            "instrument",
            None,
            reqs[0]["req_id"],
            h.ts(),
            warnings=["tick_size is deprecated, use price_increment"],
        )
    )
    assert st.events == []
    assert st.sends == []
    st = h.feed(instrument_snapshot(PAIRS))
    (breq,) = subs(st)
    assert breq["params"] == {"channel": "book", "symbol": [MATIC], "depth": 10, "snapshot": True}
    assert len({r["req_id"] for r in [*reqs, breq]}) == 4  # every request has its own req_id
    b = h.a.book(MATIC)
    assert b is not None
    assert (b.price_precision, b.qty_precision, b.depth) == (4, 8, 10)
    assert not b.valid


def test_without_books_no_instrument_subscription() -> None:
    h = H([trades(BTC)])
    s = h.connect()
    assert [r["params"]["channel"] for r in subs(s)] == ["trade"]


def test_books_grouped_by_depth_into_requests() -> None:
    h = H([book(MATIC, 10), book(BTC, 10), book("ETH/USD", 25)])
    h.connect()
    st = h.feed(instrument_snapshot(PAIRS))
    got = sorted((r["params"]["depth"], tuple(r["params"]["symbol"])) for r in subs(st))
    assert got == [(10, (MATIC, BTC)), (25, ("ETH/USD",))]


def test_ack_emits_subscribed_and_phases_progress() -> None:
    h = H([book(MATIC, 10), trades(MATIC)])
    s = h.connect()
    s2 = h.feed(instrument_snapshot(PAIRS))
    assert h.phase() is Phase.SUBSCRIBING
    t_ack = h.ts()
    ev = h.feed(ack("trade", MATIC, subs(s)[1]["req_id"], t_ack)).events
    assert ev == [
        Subscribed(
            venue="kraken",
            local_ts_ns=h.now().wall_ns,
            conn="c1",
            stream="kraken:trade:MATIC/USD",
            exchange_ts_ns=t_ack,
        )
    ]
    assert h.a.stream_state("kraken:trade:MATIC/USD") == "live"
    assert h.phase() is Phase.SUBSCRIBING  # the book is still pending
    assert h.a.stream_state("kraken:book:MATIC/USD:10") == "pending"
    ev = h.ack_all(s2).events
    assert [type(e) for e in ev] == [Subscribed]
    assert h.a.stream_state("kraken:book:MATIC/USD:10") == "syncing"
    assert h.phase() is Phase.SYNCING
    h.snapshot(MATIC)
    assert h.a.stream_state("kraken:book:MATIC/USD:10") == "live"
    assert h.phase() is Phase.LIVE


def test_bring_up_snapshot_then_update() -> None:
    h = H([book(MATIC, 10), trades(MATIC)])
    out = h.bring_up()
    subscribed = of(out.events, Subscribed)
    assert sorted(e.stream for e in subscribed) == [
        "kraken:book:MATIC/USD:10",
        "kraken:trade:MATIC/USD",
    ]
    (snap,) = of(out.events, BookSnapshot)
    vb = h.books[MATIC]
    assert snap.stream == "kraken:book:MATIC/USD:10"
    assert snap.depth == 10
    assert snap.checksum == vb.checksum()
    assert snap.exchange_ts_ns == h.ex
    assert len(snap.bids) == 10
    assert len(snap.asks) == 10  # the venue sent 10 (it truncates to depth)
    assert snap.best_bid == Level(Decimal("1.0000"), Decimal("1.00000000"))
    assert snap.book is not None
    assert snap.book.valid
    assert h.phase() is Phase.LIVE
    assert of(out.events, Gap) == []

    upd = h.feed(vb.update(h.ts(), bids=[("1.0000", "0"), ("0.9999", "7.5")], asks=[]))
    (u,) = upd.events
    assert isinstance(u, BookUpdate)
    assert u.bids == (
        Level(Decimal("1.0000"), Decimal("0E-8")),
        Level(Decimal("0.9999"), Decimal("7.50000000")),
    )
    assert u.asks == ()
    assert u.checksum == vb.checksum()
    assert u.best_bid == Level(Decimal("0.9999"), Decimal("7.50000000"))
    c = h.a.counters()["kraken:book:MATIC/USD:10"]
    assert (c.checksum_ok, c.checksum_mismatch, c.delivered, c.gaps) == (2, 0, 2, 0)


def test_tv_k2_end_to_end() -> None:
    """protocols.md §1.7 doc snapshot + update through the adapter (MATIC/USD 4/8)."""
    doc_snapshot = (
        '{"channel":"book","type":"snapshot","data":[{"symbol":"MATIC/USD",'
        '"bids":[{"price":0.5666,"qty":4831.75496356},{"price":0.5665,"qty":6658.22734739},'
        '{"price":0.5664,"qty":18724.91513344},{"price":0.5663,"qty":11563.92544914},'
        '{"price":0.5662,"qty":14006.65365711},{"price":0.5661,"qty":17454.85679807},'
        '{"price":0.566,"qty":18097.1547},{"price":0.5659,"qty":33644.89175666},'
        '{"price":0.5658,"qty":148.3464},{"price":0.5657,"qty":606.70854372}],'
        '"asks":[{"price":0.5668,"qty":4410.79769741},{"price":0.5669,"qty":4655.40412487},'
        '{"price":0.567,"qty":49844.89424998},{"price":0.5671,"qty":24306.41678},'
        '{"price":0.5672,"qty":29783.25223475},{"price":0.5673,"qty":57234.71239278},'
        '{"price":0.5674,"qty":45065.04744},{"price":0.5675,"qty":5912.76380354},'
        '{"price":0.5676,"qty":42514.92434778},{"price":0.5677,"qty":36304.0847022}],'
        '"checksum":2439117997,"timestamp":"2023-10-06T17:35:55.440295Z"}]}'
    )
    doc_update = (
        '{"channel":"book","type":"update","data":[{"symbol":"MATIC/USD","bids":[{"price":0.5657,'
        '"qty":1098.3947558}],"asks":[],"checksum":2114181697,'
        '"timestamp":"2023-10-06T17:35:55.440295Z"}]}'
    )
    h = H([book(MATIC, 10)])
    s = h.connect()
    h.feed(status())
    h.feed(ack("instrument", None, subs(s)[0]["req_id"], BASE_NS))
    s2 = h.feed(instrument_snapshot([(MATIC, 4, 8)]))
    (req,) = subs(s2)
    events: list[Event] = []
    events += h.feed(ack("book", MATIC, req["req_id"], BASE_NS + 1000, depth=10)).events
    events += h.feed(doc_snapshot).events
    events += h.feed(doc_update).events
    assert [type(e) for e in events] == [Subscribed, BookSnapshot, BookUpdate]
    snap, upd = events[1], events[2]
    assert isinstance(snap, BookSnapshot)
    assert isinstance(upd, BookUpdate)
    assert snap.checksum == 2439117997
    assert upd.checksum == 2114181697
    assert str(snap.bids[6].price) == "0.5660"
    assert upd.bids == (Level(Decimal("0.5657"), Decimal("1098.39475580")),)
    c = h.a.counters()["kraken:book:MATIC/USD:10"]
    assert c.checksum_ok == 2
    assert c.checksum_mismatch == 0
    assert c.gaps == 0
    b = h.a.book(MATIC)
    assert b is not None
    assert b.valid
    assert b.checksum() == 2114181697


# ------------------------------------------------------------------ checksum mismatch


def _live_book(**opts: Any) -> H:
    h = H([book(MATIC, 10)], **opts)
    h.bring_up()
    return h


def test_checksum_mismatch_resyncs_and_reports_gap() -> None:
    h = _live_book()
    vb = h.books[MATIC]
    h.at(1.0)
    ok = h.feed(vb.update(h.ts(), bids=[("0.9999", "3")]))
    t_verified = h.ex
    assert of(ok.events, BookUpdate)
    h.at(2.0)
    bad = h.feed(vb.update(h.ts(), asks=[("1.0001", "9")], checksum=12345))
    assert of(bad.events, BookUpdate) == []
    assert of(bad.events, Gap) == []  # the gap is reported when it closes
    b = h.a.book(MATIC)
    assert b is not None
    assert not b.valid
    assert len(b) == 0  # thrown away: the next snapshot is authoritative
    unsub, sub = sent(bad.sends)
    assert unsub["method"] == "unsubscribe"
    assert unsub["params"] == {"channel": "book", "symbol": [MATIC], "depth": 10}
    assert sub["method"] == "subscribe"
    assert sub["params"] == {"channel": "book", "symbol": [MATIC], "depth": 10, "snapshot": True}
    c = h.a.counters()["kraken:book:MATIC/USD:10"]
    assert c.checksum_mismatch == 1
    assert c.resyncs == 1
    assert h.phase() is Phase.SUBSCRIBING

    # updates of the old subscription still in flight are ignored
    stray = h.feed(vb.update(h.ts(), bids=[("0.9990", "1")]))
    assert stray.events == []
    assert stray.sends == []

    h.feed(ack("book", MATIC, unsub["req_id"], h.ts(), method="unsubscribe", depth=10))
    acked = h.feed(ack("book", MATIC, sub["req_id"], h.ts(), depth=10))
    assert [type(e) for e in acked.events] == [Subscribed]
    assert h.phase() is Phase.SYNCING
    t_snap = h.ts()
    res = h.feed(vb.snapshot(t_snap))
    assert [type(e) for e in res.events] == [Gap, BookSnapshot]
    gap = res.events[0]
    assert isinstance(gap, Gap)
    assert gap.cause is GapCause.CHECKSUM_MISMATCH
    assert gap.stream == "kraken:book:MATIC/USD:10"
    assert gap.symbol == MATIC
    assert gap.start_ts_ns == t_verified
    assert gap.end_ts_ns == t_snap
    assert "12345" in gap.detail
    assert b.valid
    assert h.phase() is Phase.LIVE
    assert h.a.counters()["kraken:book:MATIC/USD:10"].gaps == 1


def test_checksum_mismatch_on_snapshot_resyncs() -> None:
    h = H([book(MATIC, 10)])
    h.connect()
    h.ack_all(h.feed(instrument_snapshot(PAIRS)))
    vb = h.venue_book(MATIC)
    bad = h.feed(vb.snapshot(h.ts(), checksum=1))
    assert of(bad.events, BookSnapshot) == []
    assert [r["method"] for r in sent(bad.sends)] == ["unsubscribe", "subscribe"]
    b = h.a.book(MATIC)
    assert b is not None
    assert not b.valid
    assert h.a.counters()["kraken:book:MATIC/USD:10"].checksum_mismatch == 1
    h.ack_all(bad)
    good = h.feed(vb.snapshot(h.ts()))
    # the stream was acked but had delivered nothing: the gap starts at the ack
    assert [type(e) for e in good.events] == [Gap, BookSnapshot]
    assert b.valid


def test_second_mismatch_within_min_interval_is_deferred_to_timer() -> None:
    h = _live_book(resubscribe_min_interval_s=5.0)
    vb = h.books[MATIC]
    h.at(10.0)
    first = h.feed(vb.update(h.ts(), bids=[("0.9999", "1")], checksum=1))
    (sub,) = subs(first)
    h.feed(ack("book", MATIC, sub["req_id"], h.ts(), depth=10))
    h.at(11.0)
    h.feed(vb.snapshot(h.ts()))
    h.at(12.0)
    second = h.feed(vb.update(h.ts(), bids=[("0.9998", "1")], checksum=2))
    assert second.sends == []  # deferred: last resubscribe was 2 s ago
    assert h.a.stream_state("kraken:book:MATIC/USD:10") == "retry"
    h.at(14.9)
    assert h.timer().sends == []
    h.at(15.0)
    due = h.timer()
    assert [r["method"] for r in sent(due.sends)] == ["unsubscribe", "subscribe"]
    assert h.a.stream_state("kraken:book:MATIC/USD:10") == "pending"
    h.at(16.0)
    assert h.timer().sends == []  # only once


def test_too_many_resyncs_escalate_to_reconnect() -> None:
    h = _live_book(resubscribe_min_interval_s=0.0, max_resyncs_per_minute=4)
    vb = h.books[MATIC]
    for i in range(4):
        h.at(1.0 + i)
        st = h.feed(vb.update(h.ts(), bids=[("0.9999", str(i + 1))], checksum=1))
        assert st.reconnect is None
        (sub,) = subs(st)
        h.feed(ack("book", MATIC, sub["req_id"], h.ts(), depth=10))
        h.feed(vb.snapshot(h.ts()))
    h.at(5.0)
    fifth = h.feed(vb.update(h.ts(), bids=[("0.9999", "9")], checksum=1))
    assert fifth.reconnect is not None
    assert "4 resyncs within a minute" in fifth.reconnect
    assert fifth.sends == []
    assert h.a.stream_state("kraken:book:MATIC/USD:10") == "idle"


def test_resync_window_slides_after_a_minute() -> None:
    h = _live_book(resubscribe_min_interval_s=0.0, max_resyncs_per_minute=2)
    vb = h.books[MATIC]
    for t in (1.0, 2.0, 70.0, 71.0):
        h.at(t)
        st = h.feed(vb.update(h.ts(), bids=[("0.9999", "1")], checksum=1))
        assert st.reconnect is None, t
        (sub,) = subs(st)
        h.feed(ack("book", MATIC, sub["req_id"], h.ts(), depth=10))
        h.feed(vb.snapshot(h.ts()))
    h.at(72.0)
    st = h.feed(vb.update(h.ts(), bids=[("0.9999", "1")], checksum=1))
    assert st.reconnect is not None


# ------------------------------------------------------------------ disconnect / reconnect


def test_disconnect_then_reconnect_closes_gaps_at_resync_points() -> None:
    h = H([book(MATIC, 10), trades(MATIC)])
    h.bring_up()
    vb = h.books[MATIC]
    h.at(1.0)
    t1, t2 = h.ts(), h.ts()
    tr = h.feed(trade_frame(MATIC, [(10, t1, "1.0001", "2"), (11, t2, "1.0002", "0.5")]))
    assert [e.trade_id for e in of(tr.events, Trade)] == [10, 11]
    t_book = h.ts()
    h.feed(vb.update(t_book, asks=[("1.0001", "0")]))

    h.at(2.0)
    dis = h.disconnect("abrupt close")
    assert dis.events == []  # gaps are reported when they close
    b = h.a.book(MATIC)
    assert b is not None
    assert not b.valid
    assert len(b) == 0
    assert not h.a.connected

    h.at(3.0)
    s = h.connect("c2")
    assert h.a.conn == "c2"
    reqs = subs(s)
    assert [r["params"]["channel"] for r in reqs] == ["instrument", "trade"]
    assert reqs[1]["params"]["snapshot"] is True  # re-subscription heals from the last 50
    t14, t15 = h.ts(), h.ts()
    t_ack = h.ts()
    ev = h.feed(ack("trade", MATIC, reqs[1]["req_id"], t_ack)).events
    assert [type(e) for e in ev] == [Subscribed]
    snap = trade_frame(MATIC, [(15, t15, "1.0004", "1"), (14, t14, "1.0003", "1")], typ="snapshot")
    ev = h.feed(snap).events
    assert [type(e) for e in ev] == [Gap, Trade, Trade]
    gap = ev[0]
    assert isinstance(gap, Gap)
    assert gap.stream == "kraken:trade:MATIC/USD"
    assert gap.cause is GapCause.DISCONNECT
    assert (gap.start_ts_ns, gap.end_ts_ns) == (t2, t14)  # up to the oldest snapshot trade
    assert (gap.first_seq, gap.last_seq) == (12, 13)  # exactly the ids the snapshot lacks
    assert gap.detail == "abrupt close"
    assert [e.trade_id for e in of(ev, Trade)] == [14, 15]  # backfilled in id order

    s2 = h.feed(instrument_snapshot(PAIRS))
    h.ack_all(s2)
    # the venue's book moved on while we were away; the snapshot replaces everything
    vb.apply([("0.5000", "1")], [("1.0002", "0")])
    t_snap = h.ts()
    res = h.feed(vb.snapshot(t_snap))
    assert [type(e) for e in res.events] == [Gap, BookSnapshot]
    bgap = res.events[0]
    assert isinstance(bgap, Gap)
    assert bgap.cause is GapCause.DISCONNECT
    assert (bgap.start_ts_ns, bgap.end_ts_ns) == (t_book, t_snap)
    assert b.valid
    assert b.checksum() == vb.checksum()
    # a later trade with a fresh id flows; one with an old id is a duplicate
    ev = h.feed(trade_frame(MATIC, [(15, h.ts(), "1", "1"), (16, h.ts(), "1", "1")])).events
    assert [e.trade_id for e in of(ev, Trade)] == [16]


def test_disconnect_before_anything_was_delivered_reports_no_gap() -> None:
    h = H([trades(MATIC)])
    h.connect()
    h.disconnect()
    s = h.connect("c2")
    ev = h.ack_all(s).events
    assert [type(e) for e in ev] == [Subscribed]


def test_subscribed_but_silent_stream_gap_starts_at_ack() -> None:
    h = H([trades(MATIC)])
    s = h.connect()
    t_ack = h.ts()
    h.feed(ack("trade", MATIC, subs(s)[0]["req_id"], t_ack))
    h.disconnect()
    s = h.connect("c2")
    ev = h.ack_all(s).events
    assert of(ev, Gap) == []  # waits for the healing snapshot
    ev = h.feed(trade_frame(MATIC, [], typ="snapshot")).events  # no trades to heal from
    (gap,) = of(ev, Gap)
    assert gap.start_ts_ns == t_ack
    assert gap.first_seq is None
    assert h.a.stream_state("kraken:trade:MATIC/USD") == "live"


# ------------------------------------------------------------------ rejections


def test_permanent_rejection_with_symbol_is_never_retried() -> None:
    h = H([trades("XBT/USD"), trades(BTC)])
    s = h.connect()
    (req,) = subs(s)
    assert req["params"]["symbol"] == ["XBT/USD", BTC]
    rej = h.feed(
        ack_error("Currency pair not supported XBT/USD", req["req_id"], h.ts(), symbol="XBT/USD")
    )
    (ev,) = rej.events
    assert isinstance(ev, SubscriptionRejected)
    assert ev.stream == "kraken:trade:XBT/USD"
    assert ev.error == "Currency pair not supported XBT/USD"
    assert ev.retry_in_s is None
    assert h.a.stream_state("kraken:trade:XBT/USD") == "rejected"
    assert h.a.stream_state("kraken:trade:BTC/USD") == "pending"  # same request, other symbol
    h.feed(ack("trade", BTC, req["req_id"], h.ts()))
    assert h.phase() is Phase.LIVE  # a permanently rejected stream does not hold the phase
    h.at(1000.0)
    assert subs(h.timer()) == []
    h.disconnect()
    s = h.connect("c2")
    assert [r["params"]["symbol"] for r in subs(s)] == [[BTC]]


def test_depth_rejection_without_symbol_is_correlated_by_req_id() -> None:
    h = H([book(MATIC, 25), book(BTC, 25), trades(MATIC)])
    s = h.connect()
    h.ack_all(s)
    s2 = h.feed(instrument_snapshot(PAIRS))
    (req,) = subs(s2)
    rej = h.feed(ack_error("Subscription depth not supported", req["req_id"], h.ts()))
    got = of(rej.events, SubscriptionRejected)
    assert sorted(e.stream for e in got) == ["kraken:book:BTC/USD:25", "kraken:book:MATIC/USD:25"]
    assert all(e.retry_in_s is None for e in got)
    assert h.a.stream_state("kraken:trade:MATIC/USD") == "live"  # other request untouched
    h.at(500.0)
    assert subs(h.timer()) == []


def test_retryable_rejection_retried_after_backoff() -> None:
    h = H([trades(BTC)], reject_retry_base_s=2.0, reject_retry_cap_s=5.0, ping_interval_s=1e9)
    s = h.connect()
    req = subs(s)[0]
    delays = []
    for _ in range(4):
        rej = h.feed(ack_error("EGeneral:Internal error", req["req_id"], h.ts(), symbol=BTC))
        (ev,) = of(rej.events, SubscriptionRejected)
        assert ev.retry_in_s is not None
        delays.append(ev.retry_in_s)
        assert h.a.stream_state("kraken:trade:BTC/USD") == "retry"
        h.at(h.t + ev.retry_in_s - 0.01)
        assert subs(h.timer()) == []
        h.at(h.t + 0.01)
        again = subs(h.timer())
        assert [r["params"] for r in again] == [
            {"channel": "trade", "symbol": [BTC], "snapshot": False}
        ]
        req = again[0]
    assert delays == [2.0, 4.0, 5.0, 5.0]
    ok = h.feed(ack("trade", BTC, req["req_id"], h.ts()))
    assert [type(e) for e in ok.events] == [Subscribed]
    # success resets the backoff
    rej = h.feed(ack_error("EGeneral:Internal error", req["req_id"], h.ts(), symbol=BTC))
    assert of(rej.events, SubscriptionRejected) == []  # not pending any more: ignored


def test_retryable_rejection_of_a_previously_live_stream_opens_a_gap() -> None:
    h = H([trades(BTC)], ping_interval_s=1e9)
    s = h.connect()
    h.ack_all(s)
    t_tr = h.ts()
    h.feed(trade_frame(BTC, [(1, t_tr, "100.0", "1")]))
    h.disconnect()
    s = h.connect("c2")
    req = subs(s)[0]
    h.feed(ack_error("Already subscribed", req["req_id"], h.ts(), symbol=BTC))
    h.at(2.0)
    again = subs(h.timer())
    t3 = h.ts()
    h.feed(ack("trade", BTC, again[0]["req_id"], h.ts()))
    ev = h.feed(trade_frame(BTC, [(3, t3, "100.0", "1")], typ="snapshot")).events
    (gap,) = of(ev, Gap)
    assert gap.cause is GapCause.DISCONNECT  # the first cause is kept
    assert (gap.start_ts_ns, gap.end_ts_ns, gap.first_seq, gap.last_seq) == (t_tr, t3, 2, 2)


# ------------------------------------------------------------------ trade healing


def _live_trades(h: H, symbol: str = BTC) -> int:
    s = h.connect()
    h.ack_all(s)
    t = h.ts()
    h.feed(trade_frame(symbol, [(1, t, "100.0", "1")]))
    return t


def test_outage_fully_covered_by_the_snapshot_is_healed_without_a_gap() -> None:
    h = H([trades(BTC)], ping_interval_s=1e9)
    _live_trades(h)
    h.disconnect()
    s = h.connect("c2")
    h.ack_all(s)
    t2, t3 = h.ts(), h.ts()
    snap = trade_frame(
        BTC,
        [
            (0, h.ts(), "1", "1"),
            (1, h.ts(), "1", "1"),
            (2, t2, "101.0", "1"),
            (3, t3, "102.0", "1"),
        ],
        typ="snapshot",
    )
    ev = h.feed(snap).events
    assert of(ev, Gap) == []
    assert [t.trade_id for t in of(ev, Trade)] == [2, 3]  # missed trades delivered
    assert h.a.counters()["kraken:trade:BTC/USD"].healed == 1


def test_updates_before_the_snapshot_are_held_then_delivered_once() -> None:
    h = H([trades(BTC)], ping_interval_s=1e9)
    _live_trades(h)
    h.disconnect()
    s = h.connect("c2")
    h.ack_all(s)
    early = h.feed(trade_frame(BTC, [(3, h.ts(), "1", "1"), (4, h.ts(), "1", "1")])).events
    assert of(early, Trade) == []
    ev = h.feed(
        trade_frame(BTC, [(2, h.ts(), "1", "1"), (3, h.ts(), "1", "1")], typ="snapshot")
    ).events
    assert [t.trade_id for t in of(ev, Trade)] == [2, 3, 4]
    assert of(ev, Gap) == []


def test_trade_id_jump_while_live_is_a_sequence_gap_and_resyncs_siblings() -> None:
    h = H([trades(BTC), ticker(BTC)], ping_interval_s=1e9)
    t1 = _live_trades(h)
    t5 = h.ts()
    out = h.feed(trade_frame(BTC, [(5, t5, "100.0", "1")]))
    (gap,) = of(out.events, Gap)
    assert gap.cause is GapCause.SEQUENCE_GAP
    assert (gap.start_ts_ns, gap.end_ts_ns, gap.first_seq, gap.last_seq) == (t1, t5, 2, 4)
    assert [t.trade_id for t in of(out.events, Trade)] == [5]
    sent = [json.loads(x) for x in out.sends]
    assert [(m["method"], m["params"]["channel"]) for m in sent] == [
        ("unsubscribe", "ticker"),
        ("subscribe", "ticker"),
    ]


def test_trade_id_continuity_can_be_switched_off() -> None:
    h = H([trades(BTC)], ping_interval_s=1e9, trade_ids_contiguous=False)
    _live_trades(h)
    out = h.feed(trade_frame(BTC, [(9, h.ts(), "100.0", "1")]))
    assert of(out.events, Gap) == []


def test_rate_error_without_method_retries_pending_subscriptions_later() -> None:
    """A bare rate error names no request: what is still pending is refused
    (retryable) and asked again after backoff, without reconnecting."""
    h = H([trades(BTC)])
    h.connect()
    st = h.feed('{"Error":"Exceeded msg rate"}')
    (rej,) = of(st.events, SubscriptionRejected)
    assert rej.error == "Exceeded msg rate"
    assert rej.retry_in_s is not None
    assert rej.retry_in_s > 0
    assert st.reconnect is None
    assert h.a.stream_state("kraken:trade:BTC/USD") == "retry"


def test_symbol_missing_from_instrument_snapshot_is_rejected() -> None:
    h = H([book("NOPE/USD", 10), book(MATIC, 10)])
    h.connect()
    st = h.feed(instrument_snapshot(PAIRS))
    (rej,) = of(st.events, SubscriptionRejected)
    assert rej.stream == "kraken:book:NOPE/USD:10"
    assert rej.retry_in_s is None
    assert [r["params"]["symbol"] for r in subs(st)] == [[MATIC]]


def test_instrument_refusal_requests_reconnect() -> None:
    h = H([book(MATIC, 10)])
    s = h.connect()
    st = h.feed(ack_error("EGeneral:Internal error", subs(s)[0]["req_id"], h.ts()))
    assert st.reconnect is not None
    assert "instrument" in st.reconnect


def test_instrument_update_does_not_trigger_subscriptions_but_updates_precision() -> None:
    h = H([book(MATIC, 10)])
    h.connect()
    st = h.feed(instrument_update([(MATIC, 5, 8)]))
    assert st.sends == []  # only the snapshot releases the books
    st = h.feed(instrument_snapshot([(MATIC, 4, 8)]))
    assert subs(st)
    st = h.feed(instrument_update([(MATIC, 5, 8)]))
    assert st.sends == []
    assert h.a.precisions[MATIC] == (5, 8)
    # the next connection builds the book at the new precision
    h.disconnect()
    h.connect("c2")
    h.feed(instrument_snapshot([(MATIC, 5, 8)]))
    b = h.a.book(MATIC)
    assert b is not None
    assert b.price_precision == 5


# ------------------------------------------------------------------ timeouts / keepalive


def test_ack_timeout_rejects_and_reconnects() -> None:
    h = H([trades(BTC)], subscribe_ack_timeout_s=10.0)
    h.connect()
    h.at(10.0)
    assert h.timer().events == []
    h.at(10.5)
    st = h.timer()
    (rej,) = of(st.events, SubscriptionRejected)
    assert rej.stream == "kraken:trade:BTC/USD"
    assert rej.error == "no acknowledgement within 10 s"
    assert rej.retry_in_s == 0.0
    assert st.reconnect == "kraken:trade:BTC/USD: no acknowledgement"


def test_snapshot_timeout_rejects_and_reconnects() -> None:
    h = H([book(MATIC, 10)], subscribe_ack_timeout_s=10.0)
    h.connect()
    h.at(1.0)
    st = h.feed(instrument_snapshot(PAIRS))
    h.at(5.0)
    h.ack_all(st)
    h.at(14.9)
    assert h.timer().reconnect is None  # measured from the ack, not the request
    h.at(15.5)
    st = h.timer()
    (rej,) = of(st.events, SubscriptionRejected)
    assert rej.error == "no snapshot within 10 s"
    assert st.reconnect is not None


def test_instrument_snapshot_deadline() -> None:
    h = H([book(MATIC, 10)], subscribe_ack_timeout_s=10.0)
    h.connect()
    h.at(10.5)
    st = h.timer()
    assert st.reconnect == "no instrument snapshot within deadline"


def test_ping_every_interval_and_pong_clears() -> None:
    h = H([trades(BTC)], ping_interval_s=20.0, pong_timeout_s=10.0)
    s = h.connect()
    h.ack_all(s)
    h.at(19.9)
    assert h.timer().sends == []
    h.at(20.0)
    (ping,) = sent(h.timer().sends)
    assert ping == {"method": "ping", "req_id": ping["req_id"]}
    h.at(21.0)
    assert h.timer().sends == []  # one outstanding ping at a time
    h.feed(pong(ping["req_id"] + 1000))  # not ours: ignored
    h.at(29.0)
    h.feed(pong(ping["req_id"]))
    h.at(39.9)
    assert h.timer().sends == []
    h.at(40.0)
    (ping2,) = sent(h.timer().sends)
    assert ping2["method"] == "ping"
    assert ping2["req_id"] != ping["req_id"]


def test_pong_timeout_fires_watchdog_and_reconnects() -> None:
    h = H([trades(BTC)], ping_interval_s=20.0, pong_timeout_s=10.0)
    s = h.connect()
    h.ack_all(s)
    h.at(20.0)
    h.timer()
    h.feed(heartbeat())  # heartbeats do not answer a ping
    h.at(30.0)
    assert h.timer().reconnect is None
    h.at(30.5)
    st = h.timer()
    (wd,) = of(st.events, WatchdogFired)
    assert wd.kind == "pong"
    assert wd.conn == "c1"
    assert wd.silent_for_s == pytest.approx(10.5)
    assert st.reconnect == "no pong within 10 s"


def test_pong_without_req_id_clears_outstanding_ping() -> None:
    h = H([trades(BTC)], ping_interval_s=20.0, pong_timeout_s=10.0)
    h.ack_all(h.connect())
    h.at(20.0)
    assert sent(h.timer().sends)[0]["method"] == "ping"
    h.feed(pong(None))
    h.at(35.0)
    assert h.timer().reconnect is None


def test_staleness_fires_watchdog_and_resyncs() -> None:
    h = _live_book(book_stale_after_s=60.0, ping_interval_s=1e9)
    vb = h.books[MATIC]
    h.at(30.0)
    t_last = h.ts()
    h.feed(vb.update(t_last, bids=[("0.9999", "4")]))
    for t in (40.0, 60.0, 89.9):
        h.at(t)
        h.feed(heartbeat())  # heartbeats keep the link alive but are not book data
        assert of(h.timer().events, WatchdogFired) == []
    h.at(90.5)
    st = h.timer()
    (wd,) = of(st.events, WatchdogFired)
    assert wd.kind == "stale"
    assert wd.stream == "kraken:book:MATIC/USD:10"
    assert wd.silent_for_s == pytest.approx(60.5)
    assert [r["method"] for r in sent(st.sends)] == ["unsubscribe", "subscribe"]
    h.ack_all(st)
    t_snap = h.ts()
    res = h.feed(vb.snapshot(t_snap))
    (gap,) = of(res.events, Gap)
    assert gap.cause is GapCause.STALE
    assert (gap.start_ts_ns, gap.end_ts_ns) == (t_last, t_snap)


def test_trades_do_not_go_stale_unless_configured() -> None:
    h = H([trades(BTC)], ping_interval_s=1e9)
    h.ack_all(h.connect())
    h.at(10_000.0)
    assert h.timer().events == []
    h2 = H([trades(BTC)], ping_interval_s=1e9, trade_stale_after_s=30.0)
    h2.ack_all(h2.connect())
    h2.at(31.0)
    st = h2.timer()
    (wd,) = of(st.events, WatchdogFired)
    assert wd.stream == "kraken:trade:BTC/USD"
    assert [r["method"] for r in sent(st.sends)] == ["unsubscribe", "subscribe"]
    assert sent(st.sends)[0]["params"] == {"channel": "trade", "symbol": [BTC]}


def test_timer_while_disconnected_does_nothing() -> None:
    h = H([trades(BTC)])
    h.at(1000.0)
    st = h.timer()
    assert st == Step()


# ------------------------------------------------------------------ bad frames


def _live_all() -> H:
    h = H([book(MATIC, 10), book(BTC, 10), trades(MATIC)], ping_interval_s=1e9)
    h.bring_up()
    return h


def test_invalid_json_is_a_bad_frame_and_resyncs_everything_live() -> None:
    h = _live_all()
    frame = '{"channel":"book","type":"update","data":[{"symbol":"MATIC/USD"'
    st = h.feed(frame)
    (bf,) = of(st.events, BadFrame)
    assert bf.reason.startswith("invalid JSON")
    assert bf.excerpt == frame
    assert bf.size == len(frame)
    assert bf.conn == "c1"
    assert h.a.bad_frames == 1
    resent = sorted(
        (r["params"]["channel"], r["params"]["symbol"][0]) for r in subs(st, "unsubscribe")
    )
    assert resent == [("book", BTC), ("book", MATIC), ("trade", MATIC)]
    assert len(subs(st)) == 3
    for sym in (MATIC, BTC):
        b = h.a.book(sym)
        assert b is not None
        assert not b.valid


def test_bad_bytes_frame_excerpt_is_text() -> None:
    h = _live_all()
    frame = b"\xff\xfe garbage" + b"x" * 500
    st = h.feed(frame)
    (bf,) = of(st.events, BadFrame)
    assert isinstance(bf.excerpt, str)
    assert bf.excerpt.endswith(" garbage" + "x" * 110)  # first 120 bytes, decoded leniently
    assert bf.size == len(frame)


def test_book_frame_with_wrong_typed_price_resyncs_only_that_symbol() -> None:
    h = _live_all()
    frame = (
        '{"channel":"book","type":"update","data":[{"symbol":"MATIC/USD","bids":'
        '[{"price":{"x":1},"qty":1.0}],"asks":[],"checksum":1,"timestamp":"' + iso(h.ts()) + '"}]}'
    )
    st = h.feed(frame)
    (bf,) = of(st.events, BadFrame)
    assert "expected a number" in bf.reason
    assert [r["params"]["symbol"] for r in sent(st.sends)] == [[MATIC], [MATIC]]
    assert h.a.stream_state("kraken:book:BTC/USD:10") == "live"
    assert h.a.stream_state("kraken:trade:MATIC/USD") == "live"
    b = h.a.book(BTC)
    assert b is not None
    assert b.valid
    # later: the gap closes with cause bad_frame at the new snapshot
    h.ack_all(st)
    res = h.snapshot(MATIC)
    (gap,) = of(res.events, Gap)
    assert gap.cause is GapCause.BAD_FRAME


@pytest.mark.parametrize(
    "price",
    [
        "1e999999999",  # was decimal.Overflow escaping on_frame
        "1e-999999999",  # was silently 0 (a delete)
        "0.00001",  # more decimals than price_precision 4
        '"NaN"',
        "true",
        "[1]",
        "9" * 400,
    ],
)
def test_unparseable_book_price_is_a_bad_frame_never_an_exception(price: str) -> None:
    h = _live_all()
    frame = book_frame("update", MATIC, [(price, "1.0")], [], 1, iso(h.ts()))
    st = h.feed(frame)
    assert len(of(st.events, BadFrame)) == 1
    assert of(st.events, BookUpdate) == []
    assert h.a.stream_state("kraken:book:MATIC/USD:10") == "pending"


def test_unparseable_trade_price_resyncs_trades() -> None:
    h = _live_all()
    st = h.feed(trade_frame(MATIC, [(1, h.ts(), '"abc"', "1")]))
    assert len(of(st.events, BadFrame)) == 1
    assert of(st.events, Trade) == []
    assert [r["params"]["channel"] for r in sent(st.sends)] == ["trade", "trade"]
    assert h.a.stream_state("kraken:book:MATIC/USD:10") == "live"


def test_transport_bad_frame() -> None:
    h = H([trades(BTC)])
    h.connect()
    st = h.a.on_bad_transport_frame("frame too large", 10_000_000, h.now())
    (bf,) = st.events
    assert isinstance(bf, BadFrame)
    assert bf.size == 10_000_000
    assert bf.reason == "frame too large"
    assert h.a.bad_frames == 1


def test_unknown_and_heartbeat_frames_are_ignored() -> None:
    h = _live_all()
    frames_before = h.a.frames
    for text in (
        heartbeat(),
        '{"channel":"executions","type":"update","data":[]}',
        '{"method":"edit_order","success":true}',
        ack("book", MATIC, 999, h.ts(), method="unsubscribe", depth=10),
        ack("book", "ZZZ/USD", 999, h.ts(), depth=10),  # an ack for nothing we asked
        book_frame("update", "ZZZ/USD", [("1", "1")], [], 1, iso(h.ts())),
        trade_frame("ZZZ/USD", [(1, h.ts(), "1", "1")]),
        ticker_frame("ZZZ/USD", h.ts()),
    ):
        st = h.feed(text)
        assert st == Step(), text
    assert h.a.frames == frames_before + 8


# ------------------------------------------------------------------ trades / tickers / status


def test_trades_delivered_and_duplicates_dropped() -> None:
    h = H([trades(MATIC)])
    h.ack_all(h.connect())
    t = [h.ts() for _ in range(5)]
    ev = h.feed(
        trade_frame(MATIC, [(5, t[0], "0.5117", "40.0"), (6, t[1], "0.5118", "1.00000000")])
    ).events
    assert [(e.trade_id, e.price, e.qty, e.side) for e in of(ev, Trade)] == [
        (5, Decimal("0.5117"), Decimal("40.0"), "sell"),
        (6, Decimal("0.5118"), Decimal("1.00000000"), "sell"),
    ]
    assert str(of(ev, Trade)[1].qty) == "1.00000000"  # exact wire text
    ev = h.feed(trade_frame(MATIC, [(6, t[1], "0.5118", "1"), (7, t[2], "1", "1")])).events
    assert [e.trade_id for e in of(ev, Trade)] == [7]
    ev = h.feed(trade_frame(MATIC, [(3, t[3], "1", "1")])).events
    assert ev == []
    c = h.a.counters()["kraken:trade:MATIC/USD"]
    assert (c.delivered, c.duplicates_dropped) == (3, 2)
    trade = of(h.feed(trade_frame(MATIC, [(8, t[4], "1", "1")], side="buy")).events, Trade)[0]
    assert trade.side == "buy"
    assert trade.ord_type == "market"
    assert trade.exchange_ts_ns == t[4]
    assert trade.stream == "kraken:trade:MATIC/USD"


def test_trades_before_ack_are_not_delivered() -> None:
    h = H([trades(MATIC)])
    h.connect()
    assert h.feed(trade_frame(MATIC, [(1, h.ts(), "1", "1")])).events == []


def test_ticker_delivered_exactly() -> None:
    h = H([ticker("ALGO/USD")])
    h.ack_all(h.connect())
    ts = h.ts()
    (ev,) = h.feed(ticker_frame("ALGO/USD", ts)).events
    assert isinstance(ev, Ticker)
    assert ev.bid == Decimal("0.10025")
    assert ev.change == Decimal("-0.00017")
    assert str(ev.bid_qty) == "740.0"
    assert ev.exchange_ts_ns == ts
    bad = h.feed(ticker_frame("ALGO/USD", h.ts(), bid='"oops"'))
    assert len(of(bad.events, BadFrame)) == 1


def test_status_messages_become_venue_status_and_system_status() -> None:
    h = H([trades(BTC)])
    h.connect()
    st = h.feed(status("maintenance", connection_id=15113583034416118705))
    (vs,) = st.events
    assert isinstance(vs, VenueStatus)
    assert vs.system == "maintenance"
    assert vs.connection_id == 15113583034416118705
    assert vs.api_version == "v2"
    assert st.system_status == "maintenance"
    assert h.a.system_status == "maintenance"
    st = h.feed(status("online"))
    assert st.system_status == "online"


# ------------------------------------------------------------------ overflow


def test_overflow_resyncs_everything() -> None:
    h = _live_all()
    st = h.a.on_overflow(42, h.now())
    assert sorted((r["params"]["channel"], r["params"]["symbol"][0]) for r in subs(st)) == [
        ("book", BTC),
        ("book", MATIC),
        ("trade", MATIC),
    ]
    assert len(subs(st, "unsubscribe")) == 3
    h.ack_all(st)
    res = h.snapshot(MATIC)
    (gap,) = of(res.events, Gap)
    assert gap.cause is GapCause.QUEUE_OVERFLOW
    assert gap.detail == "42 frames dropped"


# ------------------------------------------------------------------ control


def test_control_subscribe_while_connected() -> None:
    h = H([trades(BTC)])
    h.bring_up()
    st = h.a.control("subscribe", book(MATIC, 25), h.now())
    (req,) = subs(st)
    assert req["params"] == {"channel": "book", "symbol": [MATIC], "depth": 25, "snapshot": True}
    h.ack_all(st)
    res = h.snapshot(MATIC)
    assert [type(e) for e in res.events] == [BookSnapshot]
    # subscribing again is a no-op
    assert h.a.control("subscribe", book(MATIC, 25), h.now()) == Step()
    st = h.a.control("subscribe", trades(MATIC), h.now())
    assert [r["params"]["channel"] for r in subs(st)] == ["trade"]


def test_control_subscribe_unknown_symbol_after_instrument_is_rejected() -> None:
    h = H([trades(BTC)])
    h.bring_up()
    st = h.a.control("subscribe", book("NOPE/USD", 10), h.now())
    (rej,) = of(st.events, SubscriptionRejected)
    assert rej.retry_in_s is None
    assert st.sends == []


def test_control_subscribe_book_before_instrument_snapshot_waits() -> None:
    h = H([book(BTC, 10)])
    h.connect()
    st = h.a.control("subscribe", book(MATIC, 10), h.now())
    assert st == Step()
    assert h.a.stream_state("kraken:book:MATIC/USD:10") == "wait_instrument"
    st = h.feed(instrument_snapshot(PAIRS))
    assert [r["params"]["symbol"] for r in subs(st)] == [[BTC, MATIC]]


def test_control_while_disconnected_is_replayed_on_connect() -> None:
    h = H([trades(BTC)])
    assert h.a.control("subscribe", trades(MATIC), h.now()) == Step()
    assert h.a.control("subscribe", book(MATIC, 10), h.now()) == Step()
    s = h.connect()
    assert sorted(r["params"]["channel"] for r in subs(s)) == ["instrument", "trade"]
    (treq,) = [r for r in subs(s) if r["params"]["channel"] == "trade"]
    assert treq["params"]["symbol"] == [BTC, MATIC]
    s2 = h.feed(instrument_snapshot(PAIRS))
    assert [r["params"]["symbol"] for r in subs(s2)] == [[MATIC]]


def test_control_unsubscribe_connected_and_disconnected() -> None:
    h = H([book(MATIC, 10), trades(MATIC), trades(BTC)])
    h.bring_up()
    st = h.a.control("unsubscribe", book(MATIC, 10), h.now())
    (u,) = subs(st, "unsubscribe")
    assert u["params"] == {"channel": "book", "symbol": [MATIC], "depth": 10}
    assert "kraken:book:MATIC/USD:10" not in h.a.streams()
    assert not h.a.has_book(MATIC)
    assert h.a.book(MATIC) is None
    # frames for it are now ignored
    assert h.feed(book_frame("update", MATIC, [], [], 1, iso(h.ts()))) == Step()
    # unknown stream: nothing
    assert h.a.control("unsubscribe", trades("ETH/USD"), h.now()) == Step()
    h.disconnect()
    assert h.a.control("unsubscribe", trades(MATIC), h.now()) == Step()
    s = h.connect("c2")
    assert [r["params"]["symbol"] for r in subs(s)] == [[BTC]]  # no instrument: no books
    with pytest.raises(ValueError, match="unknown control op"):
        h.a.control("resubscribe", trades(BTC), h.now())


def test_add_rejects_other_venues() -> None:
    with pytest.raises(ValueError, match="not a kraken stream"):
        KrakenAdapter([StreamSpec("binance", "trade", "BTCUSDT")])


# ------------------------------------------------------------------ shutdown


def test_shutdown_while_live_reports_nothing() -> None:
    h = _live_all()
    assert h.a.shutdown(h.now()).events == []


def test_shutdown_emits_open_gaps_with_no_end() -> None:
    h = H([book(MATIC, 10), trades(MATIC), trades(BTC)], ping_interval_s=1e9)
    h.bring_up()
    t_book = h.ex  # the snapshot was the venue's last event
    t_tr = h.ts()
    h.feed(trade_frame(MATIC, [(1, t_tr, "1", "1")]))
    h.disconnect("bye")
    st = h.a.shutdown(h.now())
    gaps = {g.stream: g for g in of(st.events, Gap)}
    assert set(gaps) == {
        "kraken:book:MATIC/USD:10",
        "kraken:trade:MATIC/USD",
        "kraken:trade:BTC/USD",
    }
    assert all(g.end_ts_ns is None for g in gaps.values())
    assert all(g.cause is GapCause.DISCONNECT for g in gaps.values())
    assert gaps["kraken:trade:MATIC/USD"].start_ts_ns == t_tr
    assert gaps["kraken:trade:MATIC/USD"].first_seq == 2
    assert gaps["kraken:book:MATIC/USD:10"].start_ts_ns == t_book
    # the BTC trade stream never delivered: its gap starts at the ack
    assert gaps["kraken:trade:BTC/USD"].start_ts_ns is not None


def test_shutdown_during_resync_reports_the_open_gap() -> None:
    h = _live_book(ping_interval_s=1e9)
    vb = h.books[MATIC]
    t_ok = h.ex
    h.feed(vb.update(h.ts(), bids=[("0.9999", "2")], checksum=7))
    st = h.a.shutdown(h.now())
    (gap,) = of(st.events, Gap)
    assert gap.cause is GapCause.CHECKSUM_MISMATCH
    assert (gap.start_ts_ns, gap.end_ts_ns) == (t_ok, None)


def test_shutdown_while_syncing_without_prior_gap_uses_shutdown_cause() -> None:
    h = H([trades(BTC)], ping_interval_s=1e9)
    s = h.connect()
    h.ack_all(s)
    t_tr = h.ts()
    h.feed(trade_frame(BTC, [(1, t_tr, "1", "1")]))
    h.a.control("subscribe", book(MATIC, 10), h.now())  # waits for instrument (never came)
    h.disconnect()
    h.connect("c2")  # trade stream pending again, gap(disconnect) open
    st = h.a.shutdown(h.now())
    (gap,) = of(st.events, Gap)
    assert gap.cause is GapCause.DISCONNECT
    assert gap.start_ts_ns == t_tr


# ------------------------------------------------------------------ passive (replay)


def test_passive_mode_follows_observed_requests() -> None:
    h = H(passive=True)
    s = h.connect()
    assert s.sends == []
    h.a.observe_sent(
        '{"method":"subscribe","params":{"channel":"instrument","snapshot":true},"req_id":1}',
        h.now(),
    )
    h.feed(ack("instrument", None, 1, h.ts()))
    st = h.feed(instrument_snapshot(PAIRS))
    assert st.sends == []
    h.a.observe_sent(
        '{"method":"subscribe","params":{"channel":"book","symbol":["MATIC/USD"],'
        '"depth":10,"snapshot":true},"req_id":2}',
        h.now(),
    )
    h.a.observe_sent(
        '{"method":"subscribe","params":{"channel":"trade","symbol":["MATIC/USD"]},"req_id":3}',
        h.now(),
    )
    assert sorted(h.a.streams()) == ["kraken:book:MATIC/USD:10", "kraken:trade:MATIC/USD"]
    b = h.a.book(MATIC)
    assert b is not None
    assert (b.price_precision, b.qty_precision) == (4, 8)
    ev = h.feed(ack("book", MATIC, 2, h.ts(), depth=10)).events
    ev += h.feed(ack("trade", MATIC, 3, h.ts())).events
    assert [type(e) for e in ev] == [Subscribed, Subscribed]
    vb = h.venue_book(MATIC)
    ev = h.feed(vb.snapshot(h.ts())).events
    assert [type(e) for e in ev] == [BookSnapshot]
    # a mismatch in passive mode sends nothing but still invalidates and waits
    bad = h.feed(vb.update(h.ts(), bids=[("0.9999", "1")], checksum=1))
    assert bad.sends == []
    assert not b.valid
    assert h.a.stream_state("kraken:book:MATIC/USD:10") == "pending"
    # the capture then shows the client's resubscribe; the new snapshot closes the gap
    h.a.observe_sent(
        '{"method":"unsubscribe","params":{"channel":"book","symbol":["MATIC/USD"],'
        '"depth":10},"req_id":4}',
        h.now(),
    )
    h.a.observe_sent(
        '{"method":"subscribe","params":{"channel":"book","symbol":["MATIC/USD"],'
        '"depth":10,"snapshot":true},"req_id":5}',
        h.now(),
    )
    h.feed(ack("book", MATIC, 5, h.ts(), depth=10))
    ev = h.feed(vb.snapshot(h.ts())).events
    assert [type(e) for e in ev] == [Gap, BookSnapshot]
    # a timer in passive mode never sends either
    h.at(1000.0)
    assert h.timer().sends == []


def test_passive_rejection_correlated_by_observed_req_id() -> None:
    h = H(passive=True)
    h.connect()
    h.a.observe_sent(
        '{"method":"subscribe","params":{"channel":"trade","symbol":["XBT/USD"]},"req_id":9}',
        h.now(),
    )
    ev = h.feed(ack_error("Currency pair not supported XBT/USD", 9, h.ts())).events
    (rej,) = of(ev, SubscriptionRejected)
    assert rej.stream == "kraken:trade:XBT/USD"
    assert rej.retry_in_s is None


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        "[1,2]",
        '{"method":"ping","req_id":1}',
        '{"method":"unsubscribe","params":{"channel":"book","symbol":["A/B"]}}',
        '{"method":"subscribe","params":{"channel":5}}',
        '{"method":"subscribe"}',
    ],
)
def test_observe_sent_ignores_other_requests(text: str) -> None:
    h = H(passive=True)
    h.connect()
    h.a.observe_sent(text, h.now())
    assert h.a.streams() == []


# ------------------------------------------------------------------ fuzzing


def _templates(h: H) -> list[str]:
    vb = h.books[MATIC]
    t = h.ex + 10_000_000
    return [
        book_frame(
            "update",
            MATIC,
            [("0.9999", "5.00000000")],
            [("1.0001", "0.00000000")],
            vb.checksum(),
            iso(t),
        ),
        vb.snapshot(t),
        trade_frame(MATIC, [(100, t, "1.0001", "2"), (101, t + 1000, "1.0002", "0.5")]),
        ack("book", MATIC, 5, t, depth=10),
        ack_error("Currency pair not supported MATIC/USD", 5, t, symbol=MATIC),
        instrument_update([(MATIC, 4, 8)]),
        instrument_snapshot(PAIRS),
        status("maintenance"),
        pong(3),
        '{"Error":"Exceeded msg rate"}',
    ]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_fuzz_adapter_never_raises_and_never_exposes_unverified_books(
    data: st.DataObject,
) -> None:
    h = _live_all()
    for _ in range(data.draw(st.integers(1, 3))):
        obj = json.loads(data.draw(st.sampled_from(_templates(h))))
        for _ in range(data.draw(st.integers(1, 3))):
            path = data.draw(st.sampled_from(json_paths(obj)))
            delete = bool(path) and data.draw(st.booleans())
            value = None if delete else data.draw(json_values)
            obj = json_set(obj, path, value, delete)
        h.at(h.t + data.draw(st.floats(0, 100)))
        step = h.feed(json.dumps(obj))
        step.extend(h.timer())
        assert all(isinstance(e, Event) for e in step.events)
        last: dict[str, BookSnapshot | BookUpdate] = {}
        for e in step.events:
            if isinstance(e, BookSnapshot | BookUpdate):
                last[e.symbol] = e
        for sym, e in last.items():
            b = h.a.book(sym)
            assert b is not None
            assert b.valid
            if e.checksum is not None:
                assert b.checksum() == e.checksum
        for sym in (MATIC, BTC):
            b = h.a.book(sym)
            if b is not None and b.valid:
                assert h.a.stream_state(f"kraken:book:{sym}:10") == "live"


def test_book_added_to_a_connection_without_books_asks_for_precisions() -> None:
    h = H([trades(BTC)], ping_interval_s=1e9)
    s = h.connect()
    h.ack_all(s)
    out = h.a.control("subscribe", book(MATIC, 10), h.now())
    (req,) = [json.loads(x) for x in out.sends]
    assert req["params"]["channel"] == "instrument"
    sent = h.feed(instrument_snapshot(PAIRS)).sends
    (sub_req,) = [json.loads(x) for x in sent]
    assert sub_req["params"] == {
        "channel": "book",
        "symbol": [MATIC],
        "depth": 10,
        "snapshot": True,
    }
