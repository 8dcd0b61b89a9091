"""Binance Spot public market data: subscriptions, §3.8 books, trade continuity (pure).

One :class:`BinanceAdapter` serves one logical connection to the combined-stream
endpoint ``{ws_url}/stream`` and survives across reconnects. Per-connection
state (outbound queue, pending acks, book sync machines) is rebuilt on every
connect; per-stream history (last delivered update id / trade id and exchange
time, open gap, trade-id checker) persists, so the :class:`~gapless.events.Gap`
emitted on resync names exactly which ids may be missing.

Decisions, with their sources (protocols.md §3):

- **Connect (§3.1, §3.4, §3.5)**: no streams in the URL (``/stream``); every
  stream (``<sym>@depth@100ms``, ``<sym>@trade``, ``<sym>@bookTicker``) is
  requested with ``SUBSCRIBE`` in chunks of at most ``max_params_per_request``
  names (200 by default: no limit is documented, the 1024-stream cap of §3.2 is
  per connection). Requests are correlated by integer ``id``; an ack is awaited
  ``subscribe_ack_timeout_s`` after the request actually left (not when it was
  queued), then the connection is recycled. Data for a stream is consumed only
  after its ack (nothing is promised before it).
- **Subscription errors (§3.5)** come nested, ``{"error":{code,msg},"id"}``.
  "invalid stream" / "too many parameters" on a multi-stream request split it
  in halves and retry each (one bad name must not take 199 good ones down); an
  invalid single stream is permanent (``SubscriptionRejected(retry_in_s=None)``);
  anything else is retried with capped exponential backoff. ``id: null``
  concerns every request still waiting for an answer.
- **Outbound rate (§3.2)**: the venue closes a connection that sends more than
  5 messages in any second, pings and pongs included. The adapter never hands
  the runtime more than ``max_outbound_per_s`` (4) frames within any 1 s
  sliding window (a frame counts while less than 1 s old): excess requests
  wait in an internal queue and are released by later calls (``on_timer``
  runs every 100 ms), with time taken from :class:`~gapless.venues.base.Now`.
  The fifth slot is left for the transport's automatic pong (the server pings
  every 20 s). Queued requests coalesce (a SUBSCRIBE joins the last queued
  SUBSCRIBE up to the chunk size), and an unsubscribe of a stream whose
  SUBSCRIBE has not left yet just removes it from the queue.
- **Books (§3.6-§3.8)** use :class:`~gapless.venues.binance.sync.DepthSync`:
  the first diff event of a cycle asks for a REST snapshot
  (``RestCall(key="depth:<SYMBOL>", GET {rest_url}/api/v3/depth,
  symbol/limit, weight=§3.7 table)``); the runtime performs it under the
  venue's weight budget and answers through :meth:`BinanceAdapter.on_rest`,
  in order with frames. At most one snapshot call per symbol is in flight; a
  request that became useless meanwhile is still judged on its numbers alone
  (``DepthSync`` accepts any snapshot the buffered sequence continues).
  A stale snapshot (``lastUpdateId + 1 < first U``) is a ``Refetch``; a
  snapshot older than what was already delivered is refetched too (so no
  update id is ever delivered twice). Snapshot requests of one symbol are at
  least ``resync_min_interval_s`` apart.
- **What a sync delivers**: a :class:`~gapless.events.BookSnapshot` that *is*
  the REST snapshot (``seq = lastUpdateId``; ``exchange_ts_ns = 0`` because a
  REST snapshot carries no time; ``checksum=None``), then one
  :class:`~gapless.events.BookUpdate` per buffered event that continues it
  (levels exactly as sent, ``seq = u``), then every live event. So every update
  id after a snapshot reaches the user exactly once, and a consumer applying
  snapshot + updates in order rebuilds the venue's book. The ``book`` view
  attached to events is the live book (already past the replayed events).
- **Gaps on books**: a hole while live (``U > id + 1``), a disconnect, a bad
  frame, an overflow or staleness opens a gap at ``first_seq = last delivered
  u + 1``, ``start_ts_ns`` = E of the last delivered event. It is emitted when
  the resync completes, just before the new BookSnapshot: ``last_seq =
  lastUpdateId`` (every id up to it is covered by the snapshot; later ones are
  delivered), ``end_ts_ns`` = E of the first event applied on top of the
  snapshot, or None when none was buffered (the sequence bounds are then the
  precise statement; a REST snapshot has no time). If the new snapshot is at
  exactly the last delivered id nothing was missed: no Gap (counted as
  ``healed``). The book is rebuilt from a fresh snapshot on every connection
  (design.md §1.2). Too many resyncs of one symbol within a minute escalate to
  a reconnect (a connection that keeps losing events is recycled).
- **REST failures (§3.11)**: 429/418 block every snapshot request of this
  adapter until ``Retry-After`` (60 s when absent) has passed — the runtime's
  :class:`~gapless.runtime.rest.RestBudget` is blocked as well; other statuses
  and transport errors retry with capped backoff per symbol; an undecodable
  body is a :class:`~gapless.events.BadFrame` and a retry. A call not answered
  within ``snapshot_timeout_s`` plus the time the weight budget needs to pace
  the calls queued before it (and, after a 429/418, until the block ends) is
  asked again; a late answer is still judged on its numbers.
- **Trades (§3.6)**: ``t`` goes up by one per trade
  (:class:`~gapless.venues.binance.sync.TradeIdCheck`). A jump ``t > last + 1``
  is ``Gap(SEQUENCE_GAP, first_seq=last+1, last_seq=t-1, start=T of last,
  end=T)`` and the trade is delivered; repeats are dropped and counted. After a
  disconnect (or overflow, bad frame) the gap stays open with that cause and
  the first trade after re-subscription closes it the same way (no Gap when it
  is exactly ``last + 1``). An unsubscribe the user asked for forgets the
  stream: nothing is gap-checked across it. ``side`` is the taker side
  (``m`` true: the buyer is the maker, the taker sold). Prices are exact
  ``Decimal`` of the wire strings.
- **bookTicker (§3.6)** is a sampled best-price feed: its ``u`` is the book's
  update id and skips ids by design, so there is no continuity check. Only
  outages are reported: after a disconnect, overflow or bad frame a gap opens
  at ``last u + 1`` and the first bookTicker after it closes it with
  ``last_seq = u - 1``. bookTicker carries no time: ``exchange_ts_ns`` and the
  gap's times are 0 (empty in time; the update ids are the statement).
- **Planned disconnects (§3.2, §3.4)**: ``serverShutdown``, or a connection
  ``lifetime_s - lifetime_margin_s`` old, sets :attr:`BinanceAdapter.planned_reconnect`.
  With ``make_before_break`` (the default) the runtime reads it, dials
  :meth:`BinanceAdapter.successor` beside this connection and switches over
  per stream once the successor has caught up (:mod:`gapless.runtime.handover`):
  no Gap. With ``make_before_break=False`` the adapter returns
  ``Step.reconnect = "planned: ..."`` instead (break-before-make: the usual
  DISCONNECT gaps follow).
- **Keepalive (§3.3)**: server pings are answered by the transport
  (websockets answers pings itself, with the payload); a dead peer is the
  runtime's watchdog. ``book_stale_after_s`` (off by default: a quiet book
  sends no diff events) resyncs a book that has been silent that long.
- **Weight budget**: Binance counts REST weight per IP, 6000 per minute
  (§3.2). :attr:`BinanceOptions.rest_budget` is what the runtime should give
  its ``RestBudget``: a 1200 burst and half the venue's sustained rate
  (3000/min = 50/s), so in any 60 s at most 1200 + 3000 = 4200 < 6000 weight is
  spent and other users of the IP keep headroom. A mass resync of 50 books at
  weight 50 (limit 1000) is 2500: 24 calls go at once, the rest one per second
  — paced, never banned.
- **Passive mode (replay)**: ``BinanceAdapter(passive=True)`` is what
  :mod:`gapless.replay` feeds a capture through. It originates nothing that
  matters: no SUBSCRIBE is queued on connect and the outbound queue is
  discarded (its REST calls may be emitted but are ignored). Subscriptions
  come from the captured ``ws_out`` frames (:meth:`BinanceAdapter.observe_sent`:
  ``SUBSCRIBE`` under its captured id, ``UNSUBSCRIBE`` as a user's
  unsubscribe); captured REST answers come through
  :meth:`BinanceAdapter.observe_rest`. A capture records the depth call's URL
  without its query, so the symbol is taken from the URL when present; else,
  among the books waiting for a snapshot, the one whose call went out first
  (one REST worker per connection answers in call order), unless update ids
  clearly say otherwise (a call the live timer deferred is not made in
  replay): see :func:`~gapless.venues.seqsync.pick_snapshot_owner`. Captures
  now record the call's params (the symbol), which settles it. Timers are not
  run in replay: decisions they take live show in the capture (reconnects, re-subscriptions) and are
  followed from there.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, NamedTuple
from urllib.parse import parse_qs

import msgspec

from gapless.book import Book
from gapless.errors import ConfigError, DecodeError
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
from gapless.venues.base import (
    CountedState,
    Now,
    Phase,
    RestCall,
    RestResult,
    Step,
    StreamSpec,
)
from gapless.venues.binance import protocol as p
from gapless.venues.binance.sync import (
    Applied,
    DepthSync,
    Dropped,
    GapDetected,
    Refetch,
    SeqDuplicate,
    SeqGap,
    Synced,
    SyncState,
    SyncTally,
    TradeIdCheck,
)
from gapless.venues.limits import DEFAULT_MAX_JSON_DEPTH, json_depth_over
from gapless.venues.numbers import PriceCache, fixed_plain, fixed_plain_cached
from gapless.venues.seqsync import DEFAULT_MAX_STALE_RUN, pick_snapshot_owner
from gapless.venues.seqsync import Levels as TextLevels

#: snapshots in a row refused as older than the last delivered update id before
#: that id is judged bad (the venue's ids went back) and the next one is used
MAX_SNAPSHOTS_BEHIND = 5

__all__ = [
    "DEFAULT_REST_BUDGET",
    "AdapterStats",
    "BinanceAdapter",
    "BinanceOptions",
    "StreamCounters",
    "WeightBudget",
]

VENUE = p.VENUE

_SUBSCRIBE = "SUBSCRIBE"
_UNSUBSCRIBE = "UNSUBSCRIBE"
_WINDOW_S = 1.0  # §3.2: the outbound limit is per second
_I64 = 2**63 - 1  # §3.6 ids and times are signed 64-bit
_SPLITTABLE = ("invalid stream", "too many parameters")
_PERMANENT = ("invalid stream",)
_PASSIVE_CHANNELS = {"depth@100ms": "book", "trade": "trade", "bookTicker": "book_ticker"}
_PASSIVE_DECODER = msgspec.json.Decoder()


class WeightBudget(NamedTuple):
    """REST request-weight budget for the runtime's ``RestBudget(capacity, per_second)``."""

    capacity: float
    per_second: float


