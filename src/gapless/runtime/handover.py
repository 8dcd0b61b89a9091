"""Make-before-break: hand a logical connection over to a successor without a gap.

Binance closes every connection at 24 h and may announce a close with
``serverShutdown`` (protocols.md §3.2, §3.4); KuCoin closes connections after
24 h (§2.1). When the venue adapter flags such a *planned* close, the
supervisor dials a successor connection with the same streams while the old
one keeps delivering. This module is the pure part of that switch: per
stream, it decides when the successor can take over, and it keeps the user's
event stream free of duplicates and holes. No I/O, no clock: time comes in as
:class:`~gapless.venues.base.Now`.

Every market event has an *order key* on its stream: the trade id, the book
update id (``seq``; Binance ``u``, KuCoin sequence), the bookTicker update id,
or the exchange time for tickers. Keys only grow on a stream, on any
connection. :class:`Marks` holds the key of the last event delivered per
stream; the supervisor delivers a keyed event only when its key is above the
mark (:meth:`Marks.admit`), so two connections carrying the same stream never
produce a duplicate.

A successor's events are held per stream until the stream *joins*:

- a book joins once the old connection has delivered up to the successor's
  snapshot (``mark >= snapshot seq``): every later update is on the successor;
- trades join once the two connections overlap (``mark >= first trade id``;
  Binance trade ids go up by one, §3.6, so ``mark == first - 1`` is enough);
- tickers and bookTickers join on overlap as well (key = time / update id);
- a stream the successor confirmed but that sent nothing for ``quiet_s`` joins
  empty (nothing to hand over).

When every stream has joined, the old connection stays open ``overlap_s``
longer (frames in flight on it are still merged) and is then retired: closed
by us, without disconnect gaps, because nothing is missing. If the old
connection ends first, or the handover takes longer than its deadline, the
handover is *forced*: each stream joins on the successor's data as soon as it
has some, and where the successor cannot continue from the mark, the exact
uncovered range is declared as a :class:`~gapless.events.Gap` (cause
``disconnect``); :attr:`Handover.gaps` counts them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gapless.events import (
    BookSnapshot,
    BookTicker,
    BookUpdate,
    Event,
    Gap,
    GapCause,
    MarketEvent,
    Subscribed,
    Ticker,
    Trade,
)
from gapless.venues.base import Now

__all__ = ["PLANNED_DETAIL", "Handover", "Marks", "order_key"]

PLANNED_DETAIL = "planned close"
"""Every :class:`~gapless.events.Gap` a planned close causes has a ``detail``
starting with this (the runtime counts them: the goal is zero)."""


def order_key(ev: Event) -> int | None:
    """The event's position on its stream (None: not a keyed market event)."""
    if isinstance(ev, Trade):
        return ev.trade_id
    if isinstance(ev, (BookUpdate, BookSnapshot)):
        return ev.seq if ev.seq is not None else ev.exchange_ts_ns
    if isinstance(ev, BookTicker):
        return ev.update_id if ev.update_id is not None else ev.exchange_ts_ns
    if isinstance(ev, Ticker):
        return ev.exchange_ts_ns
    return None


def _contiguous(ev: Event) -> bool:
    """Keys that go up by exactly one per event (Binance trade ids, §3.6)."""
    return isinstance(ev, Trade) and ev.venue == "binance"


class Marks:
    """The last delivered order key (and its exchange time) per stream."""

    __slots__ = ("key", "ts")

    def __init__(self) -> None:
        self.key: dict[str, int] = {}
        self.ts: dict[str, int] = {}

    def admit(self, ev: Event, *, merging: bool) -> bool:
        """Record ``ev`` if it may be delivered; False for a duplicate.

        A keyed event at or below the stream's mark was delivered already (by
        this connection or by the other one of a handover). A book snapshot
        is a reset, not a repeat: outside a handover it always passes (the
        adapter never goes back behind what it delivered); during a handover
        only one that moves the stream forward does. A gap that ends at or
        below the mark is moot: the data it speaks of was delivered."""
        if isinstance(ev, Gap):
            if merging and ev.last_seq is not None:
                mark = self.key.get(ev.stream)
                return mark is None or ev.last_seq > mark
            return True
        if not isinstance(ev, MarketEvent):
            return True
        k = order_key(ev)
        if k is None:
            return True
        s = ev.stream
        mark = self.key.get(s)
        if mark is not None and k <= mark and (merging or not isinstance(ev, BookSnapshot)):
            return False
        self.key[s] = k
        self.ts[s] = ev.exchange_ts_ns
        return True


@dataclass(slots=True)
class _Pending:
    events: list[Event] = field(default_factory=list)
    cover: int | None = None  # the successor's first key (book: its snapshot's seq)
    cover_ts: int = 0
    snapshot: bool = False
    contiguous: bool = False
    symbol: str = ""
    subscribed_at: float | None = None
    joined: bool = False


