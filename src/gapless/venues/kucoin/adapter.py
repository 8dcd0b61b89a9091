"""KuCoin Spot public market data: bullet, welcome, keepalive, subscriptions,
level2 calibration and gap bookkeeping (pure, protocols.md §2).

One :class:`KucoinAdapter` serves one logical connection and survives across
reconnects. Per-connection state (books, pending requests, keepalive) is
rebuilt on every connect; per-stream history (last delivered exchange time
and sequence, open gap, match order) persists, so the
:class:`~gapless.events.Gap` emitted after a resync covers exactly the
interval in which data may have been missed. No I/O, no clock: time comes in
as :class:`~gapless.venues.base.Now`.

Decisions, with their sources:

- **Token per dial** (§2.1): :meth:`prepare_dial` asks for a fresh
  ``POST /api/v1/bullet-public`` (weight 10) before *every* dial; a token is
  never reused and a refused bullet is never cached. The token lives only as a
  :class:`~gapless.secrets.Secret`; :attr:`url` (which contains it) is built on
  demand for the transport and nothing else holds it as text.
  :meth:`redactions` lists the raw token strings (and their URL-encoded form)
  so the runtime can scrub captures and logs. Every reason and excerpt this
  adapter produces passes through the same scrubber.
- **Instance servers** (§2.1 "treat the endpoint as dynamic"): among the
  bullet's ``instanceServers`` the adapter prefers endpoints that did not fail
  within ``endpoint_penalty_s``, then the lowest smoothed connect latency (time
  from :meth:`on_dial_rest` to :meth:`on_connected`, exponentially smoothed),
  then the bullet's order. A failed dial (:meth:`on_dial_failed`), a missing
  welcome, or a close before the welcome penalise the endpoint, so the next
  dial rotates to the next one; among penalised endpoints the least recently
  failed is tried first.
- **Welcome** (§2.3, §2.8): :meth:`on_connected` sends nothing. The welcome
  whose ``id`` equals our fresh ``connectId`` triggers the subscriptions; no
  welcome within ``welcome_timeout_s`` (judged with an empty backlog) is a
  reconnect (with a new bullet) and a ``WatchdogFired(kind="welcome")``; a
  welcome with another id is a reconnect too.
- **Keepalive** (§2.3): JSON ``ping`` every ``pingInterval`` of the bullet
  (``ping_interval_s`` overrides), one outstanding at a time; no ``pong``
  within ``pingTimeout`` is a reconnect and ``WatchdogFired(kind="pong")``.
  The pong round trip is exposed as :attr:`pong_rtt_s` (last) and
  :attr:`pong_rtt_avg_s` (smoothed). The runtime's dead-peer timer must allow
  ``pingInterval + pingTimeout`` on quiet connections.
- **Subscriptions** (§2.3, §2.4): one message per channel lists up to 100
  symbols (``response: true``), acks are matched by their (string) id. Error
  frames: 404 on a multi-symbol request is bisected (the venue refuses the
  whole request, so the unknown symbol is found by halving) and is a permanent
  :class:`~gapless.events.SubscriptionRejected` for a single symbol; 509 and
  other codes are retried with capped exponential backoff; 401 "token is
  expired" is a reconnect (new bullet). More than ``max_topics_per_connection``
  streams on one adapter is a :class:`~gapless.errors.ConfigError` at
  :meth:`add`. Client messages are kept under ``uplink_max_per_10s`` (venue
  limit 100 per 10 s): excess requests wait in a queue, pings never wait.
- **level2** (§2.5) via :class:`~gapless.venues.kucoin.sync.L2Sync`: updates
  are buffered from the subscription on; the REST snapshot
  (``GET /api/v1/market/orderbook/level2_<depth>``, weight 2, key
  ``l2:<symbol>``) is requested at the ack; calibration, the per-entry skip and
  the apply rule are the machine's. A calibration is delivered as Binance's is:
  a :class:`~gapless.events.BookSnapshot` at the REST snapshot's ``sequence``
  (its levels as loaded), then one :class:`~gapless.events.BookUpdate` per
  buffered message applied on top of it (what was applied, ``seq`` =
  ``sequenceEnd``, its ``time``), so snapshot plus updates rebuild the book and
  every message is one update; messages inside the snapshot give nothing. (A
  replay that starts with sequences already delivered before the resync, which
  an in-order venue never sends, is folded into one snapshot at the final
  sequence instead: nothing is delivered twice.) A sequence gap throws the
  book away and resyncs **that symbol only** (the WebSocket stream keeps
  flowing, so no resubscription is needed); its :class:`Gap` has ``first_seq``
  = last delivered sequence + 1 and ``last_seq`` = the sequence of the
  :class:`~gapless.events.BookSnapshot` that ends it; a snapshot at or before
  the last delivered sequence ends it with nothing missed (no Gap, counted as
  ``healed``). ``Refetch``/``Pending`` (stale or early snapshots)
  are followed; snapshot requests per symbol are spaced by
  ``resync_min_interval_s``; more than ``max_resyncs_per_minute`` resyncs of
  one symbol escalate to a reconnect.
- **Verified window**: the public snapshot holds only the best
  ``snapshot_depth`` levels while the stream carries changes at every depth,
  so a level deeper than the snapshot that never changes afterwards is
  unknown, and would silently be missing once the market moves to it. The
  book therefore keeps exactly the price range the snapshot vouches for (bids
  at or above its lowest bid, asks at or below its highest ask; a side with
  fewer than ``snapshot_depth`` levels was complete and is unbounded): every
  level in that range is exact, and levels outside it are dropped (also from
  :class:`~gapless.events.BookUpdate` events, so replaying updates over the
  snapshot gives the same book). When a side of the window thins below
  ``book_refresh_fraction`` of the depth, a *shadow* calibration runs beside
  the live book on the same messages; once it reaches the live book's
  sequence it replaces it and a new ``BookSnapshot`` (no gap) is emitted. The
  replaced :class:`~gapless.book.Book` is marked invalid: read the book from
  the latest event or :meth:`book`.
- **match** (§2.6) → :class:`~gapless.events.Trade` (Decimals from the
  strings, ``time`` in ns, side = taker side, ``trade_id`` = numeric
  ``tradeId``, else the match ``sequence``). The match ``sequence`` is
  increasing but not contiguous (it shares the book's sequence space), so
  :class:`~gapless.venues.kucoin.sync.MatchCheck` only drops repeats and
  regressions; lost matches are known from outages, declared **by time**: from
  the last delivered trade's exchange time to the local time of the
  re-subscription ack (KuCoin acks carry no venue time) plus
  ``time_gap_margin_s`` (clock-skew allowance). With
  ``trade_ids_contiguous=True`` a ``tradeId`` jump is a ``SEQUENCE_GAP`` with
  the missing ids, and time gaps also name ``first_seq``.
- **Fate sharing**: a level2 sequence gap proves that the venue withheld the
  symbol's data on this connection, which trades and tickers cannot see
  themselves (tickers carry no continuity, match sequences are not
  contiguous); their streams get a ``SEQUENCE_GAP`` by time, from their last
  delivered event (or the book's, if earlier) to the exchange time of the
  l2update that revealed the gap. A ``tradeId`` jump does the same for the
  ticker. This may over-declare (a venue that drops only one l2update), never
  under-declare.
- **ticker** (§2.6) → :class:`~gapless.events.BookTicker` (``bestBid`` /
  ``bestBidSize`` / ``bestAsk`` / ``bestAskSize``, ``update_id`` =
  ``sequence``): :class:`~gapless.events.Ticker` needs 24 h fields
  (volume, vwap, high, low, change) that ``/market/ticker`` does not carry.
  Gaps are by time, as for trades.
- Overflow (frames dropped before processing) resyncs every book and declares
  time gaps on trades and tickers; unacknowledged subscriptions are sent
  again (KuCoin accepts a repeated subscribe). A frame that cannot be decoded
  is a :class:`~gapless.events.BadFrame`; the streams it may have belonged to
  (from its ``topic`` when readable, else all) are resynced. Deadlines (welcome,
  pong, ack, staleness) are judged only when ``now.backlog == 0``.
- **Lifetime (§2.1)**: a connection ``lifetime_s - lifetime_margin_s`` old sets
  :attr:`KucoinAdapter.planned_reconnect`; with ``make_before_break`` (the
  default) the runtime dials :meth:`KucoinAdapter.successor` (its own bullet)
  beside it and switches over per stream without a gap
  (:mod:`gapless.runtime.handover`). ``token is expired`` and a close the client
  did not see coming are ordinary reconnects with a new bullet; their gaps are
  declared like any disconnect.
- **Passive mode (replay)**: ``KucoinAdapter(passive=True)`` is what
  :mod:`gapless.replay` feeds a capture through. It sends nothing (its own
  request ids start far above the captured ones, so they never collide), needs
  no bullet, accepts the welcome whatever its ``id`` and subscribes nothing
  itself: subscriptions come from the captured ``ws_out`` frames
  (:meth:`KucoinAdapter.observe_sent`), REST answers through
  :meth:`KucoinAdapter.observe_rest`. A capture records the snapshot URL without
  its query, so the symbol is taken from the URL when present; else, among the
  books waiting for a snapshot, the one whose call went out first (one REST
  worker per connection answers in call order), unless sequences clearly say
  otherwise (see :func:`~gapless.venues.seqsync.pick_snapshot_owner`; captures
  now record the call's params, which settles it). Timers are not run in
  replay; the window refresh they start live is started at the message that thins the window
  (:meth:`KucoinAdapter._passive_refresh`), stale re-subscriptions are
  recognised in the captured frames.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import re
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, quote

import msgspec

from gapless.book import Book
from gapless.errors import ConfigError, DecodeError, LocalProtocolError
from gapless.events import (
    BadFrame,
    BookSnapshot,
    BookTicker,
    BookUpdate,
    Gap,
    GapCause,
    Level,
    Levels,
    Subscribed,
    SubscriptionRejected,
    Trade,
    WatchdogFired,
)
from gapless.secrets import Secret
from gapless.venues.base import (
    CountedState,
    Now,
    Phase,
    RestCall,
    RestResult,
    Step,
    StreamSpec,
)
from gapless.venues.kucoin import protocol as p
from gapless.venues.kucoin.sync import (
    Applied,
    GapDetected,
    L2Sync,
    MatchCheck,
    NeedSnapshot,
    Pending,
    Refetch,
    SeqDuplicate,
    Synced,
    SyncResult,
    SyncState,
)
from gapless.venues.limits import DEFAULT_MAX_JSON_DEPTH
from gapless.venues.numbers import fixed_plain
from gapless.venues.seqsync import DEFAULT_MAX_STALE_RUN, pick_snapshot_owner

__all__ = ["KucoinAdapter", "KucoinOptions", "RestBudgetSpec", "StreamCounters"]

VENUE = p.VENUE
_REDACTED = "<redacted>"
_MIN_FRAGMENT = 12  # token fragments at least this long are scrubbed
_WINDOW_S = 10.0  # §2.4 uplink window
_I64 = 2**63 - 1  # §2.5 sequences and times are 64-bit
_TOPIC_RE = re.compile(r'"topic"\s*:\s*"(/[A-Za-z0-9/_-]{1,100}):([A-Za-z0-9,_-]{1,4000})"')
_CHANNEL_OF_PREFIX = {p.TOPIC_LEVEL2: "book", p.TOPIC_MATCH: "trade", p.TOPIC_TICKER: "ticker"}
_PASSIVE_L2_PATH = re.compile(r"/orderbook/level2_(\d{1,4})$")
_PASSIVE_FIRST_ID = 1 << 52  # passive mode's own request ids: far above any captured one

Window = tuple[Decimal | None, Decimal | None]
"""(lowest verified bid, highest verified ask); None: that side is unbounded."""
_Fixed = list[tuple[int, int]]
#: A calibration's snapshot as loaded: (bids, asks, price precision, qty precision).
_Base = tuple[_Fixed, _Fixed, int, int]


@dataclass(frozen=True, slots=True)
class RestBudgetSpec:
    """Weight bucket for the runtime's :class:`~gapless.runtime.rest.RestBudget`.

    KuCoin's Public pool allows 2000 weight per 30 s window (§2.4). A token
    bucket lets through at most ``capacity + per_second * window`` in any
    window: the default 500 + 40 x 30 = 1700 keeps a 15 % margin for the rest
    of the process (and other clients on the same IP). A full initial sync of
    300 books (600 weight) plus a bullet (10) takes about 2.8 s."""

    capacity: float = 500.0
    per_second: float = 40.0

    def max_in_window(self, window_s: float = 30.0) -> float:
        return self.capacity + self.per_second * window_s


@dataclass(frozen=True, slots=True)
class KucoinOptions:
    """Phase-named timeouts and policies (seconds). See the module docstring."""

    rest_url: str = p.REST_URL
    welcome_timeout_s: float = p.WELCOME_TIMEOUT_S
    subscribe_ack_timeout_s: float = 10.0
    snapshot_depth: int = 100
    max_topics_per_connection: int = p.MAX_TOPICS_PER_CONNECTION
    resync_min_interval_s: float = 1.0
    max_resyncs_per_minute: int = 6
    book_stale_after_s: float | None = 120.0
    trade_stale_after_s: float | None = None
    book_refresh_fraction: float | None = 0.5
    book_refresh_min_interval_s: float = 5.0
    ping_interval_s: float | None = None  # None: the bullet's pingInterval
    pong_timeout_s: float | None = None  # None: the bullet's pingTimeout
    reject_retry_base_s: float = 2.0
    reject_retry_cap_s: float = 60.0
    rest_retry_base_s: float = 1.0
    rest_retry_cap_s: float = 30.0
    rest_budget: RestBudgetSpec = field(default_factory=RestBudgetSpec)
    endpoint_penalty_s: float = 60.0
    latency_smoothing: float = 0.3
    trade_ids_contiguous: bool = False
    time_gap_margin_s: float = 0.25
    uplink_max_per_10s: int = 90
    max_buffer: int = 10_000
    #: live l2updates in a row wholly at or below the book's sequence before the
    #: book is declared wrong (a corrupt id ran it ahead): a Gap and a resync
    max_stale_updates: int = DEFAULT_MAX_STALE_RUN
    #: hostile input: a frame nested deeper than this is a BadFrame, refused before
    #: decoding (gapless.venues.limits); None turns the check off
    max_json_depth: int | None = DEFAULT_MAX_JSON_DEPTH
    lifetime_s: float = p.CONNECTION_LIFETIME_S
    lifetime_margin_s: float = 60.0
    make_before_break: bool = True  # the runtime replaces planned closes itself

    def __post_init__(self) -> None:
        if not self.rest_url.startswith(("https://", "http://")):
            raise ConfigError("KuCoin rest_url must be an http(s) URL")
        if self.snapshot_depth not in (20, 100):
            raise ConfigError("snapshot_depth must be 20 or 100 (level2_20 / level2_100)")
        if not 1 <= self.max_topics_per_connection <= 400:
            raise ConfigError("max_topics_per_connection must be within 1..400 (§2.4)")
        if not 1 <= self.uplink_max_per_10s <= p.MAX_UPLINK_MSGS_PER_10S:
            raise ConfigError("uplink_max_per_10s must be within 1..100 (§2.4)")
        if self.max_resyncs_per_minute < 1:
            raise ConfigError("max_resyncs_per_minute must be at least 1")
        if type(self.max_stale_updates) is not int or self.max_stale_updates < 1:
            raise ConfigError("max_stale_updates must be a positive int")
        if self.book_refresh_fraction is not None and not 0 < self.book_refresh_fraction <= 1:
            raise ConfigError("book_refresh_fraction must be within (0, 1]")
        if not 0 < self.latency_smoothing <= 1:
            raise ConfigError("latency_smoothing must be within (0, 1]")
        if self.lifetime_margin_s < 0 or self.lifetime_s <= self.lifetime_margin_s:
            raise ConfigError("lifetime_s must exceed lifetime_margin_s >= 0")


class _St(enum.Enum):
    __hash__ = object.__hash__  # identity: members are singletons (cheap counts)

    IDLE = "idle"  # not connected, or connected and waiting for the welcome
    PENDING = "pending"  # subscribe sent (or queued), no ack yet
    SYNCING = "syncing"  # book acked, not calibrated yet
    LIVE = "live"
    RETRY = "retry"  # refused (retryable): waiting for retry_at
    REJECTED = "rejected"  # permanent


@dataclass(slots=True)
class StreamCounters:
    delivered: int = 0
    gaps: int = 0
    resyncs: int = 0
    duplicates_dropped: int = 0
    snapshots_requested: int = 0
    snapshots_used: int = 0
    stale_snapshots: int = 0
    snapshot_errors: int = 0
    rate_limited: int = 0
    refreshes: int = 0
    healed: int = 0  # resync that turned out to have missed nothing: no gap


@dataclass(slots=True)
class _OpenGap:
    cause: GapCause
    start_ts_ns: int | None
    first_seq: int | None
    detail: str


class _TapSync(L2Sync):
    """:class:`L2Sync` that, while ``tap`` is a list, records every message a
    calibration applies (its :class:`Applied` and ``time``), and the snapshot as
    loaded (``base``) just before the first of them is applied."""

    def __init__(self, symbol: str, limits: tuple[int, int]) -> None:
        super().__init__(symbol, max_buffer=limits[0], max_stale_run=limits[1])
        self.tap: list[tuple[Applied, int]] | None = None
        self.base: _Base | None = None

    def _apply(self, msg: p.L2Update, first: int, last: int) -> Applied:
        tap = self.tap
        if tap is None:
            return super()._apply(msg, first, last)
        if not tap:
            book = self.book
            n = len(book)
            self.base = (
                book.bids_fixed(n),
                book.asks_fixed(n),
                book.price_precision,
                book.qty_precision,
            )
        r = super()._apply(msg, first, last)
        tap.append((r, msg.time_ms))
        return r


class _L2:
    """One calibration of a book: the machine plus the window of its snapshot."""

    __slots__ = ("fixed_window", "held", "last_msg_ms", "sync", "window")

    def __init__(self, symbol: str, limits: tuple[int, int]) -> None:
        """``limits``: the sync's ``(max_buffer, max_stale_run)``."""
        self.sync = _TapSync(symbol, limits)
        self.window: Window = (None, None)
        # the window scaled at a price precision: (window, precision, floor, ceiling)
        self.fixed_window: tuple[Window, int, int | None, int | None] | None = None
        self.held: tuple[Window, int | None] | None = None  # snapshot held by Pending
        self.last_msg_ms: int | None = None  # newest update fed while calibrating

    def bounds(self, precision: int) -> tuple[int | None, int | None]:
        """The window's floor and ceiling scaled at ``precision`` (kept until the
        window or the precision changes: the hot path asks on every message)."""
        fw = self.fixed_window
        if fw is None or fw[0] is not self.window or fw[1] != precision:
            lo, hi = self.window
            fw = self.fixed_window = (
                self.window,
                precision,
                None if lo is None else int(lo.scaleb(precision)),
                None if hi is None else int(hi.scaleb(precision)),
            )
        return fw[2], fw[3]

    def reset(self) -> None:
        self.sync.reset()
        self.window = (None, None)
        self.held = None
        self.last_msg_ms = None

    @property
    def book(self) -> Book:
        return self.sync.book

    @property
    def quiet_wait(self) -> bool:
        """Snapshot held, no message yet: the book waits for the venue, not for us."""
        s = self.sync
        return s.state is not SyncState.SYNCED and s.pending_snapshot is not None and not s.buffered


