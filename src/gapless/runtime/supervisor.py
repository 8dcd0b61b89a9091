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
  aborted. A link silent for ``probe_after_s`` is pinged (WebSocket ping); no
  frame at all within ``probe_timeout_s`` is a dead peer too, so a half-open
  link is noticed even where the venue's own keepalive is slow.

**Make-before-break** (:mod:`gapless.runtime.handover`): when the adapter
flags a planned close (``planned_reconnect``, e.g. Binance ``serverShutdown``
or the 24 h lifetime) and can build a ``successor()``, a second dial runs
beside the first with the same streams; its events are held per stream until
they join the old connection's, then the old connection is retired without
disconnect gaps and the successor becomes the supervisor's adapter. For
venues that support it, every keyed market event passes a per-stream
high-water mark (:class:`~gapless.runtime.handover.Marks`), so the two
connections never deliver a duplicate.

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
from typing import Any, NoReturn, Protocol, cast

from gapless.errors import (
    ConfigError,
    GaplessError,
    GaveUp,
    HandshakeRejected,
    LocalProtocolError,
    OutboxFull,
    TransportError,
)
from gapless.events import BadFrame, ConnectionState, Event, Gap, WatchdogFired
from gapless.runtime.backoff import Backoff, BackoffPolicy, TokenBucket
from gapless.runtime.clock import WallClock, system_wall_clock
from gapless.runtime.fastqueue import FastQueue
from gapless.runtime.handover import PLANNED_DETAIL, Handover, Marks
from gapless.runtime.rest import RestBudget, RestClient, RestTooLarge
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
    #: half-open links: after this much silence (no frame at all) the watchdog sends a
    #: WebSocket ping; no frame within ``probe_timeout_s`` after it is a dead peer. It
    #: notices a dead link on venues whose own keepalive is slow (KuCoin's ~28 s,
    #: Binance's 65 s floor) in ``probe_after_s + probe_timeout_s``. None disables.
    probe_after_s: float | None = 5.0
    probe_timeout_s: float = 5.0
    queue_size: int = 10_000
    #: what the reader does when the processing queue is full: ``"resync"`` (the
    #: default, design.md §3: keep reading, drop, declare a gap and resync, so pongs
    #: never stall) or ``"backpressure"`` (stop reading until there is room: nothing
    #: is dropped, the lag moves into the socket buffers, and server pings wait with
    #: it; for bulk consumers and throughput benchmarks)
    overflow: str = "resync"
    timer_interval_s: float = 0.1
    give_up_after: int | None = None
    alert_after_attempts: int = 10
    outbox_size: int = 256
    wall_clock: WallClock = system_wall_clock
    # make-before-break (planned closes): see gapless.runtime.handover
    handover_timeout_s: float = 30.0
    handover_overlap_s: float = 0.5
    handover_quiet_s: float = 2.0
    handover_max_pending: int = 100_000
    handover_retry_s: float = 2.0

    def __post_init__(self) -> None:
        if self.overflow not in ("resync", "backpressure"):
            raise ConfigError(
                f"RuntimeOptions.overflow must be 'resync' or 'backpressure', got {self.overflow!r}"
            )
        if self.queue_size < 1:
            raise ConfigError("RuntimeOptions.queue_size must be at least 1")
        if (self.probe_after_s is not None and self.probe_after_s <= 0) or (
            self.probe_timeout_s <= 0
        ):
            raise ConfigError("RuntimeOptions.probe_after_s and probe_timeout_s must be > 0")


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
    handovers: int = 0  # planned closes replaced make-before-break
    handovers_forced: int = 0  # the old connection ended before every stream joined
    handover_failures: int = 0  # the successor failed: retried, or break-before-make
    planned_disconnect_gaps: int = 0  # Gap events a planned close caused (goal: 0)
    last_close: str = ""


