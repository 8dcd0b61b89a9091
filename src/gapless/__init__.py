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
from gapless.errors import GaplessError, GaveUp
from gapless.events import (
    BadFrame,
    BookSnapshot,
    BookTicker,
    BookUpdate,
    ConnectionState,
    Event,
    Gap,
    GapCause,
    Level,
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
from gapless.venues import kraken

__version__ = "0.1.0"

__all__ = [
    "BackoffPolicy",
    "BadFrame",
    "BookSnapshot",
    "BookTicker",
    "BookUpdate",
    "BookView",
    "ConnectionState",
    "Event",
    "Feed",
    "Gap",
    "GapCause",
    "GaplessError",
    "GaveUp",
    "Level",
    "RuntimeOptions",
    "Subscribed",
    "SubscriptionRejected",
    "Ticker",
    "Trade",
    "TransportOptions",
    "VenueStatus",
    "WatchdogFired",
    "__version__",
    "connect",
    "kraken",
]
