"""Sequence-numbered book synchronisation shared by Binance and KuCoin (pure).

Binance diff depth (protocols.md §3.8) and KuCoin level2 (§2.5) follow the
same model, so one engine, :class:`SequencedBookSync`, implements it and the
venue modules (``binance/sync.py``, ``kucoin/sync.py``) only say how to read
a message's range and levels:

- every stream message covers a closed range of sequence numbers
  ``[first, last]`` (Binance ``U``/``u``, KuCoin ``sequenceStart``/``sequenceEnd``)
  and carries *absolute* quantities: the value of each touched level as of
  ``last``. That is why a message that overlaps the book (``first <= seq <
  last``) can still be applied: it overwrites every level touched after
  ``seq`` with its final value;
- a REST snapshot carries one number ``S``: it contains every change ``<= S``;
- the book, once live, is at sequence ``seq``. A message is applied iff
  ``first <= seq + 1`` and ``last > seq`` (§3.8 step 6, §2.5 step 4); it is
  dropped iff ``last <= seq`` (already in the book); ``first > seq + 1``
  means messages were missed: the book is thrown away (design.md §1.2) and
  the machine restarts.

States (:class:`SyncState`)::

    BUFFERING ──first message──► NEED_SNAPSHOT ──usable snapshot──► SYNCED
     │  ▲                            │  ▲                              │ │
     │  └──────── reset() ───────────┘  └── gap / overflow (restart) ──┘ │
     └─ held snapshot + first message that fits it ──────────────────────┘

The buffer is kept contiguous while waiting (a hole inside it restarts the
cycle at the message after the hole), so the first buffered ``first`` is the
exact lower bound a snapshot must reach: ``S + 1 < first`` means the snapshot
is older than anything we can continue from (:class:`Refetch`). Otherwise the
book goes live at once: buffered messages ``<= S`` are dropped, the rest
replayed (if none is left, the book is live at ``S`` and the live rule judges
the next message, as in §3.8 steps 5-6: on a quiet symbol the wait for one
more message could be long). A snapshot that arrives before any message
cannot be judged yet: it is *held* (:class:`Pending`) and the first message
decides (stale: :class:`Refetch`; otherwise live).

Acceptance is purely sequence-based, so a snapshot requested before a restart
and delivered after it is still judged on its numbers alone: it is used if it
fits, refused if it does not. No clock, no I/O: every result says whether the
caller must fetch a (new) snapshot (``fetch_snapshot``).

Prices and quantities arrive as decimal strings of varying scale
(``"0.00240000"`` on Binance, ``"18907.3"`` on KuCoin). :class:`ScaledBook`
keeps them exactly as fixed-point integers in a :class:`gapless.book.Book`;
the precision is chosen from the decimals present and only ever grows: a level
with more decimals than the book's precision rescales the whole book (exact
integer multiplication, rare) before it is applied. ``Book.checksum()`` is a
Kraken mechanism and is not used here.

Trade streams: :class:`SequenceCheck` checks per-symbol ids (contiguous for
Binance ``t``, only increasing for KuCoin match ``sequence``).
"""

from __future__ import annotations

import abc
import enum
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import ClassVar, Generic, TypeVar

from gapless.book import Book, BookView
from gapless.errors import ConfigError, DecodeError, LocalProtocolError
from gapless.venues.numbers import parse_fixed

__all__ = [
    "DEFAULT_MAX_STALE_RUN",
    "MAX_PRECISION",
    "UNBOUNDED_DEPTH",
    "Applied",
    "Buffered",
    "Dropped",
    "FixedLevels",
    "GapDetected",
    "Levels",
    "NeedSnapshot",
    "Pending",
    "Refetch",
    "ScaledBook",
    "SeqDuplicate",
    "SeqGap",
    "SeqOk",
    "SeqResult",
    "SequenceCheck",
    "SequencedBookSync",
    "SyncResult",
    "SyncState",
    "SyncTally",
    "Synced",
    "check_decimal",
    "decimals_of",
    "is_zero",
    "pick_snapshot_owner",
]

