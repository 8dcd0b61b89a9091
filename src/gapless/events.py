"""Normalized, immutable events: the only thing users of gapless consume.

Every event is a frozen ``msgspec.Struct`` (cheap to create, hashable fields,
JSON-encodable). Prices and quantities are :class:`decimal.Decimal` values equal
to the exact wire numbers, so there is no float drift. Floats: ``Trade`` and
:class:`Level` have ``price_float``/``qty_float``, ``BookView`` has
``bids_float()``/``asks_float()``, and any Decimal converts with ``float()``.

Time: ``local_ts_ns`` is when gapless processed the frame (the runtime's wall
clock, ``time.time_ns()`` by default);
``exchange_ts_ns`` is the venue's own timestamp in integer nanoseconds since the
Unix epoch (Kraken sends microseconds, so the last three digits are zero).

Stream keys name one logical feed and are what :class:`Gap` refers to:

- ``kraken:book:BTC/USD:10`` (book, with its subscribed depth)
- ``kraken:trade:BTC/USD``
- ``kraken:ticker:BTC/USD``

The invariant (design.md §1): every event the venue published on a stream is
delivered exactly once, or falls inside a :class:`Gap` on that stream whose
interval is ``start_ts_ns < exchange_ts <= end_ts_ns`` (open start, closed end).
"""

from __future__ import annotations

import enum
from decimal import Decimal
from typing import TYPE_CHECKING, Any, NamedTuple

import msgspec

if TYPE_CHECKING:
    from gapless.book import BookView

__all__ = [
    "BadFrame",
    "BookSnapshot",
    "BookTicker",
    "BookUpdate",
    "ConnectionState",
    "Event",
    "Gap",
    "GapCause",
    "Level",
    "MarketEvent",
    "Subscribed",
    "SubscriptionRejected",
    "Ticker",
    "Trade",
    "VenueStatus",
    "WatchdogFired",
    "book_stream",
    "event_to_dict",
    "stream_key",
]


def stream_key(venue: str, channel: str, symbol: str, depth: int | None = None) -> str:
    """The canonical stream key, e.g. ``kraken:book:BTC/USD:10``."""
    if depth is None:
        return f"{venue}:{channel}:{symbol}"
    return f"{venue}:{channel}:{symbol}:{depth}"


def book_stream(venue: str, symbol: str, depth: int) -> str:
    return stream_key(venue, "book", symbol, depth)


class Level(NamedTuple):
    """One price level. ``qty == 0`` in an update means the level was removed."""

    price: Decimal
    qty: Decimal

    @property
    def price_float(self) -> float:
        return float(self.price)

    @property
    def qty_float(self) -> float:
        return float(self.qty)


class GapCause(enum.StrEnum):
    """Why data may have been missed."""

    DISCONNECT = "disconnect"
    CHECKSUM_MISMATCH = "checksum_mismatch"
    SEQUENCE_GAP = "sequence_gap"
    QUEUE_OVERFLOW = "queue_overflow"
    STALE = "stale"
    SUBSCRIPTION_REJECTED = "subscription_rejected"
    BAD_FRAME = "bad_frame"
    SHUTDOWN = "shutdown"


class Event(msgspec.Struct, frozen=True, kw_only=True):
    """Base of every event."""

    venue: str
    local_ts_ns: int


class MarketEvent(Event, frozen=True, kw_only=True):
    symbol: str
    exchange_ts_ns: int
    stream: str


class Trade(MarketEvent, frozen=True, kw_only=True):
    trade_id: int
    price: Decimal
    qty: Decimal
    side: str  # taker side: "buy" | "sell"
    ord_type: str | None = None

    @property
    def price_float(self) -> float:
        return float(self.price)

    @property
    def qty_float(self) -> float:
        return float(self.qty)


class BookSnapshot(MarketEvent, frozen=True, kw_only=True):
    """A verified snapshot: from here on the book is live."""

    depth: int
    bids: tuple[Level, ...]
    asks: tuple[Level, ...]
    checksum: int | None
    book: BookView | None = None
    seq: int | None = None  # the venue's book sequence (Binance lastUpdateId, KuCoin sequence)

    @property
    def best_bid(self) -> Level | None:
        return self.bids[0] if self.bids else None

    @property
    def best_ask(self) -> Level | None:
        return self.asks[0] if self.asks else None