class Handover:
    """Join state of one make-before-break switch (see the module docstring)."""

    def __init__(
        self,
        venue: str,
        streams: list[str],
        marks: Marks,
        started: float,
        *,
        quiet_s: float = 2.0,
        overlap_s: float = 0.5,
        max_pending: int = 100_000,
    ) -> None:
        self.venue = venue
        self.marks = marks
        self.started = started
        self.quiet_s = quiet_s
        self.overlap_s = overlap_s
        self.max_pending = max_pending
        self.streams: dict[str, _Pending] = {s: _Pending() for s in streams}
        self.forced = False
        self.planned = True  # a forced join's gaps are the planned close's doing
        self.gaps = 0
        self.joined_at: float | None = None
        self._unjoined = len(self.streams)

    # ------------------------------------------------------------------ queries
    @property
    def all_joined(self) -> bool:
        return self._unjoined == 0

    def ready_to_retire(self, mono: float) -> bool:
        """Every stream joined and the overlap tail has passed."""
        return self.joined_at is not None and mono >= self.joined_at + self.overlap_s

    def unjoined(self) -> list[str]:
        return [s for s, p in self.streams.items() if not p.joined]

    # ------------------------------------------------------------------ input
    def offer(self, ev: Event, now: Now) -> list[Event]:
        """A successor event: returns what may go on to delivery now (still
        subject to :meth:`Marks.admit`)."""
        if isinstance(ev, Subscribed):
            p = self.streams.get(ev.stream)
            if p is not None and p.subscribed_at is None:
                p.subscribed_at = now.mono
            return []  # the user subscribed once; the successor's ack is internal
        stream = ev.stream if isinstance(ev, (MarketEvent, Gap)) else None
        p = self.streams.get(stream) if stream is not None else None
        if stream is None or p is None or p.joined:
            return [ev]
        if isinstance(ev, Gap):
            # the successor lost data before joining: its coverage restarts later
            p.events.clear()
            p.cover = None
            p.snapshot = False
            return []
        assert isinstance(ev, MarketEvent)
        k = order_key(ev)
        if k is None:
            return [ev]
        if isinstance(ev, BookSnapshot):
            p.events = [ev]
            p.cover, p.cover_ts, p.snapshot = k, ev.exchange_ts_ns, True
        else:
            if p.cover is None:
                if isinstance(ev, BookUpdate):
                    return []  # an update before any snapshot cannot be placed
                p.cover, p.cover_ts, p.contiguous = k, ev.exchange_ts_ns, _contiguous(ev)
            p.events.append(ev)
        p.symbol = ev.symbol
        if len(p.events) > self.max_pending:
            # the old connection is not progressing: stop waiting for it on this stream
            return self._join(stream, p, now, force=True)
        return self._join(stream, p, now, force=self.forced)

    def tick(self, now: Now) -> list[Event]:
        """Re-try every waiting stream (the old connection may have caught up)."""
        out: list[Event] = []
        for stream, p in self.streams.items():
            if p.joined:
                continue
            if p.cover is not None:
                out += self._join(stream, p, now, force=self.forced)
            elif (
                not self.forced
                and ":book:" not in stream
                and p.subscribed_at is not None
                and now.mono - p.subscribed_at >= self.quiet_s
            ):
                self._mark_joined(p, now)  # confirmed and quiet: nothing to hand over
        return out

    def force(self, now: Now, *, planned: bool = True) -> list[Event]:
        """The old connection is gone (or the deadline passed): join each stream
        on whatever the successor has, declaring what it cannot cover.
        ``planned=False``: the old connection died of something else (an abort
        during the handover); its gaps do not carry :data:`PLANNED_DETAIL`."""
        self.forced = True
        self.planned = planned
        return self.tick(now)

    def close(self, now: Now) -> list[Gap]:
        """The feed stops mid-handover: a stream the successor never joined is
        open from its mark on (nothing after it was delivered)."""
        out: list[Gap] = []
        for stream, p in self.streams.items():
            mark = self.marks.key.get(stream)
            if p.joined or mark is None:
                continue
            out.append(
                Gap(
                    venue=self.venue,
                    local_ts_ns=now.wall_ns,
                    stream=stream,
                    symbol=stream.split(":")[2],
                    cause=GapCause.SHUTDOWN,
                    start_ts_ns=self.marks.ts.get(stream),
                    end_ts_ns=None,
                    first_seq=mark + 1,
                    detail=f"{PLANNED_DETAIL}: feed closed before the successor joined",
                )
            )
        return out

    # ------------------------------------------------------------------ join
    def _join(self, stream: str, p: _Pending, now: Now, *, force: bool) -> list[Event]:
        assert p.cover is not None
        mark = self.marks.key.get(stream)
        if mark is None:
            ok = True  # nothing was delivered on this stream: the successor starts it
        elif p.snapshot:
            ok = mark >= p.cover
        else:
            ok = mark >= p.cover - (1 if p.contiguous else 0)
        if not ok and not force:
            return []
        out: list[Event] = []
        if not ok:
            assert mark is not None
            first, last = mark + 1, (p.cover if p.snapshot else p.cover - 1)
            keyed_by_seq = (
                p.snapshot
                or isinstance(p.events[0], (Trade, BookUpdate))
                or (isinstance(p.events[0], BookTicker) and p.events[0].update_id is not None)
            )
            if not keyed_by_seq or first <= last:  # else no id lies between: nothing missed
                out.append(self._gap(stream, p, now, first, last, keyed_by_seq))
        out.extend(p.events)
        p.events = []
        self._mark_joined(p, now)
        return out

    def _gap(self, stream: str, p: _Pending, now: Now, first: int, last: int, by_seq: bool) -> Gap:
        start = self.marks.ts.get(stream)
        self.gaps += 1
        return Gap(
            venue=self.venue,
            local_ts_ns=now.wall_ns,
            stream=stream,
            symbol=p.symbol,
            cause=GapCause.DISCONNECT,
            start_ts_ns=start,
            end_ts_ns=p.cover_ts if by_seq else max(p.cover_ts - 1, start or 0),
            first_seq=first if by_seq else None,
            last_seq=last if by_seq else None,
            detail=(f"{PLANNED_DETAIL}: " if self.planned else "")
            + "make-before-break: the old connection ended before the successor caught up",
        )

    def _mark_joined(self, p: _Pending, now: Now) -> None:
        p.joined = True
        self._unjoined -= 1
        if self._unjoined == 0:
            self.joined_at = now.mono
