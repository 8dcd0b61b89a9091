"""The library entry point: ``async with gapless.connect(...) as feed: async for ev in feed``.

A :class:`Feed` groups the requested streams into logical connections (one
adapter + one supervisor each), runs every supervisor in one TaskGroup owned
by the ``async with`` block, and merges their events into one bounded queue.
If a supervisor fails with a bug, the TaskGroup cancels the block and the
error surfaces from ``async with``: nothing dies in a task nobody awaits.

When the block ends, every stream still inside an unfinished gap gets a
final :class:`~gapless.events.Gap` with ``end_ts_ns=None``; those events stay
readable with :meth:`Feed.drain`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from types import TracebackType
from typing import Any, Protocol, cast

from gapless.book import Book, BookView
from gapless.errors import ConfigError, FeedClosed, OrderRefused
from gapless.events import DeadMansSwitch, Event, OrderResponse, OrderUpdate, SinkFailed
from gapless.runtime.backoff import TokenBucket
from gapless.runtime.fastqueue import FastQueue
from gapless.runtime.rest import RestBudget, RestClient, RestOptions
from gapless.runtime.supervisor import RuntimeOptions, Supervisor
from gapless.runtime.transport import TransportOptions
from gapless.secrets import CREDENTIALS_FILE_ENV, Credentials
from gapless.sinks.capture import CaptureWriter
from gapless.venues.base import Now, StreamSpec, VenueAdapter
from gapless.venues.kraken.adapter import KrakenAdapter, KrakenOptions
from gapless.venues.kraken.private import KrakenPrivateAdapter, KrakenPrivateOptions, OrderRequest

__all__ = ["Feed", "VenueLimits", "connect"]

log = logging.getLogger("gapless.feed")


@dataclass(frozen=True, slots=True)
class VenueLimits:
    """Connection-attempt token bucket per venue (design.md §3; protocols.md §1.2)."""

    burst: float
    per_second: float


DEFAULT_LIMITS: dict[str, VenueLimits] = {
    # Kraken: ~150 attempts per rolling 10 min per IP, then a 10-minute ban (§1.2).
    "kraken": VenueLimits(burst=20, per_second=100 / 600),
    # Binance: 300 attempts per 5 min per IP (§3.2): half of it sustained.
    "binance": VenueLimits(burst=20, per_second=150 / 300),
    # KuCoin: 30 attempts per minute (§2.4): half of it sustained.
    "kucoin": VenueLimits(burst=5, per_second=15 / 60),
}

VENUES = ("kraken", "binance", "kucoin")

#: events ``Feed._emit`` does more with than queueing them
_EMIT_SPECIAL = frozenset({DeadMansSwitch, OrderResponse})
# closing: how long a cancelled supervisor task gets before it is cancelled again
_RECANCEL_S = 1.0

#: ``urls`` keys: the WebSocket endpoint per venue, plus REST bases.
URL_KEYS = {
    "kraken": ("kraken", "url"),
    "kraken_auth": ("kraken_private", "url"),
    "kraken_rest": ("kraken_private", "rest_url"),
    "kucoin_private_rest": ("kucoin_private", "rest_url"),
    "binance_ws_api": ("binance_private", "url"),
    "binance_private_rest": ("binance_private", "rest_url"),
    "binance": ("binance", "ws_url"),
    "binance_rest": ("binance", "rest_url"),
    "kucoin_rest": ("kucoin", "rest_url"),
}


class FeedAdapter(VenueAdapter, Protocol):
    """What the feed needs from a venue adapter beyond the runtime seam."""

    @property
    def bad_frames(self) -> int: ...

    def add(self, spec: StreamSpec) -> None: ...

    def streams(self) -> list[str]: ...

    def has_book(self, symbol: str) -> bool: ...

    def book(self, symbol: str) -> Book | None: ...

    def stream_state(self, key: str) -> str: ...

    def counters(self) -> Mapping[str, Any]: ...


PRIVATE_CHANNELS = {
    "kraken": ("executions", "balances"),
    "kucoin": ("orders", "balances"),
    "binance": ("orders", "balances"),
}


class PrivateAdapter(Protocol):
    """What the feed needs from a venue's private (account) adapter."""

    venue: str
    options: Any
    stats: Any

    def add(self, spec: StreamSpec) -> None: ...

    def orders(self) -> dict[str, OrderUpdate]: ...

    def open_orders(self) -> dict[str, OrderUpdate]: ...

    def balances(self) -> dict[str, Decimal]: ...

    def gate(self, req: OrderRequest) -> tuple[str, str] | None: ...

    def new_req_id(self) -> int: ...