#: 1200 burst, half of Binance's 6000 weight/min sustained (module docstring).
DEFAULT_REST_BUDGET = WeightBudget(1200.0, 6000 * 0.5 / 60)


@dataclass(frozen=True, slots=True)
class BinanceOptions:
    """Phase-named timeouts and policies (seconds unless noted)."""

    ws_url: str = p.STREAM_URL
    rest_url: str = p.REST_URL
    snapshot_limit: int = 1000  # §3.7: weight 50
    max_streams: int = p.MAX_STREAMS_PER_CONNECTION
    max_params_per_request: int = 200
    subscribe_ack_timeout_s: float = 10.0
    snapshot_timeout_s: float = 30.0
    book_stale_after_s: float | None = None
    max_outbound_per_s: int = 4  # §3.2: 5/s including pongs
    resync_min_interval_s: float = 1.0
    max_resyncs_per_minute: int = 6
    reject_retry_base_s: float = 2.0
    reject_retry_cap_s: float = 60.0
    rest_retry_base_s: float = 1.0
    rest_retry_cap_s: float = 60.0
    rest_budget: WeightBudget = DEFAULT_REST_BUDGET
    lifetime_s: float = p.CONNECTION_LIFETIME_S
    lifetime_margin_s: float = 60.0
    make_before_break: bool = True  # the runtime replaces planned closes itself
    max_buffer: int = 10_000  # diff events held per book while waiting for a snapshot
    #: live diff events in a row wholly at or below the book's update id before the
    #: book is declared wrong (a corrupt id ran it ahead): a Gap and a resync
    max_stale_updates: int = DEFAULT_MAX_STALE_RUN
    #: hostile input: a frame nested deeper than this is a BadFrame, refused before
    #: decoding (gapless.venues.limits); None turns the check off
    max_json_depth: int | None = DEFAULT_MAX_JSON_DEPTH

    def __post_init__(self) -> None:
        if not 1 <= self.max_outbound_per_s <= p.MAX_OUTBOUND_MSGS_PER_S:
            raise ConfigError(
                f"max_outbound_per_s must be within 1..{p.MAX_OUTBOUND_MSGS_PER_S} (§3.2)"
            )
        if not 1 <= self.max_streams <= p.MAX_STREAMS_PER_CONNECTION:
            raise ConfigError(f"max_streams must be within 1..{p.MAX_STREAMS_PER_CONNECTION}")
        if not 1 <= self.max_params_per_request <= p.MAX_STREAMS_PER_CONNECTION:
            raise ConfigError("max_params_per_request must be within 1..1024")
        if type(self.snapshot_limit) is not int or not 1 <= self.snapshot_limit <= 5000:
            raise ConfigError("snapshot_limit must be within 1..5000 (§3.7)")
        if self.max_resyncs_per_minute < 1 or self.max_buffer < 1:
            raise ConfigError("max_resyncs_per_minute and max_buffer must be positive")
        if type(self.max_stale_updates) is not int or self.max_stale_updates < 1:
            raise ConfigError("max_stale_updates must be a positive int")
        if self.rest_budget.capacity <= 0 or self.rest_budget.per_second <= 0:
            raise ConfigError("rest_budget needs a positive capacity and rate")
        if self.lifetime_margin_s < 0 or self.lifetime_s <= self.lifetime_margin_s:
            raise ConfigError("lifetime_s must exceed lifetime_margin_s >= 0")
        for name in ("ws_url", "rest_url"):
            url: str = getattr(self, name)
            if url.endswith("/"):
                raise ConfigError(f"{name} must not end with '/': {url!r}")
        if not self.ws_url.startswith(("ws://", "wss://")):
            raise ConfigError(f"ws_url must be ws:// or wss://, got {self.ws_url!r}")
        if not self.rest_url.startswith(("http://", "https://")):
            raise ConfigError(f"rest_url must be http:// or https://, got {self.rest_url!r}")


class _St(enum.Enum):
    __hash__ = object.__hash__  # identity: members are singletons (cheap counts)

    IDLE = "idle"  # not connected
    QUEUED = "queued"  # SUBSCRIBE waiting for the outbound pacer
    PENDING = "pending"  # SUBSCRIBE sent, no answer yet
    LIVE = "live"  # acknowledged: data is consumed (books sync per §3.8)
    RETRY = "retry"  # refused (retryable), waiting for retry_at
    REJECTED = "rejected"  # permanent


@dataclass(slots=True)
class StreamCounters:
    delivered: int = 0
    gaps: int = 0
    resyncs: int = 0
    duplicates_dropped: int = 0
    healed: int = 0  # outages in which provably nothing was missed: no Gap
    snapshots_requested: int = 0
    snapshots_fetched: int = 0  # snapshots that made the book live
    refetches: int = 0  # stale snapshots (§3.8 step 3) or older than delivered
    snapshot_errors: int = 0
    snapshot_timeouts: int = 0
    rate_limited: int = 0  # 429 / 418 answers


