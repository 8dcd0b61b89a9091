"""Binance Spot user data stream over the WS API, pure (protocols.md §3.9-§3.11).

One :class:`BinancePrivateAdapter` serves the logical connection to the WS API
(``wss://ws-api.binance.com:443/ws-api/v3``, §3.1) and survives reconnects. It
keeps the user's view of the account (every order seen, every balance) and
never lets that view go stale silently (design.md §1):

- **Subscribe** (§3.9 option B): on every connect the adapter sends
  ``userDataStream.subscribe.signature`` with ``params {apiKey, timestamp,
  signature}`` (plus ``recvWindow`` when configured), signed per §3.10 WS-API
  rules: every param except ``signature`` sorted by key, ``k=v`` joined by
  ``&``, HMAC-SHA256 hex. Each attempt is re-signed with a fresh timestamp.
  The api key and every signature sent are listed in :meth:`redactions`.
  One subscription serves both streams, ``binance:orders:*`` and
  ``binance:balances:*``.
- **Errors** (§3.9, §3.11): ``-2015`` (invalid key, IP or permissions) and
  ``-1022`` (bad signature) are refused slowly (``auth_retry_s``, 60 s) with a
  :class:`~gapless.events.SubscriptionRejected` per stream; ``-1021``
  (timestamp outside ``recvWindow``) is retried at once with a fresh
  timestamp, then with backoff; 429/418 wait until ``error.data.retryAfter``.
  The unsolicited ``{"id":null,"status":401,"error":{"code":-2015}}`` (key
  revoked mid-session) ends the subscription like a termination.
- **No snapshot, no sequence** (§3.9): the stream only carries changes. After
  every (re)subscribe, signed REST is the snapshot (§3.10 REST signing: the
  query string, percent-encoded in the order sent, HMAC-SHA256 hex, header
  ``X-MBX-APIKEY``): ``GET /api/v3/openOrders`` and ``GET /api/v3/account``,
  plus ``GET /api/v3/order?symbol=..&orderId=..`` for every order the user
  saw open that REST no longer lists (the symbol comes from the view). The
  differences are delivered as :class:`~gapless.events.OrderUpdate` /
  :class:`~gapless.events.BalanceUpdate` with ``source="reconciled"``
  (``"snapshot"`` on a stream's first sync), after a
  :class:`~gapless.events.Gap` (cause ``disconnect``) on each stream that was
  blind, and a :class:`~gapless.events.Reconciled` event ends it. The phase
  is LIVE only after that.
- **Events during the REST round trip** are buffered (never dropped, never
  delivered before the snapshot) and applied after it, in arrival order,
  by this rule:

  * ``executionReport``: applied when it moves the order *forward* from what
    REST said: the order is unknown to the snapshot, or the report's
    cumulative quantity ``z`` is larger, or it closes an order REST showed
    open. Anything else is already contained in the snapshot. (Order state
    only moves forward, so this is exact even when several changes share
    one millisecond, where a time comparison would be ambiguous.)
  * ``outboundAccountPosition``: absolute values; applied when its account
    update time ``u`` >= the account snapshot's ``updateTime`` (ties
    re-apply a state the snapshot may already show: harmless, and only
    lines that differ from the view are delivered).
  * ``balanceUpdate``: a delta, applied only when its time ``T`` > the
    snapshot's ``updateTime``; a same-millisecond delta is left to the
    ``outboundAccountPosition`` Binance sends with it.

- **eventStreamTerminated** (§3.9) for our subscription: the subscription is
  gone; the streams are blind from the last delivered event, the adapter
  resubscribes and reconciles (Gap, then REST, then Reconciled).
- **Hostile input** becomes :class:`~gapless.events.BadFrame` events, never
  exceptions. A frame that could not be read may have been a user event
  (the stream has no sequence to tell), so the adapter reconciles by REST
  (a ``bad_frame`` Gap on each stream).
- **Keepalive** (§3.3): the WS API pings like the stream endpoint; the
  transport answers the pings, so :attr:`min_dead_after_s` is the venue's
  pong deadline (60 s) plus a margin.
- **Order entry** over the WS API is not implemented: :meth:`gate` answers
  ``unsupported`` and :meth:`order` refuses at once.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Protocol

from gapless.errors import ConfigError, DecodeError
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
)
from gapless.secrets import Credentials
from gapless.venues.account import AccountView, private_gap
from gapless.venues.base import Now, Phase, RestCall, RestResult, Step, StreamSpec
from gapless.venues.binance import private_protocol as pp
from gapless.venues.binance.protocol import PONG_DEADLINE_S
from gapless.venues.binance.signing import (
    ParamValue,
    encode_query,
    format_value,
    sign_rest,
    signed_ws_params,
)

__all__ = [
    "BALANCES",
    "DEFAULT_REST_URL",
    "DEFAULT_WS_API_URL",
    "ORDERS",
    "BinancePrivateAdapter",
    "BinancePrivateOptions",
    "PrivateCounters",
    "balances_stream",
    "orders_stream",
]

VENUE = "binance"
DEFAULT_WS_API_URL = "wss://ws-api.binance.com:443/ws-api/v3"
DEFAULT_REST_URL = "https://api.binance.com"
ORDERS = "orders"
BALANCES = "balances"
CHANNELS = (ORDERS, BALANCES)
SUBSCRIBE = "userDataStream.subscribe.signature"
UNSUBSCRIBE = "userDataStream.unsubscribe"
_OPEN = frozenset({"pending_new", "new", "partially_filled"})
_AUTH_CODES = (-2015, -1022, -2014)
# §3.11 / rest-api.md weights
_W_OPEN_ORDERS = 80.0  # all symbols
_W_ACCOUNT = 20.0
_W_ORDER = 4.0


def orders_stream() -> str:
    return f"{VENUE}:{ORDERS}:*"


def balances_stream() -> str:
    return f"{VENUE}:{BALANCES}:*"


@dataclass(frozen=True, slots=True)
class BinancePrivateOptions:
    """Settings (seconds unless named otherwise). ``recv_window_ms`` None sends
    no ``recvWindow`` (the venue's default, 5000 ms, applies; §3.10)."""

    url: str = DEFAULT_WS_API_URL
    rest_url: str = DEFAULT_REST_URL
    request_timeout_s: float = 10.0
    subscribe_timeout_s: float = 10.0
    recv_window_ms: int | None = None
    auth_retry_s: float = 60.0
    retry_s: float = 1.0
    retry_cap_s: float = 60.0
    reconcile_retry_s: float = 2.0
    max_closed_orders: int = 10_000

    def __post_init__(self) -> None:
        if self.recv_window_ms is not None and not 0 < self.recv_window_ms <= 60_000:
            raise ConfigError("recv_window_ms must be in 1..60000 (protocols.md §3.10)")
        if self.auth_retry_s <= 0 or self.retry_s <= 0 or self.retry_cap_s <= 0:
            raise ConfigError("retry delays must be positive")


class _OrderLike(Protocol):
    @property
    def method(self) -> str: ...

    @property
    def req_id(self) -> int: ...

    @property
    def cl_ord_id(self) -> str | None: ...


class _Sub(enum.Enum):
    WANTED = "subscribing"  # not sent on this connection (or waiting to retry)
    PENDING = "pending"  # subscribe sent, no answer
    SYNCING = "syncing"  # subscribed, REST snapshot in flight
    LIVE = "live"


@dataclass(slots=True)
class _Channel:
    name: str
    synced_once: bool = False
    last_ts: int | None = None  # exchange time (ns) of the last delivered event
    gap: tuple[GapCause, str, int | None] | None = None  # (cause, detail, start)


_Body = pp.ExecReport | pp.AccountPosition | pp.BalanceDelta | pp.StreamTerminated | pp.OtherEvent


@dataclass(slots=True)
class _Sync:
    """One REST snapshot round (after a (re)subscribe or an unreadable frame)."""

    epoch: int
    reason: str
    waiting: set[str] = field(default_factory=set)
    retry: list[tuple[str, float]] = field(default_factory=list)
    calls: dict[str, tuple[str, list[tuple[str, ParamValue]], float]] = field(default_factory=dict)
    open_orders: list[pp.RestOrder] | None = None
    account: pp.RestAccount | None = None
    queried: dict[str, pp.RestOrder] = field(default_factory=dict)
    unresolved: set[str] = field(default_factory=set)
    buffer: list[_Body] = field(default_factory=list)


@dataclass(slots=True)
class PrivateCounters:
    subscribes: int = 0
    subscribe_rejects: int = 0
    terminations: int = 0
    executions: int = 0
    balance_events: int = 0
    buffered: int = 0
    buffered_applied: int = 0
    reconciliations: int = 0
    reconciled_orders: int = 0
    reconciled_balances: int = 0
    rest_failures: int = 0
    foreign_events: int = 0
    orders_refused: int = 0


class BinancePrivateAdapter(AccountView):
    """The account's orders and balances over the Binance WS API (see the module docstring)."""

    venue = VENUE
    private = True
    needs_rest = True

    def __init__(
        self, credentials: Credentials, options: BinancePrivateOptions | None = None
    ) -> None:
        if not isinstance(credentials, Credentials):
            raise ConfigError("Binance private streams need Credentials")
        self.options = options or BinancePrivateOptions()
        super().__init__(self.options.max_closed_orders)
        self._creds = credentials
        self._channels: dict[str, _Channel] = {}
        self.conn = ""
        self.connected = False
        self.bad_frames = 0
        self.stats = PrivateCounters()
        self._state = _Sub.WANTED
        self._rejected = False
        self._sub_req: int | None = None
        self._sub_since = 0.0
        self._sub_id: int | None = None
        self._retry_at = 0.0
        self._ts_failures = 0
        self._failures = 0
        self._req = 0
        self._epoch = 0
        self._sync: _Sync | None = None
        self._balances: dict[str, Decimal] = {}
        self._free: dict[str, Decimal] = {}
        self._locked: dict[str, Decimal] = {}
        self._signatures: list[str] = []
        self._blind_reason = "reconnect"
        self._closing = False
        self._unsub_req: int | None = None
        self.closing_complete = False

    # ------------------------------------------------------------------ registry
    def add(self, spec: StreamSpec) -> None:
        if spec.venue != VENUE or spec.channel not in CHANNELS or spec.symbol != "*":
            raise ConfigError(f"not a Binance private stream: {spec.key}")
        self._channels.setdefault(spec.channel, _Channel(spec.channel))

    def stream_state(self, key: str) -> str:
        if key not in self.streams():
            return "unknown"
        if self._rejected and self._state is _Sub.WANTED:
            return "rejected"
        return self._state.value

    # ------------------------------------------------------------------ the view
    def balances(self) -> dict[str, Decimal]:
        """Totals (free + locked) by asset."""
        return dict(self._balances)

    @property
    def subscription_id(self) -> int | None:
        return self._sub_id

    # ------------------------------------------------------------------ runtime seam
    @property
    def url(self) -> str:
        return self.options.url

    @property
    def phase(self) -> Phase:
        if not self.connected:
            return Phase.SUBSCRIBING
        if not self._channels:
            return Phase.LIVE
        if self._state in (_Sub.WANTED, _Sub.PENDING):
            return Phase.SUBSCRIBING
        if self._state is _Sub.SYNCING:
            return Phase.SYNCING
        return Phase.LIVE

    @property
    def min_dead_after_s(self) -> float:
        """The WS API pings every 20 s like the stream endpoint (§3.3); the transport
        answers and the pings are invisible here, so dead means silence beyond
        the venue's own pong deadline (60 s)."""
        return PONG_DEADLINE_S + 5.0

    def redactions(self) -> list[str]:
        return [self._creds.api_key.reveal(), *self._signatures]

    def prepare_dial(self, now: Now) -> RestCall | None:
        return None

    def on_dial_rest(self, result: RestResult, now: Now) -> str | None:
        return None

    def on_dial_failed(self, reason: str, now: Now) -> None:
        return None

    def new_req_id(self) -> int:
        self._req += 1
        return self._req

    # ------------------------------------------------------------------ lifecycle
    def on_connected(self, conn: str, now: Now) -> Step:
        self.conn = conn
        self.connected = True
        self._state = _Sub.WANTED
        self._sub_id = None
        self._sub_req = None
        self._sync = None
        self._unsub_req = None
        self._retry_at = now.mono
        out = Step()
        if self._channels and not self._closing:
            self._subscribe(now, out)
        return out

    def on_disconnected(self, reason: str, now: Now) -> Step:
        self.connected = False
        self._blind(GapCause.DISCONNECT, f"disconnected: {reason}")
        self._state = _Sub.WANTED
        self._sub_id = None
        self._sub_req = None
        self._sync = None
        if self._closing:
            self.closing_complete = True
        return Step()

    def _blind(self, cause: GapCause, detail: str) -> None:
        """From now on we cannot see: every synced stream gets a pending Gap.
        The reconciliation's reason uses the same words as the other venues:
        ``reconnect`` after a disconnect, else the gap cause."""
        self._blind_reason = "reconnect" if cause is GapCause.DISCONNECT else cause.value
        for ch in self._channels.values():
            if ch.synced_once and ch.gap is None:
                ch.gap = (cause, detail, ch.last_ts)

    def shutdown(self, now: Now) -> Step:
        """The feed is closing: gaps still open are reported without an end."""
        out = Step()
        for ch in self._channels.values():
            if ch.gap is None and ch.synced_once and self._state is not _Sub.LIVE:
                ch.gap = (GapCause.SHUTDOWN, "feed closed before resync", ch.last_ts)
            if ch.gap is not None:
                self._emit_gap(ch, None, now, out)
        return out

    def closing(self, now: Now) -> Step:
        """A clean shutdown: ``userDataStream.unsubscribe`` when subscribed;
        :attr:`closing_complete` once answered (at once when not subscribed)."""
        out = Step()
        self._closing = True
        if self.connected and self._sub_id is not None:
            self._unsub_req = self.new_req_id()
            out.sends.append(
                pp.encode_request(UNSUBSCRIBE, self._unsub_req, {"subscriptionId": self._sub_id})
            )
        else:
            self.closing_complete = True
        return out

    def control(self, op: str, spec: StreamSpec, now: Now) -> Step:
        out = Step()
        if op == "subscribe":
            self.add(spec)
            if not self.connected or self._closing:
                return out
            if self._state is _Sub.WANTED and now.mono >= self._retry_at:
                self._subscribe(now, out)
            elif self._state in (_Sub.SYNCING, _Sub.LIVE):
                # one subscription serves both streams: the new one needs its snapshot
                self._start_sync(f"{spec.channel} added", now, out)
        elif op == "unsubscribe":
            if spec.venue != VENUE or spec.channel not in CHANNELS:
                raise ConfigError(f"not a Binance private stream: {spec.key}")
            self._channels.pop(spec.channel, None)
            if not self._channels and self.connected and self._sub_id is not None:
                out.sends.append(
                    pp.encode_request(
                        UNSUBSCRIBE, self.new_req_id(), {"subscriptionId": self._sub_id}
                    )
                )
                self._sub_id = None
                self._sync = None
                self._state = _Sub.WANTED
        else:
            raise ConfigError(f"unknown control op {op!r}")
        return out

    # ------------------------------------------------------------------ subscribe
    def _subscribe(self, now: Now, out: Step) -> None:
        params: dict[str, ParamValue] = {
            "apiKey": self._creds.api_key.reveal(),
            "timestamp": now.wall_ns // 1_000_000,
        }
        if self.options.recv_window_ms is not None:
            params["recvWindow"] = self.options.recv_window_ms
        signed = signed_ws_params(self._creds.api_secret, params)
        signature = signed["signature"]
        assert isinstance(signature, str)
        self._signatures = [*self._signatures[-7:], signature]
        self._sub_req = self.new_req_id()
        self._state = _Sub.PENDING
        self._sub_since = now.mono
        self.stats.subscribes += 1
        out.sends.append(pp.encode_request(SUBSCRIBE, self._sub_req, dict(signed)))

    def _on_response(self, msg: pp.WsResponse, now: Now, out: Step) -> None:
        if msg.req_id is not None and msg.req_id == self._unsub_req:
            self._unsub_req = None
            self._sub_id = None
            if self._closing:
                self.closing_complete = True
            return
        if msg.req_id is None and msg.error_code is not None:
            # §3.9: the key became invalid mid-session: the subscription is gone
            if self._state in (_Sub.SYNCING, _Sub.LIVE):
                self._blind(GapCause.DISCONNECT, f"venue error {msg.error_code}: {msg.error_msg}")
                self._sub_id = None
                self._sync = None
                self._refused(msg, now, out)
            return
        if msg.req_id is None or msg.req_id != self._sub_req or self._state is not _Sub.PENDING:
            return
        self._sub_req = None
        result = msg.result
        sub_id = result.get("subscriptionId") if isinstance(result, dict) else None
        if msg.status == 200 and msg.error_code is None and type(sub_id) is int and sub_id >= 0:
            self._sub_id = sub_id
            self._rejected = False
            self._ts_failures = 0
            self._failures = 0
            for name in self._channels:
                out.events.append(
                    Subscribed(
                        venue=VENUE,
                        local_ts_ns=now.wall_ns,
                        conn=self.conn,
                        stream=f"{VENUE}:{name}:*",
                    )
                )
            self._start_sync(
                self._blind_reason if self._any_synced() else "initial snapshot", now, out
            )
            return
        self._refused(msg, now, out)

    def _any_synced(self) -> bool:
        return any(ch.synced_once for ch in self._channels.values())

    def _refused(self, msg: pp.WsResponse, now: Now, out: Step) -> None:
        """A subscribe refused (or a subscription revoked): decide when to try again."""
        o = self.options
        code = msg.error_code
        self._state = _Sub.WANTED
        self.stats.subscribe_rejects += 1
        if code in _AUTH_CODES or msg.status in (401, 403):
            retry = o.auth_retry_s
            self._rejected = True
        elif code == -1021:
            # §3.10: timestamp outside recvWindow: re-sign with a fresh timestamp
            self._ts_failures += 1
            retry = (
                0.0
                if self._ts_failures == 1
                else min(o.retry_cap_s, o.retry_s * 2 ** (self._ts_failures - 2))
            )
        elif msg.status in (429, 418):
            if msg.retry_after_ms is not None:
                retry = max(o.retry_s, msg.retry_after_ms / 1000 - now.wall_ns / 1e9)
            else:
                retry = 60.0 if msg.status == 418 else 10.0
        else:
            self._failures += 1
            retry = min(o.retry_cap_s, o.retry_s * 2 ** (self._failures - 1))
        self._retry_at = now.mono + retry
        error = f"{msg.status} {code}: {msg.error_msg or 'subscribe refused'}"
        for name in self._channels:
            out.events.append(
                SubscriptionRejected(
                    venue=VENUE,
                    local_ts_ns=now.wall_ns,
                    conn=self.conn,
                    stream=f"{VENUE}:{name}:*",
                    error=error,
                    retry_in_s=retry,
                )
            )
        if retry == 0.0 and self.connected:
            self._subscribe(now, out)

    # ------------------------------------------------------------------ frames
    def on_frame(self, data: str | bytes, now: Now) -> Step:
        out = Step()
        try:
            msg = pp.decode(data)
        except DecodeError as exc:
            self._bad_frame(str(exc), data, now, out)
            return out
        if isinstance(msg, pp.WsResponse):
            self._on_response(msg, now, out)
        elif isinstance(msg, pp.UserEvent):
            self._on_user_event(msg, now, out)
        else:  # serverShutdown (§3.4): the venue is about to close; reconnect at once
            out.reconnect = "serverShutdown"
        return out

    def _bad_frame(self, reason: str, data: str | bytes, now: Now, out: Step) -> None:
        self.bad_frames += 1
        text = data if isinstance(data, str) else data[:400].decode("utf-8", "replace")
        excerpt = text[:200]
        for secret in self.redactions():
            if secret:
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
        # no sequence: the unreadable frame may have been a user event -> reconcile
        if self._state in (_Sub.SYNCING, _Sub.LIVE) and not self._closing:
            self._blind(GapCause.BAD_FRAME, f"unreadable frame: {reason[:100]}")
            self._start_sync("bad frame", now, out)

    def _on_user_event(self, msg: pp.UserEvent, now: Now, out: Step) -> None:
        if self._sub_id is None or msg.subscription_id != self._sub_id:
            self.stats.foreign_events += 1
            return
        body = msg.event
        if isinstance(body, pp.StreamTerminated):
            self.stats.terminations += 1
            self._sub_id = None
            self._sync = None
            if self._closing:
                self._state = _Sub.WANTED
                return
            self._blind(GapCause.DISCONNECT, "eventStreamTerminated")
            self._state = _Sub.WANTED
            self._subscribe(now, out)
            return
        if isinstance(body, pp.OtherEvent):
            return
        if self._sync is not None:
            self._sync.buffer.append(body)
            self.stats.buffered += 1
            return
        if self._state is not _Sub.LIVE:
            return
        self._apply(body, now, out, buffered=False)

    # ------------------------------------------------------------------ applying events
    def _apply(self, body: _Body, now: Now, out: Step, *, buffered: bool) -> bool:
        if isinstance(body, pp.ExecReport):
            ch = self._channels.get(ORDERS)
            if ch is None:
                return False
            prev = self._orders.get(body.order_id)
            if buffered and not _forward(prev, body):
                return False
            ev = self._order_event(body, prev, now)
            self._remember(ev)
            out.events.append(ev)
            ch.last_ts = body.trans_ms * 1_000_000
            self.stats.executions += 1
            return True
        ch = self._channels.get(BALANCES)
        if ch is None:
            return False
        if isinstance(body, pp.AccountPosition):
            applied = False
            for line in body.lines:
                total = line.free + line.locked
                old = self._balances.get(line.asset)
                if buffered and old == total and self._free.get(line.asset) == line.free:
                    continue
                self._set_balance(line.asset, line.free, line.locked)
                out.events.append(
                    BalanceUpdate(
                        venue=VENUE,
                        local_ts_ns=now.wall_ns,
                        stream=balances_stream(),
                        asset=line.asset,
                        balance=total,
                        source="update",
                        exchange_ts_ns=body.update_ms * 1_000_000,
                        change=None if old is None else total - old,
                        kind="trade",
                        available=line.free,
                        hold=line.locked,
                    )
                )
                applied = True
                self.stats.balance_events += 1
            ch.last_ts = body.update_ms * 1_000_000
            return applied
        if isinstance(body, pp.BalanceDelta):
            free = self._free.get(body.asset, Decimal(0)) + body.delta
            locked = self._locked.get(body.asset, Decimal(0))
            self._set_balance(body.asset, free, locked)
            out.events.append(
                BalanceUpdate(
                    venue=VENUE,
                    local_ts_ns=now.wall_ns,
                    stream=balances_stream(),
                    asset=body.asset,
                    balance=free + locked,
                    source="update",
                    exchange_ts_ns=body.clear_ms * 1_000_000,
                    change=body.delta,
                    kind="balance_update",
                    available=free,
                    hold=locked,
                )
            )
            ch.last_ts = body.clear_ms * 1_000_000
            self.stats.balance_events += 1
            return True
        return False

    def _set_balance(self, asset: str, free: Decimal, locked: Decimal) -> None:
        self._balances[asset] = free + locked
        self._free[asset] = free
        self._locked[asset] = locked

    def _order_event(self, r: pp.ExecReport, prev: OrderUpdate | None, now: Now) -> OrderUpdate:
        fill = r.exec_type == "trade" and r.last_qty > 0
        cl = r.orig_cl_ord_id if r.exec_type == "canceled" and r.orig_cl_ord_id else r.cl_ord_id
        cum_cost = r.cum_quote
        return OrderUpdate(
            venue=VENUE,
            local_ts_ns=now.wall_ns,
            stream=orders_stream(),
            order_id=r.order_id,
            symbol=r.symbol,
            status=r.status,
            exec_type=r.exec_type,
            source="update",
            exchange_ts_ns=r.trans_ms * 1_000_000,
            cl_ord_id=cl if cl is not None else (prev.cl_ord_id if prev else None),
            side=r.side,
            order_type=r.order_type,
            qty=r.qty,
            limit_price=r.price,
            cum_qty=r.cum_qty,
            cum_cost=cum_cost,
            avg_price=_avg(cum_cost, r.cum_qty),
            exec_id=str(r.trade_id) if fill and r.trade_id is not None else None,
            trade_id=r.trade_id if fill else None,
            last_qty=r.last_qty if fill else None,
            last_price=r.last_price if fill else None,
            liquidity=("m" if r.maker else "t") if fill else None,
            fee=r.fee if fill else None,
            fee_asset=r.fee_asset if fill else None,
            reason=r.reason,
        )

    def _rest_event(
        self, ro: pp.RestOrder, prev: OrderUpdate | None, source: str, now: Now
    ) -> OrderUpdate:
        return OrderUpdate(
            venue=VENUE,
            local_ts_ns=now.wall_ns,
            stream=orders_stream(),
            order_id=ro.order_id,
            symbol=ro.symbol,
            status=ro.status,
            exec_type="snapshot" if source == "snapshot" else "reconciled",
            source=source,
            exchange_ts_ns=None if ro.update_ms is None else ro.update_ms * 1_000_000,
            cl_ord_id=ro.cl_ord_id
            if ro.cl_ord_id is not None
            else (prev.cl_ord_id if prev else None),
            side=ro.side,
            order_type=ro.order_type,
            qty=ro.qty,
            limit_price=ro.price,
            cum_qty=ro.cum_qty,
            cum_cost=ro.cum_quote,
            avg_price=_avg(ro.cum_quote, ro.cum_qty),
        )

    # ------------------------------------------------------------------ REST snapshot
    def _start_sync(self, reason: str, now: Now, out: Step) -> None:
        self._epoch += 1
        old = self._sync
        self._sync = sync = _Sync(epoch=self._epoch, reason=reason)
        if old is not None:
            sync.buffer = old.buffer  # events not yet applied stay, in order
        self._state = _Sub.SYNCING
        self.stats.reconciliations += 1
        if ORDERS in self._channels:
            self._rest_send(sync, "open", "/api/v3/openOrders", [], _W_OPEN_ORDERS, now, out)
        else:
            sync.open_orders = []
        if BALANCES in self._channels:
            self._rest_send(sync, "account", "/api/v3/account", [], _W_ACCOUNT, now, out)
        else:
            sync.account = pp.RestAccount(None, ())
        self._maybe_done(now, out)

    def _signed(
        self, key: str, path: str, params: list[tuple[str, ParamValue]], weight: float, now: Now
    ) -> RestCall:
        """§3.10 REST: sign the query text as sent; the signature goes last."""
        full: list[tuple[str, ParamValue]] = list(params)
        if self.options.recv_window_ms is not None:
            full.append(("recvWindow", self.options.recv_window_ms))
        full.append(("timestamp", now.wall_ns // 1_000_000))
        query = encode_query(full)
        signature = sign_rest(self._creds.api_secret, query)
        sent = (*((k, format_value(v)) for k, v in full), ("signature", signature))
        return RestCall(
            key=key,
            method="GET",
            url=self.options.rest_url.rstrip("/") + path,
            params=sent,
            weight=weight,
            headers=(("X-MBX-APIKEY", self._creds.api_key.reveal()),),
            private=True,
        )

    def _rest_send(
        self,
        sync: _Sync,
        name: str,
        path: str,
        params: list[tuple[str, ParamValue]],
        weight: float,
        now: Now,
        out: Step,
    ) -> None:
        key = f"{sync.epoch}:{name}"
        sync.calls[key] = (path, params, weight)
        sync.waiting.add(key)
        out.rest.append(self._signed(key, path, params, weight, now))

    def on_rest(self, result: RestResult, now: Now) -> Step:
        out = Step()
        sync = self._sync
        if sync is None or result.key not in sync.waiting:
            return out  # an answer for an abandoned round
        sync.waiting.discard(result.key)
        name = result.key.partition(":")[2]
        try:
            if result.error is not None or result.status != 200:
                err = pp.rest_error(result.body)
                if name.startswith("order:") and err is not None and err[0] == -2013:
                    sync.unresolved.add(name[6:])  # "Order does not exist."
                    self._maybe_done(now, out)
                    return out
                raise _RestFailed(result, err)
            if name == "open":
                sync.open_orders = pp.decode_orders(result.body)
                self._query_vanished(sync, now, out)
            elif name == "account":
                sync.account = pp.decode_account(result.body)
            else:
                ro = pp.decode_order(result.body)
                sync.queried[ro.order_id] = ro
        except (DecodeError, _RestFailed) as exc:
            self.stats.rest_failures += 1
            delay = self.options.reconcile_retry_s
            if isinstance(exc, _RestFailed):
                if exc.result.retry_after_s is not None:
                    delay = max(delay, exc.result.retry_after_s)
                elif exc.result.status == 418:
                    delay = 60.0
                if exc.err is not None and exc.err[0] in _AUTH_CODES:
                    delay = max(delay, self.options.auth_retry_s)
            sync.retry.append((result.key, now.mono + delay))
            return out
        self._maybe_done(now, out)
        return out

    def _query_vanished(self, sync: _Sync, now: Now, out: Step) -> None:
        """Orders the user saw open that REST no longer lists: ask how they ended."""
        assert sync.open_orders is not None
        listed = {o.order_id for o in sync.open_orders}
        for oid, o in self._orders.items():
            if o.status in _OPEN and oid not in listed:
                params: list[tuple[str, ParamValue]] = [("symbol", o.symbol), ("orderId", oid)]
                self._rest_send(sync, f"order:{oid}", "/api/v3/order", params, _W_ORDER, now, out)

    def _maybe_done(self, now: Now, out: Step) -> None:
        sync = self._sync
        if sync is None or sync.waiting or sync.retry:
            return
        if sync.open_orders is None or sync.account is None:
            return
        self._sync = None
        self._finish(sync, now, out)

    def _finish(self, sync: _Sync, now: Now, out: Step) -> None:
        for ch in self._channels.values():
            if ch.gap is not None:
                self._emit_gap(ch, now.wall_ns, now, out)
        orders_changed = 0
        ch_o = self._channels.get(ORDERS)
        if ch_o is not None:
            first = not ch_o.synced_once
            source = "snapshot" if first else "reconciled"
            assert sync.open_orders is not None
            for ro in sync.open_orders:
                prev = self._orders.get(ro.order_id)
                if not first and prev is not None and _same(prev, ro):
                    continue
                if prev is not None and prev.cum_qty is not None and ro.cum_qty < prev.cum_qty:
                    continue  # never move backwards
                ev = self._rest_event(ro, prev, source, now)
                self._remember(ev)
                out.events.append(ev)
                orders_changed += not first
            for ro in sync.queried.values():
                prev = self._orders.get(ro.order_id)
                if ro.status in _OPEN or (prev is not None and prev.status not in _OPEN):
                    continue
                if prev is not None and prev.cum_qty is not None and ro.cum_qty < prev.cum_qty:
                    continue
                ev = self._rest_event(ro, prev, "reconciled", now)
                self._remember(ev)
                out.events.append(ev)
                orders_changed += 1
            ch_o.synced_once = True
            self.stats.reconciled_orders += orders_changed
        balances_changed = 0
        ch_b = self._channels.get(BALANCES)
        if ch_b is not None and sync.account is not None:
            first = not ch_b.synced_once
            fresh = {line.asset: line for line in sync.account.lines}
            for asset, line in fresh.items():
                total = line.free + line.locked
                old = self._balances.get(asset)
                if not first and old == total and self._free.get(asset) == line.free:
                    continue
                self._set_balance(asset, line.free, line.locked)
                balances_changed += not first
                out.events.append(
                    BalanceUpdate(
                        venue=VENUE,
                        local_ts_ns=now.wall_ns,
                        stream=balances_stream(),
                        asset=asset,
                        balance=total,
                        source="snapshot" if first else "reconciled",
                        exchange_ts_ns=None
                        if sync.account.update_ms is None
                        else sync.account.update_ms * 1_000_000,
                        change=None if first or old is None else total - old,
                        available=line.free,
                        hold=line.locked,
                    )
                )
            for asset in [a for a in self._balances if a not in fresh]:
                old = self._balances.pop(asset)
                self._free.pop(asset, None)
                self._locked.pop(asset, None)
                if old != 0:
                    balances_changed += 1
                    out.events.append(
                        BalanceUpdate(
                            venue=VENUE,
                            local_ts_ns=now.wall_ns,
                            stream=balances_stream(),
                            asset=asset,
                            balance=Decimal(0),
                            source="reconciled",
                            change=-old,
                            available=Decimal(0),
                            hold=Decimal(0),
                        )
                    )
            ch_b.synced_once = True
            self.stats.reconciled_balances += balances_changed
        # events that arrived during the round trip (rule: module docstring)
        acct_ms = sync.account.update_ms if sync.account is not None else None
        for body in sync.buffer:
            if (
                isinstance(body, pp.AccountPosition)
                and acct_ms is not None
                and body.update_ms < acct_ms
            ):
                continue
            if (
                isinstance(body, pp.BalanceDelta)
                and acct_ms is not None
                and body.clear_ms <= acct_ms
            ):
                continue
            if self._apply(body, now, out, buffered=True):
                self.stats.buffered_applied += 1
        self._state = _Sub.LIVE
        missing = sorted(sync.unresolved)
        out.events.append(
            Reconciled(
                venue=VENUE,
                local_ts_ns=now.wall_ns,
                conn=self.conn,
                reason=sync.reason,
                orders_changed=orders_changed,
                balances_changed=balances_changed,
                open_orders=len(self.open_orders()),
                complete=not missing,
                detail=f"REST did not describe {', '.join(missing[:5])}" if missing else "",
            )
        )

    def _emit_gap(self, ch: _Channel, end_ns: int | None, now: Now, out: Step) -> None:
        assert ch.gap is not None
        cause, detail, start = ch.gap
        ch.gap = None
        out.events.append(private_gap(VENUE, ch.name, cause, detail, start, end_ns, now.wall_ns))

    # ------------------------------------------------------------------ timers
    def on_timer(self, now: Now) -> Step:
        out = Step()
        if not self.connected or self._closing:
            return out
        if self._state is _Sub.WANTED and self._channels and now.mono >= self._retry_at:
            self._subscribe(now, out)
        sync = self._sync
        if sync is not None and sync.retry:
            due = [k for k, when in sync.retry if now.mono >= when]
            sync.retry = [(k, w) for k, w in sync.retry if now.mono < w]
            for key in due:
                path, params, weight = sync.calls[key]
                sync.waiting.add(key)
                out.rest.append(self._signed(key, path, params, weight, now))
        if now.backlog:
            return out  # the answer may be waiting in the queue
        if (
            self._state is _Sub.PENDING
            and now.mono - self._sub_since > self.options.subscribe_timeout_s
        ):
            out.reconnect = "no answer to userDataStream.subscribe.signature"
        return out

    def on_overflow(self, dropped: int, now: Now) -> Step:
        """Frames were dropped: user events may be among them. Reconnect: the new
        subscription and the REST reconciliation rebuild the view."""
        return Step(reconnect=f"{dropped} frames dropped on the private connection")

    def on_bad_transport_frame(self, reason: str, size: int, now: Now) -> Step:
        out = Step()
        self._bad_frame(reason, "", now, out)
        return out

    # ------------------------------------------------------------------ orders
    def gate(self, req: _OrderLike) -> tuple[str, str] | None:
        """Why ``req`` may not be sent: order entry over the WS API is not implemented."""
        if self._closing:
            return "closing", "the feed is closing"
        return "unsupported", "Binance order entry over the WS API is not implemented; use REST"

    def order(self, req: _OrderLike, now: Now) -> Step:
        """Refused at once (``OrderResponse(outcome="refused")``): nothing is sent."""
        refused = self.gate(req)
        assert refused is not None
        self.stats.orders_refused += 1
        ev: Event = OrderResponse(
            venue=VENUE,
            local_ts_ns=now.wall_ns,
            conn=self.conn,
            req_id=req.req_id,
            method=req.method,
            outcome="refused",
            cl_ord_id=req.cl_ord_id,
            error=refused[1],
        )
        return Step(events=[ev])


class _RestFailed(Exception):
    def __init__(self, result: RestResult, err: tuple[int, str] | None) -> None:
        super().__init__(f"HTTP {result.status}: {result.error or err}")
        self.result = result
        self.err = err


def _avg(cum_quote: Decimal | None, cum_qty: Decimal) -> Decimal | None:
    if cum_quote is None or cum_qty <= 0:
        return None
    return cum_quote / cum_qty


def _same(prev: OrderUpdate, ro: pp.RestOrder) -> bool:
    return prev.status == ro.status and prev.cum_qty == ro.cum_qty


def _forward(prev: OrderUpdate | None, r: pp.ExecReport) -> bool:
    """A buffered report is newer than the snapshot's view of its order (docstring rule)."""
    if prev is None:
        return True
    if prev.cum_qty is not None and r.cum_qty > prev.cum_qty:
        return True
    return prev.status in _OPEN and r.status not in _OPEN