#: Most decimals accepted in a price or quantity (Binance prints 8; hostile-input bound).
MAX_PRECISION = 18
_MAX_LEN = 36  # same bound as gapless.venues.numbers
#: Book depth used when the book must not be truncated (Binance §3.8: levels
#: deeper than the snapshot stay until they change; KuCoin full level2).
UNBOUNDED_DEPTH = 1 << 62

Levels = Sequence[tuple[str, str]]
FixedLevels = tuple[tuple[int, int], ...]

# ------------------------------------------------------------------ decimal text


def check_decimal(value: object, what: str = "number") -> str:
    """``value`` if it is a plain non-negative decimal string, else :class:`DecodeError`.

    Accepted: ASCII digits with at most one ``.`` that has digits on both sides
    (``"0.0024"``, ``"18906"``), at most 36 characters and :data:`MAX_PRECISION`
    decimals. Refused: JSON numbers, signs, exponents, ``NaN``, blanks."""
    if type(value) is str:  # the common case first: one pass over the text
        n = len(value)
        dot = value.find(".")
        if (
            n <= _MAX_LEN
            and ((0 < dot < n - 1 and n - dot - 1 <= MAX_PRECISION) or dot < 0 < n)
            and value.replace(".", "", 1).isdigit()
            and value.isascii()
        ):
            return value
    if type(value) is not str:
        raise DecodeError(f"{what}: expected a decimal string, got {type(value).__name__}")
    text: str = value
    if not 0 < len(text) <= _MAX_LEN or not text.isascii():
        raise DecodeError(f"{what}: bad decimal string {text[:40]!r}")
    dot = text.find(".")
    if dot < 0:
        ok = text.isdigit()
    else:
        head, tail = text[:dot], text[dot + 1 :]
        ok = head.isdigit() and tail.isdigit() and len(tail) <= MAX_PRECISION
    if not ok:
        raise DecodeError(f"{what}: bad decimal string {text!r}")
    return text


def decimals_of(text: str) -> int:
    """Digits after the dot: ``decimals_of("0.00240000") == 8``, ``decimals_of("5") == 0``."""
    if type(text) is not str:
        raise DecodeError(f"expected a decimal string, got {type(text).__name__}")
    dot = text.find(".")
    return 0 if dot < 0 else len(text) - dot - 1


def is_zero(text: str) -> bool:
    """True for ``"0"``, ``"0.0"``, ``"0.00000000"`` (a plain decimal string)."""
    return not text.replace(".", "", 1).strip("0")


# ------------------------------------------------------------------ scaled book