@dataclass(slots=True)
class AdapterStats:
    frames: int = 0
    fast_frames: int = 0  # live depth updates that took the hot path
    bad_frames: int = 0
    sends: int = 0
    sends_deferred: int = 0  # times the pacer held a request back
    unrouted: int = 0  # data for a stream we do not (or no longer) have
    before_ack: int = 0  # data for a stream not acknowledged (yet)
    ignored_rest: int = 0
    split_requests: int = 0
    planned_reconnects: int = 0
    rest_blocks: int = 0


@dataclass(slots=True)
class _OpenGap:
    cause: GapCause
    start_ts_ns: int | None
    first_seq: int | None
    detail: str


@dataclass(slots=True, eq=False)
class _Req:
    method: str
    names: list[str]
    id: int
    sent_mono: float | None = None


class _TapSync(DepthSync):
    """:class:`DepthSync` that records the events it applies while a snapshot is
    joined, and the snapshot's levels before the first of them (the book is
    exactly the snapshot when the first replayed event's changes are asked for)."""

    def __init__(self, symbol: str, limits: tuple[int, int], tally: SyncTally) -> None:
        """``limits``: ``(max_buffer, max_stale_run)``."""
        super().__init__(symbol, max_buffer=limits[0], max_stale_run=limits[1], tally=tally)
        self.tap: list[p.DepthUpdate] | None = None
        self.base: tuple[tuple[Level, ...], tuple[Level, ...]] | None = None

    def _changes(self, msg: p.DepthUpdate, seq: int, first: int) -> tuple[TextLevels, TextLevels]:
        tap = self.tap
        if tap is not None:
            if not tap:
                book = self.book
                self.base = (book.bids(), book.asks())
            tap.append(msg)
        return super()._changes(msg, seq, first)


class _Stream(CountedState[_St]):
    """One stream's state; ``state`` is counted (:class:`CountedState`) and book
    syncs share the adapter's :class:`SyncTally`, so ``phase`` is O(1) per frame."""

    __slots__ = (
        "channel",
        "counters",
        "gap",
        "key",
        "last_data_mono",
        "last_seq",
        "last_ts_ns",
        "name",
        "req_id",
        "resync_times",
        "retry_at",
        "retry_delay",
        "seen_ts_ns",
        "snap_deadline",
        "snap_inflight",
        "snap_last_mono",
        "snap_retry_at",
        "snap_retry_delay",
        "snap_wanted",
        "snaps_behind",
        "spec",
        "symbol",
        "sync",
        "trades",
    )

    def __init__(
        self,
        spec: StreamSpec,
        name: str,
        limits: tuple[int, int],
        counts: dict[_St, int],
        tally: SyncTally,
    ) -> None:
        super().__init__(counts, _St.IDLE)
        self.spec = spec
        self.key = spec.key
        self.channel = spec.channel
        self.symbol = spec.symbol
        self.name = name
        self.req_id: int | None = None
        self.counters = StreamCounters()
        self.gap: _OpenGap | None = None
        self.last_seq: int | None = None  # last delivered update id / trade id
        self.last_ts_ns: int | None = None  # its exchange time
        self.seen_ts_ns: int | None = None  # E of the newest diff event fed to the sync
        self.last_data_mono = 0.0
        self.retry_at: float | None = None
        self.retry_delay = 0.0
        self.resync_times: deque[float] = deque()
        self.sync = _TapSync(spec.symbol, limits, tally) if spec.channel == "book" else None
        self.trades = TradeIdCheck() if spec.channel == "trade" else None
        self.snap_wanted = False  # a snapshot request must be emitted when allowed
        self.snap_inflight = 0
        self.snap_deadline = 0.0
        self.snap_last_mono: float | None = None
        self.snap_retry_at = 0.0
        self.snap_retry_delay = 0.0
        self.snaps_behind = 0  # snapshots in a row refused as older than delivered