def _new_private_adapter(venue: str, creds: Credentials, options: Any) -> PrivateAdapter:
    if venue == "kraken":
        return KrakenPrivateAdapter(creds, options or KrakenPrivateOptions())
    if venue == "kucoin":
        from gapless.venues.kucoin.private import KucoinPrivateAdapter, KucoinPrivateOptions

        return KucoinPrivateAdapter(creds, options or KucoinPrivateOptions())
    if venue == "binance":
        from gapless.venues.binance.private import BinancePrivateAdapter, BinancePrivateOptions

        return BinancePrivateAdapter(creds, options or BinancePrivateOptions())
    raise ConfigError(f"{venue} private channels are not supported yet")


def _is_private(spec: StreamSpec) -> bool:
    return spec.channel in PRIVATE_CHANNELS.get(spec.venue, ())


def _new_adapter(venue: str, options: Any) -> FeedAdapter:
    if venue == "kraken":
        return KrakenAdapter(options=options)
    if venue == "binance":
        from gapless.venues.binance.adapter import BinanceAdapter

        return BinanceAdapter(options=options)
    from gapless.venues.kucoin.adapter import KucoinAdapter

    return KucoinAdapter(options=options)


def _default_options(venue: str) -> Any:
    if venue == "kraken_private":
        return KrakenPrivateOptions()
    if venue == "kucoin_private":
        from gapless.venues.kucoin.private import KucoinPrivateOptions

        return KucoinPrivateOptions()
    if venue == "binance_private":
        from gapless.venues.binance.private import BinancePrivateOptions

        return BinancePrivateOptions()
    if venue == "kraken":
        return KrakenOptions()
    if venue == "binance":
        from gapless.venues.binance.adapter import BinanceOptions

        return BinanceOptions()
    from gapless.venues.kucoin.adapter import KucoinOptions

    return KucoinOptions()


