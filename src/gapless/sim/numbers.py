"""Fixed-point numbers and timestamps exactly as Kraken v2 prints them.

The simulator keeps every price and quantity as a *scaled integer*: a price of
``62807.1`` on a pair with ``price_precision`` 1 is the int ``628071``. This
makes the book exact and lets the wire text be produced without floats.

protocols.md §1.7 "Wire number format": live frames print book prices and
quantities as JSON numbers with exactly the pair's precision, trailing zeros
kept and no exponent (``62807.0``, ``0.00000000``). ``json.dumps`` cannot do
that from a float, so :func:`fmt_fixed` builds the text from the int.

protocols.md §1.1: timestamps are RFC 3339 with microseconds and ``Z``
(``2023-10-06T17:35:55.440295Z``); :func:`rfc3339_us` formats them from
integer microseconds since the Unix epoch.
"""

from __future__ import annotations

import time
from decimal import Decimal

__all__ = ["fmt_fixed", "parse_fixed", "rfc3339_us", "scale"]


def scale(prec: int) -> int:
    """``10 ** prec``: the number of integer units in 1.0 at precision ``prec``."""
    return int(10**prec)


def fmt_fixed(value: int, prec: int) -> str:
    """Format the scaled int ``value`` with exactly ``prec`` fractional digits.

    >>> fmt_fixed(628070, 1)
    '62807.0'
    >>> fmt_fixed(0, 8)
    '0.00000000'
    >>> fmt_fixed(5660, 4)
    '0.5660'
    """
    if prec <= 0:
        return str(value)
    sign = "-" if value < 0 else ""
    digits = str(abs(value)).rjust(prec + 1, "0")
    return f"{sign}{digits[:-prec]}.{digits[-prec:]}"


def parse_fixed(text: str | int | float | Decimal, prec: int) -> int:
    """Parse decimal text into a scaled int at ``prec``; raise if it does not fit.

    Floats are accepted only for convenience in configuration (they go through
    ``repr`` first); wire values never pass through floats.
    """
    d = Decimal(repr(text)) if isinstance(text, float) else Decimal(text)
    scaled = d.scaleb(prec)
    if scaled != scaled.to_integral_value():
        raise ValueError(f"{text!r} has more than {prec} fractional digits")
    return int(scaled)


_sec_cache: list[tuple[int, str]] = [(-1, "")]


def rfc3339_us(us: int) -> str:
    """Format integer epoch microseconds as RFC 3339 with 6 fractional digits and ``Z``.

    >>> rfc3339_us(1696613755440295)
    '2023-10-06T17:35:55.440295Z'
    """
    sec, frac = divmod(us, 1_000_000)
    cached_sec, prefix = _sec_cache[0]
    if cached_sec != sec:
        prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
        _sec_cache[0] = (sec, prefix)
    return f"{prefix}.{frac:06d}Z"
