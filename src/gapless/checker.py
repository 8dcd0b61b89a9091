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
from gapless.events import BookSnapshot, BookUpdate, Event, Gap, Subscribed, Ticker, Trade

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


def _truth_key(rec: Mapping[str, Any], venue: str) -> tuple[str, tuple[Any, ...]] | None:
    k = rec.get("k")
    if k == "trade":
        return f"{venue}:trade:{rec['symbol']}", (rec["trade_id"],)
    if k == "book":
        return f"{venue}:book:{rec['symbol']}:{rec['depth']}", (rec["ts_ns"],)
    if k == "ticker":
        return f"{venue}:ticker:{rec['symbol']}", (rec["ts_ns"],)
    return None


def _event_key(ev: Event) -> tuple[str, tuple[Any, ...]] | None:
    if isinstance(ev, Trade):
        return ev.stream, (ev.trade_id,)
    if isinstance(ev, BookUpdate):
        return ev.stream, (ev.exchange_ts_ns,)
    if isinstance(ev, Ticker):
        return ev.stream, (ev.exchange_ts_ns,)
    return None


def check(
    truth: Iterable[Mapping[str, Any]],
    events: Iterable[Event],
    *,
    final_books: Mapping[tuple[str, int], Mapping[str, Any]] | None = None,
    client_books: Mapping[tuple[str, int], BookView | None] | None = None,
    venue: str = "kraken",
) -> CheckReport:
    """Classify ``truth`` against ``events``; compare final books if given."""
    report = CheckReport()
    events = list(events)
    start: dict[str, int] = {}
    gaps: dict[str, list[tuple[float, float]]] = defaultdict(list)
    delivered: Counter[tuple[str, tuple[Any, ...]]] = Counter()
    checksums: dict[tuple[str, tuple[Any, ...]], int | None] = {}
    snapshots: list[BookSnapshot] = []
    for ev in events:
        if isinstance(ev, Subscribed) and ev.exchange_ts_ns is not None:
            if not ev.stream.startswith(f"{venue}:book:"):
                start.setdefault(ev.stream, ev.exchange_ts_ns)
        elif isinstance(ev, BookSnapshot):
            start.setdefault(ev.stream, ev.exchange_ts_ns)
            snapshots.append(ev)
        elif isinstance(ev, Gap):
            lo = -math.inf if ev.start_ts_ns is None else ev.start_ts_ns
            hi = math.inf if ev.end_ts_ns is None else ev.end_ts_ns
            gaps[ev.stream].append((lo, hi))
            report.gaps += 1
            report.streams.setdefault(ev.stream, StreamReport()).gaps += 1
        key = _event_key(ev)
        if key is not None:
            delivered[key] += 1
            report.delivered += 1
            if isinstance(ev, BookUpdate):
                checksums[key] = ev.checksum

    truth_checksums: dict[tuple[str, tuple[Any, ...]], int] = {}
    snapshot_truth: set[tuple[str, int, int, int]] = set()
    seen: set[tuple[str, tuple[Any, ...]]] = set()
    published_early: set[tuple[str, tuple[Any, ...]]] = set()
    for rec in truth:
        if rec.get("k") == "snapshot":
            snapshot_truth.add((rec["symbol"], rec["depth"], rec["ts_ns"], rec["checksum"]))
            continue
        tk = _truth_key(rec, venue)
        if tk is None:
            continue
        stream = tk[0]
        s0 = start.get(stream)
        if s0 is None or rec["ts_ns"] <= s0:
            published_early.add(tk)
            continue  # before the client's subscription: never promised
        sr = report.streams.setdefault(stream, StreamReport())
        sr.published += 1
        report.published += 1
        seen.add(tk)
        if rec.get("k") == "book":
            truth_checksums[tk] = rec["checksum"]
        n = delivered.get(tk, 0)
        if n == 1:
            sr.delivered_once += 1
            report.delivered_once += 1
        elif n > 1:
            sr.duplicated += 1
            report.duplicated += 1
        elif any(lo < rec["ts_ns"] <= hi for lo, hi in gaps.get(stream, ())):
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
            # delivered before scope start is still fine if it was published
            # (e.g. a trade snapshot's last 50 trades, protocols.md §1.8)
            if key in published_early:
                continue
            report.unexpected += n
            report.streams.setdefault(stream, StreamReport()).unexpected += n
        elif key in checksums and checksums[key] != truth_checksums.get(key):
            report.unexpected += 1
            report.streams.setdefault(stream, StreamReport()).unexpected += 1

    for snap in snapshots:
        if (snap.symbol, snap.depth, snap.exchange_ts_ns, snap.checksum) in snapshot_truth:
            report.snapshots_verified += 1
        else:
            report.snapshots_unexpected += 1

    if final_books is not None and client_books is not None:
        report.books_equal = True
        for (symbol, depth), want in final_books.items():
            if (symbol, depth) not in client_books:
                continue
            view = client_books[(symbol, depth)]
            diff = _book_diff(symbol, depth, want, view)
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
        got = [(lv.price, lv.qty) for lv in (view.bids() if side == "bids" else view.asks())]
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