class BinanceAdapter:
    """Pure protocol state for one Binance Spot combined-stream connection."""

    venue = VENUE
    #: Read live depth updates straight into the book (:meth:`_fast_depth`); the
    #: general decoder gives the same events (tests compare both ways).
    fast_path = True

    def __init__(
        self,
        specs: list[StreamSpec] | None = None,
        options: BinanceOptions | None = None,
        *,
        passive: bool = False,
    ) -> None:
        self.options = options or BinanceOptions()
        self._max_json_depth = self.options.max_json_depth
        self.passive = passive  # replay: follow captured requests instead of sending
        self._passive_asks = 0
        self._passive_asked: dict[str, int] = {}  # symbol -> order of its last snapshot call
        opts = self.options
        self._url = p.combined_url([], opts.ws_url)
        self._depth_url = f"{opts.rest_url}/api/v3/depth"
        self._depth_weight = float(p.depth_snapshot_weight(opts.snapshot_limit))
        self._streams: dict[str, _Stream] = {}
        self._by_name: dict[str, _Stream] = {}
        self._state_counts: dict[_St, int] = dict.fromkeys(_St, 0)
        self._tally = SyncTally()
        for spec in specs or []:
            self.add(spec)
        self.conn = ""
        self.connected = False
        self.connected_at = 0.0
        self.planned_reconnect: str | None = None
        self.stats = AdapterStats()
        self._next_id = 1
        self._outq: deque[_Req] = deque()
        self._pending: dict[int, _Req] = {}
        self._sent: deque[float] = deque()
        self._rest_blocked_until = 0.0
        self._shut = False
        self._prices = PriceCache()

    # ------------------------------------------------------------------ registry
    @property
    def url(self) -> str:
        return self._url

    @property
    def bad_frames(self) -> int:
        return self.stats.bad_frames

    @property
    def frames(self) -> int:
        return self.stats.frames

    def add(self, spec: StreamSpec) -> None:
        """Register a stream (subscribed on the next connect). Raises
        :class:`ConfigError` for other venues, unknown channels and beyond
        ``max_streams`` (§3.2: spread streams over several connections)."""
        if spec.venue != VENUE:
            raise ConfigError(f"not a binance stream: {spec.key}")
        name = p.stream_name(spec)
        if spec.symbol != spec.symbol.upper():  # payloads name it as listed (§3.6 ``s``)
            raise ConfigError(f"Binance symbols are upper case ('BTCUSDT'), got {spec.symbol!r}")
        if spec.key in self._streams:
            return
        if len(self._streams) >= self.options.max_streams:
            raise ConfigError(
                f"{spec.key}: more than {self.options.max_streams} streams on one "
                "connection (§3.2); use another connection"
            )
        st = _Stream(
            spec,
            name,
            (self.options.max_buffer, self.options.max_stale_updates),
            self._state_counts,
            self._tally,
        )
        self._streams[spec.key] = st
        self._by_name[name] = st

    def streams(self) -> list[str]:
        return list(self._streams)

    def specs(self) -> list[StreamSpec]:
        return [st.spec for st in self._streams.values()]

    def has_book(self, symbol: str) -> bool:
        return self._book_stream(symbol) is not None

    def book(self, symbol: str) -> Book | None:
        st = self._book_stream(symbol)
        return st.sync.book if st is not None and st.sync is not None else None

    def counters(self) -> dict[str, StreamCounters]:
        return {k: s.counters for k, s in self._streams.items()}

    def stream_state(self, key: str) -> str:
        """``idle|queued|pending|live|retry|rejected``; a live book that is not
        synced yet reads ``syncing``."""
        st = self._streams[key]
        if st.state is _St.LIVE and st.sync is not None and st.sync.state is not SyncState.SYNCED:
            return "syncing"
        return st.state.value

    def successor(self) -> BinanceAdapter:
        """A fresh adapter for the same streams and options (make-before-break:
        the runtime dials it while this one still delivers)."""
        return BinanceAdapter(self.specs(), self.options)

    @property
    def phase(self) -> Phase:
        counts = self._state_counts
        if counts[_St.IDLE] or counts[_St.QUEUED] or counts[_St.PENDING]:
            return Phase.SUBSCRIBING
        if not self._tally.unsynced:  # every book synced: the per-frame case
            return Phase.LIVE
        for st in self._streams.values():
            sync = st.sync
            if st.state is _St.LIVE and sync is not None and sync.state is not SyncState.SYNCED:
                return Phase.SYNCING
        return Phase.LIVE

    def _book_stream(self, symbol: str) -> _Stream | None:
        return self._streams.get(f"{VENUE}:book:{symbol}")

    # ------------------------------------------------------------------ outbound
    def _new_id(self) -> int:
        rid = self._next_id
        self._next_id += 1
        return rid

    def _enqueue(self, method: str, names: list[str]) -> list[int]:
        """Queue names for ``method``, joining the last queued request of the same
        method while it has room. Returns the request id of each name."""
        chunk = self.options.max_params_per_request
        q = self._outq
        ids: list[int] = []
        for name in names:
            last = q[-1] if q else None
            if last is None or last.method != method or len(last.names) >= chunk:
                last = _Req(method, [], self._new_id())
                q.append(last)
            last.names.append(name)
            ids.append(last.id)
        return ids

    def _enqueue_subscribe(self, streams: list[_Stream]) -> None:
        ids = self._enqueue(_SUBSCRIBE, [st.name for st in streams])
        for st, rid in zip(streams, ids, strict=True):
            st.state = _St.QUEUED
            st.req_id = rid
            st.retry_at = None

    def _pump(self, now: Now, out: Step) -> None:
        """Release queued requests while the 1 s window has room (§3.2)."""
        q = self._outq
        if not q or not self.connected:
            return
        if self.passive:  # replay: what was sent is in the capture (observe_sent)
            q.clear()
            return
        sent = self._sent
        limit = self.options.max_outbound_per_s
        while q:
            while sent and now.mono - sent[0] >= _WINDOW_S:
                sent.popleft()
            if len(sent) >= limit:
                self.stats.sends_deferred += 1
                return
            req = q.popleft()
            if not req.names:
                continue
            req.sent_mono = now.mono
            sent.append(now.mono)
            self.stats.sends += 1
            if req.method == _SUBSCRIBE:
                out.sends.append(p.encode_subscribe(req.names, req.id))
                for name in req.names:
                    st = self._by_name.get(name)
                    if st is not None and st.req_id == req.id and st.state is _St.QUEUED:
                        st.state = _St.PENDING
            else:
                out.sends.append(p.encode_unsubscribe(req.names, req.id))
            self._pending[req.id] = req

    def _unqueue(self, st: _Stream) -> None:
        for req in self._outq:
            if req.id == st.req_id and st.name in req.names:
                req.names.remove(st.name)
                return

    # ------------------------------------------------------------------ gaps
    def _regressed(self, st: _Stream, detail: str) -> None:
        """The venue's update ids stay below the last delivered one: a corrupt id
        ran the book ahead (:class:`~gapless.venues.seqsync.GapDetected`
        ``regressed``, or snapshots that keep answering below it), and every
        update since was dropped. The gap is declared by time from the last
        delivered event, with no ``first_seq`` (the ids it would name are the bad
        ones); the bad id is forgotten, or every honest snapshot would be
        refused as older than what the user has."""
        gap = st.gap
        if gap is None:
            st.gap = _OpenGap(GapCause.SEQUENCE_GAP, st.last_ts_ns, None, detail)
        else:  # already open (a disconnect): keep its cause and start, drop the bad id
            st.gap = _OpenGap(gap.cause, gap.start_ts_ns, None, f"{gap.detail}; {detail}")
        st.last_seq = None

    def _open_gap(self, st: _Stream, cause: GapCause, detail: str) -> None:
        if st.gap is not None or st.last_seq is None:
            return  # already open, or nothing was ever delivered on this stream
        st.gap = _OpenGap(cause, st.last_ts_ns, st.last_seq + 1, detail)

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
                detail=detail,
            )
        )

    def _close_open_gap(self, st: _Stream, now: Now, out: Step, why: str) -> None:
        """Report a gap that will never be closed (shutdown, unsubscribe)."""
        gap = st.gap
        if gap is None:
            return
        st.gap = None
        detail = f"{gap.detail} ({why})" if gap.detail else why
        self._emit_gap(st, gap.cause, gap.start_ts_ns, None, gap.first_seq, None, detail, now, out)

    def _note_resync(self, st: _Stream, now: Now, out: Step, *, escalate: bool = True) -> None:
        st.counters.resyncs += 1
        if not escalate:
            return
        times = st.resync_times
        while times and now.mono - times[0] > 60.0:
            times.popleft()
        times.append(now.mono)
        limit = self.options.max_resyncs_per_minute
        if len(times) > limit:
            times.clear()
            out.reconnect = out.reconnect or f"{st.key}: more than {limit} resyncs within a minute"

    def _resync_book(
        self, st: _Stream, cause: GapCause, detail: str, now: Now, out: Step, *, escalate: bool
    ) -> None:
        """Throw the book away (design.md §1.2); the next diff event starts a new
        §3.8 cycle and asks for a snapshot."""
        assert st.sync is not None
        self._open_gap(st, cause, detail)
        st.sync.reset()
        st.snap_wanted = False
        self._note_resync(st, now, out, escalate=escalate)

    def _disturb(
        self, st: _Stream, cause: GapCause, detail: str, now: Now, out: Step, *, escalate: bool
    ) -> None:
        """Data of ``st`` may have been lost: books resync, trades and tickers
        keep an open gap that their next message closes."""
        if st.state is not _St.LIVE:
            return
        if st.sync is not None:
            self._resync_book(st, cause, detail, now, out, escalate=escalate)
        else:
            self._open_gap(st, cause, detail)

    # ------------------------------------------------------------------ lifecycle
    def on_connected(self, conn: str, now: Now) -> Step:
        out = Step()
        self.conn = conn
        self.connected = True
        self.connected_at = now.mono
        self.planned_reconnect = None
        self._outq.clear()
        self._pending.clear()
        self._sent.clear()
        todo: list[_Stream] = []
        for st in self._streams.values():
            self._reset_connection_state(st)
            st.last_data_mono = now.mono
            if st.state is not _St.REJECTED:
                todo.append(st)
        if not self.passive:  # replay: subscriptions come from observe_sent
            self._enqueue_subscribe(todo)
        self._pump(now, out)
        return out

    def _reset_connection_state(self, st: _Stream) -> None:
        st.retry_at = None
        st.snap_wanted = False
        st.snap_inflight = 0
        st.seen_ts_ns = None
        if st.sync is not None:
            st.sync.reset()

    def on_disconnected(self, reason: str, now: Now) -> Step:
        out = Step()
        self.connected = False
        self._outq.clear()
        self._pending.clear()
        self._sent.clear()
        for st in self._streams.values():
            if st.state is _St.REJECTED:
                continue
            self._open_gap(st, GapCause.DISCONNECT, reason)
            self._reset_connection_state(st)
            st.state = _St.IDLE
            st.req_id = None
        return out

    def shutdown(self, now: Now) -> Step:
        """Feed is closing: open gaps are reported with no end (idempotent)."""
        out = Step()
        if self._shut:
            return out
        self._shut = True
        for st in self._streams.values():
            self._close_open_gap(st, now, out, "feed closed before resync")
        return out

    def on_overflow(self, dropped: int, now: Now) -> Step:
        """Frames were dropped between socket and processing: every book resyncs
        (REST), trades and tickers declare the outage with their next message."""
        out = Step()
        detail = f"{dropped} frames dropped"
        for st in self._streams.values():
            self._disturb(st, GapCause.QUEUE_OVERFLOW, detail, now, out, escalate=False)
        return out

    def on_bad_transport_frame(self, reason: str, size: int, now: Now) -> Step:
        out = Step()
        self.stats.bad_frames += 1
        out.events.append(
            BadFrame(
                venue=VENUE,
                local_ts_ns=now.wall_ns,
                conn=self.conn,
                reason=reason,
                size=size,
                excerpt="",
            )
        )
        return out

    def control(self, op: str, spec: StreamSpec, now: Now) -> Step:
        """A user's subscribe/unsubscribe request (from the runtime's outbox).

        While connected the request goes through the outbound pacer; while
        disconnected it only changes the registry replayed on connect. A
        subscription beyond ``max_streams`` is refused with a
        :class:`SubscriptionRejected` (the feed should route it elsewhere)."""
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
            if self.connected:
                self._enqueue_subscribe([self._streams[spec.key]])
        elif op == "unsubscribe":
            st = self._streams.pop(spec.key, None)
            if st is None:
                return out
            del self._by_name[st.name]
            st.forget()
            if st.sync is not None:
                st.sync.detach()
            # the user stops the stream: what was open is reported, nothing is
            # gap-checked across the unsubscribe
            self._close_open_gap(st, now, out, "unsubscribed before resync")
            if self.connected:
                if st.state is _St.QUEUED:
                    self._unqueue(st)
                elif st.state is _St.PENDING or st.state is _St.LIVE:
                    self._enqueue(_UNSUBSCRIBE, [st.name])
        else:
            raise ConfigError(f"unknown control op {op!r}")
        self._pump(now, out)
        return out

    # ------------------------------------------------------------------ dial hooks
    def prepare_dial(self, now: Now) -> RestCall | None:
        return None  # market streams need no token

    def on_dial_rest(self, result: RestResult, now: Now) -> str | None:
        return None

    def on_dial_failed(self, reason: str, now: Now) -> None:
        return None

    @property
    def min_dead_after_s(self) -> float:
        """Binance's server pings (every 20 s, §3.3) are answered inside the transport
        and are invisible here; a quiet market may send nothing else. Dead means no
        frame for longer than the venue's own pong deadline (60 s)."""
        return p.PONG_DEADLINE_S + 5.0

    def redactions(self) -> list[str]:
        return []

    # ------------------------------------------------------------------ passive (replay)
    def observe_sent(self, text: str, now: Now) -> Step:
        """Replay only (``passive=True``): a captured outgoing frame, registered as
        if this adapter had sent it. ``SUBSCRIBE`` puts its streams (added to the
        registry when new) in PENDING under the captured ``id``, so the venue's ack
        or error is correlated as live; ``UNSUBSCRIBE`` is a user's unsubscribe
        (the adapter never unsubscribes on its own). Anything else is ignored."""
        out = Step()
        try:
            msg = _PASSIVE_DECODER.decode(text)
        except (msgspec.DecodeError, RecursionError):
            return out
        if type(msg) is not dict:
            return out
        method, names, rid = msg.get("method"), msg.get("params"), msg.get("id")
        if type(names) is not list:
            return out
        if method == _SUBSCRIBE and type(rid) is int:
            req = _Req(_SUBSCRIBE, [], rid, sent_mono=now.mono)
            for name in names:
                st = self._passive_stream(name)
                if st is None or st.state is _St.LIVE:
                    continue
                st.state = _St.PENDING
                st.req_id = rid
                st.retry_at = None
                req.names.append(st.name)
            if req.names:
                self._pending[rid] = req
        elif method == _UNSUBSCRIBE:
            for name in names:
                found = self._by_name.get(name) if type(name) is str else None
                if found is not None:
                    out.extend(self.control("unsubscribe", found.spec, now))
        return out

    def _passive_stream(self, name: object) -> _Stream | None:
        """The stream a captured SUBSCRIBE names, registered if new."""
        if type(name) is not str:
            return None
        st = self._by_name.get(name)
        if st is not None:
            return st
        symbol, _, suffix = name.partition("@")
        channel = _PASSIVE_CHANNELS.get(suffix)
        if channel is None or not symbol:
            return None
        try:
            self.add(StreamSpec(VENUE, channel, symbol.upper()))
        except ConfigError:
            return None
        return self._by_name.get(name)

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
        adapter live. A depth snapshot answer goes through :meth:`on_rest` for the
        book it belongs to (module docstring); other calls are ignored."""
        path, _, query = url.partition("?")
        if method != "GET" or not path.endswith("/api/v3/depth"):
            return Step()
        named = parse_qs(query).get("symbol")
        symbol = named[0].upper() if named else self._passive_rest_symbol(status, body)
        if symbol is None:
            self.stats.ignored_rest += 1
            return Step()
        return self.on_rest(RestResult(f"depth:{symbol}", status, body, error=error), now)

    def _passive_note_ask(self, st: _Stream) -> None:
        """Passive: the order in which snapshot calls were emitted (live answers come
        back in that order: one REST worker per connection)."""
        self._passive_asks += 1
        self._passive_asked[st.symbol] = self._passive_asks

    def _passive_rest_symbol(self, status: int | None, body: bytes) -> str | None:
        """The book an unnamed depth answer was asked for (module docstring)."""
        books = [s for s in self._streams.values() if s.sync is not None and s.state is _St.LIVE]
        waiting = [
            st for st in books if st.sync is not None and st.sync.state is not SyncState.SYNCED
        ]
        pool = waiting or books
        if len(pool) <= 1:
            return pool[0].symbol if pool else None
        seq: int | None = None
        if status == 200:
            try:
                snap = p.decode_depth_snapshot(body)
            except DecodeError:
                snap = None
            if isinstance(snap, p.DepthSnapshot):
                seq = snap.last_update_id
        candidates: list[tuple[str, bool, int | None]] = []
        for st in pool:
            sync = st.sync
            assert sync is not None
            refs = (sync.first_seq, sync.seq, sync.pending_snapshot, st.last_seq)
            ref = next((v for v in refs if v is not None), None)
            candidates.append((st.symbol, st.snap_inflight > 0, ref))
        return pick_snapshot_owner(candidates, seq, self._passive_asked)

    # ------------------------------------------------------------------ planned close
    def _plan(self, reason: str, out: Step) -> None:
        if self.planned_reconnect is not None:
            return
        self.planned_reconnect = reason
        self.stats.planned_reconnects += 1
        if not self.options.make_before_break:
            out.reconnect = out.reconnect or f"planned: {reason}"

    # ------------------------------------------------------------------ timers
    def on_timer(self, now: Now) -> Step:
        out = Step()
        if not self.connected:
            return out
        opts = self.options
        judge = now.backlog == 0  # the awaited answer may still be queued
        self._pump(now, out)
        if (
            self.planned_reconnect is None
            and now.mono - self.connected_at >= opts.lifetime_s - opts.lifetime_margin_s
        ):
            self._plan(f"connection lifetime {opts.lifetime_s:g} s reached (§3.2)", out)
        if judge:
            self._ack_deadlines(now, out)
        retry: list[_Stream] = []
        stale = opts.book_stale_after_s
        for st in self._streams.values():
            state = st.state
            if state is _St.RETRY:
                if st.retry_at is not None and now.mono >= st.retry_at:
                    retry.append(st)
                continue
            if state is not _St.LIVE or st.sync is None:
                continue
            if st.snap_inflight > 0 and judge and now.mono > st.snap_deadline:
                # the answer is lost (or the runtime dropped the call): ask again
                st.counters.snapshot_timeouts += 1
                st.snap_inflight = 0
                st.snap_wanted = st.snap_wanted or st.sync.state is SyncState.NEED_SNAPSHOT
            if st.snap_wanted:
                self._try_snapshot(st, now, out)
            elif (
                stale is not None
                and judge
                and st.sync.state is SyncState.SYNCED
                and now.mono - st.last_data_mono > stale
            ):
                silent = now.mono - st.last_data_mono
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
                st.last_data_mono = now.mono
                self._resync_book(
                    st, GapCause.STALE, f"no diff event for {silent:.1f} s", now, out, escalate=True
                )
        if retry:
            self._enqueue_subscribe(retry)
        self._pump(now, out)
        return out

    def _ack_deadlines(self, now: Now, out: Step) -> None:
        limit = self.options.subscribe_ack_timeout_s
        for req in list(self._pending.values()):
            if req.sent_mono is None or now.mono - req.sent_mono <= limit:
                continue
            del self._pending[req.id]
            if req.method != _SUBSCRIBE:
                continue  # an unanswered UNSUBSCRIBE loses nothing
            late = False
            for name in req.names:
                st = self._by_name.get(name)
                if st is None or st.req_id != req.id or st.state is not _St.PENDING:
                    continue
                late = True
                out.events.append(
                    SubscriptionRejected(
                        venue=VENUE,
                        local_ts_ns=now.wall_ns,
                        conn=self.conn,
                        stream=st.key,
                        error=f"no acknowledgement within {limit:g} s",
                        retry_in_s=0.0,
                    )
                )
            if late:
                out.reconnect = out.reconnect or f"SUBSCRIBE id {req.id}: no acknowledgement"

    # ------------------------------------------------------------------ REST
    def _rest_backlog_s(self, now: Now) -> float:
        """How long the weight budget may hold our calls back (an estimate)."""
        budget = self.options.rest_budget
        queued = (
            sum(s.snap_inflight for s in self._streams.values() if s.sync is not None)
            * self._depth_weight
        )
        pacing = max(0.0, queued - budget.capacity) / budget.per_second
        return pacing + max(0.0, self._rest_blocked_until - now.mono)

    def _want_snapshot(self, st: _Stream, now: Now, out: Step) -> None:
        st.snap_wanted = True
        self._try_snapshot(st, now, out)

    def _try_snapshot(self, st: _Stream, now: Now, out: Step) -> None:
        """Emit the snapshot call if one is wanted and allowed now (else the timer will)."""
        if (
            not self.connected
            or not st.snap_wanted
            or st.snap_inflight > 0
            or st.state is not _St.LIVE
        ):
            return
        due = max(self._rest_blocked_until, st.snap_retry_at)
        if st.snap_last_mono is not None:
            due = max(due, st.snap_last_mono + self.options.resync_min_interval_s)
        if now.mono < due:
            return
        st.snap_wanted = False
        st.snap_last_mono = now.mono
        st.counters.snapshots_requested += 1
        out.rest.append(
            RestCall(
                key=f"depth:{st.symbol}",
                method="GET",
                url=self._depth_url,
                params=(("symbol", st.symbol), ("limit", str(self.options.snapshot_limit))),
                weight=self._depth_weight,
            )
        )
        st.snap_inflight += 1
        if self.passive:
            self._passive_note_ask(st)
        st.snap_deadline = now.mono + self.options.snapshot_timeout_s + self._rest_backlog_s(now)

    def on_rest(self, result: RestResult, now: Now) -> Step:
        out = Step()
        if not result.key.startswith("depth:"):
            self.stats.ignored_rest += 1
            return out
        st = self._book_stream(result.key[6:])
        if st is None or st.sync is None or not self.connected or st.state is not _St.LIVE:
            self.stats.ignored_rest += 1  # unsubscribed, or answer to an old connection
            return out
        if st.snap_inflight > 0:
            st.snap_inflight -= 1
        status = result.status
        if result.error is not None or status is None:
            self._snapshot_failed(st, f"depth snapshot: {result.error or 'no answer'}", now)
        elif status in (429, 418):
            wait = result.retry_after_s if result.retry_after_s is not None else 60.0
            self._rest_blocked_until = max(self._rest_blocked_until, now.mono + wait)
            self.stats.rest_blocks += 1
            # the runtime's budget holds the other calls in flight until then as well
            later = self._rest_blocked_until + self.options.snapshot_timeout_s
            for other in self._streams.values():
                if other.snap_inflight > 0:
                    other.snap_deadline = max(other.snap_deadline, later)
            st.counters.rate_limited += 1
            st.snap_wanted = st.sync.state is SyncState.NEED_SNAPSHOT
        elif status != 200:
            excerpt = result.body[:120].decode("utf-8", "replace")
            self._snapshot_failed(st, f"depth snapshot: HTTP {status} {excerpt}", now)
        else:
            try:
                snap = p.decode_depth_snapshot(result.body)
            except DecodeError as exc:
                self._bad_rest_body(st, str(exc), result.body, now, out)
                return out
            if isinstance(snap, p.RestError):
                self._snapshot_failed(st, f"depth snapshot: {snap.code} {snap.msg}", now)
            else:
                self._on_snapshot(st, snap, now, out)
        self._try_snapshot(st, now, out)
        return out

    def _snapshot_failed(self, st: _Stream, why: str, now: Now) -> None:
        assert st.sync is not None
        opts = self.options
        st.counters.snapshot_errors += 1
        st.snap_retry_delay = min(
            opts.rest_retry_cap_s, max(opts.rest_retry_base_s, st.snap_retry_delay * 2)
        )
        st.snap_retry_at = now.mono + st.snap_retry_delay
        # a restarted cycle (BUFFERING) asks again with its first event
        st.snap_wanted = st.sync.state is SyncState.NEED_SNAPSHOT

    def _bad_rest_body(self, st: _Stream, reason: str, body: bytes, now: Now, out: Step) -> None:
        self.stats.bad_frames += 1
        out.events.append(
            BadFrame(
                venue=VENUE,
                local_ts_ns=now.wall_ns,
                conn=self.conn,
                reason=f"depth snapshot {st.symbol}: {reason}"[:300],
                size=len(body),
                excerpt=body[:120].decode("utf-8", "replace"),
            )
        )
        self._snapshot_failed(st, reason, now)
        self._try_snapshot(st, now, out)

    def _on_snapshot(self, st: _Stream, snap: p.DepthSnapshot, now: Now, out: Step) -> None:
        sync = st.sync
        assert sync is not None
        if sync.state is SyncState.SYNCED:
            return  # an answer to a repeated request: the book is live already
        if st.last_seq is not None and snap.last_update_id < st.last_seq:
            st.snaps_behind += 1
            if st.snaps_behind <= MAX_SNAPSHOTS_BEHIND:
                # older than what the user already has: using it would repeat update ids
                st.counters.refetches += 1
                st.snap_wanted = sync.state is SyncState.NEED_SNAPSHOT
                return
            # the venue keeps answering below the last delivered id: that id was
            # bad (a corrupt update ran the book ahead before the connection went)
            self._regressed(
                st,
                f"update ids went back: {st.snaps_behind} snapshots in a row at or "
                f"below {snap.last_update_id}, under the last delivered id {st.last_seq}",
            )
        st.snaps_behind = 0
        sync.tap = []
        sync.base = None
        try:
            res = sync.on_depth_snapshot(snap)
        except DecodeError as exc:  # levels the decoder let through but the book refuses
            self._bad_rest_body(st, str(exc), b"", now, out)
            return
        finally:
            applied = sync.tap or []
            sync.tap = None
        st.snap_retry_delay = 0.0
        if isinstance(res, Synced):
            self._on_synced(st, res, applied, now, out)
        elif isinstance(res, Refetch):
            st.counters.refetches += 1
            st.snap_wanted = True
        # Pending (held until the first event decides) and Dropped need nothing

    def _on_synced(
        self, st: _Stream, res: Synced, applied: list[p.DepthUpdate], now: Now, out: Step
    ) -> None:
        """Gap (if one was open), BookSnapshot at ``lastUpdateId``, then the
        buffered events that continue it as BookUpdates."""
        sync = st.sync
        assert sync is not None
        book = sync.book
        if applied and sync.base is not None:
            bids, asks = sync.base
        else:
            bids, asks = book.bids(), book.asks()
        sync.base = None
        snap_seq = res.snapshot_seq
        st.counters.snapshots_fetched += 1
        st.snap_wanted = False
        st.last_data_mono = now.mono
        gap = st.gap
        if gap is not None:
            st.gap = None
            if gap.first_seq is not None and snap_seq < gap.first_seq:
                st.counters.healed += 1  # the snapshot is where we left off
            else:
                end = p.to_ns(applied[0].event_time) if applied else None
                self._emit_gap(
                    st,
                    gap.cause,
                    gap.start_ts_ns,
                    end,
                    gap.first_seq,
                    snap_seq,
                    gap.detail,
                    now,
                    out,
                )
        st.last_seq = snap_seq
        if not applied and st.seen_ts_ns is not None:
            # every event fed so far is inside the snapshot: a lower bound of its time
            st.last_ts_ns = max(st.last_ts_ns or 0, st.seen_ts_ns)
        st.counters.delivered += 1
        out.events.append(
            BookSnapshot(
                venue=VENUE,
                local_ts_ns=now.wall_ns,
                symbol=st.symbol,
                exchange_ts_ns=0,  # a REST snapshot carries no time (§3.7)
                stream=st.key,
                depth=book.depth,
                bids=bids,
                asks=asks,
                checksum=None,
                book=book.view,
                seq=snap_seq,
            )
        )
        for ev in applied:
            self._deliver_update(st, ev, now, out)

    def _deliver_update(
        self, st: _Stream, ev: p.DepthUpdate, now: Now, out: Step, applied: Applied | None = None
    ) -> None:
        """BookUpdate of ``ev`` (its levels as applied, when known: no Decimals made)."""
        assert st.sync is not None
        if applied is None:
            bids: Sequence[Level] = _levels(ev.bids)
            asks: Sequence[Level] = _levels(ev.asks)
        else:
            pp, qp = applied.price_precision, applied.qty_precision
            bids, asks = Levels(applied.bids, pp, qp), Levels(applied.asks, pp, qp)
        ts = p.to_ns(ev.event_time)
        self._delivered(st, st.sync.book, ts, ev.final_update_id, bids, asks, now, out)

    def _delivered(
        self,
        st: _Stream,
        book: Book,
        ts: int,
        seq: int,
        bids: Sequence[Level],
        asks: Sequence[Level],
        now: Now,
        out: Step,
    ) -> None:
        book.last_ts_ns = ts
        st.last_seq = seq
        st.last_ts_ns = ts
        st.counters.delivered += 1
        out.events.append(
            BookUpdate(
                venue=VENUE,
                local_ts_ns=now.wall_ns,
                symbol=st.symbol,
                exchange_ts_ns=ts,
                stream=st.key,
                depth=book.depth,
                bids=bids,
                asks=asks,
                checksum=None,
                book=book.view,
                seq=seq,
            )
        )

    # ------------------------------------------------------------------ frames
    def on_frame(self, data: str | bytes, now: Now) -> Step:
        out = Step()
        self.stats.frames += 1
        try:
            raw = p.load(data, self._max_json_depth)
            if type(raw) is dict and self.fast_path:
                d = raw.get("data")
                if (
                    type(d) is dict
                    and d.get("e") == "depthUpdate"
                    and self._fast_depth(raw.get("stream"), d, now, out)
                ):
                    self._pump(now, out)
                    return out
            msg = p.classify(raw)
        except DecodeError as exc:
            self._bad_frame(str(exc), data, now, out, self._attribute(data))
            self._pump(now, out)
            return out
        name: str | None = None
        payload: p.Payload
        if isinstance(msg, p.Combined):
            name = msg.stream
            payload = msg.data
        else:
            payload = msg
        try:
            self._dispatch(name, payload, data, now, out)
        except DecodeError as exc:
            self._bad_frame(str(exc), data, now, out, self._attribute(data))
        self._pump(now, out)
        return out

    def _attribute(self, data: str | bytes) -> list[_Stream] | None:
        """The stream a bad frame names in its envelope, if it can be read; None
        (could be anything) otherwise."""
        depth = self._max_json_depth
        if depth is not None and json_depth_over(data, depth) is not None:
            return None  # never hand a frame refused for its nesting to a decoder
        try:
            raw = msgspec.json.decode(data)
        except (msgspec.DecodeError, ValueError, TypeError, RecursionError):
            return None
        if type(raw) is dict:
            name = raw.get("stream")
            if type(name) is str:
                st = self._by_name.get(name)
                if st is not None:
                    return [st]
                return []  # a stream we do not have: nothing of ours was touched
        return None

    def _bad_frame(
        self, reason: str, data: str | bytes, now: Now, out: Step, affected: list[_Stream] | None
    ) -> None:
        """Count, report, and resync what the frame could have touched."""
        self.stats.bad_frames += 1
        excerpt = data[:120] if isinstance(data, str) else data[:120].decode("utf-8", "replace")
        out.events.append(
            BadFrame(
                venue=VENUE,
                local_ts_ns=now.wall_ns,
                conn=self.conn,
                reason=reason[:300],
                size=len(data),
                excerpt=excerpt,
            )
        )
        targets = list(self._streams.values()) if affected is None else affected
        for st in targets:
            self._disturb(st, GapCause.BAD_FRAME, reason[:200], now, out, escalate=True)

    def _target(
        self, name: str | None, channel: str, symbol: str, data: str | bytes, now: Now, out: Step
    ) -> _Stream | None:
        """The stream a data payload belongs to, if it is acknowledged."""
        if name is not None:
            st = self._by_name.get(name)
            if st is None:
                self.stats.unrouted += 1
                return None
            if st.channel != channel or st.symbol != symbol:
                self._bad_frame(
                    f"{channel} payload for {symbol} on stream {name}", data, now, out, [st]
                )
                return None
        else:
            found = self._streams.get(f"{VENUE}:{channel}:{symbol}")
            if found is None:
                self.stats.unrouted += 1
                return None
            st = found
        if st.state is not _St.LIVE:
            self.stats.before_ack += 1
            return None
        st.last_data_mono = now.mono
        return st

    def _dispatch(
        self, name: str | None, payload: p.Payload, data: str | bytes, now: Now, out: Step
    ) -> None:
        if isinstance(payload, p.DepthUpdate):
            st = self._target(name, "book", payload.symbol, data, now, out)
            if st is not None:
                try:
                    self._on_depth(st, payload, now, out)
                except DecodeError as exc:
                    self._bad_frame(str(exc), data, now, out, [st])
        elif isinstance(payload, p.TradeMsg):
            st = self._target(name, "trade", payload.symbol, data, now, out)
            if st is not None:
                self._on_trade(st, payload, now, out)
        elif isinstance(payload, p.BookTicker):
            st = self._target(name, "book_ticker", payload.symbol, data, now, out)
            if st is not None:
                self._on_book_ticker(st, payload, now, out)
        elif isinstance(payload, p.Ack):
            self._on_ack(payload, now, out)
        elif isinstance(payload, p.ErrorMsg):
            self._on_error(payload, now, out)
        elif isinstance(payload, p.ServerShutdown):
            self._plan("serverShutdown received (§3.4)", out)
        # DepthSnapshot (partial depth streams) and UnknownMsg are not ours: ignored

    def _on_ack(self, msg: p.Ack, now: Now, out: Step) -> None:
        rid = msg.id
        if type(rid) is not int:
            return
        req = self._pending.pop(rid, None)
        if req is None or req.method != _SUBSCRIBE:
            return
        for name in req.names:
            st = self._by_name.get(name)
            if st is None or st.req_id != rid or st.state is not _St.PENDING:
                continue
            st.state = _St.LIVE
            st.retry_delay = 0.0
            st.last_data_mono = now.mono
            if st.sync is not None:
                st.sync.reset()
                st.snap_wanted = False
            out.events.append(
                Subscribed(
                    venue=VENUE,
                    local_ts_ns=now.wall_ns,
                    conn=self.conn,
                    stream=st.key,
                    exchange_ts_ns=None,  # Binance acks carry no time
                )
            )

    def _on_error(self, msg: p.ErrorMsg, now: Now, out: Step) -> None:
        if msg.id is None:  # unparsable request: concerns whatever still waits
            reqs = [r for r in self._pending.values() if r.method == _SUBSCRIBE]
            for r in reqs:
                del self._pending[r.id]
        else:
            found = self._pending.pop(msg.id, None) if type(msg.id) is int else None
            reqs = [found] if found is not None and found.method == _SUBSCRIBE else []
        text = f"{msg.code}: {msg.msg}"
        low = msg.msg.lower()
        splittable = any(s in low for s in _SPLITTABLE)
        permanent = any(s in low for s in _PERMANENT)
        for req in reqs:
            streams = [
                st
                for name in req.names
                if (st := self._by_name.get(name)) is not None
                and st.req_id == req.id
                and st.state is _St.PENDING
            ]
            if splittable and len(streams) > 1:
                self.stats.split_requests += 1
                half = len(streams) // 2
                for part in (streams[:half], streams[half:]):
                    half_req = _Req(_SUBSCRIBE, [s.name for s in part], self._new_id())
                    self._outq.append(half_req)
                    for s in part:
                        s.state = _St.QUEUED
                        s.req_id = half_req.id
                continue
            for st in streams:
                self._reject(st, text, permanent, now, out)

    def _reject(self, st: _Stream, error: str, permanent: bool, now: Now, out: Step) -> None:
        opts = self.options
        self._open_gap(st, GapCause.SUBSCRIPTION_REJECTED, error)
        if st.sync is not None:
            st.sync.reset()
        st.req_id = None
        retry: float | None
        if permanent:
            st.state = _St.REJECTED
            retry = None
        else:
            st.retry_delay = min(
                opts.reject_retry_cap_s, max(opts.reject_retry_base_s, st.retry_delay * 2)
            )
            retry = st.retry_delay
            st.state = _St.RETRY
            st.retry_at = now.mono + retry
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

    # ------------------------------------------------------------------ data
    def _on_depth(self, st: _Stream, ev: p.DepthUpdate, now: Now, out: Step) -> None:
        sync = st.sync
        assert sync is not None
        was_live = sync.state is SyncState.SYNCED
        if not was_live:
            sync.tap = []
            sync.base = None
        try:
            res = sync.on_event(ev)
        finally:
            applied = sync.tap or []
            sync.tap = None
        st.seen_ts_ns = p.to_ns(ev.event_time)
        if isinstance(res, Applied):
            self._deliver_update(st, ev, now, out, res)
        elif isinstance(res, Dropped):
            if was_live:
                st.counters.duplicates_dropped += 1
        elif isinstance(res, Synced):  # a held snapshot and the first event that fits it
            self._on_synced(st, res, applied, now, out)
        elif isinstance(res, GapDetected):
            if res.regressed:
                self._regressed(
                    st,
                    f"update ids went back: {self.options.max_stale_updates + 1} events in a "
                    f"row at or below the book's id {res.expected - 1} (latest ends at {res.got})",
                )
                self._note_resync(st, now, out)
            elif res.was_live:
                self._open_gap(
                    st,
                    GapCause.SEQUENCE_GAP,
                    f"update id {res.expected} expected, event starts at {res.got}",
                )
                self._note_resync(st, now, out)
            self._want_snapshot(st, now, out)
        elif isinstance(res, Refetch):  # the held snapshot is older than the stream
            st.counters.refetches += 1
            self._want_snapshot(st, now, out)
        elif res.fetch_snapshot:  # NeedSnapshot: first event of a cycle
            self._want_snapshot(st, now, out)

    def _fast_depth(self, name: object, d: dict[str, Any], now: Now, out: Step) -> bool:
        """The hot path: a combined-stream ``depthUpdate`` (§3.6) that continues a live
        book (§3.8 step 5), read straight from the JSON into fixed-point levels at the
        book's precisions, applied and delivered.

        Returns False, having changed nothing, for anything else (a book not live, a
        gap or repeat, an open gap, more decimals than the book's, any malformed
        part): the general path then decodes, reports and resyncs as usual."""
        st = self._by_name.get(name) if type(name) is str else None
        if st is None or st.state is not _St.LIVE or st.gap is not None:
            return False
        sync = st.sync
        if sync is None or d.get("s") != st.symbol:
            return False
        first = d.get("U")
        last = d.get("u")
        etime = d.get("E")
        if (
            type(first) is not int
            or type(last) is not int
            or type(etime) is not int
            or not 0 <= first <= last <= _I64
            or not 0 <= etime <= _I64
        ):
            return False
        book = sync.book
        pp = book.price_precision
        qp = book.qty_precision
        prices = self._prices.at(pp)
        bids: list[tuple[int, int]] = []
        asks: list[tuple[int, int]] = []
        for side, out_side in ((d.get("b"), bids), (d.get("a"), asks)):
            if type(side) is not list:
                return False
            for level in side:
                if type(level) is not list or len(level) != 2:
                    return False
                price = fixed_plain_cached(prices, level[0], pp)
                qty = fixed_plain(level[1], qp)
                if price is None or qty is None:
                    return False
                out_side.append((price, qty))
        if not sync.apply_live(first, last, bids, asks):
            return False
        self.stats.fast_frames += 1
        st.last_data_mono = now.mono
        ts = p.to_ns(etime)
        st.seen_ts_ns = ts
        self._delivered(st, book, ts, last, Levels(bids, pp, qp), Levels(asks, pp, qp), now, out)
        return True

    def _on_trade(self, st: _Stream, t: p.TradeMsg, now: Now, out: Step) -> None:
        check = st.trades
        assert check is not None
        res = check.on_trade(t)
        if isinstance(res, SeqDuplicate):
            st.counters.duplicates_dropped += 1
            return
        ts = p.to_ns(t.trade_time)
        gap = st.gap
        st.gap = None
        if isinstance(res, SeqGap):
            if gap is not None:
                cause, start, detail = gap.cause, gap.start_ts_ns, gap.detail
            else:
                cause, start = GapCause.SEQUENCE_GAP, st.last_ts_ns
                detail = f"trade id jumped from {res.expected - 1} to {res.got}"
            self._emit_gap(st, cause, start, ts, res.expected, res.got - 1, detail, now, out)
        elif gap is not None:
            st.counters.healed += 1  # the next trade is exactly the one after the last
        st.last_seq = t.trade_id
        st.last_ts_ns = ts
        st.counters.delivered += 1
        out.events.append(
            Trade(
                venue=VENUE,
                local_ts_ns=now.wall_ns,
                symbol=st.symbol,
                exchange_ts_ns=ts,
                stream=st.key,
                trade_id=t.trade_id,
                price=Decimal(t.price),
                qty=Decimal(t.qty),
                side=t.side,
            )
        )

    def _on_book_ticker(self, st: _Stream, bt: p.BookTicker, now: Now, out: Step) -> None:
        last = st.last_seq
        if last is not None and bt.update_id <= last:
            st.counters.duplicates_dropped += 1
            return
        gap = st.gap
        if gap is not None:
            st.gap = None
            first = gap.first_seq
            if first is not None and bt.update_id - 1 < first:
                st.counters.healed += 1
            else:
                self._emit_gap(st, gap.cause, 0, 0, first, bt.update_id - 1, gap.detail, now, out)
        st.last_seq = bt.update_id
        st.last_ts_ns = 0  # bookTicker carries no time (§3.6)
        st.counters.delivered += 1
        out.events.append(
            BookTicker(
                venue=VENUE,
                local_ts_ns=now.wall_ns,
                symbol=st.symbol,
                exchange_ts_ns=0,
                stream=st.key,
                bid=Decimal(bt.bid),
                bid_qty=Decimal(bt.bid_qty),
                ask=Decimal(bt.ask),
                ask_qty=Decimal(bt.ask_qty),
                update_id=bt.update_id,
            )
        )


def _levels(levels: tuple[p.Level, ...]) -> tuple[Level, ...]:
    return tuple(Level(Decimal(price), Decimal(qty)) for price, qty in levels)
