"""Kraken v2 public market data: subscriptions, book sync and gap bookkeeping (pure).

One :class:`KrakenAdapter` serves one logical connection to
``wss://ws.kraken.com/v2`` and survives across reconnects: per-connection
state (books, pending acks) is rebuilt on every connect, while per-stream
history (last delivered exchange time, open gap) persists so that the
:class:`~gapless.events.Gap` emitted on resync covers exactly the interval in
which data may have been missed.

Decisions, with their sources:

- Connect (protocols.md §1.4): the venue pushes ``status`` first. Nothing resumes
  across a reconnect: every book is thrown away and rebuilt from a fresh snapshot.
- Precision (§1.7, §1.9): books need ``price_precision``/``qty_precision``; we
  subscribe to ``instrument`` first on every connection and subscribe books
  only once its snapshot arrived.
- Acks (§1.5) come one per symbol; errors may carry no symbol (bad depth), so
  requests are correlated by ``req_id`` and acks by (channel, symbol).
  "Currency pair not supported" and "Subscription depth not supported" are
  permanent; anything else is retried with capped backoff.
- Checksum (§1.7): verified after every snapshot and update. A mismatch opens a
  gap, the stream is resubscribed (unsubscribe + subscribe) at most once per
  ``resubscribe_min_interval_s`` (repeated resubscribes trip "Exceeded msg
  rate"), and too many resyncs in a minute escalate to a reconnect.
- Trades (§1.8): ``trade_id`` is an integer sequence per book, so a jump while
  live is a ``sequence_gap`` with the missing ids (``trade_ids_contiguous``
  switches this off). A re-subscription asks for the last-50 snapshot: missed
  trades are delivered from it, and a gap is declared only for what it cannot
  cover (ending at its oldest trade).
- Tickers carry no sequence or checksum: their gap runs from the last
  delivered ticker to the re-subscription ack's ``time_out``, and stays open
  until the symbol's verified streams (book, trades) are live again.
- Fate sharing: when one stream of a symbol shows withheld data (stale, id
  jump), the symbol's other streams on the connection are resynchronised.
- Keepalive (§1.3): app-level ``ping`` every ``ping_interval_s``; no ``pong``
  within ``pong_timeout_s`` means the link is dead.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass
from typing import Any

import msgspec

from gapless.book import Book
from gapless.errors import DecodeError
from gapless.events import (
    BadFrame,
    BookSnapshot,
    BookUpdate,
    Gap,
    GapCause,
    Levels,
    Subscribed,
    SubscriptionRejected,
    Ticker,
    Trade,
    VenueStatus,
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
from gapless.venues.kraken import protocol as p
from gapless.venues.limits import DEFAULT_MAX_JSON_DEPTH
from gapless.venues.numbers import PriceCache, parse_decimal, parse_fixed, parse_fixed_cached

__all__ = ["KrakenAdapter", "KrakenOptions", "StreamCounters"]

VENUE = "kraken"
_REQUEST_DECODER = msgspec.json.Decoder()  # our own captured requests (replay)
DEFAULT_URL = "wss://ws.kraken.com/v2"

_PERMANENT_ERRORS = ("Currency pair not supported", "Subscription depth not supported")


@dataclass(frozen=True, slots=True)
class KrakenOptions:
    """Phase-named timeouts and policies (seconds)."""

    url: str = DEFAULT_URL
    ping_interval_s: float = 20.0
    pong_timeout_s: float = 10.0
    subscribe_ack_timeout_s: float = 10.0
    book_stale_after_s: float | None = 60.0
    trade_stale_after_s: float | None = None
    resubscribe_min_interval_s: float = 5.0
    max_resyncs_per_minute: int = 4
    reject_retry_base_s: float = 2.0
    reject_retry_cap_s: float = 60.0
    trade_snapshot: bool = False
    trade_ids_contiguous: bool = True
    max_held_trades: int = 10_000
    #: hostile input: a frame nested deeper than this is a BadFrame, refused before
    #: decoding (gapless.venues.limits); None turns the check off
    max_json_depth: int | None = DEFAULT_MAX_JSON_DEPTH


class _St(enum.Enum):
    IDLE = "idle"  # not connected
    WAIT_INSTRUMENT = "wait_instrument"  # book waiting for precision
    PENDING = "pending"  # subscribe sent, no ack yet
    SYNCING = "syncing"  # acked, waiting for snapshot (book)
    LIVE = "live"
    RETRY = "retry"  # rejected (retryable), waiting for retry_at
    REJECTED = "rejected"  # permanent

    __hash__ = object.__hash__  # identity: members are singletons (C-speed dict keys)


_SETTLED = frozenset({_St.LIVE, _St.REJECTED})


@dataclass(slots=True)
class StreamCounters:
    delivered: int = 0
    checksum_ok: int = 0
    checksum_mismatch: int = 0
    gaps: int = 0
    duplicates_dropped: int = 0
    resyncs: int = 0
    healed: int = 0  # outages fully covered by a re-subscription snapshot: no gap


@dataclass(slots=True)
class _OpenGap:
    cause: GapCause
    start_ts_ns: int | None
    first_seq: int | None
    detail: str


class _Stream(CountedState[_St]):
    """One stream's state; ``state`` is counted (:class:`CountedState`), so
    ``phase`` is O(1) per frame."""

    __slots__ = (
        "book",
        "channel",
        "confirmed_ts_ns",
        "counters",
        "depth",
        "gap",
        "held",
        "key",
        "last_data_mono",
        "last_seq",
        "last_ts_ns",
        "resub_due",
        "resync_times",
        "retry_at",
        "retry_delay",
        "sent_mono",
        "spec",
        "symbol",
        "want_snapshot",
    )

    def __init__(self, spec: StreamSpec, counts: dict[_St, int]) -> None:
        super().__init__(counts, _St.IDLE)
        self.spec = spec
        self.key = spec.key
        self.channel = spec.channel
        self.symbol = spec.symbol
        self.depth = spec.depth
        self.last_ts_ns: int | None = None
        self.last_seq: int | None = None
        self.confirmed_ts_ns: int | None = None
        self.gap: _OpenGap | None = None
        self.book: Book | None = None
        self.sent_mono = 0.0
        self.last_data_mono = 0.0
        self.retry_at: float | None = None
        self.retry_delay = 0.0
        self.resub_due: float | None = None
        self.resync_times: deque[float] = deque(maxlen=16)
        self.counters = StreamCounters()
        self.want_snapshot = False
        self.held: list[p.TradeItem] = []


class KrakenAdapter:
    """Pure protocol state for one Kraken v2 public connection."""

    venue = VENUE

    def __init__(
        self,
        specs: list[StreamSpec] | None = None,
        options: KrakenOptions | None = None,
        *,
        passive: bool = False,
    ) -> None:
        self.options = options or KrakenOptions()
        self._max_json_depth = self.options.max_json_depth
        self.passive = passive  # replay: follow captured requests instead of sending
        self._streams: dict[str, _Stream] = {}
        self._state_counts: dict[_St, int] = dict.fromkeys(_St, 0)
        self._book_by_symbol: dict[str, _Stream] = {}
        self._by_channel: dict[tuple[str, str], _Stream] = {}
        for spec in specs or []:
            self.add(spec)
        self.precisions: dict[str, tuple[int, int]] = {}
        self.conn = ""
        self.connected = False
        self.system_status: str | None = None
        self._next_req = 1
        self._pending: dict[int, list[_Stream]] = {}
        self._instrument_req: int | None = None
        self._instrument_ready = False
        self._instrument_sent_mono = 0.0
        self._last_ping_mono = 0.0
        self._ping_outstanding: tuple[int, float] | None = None
        self.bad_frames = 0
        self.frames = 0
        self._shut = False
        self._prices = PriceCache()

    # ------------------------------------------------------------------ registry
    @property
    def url(self) -> str:
        return self.options.url

    def add(self, spec: StreamSpec) -> None:
        if spec.venue != VENUE:
            raise ValueError(f"not a kraken stream: {spec}")
        if spec.key in self._streams:
            return
        st = _Stream(spec, self._state_counts)
        self._streams[spec.key] = st
        if spec.channel == "book":
            self._book_by_symbol[spec.symbol] = st
        else:
            self._by_channel[(spec.channel, spec.symbol)] = st

    def has_book(self, symbol: str) -> bool:
        return symbol in self._book_by_symbol

    def streams(self) -> list[str]:
        return list(self._streams)

    def book(self, symbol: str) -> Book | None:
        st = self._book_by_symbol.get(symbol)
        return st.book if st else None

    def counters(self) -> dict[str, StreamCounters]:
        return {k: s.counters for k, s in self._streams.items()}

    def stream_state(self, key: str) -> str:
        return self._streams[key].state.value

    @property
    def phase(self) -> Phase:
        counts = self._state_counts
        if not self._instrument_ready and self._book_by_symbol:
            return Phase.SUBSCRIBING
        if counts[_St.WAIT_INSTRUMENT] or counts[_St.PENDING] or counts[_St.IDLE]:
            return Phase.SUBSCRIBING
        if counts[_St.SYNCING]:
            return Phase.SYNCING
        return Phase.LIVE

    # ------------------------------------------------------------------ helpers
    def _req(self) -> int:
        r = self._next_req
        self._next_req += 1
        return r

    def _subscribe(self, streams: list[_Stream], now: Now, out: Step) -> None:
        """Group streams by channel (and depth) into subscribe requests."""
        groups: dict[tuple[str, int | None, bool], list[_Stream]] = {}
        for st in streams:
            # A trade re-subscription asks for the last-50 snapshot to heal the outage.
            snap = st.channel == "book" or (
                st.channel == "trade"
                and (self.options.trade_snapshot or st.confirmed_ts_ns is not None)
            )
            groups.setdefault((st.channel, st.depth, snap), []).append(st)
        for (channel, depth, snap), group in groups.items():
            req = self._req()
            params: dict[str, object] = {"snapshot": snap}
            if channel == "book":
                params = {"depth": depth, "snapshot": True}
            for st in group:
                st.state = _St.PENDING
                st.sent_mono = now.mono
                st.want_snapshot = snap
                st.held.clear()
            if not self.passive:
                self._pending[req] = group
                out.sends.append(
                    p.encode_subscribe(channel, [s.symbol for s in group], req, **params)
                )

    def _unsubscribe(self, st: _Stream, out: Step) -> None:
        params: dict[str, object] = {"depth": st.depth} if st.channel == "book" else {}
        if not self.passive:
            out.sends.append(p.encode_unsubscribe(st.channel, [st.symbol], self._req(), **params))

    def _open_gap(self, st: _Stream, cause: GapCause, detail: str) -> None:
        if st.gap is not None:
            return
        if st.last_ts_ns is None and st.confirmed_ts_ns is None:
            return  # nothing was ever promised on this stream
        start = st.last_ts_ns if st.last_ts_ns is not None else st.confirmed_ts_ns
        first_seq = st.last_seq + 1 if st.last_seq is not None else None
        st.gap = _OpenGap(cause, start, first_seq, detail)

    def _close_gap(
        self, st: _Stream, end_ts_ns: int | None, now: Now, out: Step, last_seq: int | None = None
    ) -> None:
        gap = st.gap
        if gap is None:
            return
        st.gap = None
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
                detail=detail,
            )
        )

    def _resync(self, st: _Stream, cause: GapCause, detail: str, now: Now, out: Step) -> None:
        """Invalidate a stream, open its gap, and resubscribe it (rate-limited)."""
        self._open_gap(st, cause, detail)
        if st.book is not None:
            st.book.reset()
        st.counters.resyncs += 1
        while st.resync_times and now.mono - st.resync_times[0] > 60.0:
            st.resync_times.popleft()
        if len(st.resync_times) >= self.options.max_resyncs_per_minute:
            st.resync_times.clear()
            out.reconnect = (
                out.reconnect
                or f"{st.key}: {self.options.max_resyncs_per_minute} resyncs within a minute"
            )
            st.state = _St.IDLE
            return
        last = st.resync_times[-1] if st.resync_times else None
        st.state = _St.RETRY  # not consuming frames until resubscribed
        if last is not None and now.mono - last < self.options.resubscribe_min_interval_s:
            st.resub_due = last + self.options.resubscribe_min_interval_s
            st.retry_at = None
            return
        self._do_resubscribe(st, now, out)

    def _do_resubscribe(self, st: _Stream, now: Now, out: Step) -> None:
        st.resub_due = None
        st.resync_times.append(now.mono)
        self._unsubscribe(st, out)
        self._subscribe([st], now, out)

    # ------------------------------------------------------------------ lifecycle
    def on_connected(self, conn: str, now: Now) -> Step:
        out = Step()
        self.conn = conn
        self.connected = True
        self._pending.clear()
        self._instrument_ready = False
        self._ping_outstanding = None
        self._last_ping_mono = now.mono
        subscribe_now: list[_Stream] = []
        for st in self._streams.values():
            st.resub_due = None
            st.retry_at = None
            st.last_data_mono = now.mono
            if st.state is _St.REJECTED:
                continue
            if st.book is not None:
                st.book.reset()
            if st.channel == "book":
                st.state = _St.WAIT_INSTRUMENT
            else:
                subscribe_now.append(st)
        self._instrument_req = None
        if self._book_by_symbol:
            self._request_instrument(now, out)
        self._subscribe(subscribe_now, now, out)
        return out

    def _request_instrument(self, now: Now, out: Step) -> None:
        """§1.9: precisions for book symbols come from the instrument snapshot."""
        self._instrument_req = self._req()
        self._instrument_sent_mono = now.mono
        if not self.passive:
            out.sends.append(
                p.encode_subscribe("instrument", None, self._instrument_req, snapshot=True)
            )

    def on_disconnected(self, reason: str, now: Now) -> Step:
        out = Step()
        self.connected = False
        self._pending.clear()
        self._ping_outstanding = None
        for st in self._streams.values():
            if st.state is _St.REJECTED:
                continue
            self._open_gap(st, GapCause.DISCONNECT, reason)
            if st.book is not None:
                st.book.reset()
            st.state = _St.IDLE
        return out

    def shutdown(self, now: Now) -> Step:
        """Feed is closing: open gaps are reported with no end."""
        out = Step()
        if self._shut:
            return out
        self._shut = True
        for st in self._streams.values():
            if st.state not in (_St.LIVE, _St.REJECTED, _St.IDLE) or not self.connected:
                self._open_gap(st, GapCause.SHUTDOWN, "feed closed before resync")
            self._close_gap(st, None, now, out)
        return out

    def on_overflow(self, dropped: int, now: Now) -> Step:
        """Frames were dropped between socket and processing: resync everything."""
        out = Step()
        for st in self._streams.values():
            if st.state in (_St.LIVE, _St.SYNCING, _St.PENDING):
                self._resync(st, GapCause.QUEUE_OVERFLOW, f"{dropped} frames dropped", now, out)
        return out

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

    def control(self, op: str, spec: StreamSpec, now: Now) -> Step:
        """A user's subscribe/unsubscribe request from the outbox."""
        out = Step()
        if op == "subscribe":
            if spec.key in self._streams:
                return out
            self.add(spec)
            st = self._streams[spec.key]
            if not self.connected:
                return out  # replayed by on_connected
            if st.channel == "book":
                prec = self.precisions.get(st.symbol)
                if not self._instrument_ready and self._instrument_req is None:
                    # the connection started without books: ask for precisions now
                    self._request_instrument(now, out)
                if not self._instrument_ready or prec is None:
                    st.state = _St.WAIT_INSTRUMENT
                    if self._instrument_ready:  # instrument snapshot already passed
                        st.state = _St.REJECTED
                        out.events.append(
                            SubscriptionRejected(
                                venue=VENUE,
                                local_ts_ns=now.wall_ns,
                                conn=self.conn,
                                stream=st.key,
                                error="symbol not listed by the instrument channel",
                                retry_in_s=None,
                            )
                        )
                    return out
                self._ensure_book(st, prec)
            self._subscribe([st], now, out)
        elif op == "unsubscribe":
            gone = self._streams.pop(spec.key, None)
            if gone is None:
                return out
            gone.forget()
            if gone.channel == "book":
                self._book_by_symbol.pop(gone.symbol, None)
            else:
                self._by_channel.pop((gone.channel, gone.symbol), None)
            if self.connected and gone.state in (_St.LIVE, _St.SYNCING, _St.PENDING):
                self._unsubscribe(gone, out)
        else:
            raise ValueError(f"unknown control op {op!r}")
        return out

    # ------------------------------------------------------------ REST (unused by Kraken public)
    def on_rest(self, result: RestResult, now: Now) -> Step:
        return Step()

    def prepare_dial(self, now: Now) -> RestCall | None:
        return None

    def on_dial_rest(self, result: RestResult, now: Now) -> str | None:
        return None

    def on_dial_failed(self, reason: str, now: Now) -> None:
        return None

    def redactions(self) -> list[str]:
        return []

    @property
    def min_dead_after_s(self) -> float:
        return 0.0  # 1 Hz heartbeat while subscribed (§1.3): any floor works

    # ------------------------------------------------------------------ timers
    def on_timer(self, now: Now) -> Step:
        out = Step()
        if not self.connected:
            return out
        opts = self.options
        judge = now.backlog == 0  # the awaited frame may still be queued
        # keepalive (§1.3)
        if self._ping_outstanding is not None and judge:
            req, sent = self._ping_outstanding
            if now.mono - sent > opts.pong_timeout_s:
                out.events.append(
                    WatchdogFired(
                        venue=VENUE,
                        local_ts_ns=now.wall_ns,
                        conn=self.conn,
                        kind="pong",
                        silent_for_s=now.mono - sent,
                    )
                )
                out.reconnect = f"no pong within {opts.pong_timeout_s:g} s"
                return out
        elif (
            self._ping_outstanding is None
            and now.mono - self._last_ping_mono >= opts.ping_interval_s
        ):
            req = self._req()
            self._ping_outstanding = (req, now.mono)
            self._last_ping_mono = now.mono
            if not self.passive:
                out.sends.append(p.encode_ping(req))
        # instrument deadline
        if (
            judge
            and self._book_by_symbol
            and not self._instrument_ready
            and now.mono - self._instrument_sent_mono > opts.subscribe_ack_timeout_s
        ):
            out.reconnect = "no instrument snapshot within deadline"
            return out
        for req in [
            r for r, g in self._pending.items() if all(s.state is not _St.PENDING for s in g)
        ]:
            del self._pending[req]
        retry_now: list[_Stream] = []
        for st in self._streams.values():
            state = st.state
            if state is _St.PENDING or state is _St.SYNCING:
                if judge and now.mono - st.sent_mono > opts.subscribe_ack_timeout_s:
                    what = "acknowledgement" if state is _St.PENDING else "snapshot"
                    out.events.append(
                        SubscriptionRejected(
                            venue=VENUE,
                            local_ts_ns=now.wall_ns,
                            conn=self.conn,
                            stream=st.key,
                            error=f"no {what} within {opts.subscribe_ack_timeout_s:g} s",
                            retry_in_s=0.0,
                        )
                    )
                    out.reconnect = out.reconnect or f"{st.key}: no {what}"
            elif state is _St.LIVE:
                stale = (
                    opts.book_stale_after_s if st.channel == "book" else opts.trade_stale_after_s
                )
                if judge and stale is not None and now.mono - st.last_data_mono > stale:
                    out.events.append(
                        WatchdogFired(
                            venue=VENUE,
                            local_ts_ns=now.wall_ns,
                            conn=self.conn,
                            kind="stale",
                            stream=st.key,
                            silent_for_s=now.mono - st.last_data_mono,
                        )
                    )
                    st.last_data_mono = now.mono
                    self._resync(st, GapCause.STALE, f"no data for {stale:g} s", now, out)
                    self._resync_siblings(st, GapCause.STALE, now, out)
            elif state is _St.RETRY:
                if st.resub_due is not None and now.mono >= st.resub_due:
                    self._do_resubscribe(st, now, out)
                elif st.retry_at is not None and now.mono >= st.retry_at:
                    st.retry_at = None
                    retry_now.append(st)
        if retry_now:
            books = [s for s in retry_now if s.channel == "book"]
            if books and not self._instrument_ready:
                for s in books:
                    s.state = _St.WAIT_INSTRUMENT
                retry_now = [s for s in retry_now if s.channel != "book"]
            self._subscribe(retry_now, now, out)
        return out

    def _ensure_book(self, st: _Stream, prec: tuple[int, int]) -> None:
        """Give a book stream a Book at the pair's precisions (§1.9), new if they changed."""
        if st.book is None or (st.book.price_precision, st.book.qty_precision) != prec:
            assert st.depth is not None
            st.book = Book(VENUE, st.symbol, st.depth, prec[0], prec[1])

    # ------------------------------------------------------------------ frames
    def observe_sent(self, text: str, now: Now) -> None:
        """Replay only: register a captured outgoing request as if we sent it."""
        try:
            msg = _REQUEST_DECODER.decode(text)
        except (msgspec.DecodeError, RecursionError):
            return
        if not isinstance(msg, dict) or msg.get("method") not in ("subscribe", "unsubscribe"):
            return
        params = msg.get("params") or {}
        channel = params.get("channel")
        req = msg.get("req_id")
        if msg["method"] == "unsubscribe" or not isinstance(channel, str):
            return
        if channel == "instrument":
            self._instrument_req = req if isinstance(req, int) else None
            return
        group = []
        for sym in params.get("symbol") or []:
            spec = StreamSpec(
                VENUE, channel, str(sym), params.get("depth") if channel == "book" else None
            )
            self.add(spec)
            st = self._streams[spec.key]
            st.state = _St.PENDING
            st.sent_mono = now.mono
            st.want_snapshot = channel == "book" or params.get("snapshot") is True
            st.held.clear()
            prec = self.precisions.get(st.symbol)
            if channel == "book" and prec is not None:
                self._ensure_book(st, prec)
            group.append(st)
        if isinstance(req, int):
            self._pending[req] = group

    def on_frame(self, data: str | bytes, now: Now) -> Step:
        out = Step()
        self.frames += 1
        try:
            raw = p.decode_json(data, self._max_json_depth)
        except DecodeError as exc:
            self._bad_frame(str(exc), data, now, out, affected=None)
            return out
        if (
            type(raw) is dict
            and raw.get("channel") == "book"
            and raw.get("type") == "update"
            and self._fast_update(raw, now, out)
        ):
            return out
        try:
            msg = p.classify(raw)
        except DecodeError as exc:
            self._bad_frame(str(exc), data, now, out, affected=None)
            return out
        try:
            self._dispatch(msg, now, out)
        except DecodeError as exc:
            affected = None
            if isinstance(msg, p.BookMsg):
                affected = [e.symbol for e in msg.entries]
            self._bad_frame(str(exc), data, now, out, affected=affected, channel=_channel_of(msg))
        return out

    def _bad_frame(
        self,
        reason: str,
        data: str | bytes,
        now: Now,
        out: Step,
        *,
        affected: list[str] | None,
        channel: str | None = None,
    ) -> None:
        """Count, report, and resync what the frame could have touched.

        A frame we cannot attribute could have carried anything, so every live
        stream is resynchronised; an attributable one resyncs only its streams."""
        self.bad_frames += 1
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
        for st in self._streams.values():
            if st.state not in (_St.LIVE, _St.SYNCING):
                continue
            if channel is not None and st.channel != channel:
                continue
            if affected is not None and st.symbol not in affected:
                continue
            self._resync(st, GapCause.BAD_FRAME, reason[:200], now, out)

    def _dispatch(self, msg: p.Message, now: Now, out: Step) -> None:
        if isinstance(msg, p.BookMsg):
            self._on_book(msg, now, out)
        elif isinstance(msg, p.TradeMsg):
            self._on_trade(msg, now, out)
        elif isinstance(msg, p.TickerMsg):
            self._on_ticker(msg, now, out)
        elif isinstance(msg, p.Heartbeat):
            pass
        elif isinstance(msg, p.Ack):
            self._on_ack(msg, now, out)
        elif isinstance(msg, p.Pong):
            if self._ping_outstanding is not None and (
                msg.req_id is None or msg.req_id == self._ping_outstanding[0]
            ):
                self._ping_outstanding = None
        elif isinstance(msg, p.StatusMsg):
            self.system_status = msg.system
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
        elif isinstance(msg, p.InstrumentMsg):
            self._on_instrument(msg, now, out)

    def _on_instrument(self, msg: p.InstrumentMsg, now: Now, out: Step) -> None:
        for pair in msg.pairs:
            self.precisions[pair.symbol] = (pair.price_precision, pair.qty_precision)
        if not msg.snapshot or self._instrument_ready:
            return
        self._instrument_ready = True
        ready: list[_Stream] = []
        for st in self._book_by_symbol.values():
            if st.state is not _St.WAIT_INSTRUMENT:
                continue
            prec = self.precisions.get(st.symbol)
            if prec is None:
                st.state = _St.REJECTED
                out.events.append(
                    SubscriptionRejected(
                        venue=VENUE,
                        local_ts_ns=now.wall_ns,
                        conn=self.conn,
                        stream=st.key,
                        error="symbol not listed by the instrument channel",
                        retry_in_s=None,
                    )
                )
                continue
            self._ensure_book(st, prec)
            ready.append(st)
        self._subscribe(ready, now, out)

    def _on_ack(self, ack: p.Ack, now: Now, out: Step) -> None:
        if ack.method == "unsubscribe":
            return
        if ack.channel == "instrument" or (
            ack.req_id is not None and ack.req_id == self._instrument_req
        ):
            if not ack.success:
                out.reconnect = f"instrument subscription refused: {ack.error}"
            return
        if ack.success:
            st = self._match_ack(ack)
            if st is None or st.state is not _St.PENDING:
                return
            st.confirmed_ts_ns = ack.time_out_ns
            st.retry_delay = 0.0
            st.last_data_mono = now.mono
            out.events.append(
                Subscribed(
                    venue=VENUE,
                    local_ts_ns=now.wall_ns,
                    conn=self.conn,
                    stream=st.key,
                    exchange_ts_ns=ack.time_out_ns,
                )
            )
            if st.channel == "book" or (st.channel == "trade" and st.want_snapshot):
                st.state = _St.SYNCING
                st.sent_mono = now.mono
            else:
                st.state = _St.LIVE
                if not self._defer_ticker_gap(st):
                    self._close_gap(st, ack.time_out_ns, now, out)
            return
        # refusal
        candidates = self._pending.get(ack.req_id, []) if ack.req_id is not None else []
        if ack.req_id is None and ack.symbol is None:
            # e.g. {"error":"Subscription depth not supported",...} without req_id (§1.5):
            # it can only concern what is still waiting for an answer.
            pending = [s for s in self._streams.values() if s.state is _St.PENDING]
            if "depth" in (ack.error or ""):
                pending = [s for s in pending if s.channel == "book"]
            candidates = pending
        if ack.symbol is not None:
            candidates = [s for s in candidates if s.symbol == ack.symbol] or [
                s
                for s in self._streams.values()
                if s.symbol == ack.symbol and s.state is _St.PENDING
            ]
        error = ack.error or "unknown error"
        permanent = any(error.startswith(e) for e in _PERMANENT_ERRORS)
        for st in candidates:
            if st.state is not _St.PENDING:
                continue
            if permanent:
                st.state = _St.REJECTED
                retry = None
            else:
                st.retry_delay = min(
                    self.options.reject_retry_cap_s,
                    max(self.options.reject_retry_base_s, st.retry_delay * 2),
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

    def _match_ack(self, ack: p.Ack) -> _Stream | None:
        if ack.channel == "book" and ack.symbol is not None:
            return self._book_by_symbol.get(ack.symbol)
        if ack.channel is not None and ack.symbol is not None:
            return self._by_channel.get((ack.channel, ack.symbol))
        return None

    # ------------------------------------------------------------------ data
    def _fast_update(self, raw: dict[str, Any], now: Now, out: Step) -> bool:
        """The hot path: one live book's update (§1.7), decoded straight from the
        JSON into fixed-point levels, applied, verified and delivered.

        Returns False, having changed nothing, for anything else (several
        symbols, a stream that is not live, any malformed part): the general
        path then handles the frame, reports it and resyncs as usual."""
        data = raw.get("data")
        if type(data) is not list or len(data) != 1:
            return False
        item = data[0]
        if type(item) is not dict:
            return False
        symbol = item.get("symbol")
        if type(symbol) is not str:
            return False
        st = self._book_by_symbol.get(symbol)
        if st is None or st.state is not _St.LIVE:
            return False
        book = st.book
        checksum = item.get("checksum")
        if book is None or type(checksum) is not int or not 0 <= checksum <= 0xFFFFFFFF:
            return False
        raw_bids = item.get("bids", [])
        raw_asks = item.get("asks", [])
        if type(raw_bids) is not list or type(raw_asks) is not list:
            return False  # e.g. "asks": "" iterates as nothing; the decoder refuses it
        pp = book.price_precision
        qp = book.qty_precision
        prices = self._prices.at(pp)
        try:
            ts_ns = p.parse_rfc3339_ns(item["timestamp"])
            bids = [
                (
                    parse_fixed_cached(prices, lv["price"], pp, False),  # never negative
                    parse_fixed(lv["qty"], qp, False),
                )
                for lv in raw_bids
            ]
            asks = [
                (
                    parse_fixed_cached(prices, lv["price"], pp, False),  # never negative
                    parse_fixed(lv["qty"], qp, False),
                )
                for lv in raw_asks
            ]
        except (DecodeError, KeyError, TypeError, ValueError, AttributeError):
            return False
        self._update_book(st, book, bids, asks, checksum, ts_ns, now, out)
        return True

    def _on_book(self, msg: p.BookMsg, now: Now, out: Step) -> None:
        for entry in msg.entries:
            st = self._book_by_symbol.get(entry.symbol)
            if st is None or st.book is None:
                continue
            state = st.state
            if msg.snapshot:
                if state is not _St.SYNCING and state is not _St.LIVE:
                    continue
                self._apply_snapshot(st, st.book, entry, now, out)
            elif state is _St.LIVE:
                self._apply_update(st, st.book, entry, now, out)

    def _fixed_levels(
        self, book: Book, levels: list[tuple[object, object]]
    ) -> list[tuple[int, int]]:
        pp = book.price_precision
        qp = book.qty_precision
        prices = self._prices.at(pp)
        # prices and quantities of a book are never negative (signed=False)
        return [
            (parse_fixed_cached(prices, pr, pp, False), parse_fixed(q, qp, False))
            for pr, q in levels
        ]

    def _apply_snapshot(
        self, st: _Stream, book: Book, entry: p.BookEntry, now: Now, out: Step
    ) -> None:
        if entry.checksum is None:  # v2 always sends one (§1.7): never expose unverified
            raise DecodeError(f"{entry.symbol}: book snapshot without checksum")
        bids = self._fixed_levels(book, entry.bids)
        asks = self._fixed_levels(book, entry.asks)
        book.reset()
        book.apply(bids, asks)
        st.last_data_mono = now.mono
        if book.checksum() != entry.checksum:
            st.counters.checksum_mismatch += 1
            self._resync(
                st,
                GapCause.CHECKSUM_MISMATCH,
                f"snapshot checksum {entry.checksum} != local {book.checksum()}",
                now,
                out,
            )
            return
        st.counters.checksum_ok += 1
        book.valid = True
        book.last_ts_ns = entry.ts_ns
        st.state = _St.LIVE
        self._close_gap(st, entry.ts_ns, now, out)
        self._sibling_recovered(st, entry.ts_ns, now, out)
        st.last_ts_ns = entry.ts_ns
        st.counters.delivered += 1
        out.events.append(
            BookSnapshot(
                venue=VENUE,
                local_ts_ns=now.wall_ns,
                symbol=st.symbol,
                exchange_ts_ns=entry.ts_ns,
                stream=st.key,
                depth=book.depth,
                bids=Levels(book.bids_fixed(), book.price_precision, book.qty_precision),
                asks=Levels(book.asks_fixed(), book.price_precision, book.qty_precision),
                checksum=entry.checksum,
                book=book.view,
            )
        )

    def _apply_update(
        self, st: _Stream, book: Book, entry: p.BookEntry, now: Now, out: Step
    ) -> None:
        if entry.checksum is None:  # v2 always sends one (§1.7): never expose unverified
            raise DecodeError(f"{entry.symbol}: book update without checksum")
        bids = self._fixed_levels(book, entry.bids)
        asks = self._fixed_levels(book, entry.asks)
        self._update_book(st, book, bids, asks, entry.checksum, entry.ts_ns, now, out)

    def _update_book(
        self,
        st: _Stream,
        book: Book,
        bids: list[tuple[int, int]],
        asks: list[tuple[int, int]],
        checksum: int,
        ts_ns: int,
        now: Now,
        out: Step,
    ) -> None:
        """Apply one update, verify the checksum, then deliver it or resync."""
        local = book.apply_checksum(bids, asks)
        st.last_data_mono = now.mono
        counters = st.counters
        if local != checksum:
            counters.checksum_mismatch += 1
            book.valid = False
            self._resync(
                st,
                GapCause.CHECKSUM_MISMATCH,
                f"update checksum {checksum} != local {local}",
                now,
                out,
            )
            return
        counters.checksum_ok += 1
        counters.delivered += 1
        book.last_ts_ns = ts_ns
        st.last_ts_ns = ts_ns
        pp = book.price_precision
        qp = book.qty_precision
        out.events.append(
            BookUpdate(
                venue=VENUE,
                local_ts_ns=now.wall_ns,
                symbol=st.symbol,
                exchange_ts_ns=ts_ns,
                stream=st.key,
                depth=book.depth,
                bids=Levels(bids, pp, qp),
                asks=Levels(asks, pp, qp),
                checksum=checksum,
                book=book.view,
            )
        )

    def _on_trade(self, msg: p.TradeMsg, now: Now, out: Step) -> None:
        if msg.snapshot:
            by_symbol: dict[str, list[p.TradeItem]] = {}
            for t in msg.trades:
                by_symbol.setdefault(t.symbol, []).append(t)
            if not msg.trades:  # an empty snapshot names no symbol: it answers the oldest wait
                waiting = [
                    s
                    for s in self._streams.values()
                    if s.channel == "trade" and s.state is _St.SYNCING
                ]
                if waiting:
                    by_symbol[min(waiting, key=lambda s: s.sent_mono).symbol] = []
            for symbol, items in by_symbol.items():
                st = self._by_channel.get(("trade", symbol))
                if st is not None and st.state in (_St.SYNCING, _St.LIVE):
                    self._heal_trades(st, items, now, out)
            return
        for t in msg.trades:
            st = self._by_channel.get(("trade", t.symbol))
            if st is None:
                continue
            if st.state is _St.SYNCING:  # update ahead of the snapshot: keep it for later
                if len(st.held) >= self.options.max_held_trades:
                    self._resync(
                        st, GapCause.QUEUE_OVERFLOW, "too many trades before snapshot", now, out
                    )
                    continue
                st.held.append(t)
                continue
            if st.state is _St.LIVE:
                self._deliver_trade(st, t, now, out)

    def _heal_trades(self, st: _Stream, items: list[p.TradeItem], now: Now, out: Step) -> None:
        """Close the stream's gap with the re-subscription snapshot (last 50 trades).

        Trades newer than the last delivered one are delivered (backfill). If the
        snapshot reaches back to the trade after the last delivered one, nothing
        was missed and no Gap is emitted; otherwise the Gap ends at the oldest
        snapshot trade, with the missing trade ids."""
        items = sorted(items, key=lambda t: t.trade_id)
        st.last_data_mono = now.mono
        gap = st.gap
        if gap is not None:
            if not items:
                self._close_gap(st, st.confirmed_ts_ns, now, out)
            elif st.last_seq is not None and items[0].trade_id <= st.last_seq + 1:
                st.gap = None
                st.counters.healed += 1
            else:
                oldest = items[0]
                self._close_gap(st, oldest.ts_ns, now, out, last_seq=oldest.trade_id - 1)
        st.state = _St.LIVE
        newest = max((t.ts_ns for t in items), default=None)
        self._sibling_recovered(st, newest, now, out)
        held, st.held = st.held, []
        for t in items:
            if st.last_seq is None or t.trade_id > st.last_seq:
                self._deliver_trade(st, t, now, out, check_seq=False)
        for t in held:
            self._deliver_trade(st, t, now, out)

    def _deliver_trade(
        self, st: _Stream, t: p.TradeItem, now: Now, out: Step, *, check_seq: bool = True
    ) -> None:
        st.last_data_mono = now.mono
        last = st.last_seq
        if last is not None:
            if t.trade_id <= last:
                st.counters.duplicates_dropped += 1
                return
            if check_seq and self.options.trade_ids_contiguous and t.trade_id > last + 1:
                # §1.8: trade_id is an integer sequence per book: a jump is missed trades
                self._emit_gap(
                    st,
                    GapCause.SEQUENCE_GAP,
                    st.last_ts_ns,
                    t.ts_ns,
                    last + 1,
                    t.trade_id - 1,
                    f"trade_id jumped from {last} to {t.trade_id}",
                    now,
                    out,
                )
                self._resync_siblings(st, GapCause.SEQUENCE_GAP, now, out)
        price = parse_decimal(t.price, signed=False)
        qty = parse_decimal(t.qty, signed=False)
        st.last_seq = t.trade_id
        st.last_ts_ns = t.ts_ns
        st.counters.delivered += 1
        out.events.append(
            Trade(
                venue=VENUE,
                local_ts_ns=now.wall_ns,
                symbol=t.symbol,
                exchange_ts_ns=t.ts_ns,
                stream=st.key,
                trade_id=t.trade_id,
                price=price,
                qty=qty,
                side=t.side,
                ord_type=t.ord_type,
            )
        )

    def _defer_ticker_gap(self, st: _Stream) -> bool:
        """Tickers carry no sequence and no checksum: nothing proves that the venue
        is sending them again. Their gap therefore stays open until the symbol's
        self-verifying streams (book checksum, trade ids) are live again, and
        closes at their resync point."""
        if st.channel != "ticker" or st.gap is None:
            return False
        return any(
            s.symbol == st.symbol and s.channel != "ticker" and s.state not in _SETTLED
            for s in self._streams.values()
        )

    def _sibling_recovered(
        self, st: _Stream, resync_ts_ns: int | None, now: Now, out: Step
    ) -> None:
        """``st`` (book or trades) is verified again: close deferred ticker gaps."""
        for sib in self._streams.values():
            if (
                sib.symbol == st.symbol
                and sib.channel == "ticker"
                and sib.state is _St.LIVE
                and sib.gap is not None
                and not self._defer_ticker_gap(sib)
            ):
                ends = [x for x in (resync_ts_ns, st.confirmed_ts_ns, sib.confirmed_ts_ns) if x]
                self._close_gap(sib, max(ends) if ends else None, now, out)

    def _resync_siblings(self, st: _Stream, cause: GapCause, now: Now, out: Step) -> None:
        """Data of one symbol was withheld on this connection: its other streams
        share the venue's pipeline, so they are resynchronised too."""
        for sib in self._streams.values():
            if sib is not st and sib.symbol == st.symbol and sib.state is _St.LIVE:
                self._resync(sib, cause, f"sibling {st.key} lost data", now, out)

    def _on_ticker(self, msg: p.TickerMsg, now: Now, out: Step) -> None:
        for item in msg.items:
            st = self._by_channel.get(("ticker", item.symbol))
            if st is None or st.state is not _St.LIVE:
                continue
            st.last_data_mono = now.mono
            v = {k: parse_decimal(x) for k, x in item.values.items()}
            st.last_ts_ns = item.ts_ns
            st.counters.delivered += 1
            out.events.append(
                Ticker(
                    venue=VENUE,
                    local_ts_ns=now.wall_ns,
                    symbol=item.symbol,
                    exchange_ts_ns=item.ts_ns,
                    stream=st.key,
                    **v,
                )
            )


def _channel_of(msg: p.Message) -> str | None:
    if isinstance(msg, p.BookMsg):
        return "book"
    if isinstance(msg, p.TradeMsg):
        return "trade"
    if isinstance(msg, p.TickerMsg):
        return "ticker"
    return None
