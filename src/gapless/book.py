"""L2 order book with exact fixed-point prices and a cached Kraken checksum.

Prices and quantities are integers scaled by ``10**price_precision`` and
``10**qty_precision`` (the venue's precisions), so there is no float drift and
no Decimal arithmetic on the hot path. Each side keeps a dict ``price -> qty``
and a sorted list of keys, best first (bids are stored negated so both lists
ascend from the best level).

Kraken's checksum token for a level is "the price printed at its precision,
without the dot and without leading zeros" followed by the same for the qty
(protocols.md §1.7). For a scaled integer that is simply ``str(int)``, so the
token is cached per level when the level changes and a checksum is one join
plus one CRC32 over the top 10 levels of each side.

Maintenance rules (protocols.md §1.7 "Book maintenance rules"): apply every
level of a message in array order, ``qty == 0`` deletes, then truncate each
side to the subscribed depth (the venue sends no delete for levels pushed out
of range).
"""

from __future__ import annotations

import weakref
import zlib
from bisect import bisect_left, insort
from collections.abc import Iterable
from decimal import Decimal

from gapless.events import Level

__all__ = ["Book", "BookView", "fixed_to_decimal", "fixed_to_str"]

_CHECKSUM_LEVELS = 10


def fixed_to_decimal(value: int, precision: int) -> Decimal:
    """Exact Decimal of a scaled integer: ``fixed_to_decimal(628071, 1) == Decimal('62807.1')``."""
    return Decimal(value).scaleb(-precision)


def fixed_to_str(value: int, precision: int) -> str:
    """Fixed-point text with exactly ``precision`` decimals (``5, 8 -> '0.00000005'``)."""
    if precision == 0:
        return str(value)
    sign = "-" if value < 0 else ""
    digits = str(abs(value)).rjust(precision + 1, "0")
    return f"{sign}{digits[:-precision]}.{digits[-precision:]}"


class _Side:
    """One side of a book, best level first.

    ``keys`` holds ``sign * price`` ascending (best first) and ``tokens`` (books
    that keep them: Kraken's) the checksum token of each level in the same order,
    so the checksum part of a side is one join over the first ten tokens."""

    __slots__ = ("keys", "levels", "sign", "tokens")

    def __init__(self, sign: int, tokens: bool = True) -> None:
        self.sign = sign  # +1 for asks (ascending), -1 for bids (descending price)
        self.levels: dict[int, int] = {}
        self.keys: list[int] = []  # sorted ascending of sign * price
        self.tokens: list[str] | None = [] if tokens else None  # per key, same order

    def apply(self, levels: Iterable[tuple[int, int]], depth: int) -> None:
        """Apply levels in order (qty 0 deletes), then truncate to ``depth``."""
        book = self.levels
        keys = self.keys
        tokens = self.tokens
        sign = self.sign
        if tokens is None:
            for price, qty in levels:
                if qty == 0:
                    if price in book:
                        del book[price]
                        del keys[bisect_left(keys, sign * price)]
                    continue
                if price not in book:
                    insort(keys, sign * price)
                book[price] = qty
            if len(keys) > depth:
                self.truncate(depth)
            return
        for price, qty in levels:
            key = sign * price
            if qty == 0:
                if price in book:
                    del book[price]
                    i = bisect_left(keys, key)
                    del keys[i]
                    del tokens[i]
                continue
            if price in book:
                tokens[bisect_left(keys, key)] = f"{price}{qty}"
            else:
                i = bisect_left(keys, key)
                keys.insert(i, key)
                tokens.insert(i, f"{price}{qty}")
            book[price] = qty
        if len(keys) > depth:
            self.truncate(depth)

    def truncate(self, depth: int) -> None:
        keys = self.keys
        if len(keys) <= depth:
            return
        sign = self.sign
        levels = self.levels
        for k in keys[depth:]:
            del levels[sign * k]
        del keys[depth:]
        if self.tokens is not None:
            del self.tokens[depth:]

    def clear(self) -> None:
        self.levels.clear()
        self.keys.clear()
        if self.tokens is not None:
            self.tokens.clear()

    def top(self, n: int) -> list[tuple[int, int]]:
        sign = self.sign
        levels = self.levels
        return [(sign * k, levels[sign * k]) for k in self.keys[:n]]

    def checksum_part(self) -> str:
        if self.tokens is None:  # a book that keeps no tokens: made on demand
            return "".join(f"{p}{q}" for p, q in self.top(_CHECKSUM_LEVELS))
        return "".join(self.tokens[:_CHECKSUM_LEVELS])


