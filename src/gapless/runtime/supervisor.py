"""Supervisor: owns one logical connection through every failure (design.md §3).

Per dial, three tasks run in one TaskGroup:

- **reader**: drains the socket into a bounded queue and never waits on
  processing. When the queue is full, frames are dropped and counted, and an
  overflow marker is queued as soon as there is room: the adapter turns it
  into declared gaps and a resync. When the socket ends, an end marker is
  queued so every frame already received is still processed.
- **processor**: feeds frames to the venue adapter, runs the adapter's timers
  (keepalive, ack deadlines, staleness, retries), sends what it asks and
  delivers its events (backpressure from a slow consumer stops here, never at
  the socket).
- **watchdog**: dead-peer timer over *any* frame; on expiry the socket is
  aborted.

Between dials the supervisor paces itself with :class:`~gapless.runtime.backoff.Backoff`
and the venue's connection-attempt token bucket, honours ``Retry-After`` on 429,
and waits at least 5 s per attempt while the venue is in maintenance. Every
state change is a :class:`~gapless.events.ConnectionState` event and a log line.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from gapless.errors import (
    GaplessError,
    GaveUp,
    HandshakeRejected,
    LocalProtocolError,
    OutboxFull,
    TransportError,
)
from gapless.events import ConnectionState, Event, WatchdogFired
from gapless.runtime.backoff import Backoff, BackoffPolicy, TokenBucket
from gapless.runtime.clock import WallClock, system_wall_clock
from gapless.runtime.rest import RestBudget, RestClient
from gapless.runtime.state import ConnState, StateMachine
from gapless.runtime.transport import TransportOptions, WsConnection, open_connection, safe_url
from gapless.sinks.capture import CaptureWriter
from gapless.venues.base import Now, Phase, RestCall, RestResult, Step, StreamSpec, VenueAdapter

__all__ = ["GaveUp", "RuntimeOptions", "Supervisor", "SupervisorStats"]

log = logging.getLogger("gapless.supervisor")

Emit = Callable[[Event], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class RuntimeOptions:
    """Phase-named runtime settings (seconds unless noted)."""

    transport: TransportOptions = field(default_factory=TransportOptions)
    backoff: BackoffPolicy = field(default_factory=BackoffPolicy)
    dead_after_s: float = 10.0
    queue_size: int = 10_000
    timer_interval_s: float = 0.1
    give_up_after: int | None = None
    alert_after_attempts: int = 10
    outbox_size: int = 256
    wall_clock: WallClock = system_wall_clock


@dataclass(slots=True)
class SupervisorStats:
    dials: int = 0
    connects: int = 0
    reconnects: int = 0
    frames_in: int = 0
    frames_out: int = 0
    frames_dropped: int = 0
    overflows: int = 0
    handshake_rejections: int = 0
    dead_peer: int = 0
    budget_waits: int = 0
    last_close: str = ""


class _Ended(Exception):
    def __init__(self, reason: str, events: list[Event] | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.events = events or []


@dataclass(frozen=True, slots=True)
class _Overflow:
    dropped: int


@dataclass(frozen=True, slots=True)
class _End:
    pass


_Item = str | bytes | _Overflow | _End | RestResult

_SLOW_RECONNECT_STATUSES = frozenset({"maintenance", "cancel_only"})


class Supervisor:
    def __init__(
        self,
        name: str,
        adapter: VenueAdapter,
        options: RuntimeOptions,
        emit: Emit,
        limiter: TokenBucket,
        *,
        capture: CaptureWriter | None = None,
        backoff: Backoff | None = None,
        rest: RestClient | None = None,
        rest_budget: RestBudget | None = None,
    ) -> None:
        self.name = name
        self.adapter = adapter
        self.options = options
        self._emit = emit
        self.limiter = limiter
        self.capture = capture
        self.backoff = backoff or Backoff(options.backoff)
        self.sm = StateMachine()
        self.stats = SupervisorStats()
        self.slow_reconnect = False  # venue said maintenance / cancel_only
        self.conn = ""
        self._last_frame = 0.0
        self._live_since: float | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.outbox: deque[tuple[str, StreamSpec]] = deque()
        self.rest = rest
        self.rest_budget = rest_budget
        self._rest_calls: asyncio.Queue[RestCall] | None = None
        self.closed_event: ConnectionState | None = None

    def request(self, op: str, spec: StreamSpec) -> None:
        """Queue a control request (bounded; applied in order once connected)."""
        if len(self.outbox) >= self.options.outbox_size:
            raise OutboxFull(f"{self.name}: {len(self.outbox)} control requests already queued")
        self.outbox.append((op, spec))

    def _drain_outbox(self, now: Now) -> Step:
        step = Step()
        while self.outbox:
            op, spec = self.outbox.popleft()
            step.extend(self.adapter.control(op, spec, now))
        return step

    # ------------------------------------------------------------------ helpers
    def _now(self) -> Now:
        assert self._loop is not None
        return Now(self._loop.time(), self.options.wall_clock())

    @property
    def state(self) -> ConnState:
        return self.sm.state

    async def _to(self, to: ConnState, reason: str, delay_s: float | None = None) -> None:
        if self.sm.state is to:
            return
        prev = self.sm.transition(to, reason)
        extra = f" (waiting {delay_s:.2f} s)" if delay_s is not None else ""
        log.info("%s: %s -> %s: %s%s", self.name, prev, to, reason, extra)
        await self._emit(
            ConnectionState(
                venue=self.adapter.venue,
                local_ts_ns=self.options.wall_clock(),
                conn=self.conn or self.name,
                state=to.value,
                previous=prev.value,
                reason=reason,
                attempt=self.backoff.attempts,
                delay_s=delay_s,
            )
        )

    def _record(self, kind: str, **fields: object) -> None:
        if self.capture is not None:
            t = self.options.wall_clock() / 1e9
            self.capture.write(t, self.adapter.venue, self.conn, kind, **fields)

    # ------------------------------------------------------------------ main loop
    async def run(self) -> None:
        """Run until cancelled (or until the give-up threshold, if configured)."""
        self._loop = asyncio.get_running_loop()
        delay = 0.0
        try:
            while True:
                await self._pace(delay)
                delay = await self._dial_once()
        finally:
            if self.sm.can(ConnState.CLOSED):
                prev = self.sm.transition(ConnState.CLOSED, "feed closed")
                log.info("%s: %s -> CLOSED: feed closed", self.name, prev)
                # delivered by the feed after its tasks ended (no awaiting in teardown)
                self.closed_event = ConnectionState(
                    venue=self.adapter.venue,
                    local_ts_ns=self.options.wall_clock(),
                    conn=self.conn or self.name,
                    state=ConnState.CLOSED.value,
                    previous=prev.value,
                    reason="feed closed",
                    attempt=self.backoff.attempts,
                )

    async def _pace(self, delay: float) -> None:
        """Sleep out the backoff delay, then the connection-attempt bucket."""
        assert self._loop is not None
        if delay > 0:
            await asyncio.sleep(delay)
        while not self.limiter.take(self._loop.time()):
            wait = self.limiter.wait_time(self._loop.time())
            self.stats.budget_waits += 1
            log.info("%s: connection-attempt budget exhausted, waiting %.2f s", self.name, wait)
            if self.sm.state is not ConnState.BACKOFF and self.sm.can(ConnState.BACKOFF):
                await self._to(ConnState.BACKOFF, "connection-attempt budget exhausted", wait)
            await asyncio.sleep(max(wait, 0.001))

    def _check_give_up(self) -> None:
        opts = self.options
        n = self.backoff.attempts + 1  # including the failure being handled
        if n == opts.alert_after_attempts:
            log.warning("%s: %d consecutive attempts without a stable connection", self.name, n)
        if opts.give_up_after is not None and n >= opts.give_up_after:
            raise GaveUp(f"{self.name}: gave up after {n} attempts")

    async def _dial_once(self) -> float:
        """One dial and, if it connects, one session. Returns the next delay."""
        self.stats.dials += 1
        self.conn = f"{self.name}.{self.stats.dials}"
        await self._to(ConnState.CONNECTING, "dialing")
        pre = self.adapter.prepare_dial(self._now())
        if pre is not None:
            answer = await self._rest_call(pre, record_body=False)
            why = self.adapter.on_dial_rest(answer, self._now())
            if self.capture is not None:
                for secret in self.adapter.redactions():
                    self.capture.redact(secret)
            if why is not None:
                self._check_give_up()
                delay = self.backoff.failure_delay(
                    maintenance=self.slow_reconnect, retry_after_s=answer.retry_after_s
                )
                await self._to(ConnState.BACKOFF, why, delay)
                return delay
        url = self.adapter.url
        try:
            ws = await open_connection(url, self.options.transport)
        except HandshakeRejected as exc:
            self.adapter.on_dial_failed(str(exc), self._now())
            self.stats.handshake_rejections += 1
            self._record("ws_close", url=safe_url(url), status=exc.status, data=str(exc))
            self._check_give_up()
            if exc.status in (429, 418):
                retry = exc.retry_after_s if exc.retry_after_s is not None else 60.0
                delay = self.backoff.failure_delay(retry_after_s=retry)
                await self._to(ConnState.CIRCUIT_OPEN, str(exc), delay)
            elif exc.status == 503:
                self.slow_reconnect = True
                delay = self.backoff.failure_delay(
                    maintenance=True, retry_after_s=exc.retry_after_s
                )
                await self._to(ConnState.MAINTENANCE, str(exc), delay)
            else:
                delay = self.backoff.failure_delay(
                    maintenance=self.slow_reconnect, retry_after_s=exc.retry_after_s
                )
                await self._to(ConnState.BACKOFF, str(exc), delay)
            return delay
        except (TransportError, OSError) as exc:
            self.adapter.on_dial_failed(str(exc), self._now())
            self._check_give_up()
            delay = self.backoff.failure_delay(maintenance=self.slow_reconnect)
            await self._to(ConnState.BACKOFF, str(exc), delay)
            return delay
        self.stats.connects += 1
        reason, live_for = await self._session(ws)
        self.stats.last_close = reason
        self.backoff.connection_ended(live_for)
        self._check_give_up()
        if self.slow_reconnect:
            delay = self.backoff.failure_delay(maintenance=True)
            await self._to(ConnState.MAINTENANCE, reason, delay)
            return delay
        self.stats.reconnects += 1
        await self._to(ConnState.RECONNECTING, reason)
        delay = self.backoff.failure_delay()
        if delay > 0:
            await self._to(ConnState.BACKOFF, "backing off", delay)
        return delay

    # ------------------------------------------------------------------ session
    async def _session(self, ws: WsConnection) -> tuple[str, float | None]:
        assert self._loop is not None
        loop = self._loop
        self._last_frame = loop.time()
        self._live_since = None
        self._record("ws_open", url=safe_url(self.adapter.url))
        queue: asyncio.Queue[_Item] = asyncio.Queue(self.options.queue_size)
        reason = "session ended"
        end_events: list[Event] = []
        # REST answers re-enter the processing queue, so the adapter sees them in order
        self._rest_calls = asyncio.Queue() if self.rest is not None else None
        try:
            try:
                await self._to(ConnState.SUBSCRIBING, "connected")
                # requests queued while disconnected join the registry replayed on connect
                await self._apply(ws, self._drain_outbox(self._now()))
                await self._apply(ws, self.adapter.on_connected(self.conn, self._now()))
            except _Ended as exc:
                reason, end_events = exc.reason, exc.events
            else:
                try:
                    async with asyncio.TaskGroup() as tg:
                        tg.create_task(self._reader(ws, queue))
                        tg.create_task(self._processor(ws, queue))
                        tg.create_task(self._watchdog(ws))
                        if self._rest_calls is not None:
                            tg.create_task(self._rest_worker(self._rest_calls, queue))
                except* _Ended as group:
                    first = group.exceptions[0]
                    assert isinstance(first, _Ended)
                    reason, end_events = first.reason, first.events
        finally:
            if ws.closed is None:
                reason = "feed closed" if reason == "session ended" else reason
                await asyncio.shield(ws.close(1000, "gapless reconnecting"))
            self._record("ws_close", code=ws.closed.code if ws.closed else None, data=reason)
        live_for = loop.time() - self._live_since if self._live_since is not None else None
        for ev in end_events:
            await self._emit(ev)
        step = self.adapter.on_disconnected(reason, self._now())
        for ev in step.events:
            await self._emit(ev)
        return reason, live_for

    async def _reader(self, ws: WsConnection, queue: asyncio.Queue[_Item]) -> None:
        assert self._loop is not None
        loop = self._loop
        stats = self.stats
        capture = self.capture
        wall = self.options.wall_clock
        dropped = 0
        async for frame in ws.frames():
            self._last_frame = loop.time()
            stats.frames_in += 1
            if capture is not None:
                capture.write(wall() / 1e9, self.adapter.venue, self.conn, "ws_in", data=frame)
            if dropped:
                if queue.full():
                    dropped += 1
                    stats.frames_dropped += 1
                    continue
                queue.put_nowait(_Overflow(dropped))
                dropped = 0
            if queue.full():
                dropped += 1
                stats.frames_dropped += 1
                stats.overflows += dropped == 1
                continue
            queue.put_nowait(frame)
        if dropped:
            await queue.put(_Overflow(dropped))
        await queue.put(_End())

    async def _processor(self, ws: WsConnection, queue: asyncio.Queue[_Item]) -> None:
        assert self._loop is not None
        loop = self._loop
        adapter = self.adapter
        interval = self.options.timer_interval_s
        next_timer = loop.time() + interval
        while True:
            if not queue.empty():
                item: _Item | None = queue.get_nowait()
            else:
                # never a sub-millisecond wait: clocks may be coarse (virtual time in tests)
                wait = max(0.001, next_timer - loop.time())
                try:
                    item = await asyncio.wait_for(queue.get(), wait)
                except TimeoutError:
                    item = None
            now = self._now()
            if now.mono >= next_timer - 0.0005:
                next_timer = now.mono + interval
                timer_now = Now(now.mono, now.wall_ns, queue.qsize() + (item is not None))
                await self._apply(ws, adapter.on_timer(timer_now))
            if self.outbox:
                await self._apply(ws, self._drain_outbox(now))
            if item is None:
                continue
            if isinstance(item, (str, bytes)):
                await self._apply(ws, adapter.on_frame(item, now))
            elif isinstance(item, RestResult):
                await self._apply(ws, adapter.on_rest(item, now))
            elif isinstance(item, _Overflow):
                log.warning(
                    "%s: processing queue overflowed, %d frames dropped", self.conn, item.dropped
                )
                await self._apply(ws, adapter.on_overflow(item.dropped, now))
            else:
                closed = ws.closed
                if closed is not None and closed.too_large:
                    await self._apply(
                        ws,
                        adapter.on_bad_transport_frame(
                            f"frame larger than {self.options.transport.max_frame_bytes} bytes",
                            self.options.transport.max_frame_bytes,
                            now,
                        ),
                    )
                code = closed.code if closed else None
                why = closed.reason if closed and closed.reason else ""
                raise _Ended(f"connection closed (code {code}{': ' + why if why else ''})")

    async def _watchdog(self, ws: WsConnection) -> None:
        assert self._loop is not None
        loop = self._loop
        # a venue whose keepalive is slower than our timer sets a floor (KuCoin pings
        # every ~18 s; Binance's server pings are answered inside the transport)
        dead_after = max(self.options.dead_after_s, self.adapter.min_dead_after_s)
        tick = min(1.0, dead_after / 4)
        while True:
            await asyncio.sleep(tick)
            silent = loop.time() - self._last_frame
            if silent > dead_after:
                self.stats.dead_peer += 1
                ws.abort()
                ev = WatchdogFired(
                    venue=self.adapter.venue,
                    local_ts_ns=self.options.wall_clock(),
                    conn=self.conn,
                    kind="dead_peer",
                    silent_for_s=silent,
                )
                raise _Ended(f"dead peer: no frame for {silent:.1f} s", [ev])

    async def _rest_worker(
        self, calls: asyncio.Queue[RestCall], queue: asyncio.Queue[_Item]
    ) -> None:
        while True:
            call = await calls.get()
            await queue.put(await self._rest_call(call))

    async def _rest_call(self, call: RestCall, *, record_body: bool = True) -> RestResult:
        """Perform one REST call within the venue's weight budget (never raises)."""
        if self.rest is None:
            return RestResult(call.key, None, b"", error="no REST client configured")
        assert self._loop is not None
        loop = self._loop
        budget = self.rest_budget
        if budget is not None:
            while (wait := budget.wait_time(call.weight, loop.time())) > 0:
                log.info("%s: REST budget: waiting %.2f s before %s", self.name, wait, call.url)
                await asyncio.sleep(max(wait, 0.001))
            budget.take(call.weight, loop.time())
        url = safe_url(call.url)
        try:
            resp = await self.rest.request(call.method, call.url, params=dict(call.params))
        except GaplessError as exc:
            self._record("rest", method=call.method, url=url, data=str(exc))
            return RestResult(call.key, None, b"", error=str(exc))
        # token endpoints answer with secrets: record that the call happened, not the body
        shown = resp.text if record_body else "<body not recorded: contains a token>"
        self._record("rest", method=call.method, url=url, status=resp.status, data=shown)
        if budget is not None:
            budget.on_response(resp.status, resp.retry_after_s, loop.time())
        return RestResult(call.key, resp.status, resp.body, resp.retry_after_s)

    async def _apply(self, ws: WsConnection, step: Step) -> None:
        if step.rest:
            if self._rest_calls is None:
                raise LocalProtocolError(f"{self.name}: adapter asked for REST without a client")
            for call in step.rest:
                self._rest_calls.put_nowait(call)
        for text in step.sends:
            self.stats.frames_out += 1
            self._record("ws_out", data=text)
            try:
                await ws.send(text)
            except GaplessError as exc:
                raise _Ended(str(exc)) from None
        for ev in step.events:
            await self._emit(ev)
        if step.system_status is not None:
            self.slow_reconnect = step.system_status in _SLOW_RECONNECT_STATUSES
        if step.reconnect:
            raise _Ended(step.reconnect)
        await self._follow_phase()

    async def _follow_phase(self) -> None:
        phase = self.adapter.phase
        target = {
            Phase.SUBSCRIBING: ConnState.SUBSCRIBING,
            Phase.SYNCING: ConnState.SYNCING,
            Phase.LIVE: ConnState.LIVE,
        }[phase]
        if self.sm.state is target or self.sm.state not in (
            ConnState.SUBSCRIBING,
            ConnState.SYNCING,
            ConnState.LIVE,
        ):
            return
        if target is ConnState.LIVE and self._live_since is None:
            assert self._loop is not None
            self._live_since = self._loop.time()
        await self._to(target, f"adapter phase {phase.value}")
