"""gapless: real-time crypto-exchange data that never loses data silently.

Quick use::

    import gapless
    from gapless import kraken

    async with gapless.connect(kraken.book("BTC/USD", depth=10), kraken.trades("BTC/USD")) as feed:
        async for ev in feed:
            ...

Every event type lives in :mod:`gapless.events`; errors in :mod:`gapless.errors`.
"""

from __future__ import annotations

from gapless.book import BookView
from gapless.errors import ConfigError, GaplessError, GaveUp, OrderRefused
from gapless.events import (
    BadFrame,
    BalanceUpdate,
    BookSnapshot,
    BookTicker,
    BookUpdate,
    ConnectionState,
    DeadMansSwitch,
    Event,
    Gap,
    GapCause,
    Level,
    Levels,
    OrderResponse,
    OrderUpdate,
    Reconciled,
    Subscribed,
    SubscriptionRejected,
    Ticker,
    Trade,
    VenueStatus,
    WatchdogFired,
)
from gapless.runtime.backoff import BackoffPolicy
from gapless.runtime.feed import Feed, connect
from gapless.runtime.supervisor import RuntimeOptions
from gapless.runtime.transport import TransportOptions
from gapless.venues import binance, kraken, kucoin

__version__ = "0.1.0"

__all__ = [
    "BackoffPolicy",
    "BadFrame",
    "BalanceUpdate",
    "BookSnapshot",
    "BookTicker",
    "BookUpdate",
    "BookView",
    "ConfigError",
    "ConnectionState",
    "DeadMansSwitch",
    "Event",
    "Feed",
    "Gap",
    "GapCause",
    "GaplessError",
    "GaveUp",
    "Level",
    "Levels",
    "OrderRefused",
    "OrderResponse",
    "OrderUpdate",
    "Reconciled",
    "RuntimeOptions",
    "Subscribed",
    "SubscriptionRejected",
    "Ticker",
    "Trade",
    "TransportOptions",
    "VenueStatus",
    "WatchdogFired",
    "__version__",
    "binance",
    "connect",
    "kraken",
    "kucoin",
]