class ScaledBook:
    """A :class:`Book` whose fixed-point precision follows the decimals it is fed.

    ``price_precision``/``qty_precision`` start at the given minimums (e.g. from
    exchange info) and grow to the largest number of decimals seen in any
    level; they never shrink, so scaled integers stay comparable over the
    life of the object. Parsing is done before anything is changed, so a bad
    level leaves the book untouched."""

    __slots__ = ("book",)

    def __init__(
        self,
        venue: str,
        symbol: str,
        *,
        depth: int | None = None,
        price_precision: int = 0,
        qty_precision: int = 0,
    ) -> None:
        if not (0 <= price_precision <= MAX_PRECISION and 0 <= qty_precision <= MAX_PRECISION):
            raise ConfigError(f"precisions must be within 0..{MAX_PRECISION}")
        if depth is not None and depth < 1:
            raise ConfigError("depth must be positive")
        self.book = Book(
            venue,
            symbol,
            UNBOUNDED_DEPTH if depth is None else depth,
            price_precision,
            qty_precision,
            checksum_tokens=False,  # Kraken's mechanism: not per message here
        )

    @property
    def price_precision(self) -> int:
        return self.book.price_precision

    @property
    def qty_precision(self) -> int:
        return self.book.qty_precision

    def _grow(self, pp: int, qp: int) -> None:
        book = self.book
        old_pp, old_qp = book.price_precision, book.qty_precision
        pp, qp = max(pp, old_pp), max(qp, old_qp)
        if pp > MAX_PRECISION or qp > MAX_PRECISION:
            raise DecodeError(f"more than {MAX_PRECISION} decimals")
        mp, mq = 10 ** (pp - old_pp), 10 ** (qp - old_qp)
        n = len(book)
        bids = [(p * mp, q * mq) for p, q in book.bids_fixed(n)]
        asks = [(p * mp, q * mq) for p, q in book.asks_fixed(n)]
        valid, last_ts = book.valid, book.last_ts_ns
        book.reset()
        book.price_precision = pp
        book.qty_precision = qp
        book.apply(bids, asks)
        book.valid = valid
        book.last_ts_ns = last_ts

    def parse(
        self, bids: Iterable[tuple[str, str]], asks: Iterable[tuple[str, str]]
    ) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        """Scaled integers of the levels, growing the precision first if needed."""
        bl = list(bids)
        al = list(asks)
        pp = qp = 0
        for price, qty in bl:
            pp = max(pp, decimals_of(price))
            qp = max(qp, decimals_of(qty))
        for price, qty in al:
            pp = max(pp, decimals_of(price))
            qp = max(qp, decimals_of(qty))
        book = self.book
        if pp > book.price_precision or qp > book.qty_precision:
            self._grow(pp, qp)
        bp, bq = book.price_precision, book.qty_precision
        out_b = [(parse_fixed(p, bp), parse_fixed(q, bq)) for p, q in bl]
        out_a = [(parse_fixed(p, bp), parse_fixed(q, bq)) for p, q in al]
        for p, q in out_b:
            if p < 0 or q < 0:
                raise DecodeError("negative price or quantity")
        for p, q in out_a:
            if p < 0 or q < 0:
                raise DecodeError("negative price or quantity")
        return out_b, out_a

    def load(self, bids: Iterable[tuple[str, str]], asks: Iterable[tuple[str, str]]) -> None:
        """Replace the whole book by a snapshot (never merged, design.md §1.2)."""
        pb, pa = self.parse(bids, asks)
        book = self.book
        book.reset()
        book.apply(pb, pa)

    def apply(
        self, bids: Iterable[tuple[str, str]], asks: Iterable[tuple[str, str]]
    ) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        """Apply levels in order (quantity 0 removes); returns the scaled levels applied."""
        pb, pa = self.parse(bids, asks)
        self.book.apply(pb, pa)
        return pb, pa


# ------------------------------------------------------------------ results


class SyncState(enum.Enum):
    __hash__ = object.__hash__  # identity: members are singletons

    BUFFERING = "buffering"  # no stream message since (re)start
    NEED_SNAPSHOT = "need_snapshot"  # messages seen, no usable snapshot yet
    SYNCED = "synced"  # book live and verified by sequence continuity


@dataclass(frozen=True, slots=True)
class NeedSnapshot:
    """First message of a cycle buffered: fetch a snapshot now.

    ``reason`` is ``"start"`` or ``"overflow"`` (the bounded buffer filled up
    while waiting: it was discarded and the cycle restarted at this message)."""

    fetch_snapshot: ClassVar[bool] = True
    first_seq: int
    reason: str


@dataclass(frozen=True, slots=True)
class Buffered:
    """Message held until a snapshot arrives (a fetch is already due)."""

    fetch_snapshot: ClassVar[bool] = False
    buffered: int


@dataclass(frozen=True, slots=True)
class Pending:
    """Snapshot held: it came before any stream message; the first message decides."""

    fetch_snapshot: ClassVar[bool] = False
    snapshot_seq: int


@dataclass(frozen=True, slots=True)
class Dropped:
    """Message (or snapshot) ignored; nothing was lost: ``reason`` says why."""

    fetch_snapshot: ClassVar[bool] = False
    first_seq: int
    last_seq: int
    reason: str


