"""KuCoin level2 calibration and match continuity (pure, protocols.md §2.5/§2.6).

:class:`L2Sync` is the §2.5 calibration as a per-symbol state machine (the
engine, shared with Binance, is :class:`gapless.venues.seqsync.SequencedBookSync`;
its docstring has the state diagram). Mapping of the documented steps:

1. Subscribe and buffer ``trade.l2update`` messages: the first one returns
   :class:`NeedSnapshot` (fetch the REST snapshot now). While waiting, the
   buffer must stay contiguous (``sequenceStart <= previous sequenceEnd + 1``);
   a hole restarts the cycle at the message after it.
2. :meth:`L2Sync.on_snapshot` gets the snapshot's ``sequence`` S. If
   ``S + 1 < sequenceStart`` of the first buffered message, the buffer cannot
   continue it: :class:`Refetch` (buffer kept). The doc has no such step; it
   is the same check as Binance §3.8 step 3 and saves a doomed replay.
3. Replay: messages with ``sequenceEnd <= S`` are dropped; in the first message
   applied, change entries whose own sequence is ``<= S`` are dropped.
4. A message applies iff ``sequenceStart <= seq + 1`` and ``sequenceEnd > seq``
   (``seq`` = the book's sequence, S at first); ``sequenceEnd <= seq`` is
   dropped as already applied; ``sequenceStart > seq + 1`` is a gap: the book
   is thrown away and the machine restarts (:class:`GapDetected`).
5. Per change: price ``"0"`` is ignored (the sequence still advances to
   ``sequenceEnd``); size ``"0"`` removes the price; anything else sets it.

Entry filtering: the per-entry sequence is "the last sequence that touched
that price" (§2.5), so an entry with sequence ``<= seq`` is already in the
book. The doc only filters inside the first applied message; we filter in any
message that overlaps the book (``sequenceStart <= seq``), which is that first
message plus overlaps the doc would apply anyway, and never filter a
contiguous message (``sequenceStart == seq + 1``), exactly like the doc.
On consistent data the filter changes nothing; it protects against a
snapshot whose levels lag its ``sequence``.

Malformed messages: ``sequenceStart > sequenceEnd`` is refused by the
decoder (:class:`gapless.errors.DecodeError`); a message built by hand with an
inverted range raises :class:`gapless.errors.LocalProtocolError` here. The
docs' worked example prints ``"sequenceEnd": 15, "sequenceStart": 19`` (the
known erratum, TV-C2); read as start 15, end 19 it gives the documented book.

Precision: as for Binance, exact fixed-point integers whose precision is the
largest number of decimals seen (KuCoin prints minimal decimals: ``"18906"``,
``"18907.3"``), growing (with an exact rescale) when a longer decimal arrives.

Matches (§2.6): what is checkable. ``trade.l3match`` carries ``sequence`` and
``tradeId``, both strings. KuCoin documents neither as contiguous: the match
``sequence`` lives in the symbol's order-book sequence space, which also moves
on order placements and cancels, so consecutive matches normally jump. We
assume only that it is strictly increasing per symbol (the KuCoin example has
``tradeId == sequence``). :class:`MatchCheck` therefore reports repeats and
regressions (:class:`SeqDuplicate`: drop them) but cannot see a lost match;
losses are only known from disconnects (the caller's gap bookkeeping).
``contiguous=True`` turns every jump into a :class:`SeqGap` for feeds that do
number matches consecutively (e.g. a simulator).
"""

from __future__ import annotations

from collections.abc import Iterable

from gapless.venues.kucoin.protocol import VENUE, L2Snapshot, L2Update, Match
from gapless.venues.seqsync import (
    DEFAULT_MAX_STALE_RUN,
    Applied,
    Buffered,
    Dropped,
    GapDetected,
    Levels,
    NeedSnapshot,
    Pending,
    Refetch,
    SeqDuplicate,
    SeqGap,
    SeqOk,
    SeqResult,
    SequenceCheck,
    SequencedBookSync,
    Synced,
    SyncResult,
    SyncState,
    is_zero,
)

__all__ = [
    "Applied",
    "Buffered",
    "Dropped",
    "GapDetected",
    "L2Sync",
    "MatchCheck",
    "NeedSnapshot",
    "Pending",
    "Refetch",
    "SeqDuplicate",
    "SeqGap",
    "SeqOk",
    "SeqResult",
    "SyncResult",
    "SyncState",
    "Synced",
]


class L2Sync(SequencedBookSync[L2Update]):
    """One symbol's level2 book (§2.5). Feed every ``trade.l2update`` of the
    symbol to :meth:`on_update` and every REST snapshot to :meth:`on_snapshot`;
    fetch a snapshot whenever a result has ``fetch_snapshot`` set."""

    def __init__(
        self,
        symbol: str,
        *,
        max_buffer: int = 10_000,
        max_stale_run: int = DEFAULT_MAX_STALE_RUN,
        price_precision: int = 0,
        qty_precision: int = 0,
    ) -> None:
        super().__init__(
            VENUE,
            symbol,
            max_buffer=max_buffer,
            max_stale_run=max_stale_run,
            depth=None,
            price_precision=price_precision,
            qty_precision=qty_precision,
        )

    def _range(self, msg: L2Update) -> tuple[int, int]:
        return msg.sequence_start, msg.sequence_end

    def _changes(self, msg: L2Update, seq: int, first: int) -> tuple[Levels, Levels]:
        if first <= seq:  # overlaps the book: drop entries it already contains (step 3)
            bids = [(p, s) for p, s, q in msg.bids if q > seq and not is_zero(p)]
            asks = [(p, s) for p, s, q in msg.asks if q > seq and not is_zero(p)]
        else:
            bids = [(p, s) for p, s, _ in msg.bids if not is_zero(p)]
            asks = [(p, s) for p, s, _ in msg.asks if not is_zero(p)]
        return bids, asks

    def on_update(self, update: L2Update) -> SyncResult:
        """Feed one ``trade.l2update`` (steps 1 and 4)."""
        return self.on_message(update)

    def on_snapshot(
        self,
        seq: int,
        bids: Iterable[tuple[str, str]],
        asks: Iterable[tuple[str, str]],
    ) -> SyncResult:
        """Feed a REST snapshot: ``seq`` is its ``sequence`` (steps 2-3)."""
        return super().on_snapshot(seq, bids, asks)

    def on_l2_snapshot(self, snapshot: L2Snapshot) -> SyncResult:
        """:meth:`on_snapshot` from a decoded §2.5 REST body."""
        return self.on_snapshot(snapshot.sequence, snapshot.bids, snapshot.asks)


class MatchCheck(SequenceCheck):
    """Order of one symbol's ``trade.l3match`` ``sequence`` (see the module docstring)."""

    __slots__ = ()

    def __init__(self, *, contiguous: bool = False) -> None:
        super().__init__(contiguous=contiguous)

    def on_match(self, match: Match | int) -> SeqResult:
        return self.check(match if isinstance(match, int) else match.sequence)
