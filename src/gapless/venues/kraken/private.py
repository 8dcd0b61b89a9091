"""Kraken v2 private channels and order safety, pure (protocols.md §1.6, §1.10-1.13).

One :class:`KrakenPrivateAdapter` serves the logical connection to
``wss://ws-auth.kraken.com/v2`` and survives across reconnects. It keeps the
user's view of the account (every order it has seen, every balance) and
makes sure that view never silently goes stale:

- **Token** (§1.6): a fresh ``GetWebSocketsToken`` is fetched by REST right
  after each connect, just before the private subscribes (a token must be
  used within 15 minutes; once used it stays valid for that connection
  only). ``ESession:Invalid session`` on a subscribe drops the token and
  fetches a new one.
- **Snapshot is authoritative** (design.md §1.2): after every (re)subscribe
  the ``executions`` snapshot (open orders) and ``balances`` snapshot
  replace the view. What changed while we could not see is delivered as
  :class:`~gapless.events.OrderUpdate` / :class:`~gapless.events.BalanceUpdate`
  with ``source="reconciled"``, after a :class:`~gapless.events.Gap` that
  names the blind interval.
- **Reconciliation** (§1.10 "treat a jump as a gap"; design.md §3 order
  safety): orders the user saw open that are missing from the new snapshot
  were closed meanwhile; ``QueryOrders`` tells how (filled, canceled,
  expired, with final quantities), and ``ClosedOrders`` since the start of
  the outage finds orders that opened *and* closed while we were blind
  (for instance an ``add_order`` whose answer was lost). A
  :class:`~gapless.events.Reconciled` event ends it; until then new orders
  are refused (``not_ready``), cancels are allowed.
- **Sequence** (§1.10): each private subscription numbers its messages; a
  jump is a ``sequence_gap`` Gap with the missing numbers, the channel is
  resubscribed (new snapshot) and reconciled as above. Old numbers are
  dropped as duplicates.
- **Dead man's switch** (§1.11): ``cancel_all_orders_after`` is armed with
  ``dms_timeout_s`` (60) as soon as the executions subscription is
  confirmed, refreshed every ``dms_refresh_s`` (20; Kraken recommends 15-30)
  while connected, and disarmed (timeout 0) on a clean shutdown, before a
  configured maintenance window and when the venue announces maintenance.
  If the client dies, nobody refreshes it and the venue cancels every order
  of the account ``dms_timeout_s`` after the last refresh. Every answer is a
  :class:`~gapless.events.DeadMansSwitch` event; refusals and missing answers
  are ``refresh_failed`` events (and warnings).
- **Order gate** (§1.13): requests need a connected, authenticated
  connection, and the system status decides what may pass (``maintenance``:
  nothing; ``cancel_only``: cancels; ``post_only``: post-only limit orders and
  cancels; ``limit_only``: limit orders and cancels). A refused request is
  answered at once (``OrderResponse(outcome="refused")``) and never queued
  for a later connection. A request in flight when the connection drops, or
  unanswered after ``request_timeout_s``, ends as ``outcome="unknown"``:
  never re-sent; the next reconciliation shows what happened.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from decimal import Decimal

import msgspec

from gapless.errors import ConfigError, DecodeError
from gapless.events import (
    BadFrame,
    BalanceUpdate,
    DeadMansSwitch,
    GapCause,
    OrderResponse,
    OrderUpdate,
    Reconciled,
    Subscribed,
    SubscriptionRejected,
    VenueStatus,
    WatchdogFired,
)
from gapless.secrets import Credentials
from gapless.venues.account import AccountView, private_gap
from gapless.venues.base import Now, Phase, RestCall, RestResult, Step, StreamSpec
from gapless.venues.kraken import private_protocol as pp
from gapless.venues.kraken import protocol as pub
from gapless.venues.kraken.signing import NonceSource, encode_body, sign

__all__ = [
    "DEFAULT_AUTH_URL",
    "DEFAULT_REST_URL",
    "KrakenPrivateAdapter",
    "KrakenPrivateOptions",
    "OrderRequest",
    "balances_stream",
    "executions_stream",
]

VENUE = "kraken"
DEFAULT_AUTH_URL = "wss://ws-auth.kraken.com/v2"
DEFAULT_REST_URL = "https://api.kraken.com"
EXECUTIONS = "executions"
BALANCES = "balances"
_TOKEN_PATH = "/0/private/GetWebSocketsToken"
_QUERY_PATH = "/0/private/QueryOrders"
_CLOSED_PATH = "/0/private/ClosedOrders"
_QUERY_BATCH = 50  # QueryOrders takes up to 50 txids
_CLOSED_PAGE = 50  # ClosedOrders returns 50 per page (``ofs`` pages on)
_AUTH_ERRORS = ("EAPI:Invalid key", "EAPI:Invalid signature", "EGeneral:Permission denied")
_OPEN = frozenset({"pending_new", "new", "partially_filled"})


def executions_stream() -> str:
    return f"{VENUE}:{EXECUTIONS}:*"


def balances_stream() -> str:
    return f"{VENUE}:{BALANCES}:*"


@dataclass(frozen=True, slots=True)
class KrakenPrivateOptions:
    """Phase-named settings (seconds). ``maintenance_windows`` are known
    maintenance windows as ``(start_ns, end_ns)`` wall times: the dead man's
    switch is disarmed ``dms_disarm_lead_s`` before each and re-armed after."""

    url: str = DEFAULT_AUTH_URL
    rest_url: str = DEFAULT_REST_URL
    ping_interval_s: float = 20.0
    pong_timeout_s: float = 10.0
    subscribe_ack_timeout_s: float = 10.0
    snapshot_timeout_s: float = 15.0
    request_timeout_s: float = 10.0
    dead_mans_switch: bool = True
    dms_timeout_s: int = 60
    dms_refresh_s: float = 20.0
    dms_answer_timeout_s: float = 5.0
    dms_retry_s: float = 2.0
    dms_disarm_lead_s: float = 120.0
    maintenance_windows: tuple[tuple[int, int], ...] = ()
    token_retry_s: float = 2.0
    token_retry_cap_s: float = 60.0
    reconcile_retry_s: float = 2.0
    closed_lookback_s: float = 5.0
    max_closed_orders: int = 10_000

    def __post_init__(self) -> None:
        if not 0 < self.dms_timeout_s < 86_400:
            raise ConfigError("dms_timeout_s must be in 1..86399 (protocols.md §1.11)")
        if not 0 < self.dms_refresh_s < self.dms_timeout_s:
            raise ConfigError("dms_refresh_s must be positive and shorter than dms_timeout_s")
        for start, end in self.maintenance_windows:
            if end <= start:
                raise ConfigError("a maintenance window must end after it starts")


@dataclass(frozen=True, slots=True)
class OrderRequest:
    """One order-entry request (``method``: add_order, cancel_order, cancel_all)."""

    method: str
    req_id: int
    symbol: str | None = None
    side: str | None = None
    order_type: str = "limit"
    qty: Decimal | None = None
    limit_price: Decimal | None = None
    time_in_force: str | None = None
    post_only: bool = False
    cl_ord_id: str | None = None
    order_ids: tuple[str, ...] = ()
    cl_ord_ids: tuple[str, ...] = ()

    def validate(self) -> None:
        """Local checks before anything is sent (a :class:`ConfigError` names the field)."""
        if self.method == "add_order":
            if self.side not in ("buy", "sell"):
                raise ConfigError("side must be 'buy' or 'sell'")
            if self.order_type not in ("limit", "market"):
                raise ConfigError("order_type must be 'limit' or 'market'")
            if not self.symbol or "/" not in self.symbol:
                raise ConfigError("symbol must look like 'BTC/USD'")
            if not isinstance(self.qty, Decimal) or not self.qty.is_finite() or self.qty <= 0:
                raise ConfigError("qty must be a positive Decimal")
            if self.order_type == "limit":
                lp = self.limit_price
                if not isinstance(lp, Decimal) or not lp.is_finite() or lp <= 0:
                    raise ConfigError("a limit order needs a positive Decimal limit_price")
            if self.post_only and self.order_type != "limit":
                raise ConfigError("post_only applies to limit orders only")
            if self.time_in_force not in (None, "gtc", "ioc", "gtd"):
                raise ConfigError("time_in_force must be gtc, ioc or gtd")
            if self.cl_ord_id is not None and not (0 < len(self.cl_ord_id) <= 36):
                raise ConfigError("cl_ord_id must be 1-36 characters")
        elif self.method == "cancel_order":
            if not self.order_ids and not self.cl_ord_ids:
                raise ConfigError("cancel_order needs order ids or cl_ord_ids")
        elif self.method != "cancel_all":
            raise ConfigError(f"unknown order method {self.method!r}")


class _Sub(enum.Enum):
    WANTED = "wanted"  # not sent on this connection yet
    PENDING = "pending"  # subscribe sent, no ack
    SNAPSHOT = "snapshot"  # acked, waiting for the snapshot
    LIVE = "live"


@dataclass(slots=True)
class _Channel:
    name: str
    state: _Sub = _Sub.WANTED
    req_id: int | None = None
    since: float = 0.0  # mono time of the last state change
    next_seq: int | None = None
    synced_once: bool = False
    last_ts: int | None = None  # exchange time of the last delivered event
    gap: tuple[GapCause, str, int | None, int | None, int | None] | None = None
    retry_at: float = 0.0
    rejects: int = 0


@dataclass(slots=True)
class _Pending:
    method: str
    deadline: float
    cl_ord_id: str | None = None


@dataclass(slots=True)
class _Recon:
    """One reconciliation in progress (after a snapshot that followed a blind spell)."""

    reason: str
    since_ns: int | None  # start of the blind interval (ClosedOrders start)
    query: list[str]  # order ids to ask QueryOrders about
    waiting: set[str] = field(default_factory=set)  # REST keys in flight
    retry: list[tuple[str, float]] = field(default_factory=list)  # (key, when)
    calls: dict[str, tuple[str, list[tuple[str, str]]]] = field(default_factory=dict)
    closed_ofs: int = 0
    orders_changed: int = 0
    unresolved: set[str] = field(default_factory=set)
    exec_done: bool = False
    balances_done: bool = False
    balances_changed: int = 0


@dataclass(slots=True)
class PrivateCounters:
    executions: int = 0
    ledger_entries: int = 0
    sequence_gaps: int = 0
    duplicates_dropped: int = 0
    reconciliations: int = 0
    reconciled_orders: int = 0
    reconciled_balances: int = 0
    tokens: int = 0
    token_failures: int = 0
    dms_refreshes: int = 0
    dms_failures: int = 0
    orders_sent: int = 0
    orders_refused: int = 0
    orders_unknown: int = 0


class KrakenPrivateAdapter(AccountView):
    """The account's orders and balances over ``ws-auth`` (see the module docstring)."""

    venue = VENUE
    private = True
    needs_rest = True

    def __init__(
        self,
        credentials: Credentials,
        options: KrakenPrivateOptions | None = None,
        *,
        nonces: NonceSource | None = None,
    ) -> None:
        if not isinstance(credentials, Credentials):
            raise ConfigError("Kraken private channels need Credentials")
        self.options = options or KrakenPrivateOptions()
        super().__init__(self.options.max_closed_orders)
        self._creds = credentials
        self._nonces = nonces or NonceSource()
        self._channels: dict[str, _Channel] = {}
        self.conn = ""
        self.connected = False
        self.system: str | None = None
        self.bad_frames = 0
        self.stats = PrivateCounters()
        self._blind_reason = "reconnect"
        self._token: str | None = None
        self._token_wanted_at: float | None = None  # fetch a token at this mono time
        self._token_inflight = False
        self._token_streak = 0
        self._spent_tokens: list[str] = []
        self._req = 0
        self._pending: dict[int, _Pending] = {}
        self._balances: dict[str, Decimal] = {}
        self._blind_since: int | None = None  # wall ns when we last lost sight
        self._recon: _Recon | None = None
        # keepalive
        self._next_ping = 0.0
        self._ping_deadline: float | None = None
        # dead man's switch
        self._dms_req: int | None = None
        self._dms_req_timeout = 0
        self._dms_deadline = 0.0
        self._dms_next: float | None = None  # when to (re)arm; None: not wanted now
        self._dms_armed = False  # the venue confirmed a non-zero timeout on this connection
        self._dms_suspended = ""  # why the switch is held off ("" = not suspended)
        self._closing = False
        self.closing_complete = False

    # ------------------------------------------------------------------ registry
    def add(self, spec: StreamSpec) -> None:
        if spec.venue != VENUE or spec.channel not in pp.PRIVATE_CHANNELS:
            raise ConfigError(f"not a Kraken private stream: {spec.key}")
        self._channels.setdefault(spec.channel, _Channel(spec.channel))

    # ------------------------------------------------------------------ the view
    def balances(self) -> dict[str, Decimal]:
        return dict(self._balances)

    @property
    def reconciling(self) -> bool:
        return self._recon is not None

    # ------------------------------------------------------------------ runtime seam
    @property
    def url(self) -> str:
        return self.options.url

    @property
    def phase(self) -> Phase:
        if not self.connected or self._token is None:
            return Phase.SUBSCRIBING
        states = {ch.state for ch in self._channels.values()}
        if _Sub.WANTED in states or _Sub.PENDING in states:
            return Phase.SUBSCRIBING
        if _Sub.SNAPSHOT in states or self._recon is not None:
            return Phase.SYNCING
        return Phase.LIVE

    @property
    def min_dead_after_s(self) -> float:
        return 0.0

    def redactions(self) -> list[str]:
        out = list(self._spent_tokens)
        if self._token is not None:
            out.append(self._token)
        return out

    def prepare_dial(self, now: Now) -> RestCall | None:
        return None

    def on_dial_rest(self, result: RestResult, now: Now) -> str | None:
        return None

    def on_dial_failed(self, reason: str, now: Now) -> None:
        return None

    def _next_req(self) -> int:
        self._req += 1
        return self._req

    def new_req_id(self) -> int:
        """A request id for an order request (the feed allocates it before sending)."""
        return self._next_req()

    # ------------------------------------------------------------------ REST (signed)
    def _signed(self, key: str, path: str, params: list[tuple[str, str]], now: Now) -> RestCall:
        nonce = self._nonces.next(now.wall_ns)
        body = encode_body([("nonce", str(nonce)), *params])
        signature = sign(self._creds.api_secret, path, nonce, body)
        return RestCall(
            key=key,
            method="POST",
            url=self.options.rest_url.rstrip("/") + path,
            headers=(
                ("API-Key", self._creds.api_key.reveal()),
                ("API-Sign", signature),
                ("Content-Type", "application/x-www-form-urlencoded"),
            ),
            body=body,
            private=True,
        )

    # ------------------------------------------------------------------ lifecycle
    def on_connected(self, conn: str, now: Now) -> Step:
        self.conn = conn
        self.connected = True
        self.system = None
        self._token = None
        self._token_inflight = False
        self._token_wanted_at = now.mono
        self._dms_armed = False
        self._dms_req = None
        self._dms_next = None
        self._ping_deadline = None
        self._next_ping = now.mono + self.options.ping_interval_s
        for ch in self._channels.values():
            ch.state = _Sub.WANTED
            ch.req_id = None
            ch.next_seq = None
            ch.since = now.mono
        out = Step()
        self._maybe_fetch_token(now, out)
        return out

    def _maybe_fetch_token(self, now: Now, out: Step) -> None:
        if (
            not self.connected
            or self._token is not None
            or self._token_inflight
            or self._token_wanted_at is None
            or now.mono < self._token_wanted_at
        ):
            return
        self._token_inflight = True
        self._token_wanted_at = None
        out.rest.append(self._signed("token", _TOKEN_PATH, [], now))

    def on_disconnected(self, reason: str, now: Now) -> Step:
        out = Step()
        self.connected = False
        if self._token is not None:
            self._spent_tokens = [*self._spent_tokens[-7:], self._token]
        self._token = None
        self._token_inflight = False
        self._dms_armed = False
        self._dms_req = None
        if self._blind_since is None:
            self._blind_since = now.wall_ns
        self._blind_reason = "reconnect"
        for ch in self._channels.values():
            if ch.synced_once and ch.gap is None:
                ch.gap = (GapCause.DISCONNECT, reason, ch.last_ts, None, None)
            ch.state = _Sub.WANTED
        if self._recon is not None:
            # the REST answers will not come back on this connection: start over later
            self._recon = None
        for req_id, pend in sorted(self._pending.items()):
            out.events.append(
                self._response(
                    req_id,
                    pend.method,
                    "unknown",
                    now,
                    error=f"connection lost before the answer ({reason}); not re-sent",
                    cl_ord_id=pend.cl_ord_id,
                )
            )
            self.stats.orders_unknown += 1
        self._pending.clear()
        if self._closing:
            self.closing_complete = True
        return out

    def shutdown(self, now: Now) -> Step:
        """The feed is closing: gaps still open are reported without an end."""
        out = Step()
        for ch in self._channels.values():
            if (
                ch.gap is None
                and ch.synced_once
                and (not self.connected or ch.state is not _Sub.LIVE)
            ):
                ch.gap = (
                    GapCause.SHUTDOWN,
                    "feed closed before resync",
                    ch.last_ts,
                    None,
                    None,
                )
            if ch.gap is not None:
                self._emit_gap(ch, None, now, out)
        return out

    def closing(self, now: Now) -> Step:
        """A clean shutdown is starting: disarm the dead man's switch (timeout 0),
        so open orders are not cancelled behind the user's back. The runtime
        waits (bounded) until :attr:`closing_complete`."""
        out = Step()
        self._closing = True
        self._dms_next = None
        if self.connected and self._token is not None and self.options.dead_mans_switch:
            self._send_dms(0, now, out)
        else:
            self.closing_complete = True
        return out

    # ------------------------------------------------------------------ frames
    def on_frame(self, data: str | bytes, now: Now) -> Step:
        out = Step()
        try:
            msg = pp.decode(data)
        except DecodeError as exc:
            self._bad_frame(str(exc), data, now, out)
            return out
        if isinstance(msg, pp.ExecutionsMsg):
            self._on_executions(msg, now, out)
        elif isinstance(msg, pp.BalancesMsg):
            self._on_balances(msg, now, out)
        elif isinstance(msg, pp.MethodResponse):
            self._on_method(msg, now, out)
        elif isinstance(msg, pub.Ack):
            self._on_ack(msg, now, out)
        elif isinstance(msg, pub.StatusMsg):
            self._on_status(msg, now, out)
        elif isinstance(msg, pub.Pong):
            self._ping_deadline = None
        return out

    def _bad_frame(self, reason: str, data: str | bytes, now: Now, out: Step) -> None:
        self.bad_frames += 1
        text = data if isinstance(data, str) else data[:400].decode("utf-8", "replace")
        excerpt = text[:200]
        for secret in self.redactions():
            excerpt = excerpt.replace(secret, "<redacted>")
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
        # a private message that could not be read is caught by the next sequence
        # number; nothing else to do here

    def _on_status(self, msg: pub.StatusMsg, now: Now, out: Step) -> None:
        prev, self.system = self.system, msg.system
        out.system_status = msg.system
        out.events.append(
            VenueStatus(
                venue=VENUE,
                local_ts_ns=now.wall_ns,
                conn=self.conn,
                system=msg.system,
                api_version=msg.api_version,
                connection_id=msg.connection_id,
                version=msg.version,
            )
        )
        if msg.system == "maintenance" and prev != "maintenance":
            # §1.11: an armed switch cancels everything when the engine comes back
            self._suspend_dms("venue maintenance", now, out)
        elif msg.system != "maintenance" and self._dms_suspended == "venue maintenance":
            self._resume_dms(now)

    # ------------------------------------------------------------------ subscriptions
    def _subscribe(self, ch: _Channel, now: Now, out: Step) -> None:
        assert self._token is not None
        req = self._next_req()
        ch.req_id = req
        ch.state = _Sub.PENDING
        ch.since = now.mono
        ch.next_seq = None
        if ch.name == EXECUTIONS:
            text = pp.encode_private_subscribe(
                EXECUTIONS, self._token, req, snap_orders=True, snap_trades=False
            )
        else:
            text = pp.encode_private_subscribe(BALANCES, self._token, req, snapshot=True)
        out.sends.append(text)

    def _resubscribe(self, ch: _Channel, now: Now, out: Step) -> None:
        """Unsubscribe + subscribe: the venue answers with a fresh snapshot."""
        if self._token is None or not self.connected:
            ch.state = _Sub.WANTED
            return
        out.sends.append(pp.encode_private_unsubscribe(ch.name, self._token, self._next_req()))
        self._subscribe(ch, now, out)

    def _on_ack(self, ack: pub.Ack, now: Now, out: Step) -> None:
        ch = next((c for c in self._channels.values() if c.req_id == ack.req_id), None)
        if ch is None or ack.method != "subscribe":
            return
        stream = f"{VENUE}:{ch.name}:*"
        if ack.success:
            ch.state = _Sub.SNAPSHOT
            ch.since = now.mono
            ch.rejects = 0
            self._token_streak = 0
            out.events.append(
                Subscribed(
                    venue=VENUE,
                    local_ts_ns=now.wall_ns,
                    conn=self.conn,
                    stream=stream,
                    exchange_ts_ns=ack.time_out_ns,
                )
            )
            if ch.name == EXECUTIONS and self._dms_next is None and not self._dms_armed:
                self._arm_dms_soon(now)
                self._dms_tick(now, out)
            return
        error = ack.error or "subscribe refused"
        ch.state = _Sub.WANTED
        ch.rejects += 1
        if "Invalid session" in error or "token" in error.lower():
            # §1.6: the token expired or was revoked: a fresh one for this connection
            if self._token is not None:
                self._spent_tokens = [*self._spent_tokens[-7:], self._token]
            self._token = None
            self.stats.token_failures += 1
            self._token_streak += 1
            retry = self._token_delay()
            self._token_wanted_at = now.mono + retry
        else:
            retry = min(self.options.token_retry_cap_s, self.options.token_retry_s * 2**ch.rejects)
            ch.retry_at = now.mono + retry
        out.events.append(
            SubscriptionRejected(
                venue=VENUE,
                local_ts_ns=now.wall_ns,
                conn=self.conn,
                stream=stream,
                error=error,
                retry_in_s=retry,
            )
        )

    def _token_delay(self) -> float:
        o = self.options
        if self._token_streak <= 1:
            return 0.0
        return float(min(o.token_retry_cap_s, o.token_retry_s * 2 ** (self._token_streak - 2)))

    def control(self, op: str, spec: StreamSpec, now: Now) -> Step:
        out = Step()
        if spec.channel not in pp.PRIVATE_CHANNELS:
            raise ConfigError(f"not a Kraken private stream: {spec.key}")
        if op == "subscribe":
            self.add(spec)
            ch = self._channels[spec.channel]
            if self.connected and self._token is not None and ch.state is _Sub.WANTED:
                self._subscribe(ch, now, out)
        elif op == "unsubscribe":
            ch_or_none = self._channels.pop(spec.channel, None)
            if ch_or_none is not None and self.connected and self._token is not None:
                out.sends.append(
                    pp.encode_private_unsubscribe(spec.channel, self._token, self._next_req())
                )
        else:
            raise ConfigError(f"unknown control op {op!r}")
        return out

    # ------------------------------------------------------------------ sequence
    def _check_seq(self, ch: _Channel, seq: int | None, now: Now, out: Step) -> bool:
        """False: drop the message (a duplicate, or after a jump that resyncs)."""
        if seq is None or ch.next_seq is None:
            if seq is not None:
                ch.next_seq = seq + 1
            return True
        if seq < ch.next_seq:
            self.stats.duplicates_dropped += 1
            return False
        if seq > ch.next_seq:
            self.stats.sequence_gaps += 1
            first, last = ch.next_seq, seq - 1
            ch.gap = (
                GapCause.SEQUENCE_GAP,
                f"{ch.name} sequence jumped from {first - 1} to {seq}",
                ch.last_ts,
                first,
                last,
            )
            if self._blind_since is None:
                self._blind_since = ch.last_ts if ch.last_ts is not None else now.wall_ns
                self._blind_reason = "sequence gap"
            self._resubscribe(ch, now, out)
            return False
        ch.next_seq = seq + 1
        return True

    def _emit_gap(self, ch: _Channel, end_ns: int | None, now: Now, out: Step) -> None:
        assert ch.gap is not None
        cause, detail, start, first, last = ch.gap
        ch.gap = None
        out.events.append(
            private_gap(VENUE, ch.name, cause, detail, start, end_ns, now.wall_ns, first, last)
        )

    # ------------------------------------------------------------------ executions
    def _order_event(
        self, r: pp.ExecReport, prev: OrderUpdate | None, source: str, now: Now
    ) -> OrderUpdate:
        """Merge a report into the known order (a report may omit unchanged fields)."""
        status = r.order_status or (prev.status if prev is not None else "new")
        fill = r.exec_type == "trade" or r.last_qty is not None
        base = dict(
            venue=VENUE,
            local_ts_ns=now.wall_ns,
            stream=executions_stream(),
            order_id=r.order_id,
            symbol=r.symbol or (prev.symbol if prev else ""),
            status=status,
            exec_type=r.exec_type or ("snapshot" if source == "snapshot" else "status"),
            source=source,
            exchange_ts_ns=r.timestamp_ns,
            cl_ord_id=r.cl_ord_id
            if r.cl_ord_id is not None
            else (prev.cl_ord_id if prev else None),
            side=r.side or (prev.side if prev else None),
            order_type=r.order_type or (prev.order_type if prev else None),
            qty=r.order_qty if r.order_qty is not None else (prev.qty if prev else None),
            limit_price=(
                r.limit_price if r.limit_price is not None else (prev.limit_price if prev else None)
            ),
            cum_qty=r.cum_qty if r.cum_qty is not None else (prev.cum_qty if prev else None),
            cum_cost=r.cum_cost if r.cum_cost is not None else (prev.cum_cost if prev else None),
            avg_price=r.avg_price
            if r.avg_price is not None
            else (prev.avg_price if prev else None),
            reason=r.reason,
        )
        if fill:
            base.update(
                exec_id=r.exec_id,
                trade_id=r.trade_id,
                last_qty=r.last_qty,
                last_price=r.last_price,
                liquidity=r.liquidity_ind,
                fee=r.fee,
                fee_asset=r.fee_asset,
            )
        return OrderUpdate(**base)  # type: ignore[arg-type]

    def _on_executions(self, msg: pp.ExecutionsMsg, now: Now, out: Step) -> None:
        ch = self._channels.get(EXECUTIONS)
        if ch is None or (ch.state in (_Sub.WANTED, _Sub.PENDING) and not msg.snapshot):
            return
        if msg.snapshot:
            ch.next_seq = None
        if not self._check_seq(ch, msg.sequence, now, out):
            return
        if msg.snapshot:
            self._exec_snapshot(ch, msg, now, out)
            return
        if ch.state is not _Sub.LIVE:
            ch.state = _Sub.LIVE  # an update before the snapshot: not expected; keep going
        for r in msg.reports:
            ev = self._order_event(r, self._orders.get(r.order_id), "update", now)
            self._remember(ev)
            out.events.append(ev)
            self.stats.executions += 1
            if r.timestamp_ns is not None:
                ch.last_ts = r.timestamp_ns

    def _exec_snapshot(self, ch: _Channel, msg: pp.ExecutionsMsg, now: Now, out: Step) -> None:
        first = not ch.synced_once
        blind = self._blind_since
        if ch.gap is not None:
            self._emit_gap(ch, now.wall_ns, now, out)
        ch.state = _Sub.LIVE
        ch.since = now.mono
        ch.synced_once = True
        source = "snapshot" if first else "reconciled"
        seen: set[str] = set()
        changed = 0
        for r in msg.reports:
            seen.add(r.order_id)
            prev = self._orders.get(r.order_id)
            ev = self._order_event(r, prev, source, now)
            if not first and prev is not None and _same_state(prev, ev):
                continue
            if not first:
                ev = msgspec.structs.replace(ev, exec_type="reconciled")
                changed += 1
            self._remember(ev)
            out.events.append(ev)
            if r.timestamp_ns is not None:
                ch.last_ts = max(ch.last_ts or 0, r.timestamp_ns)
        if first and blind is None:
            self._finish_exec_sync("initial snapshot", now, out, changed)
            return
        missing = [oid for oid, o in self._orders.items() if o.status in _OPEN and oid not in seen]
        recon = self._recon
        if recon is None:
            recon = self._recon = _Recon(reason=self._blind_reason, since_ns=blind, query=[])
        recon.orders_changed += changed
        recon.query = missing
        recon.unresolved = set(missing)
        recon.exec_done = False
        self.stats.reconciliations += 1
        self._rest_query(recon, now, out)
        self._rest_closed(recon, now, out)
        self._maybe_done(now, out)

    def _finish_exec_sync(self, reason: str, now: Now, out: Step, changed: int) -> None:
        recon = self._recon
        if recon is None:
            recon = self._recon = _Recon(reason=reason, since_ns=None, query=[])
        recon.orders_changed += changed
        recon.exec_done = True
        self._maybe_done(now, out)

    def _rest_send(
        self, recon: _Recon, key: str, path: str, params: list[tuple[str, str]], now: Now, out: Step
    ) -> None:
        """A signed reconciliation call; kept so a failure can be retried (new nonce)."""
        recon.calls[key] = (path, params)
        recon.waiting.add(key)
        out.rest.append(self._signed(key, path, params, now))

    def _rest_query(self, recon: _Recon, now: Now, out: Step) -> None:
        for i in range(0, len(recon.query), _QUERY_BATCH):
            batch = recon.query[i : i + _QUERY_BATCH]
            self._rest_send(recon, f"query:{i}", _QUERY_PATH, [("txid", ",".join(batch))], now, out)

    def _rest_closed(self, recon: _Recon, now: Now, out: Step) -> None:
        if recon.since_ns is None:
            return
        start_s = (recon.since_ns - int(self.options.closed_lookback_s * 1e9)) / 1e9
        params = [("start", f"{start_s:.6f}")]
        if recon.closed_ofs:
            params.append(("ofs", str(recon.closed_ofs)))
        self._rest_send(recon, f"closed:{recon.closed_ofs}", _CLOSED_PATH, params, now, out)

    def on_rest(self, result: RestResult, now: Now) -> Step:
        out = Step()
        if result.key == "token":
            self._on_token(result, now, out)
            return out
        recon = self._recon
        if recon is None or result.key not in recon.waiting:
            return out  # an answer for a reconciliation that was abandoned
        recon.waiting.discard(result.key)
        try:
            if result.error is not None or result.status != 200:
                raise DecodeError(result.error or f"HTTP {result.status}")
            answer = pp.decode_rest(result.body)
            if result.key.startswith("closed:"):
                orders = pp.rest_orders(answer, "closed")
                count = answer.get("count")
                if type(count) is int and recon.closed_ofs + _CLOSED_PAGE < count:
                    recon.closed_ofs += _CLOSED_PAGE
                    self._rest_closed(recon, now, out)
            else:
                orders = pp.rest_orders(answer, None)
        except DecodeError as exc:
            recon.retry.append((result.key, now.mono + self.options.reconcile_retry_s))
            recon.unresolved.add(f"{result.key}: {str(exc)[:120]}")
            return out
        for ro in orders:
            self._apply_rest_order(recon, ro, now, out)
        self._maybe_done(now, out)
        return out

    def _apply_rest_order(self, recon: _Recon, ro: pp.RestOrder, now: Now, out: Step) -> None:
        recon.unresolved.discard(ro.order_id)
        prev = self._orders.get(ro.order_id)
        if ro.status in _OPEN:
            return  # open orders come from the snapshot, which is authoritative
        if prev is not None and prev.status not in _OPEN:
            return  # already known closed (the live stream told us after the snapshot)
        if prev is not None and prev.cum_qty is not None and ro.cum_qty < prev.cum_qty:
            return  # never move backwards
        ev = OrderUpdate(
            venue=VENUE,
            local_ts_ns=now.wall_ns,
            stream=executions_stream(),
            order_id=ro.order_id,
            symbol=ro.symbol or (prev.symbol if prev else ""),
            status=ro.status,
            exec_type="reconciled",
            source="reconciled",
            exchange_ts_ns=ro.close_ts_ns,
            cl_ord_id=ro.cl_ord_id
            if ro.cl_ord_id is not None
            else (prev.cl_ord_id if prev else None),
            side=ro.side or (prev.side if prev else None),
            order_type=ro.order_type or (prev.order_type if prev else None),
            qty=ro.qty if ro.qty is not None else (prev.qty if prev else None),
            limit_price=(
                ro.limit_price
                if ro.limit_price is not None
                else (prev.limit_price if prev else None)
            ),
            cum_qty=ro.cum_qty,
            cum_cost=ro.cum_cost,
            avg_price=ro.avg_price,
            fee=ro.fee,
            reason=ro.reason,
        )
        self._remember(ev)
        out.events.append(ev)
        recon.orders_changed += 1
        self.stats.reconciled_orders += 1

    def _maybe_done(self, now: Now, out: Step) -> None:
        recon = self._recon
        if recon is None:
            return
        ex = self._channels.get(EXECUTIONS)
        bal = self._channels.get(BALANCES)
        if ex is not None and ex.state is _Sub.LIVE and not recon.waiting and not recon.retry:
            recon.exec_done = True
        if ex is None:
            recon.exec_done = True
        if bal is None or bal.state is _Sub.LIVE:
            recon.balances_done = True
        if not (recon.exec_done and recon.balances_done):
            return
        missing = sorted(o for o in recon.unresolved if ":" not in o)
        self._recon = None
        self._blind_since = None
        out.events.append(
            Reconciled(
                venue=VENUE,
                local_ts_ns=now.wall_ns,
                conn=self.conn,
                reason=recon.reason,
                orders_changed=recon.orders_changed,
                balances_changed=recon.balances_changed,
                open_orders=len(self.open_orders()),
                complete=not missing,
                detail=f"REST did not describe {', '.join(missing[:5])}" if missing else "",
            )
        )

    # ------------------------------------------------------------------ balances
    def _on_balances(self, msg: pp.BalancesMsg, now: Now, out: Step) -> None:
        ch = self._channels.get(BALANCES)
        if ch is None or (ch.state in (_Sub.WANTED, _Sub.PENDING) and not msg.snapshot):
            return
        if msg.snapshot:
            ch.next_seq = None
        if not self._check_seq(ch, msg.sequence, now, out):
            return
        stream = balances_stream()
        if not msg.snapshot:
            ch.state = _Sub.LIVE
            for e in msg.entries:
                self._balances[e.asset] = e.balance
                self.stats.ledger_entries += 1
                if e.timestamp_ns is not None:
                    ch.last_ts = e.timestamp_ns
                out.events.append(
                    BalanceUpdate(
                        venue=VENUE,
                        local_ts_ns=now.wall_ns,
                        stream=stream,
                        asset=e.asset,
                        balance=e.balance,
                        source="update",
                        exchange_ts_ns=e.timestamp_ns,
                        change=e.amount,
                        fee=e.fee,
                        ledger_id=e.ledger_id,
                        ref_id=e.ref_id,
                        kind=e.kind,
                    )
                )
            return
        first = not ch.synced_once
        if ch.gap is not None:
            self._emit_gap(ch, now.wall_ns, now, out)
        ch.state = _Sub.LIVE
        ch.synced_once = True
        fresh = {line.asset: line.balance for line in msg.lines}
        changed = 0
        for asset, bal in fresh.items():
            old = self._balances.get(asset)
            if not first and old == bal:
                continue
            changed += not first
            out.events.append(
                BalanceUpdate(
                    venue=VENUE,
                    local_ts_ns=now.wall_ns,
                    stream=stream,
                    asset=asset,
                    balance=bal,
                    source="snapshot" if first else "reconciled",
                    change=None if first or old is None else bal - old,
                )
            )
        if not first:
            for asset, old in self._balances.items():
                if asset not in fresh and old != 0:
                    changed += 1
                    out.events.append(
                        BalanceUpdate(
                            venue=VENUE,
                            local_ts_ns=now.wall_ns,
                            stream=stream,
                            asset=asset,
                            balance=Decimal(0),
                            source="reconciled",
                            change=-old,
                        )
                    )
        self._balances = fresh
        self.stats.reconciled_balances += changed
        recon = self._recon
        if recon is None:
            recon = self._recon = _Recon(
                reason="initial snapshot" if first else self._blind_reason,
                since_ns=self._blind_since,
                query=[],
            )
            ex = self._channels.get(EXECUTIONS)
            recon.exec_done = ex is None or ex.state is _Sub.LIVE
        recon.balances_changed += changed
        self._maybe_done(now, out)

    # ------------------------------------------------------------------ token
    def _on_token(self, result: RestResult, now: Now, out: Step) -> None:
        self._token_inflight = False
        if not self.connected:
            return
        error: str | None = None
        token: str | None = None
        try:
            if result.error is not None:
                raise DecodeError(result.error)
            answer = pp.decode_rest(result.body)
            value = answer.get("token")
            if type(value) is not str or not value or len(value) > 512:
                raise DecodeError("GetWebSocketsToken answered without a token")
            token = value
        except DecodeError as exc:
            error = str(exc)
            if result.status not in (200, None):
                error = f"HTTP {result.status}: {error}"
        if token is None:
            self.stats.token_failures += 1
            self._token_streak += 1
            permanent = any(e in (error or "") for e in _AUTH_ERRORS)
            retry = (
                self.options.token_retry_cap_s
                if permanent
                else max(self.options.token_retry_s, self._token_delay())
            )
            self._token_wanted_at = now.mono + retry
            for name in self._channels:
                out.events.append(
                    SubscriptionRejected(
                        venue=VENUE,
                        local_ts_ns=now.wall_ns,
                        conn=self.conn,
                        stream=f"{VENUE}:{name}:*",
                        error=f"GetWebSocketsToken failed: {error}",
                        retry_in_s=retry,
                    )
                )
            return
        self._token = token
        self.stats.tokens += 1
        for ch in self._channels.values():
            if ch.state is _Sub.WANTED:
                self._subscribe(ch, now, out)

    # ------------------------------------------------------------------ orders
    def gate(self, req: OrderRequest) -> tuple[str, str] | None:
        """Why ``req`` may not be sent now (reason, message), or None (§1.13)."""
        if self._closing:
            return "closing", "the feed is closing"
        if not self.connected:
            return "disconnected", "the private connection is down; order requests are not queued"
        ex = self._channels.get(EXECUTIONS)
        if self._token is None or ex is None or ex.state in (_Sub.WANTED, _Sub.PENDING):
            return "not_ready", "the private connection is not authenticated yet"
        system = self.system or "online"
        if system == "maintenance":
            return "maintenance", "the venue is in maintenance: no order requests"
        if req.method != "add_order":
            return None
        if ex.state is not _Sub.LIVE or self._recon is not None:
            return "not_ready", "reconciling the account after a reconnect; new orders wait"
        if system == "cancel_only":
            return "cancel_only", "the venue is in cancel_only mode: only cancels pass"
        if system == "post_only" and not (req.post_only and req.order_type == "limit"):
            return "post_only", "the venue is in post_only mode: only post-only limit orders"
        if system == "limit_only" and req.order_type != "limit":
            return "limit_only", "the venue is in limit_only mode: only limit orders"
        return None

    def order(self, req: OrderRequest, now: Now) -> Step:
        """Send ``req`` if the gate allows it; a refusal is an immediate
        ``OrderResponse(outcome="refused")`` (nothing is sent or queued)."""
        out = Step()
        refused = self.gate(req)
        if refused is not None:
            self.stats.orders_refused += 1
            out.events.append(
                self._response(
                    req.req_id,
                    req.method,
                    "refused",
                    now,
                    error=refused[1],
                    cl_ord_id=req.cl_ord_id,
                )
            )
            return out
        assert self._token is not None
        if req.method == "add_order":
            assert req.symbol is not None
            assert req.side is not None
            assert req.qty is not None
            text = pp.encode_add_order(
                token=self._token,
                req_id=req.req_id,
                symbol=req.symbol,
                side=req.side,
                order_type=req.order_type,
                qty=req.qty,
                limit_price=req.limit_price,
                time_in_force=req.time_in_force,
                post_only=req.post_only,
                cl_ord_id=req.cl_ord_id,
            )
        elif req.method == "cancel_order":
            text = pp.encode_cancel_order(
                token=self._token,
                req_id=req.req_id,
                order_ids=list(req.order_ids),
                cl_ord_ids=list(req.cl_ord_ids),
            )
        else:
            text = pp.encode_cancel_all(token=self._token, req_id=req.req_id)
        self._pending[req.req_id] = _Pending(
            req.method, now.mono + self.options.request_timeout_s, req.cl_ord_id
        )
        self.stats.orders_sent += 1
        out.sends.append(text)
        return out

    def _response(
        self,
        req_id: int,
        method: str,
        outcome: str,
        now: Now,
        *,
        error: str | None = None,
        order_id: str | None = None,
        cl_ord_id: str | None = None,
        count: int | None = None,
        ts: int | None = None,
    ) -> OrderResponse:
        return OrderResponse(
            venue=VENUE,
            local_ts_ns=now.wall_ns,
            conn=self.conn,
            req_id=req_id,
            method=method,
            outcome=outcome,
            order_id=order_id,
            cl_ord_id=cl_ord_id,
            error=error,
            count=count,
            exchange_ts_ns=ts,
        )

    def _on_method(self, msg: pp.MethodResponse, now: Now, out: Step) -> None:
        if msg.method == "cancel_all_orders_after":
            self._on_dms_answer(msg, now, out)
            return
        if msg.req_id is None or msg.req_id not in self._pending:
            return  # an answer we no longer wait for (reported as unknown already)
        pend = self._pending.pop(msg.req_id)
        if msg.success:
            out.events.append(
                self._response(
                    msg.req_id,
                    msg.method,
                    "accepted",
                    now,
                    order_id=msg.order_id,
                    cl_ord_id=msg.cl_ord_id or pend.cl_ord_id,
                    count=msg.count,
                    ts=msg.time_out_ns,
                )
            )
        else:
            out.events.append(
                self._response(
                    msg.req_id,
                    msg.method,
                    "rejected",
                    now,
                    error=msg.error,
                    cl_ord_id=pend.cl_ord_id,
                    ts=msg.time_out_ns,
                )
            )

    # ------------------------------------------------------------------ dead man's switch
    def _arm_dms_soon(self, now: Now) -> None:
        if self.options.dead_mans_switch and not self._dms_suspended and not self._closing:
            self._dms_next = now.mono

    def _suspend_dms(self, why: str, now: Now, out: Step) -> None:
        if not self.options.dead_mans_switch or self._dms_suspended:
            return
        self._dms_suspended = why
        self._dms_next = None
        if self.connected and self._token is not None:
            self._send_dms(0, now, out)

    def _resume_dms(self, now: Now) -> None:
        self._dms_suspended = ""
        if self.connected and self._token is not None:
            self._arm_dms_soon(now)

    def _send_dms(self, timeout: int, now: Now, out: Step) -> None:
        assert self._token is not None
        req = self._next_req()
        self._dms_req = req
        self._dms_req_timeout = timeout
        self._dms_deadline = now.mono + self.options.dms_answer_timeout_s
        out.sends.append(pp.encode_cancel_after(token=self._token, req_id=req, timeout_s=timeout))

    def _dms_tick(self, now: Now, out: Step) -> None:
        o = self.options
        if not o.dead_mans_switch or not self.connected or self._token is None:
            return
        if o.maintenance_windows:
            wall = now.wall_ns
            lead = int(o.dms_disarm_lead_s * 1e9)
            inside = any(start - lead <= wall < end for start, end in o.maintenance_windows)
            if inside and not self._dms_suspended:
                self._suspend_dms("scheduled maintenance window", now, out)
                return
            if not inside and self._dms_suspended == "scheduled maintenance window":
                self._resume_dms(now)
        if self._dms_req is not None:
            if now.mono >= self._dms_deadline and now.backlog == 0:
                timeout = self._dms_req_timeout
                self._dms_req = None
                self._dms_failed(timeout, "no answer within the deadline", now, out)
            return
        if self._dms_next is not None and now.mono >= self._dms_next:
            self._send_dms(o.dms_timeout_s, now, out)

    def _dms_failed(self, timeout: int, error: str, now: Now, out: Step) -> None:
        self.stats.dms_failures += 1
        if timeout and not self._closing:
            self._dms_next = now.mono + self.options.dms_retry_s
        out.events.append(
            DeadMansSwitch(
                venue=VENUE,
                local_ts_ns=now.wall_ns,
                conn=self.conn,
                state="refresh_failed" if timeout else "disarm_failed",
                timeout_s=timeout,
                error=error,
            )
        )
        if self._closing and not timeout:
            self.closing_complete = True

    def _on_dms_answer(self, msg: pp.MethodResponse, now: Now, out: Step) -> None:
        if msg.req_id is None or msg.req_id != self._dms_req:
            return
        timeout = self._dms_req_timeout
        self._dms_req = None
        if not msg.success:
            self._dms_failed(timeout, msg.error or "refused", now, out)
            return
        self._dms_armed = timeout > 0
        if timeout:
            self.stats.dms_refreshes += 1
            if not self._dms_suspended and not self._closing:
                self._dms_next = now.mono + self.options.dms_refresh_s
        elif self._closing:
            self.closing_complete = True
        out.events.append(
            DeadMansSwitch(
                venue=VENUE,
                local_ts_ns=now.wall_ns,
                conn=self.conn,
                state="armed" if timeout else "disarmed",
                timeout_s=timeout,
                trigger_ts_ns=msg.trigger_ts_ns if timeout else None,
                error=None if timeout or not self._dms_suspended else self._dms_suspended,
            )
        )

    # ------------------------------------------------------------------ timers
    def on_timer(self, now: Now) -> Step:
        out = Step()
        if not self.connected:
            return out
        o = self.options
        self._maybe_fetch_token(now, out)
        if self._token is not None:
            for ch in self._channels.values():
                if ch.state is _Sub.WANTED and now.mono >= ch.retry_at:
                    self._subscribe(ch, now, out)
        self._dms_tick(now, out)
        # keepalive (§1.3)
        if now.mono >= self._next_ping:
            self._next_ping = now.mono + o.ping_interval_s
            if self._ping_deadline is None:
                self._ping_deadline = now.mono + o.pong_timeout_s
                out.sends.append(pub.encode_ping(self._next_req()))
        if now.backlog:
            return out  # the answers may be waiting in the queue
        if self._ping_deadline is not None and now.mono >= self._ping_deadline:
            out.events.append(
                WatchdogFired(venue=VENUE, local_ts_ns=now.wall_ns, conn=self.conn, kind="pong")
            )
            out.reconnect = "no pong from the private connection"
            return out
        for ch in self._channels.values():
            if ch.state is _Sub.PENDING and now.mono - ch.since > o.subscribe_ack_timeout_s:
                out.reconnect = f"no ack for the {ch.name} subscription"
                return out
            if ch.state is _Sub.SNAPSHOT and now.mono - ch.since > o.snapshot_timeout_s:
                out.reconnect = f"no {ch.name} snapshot"
                return out
        for req_id, pend in sorted(self._pending.items()):
            if now.mono >= pend.deadline:
                del self._pending[req_id]
                self.stats.orders_unknown += 1
                out.events.append(
                    self._response(
                        req_id,
                        pend.method,
                        "unknown",
                        now,
                        error=f"no answer within {o.request_timeout_s:g} s; not re-sent",
                        cl_ord_id=pend.cl_ord_id,
                    )
                )
        recon = self._recon
        if recon is not None and recon.retry:
            due = [k for k, when in recon.retry if now.mono >= when]
            recon.retry = [(k, w) for k, w in recon.retry if now.mono < w]
            for key in due:
                recon.unresolved = {u for u in recon.unresolved if not u.startswith(key + ": ")}
                path, params = recon.calls[key]
                self._rest_send(recon, key, path, params, now, out)
        return out

    def on_overflow(self, dropped: int, now: Now) -> Step:
        """Frames were dropped: private messages may be among them. Reconnect:
        the new snapshots and the reconciliation rebuild the view."""
        return Step(reconnect=f"{dropped} frames dropped on the private connection")

    def on_bad_transport_frame(self, reason: str, size: int, now: Now) -> Step:
        out = Step()
        self.bad_frames += 1
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


def _same_state(a: OrderUpdate, b: OrderUpdate) -> bool:
    return a.status == b.status and a.cum_qty == b.cum_qty