@dataclass(slots=True)
class _Req:
    kind: str  # "subscribe" | "unsubscribe"
    streams: list[_Stream]
    sent_mono: float | None = None  # None: waiting in the uplink queue


class _Stream(CountedState[_St]):
    """One stream's state; ``state`` is counted (:class:`CountedState`), so
    ``phase`` is O(1) per frame once every book is live."""

    __slots__ = (
        "channel",
        "confirmed_ts_ns",
        "counters",
        "expect_jump",
        "fetch_due",
        "fetch_not_before",
        "fetching",
        "gap",
        "key",
        "l2",
        "last_data_mono",
        "last_fetch_mono",
        "last_refresh_mono",
        "last_seq",
        "last_tick",
        "last_ts_ns",
        "match",
        "prefix",
        "rest_delay",
        "resync_times",
        "retry_at",
        "retry_delay",
        "shadow",
        "spec",
        "symbol",
    )

    def __init__(
        self, spec: StreamSpec, prefix: str, limits: tuple[int, int], counts: dict[_St, int]
    ) -> None:
        super().__init__(counts, _St.IDLE)
        self.spec = spec
        self.key = spec.key
        self.channel = spec.channel
        self.symbol = spec.symbol
        self.prefix = prefix
        self.gap: _OpenGap | None = None
        self.last_ts_ns: int | None = None  # exchange time of the last delivered event
        self.last_seq: int | None = None  # book sequence / numeric trade id delivered last
        self.confirmed_ts_ns: int | None = None  # local time of the last ack (trade/ticker)
        self.counters = StreamCounters()
        self.retry_at: float | None = None
        self.retry_delay = 0.0
        self.last_data_mono = 0.0
        self.resync_times: deque[float] = deque(maxlen=64)
        self.l2 = _L2(spec.symbol, limits) if spec.channel == "book" else None
        self.shadow: _L2 | None = None
        self.fetching = False
        self.fetch_due: float | None = None
        self.fetch_not_before = 0.0
        self.last_fetch_mono: float | None = None
        self.last_refresh_mono: float | None = None
        self.rest_delay = 0.0
        self.match = MatchCheck()
        self.expect_jump = True
        self.last_tick: tuple[int, int] | None = None


