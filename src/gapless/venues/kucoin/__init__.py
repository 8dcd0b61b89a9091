"""KuCoin Spot WebSocket, classic API (protocols.md §2).

Stream specs::

    from gapless.venues import kucoin
    kucoin.book("BTC-USDT")    # /market/level2 + REST snapshot, calibrated per §2.5
    kucoin.trades("BTC-USDT")  # /market/match (trade.l3match)
    kucoin.ticker("BTC-USDT")  # /market/ticker (trade.ticker, ~100 ms)
    kucoin.orders()            # your orders (/spotMarket/tradeOrdersV2; needs credentials)
    kucoin.balances()          # your balances (/account/balance; needs credentials)

Symbols are KuCoin's ``BASE-QUOTE`` form. The level2 book is the full book
(no depth parameter): ``depth`` is always None. Topic names:
:func:`gapless.venues.kucoin.protocol.topic_of`.
"""

from __future__ import annotations

import re

from gapless.errors import ConfigError
from gapless.venues.base import StreamSpec

__all__ = ["KucoinAdapter", "KucoinOptions", "balances", "book", "orders", "ticker", "trades"]

_SYMBOL_RE = re.compile(r"[A-Z0-9]{1,20}(?:-[A-Z0-9]{1,20}){1,2}")


def _check_symbol(symbol: str) -> str:
    if not isinstance(symbol, str) or not _SYMBOL_RE.fullmatch(symbol):
        raise ConfigError(f"KuCoin symbols look like 'BTC-USDT', got {symbol!r}")
    return symbol


def book(symbol: str) -> StreamSpec:
    """Full L2 book from ``/market/level2`` increments (§2.5)."""
    return StreamSpec("kucoin", "book", _check_symbol(symbol))


def trades(symbol: str) -> StreamSpec:
    """Public matches (§2.6 ``/market/match``)."""
    return StreamSpec("kucoin", "trade", _check_symbol(symbol))


def ticker(symbol: str) -> StreamSpec:
    """Best bid/ask and last trade, about every 100 ms (§2.6 ``/market/ticker``)."""
    return StreamSpec("kucoin", "ticker", _check_symbol(symbol))


# at the end: the adapter imports this package's modules
from gapless.venues.kucoin.adapter import KucoinAdapter, KucoinOptions  # noqa: E402


def orders() -> StreamSpec:
    """The account's orders (§2.7 ``/spotMarket/tradeOrdersV2``), reconciled by REST
    after every (re)connect; needs credentials with a passphrase."""
    return StreamSpec("kucoin", "orders", "*")


def balances() -> StreamSpec:
    """The account's balances (§2.7 ``/account/balance``)."""
    return StreamSpec("kucoin", "balances", "*")
