"""Kraken v2 book checksum, implemented independently of the client.

protocols.md §1.7 "Checksum algorithm": over the top 10 levels of each side
(whatever the subscribed depth), asks ascending then bids descending, each
level contributes ``price_token + qty_token`` where a token is the value
formatted with exactly the pair's precision, ``.`` removed and all leading
``0`` removed; the result is the unsigned CRC-32 (``zlib.crc32``) of the ASCII
concatenation.

Because the simulator stores values as scaled integers (see
:mod:`gapless.sim.numbers`), the token of a positive value is simply
``str(scaled_int)``: formatting at full precision, dropping the dot and
stripping leading zeros gives back the int's own digits. A level's qty is never
zero inside a book, so this shortcut is exact. Checked against TV-K1 and TV-K2
in ``tests/sim/test_checksum.py``.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Sequence

from gapless.sim.numbers import parse_fixed

__all__ = ["CHECKSUM_LEVELS", "checksum_scaled", "checksum_text"]

CHECKSUM_LEVELS = 10
"""protocols.md §1.7: the checksum covers the top 10 levels of each side."""


def _side_string(levels: Iterable[tuple[int, int]]) -> str:
    parts: list[str] = []
    for i, (price, qty) in enumerate(levels):
        if i >= CHECKSUM_LEVELS:
            break
        parts.append(str(price))
        parts.append(str(qty))
    return "".join(parts)


def checksum_scaled(
    asks_best_first: Iterable[tuple[int, int]], bids_best_first: Iterable[tuple[int, int]]
) -> int:
    """CRC-32 over scaled-int levels, each side already sorted best first.

    Only the first 10 levels of each iterable are used.
    """
    text = _side_string(asks_best_first) + _side_string(bids_best_first)
    return zlib.crc32(text.encode("ascii")) & 0xFFFFFFFF


def checksum_text(
    asks: Sequence[tuple[str, str]],
    bids: Sequence[tuple[str, str]],
    price_precision: int,
    qty_precision: int,
) -> int:
    """Checksum of a book given as decimal text (any order), at the given precisions."""
    a = sorted(
        ((parse_fixed(p, price_precision), parse_fixed(q, qty_precision)) for p, q in asks),
    )
    b = sorted(
        ((parse_fixed(p, price_precision), parse_fixed(q, qty_precision)) for p, q in bids),
        reverse=True,
    )
    return checksum_scaled(a, b)
