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
- ``kraken:executions:*`` and ``kraken:balances:*`` (the account's own orders
  and balances; ``*`` because they cover every symbol)

Private events (:class:`OrderUpdate`, :class:`BalanceUpdate`) carry a
``source``: ``snapshot`` (the venue's authoritative snapshot after a
(re)connect), ``update`` (a live message) or ``reconciled`` (a change that
happened while the client could not see it, learned from the snapshot or
from REST after a :class:`Gap`). A :class:`Reconciled` event ends every
reconciliation: from then on the user's view equals the venue's.

The invariant (design.md §1): every event the venue published on a stream is
delivered exactly once, or falls inside a :class:`Gap` on that stream whose
interval is ``start_ts_ns < exchange_ts <= end_ts_ns`` (open start, closed end).
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any, NamedTuple, overload

import msgspec

if TYPE_CHECKING:
    from gapless.book import BookView

__all__ = [
    "BadFrame",
    "BalanceUpdate",
    "BookSnapshot",
    "BookTicker",
    "BookUpdate",
    "ConnectionState",
    "DeadMansSwitch",
    "Event",
    "Gap",
    "GapCause",
    "Level",
    "Levels",
    "MarketEvent",
    "OrderResponse",
    "OrderUpdate",
    "Reconciled",
    "SinkFailed",
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


class Levels(Sequence[Level]):
    """Book levels as exact fixed-point integers, turned into :class:`Level`
    Decimals only when read (then kept).

    Behaves like ``tuple[Level, ...]`` (indexing, iteration, ``len``, equality
    with a tuple of Levels). ``fixed()`` gives the integers themselves (price
    scaled by ``10**price_precision``, qty by ``10**qty_precision``) and
    ``floats()`` float pairs, both without making a Decimal. Building Decimals
    for every level of every message would cost more than the rest of the
    book update path together."""

    __slots__ = ("_fixed", "_levels", "price_precision", "qty_precision")

    def __init__(
        self, fixed: Sequence[tuple[int, int]], price_precision: int, qty_precision: int
    ) -> None:
        self._fixed = fixed
        self.price_precision = price_precision
        self.qty_precision = qty_precision
        self._levels: tuple[Level, ...] | None = None

    def _materialize(self) -> tuple[Level, ...]:
        levels = self._levels
        if levels is None:
            pp = -self.price_precision
            qp = -self.qty_precision
            levels = self._levels = tuple(
                Level(Decimal(p).scaleb(pp), Decimal(q).scaleb(qp)) for p, q in self._fixed
            )
        return levels

    def fixed(self) -> list[tuple[int, int]]:
        return list(self._fixed)

    def floats(self) -> list[tuple[float, float]]:
        ps = 10.0**self.price_precision
        qs = 10.0**self.qty_precision
        return [(p / ps, q / qs) for p, q in self._fixed]

    @overload
    def __getitem__(self, index: int) -> Level: ...

    @overload
    def __getitem__(self, index: slice) -> tuple[Level, ...]: ...

    def __getitem__(self, index: int | slice) -> Level | tuple[Level, ...]:
        return self._materialize()[index]

    def __len__(self) -> int:
        return len(self._fixed)

    def __bool__(self) -> bool:
        return bool(self._fixed)

    def __iter__(self) -> Iterator[Level]:
        return iter(self._materialize())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Levels):
            return self._materialize() == other._materialize()
        if isinstance(other, tuple):
            return self._materialize() == other
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._materialize())

    def __repr__(self) -> str:
        return f"Levels({list(self._materialize())!r})"


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
    bids: Sequence[Level]
    asks: Sequence[Level]
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
    bids: Sequence[Level]
    asks: Sequence[Level]
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


class SinkFailed(Event, frozen=True, kw_only=True):
    """Recording to ``sink`` (``"capture"``) failed and stopped; the feed itself runs on.

    Emitted once per failure (the sink is not reopened). ``venue`` is ``"*"``:
    the sink is shared by every connection. ``error`` names the errno and the
    operation, e.g. ``"ENOSPC: No space left on device (write)"``. ``dropped``
    counts the records lost at the failure (buffered, not written); records
    offered later are counted by the sink (``feed.capture.dropped``)."""

    sink: str
    path: str
    error: str
    dropped: int = 0


