"""KuCoin Spot private topics: the account's orders and balances, pure (protocols.md §2).

One :class:`KucoinPrivateAdapter` serves the logical private connection and
survives across reconnects. It keeps the user's view of the account (every
order it has seen, every balance) and never lets that view go silently
stale. It follows :class:`gapless.venues.kraken.private.KrakenPrivateAdapter`;
the differences come from KuCoin's protocol:

- **Bullet per dial** (§2.1, §2.2): :meth:`prepare_dial` returns a signed
  ``POST /api/v1/bullet-private`` (KC-API-KEY, -SIGN, -TIMESTAMP from
  ``now.wall_ns``, -PASSPHRASE signed with key version 2, -KEY-VERSION 2).
  The token is never reused: every dial gets a new bullet, so ``401 token is
  expired`` (error frame or refused upgrade) is an ordinary reconnect. A
  refused bullet (``400003`` bad key, ``400004`` passphrase, ``400005``
  signature, ``400002`` timestamp) is returned as the dial failure reason;
  the runtime backs off (the reason names the code). Tokens are listed by
  :meth:`redactions` (raw and URL-encoded).
- **Welcome, keepalive, subscribe** (§2.3): nothing is sent before the
  welcome (``id`` must equal our ``connectId``; ``welcome_timeout_s`` 5 s, the
  SDK's rule); a JSON ``ping`` every ``pingInterval`` of the bullet, dead
  after ``pingTimeout`` without the ``pong``. ``/spotMarket/tradeOrdersV2``
  and ``/account/balance`` are subscribed with ``privateChannel: true`` and
  ``response: true``; acks are matched by id. An error frame answering a
  subscribe is a :class:`~gapless.events.SubscriptionRejected` and the topic
  is retried with capped exponential backoff (``subscribe_retry_s`` doubling
  up to ``subscribe_retry_cap_s``).
- **No snapshot, no sequence on the private topics** (§2.7): the REST state
  is the snapshot (design.md §1.2). After both subscriptions are acked on a
  connection, the adapter fetches (signed) ``GET /api/v1/orders?status=active``
  (every page, ``currentPage``/``pageSize``), ``GET /api/v1/accounts?type=trade``
  and, for every order the user saw open that is no longer active, ``GET
  /api/v1/orders/{orderId}`` (its final state). Differences are delivered as
  :class:`~gapless.events.OrderUpdate` / :class:`~gapless.events.BalanceUpdate`
  with ``source="reconciled"`` (``"snapshot"`` on the first sync), after a
  :class:`~gapless.events.Gap` on each private stream (cause ``disconnect``;
  ``start_ts_ns`` = the time of the last event seen on it, ``end_ts_ns`` = the
  resync time), then a :class:`~gapless.events.Reconciled`. The phase is
  LIVE only after it.
- **Messages during the REST snapshot** are buffered, then applied in arrival
  order on top of the snapshot, with these rules:

  * ``orderChange`` is applied only if it moves the order *forward* from the
    reconciled view: an order not known, a closed state for an open order, a
    larger ``filledSize``, or a new ``size`` (amend). Fills are monotonic and
    ``done`` is final, so content alone tells a change already in the REST
    answer from a newer one (the REST order has no update time).
  * ``account.balance`` carries absolute values: a message is applied if its
    ``time`` is not older than the accounts request's send time minus
    ``clock_tolerance_s`` (5 s: KuCoin refuses a signature whose timestamp is
    more than 5 s off, §2.2, so our clock is within 5 s of the venue's).
    Applying an absolute value older than the snapshot is harmless: the
    subscription was acked before the REST call, so every later change of
    that currency follows it in the stream.

- **Undetectable loss** (§2.7): KuCoin numbers nothing on the private topics,
  so a message the venue never delivers on a live connection cannot be
  noticed; only the next reconnect's reconciliation repairs the view. A
  frame that *arrives* but cannot be read (naming a private topic, or any
  unreadable frame) is a ``BadFrame`` and re-runs the REST sync in place
  (a ``bad_frame`` Gap on the affected streams).
- **Order entry** is not offered over KuCoin's WebSocket here: :meth:`gate`
  refuses every request (``unsupported``) and :meth:`order` answers
  ``OrderResponse(outcome="refused")`` at once; use KuCoin's REST API.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, field
from decimal import Decimal
from urllib.parse import quote

from gapless.errors import ConfigError, DecodeError, LocalProtocolError
from gapless.events import (
    BadFrame,
    BalanceUpdate,
    Event,
    GapCause,
    OrderResponse,
    OrderUpdate,
    Reconciled,
    Subscribed,
    SubscriptionRejected,
    WatchdogFired,
)
from gapless.secrets import Credentials, Secret
from gapless.venues.account import AccountView, private_gap
from gapless.venues.base import Now, Phase, RestCall, RestResult, Step, StreamSpec
from gapless.venues.kraken.private import OrderRequest
from gapless.venues.kucoin import private_protocol as pp
from gapless.venues.kucoin import protocol as p
from gapless.venues.kucoin.signing import auth_headers

__all__ = [
    "BALANCES",
    "ORDERS",
    "PRIVATE_CHANNELS",
    "KucoinPrivateAdapter",
    "KucoinPrivateOptions",
    "KucoinPrivateStats",
    "balances_stream",
    "orders_stream",
]

VENUE = "kucoin"
ORDERS = "orders"
BALANCES = "balances"
PRIVATE_CHANNELS = (ORDERS, BALANCES)
_TOPICS = {ORDERS: pp.TOPIC_ORDERS, BALANCES: pp.TOPIC_BALANCE}
_OPEN = frozenset({"new", "partially_filled"})
_AUTH_CODES = {
    "400001": "missing KC-API header",
    "400002": "KC-API-TIMESTAMP invalid (clock more than 5 s off)",
    "400003": "KC-API-KEY does not exist",
    "400004": "KC-API-PASSPHRASE error",
    "400005": "signature error",
    "400006": "IP not whitelisted",
    "400007": "access denied",
}


def orders_stream() -> str:
    return f"{VENUE}:{ORDERS}:*"


def balances_stream() -> str:
    return f"{VENUE}:{BALANCES}:*"


@dataclass(frozen=True, slots=True)
class KucoinPrivateOptions:
    """Phase-named settings (seconds). ``url`` is informational: the WebSocket
    endpoint comes from each bullet (§2.1). ``ping_interval_s`` /
    ``pong_timeout_s`` None: the bullet's ``pingInterval`` / ``pingTimeout``."""

    rest_url: str = p.REST_URL
    url: str = "wss://ws-api-spot.kucoin.com/"
    request_timeout_s: float = 10.0
    welcome_timeout_s: float = p.WELCOME_TIMEOUT_S
    subscribe_ack_timeout_s: float = 10.0
    snapshot_timeout_s: float = 30.0
    ping_interval_s: float | None = None
    pong_timeout_s: float | None = None
    subscribe_retry_s: float = 2.0
    subscribe_retry_cap_s: float = 60.0
    reconcile_retry_s: float = 1.0
    reconcile_retry_cap_s: float = 30.0
    page_size: int = 50
    clock_tolerance_s: float = 5.0
    max_closed_orders: int = 10_000
    max_buffer: int = 100_000

    def __post_init__(self) -> None:
        if not self.rest_url.startswith(("http://", "https://")):
            raise ConfigError("rest_url must be an http(s) URL")
        if not 10 <= self.page_size <= 500:
            raise ConfigError("page_size must be 10..500 (KuCoin's pageSize range)")
        if self.welcome_timeout_s <= 0 or self.snapshot_timeout_s <= 0:
            raise ConfigError("timeouts must be positive")


