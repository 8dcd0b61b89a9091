"""Binance diff-depth synchroniser (protocols.md §3.8) and trade-id continuity (§3.6).

Hand-written cases for each rule of §3.8, then hypothesis runs against a naive
reference: a venue that changes one level per update id, groups ids into
``depthUpdate`` events with absolute quantities, and answers snapshots with
its exact state at some id. Whenever the machine says SYNCED its book must
equal the reference at the machine's book id, faults or not.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from gapless.errors import ConfigError, DecodeError, LocalProtocolError
from gapless.venues.binance.protocol import DepthSnapshot, DepthUpdate, TradeMsg, decode
from gapless.venues.binance.sync import (
    Applied,
    Buffered,
    DepthSync,
    Dropped,
    GapDetected,
    NeedSnapshot,
    Pending,
    Refetch,
    SeqDuplicate,
    SeqGap,
    SeqOk,
    Synced,
    SyncState,
    SyncTally,
    TradeIdCheck,
)
from gapless.venues.seqsync import ScaledBook, check_decimal, decimals_of, is_zero

Lv = tuple[str, str]


def ev(
    first: int, last: int, bids: list[Lv] | None = None, asks: list[Lv] | None = None
) -> DepthUpdate:
    return DepthUpdate("BNBBTC", 0, first, last, tuple(bids or ()), tuple(asks or ()))


def state(sync: DepthSync) -> SyncState:
    """The state, read through a call (mypy would keep a narrowed property)."""
    return sync.state


def book_of(sync: DepthSync) -> tuple[dict[Decimal, Decimal], dict[Decimal, Decimal]]:
    return (
        {lv.price: lv.qty for lv in sync.book.bids()},
        {lv.price: lv.qty for lv in sync.book.asks()},
    )


def d(mapping: dict[str, str]) -> dict[Decimal, Decimal]:
    return {Decimal(k): Decimal(v) for k, v in mapping.items()}


SNAP_BIDS = [("4.00000000", "431.00000000"), ("3.99000000", "10.00000000")]
SNAP_ASKS = [("4.00000200", "12.00000000"), ("4.10000000", "1.00000000")]

# ---------------------------------------------------------------- the §3.8 steps


def test_normal_flow_buffer_snapshot_then_live() -> None:
    s = DepthSync("BNBBTC")
    assert state(s) is SyncState.BUFFERING
    r = s.on_event(ev(100, 105, bids=[("4.00000000", "1.00000000")]))
    assert r == NeedSnapshot(100, "start")
    assert r.fetch_snapshot
    assert state(s) is SyncState.NEED_SNAPSHOT
    assert s.first_seq == 100
    r2 = s.on_event(ev(106, 110, asks=[("4.10000000", "0")]))
    assert r2 == Buffered(2)
    assert not r2.fetch_snapshot
    assert not s.book.valid
    r3 = s.on_snapshot(103, SNAP_BIDS, SNAP_ASKS)
    assert r3 == Synced(snapshot_seq=103, seq=110, replayed=2, dropped=0)
    assert state(s) is SyncState.SYNCED
    assert s.seq == 110
    assert s.book.valid
    assert book_of(s) == (
        d({"4": "1", "3.99": "10"}),
        d({"4.000002": "12"}),
    )
    r4 = s.on_event(ev(111, 111, bids=[("3.98000000", "2.00000000")]))
    assert isinstance(r4, Applied)
    assert (r4.first_seq, r4.last_seq) == (111, 111)
    assert r4.bids == ((398000000, 200000000),)
    assert (r4.price_precision, r4.qty_precision) == (8, 8)
    assert s.seq == 111
    assert s.buffered == 0


def test_stale_snapshot_is_refetched_and_buffer_kept() -> None:
    s = DepthSync("BNBBTC")
    s.on_event(ev(100, 105))
    s.on_event(ev(106, 110))
    r = s.on_snapshot(90, SNAP_BIDS, SNAP_ASKS)  # lastUpdateId < first U
    assert r == Refetch(snapshot_seq=90, first_seq=100)
    assert r.fetch_snapshot
    assert state(s) is SyncState.NEED_SNAPSHOT
    assert s.buffered == 2
    assert not s.book.valid
    assert len(s.book) == 0  # the stale snapshot was not loaded
    assert s.on_snapshot(107, SNAP_BIDS, SNAP_ASKS) == Synced(107, 110, 1, 1)


def test_refetch_edge_snapshot_exactly_before_first_event_is_used() -> None:
    # Documented deviation: §3.8 step 3 refetches when lastUpdateId < U, but at
    # lastUpdateId == U - 1 the first event starts exactly after the snapshot.
    s = DepthSync("BNBBTC")
    s.on_event(ev(100, 105, bids=[("1.0", "1")]))
    assert s.on_snapshot(99, [], []) == Synced(99, 105, 1, 0)
    s2 = DepthSync("BNBBTC")
    s2.on_event(ev(100, 105))
    assert s2.on_snapshot(98, [], []) == Refetch(98, 100)


def test_first_event_straddles_the_snapshot() -> None:
    # U <= lastUpdateId + 1 <= u: the event overlaps the snapshot; its
    # quantities are absolute as of u, so applying it whole is right.
    s = DepthSync("BNBBTC")
    s.on_event(ev(100, 110, bids=[("4.00000000", "7.00000000")]))
    assert s.on_snapshot(104, SNAP_BIDS, SNAP_ASKS) == Synced(104, 110, 1, 0)
    assert book_of(s)[0][Decimal("4")] == Decimal(7)


def test_events_fully_before_the_snapshot_are_dropped() -> None:
    s = DepthSync("BNBBTC")
    s.on_event(ev(100, 105, bids=[("4.00000000", "999")]))  # u <= lastUpdateId: dropped
    s.on_event(ev(106, 108, bids=[("4.00000000", "998")]))  # dropped
    s.on_event(ev(109, 112, asks=[("4.10000000", "0")]))
    r = s.on_snapshot(110, SNAP_BIDS, SNAP_ASKS)
    assert r == Synced(110, 112, replayed=1, dropped=2)
    bids, asks = book_of(s)
    assert bids[Decimal("4")] == Decimal(431)  # the dropped events did not touch it
    assert Decimal("4.1") not in asks


def test_snapshot_equal_to_an_event_final_id() -> None:
    # §3.8 step 4 as printed (U <= lastUpdateId <= u) would fail here: the
    # next event starts at lastUpdateId + 1. The cryptofeed form accepts it.
    s = DepthSync("BNBBTC")
    s.on_event(ev(100, 105))
    s.on_event(ev(106, 110))
    assert s.on_snapshot(105, SNAP_BIDS, SNAP_ASKS) == Synced(105, 110, 1, 1)


def test_live_gap_resyncs() -> None:
    s = DepthSync("BNBBTC")
    s.on_event(ev(100, 105))
    s.on_snapshot(104, SNAP_BIDS, SNAP_ASKS)
    assert s.seq == 105
    gap = ev(108, 109, bids=[("1", "1")])
    r = s.on_event(gap)  # U > last + 1
    assert r == GapDetected(expected=106, got=108, was_live=True)
    assert r.fetch_snapshot
    assert not s.book.valid
    assert len(s.book) == 0  # thrown away, never merged
    assert state(s) is SyncState.NEED_SNAPSHOT
    assert s.seq is None
    assert (s.buffered, s.first_seq) == (1, 108)  # the revealing event starts the new cycle
    assert s.on_event(ev(110, 111)) == Buffered(2)
    assert s.on_snapshot(108, [("2", "2")], []) == Synced(108, 111, 2, 0)
    assert book_of(s)[0] == d({"1": "1", "2": "2"})


def test_live_continuity_duplicates_and_overlap() -> None:
    s = DepthSync("BNBBTC")
    s.on_event(ev(100, 105))
    assert s.on_snapshot(105, [], []) == Synced(105, 105, 0, 1)
    assert isinstance(s.on_event(ev(106, 107, asks=[("5", "1")])), Applied)
    assert isinstance(s.on_event(ev(108, 108)), Applied)
    assert s.on_event(ev(108, 108)) == Dropped(108, 108, "already in book")  # duplicate
    assert s.on_event(ev(100, 101)) == Dropped(100, 101, "already in book")  # late
    # overlap: doc step 6 applies it (gap only if U > id + 1)
    r = s.on_event(ev(107, 109, asks=[("5", "0")]))
    assert isinstance(r, Applied)
    assert s.seq == 109
    assert book_of(s)[1] == {}


def test_ids_that_stay_inside_the_book_are_a_regression() -> None:
    """A corrupt event ran the book's id far ahead: the venue's real events all lie
    inside it. Up to ``max_stale_run`` of them in a row are repeats; one more
    and the book is declared wrong (a Gap, then a snapshot), never kept frozen."""
    s = DepthSync("BNBBTC", max_stale_run=3)
    s.on_event(ev(100, 105))
    s.on_snapshot(105, SNAP_BIDS, SNAP_ASKS)
    assert isinstance(s.on_event(ev(106, 10**18, bids=[("1", "1")])), Applied)
    for first in (107, 108, 109):
        assert s.on_event(ev(first, first)) == Dropped(first, first, "already in book")
    r = s.on_event(ev(110, 110))
    assert r == GapDetected(expected=10**18 + 1, got=110, was_live=True, regressed=True)
    assert r.fetch_snapshot
    assert not s.book.valid
    assert len(s.book) == 0
    assert (state(s), s.buffered, s.first_seq) == (SyncState.NEED_SNAPSHOT, 1, 110)
    assert s.on_snapshot(110, SNAP_BIDS, []) == Synced(110, 110, 0, 1)


def test_an_applied_event_ends_a_run_of_repeats() -> None:
    s = DepthSync("BNBBTC", max_stale_run=2)
    s.on_event(ev(100, 105))
    s.on_snapshot(105, [], [])
    for _ in range(5):  # repeats, each run cut by a real event
        assert isinstance(s.on_event(ev(104, 104)), Dropped)
        assert isinstance(s.on_event(ev(105, 105)), Dropped)
        nxt = s.seq + 1 if s.seq is not None else 0
        assert isinstance(s.on_event(ev(nxt, nxt)), Applied)
    assert s.book.valid
    for bad in (0, -1, 1.5):
        with pytest.raises(ConfigError):
            DepthSync("X", max_stale_run=bad)  # type: ignore[arg-type]


def test_gap_inside_the_buffer_restarts_the_cycle() -> None:
    s = DepthSync("BNBBTC")
    s.on_event(ev(100, 105))
    assert s.on_event(ev(103, 105)) == Dropped(103, 105, "duplicate")
    r = s.on_event(ev(110, 112))
    assert r == GapDetected(expected=106, got=110, was_live=False)
    assert (s.buffered, s.first_seq) == (1, 110)
    # an in-flight snapshot that only fits the old cycle is now judged on its numbers
    assert s.on_snapshot(104, [], []) == Refetch(104, 110)
    assert s.on_snapshot(111, [], []) == Synced(111, 112, 1, 0)


def test_buffer_overflow_restarts() -> None:
    s = DepthSync("BNBBTC", max_buffer=3)
    s.on_event(ev(1, 1))
    s.on_event(ev(2, 2))
    s.on_event(ev(3, 3))
    r = s.on_event(ev(4, 4))
    assert r == NeedSnapshot(4, "overflow")
    assert r.fetch_snapshot
    assert (s.buffered, s.first_seq) == (1, 4)
    with pytest.raises(ConfigError):
        DepthSync("X", max_buffer=0)


def test_snapshot_before_any_event_is_held() -> None:
    s = DepthSync("BNBBTC")
    assert s.on_snapshot(50, SNAP_BIDS, SNAP_ASKS) == Pending(50)
    assert s.pending_snapshot == 50
    assert state(s) is SyncState.BUFFERING
    assert not s.book.valid
    assert s.on_snapshot(49, [], []) == Dropped(49, 49, "not newer than the held snapshot")
    r = s.on_event(ev(48, 53, asks=[("4.00000200", "0")]))  # straddles 51
    assert r == Synced(50, 53, 1, 0)
    assert s.book.valid
    assert book_of(s)[1] == d({"4.1": "1"})


def test_held_snapshot_made_live_by_an_older_event() -> None:
    s = DepthSync("BNBBTC")
    s.on_snapshot(50, SNAP_BIDS, SNAP_ASKS)
    # U <= 51, so the snapshot is not older than the stream: live at 50
    assert s.on_event(ev(45, 50, bids=[("1", "1")])) == Synced(50, 50, 0, 1)
    assert s.seq == 50
    assert book_of(s)[0] == d({"4": "431", "3.99": "10"})  # the covered event is not applied
    assert isinstance(s.on_event(ev(51, 51)), Applied)


def test_held_snapshot_proven_stale_by_the_first_event() -> None:
    s = DepthSync("BNBBTC")
    s.on_snapshot(50, SNAP_BIDS, SNAP_ASKS)
    r = s.on_event(ev(60, 61))
    assert r == Refetch(50, 60)
    assert (state(s), s.buffered, s.pending_snapshot) == (SyncState.NEED_SNAPSHOT, 1, None)
    assert len(s.book) == 0


def test_snapshot_newer_than_the_whole_buffer_goes_live_at_once() -> None:
    s = DepthSync("BNBBTC")
    s.on_event(ev(40, 45))
    assert s.on_snapshot(50, SNAP_BIDS, []) == Synced(50, 50, replayed=0, dropped=1)
    assert s.book.valid
    assert s.on_event(ev(46, 50)) == Dropped(46, 50, "already in book")  # in flight, covered
    r = s.on_event(ev(53, 54))  # 51..52 never arrived
    assert r == GapDetected(51, 53, was_live=True)
    assert s.first_seq == 53


def test_snapshot_when_synced_is_ignored_and_reset() -> None:
    s = DepthSync("BNBBTC")
    s.on_event(ev(1, 2))
    s.on_snapshot(1, [], [])
    assert s.on_snapshot(5, SNAP_BIDS, []) == Dropped(5, 5, "already synced")
    s.reset()
    assert (s.state, s.seq, s.buffered, s.book.valid) == (SyncState.BUFFERING, None, 0, False)
    assert len(s.book) == 0


def test_on_depth_snapshot_and_decoded_events() -> None:
    s = DepthSync("BNBBTC")
    frame = (
        '{"e":"depthUpdate","E":1672515782136,"s":"BNBBTC","U":157,"u":160,'
        '"b":[["0.0024","10"]],"a":[["0.0026","100"]]}'
    )
    msg = decode(frame)
    assert isinstance(msg, DepthUpdate)
    assert s.on_event(msg) == NeedSnapshot(157, "start")
    snap = DepthSnapshot(158, (("0.00240000", "5.00000000"),), ())
    assert s.on_depth_snapshot(snap) == Synced(158, 160, 1, 0)
    assert book_of(s) == (d({"0.0024": "10"}), d({"0.0026": "100"}))
    assert s.price_precision == 8


def test_inverted_range_and_bad_levels() -> None:
    s = DepthSync("BNBBTC")
    with pytest.raises(LocalProtocolError):
        s.on_event(ev(5, 4))
    with pytest.raises(LocalProtocolError):
        s.on_snapshot(-1, [], [])
    s.on_event(ev(1, 1))
    assert s.on_snapshot(0, [], []) == Synced(0, 1, 1, 0)
    with pytest.raises(DecodeError):
        s.on_event(ev(2, 2, bids=[("abc", "1")]))
    # a level a decoder would have refused: the machine restarts, book invalid
    assert (s.state, s.book.valid) == (SyncState.BUFFERING, False)
    s.on_event(ev(3, 3))
    with pytest.raises(DecodeError):
        s.on_snapshot(3, [("-1", "1")], [])
    assert state(s) is SyncState.BUFFERING


# ---------------------------------------------------------------- precision


def test_precision_follows_decimals_and_rescales_exactly() -> None:
    s = DepthSync("BNBBTC")
    s.on_event(ev(1, 1))
    assert s.on_snapshot(0, [("4.5", "1")], [("5", "2.25")]) == Synced(0, 1, 1, 0)
    assert (s.price_precision, s.qty_precision) == (1, 2)
    s.on_event(ev(2, 2, bids=[("4.123456789", "0.000000001")]))
    assert (s.price_precision, s.qty_precision) == (9, 9)
    assert s.book.valid
    bids, asks = book_of(s)
    assert bids == d({"4.5": "1", "4.123456789": "0.000000001"})
    assert asks == d({"5": "2.25"})
    assert s.book.bids_fixed() == [(4_500_000_000, 1_000_000_000), (4_123_456_789, 1)]
    r = s.on_event(ev(3, 3, bids=[("4.5", "0")]))  # shorter text still matches the level
    assert isinstance(r, Applied)
    assert r.bids == ((4_500_000_000, 0),)
    assert book_of(s)[0] == d({"4.123456789": "0.000000001"})


def test_minimum_precision_from_exchange_info() -> None:
    s = DepthSync("BNBBTC", price_precision=8, qty_precision=8)
    s.on_event(ev(1, 1))
    s.on_snapshot(0, [("4", "1")], [])
    assert s.book.bids_fixed() == [(400_000_000, 100_000_000)]
    with pytest.raises(ConfigError):
        DepthSync("X", price_precision=19)


def test_decimal_helpers() -> None:
    assert decimals_of("0.00240000") == 8
    assert decimals_of("5") == 0
    assert is_zero("0")
    assert is_zero("0.00000000")
    assert is_zero("00.0")
    assert not is_zero("0.00000001")
    assert check_decimal("12.5") == "12.5"
    for bad in ["", "1.", ".1", "1.2.3", "-1", "1e5", "NaN", "１", " 1", "0." + "1" * 19]:
        with pytest.raises(DecodeError):
            check_decimal(bad)
    with pytest.raises(DecodeError):
        check_decimal(1.5)
    with pytest.raises(DecodeError):
        decimals_of(5)  # type: ignore[arg-type]
    sb = ScaledBook("binance", "X", depth=2)
    sb.load([("3", "1"), ("2", "1"), ("1", "1")], [])
    assert len(sb.book) == 2  # a bounded book truncates like Kraken's
    with pytest.raises(ConfigError):
        ScaledBook("binance", "X", depth=0)
    with pytest.raises(DecodeError):
        sb.apply([("0." + "1" * 19, "1")], [])


PLAIN_DECIMAL = re.compile(r"[0-9]+(\.[0-9]{1,18})?")


@settings(max_examples=400, deadline=None)
@given(
    text=st.one_of(
        st.text(alphabet="0123456789.-+eE ١²", max_size=40),
        st.from_regex(r"[0-9]{1,20}\.[0-9]{1,20}", fullmatch=True),
        st.text(max_size=12),
    )
)
def test_check_decimal_accepts_exactly_plain_decimal_text(text: str) -> None:
    """ASCII digits with at most one inner dot, at most 18 decimals, at most 36 chars."""
    want = len(text) <= 36 and PLAIN_DECIMAL.fullmatch(text) is not None
    if want:
        assert check_decimal(text) == text
    else:
        with pytest.raises(DecodeError):
            check_decimal(text)


def test_book_is_not_truncated() -> None:
    s = DepthSync("BNBBTC")
    s.on_event(ev(1, 1))
    levels = [(str(i), "1") for i in range(1, 6001)]
    assert s.on_snapshot(0, levels, []) == Synced(0, 1, 1, 0)
    assert len(s.book.bids()) == 6000  # deeper than any 5000-level snapshot


# ---------------------------------------------------------------- trade ids


def test_trade_id_continuity() -> None:
    c = TradeIdCheck()
    assert c.on_trade(12345) == SeqOk(12345)
    assert c.on_trade(TradeMsg("BNBBTC", 0, 12346, "1", "1", 0, True)) == SeqOk(12346)
    assert c.on_trade(12350) == SeqGap(expected=12347, got=12350)
    assert c.last == 12350
    assert c.on_trade(12350) == SeqDuplicate(last=12350, got=12350)
    assert c.on_trade(12348) == SeqDuplicate(last=12350, got=12348)
    assert c.on_trade(12351) == SeqOk(12351)
    c.reset()
    assert c.last is None
    assert c.on_trade(7) == SeqOk(7)


# ---------------------------------------------------------------- reference model

PRICES = ["4.00000000", "4.01", "3.99", "4.5", "3.125", "5", "0.00240000", "4.0000001"]
QTYS = ["0", "1", "2.5", "0.00000001", "10.000", "0.00000000", "3"]


class Venue:
    """Naive venue: update id ``base + i`` sets one level; state at any id."""

    def __init__(self, ops: list[tuple[str, str, str]], base: int) -> None:
        self.ops = ops
        self.base = base

    @property
    def last_id(self) -> int:
        return self.base + len(self.ops) - 1

    def state(self, upto: int) -> tuple[dict[str, str], dict[str, str]]:
        bids: dict[str, str] = {}
        asks: dict[str, str] = {}
        for i, (side, price, qty) in enumerate(self.ops):
            if self.base + i > upto:
                break
            book = bids if side == "b" else asks
            if is_zero(qty):
                book.pop(price, None)
            else:
                book[price] = qty
        return bids, asks

    def decimal_state(self, upto: int) -> tuple[dict[Decimal, Decimal], dict[Decimal, Decimal]]:
        bids, asks = self.state(upto)
        return d(bids), d(asks)

    def snapshot(self, upto: int) -> tuple[int, list[Lv], list[Lv]]:
        bids, asks = self.state(upto)
        return upto, list(bids.items()), list(asks.items())

    def events(self, sizes: list[int]) -> list[DepthUpdate]:
        out = []
        start = 0
        for size in sizes:
            if start >= len(self.ops):
                break
            chunk = self.ops[start : start + size]
            bids: dict[str, str] = {}
            asks: dict[str, str] = {}
            for side, price, qty in chunk:
                (bids if side == "b" else asks)[price] = qty  # final value as of u
            out.append(
                ev(
                    self.base + start,
                    self.base + start + len(chunk) - 1,
                    list(bids.items()),
                    list(asks.items()),
                )
            )
            start += size
        return out


OPS = st.lists(
    st.tuples(st.sampled_from("ba"), st.sampled_from(PRICES), st.sampled_from(QTYS)),
    min_size=1,
    max_size=60,
)


def check_invariant(s: DepthSync, venue: Venue, tally: SyncTally | None = None) -> None:
    if tally is not None:  # the tally counts exactly the syncs that are not live
        assert tally.unsynced == (0 if s.state is SyncState.SYNCED else 1)
    if s.state is SyncState.SYNCED:
        assert s.seq is not None
        assert s.book.valid
        assert book_of(s) == venue.decimal_state(s.seq)
    else:
        assert not s.book.valid


@settings(max_examples=150, deadline=None)
@given(ops=OPS, data=st.data())
def test_clean_stream_matches_reference(ops: list[tuple[str, str, str]], data: Any) -> None:
    base = data.draw(st.integers(1, 10**12))
    venue = Venue(ops, base)
    sizes = data.draw(st.lists(st.integers(1, 5), min_size=len(ops), max_size=len(ops)))
    events = venue.events(sizes)
    join = data.draw(st.integers(0, len(events) - 1))  # we subscribe mid-stream
    s = DepthSync("BNBBTC", max_buffer=1000)
    need = False
    if data.draw(st.booleans()):  # a snapshot may even come before the first message
        early = s.on_snapshot(*venue.snapshot(data.draw(st.integers(base, venue.last_id))))
        event("early snapshot -> " + type(early).__name__)
    for e in events[join:]:
        r = s.on_event(e)
        need = need or r.fetch_snapshot
        check_invariant(s, venue)
        if need and data.draw(st.booleans()):
            # the REST snapshot may lag or lead the stream
            at = data.draw(st.integers(max(base - 3, 0), min(venue.last_id, e.final_update_id + 3)))
            snap = s.on_snapshot(*venue.snapshot(at))
            need = snap.fetch_snapshot
            check_invariant(s, venue)
    if s.state is not SyncState.SYNCED and s.buffered:
        first = s.first_seq
        assert first is not None
        last = events[-1].final_update_id
        at = data.draw(st.integers(first - 1, last - 1))
        assert isinstance(s.on_snapshot(*venue.snapshot(at)), Synced)
    check_invariant(s, venue)
    # a complete stream always ends live, at the venue's final state
    assert s.seq == events[-1].final_update_id
    assert book_of(s) == venue.decimal_state(venue.last_id)


@settings(max_examples=150, deadline=None)
@given(ops=OPS, data=st.data())
def test_faulty_stream_never_shows_a_wrong_book(ops: list[tuple[str, str, str]], data: Any) -> None:
    base = data.draw(st.integers(0, 1000))
    venue = Venue(ops, base)
    sizes = data.draw(st.lists(st.integers(1, 4), min_size=len(ops), max_size=len(ops)))
    events = venue.events(sizes)
    # faults: drop, duplicate, swap neighbours
    delivered: list[DepthUpdate] = []
    i = 0
    while i < len(events):
        fault = data.draw(st.sampled_from(["ok"] * 9 + ["drop", "dup", "swap"]))
        if fault == "drop":
            i += 1
            continue
        if fault == "swap" and i + 1 < len(events):
            delivered += [events[i + 1], events[i]]
            i += 2
            continue
        delivered.append(events[i])
        if fault == "dup":
            delivered.append(events[i])
        i += 1
    tally = SyncTally()
    s = DepthSync("BNBBTC", max_buffer=data.draw(st.integers(1, 8)), tally=tally)
    gaps = 0
    need = False
    for e in delivered:
        r = s.on_event(e)
        event(type(r).__name__)
        need = need or r.fetch_snapshot
        if isinstance(r, GapDetected) and r.was_live:
            gaps += 1
        check_invariant(s, venue, tally)
        # answer due fetches (sometimes late), and now and then an unrequested snapshot
        if data.draw(st.integers(0, 7)) < (4 if need else 1):
            at = data.draw(st.integers(max(base - 2, 0), venue.last_id))
            snap = s.on_snapshot(*venue.snapshot(at))
            event("snapshot -> " + type(snap).__name__)
            need = snap.fetch_snapshot or (need and isinstance(snap, Dropped))
            check_invariant(s, venue, tally)
    if delivered == events:
        assert gaps == 0
    s.reset()
    s.detach()  # a dropped sync leaves the tally, whatever its state
    assert tally.unsynced == 0