@dataclass(frozen=True, slots=True)
class Applied:
    """Message applied to the live book; levels are the scaled integers applied
    (quantity 0 = removed) at the precisions given."""

    fetch_snapshot: ClassVar[bool] = False
    first_seq: int
    last_seq: int
    bids: FixedLevels
    asks: FixedLevels
    price_precision: int
    qty_precision: int


@dataclass(frozen=True, slots=True)
class Synced:
    """Snapshot accepted and buffered messages replayed: the book is live at ``seq``."""

    fetch_snapshot: ClassVar[bool] = False
    snapshot_seq: int
    seq: int
    replayed: int
    dropped: int


@dataclass(frozen=True, slots=True)
class Refetch:
    """Snapshot older than the first buffered message (``snapshot_seq + 1 <
    first_seq``): fetch again; the buffer is kept (§3.8 step 3)."""

    fetch_snapshot: ClassVar[bool] = True
    snapshot_seq: int
    first_seq: int


@dataclass(frozen=True, slots=True)
class GapDetected:
    """Sequence ``expected`` was never seen; ``got`` arrived instead.

    The book was thrown away; the message that revealed the gap is kept as the
    first message of a new cycle (state NEED_SNAPSHOT): fetch a snapshot.
    ``was_live`` is True when a live book was invalidated (the caller reports
    a Gap); False when it happened while still waiting for a snapshot.

    ``regressed``: not a hole but ids going *back* for good, more than
    ``max_stale_run`` live messages in a row wholly at or below the book's
    sequence (``got`` is the last one's end). The book's sequence came from a
    message the venue's stream does not continue (a corrupt or poisoned id):
    every later update would be dropped as "already in book" while the book
    stayed valid and frozen. The caller must also forget its own "last
    delivered" id, which came from the same message, or it would refuse every
    honest snapshot as older than what the user has."""

    fetch_snapshot: ClassVar[bool] = True
    expected: int
    got: int
    was_live: bool
    regressed: bool = False


SyncResult = NeedSnapshot | Buffered | Pending | Dropped | Applied | Synced | Refetch | GapDetected

# ------------------------------------------------------------------ engine

M = TypeVar("M")

#: live messages in a row wholly at or below the book's sequence before the
#: book is declared wrong (:class:`GapDetected` ``regressed``): 10 s of a
#: Binance 100 ms stream, far more than a repeat or a handover overlap
DEFAULT_MAX_STALE_RUN = 100


class SyncTally:
    """How many of the syncs sharing this tally are not SYNCED, so an adapter can
    tell "every book is live" in O(1) instead of asking each one per frame."""

    __slots__ = ("unsynced",)

    def __init__(self) -> None:
        self.unsynced = 0