@dataclass(slots=True)
class KucoinPrivateStats:
    order_changes: int = 0
    balance_changes: int = 0
    buffered: int = 0
    buffered_dropped: int = 0  # buffered messages already reflected in the snapshot
    reconciliations: int = 0
    reconciled_orders: int = 0
    reconciled_balances: int = 0
    rest_calls: int = 0
    rest_failures: int = 0
    bullets: int = 0
    bullet_failures: int = 0
    tokens_expired: int = 0
    subscribe_rejects: int = 0
    orders_refused: int = 0
    pings: int = 0
    pongs: int = 0


class _Sub(enum.Enum):
    WANTED = "wanted"  # to subscribe after the welcome
    PENDING = "pending"  # subscribe sent, no ack
    SYNCING = "syncing"  # acked; the REST snapshot is not applied yet
    LIVE = "live"
    RETRY = "retry"  # refused; subscribe again at ``retry_at``


@dataclass(slots=True)
class _Channel:
    name: str
    state: _Sub = _Sub.WANTED
    req_id: str | None = None
    since: float = 0.0
    synced_once: bool = False
    last_ts: int | None = None  # time of the last event delivered (or of the last sync)
    gap: tuple[GapCause, str, int | None] | None = None  # cause, detail, start
    retry_at: float = 0.0
    retry_delay: float = 0.0


@dataclass(slots=True)
class _Sync:
    """One REST snapshot in progress (orders pages, order details, accounts)."""

    reason: str
    channels: set[str]
    started: float
    waiting: set[str] = field(default_factory=set)
    retry: list[tuple[str, float]] = field(default_factory=list)
    failures: dict[str, int] = field(default_factory=dict)
    active: dict[str, pp.RestOrder] = field(default_factory=dict)
    details: dict[str, pp.RestOrder] = field(default_factory=dict)
    unresolved: set[str] = field(default_factory=set)
    pages_done: bool = False
    accounts: list[pp.RestAccount] | None = None
    accounts_sent_ns: int = 0
    buffer: list[pp.OrderChange | pp.BalanceChange] = field(default_factory=list)
    rerun: bool = False


