"""Seeded market generator and depth views (pure, synchronous, no I/O).

Each symbol has a full L2 book of about 1200 levels per side on the pair's tick
grid, stored as scaled integers (:mod:`gapless.sim.numbers`). One *tick* is
one market change: a qty change near the top, an added level, a deleted level
or a trade (a taker eats 1-3 levels of one side and emits one trade per level
touched). The book is kept sane: never crossed, between ``min_levels`` (1100)
and 1.25 x ``levels`` per side (the deep end is refilled or trimmed), a
spread that closes again when it exceeds ``max_spread`` ticks, enough levels
near the top, and a mild pull of the mid price back to the pair's base price
so long runs stay in range.

:class:`DepthView` turns a market change into the level list of one book
*feed* (symbol, depth), following the book maintenance rules of
protocols.md §1.7:

* rule 2: a level deleted from the book inside the subscribed window is sent
  with qty 0;
* rule 3: a level merely pushed out of the window by a better insert is *not*
  sent (the client truncates to depth after applying the message);
* rule 4: a deeper level that a deletion brings into the window is sent as a
  new level, so a truncated client book stays full.

Nothing is sent when the window did not change. Randomness comes only from the
``random.Random`` handed in, so a seed reproduces the exact sequence of book
states regardless of timing or connected clients.
"""

from __future__ import annotations

import bisect
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

from gapless.sim.checksum import checksum_scaled
from gapless.sim.numbers import fmt_fixed, parse_fixed

__all__ = [
    "DEFAULT_PAIRS",
    "BookSide",
    "DepthView",
    "Fill",
    "MarketChange",
    "PairSpec",
    "SymbolMarket",
]

Side = Literal["buy", "sell"]


@dataclass(frozen=True)
class PairSpec:
    """One tradable pair as the ``instrument`` channel describes it (protocols.md §1.9).

    ``base_price`` is decimal text; it must be at least 3 ticks per book level
    (3600 ticks for 1200 levels) so that a full bid side fits above zero.
    """

    symbol: str
    base_price: str
    price_precision: int
    qty_precision: int = 8
    qty_min: str = "0.0001"
    cost_min: str = "0.5"
    cost_precision: int = 5
    typical_notional: float = 3000.0
    marginable: bool = False
    has_index: bool = True

    @property
    def base(self) -> str:
        return self.symbol.split("/")[0]

    @property
    def quote(self) -> str:
        return self.symbol.split("/")[1]


DEFAULT_PAIRS: tuple[PairSpec, ...] = (
    PairSpec("BTC/USD", "62000.0", 1, 8, qty_min="0.0001", marginable=True),
    PairSpec("ETH/USD", "3000.00", 2, 8, qty_min="0.002", marginable=True),
    PairSpec("MATIC/USD", "0.5500", 4, 8, qty_min="5"),
    PairSpec("ALGO/USD", "0.12000", 5, 8, qty_min="20"),
)
"""Default pairs (precisions per protocols.md §1.7/§1.9 and live captures)."""


class BookSide:
    """One side of a book: sorted keys (best first) plus a price -> qty map.

    Keys sort ascending from the best level: an ask's key is its price, a bid's
    key is minus its price. Prices and quantities are scaled ints.
    """

    __slots__ = ("is_bid", "keys", "qty")

    def __init__(self, is_bid: bool) -> None:
        self.is_bid = is_bid
        self.keys: list[int] = []
        self.qty: dict[int, int] = {}

    def key(self, price: int) -> int:
        return -price if self.is_bid else price

    def price(self, key: int) -> int:
        return -key if self.is_bid else key

    def __len__(self) -> int:
        return len(self.keys)

    def __contains__(self, price: int) -> bool:
        return price in self.qty

    def best(self) -> int:
        return self.price(self.keys[0])

    def worst(self) -> int:
        return self.price(self.keys[-1])

    def price_at(self, index: int) -> int:
        return self.price(self.keys[index])

    def set(self, price: int, qty: int) -> int | None:
        """Set a level's qty (``qty`` > 0); return the old qty or None if new."""
        assert qty > 0
        old = self.qty.get(price)
        if old is None:
            bisect.insort(self.keys, self.key(price))
        self.qty[price] = qty
        return old

    def remove(self, price: int) -> int:
        """Delete a level; return its qty."""
        old = self.qty.pop(price)
        k = self.key(price)
        i = bisect.bisect_left(self.keys, k)
        assert self.keys[i] == k
        del self.keys[i]
        return old

    def top(self, n: int) -> list[tuple[int, int]]:
        """The best ``n`` levels as (price, qty), best first."""
        return [(self.price(k), self.qty[self.price(k)]) for k in self.keys[:n]]

    def iter_top(self, n: int) -> Iterator[tuple[int, int]]:
        for k in self.keys[:n]:
            p = self.price(k)
            yield p, self.qty[p]