class SequencedBookSync(abc.ABC, Generic[M]):
    """The per-symbol state machine described in the module docstring.

    Subclasses define :meth:`_range` (a message's ``(first, last)``) and
    :meth:`_changes` (its levels as ``(price, qty)`` strings, given the book
    sequence it is applied on). ``max_buffer`` bounds the messages held while
    waiting for a snapshot; overflowing it restarts the cycle
    (:class:`NeedSnapshot` with reason ``"overflow"``). ``max_stale_run``
    bounds the live messages in a row that may lie wholly at or below the
    book's sequence (a venue's repeat, a make-before-break overlap) before the
    book is declared wrong (:class:`GapDetected` with ``regressed``)."""

    def __init__(
        self,
        venue: str,
        symbol: str,
        *,
        max_buffer: int = 10_000,
        max_stale_run: int = DEFAULT_MAX_STALE_RUN,
        depth: int | None = None,
        price_precision: int = 0,
        qty_precision: int = 0,
        tally: SyncTally | None = None,
    ) -> None:
        if max_buffer < 1:
            raise ConfigError("max_buffer must be at least 1")
        if type(max_stale_run) is not int or max_stale_run < 1:
            raise ConfigError("max_stale_run must be a positive int")
        self._max_stale_run = max_stale_run
        self._stale_run = 0  # live messages in a row wholly inside the book
        self._tally = tally
        if tally is not None:
            tally.unsynced += 1  # starts BUFFERING
        self.symbol = symbol
        self._scaled = ScaledBook(
            venue,
            symbol,
            depth=depth,
            price_precision=price_precision,
            qty_precision=qty_precision,
        )
        self._max_buffer = max_buffer
        self._state = SyncState.BUFFERING
        self._buffer: deque[M] = deque()
        self._seq: int | None = None  # book sequence (live, or of the loaded snapshot)
        self._pending: int | None = None  # held snapshot (book loaded, not live)
        self._last_seen: int | None = None  # last sequence seen in this cycle

    # -------------------------------------------------------------- subclass hooks
    @abc.abstractmethod
    def _range(self, msg: M) -> tuple[int, int]:
        """``(first, last)`` sequence numbers covered by ``msg``."""

    @abc.abstractmethod
    def _changes(self, msg: M, seq: int, first: int) -> tuple[Levels, Levels]:
        """``(bids, asks)`` to apply when the book is at ``seq``."""

    # -------------------------------------------------------------- read access
    @property
    def state(self) -> SyncState:
        return self._state

    @property
    def seq(self) -> int | None:
        """The book's sequence while SYNCED, else None."""
        return self._seq if self._state is SyncState.SYNCED else None

    @property
    def first_seq(self) -> int | None:
        """``first`` of the oldest buffered message (what a snapshot must reach)."""
        return self._range(self._buffer[0])[0] if self._buffer else None

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    @property
    def pending_snapshot(self) -> int | None:
        return self._pending

    @property
    def book(self) -> Book:
        """The book (``book.valid`` is True only while SYNCED)."""
        return self._scaled.book

    @property
    def view(self) -> BookView:
        return self._scaled.book.view

    @property
    def price_precision(self) -> int:
        return self._scaled.price_precision

    @property
    def qty_precision(self) -> int:
        return self._scaled.qty_precision

    # -------------------------------------------------------------- transitions
    def reset(self) -> None:
        """Forget book, buffer and held snapshot (disconnect, unsubscribe)."""
        self._restart(None)

    def detach(self) -> None:
        """The sync is dropped by its owner: it leaves the tally."""
        tally = self._tally
        if tally is not None:
            if self._state is not SyncState.SYNCED:
                tally.unsynced -= 1
            self._tally = None

    def _restart(self, msg: M | None) -> None:
        tally = self._tally
        if tally is not None and self._state is SyncState.SYNCED:
            tally.unsynced += 1
        self._scaled.book.reset()
        self._buffer.clear()
        self._pending = None
        self._seq = None
        self._stale_run = 0
        if msg is None:
            self._state = SyncState.BUFFERING
            self._last_seen = None
        else:
            self._buffer.append(msg)
            self._state = SyncState.NEED_SNAPSHOT
            self._last_seen = self._range(msg)[1]

    def _go_live(self) -> None:
        tally = self._tally
        if tally is not None and self._state is not SyncState.SYNCED:
            tally.unsynced -= 1
        self._state = SyncState.SYNCED
        self._pending = None
        self._buffer.clear()
        self._scaled.book.valid = True

    def _apply(self, msg: M, first: int, last: int) -> Applied:
        assert self._seq is not None
        bids, asks = self._changes(msg, self._seq, first)
        pb, pa = self._scaled.apply(bids, asks)
        self._seq = last
        self._last_seen = last
        return Applied(
            first,
            last,
            tuple(pb),
            tuple(pa),
            self._scaled.price_precision,
            self._scaled.qty_precision,
        )

    def apply_live(
        self, first: int, last: int, bids: list[tuple[int, int]], asks: list[tuple[int, int]]
    ) -> bool:
        """The hot path of :meth:`on_message`: a message that continues the live book,
        with levels already scaled at the book's current precisions (non-negative).
        Returns False, having changed nothing, unless the book is SYNCED and
        ``[first, last]`` continues it exactly as the live rule asks (``first <= seq + 1
        <= last``); the caller then feeds the message to :meth:`on_message`."""
        if self._state is not SyncState.SYNCED:
            return False
        seq = self._seq
        assert seq is not None
        if not first <= seq + 1 <= last:
            return False
        self._scaled.book.apply(bids, asks)
        self._seq = last
        self._last_seen = last
        self._stale_run = 0
        return True

    def _checked_range(self, msg: M) -> tuple[int, int]:
        first, last = self._range(msg)
        if first > last or first < 0:
            # decoders refuse such messages (DecodeError); reaching here is a caller bug
            raise LocalProtocolError(f"message range [{first}, {last}] is not a valid range")
        return first, last

    def on_message(self, msg: M) -> SyncResult:
        """Feed one decoded stream message, in arrival order.

        Raises :class:`DecodeError` only for levels a decoder would have
        refused (the machine then restarts empty) and
        :class:`LocalProtocolError` for a message whose range is inverted."""
        first, last = self._checked_range(msg)
        try:
            return self._on_message(msg, first, last)
        except DecodeError:
            self._restart(None)
            raise

    def _on_message(self, msg: M, first: int, last: int) -> SyncResult:
        if self._state is SyncState.SYNCED:
            seq = self._seq
            assert seq is not None
            if last <= seq:
                self._stale_run += 1
                if self._stale_run > self._max_stale_run:
                    self._restart(msg)
                    return GapDetected(seq + 1, last, True, regressed=True)
                return Dropped(first, last, "already in book")
            self._stale_run = 0
            if first > seq + 1:
                self._restart(msg)
                return GapDetected(seq + 1, first, True)
            return self._apply(msg, first, last)
        if self._pending is not None:
            return self._against_pending(msg, first, last)
        if self._state is SyncState.BUFFERING:
            self._restart(msg)
            return NeedSnapshot(first, "start")
        prev = self._last_seen
        assert prev is not None
        if last <= prev:
            return Dropped(first, last, "duplicate")
        if first > prev + 1:
            self._restart(msg)
            return GapDetected(prev + 1, first, False)
        if len(self._buffer) >= self._max_buffer:
            self._restart(msg)
            return NeedSnapshot(first, "overflow")
        self._buffer.append(msg)
        self._last_seen = last
        return Buffered(len(self._buffer))

    def _against_pending(self, msg: M, first: int, last: int) -> SyncResult:
        # a snapshot arrived before any message: the first message decides
        snap = self._pending
        assert snap is not None
        if first > snap + 1:
            self._restart(msg)
            return Refetch(snap, first)  # snapshot older than the stream we joined
        self._seq = snap
        if last > snap:  # straddles the snapshot
            self._apply(msg, first, last)
            self._go_live()
            return Synced(snap, last, 1, 0)
        self._go_live()  # wholly inside the snapshot: live at the snapshot's sequence
        return Synced(snap, snap, 0, 1)

    def on_snapshot(
        self, seq: int, bids: Iterable[tuple[str, str]], asks: Iterable[tuple[str, str]]
    ) -> SyncResult:
        """Feed a REST snapshot (``seq``: Binance ``lastUpdateId``, KuCoin ``sequence``)."""
        try:
            return self._on_snapshot(seq, bids, asks)
        except DecodeError:
            self._restart(None)
            raise

    def _on_snapshot(
        self, seq: int, bids: Iterable[tuple[str, str]], asks: Iterable[tuple[str, str]]
    ) -> SyncResult:
        if type(seq) is not int or seq < 0:
            raise LocalProtocolError(f"snapshot sequence must be a non-negative int, got {seq!r}")
        if self._state is SyncState.SYNCED:
            return Dropped(seq, seq, "already synced")
        buf = self._buffer
        if not buf:  # BUFFERING: nothing to judge the snapshot by yet
            if self._pending is not None and seq <= self._pending:
                return Dropped(seq, seq, "not newer than the held snapshot")
            self._scaled.load(bids, asks)
            self._pending = seq
            return Pending(seq)
        first = self._range(buf[0])[0]
        if seq + 1 < first:
            return Refetch(seq, first)
        self._scaled.load(bids, asks)
        self._seq = seq
        dropped = 0
        while buf and self._range(buf[0])[1] <= seq:
            buf.popleft()
            dropped += 1
        # The buffer is contiguous from ``first <= seq + 1``, so the first remaining
        # message (if any) has ``first <= seq + 1 <= last``: no hole is possible here.
        # If none remains, the stream has reached or not yet reached ``seq``; either
        # way the snapshot is not stale, and the live rule checks what follows.
        replayed = 0
        for msg in buf:
            f, last = self._range(msg)
            self._apply(msg, f, last)
            replayed += 1
        self._go_live()
        return Synced(seq, self._seq, replayed, dropped)


