"""Integrity checker: the client's delivered events against the simulator's ground truth.

Jepsen-style (design.md §4): every market event the venue *published* on a
stream the client subscribed to is classified as

- **delivered once**,
- **in a declared gap** (not delivered, but inside a :class:`~gapless.events.Gap`
  the client emitted for that stream: ``start < ts <= end``),
- **lost** (neither: a silent gap, the one thing gapless must never do),
- **duplicated** (delivered more than once);

and every delivered event that matches nothing published is **unexpected**
(including a book update whose checksum differs from the venue's). Final books
are compared level by level with the simulator's.

Scope: a stream's events count from the client's first confirmation of it (the
first ``Subscribed`` exchange time for trades/tickers, the first verified
``BookSnapshot`` for books); earlier events were never promised.

Truth records are plain dicts (the JSON Lines the simulator writes); this
module does not import the simulator.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from gapless.book import BookView
from gapless.events import (
    BookSnapshot,
    BookTicker,
    BookUpdate,
    Event,
    Gap,
    MarketEvent,
    Subscribed,
    Ticker,
    Trade,
)

__all__ = ["CheckReport", "StreamReport", "check"]


@dataclass(slots=True)
class StreamReport:
    published: int = 0
    delivered_once: int = 0
    in_declared_gaps: int = 0
    lost: int = 0
    duplicated: int = 0
    unexpected: int = 0
    gaps: int = 0
    lost_examples: list[dict[str, Any]] = field(default_factory=list)


@dataclass(slots=True)
class CheckReport:
    published: int = 0
    delivered: int = 0
    delivered_once: int = 0
    in_declared_gaps: int = 0
    lost: int = 0
    duplicated: int = 0
    unexpected: int = 0
    snapshots_verified: int = 0
    snapshots_unexpected: int = 0
    gaps: int = 0
    books_equal: bool = False
    book_diffs: list[str] = field(default_factory=list)
    streams: dict[str, StreamReport] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return (
            self.lost == 0
            and self.duplicated == 0
            and self.unexpected == 0
            and self.snapshots_unexpected == 0
            and self.books_equal
        )

    def summary(self) -> dict[str, Any]:
        return {
            "published": self.published,
            "delivered": self.delivered,
            "delivered_once": self.delivered_once,
            "in_declared_gaps": self.in_declared_gaps,
            "lost": self.lost,
            "duplicated": self.duplicated,
            "unexpected": self.unexpected,
            "snapshots_verified": self.snapshots_verified,
            "snapshots_unexpected": self.snapshots_unexpected,
            "gaps": self.gaps,
            "books_equal": self.books_equal,
        }


_Key = tuple[str, tuple[Any, ...]]


@dataclass(frozen=True, slots=True)
class _Item:
    """One published event: its key, sequence range (if any) and exchange time."""

    key: _Key
    lo: int | None
    hi: int | None
    ts: int


def _truth_item(rec: Mapping[str, Any], default_venue: str) -> _Item | None:
    """Map a simulator truth record to the stream key the client uses.

    Kraken book updates are keyed by time (no sequence on the wire), Binance by
    the final update id ``u`` (100 ms stream only), KuCoin by ``sequenceEnd``;
    trades by trade id everywhere."""
    k = rec.get("k")
    venue = rec.get("venue", default_venue)
    sym = rec.get("symbol")
    ts = int(rec.get("ts_ns", 0))
    if k == "trade":
        tid = int(rec["trade_id"])
        return _Item((f"{venue}:trade:{sym}", (tid,)), tid, tid, ts)
    if k == "book":
        if venue == "binance":
            if rec.get("speed", "100ms") != "100ms":
                return None
            return _Item((f"binance:book:{sym}", (rec["u"],)), rec["U"], rec["u"], ts)
        if venue == "kucoin":
            lo, hi = rec["seq_start"], rec["seq_end"]
            return _Item((f"kucoin:book:{sym}", (hi,)), lo, hi, ts)
        return _Item((f"{venue}:book:{sym}:{rec['depth']}", (ts,)), None, None, ts)
    if k == "ticker":
        if venue == "kucoin":
            seq = int(rec["sequence"])
            return _Item((f"kucoin:ticker:{sym}", (seq,)), None, None, ts)
        return _Item((f"{venue}:ticker:{sym}", (ts,)), None, None, ts)
    if k == "book_ticker":
        u = int(rec["u"])
        return _Item((f"{venue}:book_ticker:{sym}", (u,)), u, u, ts)
    return None


def _event_key(ev: Event) -> tuple[_Key, int | None] | None:
    """The delivered event's key and, where it has one, its sequence (for scope)."""
    if isinstance(ev, Trade):
        return (ev.stream, (ev.trade_id,)), ev.trade_id
    if isinstance(ev, BookUpdate):
        if ev.seq is not None:
            return (ev.stream, (ev.seq,)), ev.seq
        return (ev.stream, (ev.exchange_ts_ns,)), None
    if isinstance(ev, Ticker):
        return (ev.stream, (ev.exchange_ts_ns,)), None
    if isinstance(ev, BookTicker):
        if ev.update_id is not None:
            # sequenced like trades: with no ack time, the first delivered id opens the scope
            return (ev.stream, (ev.update_id,)), ev.update_id
        return (ev.stream, (ev.exchange_ts_ns,)), None
    return None