class _Ended(Exception):
    def __init__(
        self, reason: str, events: list[Event] | None = None, *, venue_code: int | None = None
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.events = events or []
        self.venue_code = venue_code  # the close code when the venue ended the session


@dataclass(frozen=True, slots=True)
class _Overflow:
    dropped: int


@dataclass(frozen=True, slots=True)
class _End:
    pass


class _PrivateAdapter(Protocol):
    """An adapter that takes order requests (Kraken ``ws-auth``)."""

    closing_complete: bool

    def order(self, req: Any, now: Now) -> Step: ...

    def closing(self, now: Now) -> Step: ...


@dataclass(frozen=True, slots=True)
class _Order:
    """An order request from the user, processed in order with the frames."""

    request: Any

    def apply(self, adapter: VenueAdapter, now: Now) -> Step:
        return cast(_PrivateAdapter, adapter).order(self.request, now)


@dataclass(frozen=True, slots=True)
class _Closing:
    """A clean shutdown begins (e.g. disarm the dead man's switch)."""

    def apply(self, adapter: VenueAdapter, now: Now) -> Step:
        return cast(_PrivateAdapter, adapter).closing(now)


_Item = str | bytes | _Overflow | _End | RestResult | _Order | _Closing

_SLOW_RECONNECT_STATUSES = frozenset({"maintenance", "cancel_only"})
_RETIRED = "make-before-break handover"


@dataclass(frozen=True, slots=True)
class _DialFailed:
    reason: str
    status: int | None = None  # HTTP status of a refused upgrade
    retry_after_s: float | None = None
    pre_dial: bool = False  # the pre-dial REST call (token) failed


@dataclass(frozen=True, slots=True)
class _SessionEnd:
    reason: str
    live_for: float | None
    events: list[Event]
    venue_code: int | None = None  # the close code when the venue ended the session


@dataclass(eq=False, slots=True)
class _Link:
    """One dial of the logical connection: its adapter, socket and queues."""

    adapter: VenueAdapter
    conn: str
    shadow: bool = False  # a make-before-break successor, not promoted yet
    ws: WsConnection | None = None
    rest_calls: asyncio.Queue[RestCall] | None = None
    last_frame: float = 0.0
    held_back: bool = False  # the reader waits for room (overflow="backpressure")
    opened: float = 0.0  # loop time the session started
    live_since: float | None = None
    retire: str | None = None  # set: the processor ends the session with this reason
    dialed: asyncio.Future[bool] | None = None  # successor: resolved when its dial ended
    task: asyncio.Task[_SessionEnd] | None = None
    queue: FastQueue[_Item] | None = None  # the processing queue of the running session
    closing_done: asyncio.Event | None = None  # set once the adapter finished closing


class _Successive(Protocol):
    """An adapter that can be replaced make-before-break."""

    planned_reconnect: str | None

    def successor(self) -> VenueAdapter: ...

    def streams(self) -> list[str]: ...


def _hands_over(adapter: VenueAdapter) -> bool:
    return callable(getattr(adapter, "successor", None)) and hasattr(adapter, "planned_reconnect")


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
        emit_nowait: Callable[[Event], bool] | None = None,
    ) -> None:
        self.name = name
        self.adapter = adapter  # the primary connection's adapter (changes at a handover)
        self.options = options
        self._emit = emit
        # the hot path: hands an event over without a coroutine when the consumer
        # has room (returns False when the event must go through ``emit``)
        self._emit_nowait = emit_nowait or _never
        self.limiter = limiter
        self.capture = capture
        self.backoff = backoff or Backoff(options.backoff)
        self.sm = StateMachine()
        self.stats = SupervisorStats()
        self.slow_reconnect = False  # venue said maintenance / cancel_only
        self._slow_from_503 = False  # ... or refused an upgrade with 503 (until a dial works)
        self.conn = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self.outbox: deque[tuple[str, StreamSpec]] = deque()
        self.rest = rest
        self.rest_budget = rest_budget
        self.closed_event: ConnectionState | None = None
        # make-before-break
        self._marks: Marks | None = Marks() if _hands_over(adapter) else None
        self._handover: Handover | None = None
        self._ho_adapter: VenueAdapter | None = None  # the successor's adapter
        self._ho_deadline = 0.0
        self._ho_planned = ""  # what planned the close being replaced
        self._succ: _Link | None = None
        self._primary: _Link | None = None
        self._retry_handover_at = 0.0
        self._handover_streak = 0
        self._tg: asyncio.TaskGroup | None = None
        self.stopping = False

    def stop(self) -> None:
        """Mark the supervisor as stopping; the feed then cancels its task.

        The flag, not the cancellation alone, is what ends :meth:`run`: a
        cancellation that lands just as a session ends on its own is absorbed
        by the session's TaskGroup (its children's errors take priority over
        the parent's CancelledError), and the loop would otherwise dial again."""
        self.stopping = True

    def request(self, op: str, spec: StreamSpec) -> None:
        """Queue a control request (bounded; applied in order once connected)."""
        if len(self.outbox) >= self.options.outbox_size:
            raise OutboxFull(f"{self.name}: {len(self.outbox)} control requests already queued")
        self.outbox.append((op, spec))

    def submit(self, request: Any) -> bool:
        """Hand an order request to the running session (processed in order with
        the frames). False when there is no session to take it, or its queue is
        full: the caller refuses the request (it is never kept for later)."""
        link = self._primary
        if link is None or link.queue is None or link.ws is None or link.ws.closed is not None:
            return False
        if link.queue.full():
            return False
        link.queue.put_nowait(_Order(request))
        return True

    async def close_gracefully(self, timeout_s: float) -> bool:
        """Let the adapter finish cleanly before the feed stops (Kraken: disarm
        the dead man's switch and wait for the venue's answer), bounded by
        ``timeout_s``. True when the adapter reported it finished."""
        link = self._primary
        adapter = link.adapter if link is not None else None
        if link is None or link.queue is None or not callable(getattr(adapter, "closing", None)):
            return False
        if link.ws is None or link.ws.closed is not None:
            return False
        link.closing_done = done = asyncio.Event()
        try:
            link.queue.put_nowait(_Closing())
        except asyncio.QueueFull:
            return False
        try:
            async with asyncio.timeout(timeout_s):
                await done.wait()
        except TimeoutError:
            log.warning("%s: clean close did not finish within %.1f s", self.name, timeout_s)
            return False
        return bool(getattr(link.adapter, "closing_complete", False))

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
        await self._emit(self._state_event(to, prev, reason, delay_s))

    def _state_event(
        self, to: ConnState, prev: ConnState, reason: str, delay_s: float | None = None
    ) -> ConnectionState:
        return ConnectionState(
            venue=self.adapter.venue,
            local_ts_ns=self.options.wall_clock(),
            conn=self.conn or self.name,
            state=to.value,
            previous=prev.value,
            reason=reason,
            attempt=self.backoff.attempts,
            delay_s=delay_s,
        )

    def _register_redactions(self, link: _Link) -> None:
        if self.capture is not None:
            for secret in link.adapter.redactions():
                self.capture.redact(secret)

    def _record(self, link: _Link, kind: str, **fields: object) -> None:
        if self.capture is not None:
            t = self.options.wall_clock() / 1e9
            self.capture.write(t, link.adapter.venue, link.conn, kind, **fields)

    async def _deliver(self, link: _Link, events: list[Event]) -> None:
        """Hand events to the feed. For venues with make-before-break, keyed
        market events pass the per-stream marks (no duplicate across two
        connections) and a successor's events wait in the handover until their
        stream joins."""
        marks = self._marks
        if marks is None:
            nowait = self._emit_nowait
            for ev in events:
                if not nowait(ev):
                    await self._emit(ev)
            return
        ho = self._handover
        if ho is not None and link.adapter is self._ho_adapter:
            now = self._now()
            for ev in events:
                await self._release(ho.offer(ev, now))
            return
        for ev in events:
            if marks.admit(ev, merging=ho is not None):
                await self._emit_counted(ev)

    async def _release(self, events: list[Event]) -> None:
        assert self._marks is not None
        merging = self._handover is not None
        for ev in events:
            if self._marks.admit(ev, merging=merging):
                await self._emit_counted(ev)

    async def _emit_counted(self, ev: Event) -> None:
        if isinstance(ev, Gap) and ev.detail.startswith(PLANNED_DETAIL):
            self.stats.planned_disconnect_gaps += 1
        if not self._emit_nowait(ev):
            await self._emit(ev)

    def final_events(self, now: Now) -> list[Event]:
        """Called by the feed after this supervisor stopped: gaps for streams a
        forced handover had not joined yet (the adapters report their own)."""
        ho = self._handover
        if ho is None or self._succ is not None:
            return []  # no handover, or the old connection still owned every stream
        events: list[Event] = list(ho.close(now))
        self.stats.planned_disconnect_gaps += len(events)
        self._handover = None
        return events

    # ------------------------------------------------------------------ main loop
    async def run(self) -> None:
        """Run until cancelled (or until the give-up threshold, if configured)."""
        self._loop = asyncio.get_running_loop()
        delay = 0.0
        try:
            # the TaskGroup owns a make-before-break successor's task
            async with asyncio.TaskGroup() as tg:
                self._tg = tg
                while not self.stopping:
                    await self._pace(delay)
                    if self.stopping:
                        break
                    delay = await self._dial_once()
                # stopped, but the feed's cancellation was absorbed on the way: end
                # as cancelled, which also cancels a make-before-break successor
                raise asyncio.CancelledError
        except* GaveUp as group:
            raise group.exceptions[0] from None
        finally:
            self._tg = None
            if self.sm.can(ConnState.CLOSED):
                prev = self.sm.transition(ConnState.CLOSED, "feed closed")
                log.info("%s: %s -> CLOSED: feed closed", self.name, prev)
                # delivered by the feed after its tasks ended (no awaiting in teardown)
                self.closed_event = self._state_event(ConnState.CLOSED, prev, "feed closed")

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

    async def _dial(self, link: _Link) -> WsConnection | _DialFailed:
        """Pre-dial REST (if the venue needs it), then the WebSocket handshake."""
        adapter = link.adapter
        pre = adapter.prepare_dial(self._now())
        if pre is not None:
            answer = await self._rest_call(pre, link, record_body=False)
            why = adapter.on_dial_rest(answer, self._now())
            self._register_redactions(link)  # before anything carrying the token is captured
            if why is not None:
                return _DialFailed(why, retry_after_s=answer.retry_after_s, pre_dial=True)
        url = adapter.url
        try:
            return await open_connection(url, self.options.transport)
        except HandshakeRejected as exc:
            adapter.on_dial_failed(str(exc), self._now())
            self.stats.handshake_rejections += 1
            self._record(link, "ws_close", url=safe_url(url), status=exc.status, data=str(exc))
            return _DialFailed(str(exc), exc.status, exc.retry_after_s)
        except (TransportError, OSError) as exc:
            adapter.on_dial_failed(str(exc), self._now())
            return _DialFailed(str(exc))

    async def _dial_failed(self, failed: _DialFailed) -> float:
        """Pace the next attempt after a failed dial; returns the delay."""
        self._check_give_up()
        status = failed.status
        if status in (429, 418):
            retry = failed.retry_after_s if failed.retry_after_s is not None else 60.0
            delay = self.backoff.failure_delay(retry_after_s=retry)
            await self._to(ConnState.CIRCUIT_OPEN, failed.reason, delay)
        elif status == 503 and not failed.pre_dial:
            self.slow_reconnect = True
            self._slow_from_503 = True
            delay = self.backoff.failure_delay(maintenance=True, retry_after_s=failed.retry_after_s)
            await self._to(ConnState.MAINTENANCE, failed.reason, delay)
        else:
            delay = self.backoff.failure_delay(
                maintenance=self.slow_reconnect, retry_after_s=failed.retry_after_s
            )
            await self._to(ConnState.BACKOFF, failed.reason, delay)
        return delay

    async def _dial_once(self) -> float:
        """One dial and, if it connects, one session (and the sessions of any
        make-before-break successors it hands over to). Returns the next delay."""
        self.stats.dials += 1
        link = _Link(self.adapter, f"{self.name}.{self.stats.dials}")
        self.conn = link.conn
        await self._to(ConnState.CONNECTING, "dialing")
        ws = await self._dial(link)
        if isinstance(ws, _DialFailed):
            return await self._dial_failed(ws)
        self.stats.connects += 1
        if self._slow_from_503:
            # the upgrade works again; a venue with a status channel (Kraken) says so
            # itself if the maintenance goes on
            self.slow_reconnect = self._slow_from_503 = False
        link.ws = ws
        self._primary = link
        end = await self._session(link)
        while not self.stopping and (successor := await self._after_session(link, end)):
            link = successor
            assert link.task is not None
            end = await link.task
        self._primary = None
        self.stats.last_close = end.reason
        self.backoff.connection_ended(end.live_for)
        await self._finish(link, end)
        if self.stopping:
            return 0.0
        self._check_give_up()
        if self.slow_reconnect:
            delay = self.backoff.failure_delay(maintenance=True)
            await self._to(ConnState.MAINTENANCE, end.reason, delay)
            return delay
        self.stats.reconnects += 1
        await self._to(ConnState.RECONNECTING, end.reason)
        delay = self.backoff.failure_delay()
        if delay > 0:
            await self._to(ConnState.BACKOFF, "backing off", delay)
        return delay

    async def _finish(self, link: _Link, end: _SessionEnd) -> None:
        """The primary connection ended for good: its end events and the
        adapter's disconnect bookkeeping (gaps a planned close caused are
        marked, and counted, through their ``detail``)."""
        reason = end.reason
        if self._marks is not None and self._planned_end(link, end):
            reason = f"{PLANNED_DETAIL}: {reason}"
        await self._deliver(link, end.events)
        await self._deliver(link, link.adapter.on_disconnected(reason, self._now()).events)

    # ------------------------------------------------------------------ make-before-break
    def _planned_end(self, link: _Link, end: _SessionEnd) -> bool:
        """Did ``link`` end by the planned close itself (so its gaps are the plan's)?

        Our own break-before-make (``planned: ...``) does; so does a clean venue
        close (1000/1001, protocols.md §2.1, §3.2) after a ``serverShutdown``, or
        at the lifetime. An abort, a 1008, a dead peer, or a clean close long
        before the lifetime is another fault that happened meanwhile."""
        planned = getattr(link.adapter, "planned_reconnect", None)
        if not planned:
            return False
        if end.reason.startswith("planned: "):
            return True
        if end.venue_code not in (1000, 1001):
            return False
        lifetime = getattr(getattr(link.adapter, "options", None), "lifetime_s", None)
        if "lifetime" in planned and isinstance(lifetime, (int, float)):
            assert self._loop is not None
            return self._loop.time() - link.opened >= lifetime - 1.0
        return True

    def _maybe_start_handover(self, link: _Link, now: Now) -> None:
        """The primary's adapter flagged a planned close: dial a successor."""
        if (
            self._marks is None
            or link is not self._primary
            or self._succ is not None
            or self._handover is not None
            or link.retire is not None
            or now.mono < self._retry_handover_at
            or self._tg is None
        ):
            return
        old = cast(_Successive, link.adapter)
        planned = old.planned_reconnect
        if not planned:
            return
        adapter = old.successor()
        self.stats.dials += 1
        succ = _Link(adapter, f"{self.name}.{self.stats.dials}", shadow=True)
        assert self._loop is not None
        succ.dialed = self._loop.create_future()
        opts = self.options
        self._handover = Handover(
            adapter.venue,
            cast(_Successive, adapter).streams(),
            self._marks,
            now.mono,
            quiet_s=opts.handover_quiet_s,
            overlap_s=opts.handover_overlap_s,
            max_pending=opts.handover_max_pending,
        )
        self._ho_adapter = adapter
        self._ho_planned = planned
        self._ho_deadline = now.mono + opts.handover_timeout_s
        self._succ = succ
        log.info(
            "%s: planned close of %s (%s): dialing %s make-before-break",
            self.name,
            link.conn,
            planned,
            succ.conn,
        )
        succ.task = self._tg.create_task(self._run_successor(succ), name=succ.conn)

    async def _run_successor(self, link: _Link) -> _SessionEnd:
        assert link.dialed is not None
        try:
            ws = await self._dial(link)
        except BaseException:
            _resolve(link.dialed, False)
            raise
        if isinstance(ws, _DialFailed):
            _resolve(link.dialed, False)
            self._abandon(link, f"successor dial failed: {ws.reason}")
            return _SessionEnd(ws.reason, None, [])
        link.ws = ws
        _resolve(link.dialed, True)
        end = await self._session(link)
        if link.shadow:
            self._abandon(link, f"successor ended before the handover: {end.reason}")
        return end

    def _abandon(self, link: _Link, reason: str) -> None:
        """The successor failed before taking over: the old connection goes on;
        try again a little later (the planned close is still ahead)."""
        if self._succ is not link:
            return
        self._succ = None
        self._handover = None
        self._ho_adapter = None
        self.stats.handover_failures += 1
        self._handover_streak += 1
        wait = min(self.options.handover_retry_s * 2 ** (self._handover_streak - 1), 30.0)
        assert self._loop is not None
        self._retry_handover_at = self._loop.time() + wait
        log.warning(
            "%s: make-before-break failed (%s); retrying in %.1f s", self.name, reason, wait
        )

    async def _after_session(self, old: _Link, end: _SessionEnd) -> _Link | None:
        """The primary's session ended: promote a successor if one is running."""
        succ = self._succ
        if succ is None:
            return None
        forced = old.retire is None  # the old connection ended on its own
        if forced:
            assert succ.dialed is not None
            connected = await succ.dialed  # bounded by the transport's connect timeout
            if not connected or succ.task is None or succ.task.done():
                self._abandon(succ, f"no successor when {old.conn} ended ({end.reason})")
                return None
        ho = self._handover
        assert ho is not None
        self._succ = None
        self._handover_streak = 0
        succ.shadow = False
        self.adapter = succ.adapter
        self.conn = succ.conn
        self._primary = succ
        self.stats.handovers += 1
        reason = f"{_RETIRED}: {old.conn} -> {succ.conn} ({self._ho_planned})"
        if forced:
            self.stats.handovers_forced += 1
            reason += f" (forced: {old.conn} ended first: {end.reason})"
            log.warning("%s: %s", self.name, reason)
            await self._deliver(old, end.events)
            await self._release(ho.force(self._now(), planned=self._planned_end(old, end)))
        else:
            log.info("%s: %s", self.name, reason)
        self.stats.last_close = end.reason
        if ho.all_joined:
            self._handover = None
            self._ho_adapter = None
        await self._emit(self._state_event(self.sm.state, self.sm.state, reason))
        await self._follow_phase(succ)
        return succ

    async def _handover_tick(self, now: Now) -> None:
        ho = self._handover
        if ho is None:
            return
        await self._release(ho.tick(now))
        if self._succ is None:  # promoted already (forced): done once every stream joined
            if ho.all_joined:
                self._handover = None
                self._ho_adapter = None
            return
        old = self._primary
        if old is None or old.retire is not None:
            return
        if not ho.forced and now.mono >= self._ho_deadline and not ho.all_joined:
            log.warning(
                "%s: handover deadline: streams %s have not joined; forcing",
                self.name,
                ", ".join(ho.unjoined()[:5]),
            )
            await self._release(ho.force(now))
        if ho.forced or ho.ready_to_retire(now.mono):
            old.retire = _RETIRED

    # ------------------------------------------------------------------ session
    async def _session(self, link: _Link) -> _SessionEnd:
        assert self._loop is not None
        assert link.ws is not None
        loop = self._loop
        ws = link.ws
        link.last_frame = link.opened = loop.time()
        link.live_since = None
        self._record(link, "ws_open", url=safe_url(link.adapter.url))
        queue: FastQueue[_Item] = FastQueue(self.options.queue_size)
        link.queue = queue
        reason = "session ended"
        end_events: list[Event] = []
        venue_code: int | None = None
        # REST answers re-enter the processing queue, so the adapter sees them in order
        link.rest_calls = asyncio.Queue() if self.rest is not None else None
        try:
            try:
                if not link.shadow:
                    await self._to(ConnState.SUBSCRIBING, "connected")
                    # requests queued while disconnected join the registry replayed on connect
                    await self._apply(link, self._drain_outbox(self._now()))
                await self._apply(link, link.adapter.on_connected(link.conn, self._now()))
            except _Ended as exc:
                reason, end_events, venue_code = exc.reason, exc.events, exc.venue_code
            else:
                try:
                    async with asyncio.TaskGroup() as tg:
                        tg.create_task(self._reader(link, queue))
                        tg.create_task(self._processor(link, queue))
                        tg.create_task(self._watchdog(link))
                        if link.rest_calls is not None:
                            tg.create_task(self._rest_worker(link, queue))
                except* _Ended as group:
                    first = group.exceptions[0]
                    assert isinstance(first, _Ended)
                    reason, end_events, venue_code = first.reason, first.events, first.venue_code
        finally:
            if ws.closed is None:
                if link.retire is not None:
                    why = link.retire
                else:
                    why = "gapless reconnecting"
                    reason = "feed closed" if reason == "session ended" else reason
                await asyncio.shield(ws.close(1000, why))
            self._record(link, "ws_close", code=ws.closed.code if ws.closed else None, data=reason)
            link.queue = None
            if link.closing_done is not None:
                link.closing_done.set()  # nobody will answer on this connection any more
        live_for = loop.time() - link.live_since if link.live_since is not None else None
        return _SessionEnd(reason, live_for, end_events, venue_code)

    async def _reader(self, link: _Link, queue: FastQueue[_Item]) -> None:
        assert self._loop is not None
        assert link.ws is not None
        loop = self._loop
        stats = self.stats
        capture = self.capture
        wall = self.options.wall_clock
        venue = link.adapter.venue
        dropped = 0
        backpressure = self.options.overflow == "backpressure"
        async for frame in link.ws.frames():
            link.last_frame = loop.time()
            stats.frames_in += 1
            if capture is not None:
                capture.write(wall() / 1e9, venue, link.conn, "ws_in", data=frame)
            if dropped:
                if queue.full():
                    dropped += 1
                    stats.frames_dropped += 1
                    continue
                queue.put_nowait(_Overflow(dropped))
                dropped = 0
            if queue.full():
                if backpressure:
                    # not reading is not silence: the watchdog waits while we do
                    link.held_back = True
                    try:
                        await queue.put(frame)
                    finally:
                        link.held_back = False
                        link.last_frame = loop.time()
                    continue
                dropped += 1
                stats.frames_dropped += 1
                stats.overflows += dropped == 1
                continue
            queue.put_nowait(frame)
        if dropped:
            await queue.put(_Overflow(dropped))
        await queue.put(_End())

    async def _processor(self, link: _Link, queue: FastQueue[_Item]) -> None:
        assert self._loop is not None
        assert link.ws is not None
        loop = self._loop
        adapter = link.adapter
        interval = self.options.timer_interval_s
        next_timer = loop.time() + interval
        while True:
            if link.retire is not None:
                raise _Ended(link.retire)
            if not queue.empty():
                item: _Item | None = queue.get_nowait()
            else:
                # never a sub-millisecond wait: clocks may be coarse (virtual time in tests)
                wait = max(0.001, next_timer - loop.time())
                # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a
                # cancellation that lands as the item arrives, and a processor that
                # ignores its cancel keeps the session (and the feed's close) alive
                item = None
                try:
                    async with asyncio.timeout(wait):
                        item = await queue.get()
                except TimeoutError:
                    item = None
            now = self._now()
            if now.mono >= next_timer - 0.0005:
                next_timer = now.mono + interval
                timer_now = Now(now.mono, now.wall_ns, queue.qsize() + (item is not None))
                await self._apply(link, adapter.on_timer(timer_now))
                if link is self._primary:
                    await self._handover_tick(now)
            primary = link is self._primary
            if primary and self.outbox and self._handover is None:
                # held during a handover: the successor was built from the registry
                await self._apply(link, self._drain_outbox(now))
            if item is not None:
                if isinstance(item, (str, bytes)):
                    await self._apply(link, adapter.on_frame(item, now))
                elif isinstance(item, RestResult):
                    await self._apply(link, adapter.on_rest(item, now))
                elif isinstance(item, (_Order, _Closing)):
                    await self._apply(link, item.apply(adapter, now))
                elif isinstance(item, _Overflow):
                    log.warning(
                        "%s: processing queue overflowed, %d frames dropped",
                        link.conn,
                        item.dropped,
                    )
                    await self._apply(link, adapter.on_overflow(item.dropped, now))
                else:
                    await self._closed(link, now)
            if primary and self._marks is not None:
                self._maybe_start_handover(link, now)
            if link.closing_done is not None and getattr(adapter, "closing_complete", False):
                link.closing_done.set()

    async def _closed(self, link: _Link, now: Now) -> None:
        """The socket ended: a frame-too-large close is reported, then the session ends."""
        assert link.ws is not None
        closed = link.ws.closed
        if closed is not None and closed.too_large:
            limit = self.options.transport.max_frame_bytes
            await self._apply(
                link,
                link.adapter.on_bad_transport_frame(f"frame larger than {limit} bytes", limit, now),
            )
        code = closed.code if closed else None
        why = closed.reason if closed and closed.reason else ""
        raise _Ended(f"connection closed (code {code}{': ' + why if why else ''})", venue_code=code)

    async def _watchdog(self, link: _Link) -> None:
        assert self._loop is not None
        assert link.ws is not None
        loop = self._loop
        # a venue whose keepalive is slower than our timer sets a floor (KuCoin pings
        # every ~18 s; Binance's server pings are answered inside the transport)
        dead_after = max(self.options.dead_after_s, link.adapter.min_dead_after_s)
        probe_after = self.options.probe_after_s
        tick = min(1.0, dead_after / 4, probe_after / 2 if probe_after is not None else 1.0)
        while True:
            await asyncio.sleep(tick)
            if link.held_back:
                continue
            silent = loop.time() - link.last_frame
            if silent > dead_after:
                self._dead_peer(link, silent, f"dead peer: no frame for {silent:.1f} s")
            if probe_after is not None and silent > probe_after:
                await self._probe(link, silent)

    async def _probe(self, link: _Link, silent: float) -> None:
        """A silent link: ping it; no frame at all (pong or data) within
        ``probe_timeout_s`` ends the session as a dead peer (a half-open link)."""
        assert self._loop is not None
        assert link.ws is not None
        sent = self._loop.time()
        timeout = self.options.probe_timeout_s
        try:
            async with asyncio.timeout(timeout):
                await link.ws.ping()
        except TimeoutError:
            if link.last_frame < sent:
                silent = self._loop.time() - link.last_frame
                self._dead_peer(
                    link,
                    silent,
                    f"dead peer: no pong within {timeout:g} s after {silent:.1f} s of silence",
                )
        except TransportError:
            pass  # the connection is ending: the reader reports how

    def _dead_peer(self, link: _Link, silent: float, reason: str) -> NoReturn:
        assert link.ws is not None
        self.stats.dead_peer += 1
        link.ws.abort()
        ev = WatchdogFired(
            venue=link.adapter.venue,
            local_ts_ns=self.options.wall_clock(),
            conn=link.conn,
            kind="dead_peer",
            silent_for_s=silent,
        )
        raise _Ended(reason, [ev])

    async def _rest_worker(self, link: _Link, queue: FastQueue[_Item]) -> None:
        assert link.rest_calls is not None
        while True:
            call = await link.rest_calls.get()
            await queue.put(await self._rest_call(call, link))

    async def _rest_call(
        self, call: RestCall, link: _Link, *, record_body: bool = True
    ) -> RestResult:
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
        record_body = record_body and not call.private
        try:
            resp = await self.rest.request(
                call.method,
                call.url,
                params=dict(call.params) if call.params else None,
                headers=dict(call.headers) if call.headers else None,
                body=call.body,
            )
        except GaplessError as exc:
            self._record(link, "rest", method=call.method, url=url, data=str(exc))
            if isinstance(exc, RestTooLarge):
                # hostile input, not a network failure: an event (the adapter then
                # treats the call as failed and asks again later)
                bad = BadFrame(
                    venue=link.adapter.venue,
                    local_ts_ns=self.options.wall_clock(),
                    conn=link.conn,
                    reason=f"REST {call.method} {url}: body over max_rest_body_bytes {exc.limit}",
                    size=exc.read,
                    excerpt="",
                )
                await self._deliver(link, [bad])
            return RestResult(call.key, None, b"", error=str(exc))
        # token endpoints answer with secrets and signed calls carry signatures:
        # record that the call happened, not its body
        shown = resp.text if record_body else "<body not recorded: private call>"
        # the query is not in ``url`` (it may hold secrets); a public call's params are
        # recorded so a replay knows what was asked (e.g. which symbol's snapshot)
        params = dict(call.params) if record_body else None
        self._record(
            link, "rest", method=call.method, url=url, params=params, status=resp.status, data=shown
        )
        if budget is not None:
            budget.on_response(resp.status, resp.retry_after_s, loop.time())
        return RestResult(call.key, resp.status, resp.body, resp.retry_after_s)

    async def _apply(self, link: _Link, step: Step) -> None:
        if step.rest:
            if link.rest_calls is None:
                raise LocalProtocolError(f"{self.name}: adapter asked for REST without a client")
            for call in step.rest:
                link.rest_calls.put_nowait(call)
        if step.sends:
            assert link.ws is not None
            # a frame may carry a secret made just now (a token, a WS API signature):
            # register the adapter's redactions before the frame is captured
            self._register_redactions(link)
            for text in step.sends:
                self.stats.frames_out += 1
                self._record(link, "ws_out", data=text)
                try:
                    await link.ws.send(text)
                except GaplessError as exc:
                    raise _Ended(str(exc)) from None
        if step.events:
            await self._deliver(link, step.events)
        if link.shadow:
            if step.reconnect:
                raise _Ended(step.reconnect)
            return
        if step.system_status is not None:
            self.slow_reconnect = step.system_status in _SLOW_RECONNECT_STATUSES
            self._slow_from_503 = False
        if step.reconnect:
            raise _Ended(step.reconnect)
        if link.live_since is None or _PHASE_STATE[link.adapter.phase] is not self.sm.state:
            await self._follow_phase(link)

    async def _follow_phase(self, link: _Link) -> None:
        phase = link.adapter.phase
        target = _PHASE_STATE[phase]
        if target is ConnState.LIVE and link.live_since is None:
            assert self._loop is not None
            link.live_since = self._loop.time()
        if self.sm.state is target or self.sm.state not in (
            ConnState.SUBSCRIBING,
            ConnState.SYNCING,
            ConnState.LIVE,
        ):
            return
        await self._to(target, f"adapter phase {phase.value}")


def _never(ev: Event) -> bool:
    return False


_PHASE_STATE = {
    Phase.SUBSCRIBING: ConnState.SUBSCRIBING,
    Phase.SYNCING: ConnState.SYNCING,
    Phase.LIVE: ConnState.LIVE,
}


def _resolve(fut: asyncio.Future[bool], value: bool) -> None:
    if not fut.done():
        fut.set_result(value)