# ------------------------------------------------------------------ trade ids


@dataclass(frozen=True, slots=True)
class SeqOk:
    """In order (or the first id seen)."""

    seq: int


@dataclass(frozen=True, slots=True)
class SeqDuplicate:
    """``got <= last``: already delivered (or out of order): drop it."""

    last: int
    got: int


@dataclass(frozen=True, slots=True)
class SeqGap:
    """Ids ``expected .. got - 1`` were never seen; ``got`` itself is fine (deliver it)."""

    expected: int
    got: int


SeqResult = SeqOk | SeqDuplicate | SeqGap


class SequenceCheck:
    """Per-symbol id checker for trade streams.

    ``contiguous=True``: ids go up by exactly one (a jump is a :class:`SeqGap`).
    ``contiguous=False``: ids only have to increase (a jump is normal, only
    repeats/regressions are reported). The last id survives reconnects on
    purpose: the first trade after a reconnect then tells exactly which ids
    were missed. :meth:`reset` forgets it."""

    __slots__ = ("_last", "contiguous")

    def __init__(self, *, contiguous: bool) -> None:
        self.contiguous = contiguous
        self._last: int | None = None

    @property
    def last(self) -> int | None:
        return self._last

    def reset(self) -> None:
        self._last = None

    def check(self, seq: int) -> SeqResult:
        last = self._last
        if last is None:
            self._last = seq
            return SeqOk(seq)
        if seq <= last:
            return SeqDuplicate(last, seq)
        self._last = seq
        if self.contiguous and seq != last + 1:
            return SeqGap(last + 1, seq)
        return SeqOk(seq)


def pick_snapshot_owner(
    candidates: list[tuple[str, bool, int | None]], seq: int | None, asked: dict[str, int]
) -> str:
    """Passive mode: which of several books an unnamed snapshot answer belongs to.

    ``candidates`` are ``(symbol, request outstanding, reference update id or sequence)``.
    Answers come back in request order, so the oldest outstanding request is
    the answer's, unless the ids say clearly otherwise (another book's
    are over 1000 times nearer the snapshot's): a request the live timer made
    later is not seen in replay. Without an outstanding request, the nearest
    book by update id; then the registry order."""
    order = {sym: i for i, (sym, _, _) in enumerate(candidates)}
    waiting = sorted(
        (c for c in candidates if c[1]), key=lambda c: (asked.get(c[0], 0), order[c[0]])
    )
    dist = {
        sym: abs(seq - ref) for sym, _, ref in candidates if seq is not None and ref is not None
    }
    nearest = min(dist, key=lambda sym: (dist[sym], order[sym])) if dist else None
    if waiting:
        first = waiting[0][0]
        if nearest is not None and first in dist and dist[nearest] * 1000 < dist[first]:
            return nearest
        return first
    return nearest if nearest is not None else candidates[0][0]
