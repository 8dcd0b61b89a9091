"""Binance Spot market-data streams (protocols.md §3).

Stream specs::

    from gapless.venues import binance
    binance.book("BTCUSDT")         # diff depth @100ms + REST snapshot, §3.6-§3.8
    binance.trades("BTCUSDT")       # <symbol>@trade, trade ids checked for continuity
    binance.book_ticker("BTCUSDT")  # <symbol>@bookTicker, best bid/ask
    binance.orders()                # your orders (WS API user data stream; credentials)
    binance.balances()              # your balances (same subscription)

Symbols are given as Binance lists them (upper case, ``BTCUSDT``); stream
names use the lower-case form (§3.1), see
:func:`gapless.venues.binance.protocol.stream_name`. The diff-depth book is
the full book (no depth parameter): ``depth`` is always None.

:class:`BinanceAdapter` (in :mod:`gapless.venues.binance.adapter`) runs these
streams over one combined-stream connection for the runtime.
"""

from __future__ import annotations

from gapless.errors import ConfigError
from gapless.venues.base import StreamSpec
from gapless.venues.binance.adapter import BinanceAdapter, BinanceOptions, WeightBudget

__all__ = [
    "BinanceAdapter",
    "BinanceOptions",
    "WeightBudget",
    "balances",
    "book",
    "book_ticker",
    "orders",
    "trades",
]

_FORBIDDEN = frozenset('/-@:,?&#%"\\')


def _check_symbol(symbol: str) -> str:
    if (
        not isinstance(symbol, str)
        or not 0 < len(symbol) <= 32
        or symbol != symbol.upper()
        or any(c in _FORBIDDEN or c.isspace() for c in symbol)
    ):
        raise ConfigError(f"Binance symbols look like 'BTCUSDT', got {symbol!r}")
    return symbol


def book(symbol: str) -> StreamSpec:
    """Full L2 book from the 100 ms diff-depth stream, synced per §3.8."""
    return StreamSpec("binance", "book", _check_symbol(symbol))


def trades(symbol: str) -> StreamSpec:
    """Real-time trades (§3.6 ``@trade``)."""
    return StreamSpec("binance", "trade", _check_symbol(symbol))


def book_ticker(symbol: str) -> StreamSpec:
    """Best bid/ask in real time (§3.6 ``@bookTicker``)."""
    return StreamSpec("binance", "book_ticker", _check_symbol(symbol))


def orders() -> StreamSpec:
    """The account's orders: ``executionReport`` over the WebSocket API user data
    stream (§3.9), reconciled by REST after every (re)subscribe; needs credentials."""
    return StreamSpec("binance", "orders", "*")


def balances() -> StreamSpec:
    """The account's balances (``outboundAccountPosition``, ``balanceUpdate``, §3.9)."""
    return StreamSpec("binance", "balances", "*")
