"""KuCoin level2 sequencing on top of the seeded market (pure, synchronous, no I/O).

protocols.md §2.5: every change of a price level consumes one per-symbol
sequence number; an ``l2update`` message covers ``sequenceStart..sequenceEnd``
and carries, per touched price, only the latest ``[price, size, sequence]``
(size ``0`` removes the level). Messages are consecutive: the next
``sequenceStart`` is the previous ``sequenceEnd + 1``.

* Each market tick (:meth:`gapless.sim.market.SymbolMarket.tick`) gives every
  price it touched its own sequence, bids first, then asks, in the order the
  tick touched them. With probability ``zero_price_prob`` a tick also
  consumes a sequence that changed no level: it is sent as ``["0","0",seq]``
  (§2.5 rule 5: price ``"0"`` is ignored but advances the sequence).
* Ticks are *aggregated*: with probability ``aggregate_prob`` a message waits
  for 2..``aggregate_max`` ticks before it is flushed, otherwise each tick is
  its own message. Between ticks the book (and so a REST snapshot) already
  contains the pending changes, so a snapshot taken then has a ``sequence``
  strictly inside the next message's range: the client must drop the entries
  with a sequence <= the snapshot's (§2.5 step 3). Pending entries are keyed
  by price and re-inserted on every change, so a message's entries are in
  sequence order with only the latest per price.
* A short undo history (``history_s`` seconds of ticks) lets the simulator
  serve a *stale* snapshot: the exact book as it was at an older sequence
  (for the ``stale_snapshot`` fault), reconstructed by undoing the ticks since.

Match sequences (§2.6 ``trade.l3match``) are a separate per-symbol counter,
consecutive per fill; ``tradeId`` is the same number as text, like the
documented example. All randomness outside the market itself comes from the
``rng`` handed in, so the market's own seeded states do not depend on it.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass

from gapless.sim.market import Fill, SymbolMarket

__all__ = ["L2Message", "MatchEvent", "SymbolFeed"]

_Entry = tuple[int, int, int]
"""(price, size, sequence) as scaled ints; price 0 marks a no-op sequence."""


@dataclass(frozen=True)
class L2Message:
    """One ``trade.l2update``: entries in sequence order, ``seq_start..seq_end``."""

    seq_start: int
    seq_end: int
    asks: list[_Entry]
    bids: list[_Entry]
    ticks: int


@dataclass(frozen=True)
class MatchEvent:
    """One ``trade.l3match`` (scaled ints for price and size)."""

    sequence: int
    trade_id: str
    side: str
    price: int
    size: int
    maker_order_id: str
    taker_order_id: str


_Undo = tuple[bool, int, int | None]
"""(is_bid, price, qty before the tick or None if the level did not exist)."""


class SymbolFeed:
    """Sequences, aggregation and history of one symbol's level2 stream."""

    def __init__(
        self,
        market: SymbolMarket,
        rng: random.Random,
        *,
        aggregate_max: int = 3,
        aggregate_prob: float = 0.3,
        zero_price_prob: float = 0.02,
        history_s: float = 10.0,
    ) -> None:
        if aggregate_max < 1:
            raise ValueError("aggregate_max must be >= 1")
        self.market = market
        self.rng = rng
        self.aggregate_max = aggregate_max
        self.aggregate_prob = aggregate_prob
        self.zero_price_prob = zero_price_prob
        self.history_s = history_s
        self.seq = rng.randrange(1_000_000_000, 20_000_000_000)
        """The last sequence consumed (the book's sequence, pending changes included)."""
        self.published_end = self.seq
        """``sequenceEnd`` of the last flushed message."""
        self.match_seq = rng.randrange(10**16, 2 * 10**16)
        self._pending_bids: dict[int, tuple[int, int]] = {}
        self._pending_asks: dict[int, tuple[int, int]] = {}
        self._pending_ticks = 0
        self._target = self._new_target()
        self._history: deque[tuple[float, int, list[_Undo]]] = deque()
        bp, _ = next(market.bids.iter_top(1))
        self.last_price = bp
        self.last_size = 0

    def _new_target(self) -> int:
        if self.aggregate_max > 1 and self.rng.random() < self.aggregate_prob:
            return self.rng.randint(2, self.aggregate_max)
        return 1

    def _order_id(self) -> str:
        return f"{self.rng.getrandbits(96):024x}"

    # ------------------------------------------------------------------ ticks

    def tick(self, now: float) -> tuple[list[MatchEvent], L2Message | None]:
        """One market change: its matches and, if the message is due, the flushed update."""
        m = self.market
        change = m.tick()
        seq_before = self.seq
        undo: list[_Undo] = []
        for is_bid, touched, pending, side in (
            (True, change.touched_bids, self._pending_bids, m.bids),
            (False, change.touched_asks, self._pending_asks, m.asks),
        ):
            for price, old in touched.items():
                self.seq += 1
                pending.pop(price, None)
                pending[price] = (side.qty.get(price, 0), self.seq)
                undo.append((is_bid, price, old))
        if self.zero_price_prob > 0 and self.rng.random() < self.zero_price_prob:
            self.seq += 1
            pending = self._pending_bids if self.rng.random() < 0.5 else self._pending_asks
            pending.pop(0, None)
            pending[0] = (0, self.seq)
        matches: list[MatchEvent] = []
        for fill in change.fills:
            matches.append(self._match(fill))
        if self.seq == seq_before:
            return matches, None
        self._history.append((now, seq_before, undo))
        horizon = now - self.history_s
        while self._history and self._history[0][0] < horizon:
            self._history.popleft()
        self._pending_ticks += 1
        if self._pending_ticks >= self._target:
            return matches, self.flush()
        return matches, None

    def _match(self, fill: Fill) -> MatchEvent:
        self.match_seq += 1
        self.last_price = fill.price
        self.last_size = fill.qty
        return MatchEvent(
            sequence=self.match_seq,
            trade_id=str(self.match_seq),
            side=fill.side,
            price=fill.price,
            size=fill.qty,
            maker_order_id=self._order_id(),
            taker_order_id=self._order_id(),
        )

    def flush(self) -> L2Message | None:
        """The pending changes as one message (None if nothing is pending)."""
        if self.seq == self.published_end:
            return None
        msg = L2Message(
            seq_start=self.published_end + 1,
            seq_end=self.seq,
            asks=[(p, q, s) for p, (q, s) in self._pending_asks.items()],
            bids=[(p, q, s) for p, (q, s) in self._pending_bids.items()],
            ticks=self._pending_ticks,
        )
        self.published_end = self.seq
        self._pending_asks = {}
        self._pending_bids = {}
        self._pending_ticks = 0
        self._target = self._new_target()
        return msg

    # -------------------------------------------------------------- snapshots

    def snapshot(
        self, depth: int | None
    ) -> tuple[int, list[tuple[int, int]], list[tuple[int, int]]]:
        """(sequence, bids best first, asks best first) of the current book."""
        n = depth if depth is not None else max(len(self.market.bids), len(self.market.asks))
        return self.seq, self.market.bids.top(n), self.market.asks.top(n)

    def stale_snapshot(
        self, depth: int | None, age_s: float, now: float
    ) -> tuple[int, list[tuple[int, int]], list[tuple[int, int]]] | None:
        """The exact book as it was about ``age_s`` ago (None without history).

        Undoing the ticks since then only needs the current top
        ``depth + changes`` levels of a side: a level of the old top ``depth``
        that the ticks did not touch has at most ``changes`` new levels above it.
        """
        entries = list(self._history)
        if not entries:
            return None
        cut = now - age_s
        first = next((i for i, e in enumerate(entries) if e[0] >= cut), len(entries) - 1)
        undone = entries[first:]
        m = self.market
        n_bid = sum(1 for _, _, u in undone for x in u if x[0])
        n_ask = sum(1 for _, _, u in undone for x in u if not x[0])
        if depth is None:
            bids = dict(m.bids.top(len(m.bids)))
            asks = dict(m.asks.top(len(m.asks)))
        else:
            bids = dict(m.bids.top(depth + n_bid))
            asks = dict(m.asks.top(depth + n_ask))
        for _, _, undo in reversed(undone):
            for is_bid, price, old in reversed(undo):
                side = bids if is_bid else asks
                if old is None:
                    side.pop(price, None)
                else:
                    side[price] = old
        top_b = sorted(bids.items(), reverse=True)
        top_a = sorted(asks.items())
        if depth is not None:
            top_b, top_a = top_b[:depth], top_a[:depth]
        return undone[0][1], top_b, top_a

    def bbo(self) -> tuple[int, int, int, int]:
        """(best bid, its size, best ask, its size)."""
        bp, bq = next(self.market.bids.iter_top(1))
        ap, aq = next(self.market.asks.iter_top(1))
        return bp, bq, ap, aq