@dataclass(frozen=True)
class Fill:
    """One trade: the taker ``side`` ate ``qty`` at ``price`` (scaled ints)."""

    side: Side
    price: int
    qty: int
    ord_type: Literal["market", "limit"]


@dataclass
class MarketChange:
    """What one tick did to a symbol's book.

    ``touched_*`` maps every price whose level changed to its qty *before* the
    tick (None if the level did not exist).
    """

    touched_bids: dict[int, int | None] = field(default_factory=dict)
    touched_asks: dict[int, int | None] = field(default_factory=dict)
    fills: list[Fill] = field(default_factory=list)

    def touch(self, side: BookSide, price: int, old: int | None) -> None:
        touched = self.touched_bids if side.is_bid else self.touched_asks
        if price not in touched:
            touched[price] = old


class SymbolMarket:
    """The seeded random market of one symbol."""

    def __init__(
        self,
        pair: PairSpec,
        rng: random.Random,
        *,
        levels: int = 1200,
        min_levels: int = 1100,
        max_spread: int = 3,
        first_trade_id: int | None = None,
    ) -> None:
        if min_levels > levels:
            raise ValueError("min_levels must be <= levels")
        self.pair = pair
        self.rng = rng
        self.levels = levels
        self.min_levels = min_levels
        self.max_spread = max_spread
        self.pp = pair.price_precision
        self.qp = pair.qty_precision
        self.bids = BookSide(True)
        self.asks = BookSide(False)
        self.next_trade_id = (
            first_trade_id if first_trade_id is not None else rng.randrange(1_000_000, 90_000_000)
        )
        base = parse_fixed(pair.base_price, self.pp)
        if base < 3 * levels:
            raise ValueError(
                f"{pair.symbol}: base_price {pair.base_price} is too close to zero for "
                f"{levels} levels at price_precision {self.pp}"
            )
        self._base = base
        self._qty_min = max(1, parse_fixed(pair.qty_min, self.qp) // 10)
        spread = rng.randint(1, 3)
        best_bid = base - spread // 2 - 1
        self._fill_side(self.bids, best_bid, levels)
        self._fill_side(self.asks, best_bid + spread, levels)

    # ----------------------------------------------------------------- helpers

    def _gap(self) -> int:
        r = self.rng.random()
        if r < 0.6:
            return 1
        if r < 0.85:
            return 2
        return self.rng.randint(3, 5)

    def _fill_side(self, side: BookSide, start_price: int, count: int) -> None:
        price = start_price
        step = -1 if side.is_bid else 1
        for _ in range(count):
            if price <= 0:
                break
            side.set(price, self.random_qty())
            price += step * self._gap()

    def random_qty(self) -> int:
        """A plausible level/trade size, sometimes round (trailing zeros on the wire)."""
        price = self._base / 10**self.pp
        mu = math.log(self.pair.typical_notional / price)
        q = math.exp(self.rng.gauss(mu, 1.1))
        scaled = int(q * 10**self.qp)
        r = self.rng.random()
        if r < 0.35:
            unit = 10 ** max(0, self.qp - 4)
            scaled = (scaled // unit) * unit
        elif r < 0.5:
            unit = 10 ** max(0, self.qp - 2)
            scaled = (scaled // unit) * unit
        return max(scaled, self._qty_min)

    def _geometric(self, p: float, cap: int) -> int:
        n = 0
        while n < cap - 1 and self.rng.random() > p:
            n += 1
        return n

    # --------------------------------------------------------------------- tick

    def tick(self) -> MarketChange:
        """Apply one random market change and return what it touched.

        A small feedback loop keeps the top of the book realistic over long
        runs: a wide spread is closed by inserts, and deletions near the top are
        turned into inserts while the top 30 ticks hold too few levels.
        """
        ch = MarketChange()
        r = self.rng.random()
        if self.asks.best() - self.bids.best() > self.max_spread and r < 0.5:
            self._op_add_inside_spread(ch)
        elif r < 0.30:
            self._op_change_qty(ch)
        elif r < 0.62:
            self._op_add(ch)
        elif r < 0.78:
            self._op_delete(ch)
        else:
            self._op_trade(ch)
        self._refill(ch, self.bids)
        self._refill(ch, self.asks)
        return ch

    def _pick_side(self) -> BookSide:
        return self.bids if self.rng.random() < 0.5 else self.asks

    def _reverting_side(self) -> BookSide:
        """The side whose improvement pulls the mid back towards the base price."""
        mid = (self.bids.best() + self.asks.best()) / 2
        p_bid = min(0.8, max(0.2, 0.5 - 5.0 * (mid - self._base) / self._base))
        return self.bids if self.rng.random() < p_bid else self.asks

    def _near_top_count(self, side: BookSide, ticks: int) -> int:
        return bisect.bisect_left(side.keys, side.keys[0] + ticks)

    def _op_change_qty(self, ch: MarketChange) -> None:
        side = self._pick_side()
        idx = self._geometric(0.2, len(side))
        price = side.price_at(idx)
        old = side.qty[price]
        if self.rng.random() < 0.5:
            new = self.random_qty()
        else:
            delta = max(1, int(old * self.rng.uniform(0.05, 0.6)))
            new = old + delta if self.rng.random() < 0.5 else max(self._qty_min, old - delta)
        if new == old:
            new = old + self._qty_min
        side.set(price, new)
        ch.touch(side, price, old)

    def _op_add_inside_spread(self, ch: MarketChange) -> None:
        side = self._reverting_side()
        gap = self.asks.best() - self.bids.best()
        if gap <= 1:
            self._op_add(ch)
            return
        off = self.rng.randint(1, min(gap - 1, 3))
        price = self.bids.best() + off if side.is_bid else self.asks.best() - off
        side.set(price, self.random_qty())
        ch.touch(side, price, None)

    def _op_add(self, ch: MarketChange) -> None:
        """Insert a new level near the top (inside the spread sometimes)."""
        if self.asks.best() - self.bids.best() > 1 and self.rng.random() < 0.2:
            self._op_add_inside_spread(ch)
            return
        side = self._pick_side()
        step = -1 if side.is_bid else 1
        price = side.best() + step * (1 + self._geometric(0.12, 200))
        for _ in range(100):
            if price not in side:
                break
            price += step
        if price <= 0 or price in side:
            return
        side.set(price, self.random_qty())
        ch.touch(side, price, None)

    def _op_delete(self, ch: MarketChange) -> None:
        side = self._pick_side()
        if len(side) <= 2 or self._near_top_count(side, 30) < 12:
            self._op_add(ch)
            return
        idx = self._geometric(0.15, len(side) - 1)
        price = side.price_at(idx)
        old = side.remove(price)
        ch.touch(side, price, old)

    def _op_trade(self, ch: MarketChange) -> None:
        # a taker eating asks lifts the mid: buy more often when the mid is low
        taker: Side = "buy" if self._reverting_side() is self.bids else "sell"
        side = self.asks if taker == "buy" else self.bids
        n = self.rng.choices((1, 2, 3), weights=(0.6, 0.3, 0.1))[0]
        ord_type: Literal["market", "limit"] = "market" if self.rng.random() < 0.7 else "limit"
        for i in range(n):
            if len(side) <= 2:
                break
            price = side.best()
            old = side.qty[price]
            last = i == n - 1
            if last and self.rng.random() < 0.5 and old > 1:
                eaten = self.rng.randint(1, old - 1)
                side.set(price, old - eaten)
            else:
                eaten = old
                side.remove(price)
            ch.touch(side, price, old)
            ch.fills.append(Fill(taker, price, eaten, ord_type))

    def _refill(self, ch: MarketChange, side: BookSide) -> None:
        """Keep a side between ``min_levels`` and ``levels * 1.25`` by working its deep end."""
        if len(side) > self.levels + self.levels // 4:
            price = side.worst()
            ch.touch(side, price, side.remove(price))
            return
        if len(side) >= self.min_levels + (self.levels - self.min_levels) // 2:
            return
        step = -1 if side.is_bid else 1
        price = side.worst()
        while len(side) < self.levels:
            price += step * self._gap()
            if price <= 0:
                break
            q = self.random_qty()
            side.set(price, q)
            ch.touch(side, price, None)

    # ------------------------------------------------------------------- views

    def checksum(self) -> int:
        """protocols.md §1.7 checksum of the current top 10 per side."""
        return checksum_scaled(self.asks.iter_top(10), self.bids.iter_top(10))

    def book_text(self, depth: int) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        """(bids, asks) of the top ``depth`` levels as decimal text, best first."""
        pp, qp = self.pp, self.qp
        bids = [(fmt_fixed(p, pp), fmt_fixed(q, qp)) for p, q in self.bids.iter_top(depth)]
        asks = [(fmt_fixed(p, pp), fmt_fixed(q, qp)) for p, q in self.asks.iter_top(depth)]
        return bids, asks


_INF = 1 << 62


class DepthView:
    """Tracks what a client of one (symbol, depth) feed holds, to emit minimal updates.

    The view of a side is always "every level whose key <= cutoff", where
    ``cutoff`` is the key of the ``depth``-th best level (or +inf while the side
    has fewer levels). Between two ticks only touched levels and levels crossing
    the cutoff can differ, so a diff is O(touched + log n), not O(depth).
    """

    __slots__ = ("_cut_asks", "_cut_bids", "depth")

    def __init__(self, market: SymbolMarket, depth: int) -> None:
        self.depth = depth
        self._cut_bids = self._cutoff(market.bids)
        self._cut_asks = self._cutoff(market.asks)

    def _cutoff(self, side: BookSide) -> int:
        return side.keys[self.depth - 1] if len(side) >= self.depth else _INF

    def _diff_side(
        self, side: BookSide, touched: dict[int, int | None], prev_cut: int
    ) -> tuple[list[tuple[int, int]], int]:
        new_cut = self._cutoff(side)
        out: list[tuple[int, int]] = []
        for price, old in touched.items():
            k = side.key(price)
            new = side.qty.get(price)
            was_in = old is not None and k <= prev_cut
            now_in = new is not None and k <= new_cut
            if now_in:
                assert new is not None
                if not was_in or old != new:
                    out.append((price, new))
            elif was_in and new is None:
                out.append((price, 0))  # rule 2: deleted inside the window
            # else: pushed out of the window (rule 3) or never visible: nothing
        if prev_cut != _INF and new_cut > prev_cut:
            # rule 4: untouched levels that entered the window from below
            lo = bisect.bisect_right(side.keys, prev_cut)
            hi = min(len(side.keys), self.depth)
            for k in side.keys[lo:hi]:
                price = side.price(k)
                if price not in touched:
                    out.append((price, side.qty[price]))
        return out, new_cut

    def diff(
        self, market: SymbolMarket, change: MarketChange
    ) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        """Levels to send (bids, asks) for ``change``; advances the view."""
        bids, self._cut_bids = self._diff_side(market.bids, change.touched_bids, self._cut_bids)
        asks, self._cut_asks = self._diff_side(market.asks, change.touched_asks, self._cut_asks)
        return bids, asks


class TickerStats:
    """Rolling-ish statistics for the ``ticker`` channel (protocols.md §1.8).

    The simulator has no 24 h history, so the window starts with a synthetic
    "previous day" (volume, vwap = open = base price) and accumulates every fill.
    """

    __slots__ = ("high", "last", "low", "open", "pq_sum", "volume")

    def __init__(self, market: SymbolMarket) -> None:
        base = market._base
        self.open = base
        self.last = base
        self.low = base - base // 50
        self.high = base + base // 50
        self.volume = market.random_qty() * 500
        self.pq_sum = base * self.volume

    def add(self, fill: Fill) -> None:
        self.last = fill.price
        self.low = min(self.low, fill.price)
        self.high = max(self.high, fill.price)
        self.volume += fill.qty
        self.pq_sum += fill.price * fill.qty

    @property
    def vwap(self) -> int:
        return self.pq_sum // self.volume if self.volume else self.last