class Feed:
    """Merged, ordered-per-stream event stream over one or more connections."""

    def __init__(
        self,
        specs: list[StreamSpec],
        *,
        urls: Mapping[str, str] | None = None,
        runtime: RuntimeOptions | None = None,
        kraken: KrakenOptions | None = None,
        binance: Any = None,
        kucoin: Any = None,
        capture: str | None = None,
        queue_size: int = 10_000,
        limits: Mapping[str, VenueLimits] | None = None,
        credentials: Mapping[str, Credentials] | None = None,
        kraken_private: Any = None,
        credentials_file: str | None = None,
        kucoin_private: Any = None,
        binance_private: Any = None,
    ) -> None:
        if not specs:
            raise ConfigError("connect() needs at least one stream")
        self.runtime = runtime or RuntimeOptions()
        options: dict[str, Any] = {
            "kraken": kraken,
            "binance": binance,
            "kucoin": kucoin,
            "kraken_private": kraken_private,
            "kucoin_private": kucoin_private,
            "binance_private": binance_private,
        }
        for key, url in (urls or {}).items():
            if key not in URL_KEYS:
                raise ConfigError(f"unknown key in urls: {key!r} (known: {sorted(URL_KEYS)})")
            venue, field_name = URL_KEYS[key]
            scheme = ("ws://", "wss://") if field_name != "rest_url" else ("http://", "https://")
            if not url.startswith(scheme):
                raise ConfigError(f"{key} url must start with {' or '.join(scheme)}, got {url!r}")
            base = options[venue] or _default_options(venue)
            options[venue] = dataclasses.replace(base, **{field_name: url.rstrip("/")})
        self._limits = {**DEFAULT_LIMITS, **(limits or {})}
        self._queue: FastQueue[Event] = FastQueue(queue_size)
        self._adapters: list[FeedAdapter] = []
        # Public data needs no credentials; if the environment (or the credentials
        # file) provides some they are held as Secrets (never printed) and
        # registered for redaction in captures. Private streams require them.
        self.credentials: dict[str, Credentials] = dict(credentials or {})
        for venue in {spec.venue for spec in specs if spec.venue in VENUES}:
            if venue not in self.credentials:
                found = Credentials.load(venue, path=credentials_file)
                if found is not None:
                    self.credentials[venue] = found
        self._private: dict[str, PrivateAdapter] = {}
        for spec in specs:
            if spec.venue not in VENUES:
                raise ConfigError(f"venue {spec.venue!r} is not supported (known: {VENUES})")
            if _is_private(spec):
                self._place_private(spec, options.get(f"{spec.venue}_private"))
                continue
            self._place(spec, options[spec.venue] or _default_options(spec.venue))
        if any(a.venue != "kraken" or getattr(a, "needs_rest", False) for a in self._adapters):
            _rest_options(self.runtime.transport)  # refuse a proxy REST cannot use, now
        self._capture_path = capture
        self.capture: CaptureWriter | None = None  # opened in __aenter__, not here
        self._answers: dict[tuple[str, int], asyncio.Future[OrderResponse]] = {}
        for creds in self.credentials.values():
            log.debug(
                "credentials for %s: key=%s secret=%s", creds.venue, creds.api_key, creds.api_secret
            )
        self.supervisors: list[Supervisor] = []
        self._tg: asyncio.TaskGroup | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False
        self._leftover: list[Event] = []
        self._rest: RestClient | None = None
        self.close_timeout_s = 3.0  # bound on a private connection's clean close

    def _place(self, spec: StreamSpec, venue_options: Any) -> None:
        """Put a stream on a connection that can carry it, opening one if needed:
        Kraken book messages carry no depth (one depth per symbol per connection);
        Binance and KuCoin cap streams/topics per connection (their ``add`` refuses)."""
        for adapter in self._adapters:
            if adapter.venue != spec.venue:
                continue
            if spec.key in adapter.streams():
                return
            if spec.channel == "book" and adapter.has_book(spec.symbol):
                continue
            try:
                adapter.add(spec)
            except ConfigError:
                continue
            return
        adapter = _new_adapter(spec.venue, venue_options)
        adapter.add(spec)
        self._adapters.append(adapter)

    def _place_private(self, spec: StreamSpec, venue_options: Any) -> None:
        """Private streams share one authenticated connection per venue."""
        adapter = self._private.get(spec.venue)
        if adapter is None:
            creds = self.credentials.get(spec.venue)
            if creds is None:
                raise ConfigError(
                    f"{spec.key} needs {spec.venue} API credentials: set "
                    f"GAPLESS_{spec.venue.upper()}_API_KEY and _API_SECRET, or a credentials "
                    f"file (${CREDENTIALS_FILE_ENV}), or pass credentials="
                )
            adapter = _new_private_adapter(spec.venue, creds, venue_options)
            self._private[spec.venue] = adapter
            self._adapters.append(cast(FeedAdapter, adapter))
        adapter.add(spec)

    def _live(self) -> list[FeedAdapter]:
        """Each connection's current adapter: a make-before-break handover
        replaces a supervisor's adapter with its successor."""
        if not self.supervisors:
            return self._adapters
        return [cast(FeedAdapter, sup.adapter) for sup in self.supervisors]

    # ------------------------------------------------------------------ lifecycle
    async def __aenter__(self) -> Feed:
        loop = asyncio.get_running_loop()
        if self._capture_path:
            # a failing disk is a SinkFailed event, never an error of the feed
            self.capture = CaptureWriter(self._capture_path, on_failure=self._sink_failed)
            for creds in self.credentials.values():
                for value in creds.secrets():
                    self.capture.redact(value)
        buckets: dict[str, TokenBucket] = {}
        budgets: dict[str, RestBudget] = {}
        if any(a.venue != "kraken" or getattr(a, "needs_rest", False) for a in self._adapters):
            self._rest = RestClient(_rest_options(self.runtime.transport))
            await self._rest.__aenter__()
        counts: dict[str, int] = {}
        for adapter in self._adapters:
            lim = self._limits[adapter.venue]
            bucket = buckets.setdefault(
                adapter.venue, TokenBucket(lim.burst, lim.per_second, loop.time())
            )
            wb = getattr(getattr(adapter, "options", None), "rest_budget", None)
            budget = None
            if wb is not None:
                budget = budgets.setdefault(adapter.venue, RestBudget(wb.capacity, wb.per_second))
            counts[adapter.venue] = i = counts.get(adapter.venue, 0) + 1
            self.supervisors.append(
                Supervisor(
                    f"{adapter.venue}#{i}",
                    adapter,
                    self.runtime,
                    self._emit,
                    bucket,
                    capture=self.capture,
                    rest=self._rest,
                    rest_budget=budget,
                    emit_nowait=self._emit_nowait,
                )
            )
        self._tg = asyncio.TaskGroup()
        await self._tg.__aenter__()
        for sup in self.supervisors:
            self._tasks.append(self._tg.create_task(sup.run(), name=sup.name))
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        await self._stop()
        assert self._tg is not None
        await self._tg.__aexit__(exc_type, exc, tb)
        return None

    async def aclose(self) -> None:
        """Stop every connection (the ``async with`` block also does this)."""
        await self._stop()

    async def _stop(self) -> None:
        if self._closed:
            return
        self._closed = True
        # order safety first: private connections disarm the dead man's switch
        # (and wait for the venue to confirm, bounded) before anything is cancelled
        closers = [
            sup.close_gracefully(self.close_timeout_s)
            for sup in self.supervisors
            if getattr(sup.adapter, "private", False)
        ]
        if closers:
            await asyncio.gather(*closers, return_exceptions=True)
        for sup in self.supervisors:
            sup.stop()
        for t in self._tasks:
            t.cancel()
        pending = {t for t in self._tasks if not t.done()}
        while pending:
            # failures stay in the tasks: the TaskGroup re-raises them from __aexit__.
            # A cancellation can be absorbed by a session's TaskGroup when it lands as
            # the session ends on its own; the stop flag ends the supervisor's loop at
            # its next turn, and cancelling again reaches a session it opened meanwhile.
            _, pending = await asyncio.wait(pending, timeout=_RECANCEL_S)
            for t in pending:
                log.warning(
                    "%s: still running after being cancelled; cancelling again", t.get_name()
                )
                t.cancel()
        now = Now(asyncio.get_running_loop().time(), self.runtime.wall_clock())
        for sup in self.supervisors:
            self._leftover.extend(sup.final_events(now))
        for adapter in self._live():
            self._leftover.extend(adapter.shutdown(now).events)
        if self._rest is not None:
            await self._rest.__aexit__(None, None, None)
            self._rest = None
        for sup in self.supervisors:
            if sup.closed_event is not None:
                self._leftover.append(sup.closed_event)
        if self.capture is not None:
            self.capture.close()

    def _sink_failed(self, writer: CaptureWriter) -> None:
        """The capture failed (called once, synchronously, from whichever write
        hit the error): log it and deliver one :class:`SinkFailed` without ever
        blocking the caller (a socket reader) or raising into it."""
        error = writer.error or "unknown error"
        log.error(
            "capture to %s failed: %s; capture stopped (%d records dropped), the feed goes on",
            writer.path,
            error,
            writer.dropped,
        )
        ev = SinkFailed(
            venue="*",
            local_ts_ns=self.runtime.wall_clock(),
            sink="capture",
            path=str(writer.path),
            error=error,
            dropped=writer.dropped,
        )
        if self._emit_nowait(ev):
            return
        if self._closed or self._tg is None:
            self._leftover.append(ev)  # read after close, or by drain()
            return
        # the consumer lags: deliver it when there is room, from a task the
        # TaskGroup owns (cancelled by _stop, which then keeps the event)
        try:
            task = self._tg.create_task(self._emit_late(ev), name="gapless.sink_failed")
        except RuntimeError:  # the TaskGroup is shutting down (a supervisor failed)
            self._leftover.append(ev)
            return
        self._tasks.append(task)

    async def _emit_late(self, ev: Event) -> None:
        try:
            await self._emit(ev)
        except asyncio.CancelledError:
            self._leftover.append(ev)
            raise

    def _emit_nowait(self, ev: Event) -> bool:
        """Queue ``ev`` at once if the consumer has room and nothing else is
        owed on it (an answer to resolve, an alert to log); else False."""
        queue = self._queue
        if queue.full() or type(ev) in _EMIT_SPECIAL:
            return False
        queue.put_nowait(ev)
        return True

    async def _emit(self, ev: Event) -> None:
        if isinstance(ev, DeadMansSwitch) and ev.state.endswith("_failed"):
            # an alert: open orders are protected only until the last trigger time
            log.warning("%s dead man's switch %s on %s: %s", ev.venue, ev.state, ev.conn, ev.error)
        if isinstance(ev, OrderResponse):
            fut = self._answers.pop((ev.venue, ev.req_id), None)
            if fut is not None and not fut.done():
                fut.set_result(ev)
        if self._closed and self._queue.full():
            self._leftover.append(ev)  # closing: never block on a consumer that stopped
            return
        await self._queue.put(ev)

    # ------------------------------------------------------------------ consuming
    def __aiter__(self) -> Feed:
        return self

    async def __anext__(self) -> Event:
        if self._closed:
            if not self._queue.empty():
                return self._queue.get_nowait()
            if self._leftover:
                return self._leftover.pop(0)
            raise StopAsyncIteration
        return await self._queue.get()

    def drain(self) -> list[Event]:
        """Everything still queued, including the final gaps after close."""
        out: list[Event] = []
        while not self._queue.empty():
            out.append(self._queue.get_nowait())
        out.extend(self._leftover)
        self._leftover = []
        return out

    # ------------------------------------------------------------------ state access
    def book(self, symbol: str, venue: str = "kraken", depth: int | None = None) -> BookView | None:
        """The live book for ``symbol`` (check ``.valid`` before trusting it)."""
        for adapter in self._live():
            if adapter.venue != venue:
                continue
            b = adapter.book(symbol)
            if b is not None and (depth is None or b.depth == depth):
                return b.view
        return None

    def stats(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for sup in self.supervisors:
            s = sup.stats
            out[sup.name] = {
                "state": sup.state.value,
                "dials": s.dials,
                "connects": s.connects,
                "reconnects": s.reconnects,
                "frames_in": s.frames_in,
                "frames_dropped": s.frames_dropped,
                "dead_peer": s.dead_peer,
                "handshake_rejections": s.handshake_rejections,
                "budget_waits": s.budget_waits,
                "handovers": s.handovers,
                "handovers_forced": s.handovers_forced,
                "handover_failures": s.handover_failures,
                "planned_disconnect_gaps": s.planned_disconnect_gaps,
                "bad_frames": getattr(sup.adapter, "bad_frames", 0),
            }
        return out

    @property
    def adapters(self) -> list[FeedAdapter]:
        return list(self._live())

    # ------------------------------------------------------------------ account
    def _private_pair(self, venue: str) -> tuple[Supervisor, PrivateAdapter]:
        if self._closed:
            raise OrderRefused("closing", "the feed is closed")
        adapter = self._private.get(venue)
        for sup in self.supervisors:
            if adapter is not None and cast(object, sup.adapter) is adapter:
                return sup, adapter
        raise OrderRefused(
            "no_private_connection",
            f"no {venue} private connection: add {venue}.executions() to connect(...)",
        )

    def orders(self, venue: str = "kraken") -> dict[str, OrderUpdate]:
        """Every order of the account seen on ``venue`` (latest state), open and closed."""
        adapter = self._private.get(venue)
        return {} if adapter is None else adapter.orders()

    def open_orders(self, venue: str = "kraken") -> dict[str, OrderUpdate]:
        adapter = self._private.get(venue)
        return {} if adapter is None else adapter.open_orders()

    def balances(self, venue: str = "kraken") -> dict[str, Any]:
        """The account's balance per asset (the venue's total), as of the last event."""
        adapter = self._private.get(venue)
        return {} if adapter is None else adapter.balances()

    async def add_order(
        self,
        venue: str,
        *,
        symbol: str,
        side: str,
        qty: Any,
        order_type: str = "limit",
        limit_price: Any = None,
        time_in_force: str | None = None,
        post_only: bool = False,
        cl_ord_id: str | None = None,
    ) -> OrderResponse:
        """Place an order over the private WebSocket; returns the venue's answer.

        Raises :class:`~gapless.errors.OrderRefused` at once when the order
        gate will not send it (disconnected, reconciling, or the system status
        forbids it) and :class:`~gapless.errors.ConfigError` for invalid
        arguments. The answer's ``outcome`` is ``accepted``, ``rejected`` or
        ``unknown`` (sent, no answer: see the next ``Reconciled``); the
        request is never re-sent."""

        def build(req_id: int) -> OrderRequest:
            return OrderRequest(
                "add_order",
                req_id,
                symbol=symbol,
                side=side,
                order_type=order_type,
                qty=_dec(qty, "qty"),
                limit_price=None if limit_price is None else _dec(limit_price, "limit_price"),
                time_in_force=time_in_force,
                post_only=post_only,
                cl_ord_id=cl_ord_id,
            )

        return await self._order(venue, build)

    async def cancel_order(
        self,
        venue: str,
        *,
        order_ids: list[str] | tuple[str, ...] = (),
        cl_ord_ids: list[str] | tuple[str, ...] = (),
    ) -> OrderResponse:
        return await self._order(
            venue,
            lambda r: OrderRequest(
                "cancel_order", r, order_ids=tuple(order_ids), cl_ord_ids=tuple(cl_ord_ids)
            ),
        )

    async def cancel_all(self, venue: str) -> OrderResponse:
        return await self._order(venue, lambda r: OrderRequest("cancel_all", r))

    async def _order(self, venue: str, build: Callable[[int], OrderRequest]) -> OrderResponse:
        sup, adapter = self._private_pair(venue)
        req = build(0)
        req.validate()
        refused = adapter.gate(req)
        if refused is not None:
            adapter.stats.orders_refused += 1
            raise OrderRefused(refused[0], f"{venue} {req.method} refused: {refused[1]}")
        req = build(adapter.new_req_id())
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[OrderResponse] = loop.create_future()
        self._answers[(venue, req.req_id)] = fut
        if not sup.submit(req):
            self._answers.pop((venue, req.req_id), None)
            adapter.stats.orders_refused += 1
            raise OrderRefused("disconnected", f"{venue} {req.method} refused: no live session")
        # the adapter answers every request: accepted, rejected, refused, or unknown
        # (connection lost / its own deadline), so this wait is bounded by that deadline
        try:
            async with asyncio.timeout(adapter.options.request_timeout_s + 5.0):
                return await fut
        except TimeoutError:
            self._answers.pop((venue, req.req_id), None)
            return OrderResponse(
                venue=venue,
                local_ts_ns=self.runtime.wall_clock(),
                conn=sup.conn,
                req_id=req.req_id,
                method=req.method,
                outcome="unknown",
                error="no answer from the session in time; not re-sent",
            )

    def subscribe(self, spec: StreamSpec) -> None:
        """Add a stream while running. Queued in the connection's bounded outbox
        (raises :class:`OutboxFull` when full) and sent once connected."""
        self._control("subscribe", spec)

    def unsubscribe(self, spec: StreamSpec) -> None:
        """Stop a stream while running (queued like :meth:`subscribe`)."""
        self._control("unsubscribe", spec)

    def _control(self, op: str, spec: StreamSpec) -> None:
        """Route a runtime subscribe/unsubscribe: to the connection that carries (or
        has queued) the stream, so requests stay in order and nothing is carried
        twice; a new stream to the first connection with room (Binance/KuCoin caps,
        Kraken's one book depth per symbol)."""
        if self._closed:
            raise FeedClosed("feed is closed")
        if not self.supervisors:
            raise ConfigError("the feed is not running: subscribe inside 'async with connect(...)'")
        if spec.venue not in VENUES:
            raise ConfigError(f"venue {spec.venue!r} is not supported (known: {VENUES})")
        pairs = [
            (sup, a)
            for sup, a in zip(self.supervisors, self._live(), strict=True)
            if a.venue == spec.venue and getattr(a, "private", False) == _is_private(spec)
        ]
        for sup, adapter in pairs:
            if spec.key in adapter.streams() or any(s == spec for _, s in sup.outbox):
                sup.request(op, spec)
                return
        if op == "unsubscribe":
            raise ConfigError(f"not subscribed: {spec.key}")
        for sup, adapter in pairs:
            if spec.channel == "book" and adapter.has_book(spec.symbol):
                continue
            if not _has_room(sup, adapter):
                continue
            sup.request(op, spec)
            return
        raise ConfigError(
            f"no connection can carry {spec.key}: every {spec.venue} connection is full "
            "(or carries another depth of that book); pass the stream to connect() instead"
        )


def _dec(value: Any, name: str) -> Decimal:
    """Amounts are exact: Decimal, int or decimal text (floats are refused)."""
    if isinstance(value, (bool, float)):
        raise ConfigError(
            f"{name} must be a Decimal, int or decimal string, not {type(value).__name__}"
        )
    try:
        dec = Decimal(value)
    except (InvalidOperation, TypeError, ValueError):
        raise ConfigError(f"{name} is not a number") from None
    if not dec.is_finite():
        raise ConfigError(f"{name} must be finite")
    return dec


def _rest_options(transport: TransportOptions) -> RestOptions:
    """REST follows the WebSocket's explicit settings: the same TLS context (a
    private CA) and the same proxy, so no request bypasses a configured proxy.
    aiohttp tunnels through ``http://`` and ``https://`` proxies only: any other
    proxy is refused rather than letting REST go direct."""
    proxy = transport.proxy
    if proxy is not None and not proxy.lower().startswith(("http://", "https://")):
        scheme = proxy.split("://", 1)[0]
        raise ConfigError(
            f"TransportOptions.proxy: REST requests cannot use a {scheme!r} proxy "
            "(http:// and https:// only), and would otherwise bypass it"
        )
    return RestOptions(
        max_body_bytes=transport.max_rest_body_bytes,
        ssl_context=transport.ssl_context,
        proxy=proxy,
    )


def _has_room(sup: Supervisor, adapter: FeedAdapter) -> bool:
    """The connection can take one more stream (its cap, counting queued subscribes)."""
    options = getattr(adapter, "options", None)
    cap = getattr(options, "max_streams", None) or getattr(
        options, "max_topics_per_connection", None
    )
    if not isinstance(cap, int):
        return True
    queued = sum(1 for op, _ in sup.outbox if op == "subscribe")
    return len(adapter.streams()) + queued < cap


def connect(
    *specs: StreamSpec,
    urls: Mapping[str, str] | None = None,
    runtime: RuntimeOptions | None = None,
    kraken: KrakenOptions | None = None,
    binance: Any = None,
    kucoin: Any = None,
    capture: str | None = None,
    queue_size: int = 10_000,
    credentials: Mapping[str, Credentials] | None = None,
    limits: Mapping[str, VenueLimits] | None = None,
    kraken_private: Any = None,
    credentials_file: str | None = None,
    kucoin_private: Any = None,
    binance_private: Any = None,
) -> Feed:
    """Open a feed over the given streams; use as ``async with connect(...) as feed``.

    Private streams (``kraken.executions()``, ``kraken.balances()``) need
    credentials: ``credentials=``, the ``GAPLESS_<VENUE>_*`` environment
    variables, or a credentials file (``credentials_file=`` or
    ``$GAPLESS_CREDENTIALS_FILE``); see :mod:`gapless.secrets`."""
    return Feed(
        list(specs),
        urls=urls,
        runtime=runtime,
        kraken=kraken,
        binance=binance,
        kucoin=kucoin,
        capture=capture,
        queue_size=queue_size,
        credentials=credentials,
        limits=limits,
        kraken_private=kraken_private,
        credentials_file=credentials_file,
        kucoin_private=kucoin_private,
        binance_private=binance_private,
    )
