"""The pure make-before-break merge (gapless.runtime.handover), branch by branch."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from gapless.events import (
    BookSnapshot,
    BookTicker,
    BookUpdate,
    Event,
    Gap,
    GapCause,
    Subscribed,
    Ticker,
    Trade,
    VenueStatus,
)
from gapless.runtime.handover import PLANNED_DETAIL, Handover, Marks, order_key
from gapless.venues.base import Now

TRADES = "binance:trade:BTCUSDT"
BOOK = "binance:book:BTCUSDT"
TICKER = "binance:ticker:BTCUSDT"
BT = "binance:book_ticker:BTCUSDT"
KTRADES = "kucoin:trade:BTC-USDT"
ONE = Decimal(1)


def trade(tid: int, ts: int = 0, stream: str = TRADES) -> Trade:
    venue = stream.split(":")[0]
    return Trade(
        venue=venue,
        local_ts_ns=0,
        symbol=stream.split(":")[2],
        exchange_ts_ns=ts or tid * 1000,
        stream=stream,
        trade_id=tid,
        price=ONE,
        qty=ONE,
        side="buy",
    )


def snap(seq: int) -> BookSnapshot:
    return BookSnapshot(
        venue="binance",
        local_ts_ns=0,
        symbol="BTCUSDT",
        exchange_ts_ns=0,
        stream=BOOK,
        depth=100,
        bids=(),
        asks=(),
        checksum=None,
        seq=seq,
    )


def upd(seq: int) -> BookUpdate:
    return BookUpdate(
        venue="binance",
        local_ts_ns=0,
        symbol="BTCUSDT",
        exchange_ts_ns=seq * 1000,
        stream=BOOK,
        depth=100,
        bids=(),
        asks=(),
        checksum=None,
        seq=seq,
    )


def ticker(ts: int) -> Ticker:
    z = Decimal(0)
    return Ticker(
        venue="binance",
        local_ts_ns=0,
        symbol="BTCUSDT",
        exchange_ts_ns=ts,
        stream=TICKER,
        bid=z,
        bid_qty=z,
        ask=z,
        ask_qty=z,
        last=z,
        volume=z,
        vwap=z,
        low=z,
        high=z,
        change=z,
        change_pct=z,
    )


def bt(u: int) -> BookTicker:
    z = Decimal(0)
    return BookTicker(
        venue="binance",
        local_ts_ns=0,
        symbol="BTCUSDT",
        exchange_ts_ns=0,
        stream=BT,
        bid=z,
        bid_qty=z,
        ask=z,
        ask_qty=z,
        update_id=u,
    )


def gap(stream: str, first: int | None, last: int | None) -> Gap:
    return Gap(
        venue="binance",
        local_ts_ns=0,
        stream=stream,
        symbol="BTCUSDT",
        cause=GapCause.SEQUENCE_GAP,
        start_ts_ns=0,
        end_ts_ns=1,
        first_seq=first,
        last_seq=last,
    )


def subscribed(stream: str) -> Subscribed:
    return Subscribed(venue="binance", local_ts_ns=0, conn="c2", stream=stream)


def at(t: float) -> Now:
    return Now(t, int(t * 1e9))


class Pipe:
    """Old events straight through the marks; successor events via the handover."""

    def __init__(self, streams: list[str], **kw: float) -> None:
        self.marks = Marks()
        self.out: list[Event] = []
        self.streams = streams
        self.kw = kw
        self.ho: Handover | None = None

    def begin(self, t: float = 0.0) -> Handover:
        self.ho = Handover("binance", self.streams, self.marks, t, **self.kw)  # type: ignore[arg-type]
        return self.ho

    def old(self, *events: Event) -> None:
        for ev in events:
            if self.marks.admit(ev, merging=self.ho is not None):
                self.out.append(ev)

    def new(self, *events: Event, t: float = 0.0) -> None:
        assert self.ho is not None
        for ev in events:
            self.release(self.ho.offer(ev, at(t)))

    def release(self, events: list[Event]) -> None:
        for ev in events:
            if self.marks.admit(ev, merging=self.ho is not None):
                self.out.append(ev)

    def keys(self, stream: str) -> list[int | None]:
        return [order_key(e) for e in self.out if getattr(e, "stream", None) == stream]


# ------------------------------------------------------------------ marks


def test_order_keys() -> None:
    assert order_key(trade(7)) == 7
    assert order_key(upd(9)) == 9
    assert order_key(snap(5)) == 5
    assert order_key(bt(11)) == 11
    assert order_key(ticker(123)) == 123
    assert order_key(VenueStatus(venue="kraken", local_ts_ns=0, conn="c", system="online")) is None


def test_marks_drop_repeats_but_not_a_snapshot_outside_a_handover() -> None:
    m = Marks()
    assert m.admit(trade(1), merging=False)
    assert not m.admit(trade(1), merging=False)
    assert m.admit(trade(2), merging=False)
    assert m.admit(upd(10), merging=False)
    assert m.admit(snap(10), merging=False)  # a healed resync: the book was reset
    assert not m.admit(snap(10), merging=True)  # during a handover it is a repeat
    assert m.admit(snap(11), merging=True)


def test_marks_let_gaps_through_unless_moot_during_a_handover() -> None:
    m = Marks()
    m.admit(trade(10), merging=False)
    assert m.admit(gap(TRADES, 5, 8), merging=False)
    assert not m.admit(gap(TRADES, 5, 8), merging=True)  # everything up to 10 was delivered
    assert m.admit(gap(TRADES, 11, 12), merging=True)
    assert m.admit(gap(TRADES, 11, None), merging=True)


# ------------------------------------------------------------------ joins


def test_trades_join_on_contiguous_ids_and_are_never_doubled() -> None:
    p = Pipe([TRADES])
    p.old(trade(1), trade(2), trade(3))
    ho = p.begin()
    p.new(trade(5), trade(6))  # the old connection is behind: held
    assert not ho.all_joined
    assert p.keys(TRADES) == [1, 2, 3]
    p.old(trade(4))  # now 5 continues the old stream
    p.release(ho.tick(at(0.1)))
    assert ho.all_joined
    p.old(trade(5), trade(6), trade(7))  # both carry the stream now
    p.new(trade(7), trade(8))
    assert p.keys(TRADES) == [1, 2, 3, 4, 5, 6, 7, 8]
    assert ho.gaps == 0


def test_non_contiguous_trade_ids_need_an_overlap() -> None:
    p = Pipe([KTRADES])
    p.old(trade(10, stream=KTRADES))
    ho = p.begin()
    p.new(trade(11, stream=KTRADES))  # 11 may not follow 10 directly on KuCoin
    assert not ho.all_joined
    p.old(trade(11, stream=KTRADES))
    p.release(ho.tick(at(0.1)))
    assert ho.all_joined
    assert p.keys(KTRADES) == [10, 11]


def test_a_book_joins_once_the_old_connection_reached_the_snapshot() -> None:
    p = Pipe([BOOK])
    p.old(snap(100), upd(105))
    ho = p.begin()
    p.new(snap(108), upd(110), upd(112))
    assert not ho.all_joined  # the old connection delivered only up to 105
    p.old(upd(108))
    p.release(ho.tick(at(0.1)))
    assert ho.all_joined
    # the successor's snapshot is not re-sent: it is where the user's book already is
    assert [type(e).__name__ for e in p.out] == [
        "BookSnapshot",
        "BookUpdate",
        "BookUpdate",
        "BookUpdate",
        "BookUpdate",
    ]
    assert p.keys(BOOK) == [100, 105, 108, 110, 112]


def test_a_stream_nothing_was_delivered_on_joins_at_once() -> None:
    p = Pipe([BOOK])
    ho = p.begin()
    p.new(snap(50), upd(51))
    assert ho.all_joined
    assert p.keys(BOOK) == [50, 51]


def test_a_quiet_confirmed_stream_joins_after_quiet_s_but_a_book_does_not() -> None:
    p = Pipe([TRADES, BOOK], quiet_s=2.0)
    p.old(trade(1), snap(10))
    ho = p.begin()
    p.new(subscribed(TRADES), subscribed(BOOK), t=0.0)
    assert ho.tick(at(1.0)) == []
    ho.tick(at(2.5))
    assert ho.unjoined() == [BOOK]
    assert p.out == [trade(1), snap(10)]  # the successor's ack is internal


def test_a_successor_gap_before_joining_restarts_its_coverage() -> None:
    p = Pipe([TRADES])
    p.old(trade(1))
    ho = p.begin()
    p.new(trade(2))  # joins at once: 2 follows 1
    assert ho.all_joined
    p2 = Pipe([TRADES])
    p2.old(trade(1))
    ho2 = p2.begin()
    p2.new(trade(4))
    p2.new(gap(TRADES, 5, 6), trade(7))  # coverage now starts at 7
    p2.old(trade(2), trade(3), trade(4), trade(5))
    p2.release(ho2.tick(at(0.1)))
    assert not ho2.all_joined
    p2.old(trade(6))
    p2.release(ho2.tick(at(0.2)))
    assert ho2.all_joined
    assert p2.keys(TRADES) == [1, 2, 3, 4, 5, 6, 7]


def test_retire_waits_for_the_overlap_tail() -> None:
    p = Pipe([TRADES], overlap_s=0.5)
    p.old(trade(1))
    ho = p.begin(10.0)
    p.new(trade(2), t=10.2)
    assert ho.all_joined
    assert not ho.ready_to_retire(10.5)
    assert ho.ready_to_retire(10.7)


# ------------------------------------------------------------------ forced


def test_forced_join_declares_exactly_the_uncovered_trade_ids() -> None:
    p = Pipe([TRADES])
    p.old(trade(1), trade(2))
    ho = p.begin()
    p.new(trade(6), trade(7))
    p.release(ho.force(at(1.0)))
    assert ho.all_joined
    assert ho.gaps == 1
    g = next(e for e in p.out if isinstance(e, Gap))
    assert (g.first_seq, g.last_seq, g.cause) == (3, 5, GapCause.DISCONNECT)
    assert g.detail.startswith(PLANNED_DETAIL)
    assert (g.start_ts_ns, g.end_ts_ns) == (2000, 6000)
    assert [order_key(e) for e in p.out if isinstance(e, Trade)] == [1, 2, 6, 7]


def test_forced_by_another_fault_the_gap_is_not_the_planned_closes() -> None:
    p = Pipe([TRADES])
    p.old(trade(1))
    ho = p.begin()
    p.new(trade(4))
    p.release(ho.force(at(1.0), planned=False))  # the old connection was aborted
    g = next(e for e in p.out if isinstance(e, Gap))
    assert (g.first_seq, g.last_seq) == (2, 3)
    assert not g.detail.startswith(PLANNED_DETAIL)
    assert "make-before-break" in g.detail


def test_forced_join_of_a_book_delivers_gap_then_the_successors_snapshot() -> None:
    p = Pipe([BOOK])
    p.old(snap(100), upd(103))
    ho = p.begin()
    p.new(snap(120), upd(121))
    p.release(ho.force(at(1.0)))
    kinds = [type(e).__name__ for e in p.out]
    assert kinds == ["BookSnapshot", "BookUpdate", "Gap", "BookSnapshot", "BookUpdate"]
    g = p.out[2]
    assert isinstance(g, Gap)
    assert (g.first_seq, g.last_seq) == (104, 120)


def test_forced_join_of_a_ticker_is_bounded_by_time() -> None:
    p = Pipe([TICKER])
    p.old(ticker(1_000))
    ho = p.begin()
    p.new(ticker(5_000))
    p.release(ho.force(at(1.0)))
    g = next(e for e in p.out if isinstance(e, Gap))
    assert (g.first_seq, g.last_seq) == (None, None)
    assert (g.start_ts_ns, g.end_ts_ns) == (1_000, 4_999)


def test_forced_stream_without_successor_data_joins_on_its_first_event() -> None:
    p = Pipe([BT, TRADES])
    p.old(bt(10), trade(3))
    ho = p.begin()
    p.release(ho.force(at(1.0)))
    assert sorted(ho.unjoined()) == sorted([BT, TRADES])
    p.new(bt(11))  # no update id lies between 10 and 11: nothing can have been missed
    p.new(trade(9))  # trade ids 4..8 are missing
    assert ho.all_joined
    assert ho.gaps == 1
    assert [type(e).__name__ for e in p.out] == [
        "BookTicker",
        "Trade",
        "BookTicker",
        "Gap",
        "Trade",
    ]
    g = p.out[3]
    assert isinstance(g, Gap)
    assert (g.stream, g.first_seq, g.last_seq) == (TRADES, 4, 8)


def test_too_many_held_events_stop_the_wait_for_that_stream() -> None:
    p = Pipe([TRADES], max_pending=3)
    p.old(trade(1))
    ho = p.begin()
    p.new(trade(5), trade(6), trade(7))
    assert not ho.all_joined
    p.new(trade(8))
    assert ho.all_joined
    assert ho.gaps == 1


def test_close_mid_handover_declares_unjoined_streams_open() -> None:
    p = Pipe([TRADES, BOOK])
    p.old(trade(3), snap(10))
    ho = p.begin()
    p.new(trade(4))
    (g,) = ho.close(at(2.0))
    assert isinstance(g, Gap)
    assert g.stream == BOOK
    assert (g.first_seq, g.last_seq, g.end_ts_ns) == (11, None, None)
    assert g.cause is GapCause.SHUTDOWN


def test_non_stream_events_from_the_successor_pass() -> None:
    p = Pipe([TRADES])
    ho = p.begin()
    status = VenueStatus(venue="binance", local_ts_ns=0, conn="c2", system="online")
    assert ho.offer(status, at(0)) == [status]


@given(
    old_end=st.integers(1, 60),
    new_start=st.integers(1, 60),
    new_len=st.integers(1, 40),
    forced=st.booleans(),
)
def test_merged_trades_are_strictly_increasing_and_gaps_cover_every_hole(
    old_end: int, new_start: int, new_len: int, forced: bool
) -> None:
    p = Pipe([TRADES])
    p.old(*(trade(i) for i in range(1, old_end + 1)))
    ho = p.begin()
    p.new(*(trade(i) for i in range(new_start, new_start + new_len)))
    if forced:
        p.release(ho.force(at(1.0)))
    delivered = [e.trade_id for e in p.out if isinstance(e, Trade)]
    assert delivered == sorted(set(delivered))
    covered = set(delivered)
    for g in (e for e in p.out if isinstance(e, Gap)):
        assert g.first_seq is not None
        assert g.last_seq is not None
        covered |= set(range(g.first_seq, g.last_seq + 1))
    top = max(delivered)
    assert covered >= set(range(1, top + 1))
    if not forced and new_start > old_end + 1:
        assert not ho.all_joined  # waits rather than skip
