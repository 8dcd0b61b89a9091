"""Binance diff-depth book synchronisation and trade-id continuity (pure).

:class:`DepthSync` is the local-order-book procedure of protocols.md §3.8 as
a per-symbol state machine (the engine, shared with KuCoin, is
:class:`gapless.venues.seqsync.SequencedBookSync`; its docstring has the state
diagram). Mapping of the documented steps:

1. Buffer events, note the first ``U``: the first event returns
   :class:`NeedSnapshot` (fetch ``/api/v3/depth?limit=5000`` now), later ones
   :class:`Buffered`. While waiting the buffer must stay contiguous
   (``U <= previous u + 1``); a hole restarts the cycle at the event after it
   (:class:`GapDetected` with ``was_live=False``).
2./3. :meth:`DepthSync.on_snapshot`: a snapshot with ``lastUpdateId + 1 < first U``
   cannot be continued by the buffer: :class:`Refetch` (buffer kept).
4. Buffered events with ``u <= lastUpdateId`` are dropped; the first remaining
   one must satisfy ``U <= lastUpdateId + 1 <= u``.
5./6. The book is the snapshot at id ``lastUpdateId``; buffered, then live
   events apply while ``U <= id + 1`` and ``u > id`` (book id := ``u``);
   ``u <= id`` is ignored (:class:`Dropped`); ``U > id + 1`` is a gap: the
   book is thrown away and the machine restarts (:class:`GapDetected`,
   ``was_live=True``; the caller emits a Gap and fetches a snapshot).

Which first-event check, and why. §3.8 step 4 asks for ``U <= lastUpdateId
<= u`` (and step 3 refetches when ``lastUpdateId < U``); cryptofeed [CF] asks
for ``U <= lastUpdateId + 1 <= u``. We implement the cryptofeed form, and
refetch only when ``lastUpdateId + 1 < U``:

- the condition that matters is "the first applied event contains the first
  update *not* in the snapshot", i.e. ``lastUpdateId + 1`` in ``[U, u]``;
  events carry absolute quantities as of ``u``, so any overlap before that is
  harmless;
- the doc form wrongly fails when ``lastUpdateId`` equals some buffered
  event's ``u`` exactly: that event is dropped (``u <= lastUpdateId``) and the
  next one starts at ``U = lastUpdateId + 1 > lastUpdateId``;
- at ``lastUpdateId == U - 1`` the snapshot ends exactly where the first event
  starts; the doc would refetch for nothing.

After the first event the doc's rule (gap only if ``U > id + 1``) is kept
rather than cryptofeed's strict ``U == id + 1``: an overlapping event is
correct to apply for the same absolute-quantity reason. On Binance overlap
does not occur in practice; duplicates (``u <= id``) are dropped either way.

If every buffered event is dropped (the snapshot is at or past the stream),
the book goes live at ``lastUpdateId`` at once and the live rule judges the
next event (steps 5-6; waiting for one more event could take long on a quiet
symbol). A snapshot that arrives before any event cannot be checked against
a first ``U`` yet: it is held (:class:`Pending`) and the first event either
proves it stale (``U > lastUpdateId + 1``: :class:`Refetch`) or makes it live.

Precision: levels are exact fixed-point integers in a :class:`gapless.book.Book`
(via :class:`gapless.venues.seqsync.ScaledBook`). The precision is the largest
number of decimals present in the levels seen so far (Binance prints 8:
``"0.00240000"``), optionally raised by ``price_precision``/``qty_precision``
from exchange info, and it only grows (a longer decimal rescales the book
exactly). The book is not truncated (§3.8: levels deeper than the snapshot
stay until they change).

Trades: :class:`TradeIdCheck` checks the per-symbol ``t`` of ``@trade``
(§3.6), which goes up by one per trade: a jump is a :class:`SeqGap` naming the
missing ids, a repeat or regression a :class:`SeqDuplicate`.
"""

from __future__ import annotations

from collections.abc import Iterable

from gapless.venues.binance.protocol import VENUE, DepthSnapshot, DepthUpdate, TradeMsg
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
    SyncTally,
)

__all__ = [
    "Applied",
    "Buffered",
    "DepthSync",
    "Dropped",
    "GapDetected",
    "NeedSnapshot",
    "Pending",
    "Refetch",
    "SeqDuplicate",
    "SeqGap",
    "SeqOk",
    "SeqResult",
    "SyncResult",
    "SyncState",
    "SyncTally",
    "Synced",
    "TradeIdCheck",
]


class DepthSync(SequencedBookSync[DepthUpdate]):
    """One symbol's diff-depth book (§3.8). Feed every ``depthUpdate`` of the
    symbol to :meth:`on_event` and every REST snapshot to :meth:`on_snapshot`;
    fetch a snapshot whenever a result has ``fetch_snapshot`` set."""

    def __init__(
        self,
        symbol: str,
        *,
        max_buffer: int = 10_000,
        max_stale_run: int = DEFAULT_MAX_STALE_RUN,
        price_precision: int = 0,
        qty_precision: int = 0,
        tally: SyncTally | None = None,
    ) -> None:
        super().__init__(
            VENUE,
            symbol,
            max_buffer=max_buffer,
            max_stale_run=max_stale_run,
            depth=None,
            price_precision=price_precision,
            qty_precision=qty_precision,
            tally=tally,
        )

    def _range(self, msg: DepthUpdate) -> tuple[int, int]:
        return msg.first_update_id, msg.final_update_id

    def _changes(self, msg: DepthUpdate, seq: int, first: int) -> tuple[Levels, Levels]:
        return msg.bids, msg.asks

    def on_event(self, event: DepthUpdate) -> SyncResult:
        """Feed one ``depthUpdate`` (steps 1 and 6)."""
        return self.on_message(event)

    def on_snapshot(
        self,
        seq: int,
        bids: Iterable[tuple[str, str]],
        asks: Iterable[tuple[str, str]],
    ) -> SyncResult:
        """Feed a REST snapshot: ``seq`` is its ``lastUpdateId`` (steps 2-5)."""
        return super().on_snapshot(seq, bids, asks)

    def on_depth_snapshot(self, snapshot: DepthSnapshot) -> SyncResult:
        """:meth:`on_snapshot` from a decoded §3.7 body."""
        return self.on_snapshot(snapshot.last_update_id, snapshot.bids, snapshot.asks)


class TradeIdCheck(SequenceCheck):
    """Continuity of one symbol's ``@trade`` ids (§3.6 ``t``: +1 per trade)."""

    __slots__ = ()

    def __init__(self) -> None:
        super().__init__(contiguous=True)

    def on_trade(self, trade: TradeMsg | int) -> SeqResult:
        return self.check(trade if isinstance(trade, int) else trade.trade_id)