@dataclass(frozen=True, slots=True)
class _GapRange:
    lo_ts: float
    hi_ts: float
    first_seq: int | None
    last_seq: int | None

    def covers(self, item: _Item) -> bool:
        """Sequence bounds are the precise statement when both sides have them
        (``last_seq=None``: up to the resync time); otherwise time decides."""
        if self.first_seq is not None and item.hi is not None and item.lo is not None:
            if item.hi < self.first_seq:
                return False
            if self.last_seq is not None:
                return item.lo <= self.last_seq
            return item.ts <= self.hi_ts
        return self.lo_ts < item.ts <= self.hi_ts


def check(
    truth: Iterable[Mapping[str, Any]],
    events: Iterable[Event],
    *,
    final_books: Mapping[tuple[str, int], Mapping[str, Any]] | None = None,
    client_books: Mapping[tuple[str, int], BookView | None] | None = None,
    venue: str = "kraken",
) -> CheckReport:
    """Classify ``truth`` against ``events``; compare final books if given.

    ``final_books``/``client_books`` are keyed ``(name, n)``: the top ``n``
    levels of each side are compared (venues whose REST snapshot is deeper than
    what we compare, like Binance, keep unknown deep levels: §3.8)."""
    report = CheckReport()
    events = list(events)
    start_ts: dict[str, int] = {}
    start_seq: dict[str, int] = {}
    first_seen: dict[str, tuple[int | None, int]] = {}
    gaps: dict[str, list[_GapRange]] = defaultdict(list)
    delivered: Counter[_Key] = Counter()
    checksums: dict[_Key, int | None] = {}
    snapshots: list[BookSnapshot] = []
    for ev in events:
        if isinstance(ev, Subscribed) and ev.exchange_ts_ns is not None:
            if ":book:" not in ev.stream:
                start_ts.setdefault(ev.stream, ev.exchange_ts_ns)
        elif isinstance(ev, BookSnapshot):
            if ev.seq is not None:
                start_seq.setdefault(ev.stream, ev.seq)
            else:
                start_ts.setdefault(ev.stream, ev.exchange_ts_ns)
            snapshots.append(ev)
        elif isinstance(ev, Gap):
            gaps[ev.stream].append(
                _GapRange(
                    -math.inf if ev.start_ts_ns is None else ev.start_ts_ns,
                    math.inf if ev.end_ts_ns is None else ev.end_ts_ns,
                    ev.first_seq,
                    ev.last_seq,
                )
            )
            report.gaps += 1
            report.streams.setdefault(ev.stream, StreamReport()).gaps += 1
        found = _event_key(ev)
        if found is not None:
            key, seq = found
            delivered[key] += 1
            report.delivered += 1
            if isinstance(ev, BookUpdate):
                checksums[key] = ev.checksum
            if isinstance(ev, MarketEvent):
                first_seen.setdefault(ev.stream, (seq, ev.exchange_ts_ns))
    # streams whose venue gives no confirmation time (Binance/KuCoin acks): the
    # first delivered event opens the scope
    for stream, (seq, ts) in first_seen.items():
        if stream in start_ts or stream in start_seq:
            continue
        if seq is not None:
            start_seq[stream] = seq - 1
        else:
            start_ts[stream] = ts - 1

    truth_checksums: dict[_Key, int] = {}
    snapshot_truth: set[tuple[str, int, int, int]] = set()
    seen: set[_Key] = set()
    published_before_scope: set[_Key] = set()
    for rec in truth:
        if rec.get("k") == "snapshot":
            if "checksum" in rec:
                snapshot_truth.add((rec["symbol"], rec["depth"], rec["ts_ns"], rec["checksum"]))
            continue
        item = _truth_item(rec, venue)
        if item is None:
            continue
        stream = item.key[0]
        if stream in start_seq and item.hi is not None:
            in_scope = item.hi > start_seq[stream]
        elif stream in start_ts:
            in_scope = item.ts > start_ts[stream]
        else:
            in_scope = False
        if not in_scope:
            published_before_scope.add(item.key)
            continue  # before the client's subscription: never promised
        sr = report.streams.setdefault(stream, StreamReport())
        sr.published += 1
        report.published += 1
        seen.add(item.key)
        if rec.get("k") == "book" and "checksum" in rec:
            truth_checksums[item.key] = rec["checksum"]
        n = delivered.get(item.key, 0)
        if n == 1:
            sr.delivered_once += 1
            report.delivered_once += 1
        elif n > 1:
            sr.duplicated += 1
            report.duplicated += 1
        elif any(g.covers(item) for g in gaps.get(stream, ())):
            sr.in_declared_gaps += 1
            report.in_declared_gaps += 1
        else:
            sr.lost += 1
            report.lost += 1
            if len(sr.lost_examples) < 5:
                sr.lost_examples.append(dict(rec))

    for key, n in delivered.items():
        stream = key[0]
        if key not in seen:
            if key in published_before_scope:
                continue  # published before the stream's scope (e.g. a trade snapshot)
            report.unexpected += n
            report.streams.setdefault(stream, StreamReport()).unexpected += n
        elif key in checksums and key in truth_checksums and checksums[key] != truth_checksums[key]:
            report.unexpected += 1
            report.streams.setdefault(stream, StreamReport()).unexpected += 1

    for snap in snapshots:
        if snap.checksum is None:
            continue  # only Kraken snapshots carry a verifiable checksum
        if (snap.symbol, snap.depth, snap.exchange_ts_ns, snap.checksum) in snapshot_truth:
            report.snapshots_verified += 1
        else:
            report.snapshots_unexpected += 1

    if final_books is not None and client_books is not None:
        report.books_equal = True
        for (name, depth), want in final_books.items():
            if (name, depth) not in client_books:
                continue
            view = client_books[(name, depth)]
            diff = _book_diff(name, depth, want, view)
            if diff:
                report.books_equal = False
                report.book_diffs.append(diff)
        if not any(k in client_books for k in final_books):
            report.books_equal = False
            report.book_diffs.append("no final book to compare")
    return report


def _book_diff(symbol: str, depth: int, want: Mapping[str, Any], view: BookView | None) -> str:
    if view is None:
        return f"{symbol}@{depth}: client has no book"
    if not view.valid:
        return f"{symbol}@{depth}: client book is not valid"
    for side in ("bids", "asks"):
        exp = [(Decimal(p), Decimal(q)) for p, q in want[side]][:depth]
        got = [
            (lv.price, lv.qty) for lv in (view.bids(depth) if side == "bids" else view.asks(depth))
        ]
        if exp != got:
            first = next(
                (i for i, (a, b) in enumerate(zip(exp, got, strict=False)) if a != b),
                min(len(exp), len(got)),
            )
            return (
                f"{symbol}@{depth}: {side} differ at level {first} "
                f"(sim {len(exp)} levels, client {len(got)})"
            )
    return ""
