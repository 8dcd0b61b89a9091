"""Kraken Spot WebSocket v2 (protocols.md §1).

Stream specs for :func:`gapless.connect`::

    from gapless import kraken
    kraken.book("BTC/USD", depth=10)   # depth in {10, 25, 100, 500, 1000}
    kraken.trades("BTC/USD")
    kraken.ticker("BTC/USD")
    kraken.executions()                # your orders and fills (needs credentials)
    kraken.balances()                  # your balances (needs credentials)
"""

from __future__ import annotations

from gapless.errors import ConfigError
from gapless.venues.base import StreamSpec
from gapless.venues.kraken.adapter import DEFAULT_URL, KrakenAdapter, KrakenOptions
from gapless.venues.kraken.protocol import VALID_BOOK_DEPTHS

__all__ = [
    "DEFAULT_URL",
    "KrakenAdapter",
    "KrakenOptions",
    "balances",
    "book",
    "executions",
    "ticker",
    "trades",
]


def _check_symbol(symbol: str) -> str:
    if not isinstance(symbol, str) or "/" not in symbol or len(symbol) > 32:
        raise ConfigError(f"Kraken v2 symbols look like 'BTC/USD', got {symbol!r}")
    return symbol


def book(symbol: str, depth: int = 10) -> StreamSpec:
    """Level-2 book with CRC32 verification on every message (§1.7)."""
    if depth not in VALID_BOOK_DEPTHS:
        raise ConfigError(
            f"Kraken book depth must be one of {sorted(VALID_BOOK_DEPTHS)}, got {depth}"
        )
    return StreamSpec("kraken", "book", _check_symbol(symbol), depth)


def trades(symbol: str) -> StreamSpec:
    """Public trades (§1.8)."""
    return StreamSpec("kraken", "trade", _check_symbol(symbol))


def ticker(symbol: str) -> StreamSpec:
    """Level-1 ticker, triggered by trades (§1.8)."""
    return StreamSpec("kraken", "ticker", _check_symbol(symbol))


def executions() -> StreamSpec:
    """The account's orders and fills over ``ws-auth`` (§1.10): a snapshot of open
    orders after every (re)connect, reconciled against REST; needs credentials."""
    return StreamSpec("kraken", "executions", "*")


def balances() -> StreamSpec:
    """The account's balances and ledger entries over ``ws-auth`` (§1.10)."""
    return StreamSpec("kraken", "balances", "*")
