"""KuCoin level2 calibration (protocols.md §2.5, TV-C2) and match order (§2.6).

Hand-written cases for each calibration rule, the docs' worked example in
both spellings, then hypothesis runs against a naive reference venue: one
change (or a sequence-only no-op) per sequence number, grouped into
``trade.l2update`` messages whose entries carry the last sequence that
touched each price. Whenever the machine says SYNCED its book must equal the
reference at the machine's sequence.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from gapless.errors import DecodeError, LocalProtocolError
from gapless.venues.kucoin.protocol import L2Snapshot, L2Update, Match, decode
from gapless.venues.kucoin.sync import (
    Applied,
    Buffered,
    Dropped,
    GapDetected,
    L2Sync,
    MatchCheck,
    NeedSnapshot,
    Pending,
    Refetch,
    SeqDuplicate,
    SeqGap,
    SeqOk,
    Synced,
    SyncState,
)
from gapless.venues.seqsync import is_zero

Ch = tuple[str, str, int]


def upd(
    start: int, end: int, bids: list[Ch] | None = None, asks: list[Ch] | None = None
) -> L2Update:
    return L2Update("BTC-USDT", start, end, 0, tuple(bids or ()), tuple(asks or ()))


def book_of(s: L2Sync) -> tuple[dict[Decimal, Decimal], dict[Decimal, Decimal]]:
    return (
        {lv.price: lv.qty for lv in s.book.bids()},
        {lv.price: lv.qty for lv in s.book.asks()},
    )


def d(mapping: dict[str, str]) -> dict[Decimal, Decimal]:
    return {Decimal(k): Decimal(v) for k, v in mapping.items()}


# ---------------------------------------------------------------- TV-C2 (§2.5 worked example)

TV_C2_SNAPSHOT_ASKS = [("3988.62", "8"), ("3988.61", "32"), ("3988.60", "47"), ("3988.59", "3")]
TV_C2_SNAPSHOT_BIDS = [("3988.51", "56"), ("3988.50", "15"), ("3988.49", "100"), ("3988.48", "10")]
TV_C2_CHANGES = {
    "asks": [["3988.59", "3", "16"], ["3988.61", "0", "19"], ["3988.62", "8", "15"]],
    "bids": [["3988.50", "44", "18"]],
}


def tv_c2_frame(sequence_start: int, sequence_end: int) -> str:
    return json.dumps(
        {
            "type": "message",
            "topic": "/market/level2:BTC-USDT",
            "subject": "trade.l2update",
            "data": {
                "sequenceStart": sequence_start,
                "symbol": "BTC-USDT",
                "changes": TV_C2_CHANGES,
                "sequenceEnd": sequence_end,
                "time": 1545896669105,
            },
        }
    )


def test_tv_c2_read_as_start_15_end_19() -> None:
    msg = decode(tv_c2_frame(15, 19))
    assert isinstance(msg, L2Update)
    s = L2Sync("BTC-USDT")
    assert s.on_update(msg) == NeedSnapshot(15, "start")
    r = s.on_snapshot(16, TV_C2_SNAPSHOT_BIDS, TV_C2_SNAPSHOT_ASKS)
    assert r == Synced(snapshot_seq=16, seq=19, replayed=1, dropped=0)
    bids, asks = book_of(s)
    assert asks == d({"3988.62": "8", "3988.60": "47", "3988.59": "3"})
    assert bids == d({"3988.51": "56", "3988.50": "44", "3988.49": "100", "3988.48": "10"})
    assert s.seq == 19
    assert s.book.valid


def test_tv_c2_entry_filter_is_what_the_example_exercises() -> None:
    # The two entries with sequence <= 16 carry values that would be harmless
    # here; change them to prove they are skipped, not re-applied.
    msg = decode(tv_c2_frame(15, 19))
    assert isinstance(msg, L2Update)
    poisoned = L2Update(
        msg.symbol,
        15,
        19,
        msg.time_ms,
        msg.bids,
        (("3988.59", "999", 16), ("3988.61", "0", 19), ("3988.62", "0", 15)),
    )
    s = L2Sync("BTC-USDT")
    s.on_update(poisoned)
    s.on_snapshot(16, TV_C2_SNAPSHOT_BIDS, TV_C2_SNAPSHOT_ASKS)
    assert book_of(s)[1] == d({"3988.62": "8", "3988.60": "47", "3988.59": "3"})


def test_tv_c2_doc_literal_swapped_fields_are_malformed() -> None:
    # The doc prints "sequenceEnd": 15, "sequenceStart": 19: start > end.
    with pytest.raises(DecodeError, match="sequenceStart 19 > sequenceEnd 15"):
        decode(tv_c2_frame(19, 15))
    # built by hand, the sync machine refuses it as a caller bug
    s = L2Sync("BTC-USDT")
    with pytest.raises(LocalProtocolError):
        s.on_update(upd(19, 15))
    assert s.state is SyncState.BUFFERING


# ---------------------------------------------------------------- calibration rules


def test_flow_buffer_snapshot_live() -> None:
    s = L2Sync("BTC-USDT")
    assert s.on_update(upd(10, 12, bids=[("100", "1", 11)])) == NeedSnapshot(10, "start")
    assert s.on_update(upd(13, 13, asks=[("101", "2", 13)])) == Buffered(2)
    assert s.on_snapshot(12, [("100", "5")], []) == Synced(12, 13, 1, 1)
    assert book_of(s) == (d({"100": "5"}), d({"101": "2"}))
    r = s.on_update(upd(14, 15, bids=[("99.5", "1.25", 15)]))
    assert isinstance(r, Applied)
    assert r.bids == ((995, 125),)
    assert (r.price_precision, r.qty_precision) == (1, 2)


def test_stale_snapshot_refetch() -> None:
    s = L2Sync("BTC-USDT")
    s.on_update(upd(100, 101))
    assert s.on_snapshot(90, [], []) == Refetch(90, 100)
    assert s.buffered == 1
    assert s.on_snapshot(99, [], []) == Synced(99, 101, 1, 0)


def test_messages_before_the_snapshot_are_dropped() -> None:
    s = L2Sync("BTC-USDT")
    s.on_update(upd(1, 3, bids=[("1", "9", 3)]))
    s.on_update(upd(4, 6, bids=[("1", "8", 6)]))
    s.on_update(upd(7, 9, asks=[("2", "1", 8)]))
    assert s.on_snapshot(6, [("1", "7")], []) == Synced(6, 9, 1, 2)
    assert book_of(s) == (d({"1": "7"}), d({"2": "1"}))


def test_price_zero_is_ignored_but_the_sequence_advances() -> None:
    s = L2Sync("BTC-USDT")
    s.on_update(upd(1, 1))
    assert s.on_snapshot(0, [("5", "1")], []) == Synced(0, 1, 1, 0)
    r = s.on_update(upd(2, 4, bids=[("0", "0", 3), ("0", "12", 4)]))
    assert isinstance(r, Applied)
    assert r.bids == ()
    assert s.seq == 4
    assert book_of(s)[0] == d({"5": "1"})
    assert isinstance(s.on_update(upd(5, 5, bids=[("5", "0", 5)])), Applied)  # size 0 deletes
    assert book_of(s)[0] == {}


def test_apply_rule_gap_duplicate_overlap() -> None:
    s = L2Sync("BTC-USDT")
    s.on_update(upd(1, 2))
    s.on_snapshot(1, [], [])
    assert s.seq == 2
    assert s.on_update(upd(1, 2)) == Dropped(1, 2, "already in book")  # end <= last
    # overlap: start <= last + 1 and end > last; entries <= last are skipped
    r = s.on_update(upd(2, 4, asks=[("10", "1", 2), ("11", "1", 4)]))
    assert isinstance(r, Applied)
    assert book_of(s)[1] == d({"11": "1"})
    r2 = s.on_update(upd(7, 8))  # start > last + 1
    assert r2 == GapDetected(expected=5, got=7, was_live=True)
    assert not s.book.valid
    assert (s.state, s.first_seq) == (SyncState.NEED_SNAPSHOT, 7)


def test_contiguous_messages_are_never_entry_filtered() -> None:
    # entry sequence below start (venue oddity): the doc applies it, so do we
    s = L2Sync("BTC-USDT")
    s.on_update(upd(1, 1))
    assert s.on_snapshot(0, [], []) == Synced(0, 1, 1, 0)
    assert isinstance(s.on_update(upd(2, 3, bids=[("7", "1", 1)])), Applied)
    assert book_of(s)[0] == d({"7": "1"})


def test_pending_snapshot_and_buffer_gaps() -> None:
    s = L2Sync("BTC-USDT")
    assert s.on_snapshot(20, [("1", "1")], []) == Pending(20)
    assert s.on_update(upd(25, 26)) == Refetch(20, 25)
    assert s.on_update(upd(27, 27)) == Buffered(2)
    assert s.on_update(upd(30, 31)) == GapDetected(28, 30, was_live=False)
    assert s.on_snapshot(30, [], []) == Synced(30, 31, 1, 0)


def test_precision_grows_with_kucoin_minimal_decimals() -> None:
    s = L2Sync("BTC-USDT")
    s.on_update(upd(1, 1))
    s.on_snapshot(0, [("18906", "1")], [("18907.3", "0.5")])
    assert (s.price_precision, s.qty_precision) == (1, 1)
    s.on_update(upd(2, 2, asks=[("18907.35", "0.58751503", 2)]))
    assert (s.price_precision, s.qty_precision) == (2, 8)
    assert book_of(s) == (
        d({"18906": "1"}),
        d({"18907.3": "0.5", "18907.35": "0.58751503"}),
    )


def test_on_l2_snapshot() -> None:
    s = L2Sync("BTC-USDT")
    s.on_update(upd(14610502960, 14610502980, bids=[("66976.4", "1", 14610502975)]))
    snap = L2Snapshot(14610502970, 1729176273859, (("66976.4", "0.69109872"),), ())
    assert s.on_l2_snapshot(snap) == Synced(14610502970, 14610502980, 1, 0)
    assert book_of(s)[0] == d({"66976.4": "1"})


# ---------------------------------------------------------------- match order


def match(seq: int) -> Match:
    return Match("BTC-USDT", seq, str(seq), "1", "1", "buy", 0, None, None)


def test_match_check_monotonic_by_default() -> None:
    c = MatchCheck()
    assert c.on_match(match(100)) == SeqOk(100)
    assert c.on_match(match(250)) == SeqOk(250)  # jumps are normal on KuCoin
    assert c.on_match(250) == SeqDuplicate(250, 250)
    assert c.on_match(match(120)) == SeqDuplicate(250, 120)
    assert c.last == 250


def test_match_check_contiguous_mode() -> None:
    c = MatchCheck(contiguous=True)
    assert c.on_match(1) == SeqOk(1)
    assert c.on_match(2) == SeqOk(2)
    assert c.on_match(5) == SeqGap(3, 5)
    assert c.on_match(6) == SeqOk(6)


# ---------------------------------------------------------------- reference model

PRICES = ["3988.62", "3988.6", "3988.59", "3988.5", "3988", "3987.125", "0.001"]
SIZES = ["0", "1", "2.5", "0.00331", "10", "0.00000001"]


class Venue:
    """Naive venue: sequence ``base + i`` applies op i; ``None`` ops only advance."""

    def __init__(self, ops: list[tuple[str, str, str] | None], base: int) -> None:
        self.ops = ops
        self.base = base

    @property
    def last_seq(self) -> int:
        return self.base + len(self.ops) - 1

    def state(self, upto: int) -> tuple[dict[str, str], dict[str, str]]:
        bids: dict[str, str] = {}
        asks: dict[str, str] = {}
        for i, op in enumerate(self.ops):
            if self.base + i > upto:
                break
            if op is None:
                continue
            side, price, size = op
            book = bids if side == "b" else asks
            if is_zero(size):
                book.pop(price, None)
            else:
                book[price] = size
        return bids, asks

    def decimal_state(self, upto: int) -> tuple[dict[Decimal, Decimal], dict[Decimal, Decimal]]:
        bids, asks = self.state(upto)
        return d(bids), d(asks)

    def snapshot(self, upto: int) -> tuple[int, list[tuple[str, str]], list[tuple[str, str]]]:
        bids, asks = self.state(upto)
        return upto, list(bids.items()), list(asks.items())

    def messages(self, sizes: list[int], zero_markers: list[bool]) -> list[L2Update]:
        out = []
        start = 0
        for n, size in enumerate(sizes):
            if start >= len(self.ops):
                break
            bids: dict[str, Ch] = {}
            asks: dict[str, Ch] = {}
            noops: list[Ch] = []
            for i in range(start, min(start + size, len(self.ops))):
                op = self.ops[i]
                seq = self.base + i
                if op is None:
                    noops.append(("0", "0", seq))
                    continue
                side, price, size_ = op
                # only the latest entry per price, with the sequence that set it
                (bids if side == "b" else asks)[price] = (price, size_, seq)
            end = min(start + size, len(self.ops)) - 1
            bid_list = sorted(bids.values(), key=lambda c: c[2])
            if zero_markers[n % len(zero_markers)]:
                bid_list += noops
            out.append(upd(self.base + start, self.base + end, bid_list, list(asks.values())))
            start += size
        return out


OPS = st.lists(
    st.none() | st.tuples(st.sampled_from("ba"), st.sampled_from(PRICES), st.sampled_from(SIZES)),
    min_size=1,
    max_size=60,
)


def check_invariant(s: L2Sync, venue: Venue) -> None:
    if s.state is SyncState.SYNCED:
        assert s.seq is not None
        assert s.book.valid
        assert book_of(s) == venue.decimal_state(s.seq)
    else:
        assert not s.book.valid


@settings(max_examples=150, deadline=None)
@given(ops=OPS, data=st.data())
def test_clean_stream_matches_reference(ops: list[tuple[str, str, str] | None], data: Any) -> None:
    base = data.draw(st.integers(1, 10**15))
    venue = Venue(ops, base)
    sizes = data.draw(st.lists(st.integers(1, 5), min_size=len(ops), max_size=len(ops)))
    msgs = venue.messages(sizes, data.draw(st.lists(st.booleans(), min_size=1, max_size=4)))
    join = data.draw(st.integers(0, len(msgs) - 1))
    s = L2Sync("BTC-USDT", max_buffer=1000)
    need = False
    if data.draw(st.booleans()):  # a snapshot may even come before the first message
        early = s.on_snapshot(*venue.snapshot(data.draw(st.integers(base, venue.last_seq))))
        event("early snapshot -> " + type(early).__name__)
    for m in msgs[join:]:
        r = s.on_update(m)
        need = need or r.fetch_snapshot
        check_invariant(s, venue)
        if need and data.draw(st.booleans()):
            at = data.draw(st.integers(max(base - 3, 0), min(venue.last_seq, m.sequence_end + 3)))
            snap = s.on_snapshot(*venue.snapshot(at))
            need = snap.fetch_snapshot
            check_invariant(s, venue)
    if s.state is not SyncState.SYNCED and s.buffered:
        first = s.first_seq
        assert first is not None
        at = data.draw(st.integers(first - 1, msgs[-1].sequence_end - 1))
        assert isinstance(s.on_snapshot(*venue.snapshot(at)), Synced)
    check_invariant(s, venue)
    # a complete stream always ends live, at the venue's final state
    assert s.seq == msgs[-1].sequence_end
    assert book_of(s) == venue.decimal_state(venue.last_seq)


@settings(max_examples=150, deadline=None)
@given(ops=OPS, data=st.data())
def test_faulty_stream_never_shows_a_wrong_book(
    ops: list[tuple[str, str, str] | None], data: Any
) -> None:
    base = data.draw(st.integers(0, 1000))
    venue = Venue(ops, base)
    sizes = data.draw(st.lists(st.integers(1, 4), min_size=len(ops), max_size=len(ops)))
    msgs = venue.messages(sizes, [True, False])
    delivered: list[L2Update] = []
    i = 0
    while i < len(msgs):
        fault = data.draw(st.sampled_from(["ok"] * 9 + ["drop", "dup", "swap"]))
        if fault == "drop":
            i += 1
            continue
        if fault == "swap" and i + 1 < len(msgs):
            delivered += [msgs[i + 1], msgs[i]]
            i += 2
            continue
        delivered.append(msgs[i])
        if fault == "dup":
            delivered.append(msgs[i])
        i += 1
    s = L2Sync("BTC-USDT", max_buffer=data.draw(st.integers(1, 8)))
    need = False
    gaps = 0
    for m in delivered:
        r = s.on_update(m)
        event(type(r).__name__)
        need = need or r.fetch_snapshot
        if isinstance(r, GapDetected) and r.was_live:
            gaps += 1
        check_invariant(s, venue)
        if data.draw(st.integers(0, 7)) < (4 if need else 1):
            at = data.draw(st.integers(max(base - 2, 0), venue.last_seq))
            snap = s.on_snapshot(*venue.snapshot(at))
            event("snapshot -> " + type(snap).__name__)
            need = snap.fetch_snapshot or (need and isinstance(snap, Dropped))
            check_invariant(s, venue)
    if delivered == msgs:
        assert gaps == 0