class KucoinPrivateAdapter(AccountView):
    """The account's orders and balances over KuCoin's private topics (module docstring)."""

    venue = VENUE
    private = True
    needs_rest = True

    def __init__(
        self, credentials: Credentials, options: KucoinPrivateOptions | None = None
    ) -> None:
        if not isinstance(credentials, Credentials):
            raise ConfigError("KuCoin private topics need Credentials")
        if credentials.passphrase is None:
            raise ConfigError("KuCoin private topics need the API passphrase")
        self.options = options or KucoinPrivateOptions()
        super().__init__(self.options.max_closed_orders)
        self._creds = credentials
        self._passphrase: Secret = credentials.passphrase
        self.stats = KucoinPrivateStats()
        self.bad_frames = 0
        self.conn = ""
        self.connected = False
        self.welcomed = False
        self.last_dial_error: str | None = None
        self.last_rest_error: str | None = None
        self._channels: dict[str, _Channel] = {}
        self._token: Secret | None = None
        self._endpoint: str | None = None
        self._connect_id: str | None = None
        self._spent: list[str] = []
        self._ping_interval_s = 18.0
        self._pong_timeout_s = 10.0
        self._connected_at = 0.0
        self._next_ping = 0.0
        self._ping: tuple[str, float] | None = None
        self._ids = 0
        self._balances: dict[str, tuple[Decimal, Decimal, Decimal]] = {}  # total, avail, hold
        self._sync: _Sync | None = None
        self._early: list[pp.OrderChange | pp.BalanceChange] = []
        self._blind_reason = "initial snapshot"
        self._closing = False
        self.closing_complete = False

    def __repr__(self) -> str:
        return f"KucoinPrivateAdapter(conn={self.conn!r}, streams={self.streams()})"

    # ------------------------------------------------------------------ registry
    def add(self, spec: StreamSpec) -> None:
        if spec.venue != VENUE or spec.channel not in PRIVATE_CHANNELS or spec.symbol != "*":
            raise ConfigError(f"not a KuCoin private stream: {spec.key}")
        self._channels.setdefault(spec.channel, _Channel(spec.channel))

    # ------------------------------------------------------------------ the view
    def balances(self) -> dict[str, Decimal]:
        """``{currency: total}`` (``available``/``hold`` are on the events)."""
        return {c: v[0] for c, v in self._balances.items()}

    @property
    def reconciling(self) -> bool:
        return self._sync is not None

    # ------------------------------------------------------------------ runtime seam
    @property
    def url(self) -> str:
        """The connect URL **with the token** (for the transport only; never log it)."""
        if self._token is None or self._endpoint is None or self._connect_id is None:
            raise LocalProtocolError("no bullet for this dial: prepare_dial/on_dial_rest first")
        return p.connect_url(self._endpoint, self._token, self._connect_id)

    @property
    def phase(self) -> Phase:
        if not self.connected or not self.welcomed:
            return Phase.SUBSCRIBING
        states = {ch.state for ch in self._channels.values()}
        if _Sub.WANTED in states or _Sub.PENDING in states:
            return Phase.SUBSCRIBING
        if _Sub.SYNCING in states or self._sync is not None:
            return Phase.SYNCING
        return Phase.LIVE

    @property
    def min_dead_after_s(self) -> float:
        """Our pings go every pingInterval; only then can a pong prove liveness (§2.3)."""
        return self._ping_interval_s + self._pong_timeout_s

    def redactions(self) -> list[str]:
        out: list[str] = []
        raws = list(self._spent)
        if self._token is not None:
            raws.append(self._token.reveal())
        for raw in raws:
            out.append(raw)
            enc = quote(raw, safe="=")
            if enc != raw:
                out.append(enc)
        return out

    def _redact(self, text: str) -> str:
        for secret in self.redactions():
            text = text.replace(secret, "<redacted>")
        return text

    def _signed(
        self, key: str, method: str, path: str, now: Now, *, weight: float = 1.0
    ) -> RestCall:
        """A signed call (§2.2); ``path`` includes the query, exactly as sent."""
        headers = auth_headers(
            api_key=self._creds.api_key,
            api_secret=self._creds.api_secret,
            passphrase=self._passphrase,
            timestamp_ms=now.wall_ns // 1_000_000,
            method=method,
            request_path=path,
        )
        self.stats.rest_calls += 1
        return RestCall(
            key=key,
            method=method,
            url=self.options.rest_url.rstrip("/") + path,
            weight=weight,
            headers=tuple(headers.items()),
            private=True,
        )

    def prepare_dial(self, now: Now) -> RestCall | None:
        """§2.1: a fresh signed bullet-private before every dial (weight 10)."""
        if self._token is not None:
            self._spend_token()
        self._endpoint = None
        self.stats.bullets += 1
        return self._signed("bullet", "POST", p.BULLET_PRIVATE_PATH, now, weight=10.0)

    def on_dial_rest(self, result: RestResult, now: Now) -> str | None:
        self._token = None
        why = self._bullet(result, now)
        if why is not None:
            self.stats.bullet_failures += 1
            self.last_dial_error = why
        return why

    def _bullet(self, result: RestResult, now: Now) -> str | None:
        if result.error is not None or result.status is None:
            return f"bullet-private request failed: {result.error or 'no answer'}"
        try:
            bullet = p.decode_bullet(result.body)
        except DecodeError as exc:
            return self._redact(f"bad bullet-private answer (HTTP {result.status}): {exc}")[:300]
        if isinstance(bullet, p.RestError):
            hint = _AUTH_CODES.get(bullet.code)
            text = f"bullet-private refused: code {bullet.code} {bullet.msg}"
            if hint:
                text += f" ({hint}; check the API key, secret and passphrase)"
            return text[:300]
        if result.status != 200:
            return f"bullet-private refused: HTTP {result.status}"
        servers = [s for s in bullet.servers if s.protocol == "websocket"] or list(bullet.servers)
        server = servers[0]
        self._token = bullet.token
        self._endpoint = server.endpoint
        self._connect_id = str(now.wall_ns)
        o = self.options
        self._ping_interval_s = o.ping_interval_s or server.ping_interval_s or 18.0
        self._pong_timeout_s = o.pong_timeout_s or server.ping_timeout_s or 10.0
        return None

    def on_dial_failed(self, reason: str, now: Now) -> None:
        self._spend_token()  # §2.1: a new bullet for the next dial

    def _spend_token(self) -> None:
        if self._token is not None:
            self._spent = [*self._spent[-7:], self._token.reveal()]
        self._token = None

    def new_req_id(self) -> int:
        self._ids += 1
        return self._ids

    def _next_id(self) -> str:
        return str(self.new_req_id())

    # ------------------------------------------------------------------ lifecycle
    def on_connected(self, conn: str, now: Now) -> Step:
        self.conn = conn
        self.connected = True
        self.welcomed = False
        self._connected_at = now.mono
        self._ping = None
        self._sync = None
        self._early.clear()
        for ch in self._channels.values():
            if ch.state is not _Sub.RETRY:
                ch.state = _Sub.WANTED
            ch.req_id = None
            ch.since = now.mono
        return Step()

    def on_disconnected(self, reason: str, now: Now) -> Step:
        self.connected = False
        self.welcomed = False
        self._spend_token()
        self._ping = None
        self._blind_reason = "reconnect"
        for ch in self._channels.values():
            if ch.synced_once and ch.gap is None:
                ch.gap = (GapCause.DISCONNECT, self._redact(reason)[:200], ch.last_ts)
            if ch.state is not _Sub.RETRY:
                ch.state = _Sub.WANTED
        self._sync = None  # its answers and buffer belong to the old connection
        self._early.clear()
        if self._closing:
            self.closing_complete = True
        return Step()

    def shutdown(self, now: Now) -> Step:
        """The feed is closing: gaps still open are reported without an end."""
        out = Step()
        for ch in self._channels.values():
            if ch.gap is None and ch.synced_once and ch.state is not _Sub.LIVE:
                ch.gap = (GapCause.SHUTDOWN, "feed closed before resync", ch.last_ts)
            if ch.gap is not None:
                self._emit_gap(ch, None, now, out.events)
        return out

    def closing(self, now: Now) -> Step:
        """A clean shutdown starts: KuCoin has no dead man's switch to disarm."""
        self._closing = True
        self.closing_complete = True
        return Step()

    def control(self, op: str, spec: StreamSpec, now: Now) -> Step:
        out = Step()
        if op == "subscribe":
            self.add(spec)
            ch = self._channels[spec.channel]
            if self.welcomed and ch.state is _Sub.WANTED:
                self._subscribe(ch, now, out)
        elif op == "unsubscribe":
            if spec.channel not in PRIVATE_CHANNELS:
                raise ConfigError(f"not a KuCoin private stream: {spec.key}")
            gone = self._channels.pop(spec.channel, None)
            if gone is not None and self.welcomed:
                text = json.dumps(
                    {
                        "id": self._next_id(),
                        "type": "unsubscribe",
                        "topic": _TOPICS[spec.channel],
                        "privateChannel": True,
                        "response": True,
                    },
                    separators=(",", ":"),
                )
                out.sends.append(text)
        else:
            raise ConfigError(f"unknown control op {op!r}")
        return out

    # ------------------------------------------------------------------ orders (none)
    def gate(self, req: OrderRequest) -> tuple[str, str] | None:
        """Order entry over KuCoin's WebSocket is not supported: always refused."""
        return (
            "unsupported",
            "KuCoin order entry is not offered on the private feed; use KuCoin's REST API",
        )

    def order(self, req: OrderRequest, now: Now) -> Step:
        reason = self.gate(req)
        assert reason is not None
        self.stats.orders_refused += 1
        return Step(
            events=[
                OrderResponse(
                    venue=VENUE,
                    local_ts_ns=now.wall_ns,
                    conn=self.conn,
                    req_id=req.req_id,
                    method=req.method,
                    outcome="refused",
                    cl_ord_id=req.cl_ord_id,
                    error=reason[1],
                )
            ]
        )

    # ------------------------------------------------------------------ subscriptions
    def _subscribe(self, ch: _Channel, now: Now, out: Step) -> None:
        rid = self._next_id()
        ch.req_id = rid
        ch.state = _Sub.PENDING
        ch.since = now.mono
        out.sends.append(
            json.dumps(
                {
                    "id": rid,
                    "type": "subscribe",
                    "topic": _TOPICS[ch.name],
                    "privateChannel": True,
                    "response": True,
                },
                separators=(",", ":"),
            )
        )

    def _on_welcome(self, msg: p.Welcome, now: Now, out: Step) -> None:
        if self.welcomed:
            return
        if msg.id != self._connect_id:
            out.reconnect = "welcome id does not match our connectId"
            return
        self.welcomed = True
        self._next_ping = now.mono + self._ping_interval_s
        for ch in self._channels.values():
            if ch.state is _Sub.WANTED:
                self._subscribe(ch, now, out)

    def _on_ack(self, ack: p.Ack, now: Now, out: Step) -> None:
        ch = next((c for c in self._channels.values() if c.req_id == ack.id), None)
        if ch is None or ch.state is not _Sub.PENDING:
            return
        ch.state = _Sub.SYNCING
        ch.since = now.mono
        ch.retry_delay = 0.0
        out.events.append(
            Subscribed(
                venue=VENUE, local_ts_ns=now.wall_ns, conn=self.conn, stream=f"{VENUE}:{ch.name}:*"
            )
        )
        self._maybe_start_sync(now, out)

    def _on_error(self, err: p.ErrorFrame, now: Now, out: Step) -> None:
        data = self._redact(err.data)[:200]
        if err.kind is p.ErrorKind.TOKEN_EXPIRED:
            self.stats.tokens_expired += 1
            out.reconnect = out.reconnect or f"error {err.code}: {data} (new bullet needed)"
            return
        ch = next((c for c in self._channels.values() if c.req_id == err.id), None)
        if ch is None or ch.state is not _Sub.PENDING:
            return
        o = self.options
        ch.retry_delay = min(o.subscribe_retry_cap_s, max(o.subscribe_retry_s, ch.retry_delay * 2))
        ch.state = _Sub.RETRY
        ch.retry_at = now.mono + ch.retry_delay
        ch.req_id = None
        self.stats.subscribe_rejects += 1
        out.events.append(
            SubscriptionRejected(
                venue=VENUE,
                local_ts_ns=now.wall_ns,
                conn=self.conn,
                stream=f"{VENUE}:{ch.name}:*",
                error=f"error {err.code}: {data}",
                retry_in_s=ch.retry_delay,
            )
        )

    # ------------------------------------------------------------------ frames
    def on_frame(self, data: str | bytes, now: Now) -> Step:
        out = Step()
        try:
            msg = pp.decode(data)
        except DecodeError as exc:
            self._bad_frame(str(exc), data, now, out)
            return out
        if not self.welcomed and not isinstance(msg, (p.Welcome, p.ErrorFrame)):
            return out  # §2.3: nothing is valid before the welcome
        if isinstance(msg, (pp.OrderChange, pp.BalanceChange)):
            self._on_private(msg, now, out)
        elif isinstance(msg, p.Pong):
            if self._ping is not None and (msg.id is None or msg.id == self._ping[0]):
                self._ping = None
                self.stats.pongs += 1
        elif isinstance(msg, p.Ack):
            self._on_ack(msg, now, out)
        elif isinstance(msg, p.ErrorFrame):
            self._on_error(msg, now, out)
        elif isinstance(msg, p.Welcome):
            self._on_welcome(msg, now, out)
        return out

    def _bad_frame(self, reason: str, data: str | bytes, now: Now, out: Step) -> None:
        """Report it; a private message may have been lost (nothing numbers them):
        re-run the REST sync in place for the streams it could belong to."""
        self.bad_frames += 1
        text = data if isinstance(data, str) else data[:8192].decode("utf-8", "replace")
        out.events.append(
            BadFrame(
                venue=VENUE,
                local_ts_ns=now.wall_ns,
                conn=self.conn,
                reason=self._redact(reason)[:300],
                size=len(data),
                excerpt=self._redact(text[:400])[:120],
            )
        )
        if not self.welcomed:
            return
        head = text[:8192]
        names = [n for n, t in _TOPICS.items() if t in head] or list(self._channels)
        for name in names:
            ch = self._channels.get(name)
            if ch is not None and ch.state is _Sub.LIVE:
                ch.gap = ch.gap or (GapCause.BAD_FRAME, reason[:200], ch.last_ts)
                ch.state = _Sub.SYNCING
                ch.since = now.mono
                self._blind_reason = "bad frame"
        self._maybe_start_sync(now, out)

    def on_bad_transport_frame(self, reason: str, size: int, now: Now) -> Step:
        out = Step()
        self.bad_frames += 1
        out.events.append(
            BadFrame(
                venue=VENUE,
                local_ts_ns=now.wall_ns,
                conn=self.conn,
                reason=reason[:300],
                size=size,
                excerpt="",
            )
        )
        # an unreadable frame may have been a private message: reconcile again
        if self.welcomed:
            for ch in self._channels.values():
                if ch.state is _Sub.LIVE:
                    ch.gap = ch.gap or (GapCause.BAD_FRAME, reason[:200], ch.last_ts)
                    ch.state = _Sub.SYNCING
                    ch.since = now.mono
                    self._blind_reason = "bad frame"
            self._maybe_start_sync(now, out)
        return out

    def on_overflow(self, dropped: int, now: Now) -> Step:
        """Frames were dropped: private messages may be among them. Reconnect:
        the REST sync after it rebuilds the view."""
        return Step(reconnect=f"{dropped} frames dropped on the private connection")

    # ------------------------------------------------------------------ private data
    def _on_private(self, msg: pp.OrderChange | pp.BalanceChange, now: Now, out: Step) -> None:
        name = ORDERS if isinstance(msg, pp.OrderChange) else BALANCES
        ch = self._channels.get(name)
        if ch is None or ch.state in (_Sub.WANTED, _Sub.RETRY):
            return
        sync = self._sync
        if ch.state is not _Sub.LIVE or (sync is not None and name in sync.channels):
            # no sync yet: acked, waiting for the other topic's ack
            buf = sync.buffer if sync is not None else self._early
            if len(buf) >= self.options.max_buffer:
                out.reconnect = "private buffer overflow during the REST snapshot"
                return
            buf.append(msg)
            self.stats.buffered += 1
            return
        self._apply(msg, "update", now, out.events)

    def _apply(
        self,
        msg: pp.OrderChange | pp.BalanceChange,
        source: str,
        now: Now,
        events: list[Event],
    ) -> None:
        if isinstance(msg, pp.OrderChange):
            prev = self._orders.get(msg.order_id)
            ev = self._order_event(msg, prev, source, now)
            self._remember(ev)
            events.append(ev)
            self.stats.order_changes += 1
            ch = self._channels.get(ORDERS)
            if ch is not None:
                ch.last_ts = msg.ts_ns
            return
        ts = msg.time_ms * 1_000_000
        old = self._balances.get(msg.currency)
        self._balances[msg.currency] = (msg.total, msg.available, msg.hold)
        change: Decimal | None = None
        if msg.available_change is not None or msg.hold_change is not None:
            change = (msg.available_change or Decimal(0)) + (msg.hold_change or Decimal(0))
        elif old is not None:
            change = msg.total - old[0]
        events.append(
            BalanceUpdate(
                venue=VENUE,
                local_ts_ns=now.wall_ns,
                stream=balances_stream(),
                asset=msg.currency,
                balance=msg.total,
                source=source,
                exchange_ts_ns=ts,
                change=change,
                ref_id=msg.relation_event_id,
                kind=msg.relation_event,
                available=msg.available,
                hold=msg.hold,
            )
        )
        self.stats.balance_changes += 1
        ch = self._channels.get(BALANCES)
        if ch is not None:
            ch.last_ts = ts

    def _order_event(
        self, m: pp.OrderChange, prev: OrderUpdate | None, source: str, now: Now
    ) -> OrderUpdate:
        status = pp.order_status(m, prev.status if prev is not None else None)
        cum = m.filled_size if m.filled_size is not None else (prev.cum_qty if prev else None)
        if m.type == "filled" and m.size is not None and (cum is None or cum < m.size):
            cum = m.size
        fill = m.type == "match"
        last_qty = m.match_size if fill else None
        last_price = m.match_price if fill else None
        cum_cost = prev.cum_cost if prev is not None else None
        if fill and last_qty is not None and last_price is not None:
            cum_cost = (cum_cost or Decimal(0)) + last_qty * last_price
        avg = prev.avg_price if prev is not None else None
        if cum_cost is not None and cum:
            avg = cum_cost / cum
        trade_id: int | None = None
        if fill and m.trade_id is not None and m.trade_id.isdigit() and len(m.trade_id) <= 19:
            trade_id = int(m.trade_id)
        exec_type = {
            "received": "pending_new",
            "open": "new",
            "match": "trade",
            "update": "amended",
            "filled": "filled",
            "canceled": "canceled",
        }[m.type]
        return OrderUpdate(
            venue=VENUE,
            local_ts_ns=now.wall_ns,
            stream=orders_stream(),
            order_id=m.order_id,
            symbol=m.symbol,
            status=status,
            exec_type=exec_type,
            source=source,
            exchange_ts_ns=m.ts_ns,
            cl_ord_id=m.client_oid
            if m.client_oid is not None
            else (prev.cl_ord_id if prev else None),
            side=m.side or (prev.side if prev else None),
            order_type=m.order_type or (prev.order_type if prev else None),
            qty=m.size if m.size is not None else (prev.qty if prev else None),
            limit_price=m.price if m.price is not None else (prev.limit_price if prev else None),
            cum_qty=cum,
            cum_cost=cum_cost,
            avg_price=avg,
            exec_id=m.trade_id if fill else None,
            trade_id=trade_id,
            last_qty=last_qty,
            last_price=last_price,
            liquidity={"maker": "m", "taker": "t"}.get(m.liquidity or "") if fill else None,
        )

    @staticmethod
    def _moves_forward(m: pp.OrderChange, prev: OrderUpdate | None) -> bool:
        """The buffered-message rule for orders (module docstring)."""
        if prev is None:
            return True
        if prev.status not in _OPEN:
            return False
        if m.status == "done" or m.type in ("filled", "canceled"):
            return True
        if m.filled_size is not None and m.filled_size > (prev.cum_qty or Decimal(0)):
            return True
        return m.type == "update" and m.size is not None and m.size != prev.qty

    # ------------------------------------------------------------------ REST sync
    def _maybe_start_sync(self, now: Now, out: Step) -> None:
        if self._sync is not None:
            if any(
                c.state is _Sub.SYNCING and c.name not in self._sync.channels
                for c in self._channels.values()
            ):
                self._sync.rerun = True
            return
        if any(c.state is _Sub.PENDING for c in self._channels.values()):
            return  # one snapshot for every acked topic: wait for the other ack
        names = {c.name for c in self._channels.values() if c.state is _Sub.SYNCING}
        if not names:
            return
        first = all(not self._channels[n].synced_once for n in names)
        sync = self._sync = _Sync(
            reason="initial snapshot" if first else self._blind_reason,
            channels=names,
            started=now.mono,
        )
        sync.buffer.extend(self._early)
        self._early.clear()
        self.stats.reconciliations += 1
        if ORDERS in names:
            self._send(sync, "orders:1", now, out)
        else:
            sync.pages_done = True
        if BALANCES in names:
            self._send(sync, "accounts", now, out)
        else:
            sync.accounts = []

    def _send(self, sync: _Sync, key: str, now: Now, out: Step) -> None:
        if key == "accounts":
            path = f"{pp.ACCOUNTS_PATH}?type=trade"
            sync.accounts_sent_ns = now.wall_ns
        elif key.startswith("orders:"):
            page = key.partition(":")[2]
            size = self.options.page_size
            path = f"{pp.OPEN_ORDERS_PATH}?status=active&currentPage={page}&pageSize={size}"
        else:
            path = pp.order_path(key.partition(":")[2])
        sync.waiting.add(key)
        out.rest.append(self._signed(key, "GET", path, now))

    def on_rest(self, result: RestResult, now: Now) -> Step:
        out = Step()
        sync = self._sync
        if sync is None or result.key not in sync.waiting:
            return out  # an answer for a sync that was abandoned
        sync.waiting.discard(result.key)
        key = result.key
        try:
            if result.error is not None:
                raise DecodeError(result.error)
            if key == "accounts":
                acc = pp.decode_accounts(result.body)
                if isinstance(acc, p.RestError):
                    raise DecodeError(f"code {acc.code} {acc.msg}")
                sync.accounts = acc
            elif key.startswith("orders:"):
                page = pp.decode_orders_page(result.body)
                if isinstance(page, p.RestError):
                    raise DecodeError(f"code {page.code} {page.msg}")
                items, current, total = page
                for ro in items:
                    sync.active[ro.order_id] = ro
                if current < total and current < 10_000:
                    self._send(sync, f"orders:{current + 1}", now, out)
                else:
                    sync.pages_done = True
                    self._ask_details(sync, now, out)
            else:
                oid = key.partition(":")[2]
                det = pp.decode_order(result.body)
                if isinstance(det, p.RestError):
                    if det.code in ("400100", "404000") or result.status == 404:
                        sync.unresolved.add(oid)  # the venue does not know it (any more)
                    else:
                        raise DecodeError(f"code {det.code} {det.msg}")
                elif det.order_id != oid:
                    raise DecodeError("order detail for another order id")
                else:
                    sync.details[oid] = det
        except DecodeError as exc:
            self.stats.rest_failures += 1
            n = sync.failures[key] = sync.failures.get(key, 0) + 1
            o = self.options
            delay = min(o.reconcile_retry_cap_s, o.reconcile_retry_s * 2 ** (n - 1))
            sync.retry.append((key, now.mono + delay))
            self.last_rest_error = self._redact(f"{key}: {exc}")[:300]
            return out
        self._maybe_finish(now, out)
        return out

    def _ask_details(self, sync: _Sync, now: Now, out: Step) -> None:
        for oid, o in self._orders.items():
            if o.status in _OPEN and oid not in sync.active:
                try:
                    pp.order_path(oid)
                except DecodeError:
                    sync.unresolved.add(oid)
                    continue
                self._send(sync, f"order:{oid}", now, out)

    def _maybe_finish(self, now: Now, out: Step) -> None:
        sync = self._sync
        if sync is None or sync.waiting or sync.retry or not sync.pages_done:
            return
        if sync.accounts is None:
            return
        self._sync = None
        sync.channels &= set(self._channels)  # a topic unsubscribed meanwhile
        ev = out.events
        end = now.wall_ns
        for name in sorted(sync.channels):
            ch = self._channels[name]
            if ch.gap is not None:
                self._emit_gap(ch, end, now, ev)
        orders_changed = 0
        balances_changed = 0
        if ORDERS in sync.channels:
            ch = self._channels[ORDERS]
            first = not ch.synced_once
            source = "snapshot" if first else "reconciled"
            for ro in [*sync.active.values(), *sync.details.values()]:
                prev = self._orders.get(ro.order_id)
                o = self._rest_event(ro, prev, source, now)
                if prev is not None and prev.status == o.status and prev.cum_qty == o.cum_qty:
                    continue
                if prev is not None and prev.status not in _OPEN:
                    continue  # closed is final
                self._remember(o)
                ev.append(o)
                if not first:
                    orders_changed += 1
                    self.stats.reconciled_orders += 1
            ch.synced_once = True
            ch.last_ts = max(ch.last_ts or 0, end)
        if BALANCES in sync.channels:
            ch = self._channels[BALANCES]
            first = not ch.synced_once
            source = "snapshot" if first else "reconciled"
            assert sync.accounts is not None
            fresh = {a.currency: (a.balance, a.available, a.holds) for a in sync.accounts}
            for cur, val in fresh.items():
                old = self._balances.get(cur)
                if old == val and not first:
                    continue
                balances_changed += 0 if first else 1
                ev.append(self._balance_event(cur, val, old, source, now))
            for cur, old in list(self._balances.items()):
                if cur not in fresh and old[0] != 0:
                    zero = (Decimal(0), Decimal(0), Decimal(0))
                    fresh[cur] = zero
                    balances_changed += 1
                    ev.append(self._balance_event(cur, zero, old, "reconciled", now))
            self._balances = fresh
            self.stats.reconciled_balances += balances_changed
            ch.synced_once = True
            ch.last_ts = max(ch.last_ts or 0, end)
        for name in sync.channels:
            self._channels[name].state = _Sub.LIVE
        # the messages that arrived while REST was in flight (rules: module docstring)
        floor = sync.accounts_sent_ns - int(self.options.clock_tolerance_s * 1e9)
        for msg in sync.buffer:
            if isinstance(msg, pp.OrderChange):
                if not self._moves_forward(msg, self._orders.get(msg.order_id)):
                    self.stats.buffered_dropped += 1
                    continue
            elif msg.time_ms * 1_000_000 < floor:
                self.stats.buffered_dropped += 1
                continue
            self._apply(msg, "update", now, ev)
        unresolved = sorted(
            oid
            for oid in sync.unresolved
            if oid in self._orders and self._orders[oid].status in _OPEN
        )
        ev.append(
            Reconciled(
                venue=VENUE,
                local_ts_ns=now.wall_ns,
                conn=self.conn,
                reason=sync.reason,
                orders_changed=orders_changed,
                balances_changed=balances_changed,
                open_orders=len(self.open_orders()),
                complete=not unresolved,
                detail=f"REST did not describe {', '.join(unresolved[:5])}" if unresolved else "",
            )
        )
        self._blind_reason = "reconnect"
        if sync.rerun:
            self._maybe_start_sync(now, out)

    def _rest_event(
        self, ro: pp.RestOrder, prev: OrderUpdate | None, source: str, now: Now
    ) -> OrderUpdate:
        avg = None
        if ro.deal_funds is not None and ro.deal_size > 0:
            avg = ro.deal_funds / ro.deal_size
        return OrderUpdate(
            venue=VENUE,
            local_ts_ns=now.wall_ns,
            stream=orders_stream(),
            order_id=ro.order_id,
            symbol=ro.symbol,
            status=pp.rest_order_status(ro),
            exec_type="snapshot" if source == "snapshot" else "reconciled",
            source=source,
            exchange_ts_ns=None if ro.created_ms is None else ro.created_ms * 1_000_000,
            cl_ord_id=ro.client_oid
            if ro.client_oid is not None
            else (prev.cl_ord_id if prev else None),
            side=ro.side or (prev.side if prev else None),
            order_type=ro.order_type or (prev.order_type if prev else None),
            qty=ro.size if ro.size is not None else (prev.qty if prev else None),
            limit_price=ro.price if ro.price else (prev.limit_price if prev else None),
            cum_qty=ro.deal_size,
            cum_cost=ro.deal_funds,
            avg_price=avg,
            fee=ro.fee,
        )

    def _balance_event(
        self,
        cur: str,
        val: tuple[Decimal, Decimal, Decimal],
        old: tuple[Decimal, Decimal, Decimal] | None,
        source: str,
        now: Now,
    ) -> BalanceUpdate:
        return BalanceUpdate(
            venue=VENUE,
            local_ts_ns=now.wall_ns,
            stream=balances_stream(),
            asset=cur,
            balance=val[0],
            source=source,
            change=None if old is None else val[0] - old[0],
            available=val[1],
            hold=val[2],
        )

    def _emit_gap(self, ch: _Channel, end_ns: int | None, now: Now, events: list[Event]) -> None:
        assert ch.gap is not None
        cause, detail, start = ch.gap
        ch.gap = None
        events.append(private_gap(VENUE, ch.name, cause, detail, start, end_ns, now.wall_ns))

    # ------------------------------------------------------------------ timers
    def on_timer(self, now: Now) -> Step:
        out = Step()
        if not self.connected:
            return out
        o = self.options
        if not self.welcomed:
            if now.backlog == 0 and now.mono - self._connected_at > o.welcome_timeout_s:
                out.events.append(
                    WatchdogFired(
                        venue=VENUE, local_ts_ns=now.wall_ns, conn=self.conn, kind="welcome"
                    )
                )
                out.reconnect = "no welcome (a new bullet is needed)"
            return out
        for ch in self._channels.values():
            if ch.state is _Sub.RETRY and now.mono >= ch.retry_at:
                self._subscribe(ch, now, out)
        # keepalive (§2.3)
        if self._ping is None and now.mono >= self._next_ping:
            rid = self._next_id()
            self._ping = (rid, now.mono)
            self._next_ping = now.mono + self._ping_interval_s
            self.stats.pings += 1
            out.sends.append(p.encode_ping(rid))
        sync = self._sync
        if sync is not None and sync.retry:
            due = [k for k, when in sync.retry if now.mono >= when]
            sync.retry = [(k, w) for k, w in sync.retry if now.mono < w]
            for key in due:
                self._send(sync, key, now, out)
        if now.backlog:
            return out  # the answers may be waiting in the queue
        if self._ping is not None and now.mono - self._ping[1] > self._pong_timeout_s:
            out.events.append(
                WatchdogFired(venue=VENUE, local_ts_ns=now.wall_ns, conn=self.conn, kind="pong")
            )
            out.reconnect = "no pong from the private connection"
            return out
        for ch in self._channels.values():
            if ch.state is _Sub.PENDING and now.mono - ch.since > o.subscribe_ack_timeout_s:
                out.reconnect = f"no ack for the {ch.name} subscription"
                return out
        if sync is not None and now.mono - sync.started > o.snapshot_timeout_s:
            out.reconnect = "the REST snapshot of the account did not complete"
        return out