class OrderUpdate(Event, frozen=True, kw_only=True):
    """One of the account's orders changed (or was stated by a snapshot).

    ``status``: ``pending_new``, ``new``, ``partially_filled``, ``filled``,
    ``canceled``, ``expired`` (Kraken's ``order_status`` values, protocols.md
    §1.10; other venues are mapped onto them). ``exec_type`` says what
    happened (``new``, ``trade``, ``filled``, ``canceled``, ``expired``,
    ``amended``, ``restated``, ``status``; ``snapshot`` for a snapshot line and
    ``reconciled`` for a change learned after a gap). The fill fields
    (``exec_id`` ... ``fee``) are set only for a fill.
    ``cum_qty``/``avg_price`` are the order's totals after this change."""

    stream: str
    order_id: str
    symbol: str
    status: str
    exec_type: str
    source: str
    exchange_ts_ns: int | None = None
    cl_ord_id: str | None = None
    side: str | None = None
    order_type: str | None = None
    qty: Decimal | None = None
    limit_price: Decimal | None = None
    cum_qty: Decimal | None = None
    cum_cost: Decimal | None = None
    avg_price: Decimal | None = None
    exec_id: str | None = None
    trade_id: int | None = None
    last_qty: Decimal | None = None
    last_price: Decimal | None = None
    liquidity: str | None = None  # "t" taker | "m" maker
    fee: Decimal | None = None
    fee_asset: str | None = None
    reason: str | None = None

    @property
    def is_open(self) -> bool:
        return self.status in ("pending_new", "new", "partially_filled")


class BalanceUpdate(Event, frozen=True, kw_only=True):
    """The balance of ``asset`` is now ``balance`` (the venue's total).

    ``change`` is the ledger amount that produced it (a live update), or the
    difference from the previously known balance (a reconciled change); it is
    None on a snapshot line. ``ref_id`` links the ledger entries of one trade."""

    stream: str
    asset: str
    balance: Decimal
    source: str
    exchange_ts_ns: int | None = None
    change: Decimal | None = None
    fee: Decimal | None = None
    ledger_id: str | None = None
    ref_id: str | None = None
    kind: str | None = None  # ledger type: trade, deposit, ...
    available: Decimal | None = None  # venues that report it (KuCoin, Binance)
    hold: Decimal | None = None


class OrderResponse(Event, frozen=True, kw_only=True):
    """The answer to an order request (``add_order``, ``cancel_order``,
    ``cancel_all``, ``cancel_all_orders_after``), correlated by ``req_id``.

    ``outcome``: ``accepted``; ``rejected`` (by the venue, ``error`` is its
    text); ``refused`` (by gapless's order gate before sending: disconnected,
    or the system status forbids it; nothing was sent); ``unknown`` (sent, but
    the connection ended or the deadline passed before an answer: the order
    may or may not exist; reconciliation will tell, and the request is never
    re-sent)."""

    conn: str
    req_id: int
    method: str
    outcome: str
    order_id: str | None = None
    cl_ord_id: str | None = None
    error: str | None = None
    count: int | None = None  # cancel_all
    exchange_ts_ns: int | None = None

    @property
    def ok(self) -> bool:
        return self.outcome == "accepted"


class DeadMansSwitch(Event, frozen=True, kw_only=True):
    """The dead man's switch (Kraken ``cancel_all_orders_after``, protocols.md §1.11).

    ``state``: ``armed`` (the venue confirmed; ``trigger_ts_ns`` is when it
    cancels every order unless refreshed), ``disarmed`` (timeout 0 confirmed:
    clean shutdown or a known maintenance window), ``refresh_failed`` (the
    venue refused or did not answer in time; ``error`` says why: your open
    orders are protected only until the last trigger time)."""

    conn: str
    state: str
    timeout_s: int
    trigger_ts_ns: int | None = None
    error: str | None = None


class Reconciled(Event, frozen=True, kw_only=True):
    """A reconciliation finished: after a (re)connect or a private sequence gap,
    the snapshot (and REST for orders that closed meanwhile) was compared with
    what the user had seen, and every difference was delivered as an
    ``OrderUpdate``/``BalanceUpdate`` with ``source="reconciled"``.
    ``complete`` is False when REST could not confirm every order (the
    ``detail`` says which); the orders are queried again later."""

    conn: str
    reason: str
    orders_changed: int
    balances_changed: int
    open_orders: int
    complete: bool = True
    detail: str = ""


def event_to_dict(ev: Event) -> dict[str, Any]:
    """A JSON-ready dict of an event (Decimals as strings, live book omitted)."""
    out: dict[str, Any] = {"type": type(ev).__name__}
    for name in ev.__struct_fields__:
        if name == "book":
            continue
        value = getattr(ev, name)
        if isinstance(value, Decimal):
            value = format(value, "f")  # fixed point: 0.00000000, never 0E-8
        elif isinstance(value, Levels) or (
            isinstance(value, tuple) and value and isinstance(value[0], Level)
        ):
            value = [[format(lv.price, "f"), format(lv.qty, "f")] for lv in value]
        elif isinstance(value, enum.Enum):
            value = value.value
        out[name] = value
    return out