class KucoinAdapter:
    """Pure protocol state for one KuCoin Spot public connection."""

    venue = VENUE
    #: Read live level2 updates straight into the book (:meth:`_fast_l2`); the
    #: general decoder gives the same events (tests compare both ways).
    fast_path = True

    def __init__(
        self,
        specs: list[StreamSpec] | None = None,
        options: KucoinOptions | None = None,
        *,
        passive: bool = False,
    ) -> None:
        self.options = options or KucoinOptions()
        self._sync_limits = (self.options.max_buffer, self.options.max_stale_updates)
        self._max_json_depth = self.options.max_json_depth
        self._streams: dict[str, _Stream] = {}
        self._books: dict[str, _Stream] = {}
        self._by_channel: dict[tuple[str, str], _Stream] = {}
        self._state_counts: dict[_St, int] = dict.fromkeys(_St, 0)
        for spec in specs or []:
            self.add(spec)
        # dial
        self._token: Secret | None = None
        self._endpoint: str | None = None
        self._connect_id: str | None = None
        self._dial_mono: float | None = None
        self._dials = 0
        self._secret_forms: deque[Secret] = deque(maxlen=64)  # tokens as sent, for redaction
        self.endpoint_latency_s: dict[str, float] = {}
        self._endpoint_failed_at: dict[str, float] = {}
        self._ping_interval_s = 18.0
        self._pong_timeout_s = 10.0
        # connection
        self.conn = ""
        self.connected = False
        self.welcomed = False
        self._connected_mono = 0.0
        self.planned_reconnect: str | None = None  # set: replace this connection (§2.1)
        self.planned_reconnects = 0
        self._next_id = 1
        self._pending: dict[str, _Req] = {}
        self._deferred: deque[tuple[str, _Req | None]] = deque()
        self._uplink: deque[float] = deque()
        self._last_ping_mono = 0.0
        self._ping_outstanding: tuple[str, float] | None = None
        self._rest_blocked_until = 0.0
        self._shut = False
        # observability
        self.pong_rtt_s: float | None = None
        self.pong_rtt_avg_s: float | None = None
        self.last_dial_failure: str | None = None
        self.frames = 0
        self.fast_frames = 0  # live level2 updates that took the hot path
        self.bad_frames = 0
        self.error_frames = 0
        self.early_frames = 0
        self.bullets = 0
        self.dial_failures = 0
        self.welcome_timeouts = 0
        self.tokens_expired = 0
        self.pings = 0
        self.pongs = 0
        self.deferred_sends = 0
        self.not_found_splits = 0
        # replay (see the module docstring): follow captured requests, send nothing
        self.passive = passive
        self._parked: dict[str, _Stream] = {}  # unsubscribed by the last observed request
        self._passive_asks = 0
        self._passive_asked: dict[str, int] = {}  # symbol -> order of its last snapshot call
        if passive:
            self._next_id = _PASSIVE_FIRST_ID

    def __repr__(self) -> str:
        return (
            f"<KucoinAdapter conn={self.conn!r} endpoint={self._endpoint!r} "
            f"streams={len(self._streams)} connected={self.connected} welcomed={self.welcomed}>"
        )

    # ------------------------------------------------------------------ registry
    @property
    def url(self) -> str:
        """The connect URL **with the token**: for the transport only, never log it."""
        if self._token is None or self._endpoint is None or self._connect_id is None:
            raise LocalProtocolError("no bullet for this dial: prepare_dial/on_dial_rest first")
        return p.connect_url(self._endpoint, self._token, self._connect_id)

    @property
    def endpoint(self) -> str | None:
        """The instance server of the current dial (no token)."""
        return self._endpoint

    @property
    def min_dead_after_s(self) -> float:
        """Our pings go every pingInterval; only then can a pong prove liveness (§2.3)."""
        return self._ping_interval_s + self._pong_timeout_s

    def redactions(self) -> list[str]:
        """Raw token strings (and their URL-encoded form) for capture/log scrubbing."""
        return [s.reveal() for s in self._secret_forms]

    def add(self, spec: StreamSpec) -> None:
        if spec.venue != VENUE:
            raise ConfigError(f"not a KuCoin stream: {spec.key}")
        prefix, _ = p.topic_of(spec)
        if spec.depth is not None:
            raise ConfigError("KuCoin level2 has no depth parameter: use kucoin.book(symbol)")
        if spec.key in self._streams:
            return
        if len(self._streams) >= self.options.max_topics_per_connection:
            raise ConfigError(
                f"more than {self.options.max_topics_per_connection} topics on one KuCoin "
                "connection (§2.4): spread the streams over several connections"
            )
        st = _Stream(spec, prefix, self._sync_limits, self._state_counts)
        self._streams[spec.key] = st
        if spec.channel == "book":
            self._books[spec.symbol] = st
        else:
            self._by_channel[(spec.channel, spec.symbol)] = st

    def can_add(self, spec: StreamSpec) -> bool:
        """True when :meth:`add` would accept ``spec`` (or already has it)."""
        return spec.key in self._streams or len(self._streams) < (
            self.options.max_topics_per_connection
        )

    @property
    def topics(self) -> int:
        return len(self._streams)

    def has_book(self, symbol: str) -> bool:
        return symbol in self._books

    def streams(self) -> list[str]:
        return list(self._streams)

    def successor(self) -> KucoinAdapter:
        """A fresh adapter for the same topics and options (make-before-break: the
        runtime dials it while this one still delivers); it keeps the measured
        instance latencies, so it prefers the fastest server."""
        nxt = KucoinAdapter([st.spec for st in self._streams.values()], self.options)
        nxt.endpoint_latency_s = dict(self.endpoint_latency_s)
        return nxt

    def book(self, symbol: str) -> Book | None:
        st = self._books.get(symbol)
        return st.l2.book if st is not None and st.l2 is not None else None

    def book_seq(self, symbol: str) -> int | None:
        """Sequence of the live book (None while not calibrated)."""
        st = self._books.get(symbol)
        return st.l2.sync.seq if st is not None and st.l2 is not None else None

    def book_window(self, symbol: str) -> Window:
        """(lowest bid, highest ask) the book vouches for; None = unbounded side."""
        st = self._books.get(symbol)
        return st.l2.window if st is not None and st.l2 is not None else (None, None)

    def counters(self) -> dict[str, StreamCounters]:
        return {k: s.counters for k, s in self._streams.items()}

    def stream_state(self, key: str) -> str:
        return self._streams[key].state.value

    @property
    def phase(self) -> Phase:
        if not self.connected or not self.welcomed or self._deferred:
            return Phase.SUBSCRIBING
        counts = self._state_counts
        if counts[_St.PENDING] or counts[_St.IDLE]:
            return Phase.SUBSCRIBING
        if counts[_St.SYNCING]:
            for st in self._streams.values():
                if st.state is _St.SYNCING and not (st.l2 is not None and st.l2.quiet_wait):
                    return Phase.SYNCING
        return Phase.LIVE

    # ------------------------------------------------------------------ dial
    def prepare_dial(self, now: Now) -> RestCall | None:
        """§2.1: a fresh bullet before every dial (never reuse a token)."""
        self._token = None
        self._connect_id = None
        self.bullets += 1
        return RestCall(
            key="bullet",
            method="POST",
            url=f"{self.options.rest_url}{p.BULLET_PUBLIC_PATH}",
            weight=10,
        )

    def on_dial_rest(self, result: RestResult, now: Now) -> str | None:
        self._token = None
        if result.error is not None or result.status is None:
            return self.redact(f"bullet request failed: {result.error or 'no answer'}")
        if p.is_rate_limited(result.status, result.body):
            return f"bullet rate limited (HTTP {result.status})"
        try:
            bullet = p.decode_bullet(result.body)
        except DecodeError as exc:
            return self.redact(f"bad bullet response (HTTP {result.status}): {exc}")
        if isinstance(bullet, p.RestError):
            return self.redact(f"bullet refused: code {bullet.code} {bullet.msg}"[:300])
        if result.status != 200:
            return f"bullet refused: HTTP {result.status}"
        servers = [s for s in bullet.servers if s.protocol == "websocket"] or list(bullet.servers)
        server = self._choose(servers, now)
        raw = bullet.token.reveal()
        for form in dict.fromkeys((raw, quote(raw, safe="="))):
            self._secret_forms.append(Secret(form))
        self._dials += 1
        self._token = bullet.token
        self._endpoint = server.endpoint
        self._connect_id = f"{now.wall_ns}-{self._dials}"
        self._dial_mono = now.mono
        opts = self.options
        self._ping_interval_s = opts.ping_interval_s or server.ping_interval_s
        self._pong_timeout_s = opts.pong_timeout_s or server.ping_timeout_s
        return None

    def _choose(self, servers: list[p.InstanceServer], now: Now) -> p.InstanceServer:
        penalty = self.options.endpoint_penalty_s

        def rank(item: tuple[int, p.InstanceServer]) -> tuple[bool, float, float, int]:
            i, s = item
            failed = self._endpoint_failed_at.get(s.endpoint)
            recent = failed is not None and now.mono - failed < penalty
            latency = self.endpoint_latency_s.get(s.endpoint, math.inf)
            return (recent, failed if recent and failed is not None else 0.0, latency, i)

        return min(enumerate(servers), key=rank)[1]

    def on_dial_failed(self, reason: str, now: Now) -> None:
        """The runtime could not open the WebSocket to :attr:`url` (refused, timeout,
        HTTP error on upgrade): penalise the endpoint so the next dial rotates."""
        self.dial_failures += 1
        self.last_dial_failure = self.redact(reason)[:300]
        self._penalise(now)
        self._token = None

    def _penalise(self, now: Now) -> None:
        if self._endpoint is not None:
            self._endpoint_failed_at[self._endpoint] = now.mono

    def redact(self, text: str) -> str:
        """``text`` with every token this adapter received replaced by ``<redacted>``,
        also cut ones (a decoder error quotes the first 40 characters of a bad
        value): any run of at least 12 characters that starts like a token. For
        the runtime's error texts and REST records too (a transport error names
        the URL, which contains the token)."""
        for secret in self._secret_forms:
            form = secret.reveal()
            head = form[:_MIN_FRAGMENT]
            start = text.find(head)
            while start >= 0:
                end = start + len(head)
                while (
                    end < len(text) and end - start < len(form) and text[end] == form[end - start]
                ):
                    end += 1
                text = text[:start] + _REDACTED + text[end:]
                start = text.find(head, start + len(_REDACTED))
        return text

    # ------------------------------------------------------------------ passive (replay)
    def observe_sent(self, text: str, now: Now) -> Step:
        """Replay only (``passive=True``): a captured outgoing frame, registered as
        if this adapter had sent it. ``subscribe`` puts the topic's streams (added
        to the registry when new) in PENDING under the captured ``id``, as
        :meth:`_subscribe` does; ``unsubscribe`` is a user's unsubscribe, except
        that a stream subscribed again by the very next request is the adapter's
        own stale-stream re-subscription (its history is kept and a ``STALE`` gap
        opened, as live). Pings and anything else are ignored."""
        out = Step()
        try:
            msg = msgspec.json.decode(text)
        except (msgspec.DecodeError, RecursionError):
            return out
        if type(msg) is not dict:
            return out
        kind, topic, rid = msg.get("type"), msg.get("topic"), msg.get("id")
        if kind not in ("subscribe", "unsubscribe") or type(topic) is not str:
            return out
        prefix, _, names = topic.partition(":")
        channel = _CHANNEL_OF_PREFIX.get(prefix)
        parked, self._parked = self._parked, {}
        if channel is None:
            return out
        symbols = [s for s in names.split(",") if s]
        if kind == "unsubscribe":
            for symbol in symbols:
                gone = self._streams.get(StreamSpec(VENUE, channel, symbol).key)
                if gone is not None:
                    out.extend(self.control("unsubscribe", gone.spec, now))
                    self._parked[gone.key] = gone
            return out
        streams: list[_Stream] = []
        for symbol in symbols:
            spec = StreamSpec(VENUE, channel, symbol)
            st = self._streams.get(spec.key)
            if st is None:
                st = parked.get(spec.key)
                if st is not None:
                    self._passive_restore(st)
                else:
                    try:
                        self.add(spec)
                    except ConfigError:
                        continue
                    st = self._streams[spec.key]
            streams.append(st)
            st.state = _St.PENDING
            st.retry_at = None
            st.expect_jump = True
            if st.l2 is not None:
                st.l2.reset()
                st.shadow = None
        if streams and type(rid) in (str, int):
            self._pending[str(rid)] = _Req("subscribe", streams, sent_mono=now.mono)
        return out

    def _passive_restore(self, st: _Stream) -> None:
        """Undo the unsubscribe of a stream the client re-subscribed at once."""
        self._streams[st.key] = st
        if st.channel == "book":
            self._books[st.symbol] = st
        else:
            self._by_channel[(st.channel, st.symbol)] = st
        if st.state in (_St.SYNCING, _St.LIVE):
            self._open_gap(st, GapCause.STALE, "re-subscribed by the client (stale stream)")
            st.counters.resyncs += 1

    def observe_rest(
        self,
        method: str,
        url: str,
        status: int | None,
        body: bytes,
        now: Now,
        *,
        error: str | None = None,
    ) -> Step:
        """Replay only: a captured REST exchange, in the order it reached the
        adapter live. A level2 snapshot answer goes through :meth:`on_rest` for the
        book it belongs to; the bullet (no token is needed to replay) and anything
        else are ignored. The snapshot depth is read from the path
        (``level2_20``/``level2_100``)."""
        path, _, query = url.partition("?")
        m = _PASSIVE_L2_PATH.search(path)
        if method != "GET" or m is None:
            return Step()
        depth = int(m.group(1))
        if depth in (20, 100) and depth != self.options.snapshot_depth:
            self.options = dataclasses.replace(self.options, snapshot_depth=depth)
        named = parse_qs(query).get("symbol")
        symbol = named[0] if named else self._passive_rest_symbol(status, body)
        st = self._books.get(symbol) if symbol is not None else None
        if st is None or st.l2 is None:
            return Step()
        if st.state is _St.LIVE and st.shadow is None and st.l2.sync.state is SyncState.SYNCED:
            # asked for by the refresh the live timer started (see _passive_refresh)
            st.shadow = _L2(st.symbol, self._sync_limits)
        return self.on_rest(RestResult(f"l2:{st.symbol}", status, body, error=error), now)

    def _passive_note_ask(self, st: _Stream) -> None:
        """Passive: the order in which snapshot calls were emitted (live answers come
        back in that order: one REST worker per connection)."""
        self._passive_asks += 1
        self._passive_asked[st.symbol] = self._passive_asks

    def _passive_rest_symbol(self, status: int | None, body: bytes) -> str | None:
        """The book an unnamed snapshot answer was asked for, among the books that
        wait for one (calibrating, else refreshing, else any acknowledged book):
        see :func:`~gapless.venues.seqsync.pick_snapshot_owner`."""
        books = [
            s
            for s in self._books.values()
            if s.l2 is not None and s.state in (_St.SYNCING, _St.LIVE)
        ]
        pool = (
            [s for s in books if s.state is _St.SYNCING]
            or [s for s in books if s.shadow is not None]
            or books
        )
        if len(pool) <= 1:
            return pool[0].symbol if pool else None
        seq: int | None = None
        if status == 200:
            try:
                snap = p.decode_l2_snapshot(body)
            except DecodeError:
                snap = None
            if isinstance(snap, p.L2Snapshot):
                seq = snap.sequence
        candidates: list[tuple[str, bool, int | None]] = []
        for st in pool:
            l2 = st.shadow if st.state is _St.LIVE and st.shadow is not None else st.l2
            assert l2 is not None
            sync = l2.sync
            refs = (sync.first_seq, sync.seq, sync.pending_snapshot, st.last_seq)
            ref = next((v for v in refs if v is not None), None)
            candidates.append((st.symbol, st.fetching, ref))
        return pick_snapshot_owner(candidates, seq, self._passive_asked)

    def _passive_refresh(self, symbol: str, now: Now) -> None:
        """Replay: start the refresh calibration (shadow) that the live timer starts
        when the verified window thins (:meth:`_book_timer`), already at the
        message that thinned it, so it has buffered whatever came between the
        live call and its answer (a superset of the live buffer, which the
        calibration trims to the same result). The live minimum interval between
        refreshes is not applied: it only spaces calls (whose answers are in the
        capture), and a shadow no answer comes for just waits."""
        st = self._books.get(symbol)
        if st is None or st.state is not _St.LIVE or st.shadow is not None or not self._thin(st):
            return
        st.shadow = _L2(st.symbol, self._sync_limits)

    # ------------------------------------------------------------------ lifecycle
    def on_connected(self, conn: str, now: Now) -> Step:
        """Nothing is sent before the welcome (§2.3)."""
        self.conn = conn
        self.connected = True
        self.welcomed = False
        self._connected_mono = now.mono
        self.planned_reconnect = None
        if self._endpoint is not None and self._dial_mono is not None:
            sample = max(0.0, now.mono - self._dial_mono)
            old = self.endpoint_latency_s.get(self._endpoint)
            a = self.options.latency_smoothing
            self.endpoint_latency_s[self._endpoint] = (
                sample if old is None else old + a * (sample - old)
            )
        self._dial_mono = None
        self._reset_connection()
        for st in self._streams.values():
            if st.state is not _St.REJECTED:
                st.state = _St.IDLE
            st.retry_at = None
            st.last_data_mono = now.mono
        return Step()

    def _reset_connection(self) -> None:
        self._pending.clear()
        self._deferred.clear()
        self._uplink.clear()
        self._ping_outstanding = None
        for st in self._streams.values():
            if st.l2 is not None:
                st.l2.reset()
            st.shadow = None
            st.fetching = False
            st.fetch_due = None

    def on_disconnected(self, reason: str, now: Now) -> Step:
        out = Step()
        if self.connected and not self.welcomed:
            self._penalise(now)  # the endpoint never became usable: rotate
        self.connected = False
        self.welcomed = False
        self._token = None  # §2.1: a new bullet for the next dial
        self._reset_connection()
        why = self.redact(reason)[:300]
        for st in self._streams.values():
            if st.state is _St.REJECTED:
                continue
            self._open_gap(st, GapCause.DISCONNECT, why)
            st.state = _St.IDLE
            st.retry_at = None
        return out

    def shutdown(self, now: Now) -> Step:
        """Feed is closing: open gaps are reported with no end (idempotent)."""
        out = Step()
        if self._shut:
            return out
        self._shut = True
        for st in self._streams.values():
            if not self.connected or st.state not in (_St.LIVE, _St.REJECTED, _St.IDLE):
                self._open_gap(st, GapCause.SHUTDOWN, "feed closed before resync")
            self._close_gap(st, None, now, out)
        return out

    def on_overflow(self, dropped: int, now: Now) -> Step:
        """Frames were dropped before processing: resync books, time gaps for the rest."""
        out = Step()
        if not self.connected:
            return out
        if not self.welcomed:
            out.reconnect = f"{dropped} frames dropped before the welcome"
            return out
        detail = f"{dropped} frames dropped"
        self._ping_outstanding = None  # its pong may be among them
        resend: list[_Stream] = []
        for st in self._streams.values():
            if st.state is _St.PENDING:
                resend.append(st)
            elif st.channel == "book" and st.state in (_St.SYNCING, _St.LIVE):
                self._resync_book(st, GapCause.QUEUE_OVERFLOW, detail, now, out)
            elif st.state is _St.LIVE:
                self._time_gap(st, GapCause.QUEUE_OVERFLOW, detail, now, out)
        if resend:  # their acks may be among the dropped frames: ask again (idempotent)
            for rid in [r for r, req in self._pending.items() if req.kind == "subscribe"]:
                del self._pending[rid]
            self._subscribe(resend, now, out)
        return out

    def on_bad_transport_frame(self, reason: str, size: int, now: Now) -> Step:
        out = Step()
        self.bad_frames += 1
        out.events.append(
            BadFrame(
                venue=VENUE,
                local_ts_ns=now.wall_ns,
                conn=self.conn,
                reason=self.redact(reason)[:300],
                size=size,
                excerpt="",
            )
        )
        return out

    def control(self, op: str, spec: StreamSpec, now: Now) -> Step:
        """A user's subscribe/unsubscribe request from the outbox."""
        out = Step()
        if op == "subscribe":
            if spec.key in self._streams:
                return out
            try:
                self.add(spec)
            except ConfigError as exc:
                out.events.append(
                    SubscriptionRejected(
                        venue=VENUE,
                        local_ts_ns=now.wall_ns,
                        conn=self.conn,
                        stream=spec.key,
                        error=str(exc),
                        retry_in_s=None,
                    )
                )
                return out
            if self.connected and self.welcomed:
                self._subscribe([self._streams[spec.key]], now, out)
        elif op == "unsubscribe":
            gone = self._streams.pop(spec.key, None)
            if gone is None:
                return out
            if gone.channel == "book":
                self._books.pop(gone.symbol, None)
            else:
                self._by_channel.pop((gone.channel, gone.symbol), None)
            if (
                self.connected
                and self.welcomed
                and gone.state
                in (
                    _St.PENDING,
                    _St.SYNCING,
                    _St.LIVE,
                )
            ):
                self._unsubscribe(gone, now, out)
            gone.forget()
        else:
            raise ValueError(f"unknown control op {op!r}")
        return out

    # ------------------------------------------------------------------ sending
    def _send(
        self, out: Step, text: str, now: Now, req: _Req | None, *, urgent: bool = False
    ) -> None:
        """Send within the uplink budget (§2.4: 100 messages per 10 s); pings never wait."""
        if self.passive:
            return  # replay: what was sent is in the capture (observe_sent)
        win = self._uplink
        while win and now.mono - win[0] >= _WINDOW_S:
            win.popleft()
        if urgent or (not self._deferred and len(win) < self.options.uplink_max_per_10s):
            win.append(now.mono)
            out.sends.append(text)
            if req is not None:
                req.sent_mono = now.mono
        else:
            self.deferred_sends += 1
            self._deferred.append((text, req))

    def _flush_deferred(self, now: Now, out: Step) -> None:
        win = self._uplink
        while win and now.mono - win[0] >= _WINDOW_S:
            win.popleft()
        while self._deferred and len(win) < self.options.uplink_max_per_10s:
            text, req = self._deferred.popleft()
            win.append(now.mono)
            out.sends.append(text)
            if req is not None:
                req.sent_mono = now.mono

    def _ids(self, n: int) -> int:
        first = self._next_id
        self._next_id += n
        return first

    def _subscribe(self, streams: list[_Stream], now: Now, out: Step) -> None:
        """Batch by channel, at most 100 symbols per message (§2.3, §2.4)."""
        groups: dict[str, dict[str, _Stream]] = {}
        for st in streams:
            groups.setdefault(st.prefix, {})[st.symbol] = st
            st.state = _St.PENDING
            st.retry_at = None
            st.expect_jump = True
            if st.l2 is not None:
                st.l2.reset()
                st.shadow = None
        for prefix, by_symbol in groups.items():
            reqs = p.encode_subscribe(prefix, list(by_symbol), self._next_id)
            self._ids(len(reqs))
            for r in reqs:
                req = _Req("subscribe", [by_symbol[s] for s in r.symbols])
                self._pending[r.id] = req
                self._send(out, r.text, now, req)

    def _unsubscribe(self, st: _Stream, now: Now, out: Step) -> None:
        (r,) = p.encode_unsubscribe(st.prefix, [st.symbol], self._ids(1))
        req = _Req("unsubscribe", [st])
        self._pending[r.id] = req
        self._send(out, r.text, now, req)

    # ------------------------------------------------------------------ gaps
    def _open_gap(self, st: _Stream, cause: GapCause, detail: str) -> None:
        if st.gap is not None:
            return
        if st.last_ts_ns is None and st.confirmed_ts_ns is None and st.last_seq is None:
            return  # nothing was ever promised on this stream
        start = st.last_ts_ns if st.last_ts_ns is not None else st.confirmed_ts_ns
        first_seq = None
        if st.last_seq is not None and (
            st.channel == "book" or (st.channel == "trade" and self.options.trade_ids_contiguous)
        ):
            first_seq = st.last_seq + 1
        st.gap = _OpenGap(cause, start, first_seq, detail)

    def _close_gap(
        self,
        st: _Stream,
        end_ts_ns: int | None,
        now: Now,
        out: Step,
        last_seq: int | None = None,
    ) -> None:
        gap = st.gap
        if gap is None:
            return
        st.gap = None
        if end_ts_ns is not None and gap.start_ts_ns is not None:
            end_ts_ns = max(end_ts_ns, gap.start_ts_ns)
        self._emit_gap(
            st, gap.cause, gap.start_ts_ns, end_ts_ns, gap.first_seq, last_seq, gap.detail, now, out
        )

    def _emit_gap(
        self,
        st: _Stream,
        cause: GapCause,
        start_ts_ns: int | None,
        end_ts_ns: int | None,
        first_seq: int | None,
        last_seq: int | None,
        detail: str,
        now: Now,
        out: Step,
    ) -> None:
        st.counters.gaps += 1
        out.events.append(
            Gap(
                venue=VENUE,
                local_ts_ns=now.wall_ns,
                stream=st.key,
                symbol=st.symbol,
                cause=cause,
                start_ts_ns=start_ts_ns,
                end_ts_ns=end_ts_ns,
                first_seq=first_seq,
                last_seq=last_seq,
                detail=self.redact(detail)[:300],
            )
        )

    def _local_end(self, now: Now) -> int:
        """A time-only gap's end: local wall time plus the clock-skew allowance."""
        return now.wall_ns + int(self.options.time_gap_margin_s * 1e9)

    def _time_gap(self, st: _Stream, cause: GapCause, detail: str, now: Now, out: Step) -> None:
        """Trades/tickers of a live stream may have been lost just now (the stream
        itself keeps flowing): declare it at once, ending now."""
        if st.gap is not None:
            return
        self._open_gap(st, cause, detail)
        self._close_gap(st, self._local_end(now), now, out)
        st.expect_jump = True  # an id jump on the next trade is this gap, not a new one
        st.counters.resyncs += 1

    def _siblings_lost(
        self,
        st: _Stream,
        since_ns: int | None,
        until_ns: int,
        detail: str,
        now: Now,
        out: Step,
    ) -> None:
        """Fate sharing: ``st`` proved that the venue withheld this symbol's data on
        this connection between ``since_ns`` and ``until_ns`` (exchange times), so
        the symbol's trade and ticker streams may have lost data in the same
        interval. They cannot see it themselves (tickers carry no continuity,
        match sequences are not contiguous): declare it for them by time."""
        for sib in self._streams.values():
            if (
                sib is st
                or sib.symbol != st.symbol
                or sib.channel == "book"
                or sib.state is not _St.LIVE
                or sib.gap is not None
            ):
                continue
            starts = [t for t in (sib.last_ts_ns, since_ns) if t is not None]
            if not starts and sib.confirmed_ts_ns is None:
                continue  # nothing promised yet
            start = min(starts) if starts else sib.confirmed_ts_ns
            first_seq = None
            if sib.channel == "trade" and self.options.trade_ids_contiguous:
                first_seq = sib.last_seq + 1 if sib.last_seq is not None else None
            end = until_ns if start is None else max(until_ns, start)
            self._emit_gap(
                sib,
                GapCause.SEQUENCE_GAP,
                start,
                end,
                first_seq,
                None,
                f"{st.key} lost data: {detail}",
                now,
                out,
            )
            sib.expect_jump = True

    def _escalate(self, st: _Stream, now: Now, out: Step) -> bool:
        """Too many resyncs of one stream in a minute: reconnect instead."""
        times = st.resync_times
        while times and now.mono - times[0] > 60.0:
            times.popleft()
        times.append(now.mono)
        if len(times) > self.options.max_resyncs_per_minute:
            times.clear()
            out.reconnect = out.reconnect or (
                f"{st.key}: more than {self.options.max_resyncs_per_minute} resyncs in a minute"
            )
            return True
        return False

    # ------------------------------------------------------------------ book
    def _resync_book(
        self,
        st: _Stream,
        cause: GapCause,
        detail: str,
        now: Now,
        out: Step,
        *,
        restarted: bool = False,
        resubscribe: bool = False,
    ) -> None:
        """Throw the book away (design.md §1.2), open its gap, recalibrate."""
        assert st.l2 is not None
        self._open_gap(st, cause, detail)
        if not restarted:
            st.l2.reset()
        st.shadow = None
        st.counters.resyncs += 1
        if self._escalate(st, now, out):
            return
        if resubscribe:
            self._unsubscribe(st, now, out)
            self._subscribe([st], now, out)
            return
        if st.state is _St.LIVE:
            st.state = _St.SYNCING
        if st.state is _St.SYNCING:
            self._request_snapshot(st, now, out)

    def _request_snapshot(self, st: _Stream, now: Now, out: Step) -> None:
        """One REST snapshot in flight per symbol, spaced by ``resync_min_interval_s``."""
        if st.fetching:
            return
        due = max(now.mono, st.fetch_not_before, self._rest_blocked_until)
        if st.last_fetch_mono is not None:
            due = max(due, st.last_fetch_mono + self.options.resync_min_interval_s)
        if due > now.mono:
            st.fetch_due = due
            return
        st.fetch_due = None
        st.fetching = True
        st.last_fetch_mono = now.mono
        st.counters.snapshots_requested += 1
        path = p.l2_snapshot_path(st.symbol, self.options.snapshot_depth)
        out.rest.append(
            RestCall(
                key=f"l2:{st.symbol}", method="GET", url=f"{self.options.rest_url}{path}", weight=2
            )
        )
        if self.passive:
            self._passive_note_ask(st)

    def _retry_snapshot(self, st: _Stream, now: Now, out: Step, wait: float | None = None) -> None:
        opts = self.options
        if wait is None:
            st.rest_delay = min(
                opts.rest_retry_cap_s, max(opts.rest_retry_base_s, st.rest_delay * 2)
            )
            wait = st.rest_delay
        st.fetch_not_before = now.mono + wait
        self._request_snapshot(st, now, out)

    def on_rest(self, result: RestResult, now: Now) -> Step:
        out = Step()
        if not result.key.startswith("l2:"):
            return out
        st = self._books.get(result.key[3:])
        if st is None or st.l2 is None:
            return out
        st.fetching = False
        if not self.connected or st.state not in (_St.SYNCING, _St.LIVE):
            return out  # the next calibration asks again
        target = st.l2 if st.l2.sync.state is not SyncState.SYNCED else st.shadow
        if target is None:
            return out  # answered after the book went live by other means
        if result.error is not None or result.status is None:
            st.counters.snapshot_errors += 1
            self._retry_snapshot(st, now, out)
            return out
        if p.is_rate_limited(result.status, result.body):
            st.counters.rate_limited += 1
            if result.retry_after_s is None:
                # §2.4: 429000 without gw-ratelimit-* headers is server overload, not our
                # quota: retry with the usual capped backoff (the budget is paced anyway)
                self._retry_snapshot(st, now, out)
                return out
            # quota: wait for the window to reset (the runtime's budget blocks too)
            wait = result.retry_after_s
            self._rest_blocked_until = max(self._rest_blocked_until, now.mono + wait)
            self._retry_snapshot(st, now, out, wait)
            return out
        try:
            snap = p.decode_l2_snapshot(result.body) if result.status == 200 else None
        except DecodeError as exc:
            self._bad_rest(st, f"level2 snapshot: {exc}", len(result.body), now, out)
            return out
        if not isinstance(snap, p.L2Snapshot):
            st.counters.snapshot_errors += 1
            self._retry_snapshot(st, now, out)
            return out
        st.rest_delay = 0.0
        window = self._window_of(snap)
        sync = target.sync
        sync.tap = [] if target is st.l2 else None  # a shadow's replay is not delivered
        sync.base = None
        try:
            r = sync.on_l2_snapshot(snap)
        except DecodeError as exc:
            self._bad_rest(st, f"level2 snapshot: {exc}", len(result.body), now, out)
            return out
        finally:
            applied = sync.tap or []
            sync.tap = None
        if isinstance(r, Pending):
            target.held = (window, snap.time_ms)
        elif isinstance(r, Refetch):
            st.counters.stale_snapshots += 1
            self._request_snapshot(st, now, out)
        elif isinstance(r, Synced):
            target.window = window
            ts_ms = snap.time_ms
            if r.replayed and target.last_msg_ms is not None:
                ts_ms = max(ts_ms or 0, target.last_msg_ms)
            self._calibrated(st, target, r, snap.time_ms, ts_ms, applied, now, out)
        return out

    def _bad_rest(self, st: _Stream, reason: str, size: int, now: Now, out: Step) -> None:
        self.bad_frames += 1
        st.counters.snapshot_errors += 1
        out.events.append(
            BadFrame(
                venue=VENUE,
                local_ts_ns=now.wall_ns,
                conn=self.conn,
                reason=self.redact(reason)[:300],
                size=size,
                excerpt="",
            )
        )
        self._retry_snapshot(st, now, out)

    def _window_of(self, snap: p.L2Snapshot) -> Window:
        depth = self.options.snapshot_depth
        floor = min(Decimal(px) for px, _ in snap.bids) if len(snap.bids) >= depth else None
        ceiling = max(Decimal(px) for px, _ in snap.asks) if len(snap.asks) >= depth else None
        return floor, ceiling

    @staticmethod
    def _trim_all(l2: _L2) -> None:
        """Drop every level outside the verified window (after a calibration)."""
        book = l2.book
        f, c = l2.bounds(book.price_precision)
        n = len(book)
        bids: list[tuple[int, int]] = []
        asks: list[tuple[int, int]] = []
        if f is not None:
            bids = [(px, 0) for px, _ in book.bids_fixed(n) if px < f]
        if c is not None:
            asks = [(px, 0) for px, _ in book.asks_fixed(n) if px > c]
        if bids or asks:
            book.apply(bids, asks)

    @staticmethod
    def _split_applied(l2: _L2, r: Applied) -> tuple[_Fixed, _Fixed, _Fixed, _Fixed]:
        """``r``'s levels inside ``l2``'s window (bids, asks: what a BookUpdate shows)
        and the removals of the levels it set outside it (bids, asks)."""
        f, c = l2.bounds(r.price_precision)
        bids = list(r.bids)
        asks = list(r.asks)
        drop_b: _Fixed = []
        drop_a: _Fixed = []
        if f is not None:
            drop_b = [(px, 0) for px, q in bids if px < f and q]
            bids = [lv for lv in bids if lv[0] >= f]
        if c is not None:
            drop_a = [(px, 0) for px, q in asks if px > c and q]
            asks = [lv for lv in asks if lv[0] <= c]
        return bids, asks, drop_b, drop_a

    @classmethod
    def _trim_applied(cls, l2: _L2, r: Applied) -> tuple[_Fixed, _Fixed]:
        """The applied levels inside the window; those outside are removed again."""
        bids, asks, drop_b, drop_a = cls._split_applied(l2, r)
        if drop_b or drop_a:
            l2.book.apply(drop_b, drop_a)
        return bids, asks

    @staticmethod
    def _trimmed_base(l2: _L2, base: _Base) -> tuple[Levels, Levels]:
        """A snapshot as loaded, trimmed to ``l2``'s window as :meth:`_trim_all` trims
        the book."""
        bids, asks, pp, qp = base
        f, c = l2.bounds(pp)
        if f is not None:
            bids = [lv for lv in bids if lv[0] >= f]
        if c is not None:
            asks = [lv for lv in asks if lv[0] <= c]
        return Levels(bids, pp, qp), Levels(asks, pp, qp)

    def _calibrated(
        self,
        st: _Stream,
        l2: _L2,
        res: Synced,
        snap_ms: int | None,
        ts_ms: int | None,
        applied: list[tuple[Applied, int]],
        now: Now,
        out: Step,
    ) -> None:
        """``l2`` reached SYNCED: the live book goes live, or a shadow may take over.

        ``snap_ms`` is the snapshot's own time, ``ts_ms`` that of the book as it is
        now (the snapshot with the buffered messages replayed onto it); ``applied``
        are the replayed messages (tapped for the main book only). The main book is
        delivered as a BookSnapshot at the snapshot's sequence, then one BookUpdate
        per replayed message (as Binance does); a shadow that takes over is one
        BookSnapshot at the swap point (the live book delivered every update)."""
        base = l2.sync.base
        l2.sync.base = None
        self._trim_all(l2)
        l2.last_msg_ms = None
        l2.held = None
        st.counters.snapshots_used += 1
        ts_ns = ts_ms * 1_000_000 if ts_ms is not None else now.wall_ns
        if l2 is st.shadow:
            self._maybe_swap(st, ts_ns, now, out)
            return
        st.state = _St.LIVE
        st.fetch_due = None
        st.last_data_mono = now.mono
        levels: tuple[Levels, Levels] | None = None
        if (
            base is None
            or not applied
            or (st.last_seq is not None and applied[0][0].last_seq <= st.last_seq)
        ):
            # Nothing replayed; or the replay repeats sequences the user already has
            # (a venue re-sending after a resync): those are not delivered twice, so
            # the whole replay is folded into one snapshot at the final sequence.
            applied = []
            seq = l2.sync.seq
            assert seq is not None
        else:
            seq = res.snapshot_seq
            ts_ns = (snap_ms if snap_ms is not None else applied[0][1]) * 1_000_000
            levels = self._trimmed_base(l2, base)
        gap = st.gap
        if gap is not None and gap.first_seq is not None and seq < gap.first_seq:
            st.gap = None  # the new book starts where the old one ended: nothing missed
            st.counters.healed += 1
        else:
            self._close_gap(st, ts_ns, now, out, last_seq=seq)
        self._emit_snapshot(st, l2, seq, ts_ns, now, out, levels)
        for r, time_ms in applied:
            bids, asks, _, _ = self._split_applied(l2, r)
            pp, qp = r.price_precision, r.qty_precision
            self._deliver_l2(st, l2, r.last_seq, time_ms * 1_000_000, bids, asks, pp, qp, now, out)

    def _emit_snapshot(
        self,
        st: _Stream,
        l2: _L2,
        seq: int,
        ts_ns: int,
        now: Now,
        out: Step,
        levels: tuple[Levels, Levels] | None = None,
    ) -> None:
        """BookSnapshot at ``seq`` of ``levels`` (default: the book as it is)."""
        book = l2.book
        st.last_seq = max(seq, st.last_seq) if st.last_seq is not None else seq
        st.last_ts_ns = ts_ns if st.last_ts_ns is None else max(ts_ns, st.last_ts_ns)
        book.last_ts_ns = ts_ns
        st.counters.delivered += 1
        bids: Sequence[Level]
        asks: Sequence[Level]
        if levels is None:
            bids, asks = book.bids(), book.asks()
        else:
            bids, asks = levels
        out.events.append(
            BookSnapshot(
                venue=VENUE,
                local_ts_ns=now.wall_ns,
                symbol=st.symbol,
                exchange_ts_ns=ts_ns,
                stream=st.key,
                depth=self.options.snapshot_depth,
                bids=bids,
                asks=asks,
                checksum=None,
                book=book.view,
                seq=seq,
            )
        )

    def _maybe_swap(self, st: _Stream, ts_ns: int, now: Now, out: Step) -> None:
        shadow, main = st.shadow, st.l2
        if shadow is None or main is None:
            return
        seq = shadow.sync.seq
        if seq is None or seq != main.sync.seq:
            return  # not at the same point of the stream yet
        main.book.valid = False  # no longer maintained: the shadow replaces it
        st.l2 = shadow
        st.shadow = None
        st.counters.refreshes += 1
        self._emit_snapshot(st, shadow, seq, ts_ns, now, out)

    def _on_l2(self, msg: p.L2Update, now: Now, out: Step) -> None:
        st = self._books.get(msg.symbol)
        if st is None or st.l2 is None or st.state not in (_St.PENDING, _St.SYNCING, _St.LIVE):
            return
        st.last_data_mono = now.mono
        l2 = st.l2
        sync = l2.sync
        if sync.state is not SyncState.SYNCED:  # may go live on a held snapshot: tap it
            sync.tap = []
            sync.base = None
        try:
            r = sync.on_update(msg)
        except DecodeError as exc:
            self._bad_data(st, str(exc), now, out)
            return
        finally:
            applied = sync.tap or []
            sync.tap = None
        self._on_l2_result(st, l2, msg, r, now, out, applied)
        shadow = st.shadow
        if shadow is None or st.state is not _St.LIVE:
            return
        try:
            rs = shadow.sync.on_update(msg)
        except DecodeError:
            st.shadow = None
            return
        self._on_l2_result(st, shadow, msg, rs, now, out)
        if st.shadow is shadow and shadow.sync.state is SyncState.SYNCED:
            self._maybe_swap(st, msg.time_ms * 1_000_000, now, out)

    def _fast_l2(self, raw: dict[str, Any], now: Now, out: Step) -> bool:
        """The hot path: a ``trade.l2update`` (§2.5) that continues a live book with
        no shadow calibrating, read straight from the JSON into fixed-point levels at
        the book's precisions, applied and delivered.

        Returns False, having changed nothing, for anything else (not welcomed, a
        book not live, a gap or repeat, more decimals than the book's, any malformed
        part): the general path then decodes, reports and resyncs as usual."""
        data = raw.get("data")
        if type(data) is not dict or not self.welcomed or self.passive:
            return False
        symbol = data.get("symbol")
        st = self._books.get(symbol) if type(symbol) is str else None
        if st is None or st.state is not _St.LIVE or st.shadow is not None:
            return False
        l2 = st.l2
        topic = raw.get("topic")
        if l2 is None or type(topic) is not str or not topic.startswith(p.TOPIC_LEVEL2):
            return False
        first = data.get("sequenceStart")
        last = data.get("sequenceEnd")
        time_ms = data.get("time")
        changes = data.get("changes")
        if (
            type(first) is not int
            or type(last) is not int
            or type(time_ms) is not int
            or type(changes) is not dict
            or not 0 <= first <= last <= _I64
            or not 0 <= time_ms <= _I64
        ):
            return False
        seq = l2.sync.seq
        if seq is None or (st.last_seq is not None and last <= st.last_seq):
            return False
        overlap = first <= seq  # entries the book already has are skipped (step 3)
        book = l2.sync.book
        pp = book.price_precision
        qp = book.qty_precision
        floor, ceiling = l2.bounds(pp)
        applied: list[list[tuple[int, int]]] = [[], []]
        shown: list[list[tuple[int, int]]] = [[], []]
        for k, key in enumerate(("bids", "asks")):
            side = changes.get(key, [])
            if type(side) is not list:
                return False
            for change in side:
                if type(change) is not list or len(change) != 3:
                    return False
                price_text, qty_text, entry = change
                price = fixed_plain(price_text, pp)
                qty = fixed_plain(qty_text, qp)
                if price is None or qty is None:
                    return False
                if type(entry) is str and 0 < len(entry) <= 18 and entry.isdigit():
                    entry = int(entry) if entry.isascii() else -1
                if type(entry) is not int or not 0 <= entry <= _I64:
                    return False
                if not price or (overlap and entry <= seq):
                    continue  # price 0 carries no level; an old entry is in the book
                outside = (
                    floor is not None and price < floor
                    if k == 0
                    else ceiling is not None and price > ceiling
                )
                if outside:  # beyond the snapshot's window: never kept
                    applied[k].append((price, 0))
                else:
                    applied[k].append((price, qty))
                    shown[k].append((price, qty))
        if not l2.sync.apply_live(first, last, applied[0], applied[1]):
            return False
        self.fast_frames += 1
        st.last_data_mono = now.mono
        self._deliver_l2(st, l2, last, time_ms * 1_000_000, shown[0], shown[1], pp, qp, now, out)
        return True

    def _deliver_l2(
        self,
        st: _Stream,
        l2: _L2,
        seq: int,
        ts_ns: int,
        bids: list[tuple[int, int]],
        asks: list[tuple[int, int]],
        pp: int,
        qp: int,
        now: Now,
        out: Step,
    ) -> None:
        st.last_seq = seq
        st.last_ts_ns = ts_ns
        l2.book.last_ts_ns = ts_ns
        st.counters.delivered += 1
        out.events.append(
            BookUpdate(
                venue=VENUE,
                local_ts_ns=now.wall_ns,
                symbol=st.symbol,
                exchange_ts_ns=ts_ns,
                stream=st.key,
                depth=self.options.snapshot_depth,
                bids=Levels(bids, pp, qp),
                asks=Levels(asks, pp, qp),
                checksum=None,
                book=l2.book.view,
                seq=seq,
            )
        )

    def _on_l2_result(
        self,
        st: _Stream,
        l2: _L2,
        msg: p.L2Update,
        r: SyncResult,
        now: Now,
        out: Step,
        applied: list[tuple[Applied, int]] | None = None,
    ) -> None:
        main = l2 is st.l2
        if isinstance(r, Applied):
            bids, asks = self._trim_applied(l2, r)
            if not main:
                return
            if st.last_seq is not None and r.last_seq <= st.last_seq:
                st.counters.duplicates_dropped += 1  # re-delivered range after a resync
                return
            pp, qp = r.price_precision, r.qty_precision
            ts_ns = msg.time_ms * 1_000_000
            self._deliver_l2(st, l2, r.last_seq, ts_ns, bids, asks, pp, qp, now, out)
            return
        if l2.sync.state is not SyncState.SYNCED:
            l2.last_msg_ms = msg.time_ms
        if isinstance(r, Synced):  # the held snapshot fitted this message
            snap_ms = None
            if l2.held is not None:
                l2.window, snap_ms = l2.held
            l2.held = None
            self._calibrated(st, l2, r, snap_ms, msg.time_ms, applied or [], now, out)
        elif isinstance(r, GapDetected):
            if not main:
                st.shadow = None  # the live book will see the same gap
            elif r.was_live:
                since = st.last_ts_ns
                detail = f"expected sequence {r.expected}, got {r.got}"
                if r.regressed:
                    # every l2update since a corrupt sequence ran the book ahead was
                    # dropped: a gap by time (its sequences are the bad ones), and the
                    # bad sequence is forgotten or the next snapshot would "heal" it
                    detail = (
                        f"sequences went back: {self.options.max_stale_updates + 1} "
                        f"l2updates in a row at or below the book's {r.expected - 1} "
                        f"(latest ends at {r.got})"
                    )
                    st.last_seq = None
                self._resync_book(st, GapCause.SEQUENCE_GAP, detail, now, out, restarted=True)
                self._siblings_lost(st, since, msg.time_ms * 1_000_000, detail, now, out)
            elif st.state is not _St.PENDING:
                self._request_snapshot(st, now, out)
        elif isinstance(r, Refetch):
            st.counters.stale_snapshots += 1
            l2.held = None
            if st.state is not _St.PENDING:
                self._request_snapshot(st, now, out)
        elif isinstance(r, NeedSnapshot) and st.state is not _St.PENDING:
            self._request_snapshot(st, now, out)

    def _bad_data(self, st: _Stream, reason: str, now: Now, out: Step) -> None:
        """A decodable frame whose content broke the stream (levels the book refused)."""
        self.bad_frames += 1
        out.events.append(
            BadFrame(
                venue=VENUE,
                local_ts_ns=now.wall_ns,
                conn=self.conn,
                reason=self.redact(reason)[:300],
                size=0,
                excerpt="",
            )
        )
        if st.channel == "book" and st.state in (_St.SYNCING, _St.LIVE, _St.PENDING):
            self._resync_book(st, GapCause.BAD_FRAME, reason[:200], now, out)

    # ------------------------------------------------------------------ timers
    def on_timer(self, now: Now) -> Step:
        out = Step()
        if not self.connected:
            return out
        opts = self.options
        judge = now.backlog == 0  # the awaited frame may still be queued
        if not self.welcomed:
            waited = now.mono - self._connected_mono
            if judge and waited > opts.welcome_timeout_s:
                self.welcome_timeouts += 1
                self._penalise(now)
                out.events.append(
                    WatchdogFired(
                        venue=VENUE,
                        local_ts_ns=now.wall_ns,
                        conn=self.conn,
                        kind="welcome",
                        silent_for_s=waited,
                    )
                )
                out.reconnect = f"no welcome within {opts.welcome_timeout_s:g} s"
            return out
        if (
            self.planned_reconnect is None
            and now.mono - self._connected_mono >= opts.lifetime_s - opts.lifetime_margin_s
        ):
            # §2.1: the venue closes a connection at 24 h; replace it before that
            self.planned_reconnect = f"connection lifetime {opts.lifetime_s:g} s reached (§2.1)"
            self.planned_reconnects += 1
            if not opts.make_before_break:
                out.reconnect = f"planned: {self.planned_reconnect}"
        # keepalive (§2.3)
        if self._ping_outstanding is not None:
            _, sent = self._ping_outstanding
            if judge and now.mono - sent > self._pong_timeout_s:
                out.events.append(
                    WatchdogFired(
                        venue=VENUE,
                        local_ts_ns=now.wall_ns,
                        conn=self.conn,
                        kind="pong",
                        silent_for_s=now.mono - sent,
                    )
                )
                out.reconnect = f"no pong within {self._pong_timeout_s:g} s"
                return out
        elif now.mono - self._last_ping_mono >= self._ping_interval_s:
            pid = str(self._ids(1))
            self._ping_outstanding = (pid, now.mono)
            self._last_ping_mono = now.mono
            self.pings += 1
            self._send(out, p.encode_ping(pid), now, None, urgent=True)
        self._flush_deferred(now, out)
        # acknowledgement deadlines
        if judge:
            for req in self._pending.values():
                if req.sent_mono is None or req.kind != "subscribe":
                    continue
                if now.mono - req.sent_mono <= opts.subscribe_ack_timeout_s:
                    continue
                late = [s for s in req.streams if s.state is _St.PENDING]
                for s in late:
                    out.events.append(
                        SubscriptionRejected(
                            venue=VENUE,
                            local_ts_ns=now.wall_ns,
                            conn=self.conn,
                            stream=s.key,
                            error=f"no acknowledgement within {opts.subscribe_ack_timeout_s:g} s",
                            retry_in_s=0.0,
                        )
                    )
                if late:
                    out.reconnect = out.reconnect or "subscription not acknowledged"
                    return out
        retry_now: list[_Stream] = []
        for st in list(self._streams.values()):
            state = st.state
            if state is _St.RETRY:
                if st.retry_at is not None and now.mono >= st.retry_at:
                    retry_now.append(st)
                continue
            if st.channel == "book":
                self._book_timer(st, judge, now, out)
            elif state is _St.LIVE and opts.trade_stale_after_s is not None and judge:
                silent = now.mono - st.last_data_mono
                if silent > opts.trade_stale_after_s:
                    self._stale(st, silent, now, out)
                    self._open_gap(st, GapCause.STALE, f"no data for {silent:.1f} s")
                    st.counters.resyncs += 1
                    if not self._escalate(st, now, out):
                        self._unsubscribe(st, now, out)
                        self._subscribe([st], now, out)
        if retry_now:
            self._subscribe(retry_now, now, out)
        return out

    def _book_timer(self, st: _Stream, judge: bool, now: Now, out: Step) -> None:
        opts = self.options
        if st.state not in (_St.SYNCING, _St.LIVE):
            return
        if st.fetch_due is not None and now.mono >= st.fetch_due:
            self._request_snapshot(st, now, out)
        if st.state is not _St.LIVE:
            assert st.l2 is not None
            if (
                not st.fetching
                and st.fetch_due is None
                and st.l2.sync.state is SyncState.NEED_SNAPSHOT
            ):
                self._request_snapshot(st, now, out)  # safety net: a wait nobody serves
            return
        silent = now.mono - st.last_data_mono
        if judge and opts.book_stale_after_s is not None and silent > opts.book_stale_after_s:
            self._stale(st, silent, now, out)
            self._resync_book(
                st, GapCause.STALE, f"no data for {silent:.1f} s", now, out, resubscribe=True
            )
            return
        if st.shadow is None and self._thin(st):
            last = st.last_refresh_mono
            if last is None or now.mono - last >= opts.book_refresh_min_interval_s:
                st.last_refresh_mono = now.mono
                st.shadow = _L2(st.symbol, self._sync_limits)
                self._request_snapshot(st, now, out)

    def _thin(self, st: _Stream) -> bool:
        fraction = self.options.book_refresh_fraction
        if fraction is None or st.l2 is None:
            return False
        floor, ceiling = st.l2.window
        if floor is None and ceiling is None:
            return False
        need = max(1, math.ceil(self.options.snapshot_depth * fraction))
        book = st.l2.book
        return (floor is not None and len(book.bids_fixed(need)) < need) or (
            ceiling is not None and len(book.asks_fixed(need)) < need
        )

    def _stale(self, st: _Stream, silent: float, now: Now, out: Step) -> None:
        st.last_data_mono = now.mono
        out.events.append(
            WatchdogFired(
                venue=VENUE,
                local_ts_ns=now.wall_ns,
                conn=self.conn,
                kind="stale",
                stream=st.key,
                silent_for_s=silent,
            )
        )

    # ------------------------------------------------------------------ frames
    def on_frame(self, data: str | bytes, now: Now) -> Step:
        out = Step()
        self.frames += 1
        try:
            raw = p.load(data, self._max_json_depth)
            if (
                self.fast_path
                and type(raw) is dict
                and raw.get("subject") == "trade.l2update"
                and raw.get("type") == "message"
                and self._fast_l2(raw, now, out)
            ):
                return out
            msg = p.classify(raw)
        except DecodeError as exc:
            self._bad_frame(str(exc), data, now, out)
            return out
        if not self.welcomed and not isinstance(msg, (p.Welcome, p.ErrorFrame)):
            self.early_frames += 1  # §2.3: nothing is valid before the welcome
            return out
        if isinstance(msg, p.L2Update):
            self._on_l2(msg, now, out)
            if self.passive:
                self._passive_refresh(msg.symbol, now)
        elif isinstance(msg, p.Match):
            self._on_match(msg, now, out)
        elif isinstance(msg, p.TickerMsg):
            self._on_ticker(msg, now, out)
        elif isinstance(msg, p.Pong):
            self._on_pong(msg, now)
        elif isinstance(msg, p.Ack):
            self._on_ack(msg, now, out)
        elif isinstance(msg, p.ErrorFrame):
            self._on_error(msg, now, out)
        elif isinstance(msg, p.Welcome):
            self._on_welcome(msg, now, out)
        return out

    def _bad_frame(self, reason: str, data: str | bytes, now: Now, out: Step) -> None:
        """Count, report, and resync what the frame could have touched: the streams
        named by its ``topic`` when that is readable, else every stream."""
        self.bad_frames += 1
        text = data if isinstance(data, str) else data[:8192].decode("utf-8", "replace")
        out.events.append(
            BadFrame(
                venue=VENUE,
                local_ts_ns=now.wall_ns,
                conn=self.conn,
                reason=self.redact(reason)[:300],
                size=len(data),
                excerpt=self.redact(text[:8192])[:120],
            )
        )
        if not self.welcomed:
            return
        channel: str | None = None
        symbols: set[str] | None = None
        m = _TOPIC_RE.search(text[:8192])
        if m is not None:
            channel = _CHANNEL_OF_PREFIX.get(m.group(1))
            if channel is None:
                return  # a topic we do not subscribe to
            if m.group(2) != "all":
                symbols = set(m.group(2).split(","))
        for st in list(self._streams.values()):
            if channel is not None and st.channel != channel:
                continue
            if symbols is not None and st.symbol not in symbols:
                continue
            if st.channel == "book" and st.state in (_St.SYNCING, _St.LIVE):
                self._resync_book(st, GapCause.BAD_FRAME, reason[:200], now, out)
            elif st.channel != "book" and st.state is _St.LIVE:
                self._time_gap(st, GapCause.BAD_FRAME, reason[:200], now, out)

    def _on_welcome(self, msg: p.Welcome, now: Now, out: Step) -> None:
        if self.welcomed:
            return
        if msg.id != self._connect_id and not self.passive:
            self._penalise(now)
            out.reconnect = "welcome id does not match our connectId"
            return
        self.welcomed = True
        self._last_ping_mono = now.mono
        if self._endpoint is not None:
            self._endpoint_failed_at.pop(self._endpoint, None)
        todo = [s for s in self._streams.values() if s.state is not _St.REJECTED]
        if todo and not self.passive:  # replay: subscriptions come from observe_sent
            self._subscribe(todo, now, out)

    def _on_pong(self, msg: p.Pong, now: Now) -> None:
        ping = self._ping_outstanding
        if ping is None or (msg.id is not None and msg.id != ping[0]):
            return
        self._ping_outstanding = None
        self.pongs += 1
        rtt = max(0.0, now.mono - ping[1])
        self.pong_rtt_s = rtt
        avg = self.pong_rtt_avg_s
        self.pong_rtt_avg_s = rtt if avg is None else avg + 0.2 * (rtt - avg)

    def _on_ack(self, ack: p.Ack, now: Now, out: Step) -> None:
        req = self._pending.pop(ack.id, None)
        if req is None or req.kind != "subscribe":
            return
        for st in req.streams:
            if st.state is not _St.PENDING or self._streams.get(st.key) is not st:
                continue
            st.retry_delay = 0.0
            st.last_data_mono = now.mono
            out.events.append(
                Subscribed(venue=VENUE, local_ts_ns=now.wall_ns, conn=self.conn, stream=st.key)
            )
            if st.channel == "book":
                st.state = _St.SYNCING
                assert st.l2 is not None
                if st.l2.sync.state is not SyncState.SYNCED:
                    self._request_snapshot(st, now, out)
            else:
                st.state = _St.LIVE
                st.confirmed_ts_ns = now.wall_ns
                self._close_gap(st, self._local_end(now), now, out)

    def _on_error(self, err: p.ErrorFrame, now: Now, out: Step) -> None:
        self.error_frames += 1
        data = self.redact(err.data)[:300]
        if err.kind is p.ErrorKind.TOKEN_EXPIRED:
            self.tokens_expired += 1
            out.reconnect = out.reconnect or f"error {err.code}: {data} (new bullet needed)"
            return
        req = self._pending.pop(err.id, None) if err.id is not None else None
        if req is None or req.kind != "subscribe":
            return
        streams = [
            s for s in req.streams if s.state is _St.PENDING and self._streams.get(s.key) is s
        ]
        if not streams:
            return
        error = f"error {err.code}: {data}"
        if err.permanent and len(streams) > 1:
            # §2.3/§2.4: the whole request is refused; find the unknown symbol by halving
            self.not_found_splits += 1
            half = len(streams) // 2
            self._subscribe(streams[:half], now, out)
            self._subscribe(streams[half:], now, out)
            return
        opts = self.options
        for st in streams:
            if err.permanent:
                st.state = _St.REJECTED
                retry: float | None = None
            else:
                st.retry_delay = min(
                    opts.reject_retry_cap_s, max(opts.reject_retry_base_s, st.retry_delay * 2)
                )
                retry = st.retry_delay
                st.state = _St.RETRY
                st.retry_at = now.mono + retry
                self._open_gap(st, GapCause.SUBSCRIPTION_REJECTED, error)
            out.events.append(
                SubscriptionRejected(
                    venue=VENUE,
                    local_ts_ns=now.wall_ns,
                    conn=self.conn,
                    stream=st.key,
                    error=error,
                    retry_in_s=retry,
                )
            )

    def _on_match(self, m: p.Match, now: Now, out: Step) -> None:
        st = self._by_channel.get(("trade", m.symbol))
        if st is None or st.state not in (_St.PENDING, _St.LIVE):
            return
        st.last_data_mono = now.mono
        if isinstance(st.match.on_match(m.sequence), SeqDuplicate):
            st.counters.duplicates_dropped += 1  # §2.6: sequence only increases
            return
        tid = int(m.trade_id) if m.trade_id.isdigit() and len(m.trade_id) <= 18 else None
        last = st.last_seq
        if (
            self.options.trade_ids_contiguous
            and tid is not None
            and last is not None
            and tid > last + 1
            and not st.expect_jump
        ):
            detail = f"tradeId jumped from {last} to {tid}"
            self._emit_gap(
                st,
                GapCause.SEQUENCE_GAP,
                st.last_ts_ns,
                m.time_ns,
                last + 1,
                tid - 1,
                detail,
                now,
                out,
            )
            self._siblings_lost(st, st.last_ts_ns, m.time_ns, detail, now, out)
        st.expect_jump = False
        if tid is not None:
            st.last_seq = tid
        st.last_ts_ns = m.time_ns
        st.counters.delivered += 1
        out.events.append(
            Trade(
                venue=VENUE,
                local_ts_ns=now.wall_ns,
                symbol=m.symbol,
                exchange_ts_ns=m.time_ns,
                stream=st.key,
                trade_id=tid if tid is not None else m.sequence,
                price=Decimal(m.price),
                qty=Decimal(m.size),
                side=m.side,
            )
        )

    def _on_ticker(self, t: p.TickerMsg, now: Now, out: Step) -> None:
        st = self._by_channel.get(("ticker", t.symbol))
        if st is None or st.state not in (_St.PENDING, _St.LIVE):
            return
        st.last_data_mono = now.mono
        last = st.last_tick
        if last is not None and (t.sequence < last[0] or (t.sequence, t.time_ms) == last):
            st.counters.duplicates_dropped += 1
            return
        st.last_tick = (t.sequence, t.time_ms)
        ts_ns = t.time_ms * 1_000_000
        st.last_ts_ns = ts_ns
        st.counters.delivered += 1
        out.events.append(
            BookTicker(
                venue=VENUE,
                local_ts_ns=now.wall_ns,
                symbol=t.symbol,
                exchange_ts_ns=ts_ns,
                stream=st.key,
                bid=Decimal(t.best_bid),
                bid_qty=Decimal(t.best_bid_size),
                ask=Decimal(t.best_ask),
                ask_qty=Decimal(t.best_ask_size),
                update_id=t.sequence,
            )
        )