class BookUpdate(MarketEvent, frozen=True, kw_only=True):
    """A verified change. ``bids``/``asks`` are the levels the venue sent
    (qty 0 = removed). ``book`` is the *live* book (it keeps changing: read it
    now, or copy what you need)."""

    depth: int
    bids: tuple[Level, ...]
    asks: tuple[Level, ...]
    checksum: int | None
    book: BookView | None = None
    seq: int | None = None  # the venue's update id after this change (Binance u, KuCoin end)

    @property
    def best_bid(self) -> Level | None:
        return self.book.best_bid() if self.book is not None else None

    @property
    def best_ask(self) -> Level | None:
        return self.book.best_ask() if self.book is not None else None


class Ticker(MarketEvent, frozen=True, kw_only=True):
    bid: Decimal
    bid_qty: Decimal
    ask: Decimal
    ask_qty: Decimal
    last: Decimal
    volume: Decimal
    vwap: Decimal
    low: Decimal
    high: Decimal
    change: Decimal
    change_pct: Decimal


class BookTicker(MarketEvent, frozen=True, kw_only=True):
    """Best bid/ask as the venue publishes it (Binance ``@bookTicker``).

    ``update_id`` is the venue's book update id (``u``) when it has one;
    ``exchange_ts_ns`` is 0 when the venue sends no time (Binance bookTicker)."""

    bid: Decimal
    bid_qty: Decimal
    ask: Decimal
    ask_qty: Decimal
    update_id: int | None = None


class VenueStatus(Event, frozen=True, kw_only=True):
    """The venue's engine status (Kraken ``status`` channel, protocols.md §1.4).

    ``system`` is one of ``online``, ``maintenance``, ``cancel_only``,
    ``post_only``, ``limit_only`` (the last is not documented as a system value
    but is surfaced if a venue sends it)."""

    conn: str
    system: str
    api_version: str | None = None
    connection_id: int | None = None
    version: str | None = None


class ConnectionState(Event, frozen=True, kw_only=True):
    """Every supervisor transition. ``delay_s`` is set when entering BACKOFF."""

    conn: str
    state: str
    previous: str
    reason: str
    attempt: int = 0
    delay_s: float | None = None


class Subscribed(Event, frozen=True, kw_only=True):
    """The venue acknowledged a subscription."""

    conn: str
    stream: str
    exchange_ts_ns: int | None = None  # the ack's time_out: events after it are sent


class SubscriptionRejected(Event, frozen=True, kw_only=True):
    """The venue refused a subscription (or never acknowledged it).

    ``retry_in_s`` is None when the error is permanent (unknown pair, invalid
    depth): gapless will not ask again."""

    conn: str
    stream: str
    error: str
    retry_in_s: float | None = None


class Gap(Event, frozen=True, kw_only=True):
    """Data on ``stream`` may have been missed.

    Interval: every event with ``start_ts_ns < exchange_ts <= end_ts_ns`` may be
    missing. ``start_ts_ns`` is the exchange time of the last event delivered on
    the stream (None: nothing delivered yet); ``end_ts_ns`` is the resync point
    (the new snapshot's time, or the time the venue confirmed the
    re-subscription); None means the gap was still open when the feed stopped.

    ``first_seq``/``last_seq`` bound the missed sequence numbers (trade ids,
    book update ids) where the venue has them, inclusive; ``last_seq=None``
    with ``first_seq`` set means "from first_seq up to the resync point". When
    sequence bounds are given they are the precise statement and the times are
    informative (a venue's REST snapshot, for instance, carries no time)."""

    stream: str
    symbol: str
    cause: GapCause
    start_ts_ns: int | None
    end_ts_ns: int | None
    first_seq: int | None = None
    last_seq: int | None = None
    detail: str = ""


class BadFrame(Event, frozen=True, kw_only=True):
    """A frame that could not be decoded or broke the venue's protocol.

    It was counted and dropped; if it could have touched state, the affected
    streams are resynchronised (and a :class:`Gap` says so)."""

    conn: str
    reason: str
    size: int
    excerpt: str


class WatchdogFired(Event, frozen=True, kw_only=True):
    """A liveness timer expired: ``kind`` is ``dead_peer``, ``pong`` or ``stale``."""

    conn: str
    kind: str
    stream: str | None = None
    silent_for_s: float = 0.0


def event_to_dict(ev: Event) -> dict[str, Any]:
    """A JSON-ready dict of an event (Decimals as strings, live book omitted)."""
    out: dict[str, Any] = {"type": type(ev).__name__}
    for name in ev.__struct_fields__:
        if name == "book":
            continue
        value = getattr(ev, name)
        if isinstance(value, Decimal):
            value = format(value, "f")  # fixed point: 0.00000000, never 0E-8
        elif isinstance(value, tuple) and value and isinstance(value[0], Level):
            value = [[format(lv.price, "f"), format(lv.qty, "f")] for lv in value]
        elif isinstance(value, enum.Enum):
            value = value.value
        out[name] = value
    return out