class Book:
    """A mutable L2 book for one symbol at one subscribed depth.

    Owned by a sync state machine; users see it through :class:`BookView`.
    ``valid`` is True only after a verified snapshot and until the next
    failure (gap, mismatch, disconnect)."""

    __slots__ = (
        "_asks",
        "_bids",
        "_view",
        "depth",
        "last_ts_ns",
        "price_precision",
        "qty_precision",
        "symbol",
        "valid",
        "venue",
    )

    def __init__(
        self,
        venue: str,
        symbol: str,
        depth: int,
        price_precision: int,
        qty_precision: int,
        *,
        checksum_tokens: bool = True,
    ) -> None:
        """``checksum_tokens``: keep each level's Kraken checksum token up to date
        (per-message checksums); without them :meth:`checksum` still works, slower."""
        self.venue = venue
        self.symbol = symbol
        self.depth = depth
        self.price_precision = price_precision
        self.qty_precision = qty_precision
        self._bids = _Side(-1, checksum_tokens)
        self._asks = _Side(1, checksum_tokens)
        self.valid = False
        self.last_ts_ns: int | None = None
        self._view: weakref.ref[BookView] | None = None

    @property
    def view(self) -> BookView:
        """The book's one live view, while anyone holds it. The book refers to it
        weakly, so a replaced book (a resync builds a new one) is freed as soon as
        the last view of it goes, not left for the cyclic collector: a Binance
        book is thousands of levels, and the soak showed dozens of them waiting
        for a full collection."""
        ref = self._view
        view = ref() if ref is not None else None
        if view is None:
            view = BookView(self)
            self._view = weakref.ref(view)
        return view

    def reset(self) -> None:
        """Forget everything (snapshot is authoritative: never merge, design.md §1.2)."""
        self._bids.clear()
        self._asks.clear()
        self.valid = False

    def apply(self, bids: Iterable[tuple[int, int]], asks: Iterable[tuple[int, int]]) -> None:
        """Apply levels in order (qty 0 deletes), then truncate to depth."""
        self._bids.apply(bids, self.depth)
        self._asks.apply(asks, self.depth)

    def apply_checksum(
        self, bids: Iterable[tuple[int, int]], asks: Iterable[tuple[int, int]]
    ) -> int:
        """:meth:`apply` then :meth:`checksum`: the per-message path of a Kraken book."""
        self.apply(bids, asks)
        return self.checksum()

    def checksum(self) -> int:
        """Kraken CRC32 over the top 10 asks then the top 10 bids (protocols.md §1.7)."""
        text = self._asks.checksum_part() + self._bids.checksum_part()
        return zlib.crc32(text.encode("ascii")) & 0xFFFFFFFF

    # Fixed-point access (exact ints) -------------------------------------------------
    def bids_fixed(self, n: int | None = None) -> list[tuple[int, int]]:
        return self._bids.top(self.depth if n is None else n)

    def asks_fixed(self, n: int | None = None) -> list[tuple[int, int]]:
        return self._asks.top(self.depth if n is None else n)

    def __len__(self) -> int:
        return len(self._bids.levels) + len(self._asks.levels)

    def crossed(self) -> bool:
        b = self._bids.keys
        a = self._asks.keys
        return bool(b and a and -b[0] >= a[0])

    # Decimal access --------------------------------------------------------------------
    def _levels(self, fixed: list[tuple[int, int]]) -> tuple[Level, ...]:
        pp = self.price_precision
        qp = self.qty_precision
        return tuple(Level(fixed_to_decimal(p, pp), fixed_to_decimal(q, qp)) for p, q in fixed)

    def bids(self, n: int | None = None) -> tuple[Level, ...]:
        return self._levels(self.bids_fixed(n))

    def asks(self, n: int | None = None) -> tuple[Level, ...]:
        return self._levels(self.asks_fixed(n))


class BookView:
    """Read-only view of a live book (what events and ``Feed.book()`` hand out)."""

    __slots__ = ("__weakref__", "_book")

    def __init__(self, book: Book) -> None:
        self._book = book

    @property
    def venue(self) -> str:
        return self._book.venue

    @property
    def symbol(self) -> str:
        return self._book.symbol

    @property
    def depth(self) -> int:
        return self._book.depth

    @property
    def valid(self) -> bool:
        """True only while the book is verified by the venue's integrity check."""
        return self._book.valid

    @property
    def last_ts_ns(self) -> int | None:
        return self._book.last_ts_ns

    def best_bid(self) -> Level | None:
        top = self._book.bids(1)
        return top[0] if top else None

    def best_ask(self) -> Level | None:
        top = self._book.asks(1)
        return top[0] if top else None

    def bids(self, n: int | None = None) -> tuple[Level, ...]:
        return self._book.bids(n)

    def asks(self, n: int | None = None) -> tuple[Level, ...]:
        return self._book.asks(n)

    def bids_float(self, n: int | None = None) -> list[tuple[float, float]]:
        return [(float(p), float(q)) for p, q in self._book.bids(n)]

    def asks_float(self, n: int | None = None) -> list[tuple[float, float]]:
        return [(float(p), float(q)) for p, q in self._book.asks(n)]

    def checksum(self) -> int:
        return self._book.checksum()

    def __repr__(self) -> str:
        bb = self.best_bid()
        ba = self.best_ask()
        return (
            f"<BookView {self.venue}:{self.symbol}@{self.depth} valid={self.valid} "
            f"bid={bb.price if bb else None} ask={ba.price if ba else None}>"
        )
