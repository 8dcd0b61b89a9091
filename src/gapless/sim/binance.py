"""Binance Spot market-stream + REST simulator: server, market, faults, ground truth.

An independent implementation of the venue (protocols.md §3 and §5 items
6-7). It imports nothing from the gapless client (``venues``, ``runtime``,
``book``), so a misreading of the protocol shared by client and simulator
cannot hide. Frame text lives in :mod:`gapless.sim.binance_wire`, the REST
weight/ban rules in :mod:`gapless.sim.binance_rest`.

One server, one port
====================

A single ``websockets`` server on loopback serves both the WebSocket streams
and REST. websockets parses every request's HTTP head; ``process_request``
(``BinanceSim._process_request``) looks at it first:

* a request **without** ``Upgrade: websocket`` is REST: the hook answers it
  with a complete HTTP/1.1 response (``Content-Type: application/json``,
  ``Content-Length``, ``Connection: close``) that any HTTP client can read;
  websockets sends it and closes the TCP connection (one request per
  connection; no keep-alive). Endpoints: ``GET /api/v3/ping`` -> ``{}``,
  ``/api/v3/time``, ``/api/v3/exchangeInfo`` (``symbol=`` / ``symbols=``
  filters) and ``/api/v3/depth?symbol=&limit=`` (§3.7).
* a WebSocket upgrade first passes the connection-attempt rule and the fault
  gates, then its path is parsed: ``/ws``, ``/ws/<s1>[/<s2>..]`` (raw) or
  ``/stream?streams=<s1>/<s2>`` (combined, §3.1). An unknown path is
  answered 404, an unknown stream name or more than ``max_streams`` names
  400 (the live venue's answer is not documented; the simulator fails
  loudly instead of serving a silent stream).

WebSocket behaviour
===================

* No welcome frame (§3.4); streams named in the URL start at once.
* Streams (§3.6; symbol part lower case, §3.1): ``<sym>@depth@100ms``,
  ``<sym>@depth`` (1000 ms), ``<sym>@trade``, ``<sym>@bookTicker``. Other
  stream types are refused ("invalid stream"): the simulator does not serve
  them.
* Live control (§3.5): ``SUBSCRIBE`` / ``UNSUBSCRIBE`` -> ``{"result":null,
  "id":N}``; subscribing an active stream or unsubscribing an inactive one
  is not an error. ``LIST_SUBSCRIPTIONS`` lists the connection's streams (URL
  streams included) in subscription order. ``SET_PROPERTY`` /
  ``GET_PROPERTY`` ``combined`` switch the wrapper. Errors are nested,
  ``{"error":{"code":C,"msg":M},"id":ID}`` (``id`` null when unparsable):
  code 3 invalid JSON; code 2 for a bad ``id`` (signed 64-bit int, string
  of at most 36 ``[A-Za-z0-9_-]`` characters, or null), a missing or
  unknown ``method``, bad ``params``, "Invalid request: invalid stream" for
  a name the simulator does not serve; codes 0/1/2 for properties as
  documented. A ``SUBSCRIBE`` that would take the connection over
  ``max_streams`` (1024, §3.2) is refused as a whole with code 2 "Invalid
  request: too many parameters" [UNCERTAIN: no documented text].
* Keepalive (§3.3): a ping frame every ``ping_interval_s`` whose payload is
  the event-time milliseconds as ASCII digits. A ping not answered by a pong
  echoing its payload (or a later ping's payload) within ``pong_timeout_s``
  closes the connection with ``pong_timeout_close_code`` (1008 "Pong
  timeout" [OBS: php-binance-api #453]); unsolicited pongs do not help.
  websockets answers client pings by itself, as the venue does.
* Inbound rate (§3.2): more than ``max_inbound_per_s`` frames from the client
  in any ``inbound_window_s`` (1 s) sliding window -- **ping, pong and data
  frames all count** (continuation frames and close frames do not) -- closes
  with 1008 "Too many requests" [OBS] and records a ``violation``. Frames
  are counted where websockets hands every parsed frame to the connection:
  ``_WsConnection.process_event`` (a ``ServerConnection`` subclass given to
  ``serve(create_connection=...)``), before websockets' own automatic pong
  handling, so control frames the application never sees are counted too.
* Lifetime (§3.2): each connection is closed with 1001 [OBS] after
  ``lifetime_s`` (24 h, compress it for tests); with
  ``server_shutdown_before_s`` a ``serverShutdown`` event (§3.4; raw, or the
  ``!serverShutdown`` combined form when the connection is combined) is sent
  that long before.
* Connection attempts (§3.2): upgrade requests are counted per client IP in
  a rolling ``connect_window_s`` (300 s) window, refused ones included; above
  ``connect_limit`` (300) the upgrade gets HTTP 429 with ``Retry-After`` (when
  the window will admit one more attempt) and a ``violation`` is recorded
  once per episode (until the IP is back under the limit).
* A connection whose outbound queue exceeds ``send_queue_max`` frames (a
  client that does not read) is aborted.

Market and update ids (§3.6-§3.8)
=================================

Each symbol runs :class:`gapless.sim.market.SymbolMarket` (seeded) at
``tick_rate_hz``. Every tick that changes the book is one *book update* and
takes the next per-symbol update id (starting from a seeded large value).
The diff depth streams aggregate updates: every 100 ms (``@depth@100ms``)
and every 1000 ms (``@depth``), anchored at the simulator start, one event
per symbol carries ``U`` = its first and ``u`` = its last update id and the
final quantity of every level any of them touched (``"0.00000000"`` =
removed; bids high->low, asks low->high). Intervals without updates send
nothing, so on each stream the next ``U`` is always the previous ``u`` + 1.
Events are generated (and recorded in truth) whether or not anyone is
subscribed, so truth does not depend on clients.

``@trade`` sends one event per fill, trade ids ``t`` consecutive per symbol,
``m`` true when the taker sold. ``@bookTicker`` sends the best bid/ask after
every update that changed them, ``u`` = that update's id.

REST ``/api/v3/depth`` shows the book after the last applied update and its
``lastUpdateId`` is that update's id. The snapshot may therefore fall inside
the ``[U, u]`` of the next stream event; §3.8 step 4 (first event with
``U <= lastUpdateId + 1 <= u``, then ``U == previous u + 1``) reconstructs the
book exactly, because events carry absolute quantities. Prices and
quantities: see :mod:`gapless.sim.binance_wire` (8-decimal strings; the
default pairs have the live tick/step sizes, e.g. BTCUSDT 0.01 / 0.00001).

Time: ``E``/``T`` are epoch milliseconds from a clock anchored to the running
loop (wall time at start + elapsed loop time), so everything works under
``looptime``; ``ts_ns`` in truth = milliseconds x 1,000,000.

Faults (design.md §4; defaults in brackets)
===========================================

Common kinds: ``close`` (``code`` [1000], ``reason`` [""]) close frame to
every connection after its queued frames; ``abort`` TCP abort, no close
frame; ``silent_stall`` (``duration_s`` [None = until the client closes])
current connections get no bytes at all and the server stops pinging and
enforcing keepalive/rate rules on them, then they are aborted; ``data_stall``
(``duration_s`` [10], ``symbols`` [None = all]) depth/trade/bookTicker frames
of those symbols are withheld on current connections (still in truth) while
pings continue, then data resumes, leaving gaps; ``burst`` (``duration_s``
[5], ``factor`` [10]) tick rate x factor; ``malformed`` (``variant``:
invalid_json | wrong_types | huge | deep, ``size_bytes``) to every current
connection; ``ban`` (``duration_s`` [10], ``retry_after_s``) aborts every
connection and refuses upgrades with 429 for the duration. ``maintenance``,
``status``, ``reject_subscriptions``, ``drop_update`` and
``corrupt_checksum`` are Kraken concepts and raise ``ValueError``.

Binance kinds (registered here with :func:`register_fault_kinds`):

``server_shutdown`` (``delay_s`` [1.0])
    ``serverShutdown`` to every connection, 1001 close ``delay_s`` later.
``lifetime_close``
    1001 close to every connection now, no ``serverShutdown`` (the 24 h mark).
``rate_limit_close``
    1008 "Too many requests" to every connection.
``depth_gap`` (``symbol`` [None = seeded random], ``speed`` [None = both;
"100ms" | "1000ms"], ``events`` [1])
    The next ``events`` depth events of the symbol on that stream are sent to
    nobody (recorded in truth with ``"skipped": true``), so the following
    event has ``U`` > last delivered ``u`` + 1. The book changes they carry
    are really lost: a client that ignores the gap ends with a wrong book.
``stale_snapshot`` (``symbol`` [None = any], ``count`` [1], ``age_s`` [2.0])
    The next ``count`` REST depth responses (of that symbol) show the book as
    it was at an older update id: at most the id current ``age_s`` ago and
    below the first ``U`` delivered on every current depth subscription of
    that symbol since it was made, as far back as ``history_s`` (30 s) of
    undo history reaches. It is the true past book (truth: ``"stale":true``),
    so a client following §3.8 step 3 refetches.
``rest_429`` (``duration_s`` [5.0]) / ``rest_418`` (``duration_s`` [5.0],
``retry_after_s`` [None = remaining])
    Every REST request is answered 429 / 418 with ``Retry-After`` (for 429:
    the time left) for the duration (no weight counted, no ban escalation).
    ``rest_429`` has no ``retry_after_s`` because the kind is shared with the
    KuCoin simulator, which registers it as ``{"duration_s": 5.0}``.

Ground truth records (all carry ``"venue":"binance"``)
======================================================

::

    {"k":"meta","venue":"binance","seed":7,"symbols":[..],
     "precisions":{"BTCUSDT":{"price":2,"qty":5,"wire":8}},"start_update_ids":{S:N}}
    {"k":"book","venue":"binance","symbol":S,"speed":"100ms"|"1000ms","ts_ns":N,"U":a,"u":b}
        (+ "skipped":true when a depth_gap withheld it)
    {"k":"trade","venue":"binance","symbol":S,"ts_ns":N,"trade_id":t,"price":"..","qty":"..",
     "side":"buy"|"sell"}                               # taker side; m = side == "sell"
    {"k":"book_ticker","venue":"binance","symbol":S,"u":N,"ts_ns":N}
    {"k":"snapshot","venue":"binance","symbol":S,"last_update_id":N,"stale":bool,"limit":L,
     "ts_ns":N}
    {"k":"conn_open","venue":"binance","conn":CID,"ts_ns":N,"path":"/stream?streams=.."}
    {"k":"conn_close","venue":"binance","conn":CID,"ts_ns":N,"how":"abort"|"close:<code>"|"client"}
    {"k":"server_shutdown","venue":"binance","conn":CID,"ts_ns":N}
    {"k":"refused","venue":"binance","status":429|503|404|400,"ts_ns":N}   # WS upgrades
    {"k":"rest_limited","venue":"binance","status":429|418,"path":P,"retry_after_s":R,
     "cause":"weight"|"ban"|"fault","ts_ns":N}
    {"k":"violation","venue":"binance","rule":R,"ts_ns":N[,"conn":CID]}
        R: connect_rate | inbound_rate | pong_timeout | rest_weight | rest_ban
    {"k":"fault","venue":"binance","kind":K,"ts_ns":N,"params":{..}}
    {"k":"final_book","venue":"binance","symbol":S,"last_update_id":N,"ts_ns":N,
     "bids":[["p","q"],..],"asks":[..]}                 # whole book (<= 5000 levels a side)

Concurrency
===========

All simulator tasks (market loop, scenario runners, fault timers) live in
one ``asyncio.TaskGroup`` entered by ``__aenter__`` and exited by
``__aexit__`` (enter and exit from the same task). Each connection's handler
(a task owned by the websockets server, which ``__aexit__`` closes and
awaits) runs its writer, keepalive and lifetime tasks in its own TaskGroup.
Time is the running loop's clock; no sleep is shorter than 1 ms, so a
quantized clock (``looptime``) cannot make a loop spin.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import email.utils
import http
import json
import logging
import math
import random
import re
import time
from collections import deque
from collections.abc import Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame, Opcode
from websockets.http11 import Request, Response
from websockets.protocol import Event

from gapless.sim import binance_wire as wire
from gapless.sim.accounts import AccountSpec, Instrument
from gapless.sim.binance_private import (
    DEMO_BINANCE_ACCOUNT,
    PRIVATE_FAULT_DEFAULTS,
    PRIVATE_PATHS,
    WS_API_PATH,
    BinancePrivate,
)
from gapless.sim.binance_rest import (
    DEPTH_MAX_LIMIT,
    ENDPOINT_WEIGHTS,
    RestLimiter,
    depth_weight,
)
from gapless.sim.binance_wire import DEFAULT_BINANCE_PAIRS, SPEEDS, BinancePair
from gapless.sim.faults import Fault, Scenario, register_fault_kinds
from gapless.sim.market import MarketChange, SymbolMarket
from gapless.sim.truth import TruthLog

__all__ = [
    "BINANCE_FAULT_KINDS",
    "DEFAULT_BINANCE_PAIRS",
    "BinancePair",
    "BinanceSim",
    "BinanceSimConfig",
    "BinanceSimStats",
]

_log = logging.getLogger("gapless.sim.binance")
#: websockets dumps every frame at DEBUG; private frames carry signatures and
#: tokens, so the server's connection logger drops DEBUG records (design.md §1.6)
_ws_log = logging.getLogger("gapless.sim.binance.websockets")
_ws_log.addFilter(lambda record: record.levelno >= logging.INFO)

_BINANCE_FAULTS: dict[str, dict[str, Any]] = {
    "server_shutdown": {"delay_s": 1.0},
    "lifetime_close": {},
    "rate_limit_close": {},
    "depth_gap": {"symbol": None, "speed": None, "events": 1},
    "stale_snapshot": {"symbol": None, "count": 1, "age_s": 2.0},
    "rest_429": {"duration_s": 5.0},
    "rest_418": {"duration_s": 5.0, "retry_after_s": None},
    **PRIVATE_FAULT_DEFAULTS,  # user data stream kinds: gapless.sim.binance_private
}
"""Kinds shared with other venue simulators (``stale_snapshot``, ``rest_429``,
``lifetime_close``, also registered by :mod:`gapless.sim.kucoin`) must keep
exactly the same defaults there: :func:`register_fault_kinds` refuses a kind
registered twice with different defaults."""
register_fault_kinds(_BINANCE_FAULTS)

BINANCE_FAULT_KINDS: tuple[str, ...] = (
    "close",
    "abort",
    "silent_stall",
    "data_stall",
    "burst",
    "malformed",
    "ban",
    *_BINANCE_FAULTS,
)
"""Every fault kind the Binance simulator implements (e.g. for ``Scenario.chaos(kinds=...)``)."""

DEFAULT_SYMBOLS = ("BTCUSDT", "ETHUSDT", "BNBUSDT")

_COUNTED_OPCODES = frozenset({Opcode.TEXT, Opcode.BINARY, Opcode.PING, Opcode.PONG})
"""protocols.md §3.2: pings, pongs and messages count; continuations and close do not."""

_ID_STRING = re.compile(r"^[A-Za-z0-9_-]{0,36}$")
_INT64 = (-(2**63), 2**63 - 1)
_METHODS = ("SUBSCRIBE", "UNSUBSCRIBE", "LIST_SUBSCRIPTIONS", "SET_PROPERTY", "GET_PROPERTY")


@dataclass(frozen=True)
class BinanceSimConfig:
    """Simulator settings. Times are seconds on the running loop's clock.

    ``seed`` drives the markets (per symbol) and random fault choices.
    ``symbols`` must each have a :class:`BinancePair` in ``pairs``;
    ``tick_rate_hz`` is per symbol. ``truth_path`` mirrors the truth log to a
    JSONL file. ``ping_interval_s`` None disables server pings (and so the
    pong timeout); ``max_inbound_per_s`` None disables the inbound-rate rule;
    ``lifetime_s`` None disables the lifetime close. ``rest_*`` are the REST
    weight rules of :mod:`gapless.sim.binance_rest`. ``clock`` returns epoch
    milliseconds (default: wall time at start plus elapsed loop time).
    """

    seed: int = 0
    symbols: tuple[str, ...] = DEFAULT_SYMBOLS
    tick_rate_hz: float = 50.0
    host: str = "127.0.0.1"
    port: int = 0
    truth_path: str | Path | None = None
    #: False (with a ``truth_path``): the truth file is the only copy (long soaks)
    truth_in_memory: bool = True
    ping_interval_s: float | None = 20.0
    pong_timeout_s: float = 60.0
    pong_timeout_close_code: int = 1008
    max_inbound_per_s: int | None = 5
    inbound_window_s: float = 1.0
    max_streams: int = 1024
    lifetime_s: float | None = 86400.0
    server_shutdown_before_s: float | None = None
    connect_limit: int = 300
    connect_window_s: float = 300.0
    rest_weight_limit: int = 6000
    rest_weight_window_s: float = 60.0
    rest_ban_s: float = 120.0
    rest_ban_max_s: float = 3 * 86400.0
    history_s: float = 30.0
    pairs: tuple[BinancePair, ...] = DEFAULT_BINANCE_PAIRS
    book_levels: int = 1200
    min_levels: int = 1100
    max_message_size: int = 1 << 20
    send_queue_max: int = 100_000
    close_timeout_s: float = 2.0
    clock: Callable[[], int] | None = None
    accounts: tuple[AccountSpec, ...] = (DEMO_BINANCE_ACCOUNT,)
    """HMAC accounts of the WS API user data stream and signed REST
    (:mod:`gapless.sim.binance_private`); the demo account works only here."""


@dataclass
class BinanceSimStats:
    """Counters; ``BinanceSim.stats`` returns them as a plain dict.

    ``connections`` (accepted, total), ``open_connections``, ``frames_sent``,
    ``bytes_sent``, ``frames_withheld`` (data stalls, depth gaps),
    ``client_frames`` (counted inbound frames: data, ping, pong),
    ``client_messages`` (data messages), ``pings_sent``, ``refused`` /
    ``refused_by_status`` (WS upgrades), ``violations`` /
    ``violations_by_rule``, ``slow_consumer_aborts``, ``faults_injected`` (by
    kind), ``ticks``, ``updates`` (book updates = update ids used),
    ``trades``, ``depth_events``, ``book_tickers``, ``rest_requests``,
    ``rest_by_status``, ``snapshots``, ``stale_snapshots``.
    """

    connections: int = 0
    open_connections: int = 0
    frames_sent: int = 0
    bytes_sent: int = 0
    frames_withheld: int = 0
    client_frames: int = 0
    client_messages: int = 0
    pings_sent: int = 0
    refused: int = 0
    refused_by_status: dict[int, int] = field(default_factory=dict)
    violations: int = 0
    violations_by_rule: dict[str, int] = field(default_factory=dict)
    slow_consumer_aborts: int = 0
    faults_injected: dict[str, int] = field(default_factory=dict)
    ticks: int = 0
    updates: int = 0
    trades: int = 0
    depth_events: int = 0
    book_tickers: int = 0
    rest_requests: int = 0
    rest_by_status: dict[int, int] = field(default_factory=dict)
    snapshots: int = 0
    stale_snapshots: int = 0


class _WsConnection(ServerConnection):
    """websockets server connection with an inbound-frame counter and a byte-level mute.

    ``process_event`` receives every frame the protocol parsed, pings and
    pongs included (websockets answers pings on its own before the
    application sees anything), so it is the one place to count what the
    client sent (protocols.md §3.2). ``send_data`` is the one place all
    outgoing bytes pass, so muting there silences even automatic pongs and
    close frames (``silent_stall``).
    """

    muted: bool = False
    ws_api: bool = False  # a WS API connection (/ws-api/v3), not market streams
    url_streams: tuple[str, ...] = ()
    url_combined: bool = False
    inbound_hook: Callable[[], None] | None = None
    inbound_total: int = 0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.inbound: deque[float] = deque()  # arrival times of counted frames (trimmed)

    def process_event(self, event: Event) -> None:
        if (
            self.request is not None
            and isinstance(event, Frame)
            and event.opcode in _COUNTED_OPCODES
        ):
            self.inbound.append(self.loop.time())
            self.inbound_total += 1
            hook = self.inbound_hook
            if hook is not None:
                hook()
        super().process_event(event)

    def send_data(self) -> None:
        if self.muted:
            for _ in self.protocol.data_to_send():
                pass
            return
        super().send_data()


@dataclass(frozen=True)
class _CloseCmd:
    code: int
    reason: str


class _Conn:
    __slots__ = (
        "cid",
        "close_how",
        "closing",
        "combined",
        "drained",
        "first_u",
        "muted",
        "over_rate",
        "queue",
        "stalled",
        "streams",
        "wake",
        "ws",
    )

    def __init__(self, cid: int, ws: _WsConnection) -> None:
        self.cid = cid
        self.ws = ws
        self.queue: deque[str | _CloseCmd] = deque()
        self.wake = asyncio.Event()
        self.drained = asyncio.Event()
        self.drained.set()
        self.streams: dict[str, None] = {}
        self.combined = ws.url_combined
        self.first_u: dict[
            str, int
        ] = {}  # depth stream -> U of the first event sent since subscribe
        self.stalled: dict[str, int] = {}
        self.muted = False
        self.closing = False
        self.over_rate = False
        self.close_how: str | None = None


class _Pending:
    """Book updates of one symbol not yet sent on one depth speed."""

    __slots__ = ("asks", "bids", "first", "last")

    def __init__(self) -> None:
        self.first: int | None = None
        self.last = 0
        self.bids: set[int] = set()
        self.asks: set[int] = set()


_Undo = tuple[int, float, dict[int, int | None], dict[int, int | None]]
"""(update id, loop time, touched bids, touched asks): qty before the update (None = absent)."""


class _Sym:
    """Per-symbol market and publication state."""

    def __init__(self, pair: BinancePair, market: SymbolMarket, first_id: int) -> None:
        self.pair = pair
        self.name = pair.symbol
        self.lower = pair.stream_symbol
        self.market = market
        self.pp = pair.price_precision
        self.qp = pair.qty_precision
        self.update_id = first_id
        self.pending: dict[str, _Pending] = {speed: _Pending() for speed, _, _ in SPEEDS}
        self.gaps: dict[str, int] = {speed: 0 for speed, _, _ in SPEEDS}
        self.undo: deque[_Undo] = deque()
        self.last_bbo = self.bbo()
        self.last_ms = 0

    def bbo(self) -> tuple[int, int, int, int]:
        m = self.market
        bp, bq = next(m.bids.iter_top(1))
        ap, aq = next(m.asks.iter_top(1))
        return bp, bq, ap, aq


@dataclass
class _StaleRule:
    remaining: int
    symbol: str | None
    age_s: float


class BinanceSim:
    """A Binance Spot market-stream + REST venue on loopback. ``async with BinanceSim(cfg):``."""

    def __init__(self, config: BinanceSimConfig | None = None) -> None:
        self.config = cfg = config if config is not None else BinanceSimConfig()
        pairs = {p.symbol: p for p in cfg.pairs}
        missing = [s for s in cfg.symbols if s not in pairs]
        if missing:
            raise ValueError(f"symbols without a BinancePair in config.pairs: {missing}")
        if not cfg.symbols or len(set(cfg.symbols)) != len(cfg.symbols):
            raise ValueError("symbols must be non-empty and distinct")
        if cfg.tick_rate_hz <= 0:
            raise ValueError("tick_rate_hz must be > 0")
        if cfg.ping_interval_s is not None and cfg.ping_interval_s <= 0:
            raise ValueError("ping_interval_s must be > 0 or None")
        if cfg.max_streams < 1 or cfg.connect_limit < 1:
            raise ValueError("max_streams and connect_limit must be >= 1")
        self._pairs = [pairs[s] for s in cfg.symbols]
        self._lower = {p.stream_symbol: p.symbol for p in self._pairs}
        self._truth = TruthLog(cfg.truth_path, keep=cfg.truth_in_memory)
        self._stats = BinanceSimStats()
        self._fault_rng = random.Random(f"{cfg.seed}:binance:faults")
        self._syms: dict[str, _Sym] = {}
        self._conns: set[_Conn] = set()
        self._subs: dict[str, set[_Conn]] = {}
        self._next_cid = 1
        self._ip_attempts: dict[str, deque[float]] = {}
        self._ip_over: set[str] = set()
        self._ban_until = 0.0
        self._ban_retry_after: int | None = None
        self._rest: RestLimiter | None = None
        self._rest_fault: dict[int, tuple[float, int | None]] = {}
        self._stale: list[_StaleRule] = []
        self._bursts: list[float] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._tg: asyncio.TaskGroup | None = None
        self._server: Server | None = None
        self._market_task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._clock: Callable[[], int] | None = None
        self._last_ms = 0
        self._last_ping_ms = 0
        self._t0 = 0.0
        self._port = 0
        self._quiesced = False
        self._started = False
        self._stopping = False
        self._private = BinancePrivate(
            accounts=cfg.accounts,
            instruments=[
                Instrument(
                    p.symbol,
                    p.base_asset,
                    p.quote_asset,
                    p.price_precision,
                    p.qty_precision,
                    qty_min=Decimal(p.min_qty),
                )
                for p in self._pairs
            ],
            seed=cfg.seed,
            send=self._send,
            abort=self._abort,
            clock_ms=self._ms,
            book=self._book_levels,
            truth=self._truth.add,
        )

    # ----------------------------------------------------------------- public

    @property
    def ws_api_url(self) -> str:
        """``ws://<host>:<port>/ws-api/v3``: the WS API (user data stream, §3.9)."""
        return f"ws://{self.config.host}:{self._port}{WS_API_PATH}"

    def final_orders(self) -> dict[str, dict[str, str]]:
        """Ground truth of every order: see :meth:`BinancePrivate.final_orders`."""
        return self._private.final_orders()

    def final_balances(self, api_key: str | None = None) -> dict[str, str]:
        """``{asset: total}`` (free + locked) of an account (default: the first)."""
        return self._private.final_balances(api_key)

    def _book_levels(self, symbol: str, side: str) -> Iterator[tuple[Decimal, Decimal]]:
        """The public book as the matching engine reads it (best first)."""
        st = self._syms[symbol]
        levels = st.market.bids if side == "bids" else st.market.asks
        for p, q in levels.iter_top(DEPTH_MAX_LIMIT):
            yield Decimal(p).scaleb(-st.pp), Decimal(q).scaleb(-st.qp)

    @property
    def ws_url(self) -> str:
        """``ws://<host>:<port>`` (append ``/ws/<stream>`` or ``/stream?streams=..``)."""
        return f"ws://{self.config.host}:{self._port}"

    @property
    def rest_url(self) -> str:
        """``http://<host>:<port>`` (append ``/api/v3/...``)."""
        return f"http://{self.config.host}:{self._port}"

    @property
    def port(self) -> int:
        return self._port

    @property
    def symbols(self) -> tuple[str, ...]:
        return self.config.symbols

    @property
    def truth(self) -> list[dict[str, Any]]:
        """Every ground-truth record so far (live list; do not mutate)."""
        return self._truth.records

    @property
    def stats(self) -> dict[str, Any]:
        """A snapshot of the counters (keys: the fields of :class:`BinanceSimStats`)."""
        return dataclasses.asdict(self._stats)

    def update_id(self, symbol: str) -> int:
        """The id of the last book update applied to ``symbol``'s book."""
        return self._syms[symbol].update_id

    async def __aenter__(self) -> BinanceSim:
        if self._started:
            raise RuntimeError("a BinanceSim can be started only once")
        self._started = True
        cfg = self.config
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._t0 = loop.time()
        if cfg.clock is not None:
            self._clock = cfg.clock
        else:
            wall0 = time.time_ns() // 1_000_000
            loop0 = loop.time()
            self._clock = lambda: wall0 + int((loop.time() - loop0) * 1000)
        self._rest = RestLimiter(
            cfg.rest_weight_limit,
            cfg.rest_weight_window_s,
            cfg.rest_ban_s,
            cfg.rest_ban_max_s,
            self._t0,
        )
        for pair in self._pairs:
            rng = random.Random(f"{cfg.seed}:binance:market:{pair.symbol}")
            first_id = rng.randrange(1_000_000_000, 90_000_000_000)
            market = SymbolMarket(
                pair.market_spec(), rng, levels=cfg.book_levels, min_levels=cfg.min_levels
            )
            self._syms[pair.symbol] = _Sym(pair, market, first_id)
        self._truth.open()
        self._truth.add(
            {
                "k": "meta",
                "venue": "binance",
                "seed": cfg.seed,
                "symbols": list(cfg.symbols),
                "precisions": {
                    p.symbol: {
                        "price": p.price_precision,
                        "qty": p.qty_precision,
                        "wire": wire.WIRE_DECIMALS,
                    }
                    for p in self._pairs
                },
                "start_update_ids": {s: st.update_id for s, st in self._syms.items()},
            }
        )
        tg = asyncio.TaskGroup()
        await tg.__aenter__()
        self._tg = tg
        try:
            self._server = await serve(
                self._handler,
                cfg.host,
                cfg.port,
                process_request=self._process_request,
                ping_interval=None,  # our own keepalive: §3.3 payloads and close code
                close_timeout=cfg.close_timeout_s,
                max_size=cfg.max_message_size,
                compression=None,
                create_connection=_WsConnection,
                logger=_ws_log,
            )
            self._port = self._server.sockets[0].getsockname()[1]
            self._market_task = self._spawn(self._market_loop())
        except BaseException:
            for task in list(self._tasks):
                task.cancel()
            await tg.__aexit__(None, None, None)
            self._tg = None
            self._truth.close()
            raise
        return self

    async def __aexit__(self, *exc_info: Any) -> bool | None:
        self._stopping = True
        try:
            for conn in list(self._conns):
                self._abort(conn)
            if self._server is not None:
                self._server.close(close_connections=False)
                try:
                    async with asyncio.timeout(self.config.close_timeout_s + 3.0):
                        await self._server.wait_closed()
                except TimeoutError:
                    _log.warning("simulator server did not close in time")
            for task in list(self._tasks):
                task.cancel()
        finally:
            assert self._tg is not None
            try:
                et = exc_info[0]
                if et is not None and not issubclass(et, asyncio.CancelledError):
                    # let the body's own exception propagate unwrapped
                    await self._tg.__aexit__(None, None, None)
                else:
                    await self._tg.__aexit__(*exc_info)
            finally:
                self._tg = None
                self._truth.close()
        return None

    def schedule(self, scenario: Scenario | Sequence[Fault]) -> None:
        """Run ``scenario``'s faults at their offsets from now (a task in the sim's group)."""
        if self._tg is None:
            raise RuntimeError("the simulator is not running (use 'async with sim:')")
        if not isinstance(scenario, Scenario):
            scenario = Scenario(scenario)
        self._spawn(self._run_scenario(scenario, self._now()))

    async def inject(self, fault: Fault) -> None:
        """Apply ``fault`` now (its ``at_s`` is ignored). Timed parts run in background.

        Raises ``ValueError`` for kinds this simulator does not implement or bad params.
        """
        self._inject(fault)

    async def quiesce(self, drain_timeout_s: float = 5.0) -> None:
        """Stop the market, send the pending depth events, drain, write ``final_book`` records.

        Afterwards every applied update id has been published on both depth
        speeds. The server keeps serving (pings, subscriptions, REST snapshots
        of the frozen books). A second call does nothing.
        """
        if self._quiesced:
            return
        if self._market_task is not None:
            self._market_task.cancel()
            _, pending = await asyncio.wait([self._market_task], timeout=drain_timeout_s)
            if pending:
                _log.warning("quiesce: the market task did not stop in %.1f s", drain_timeout_s)
            self._market_task = None
        self._quiesced = True
        for speed, _, suffix in SPEEDS:
            self._flush(speed, suffix)
        try:
            async with asyncio.timeout(drain_timeout_s):
                for c in list(self._conns):
                    if not c.muted and not c.closing:
                        await c.drained.wait()
        except TimeoutError:
            _log.warning("quiesce: outbound queues did not drain in %.1f s", drain_timeout_s)
        for sym, fb in self.final_books().items():
            self._truth.add(
                {
                    "k": "final_book",
                    "venue": "binance",
                    "symbol": sym,
                    "last_update_id": fb["last_update_id"],
                    "ts_ns": self._syms[sym].last_ms * 1_000_000,
                    "bids": [list(lv) for lv in fb["bids"]],
                    "asks": [list(lv) for lv in fb["asks"]],
                }
            )
        self._truth.flush()

    def final_books(self) -> dict[str, dict[str, Any]]:
        """Every symbol's current book as a 5000-level snapshot would show it.

        ``{symbol: {"last_update_id": N, "bids": [(p, q), ..], "asks": [..]}}`` with
        8-decimal wire text, bids high->low, asks low->high. Call it after
        :meth:`quiesce`: before, the book may hold updates no depth event carried yet.
        """
        out: dict[str, dict[str, Any]] = {}
        for sym, st in self._syms.items():
            m = st.market
            out[sym] = {
                "last_update_id": st.update_id,
                "bids": [
                    (wire.num(p, st.pp), wire.num(q, st.qp))
                    for p, q in m.bids.iter_top(DEPTH_MAX_LIMIT)
                ],
                "asks": [
                    (wire.num(p, st.pp), wire.num(q, st.qp))
                    for p, q in m.asks.iter_top(DEPTH_MAX_LIMIT)
                ],
            }
        return out

    # ------------------------------------------------------------- internals

    def _now(self) -> float:
        assert self._loop is not None
        return self._loop.time()

    def _ms(self) -> int:
        """Event time in epoch milliseconds, never decreasing."""
        assert self._clock is not None
        now = self._clock()
        if now < self._last_ms:
            now = self._last_ms
        self._last_ms = now
        return now

    def _ts_ns(self) -> int:
        return self._ms() * 1_000_000

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        if self._tg is None:
            coro.close()
            raise RuntimeError("the simulator is not running (use 'async with sim:')")
        task = self._tg.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _violation(self, rule: str, conn: _Conn | None = None) -> None:
        self._stats.violations += 1
        by = self._stats.violations_by_rule
        by[rule] = by.get(rule, 0) + 1
        rec: dict[str, Any] = {
            "k": "violation",
            "venue": "binance",
            "rule": rule,
            "ts_ns": self._ts_ns(),
        }
        if conn is not None:
            rec["conn"] = conn.cid
        self._truth.add(rec)

    # -------------------------------------------------------- request gate

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        """REST for plain requests; connection-attempt rule and path parsing for upgrades."""
        parts = urlsplit(request.path)
        addr = connection.remote_address
        ip = str(addr[0]) if addr else "?"
        upgrade = "websocket" in request.headers.get("Upgrade", "").lower()
        if not upgrade:
            if parts.path in PRIVATE_PATHS:
                return self._private_rest(ip, request, parts.path, parts.query)
            return self._rest_request(ip, request, parts.path, parts.query)
        cfg = self.config
        now = self._now()
        # protocols.md §3.2: 300 connection attempts per 5 minutes per IP
        attempts = self._ip_attempts.setdefault(ip, deque())
        while attempts and attempts[0] <= now - cfg.connect_window_s:
            attempts.popleft()
        attempts.append(now)
        if len(attempts) > cfg.connect_limit:
            if ip not in self._ip_over:
                self._ip_over.add(ip)
                self._violation("connect_rate")
                _log.warning("connection-attempt limit exceeded by %s", ip)
            retry = attempts[len(attempts) - cfg.connect_limit] + cfg.connect_window_s - now
            return self._refuse(connection, 429, "Too many connection attempts", retry)
        self._ip_over.discard(ip)
        if now < self._ban_until:
            ra = self._ban_retry_after
            return self._refuse(
                connection, 429, "IP banned", self._ban_until - now if ra is None else ra
            )
        if self._stopping:
            return self._refuse(connection, 503, "Server is shutting down", 1)
        path = parts.path
        combined = False
        if path == WS_API_PATH:
            assert isinstance(connection, _WsConnection)
            connection.ws_api = True
            return None
        if path == "/ws" or path == "/ws/":
            names: list[str] = []
        elif path.startswith("/ws/"):
            names = [n for n in path[4:].split("/") if n]
        elif path in ("/stream", "/stream/"):
            combined = True
            raw = parse_qs(parts.query).get("streams", [""])[0]
            names = [n for n in raw.split("/") if n]
        else:
            return self._refuse(connection, 404, "Not found", None)
        streams = list(dict.fromkeys(names))
        bad = [n for n in streams if wire.parse_stream(n, self._lower) is None]
        if bad:
            return self._refuse(connection, 400, f"Invalid stream name(s): {bad}", None)
        if len(streams) > cfg.max_streams:
            return self._refuse(
                connection, 400, f"Too many streams (at most {cfg.max_streams})", None
            )
        assert isinstance(connection, _WsConnection)
        connection.url_streams = tuple(streams)
        connection.url_combined = combined
        return None

    def _refuse(
        self, connection: ServerConnection, status: int, text: str, retry_after: float | None
    ) -> Response:
        self._stats.refused += 1
        by = self._stats.refused_by_status
        by[status] = by.get(status, 0) + 1
        self._truth.add(
            {"k": "refused", "venue": "binance", "status": status, "ts_ns": self._ts_ns()}
        )
        response = connection.respond(status, f"{text}\n")
        if retry_after is not None:
            response.headers["Retry-After"] = str(max(1, math.ceil(retry_after - 1e-9)))
        return response

    # ------------------------------------------------------------------ REST

    def _json_response(
        self, status: int, body: str, headers: dict[str, str] | None = None
    ) -> Response:
        data = body.encode()
        h = Headers(
            [
                ("Date", email.utils.formatdate(usegmt=True)),
                ("Content-Type", "application/json"),
                ("Content-Length", str(len(data))),
                ("Connection", "close"),
            ]
        )
        for k, v in (headers or {}).items():
            h[k] = v
        self._stats.rest_requests += 1
        by = self._stats.rest_by_status
        by[status] = by.get(status, 0) + 1
        return Response(status, http.HTTPStatus(status).phrase, h, data)

    def _rest_error(self, status: int, code: int, msg: str, used: int | None) -> Response:
        headers = {} if used is None else {"X-MBX-USED-WEIGHT-1M": str(used)}
        return self._json_response(status, wire.dumps({"code": code, "msg": msg}), headers)

    def _rest_request(self, ip: str, request: Request, path: str, query: str) -> Response:
        """protocols.md §3.7 / §3.11: weights, 429 -> 418, then the endpoint."""
        q = {k: v[-1] for k, v in parse_qs(query, keep_blank_values=True).items()}
        if request.method != "GET":
            return self._rest_error(405, -1000, "Only GET is simulated.", None)
        if path == "/api/v3/depth":
            limit_text = q.get("limit", "100")
            limit = int(limit_text) if limit_text.isdigit() else 0
            weight = depth_weight(min(max(limit, 1), DEPTH_MAX_LIMIT))
        elif path in ENDPOINT_WEIGHTS:
            weight = ENDPOINT_WEIGHTS[path]
        else:
            return self._rest_error(404, -1000, "Not found.", None)
        now = self._now()
        for status in (418, 429):
            until, ra = self._rest_fault.get(status, (0.0, None))
            if now < until:
                retry = ra if ra is not None else max(1, math.ceil(until - now - 1e-9))
                return self._rest_limited(status, path, retry, "fault", None)
        assert self._rest is not None
        d = self._rest.check(ip, weight, now)
        if d.status == 429:
            self._violation("rest_weight")
            return self._rest_limited(429, path, d.retry_after_s, "weight", d.used)
        if d.status == 418:
            if d.new_ban:
                self._violation("rest_ban")
            return self._rest_limited(418, path, d.retry_after_s, "ban", d.used)
        used = {"X-MBX-USED-WEIGHT-1M": str(d.used)}
        if path == "/api/v3/ping":
            return self._json_response(200, "{}", used)
        if path == "/api/v3/time":
            return self._json_response(200, wire.dumps({"serverTime": self._ms()}), used)
        if path == "/api/v3/exchangeInfo":
            return self._exchange_info(q, d.used)
        return self._depth(q, d.used)

    def _private_rest(self, ip: str, request: Request, path: str, query: str) -> Response:
        """Signed account REST (:mod:`gapless.sim.binance_private`) behind the same limits."""
        now = self._now()
        for status in (418, 429):
            until, ra = self._rest_fault.get(status, (0.0, None))
            if now < until:
                retry = ra if ra is not None else max(1, math.ceil(until - now - 1e-9))
                return self._rest_limited(status, path, retry, "fault", None)
        assert self._rest is not None
        weight = self._private.rest_weight(request.method, path, query)
        d = self._rest.check(ip, weight, now)
        if d.status in (418, 429):
            self._violation("rest_weight" if d.status == 429 else "rest_ban")
            return self._rest_limited(d.status, path, d.retry_after_s, "weight", d.used)
        key = request.headers.get("X-MBX-APIKEY")
        status, body = self._private.rest(request.method, path, query, key)
        return self._json_response(status, wire.dumps(body), {"X-MBX-USED-WEIGHT-1M": str(d.used)})

    def _rest_limited(
        self, status: int, path: str, retry: int, cause: str, used: int | None
    ) -> Response:
        self._truth.add(
            {
                "k": "rest_limited",
                "venue": "binance",
                "status": status,
                "path": path,
                "retry_after_s": retry,
                "cause": cause,
                "ts_ns": self._ts_ns(),
            }
        )
        cfg = self.config
        if status == 429:
            msg = (
                f"Too much request weight used; current limit is {cfg.rest_weight_limit} "
                "request weight per 1 MINUTE. Please use WebSocket Streams for live updates "
                "to avoid polling the API."
            )
        else:
            msg = (
                f"Way too much request weight used; IP banned until {self._ms() + retry * 1000}. "
                "Please use WebSocket Streams for live updates to avoid bans."
            )
        headers = {"Retry-After": str(retry)}
        if used is not None:
            headers["X-MBX-USED-WEIGHT-1M"] = str(used)
        return self._json_response(status, wire.dumps({"code": -1003, "msg": msg}), headers)

    def _exchange_info(self, q: dict[str, str], used: int) -> Response:
        pairs = self._pairs
        wanted: list[str] | None = None
        if "symbol" in q:
            wanted = [q["symbol"]]
        elif "symbols" in q:
            try:
                parsed = json.loads(q["symbols"])
            except ValueError:
                parsed = None
            if not isinstance(parsed, list) or not all(isinstance(s, str) for s in parsed):
                return self._rest_error(400, -1100, "Illegal characters found in 'symbols'.", used)
            wanted = parsed
        if wanted is not None:
            if any(s not in self._syms for s in wanted):
                return self._rest_error(400, -1121, "Invalid symbol.", used)
            pairs = [p for p in self._pairs if p.symbol in wanted]
        body = wire.exchange_info(pairs, self._ms(), self.config.rest_weight_limit)
        return self._json_response(200, wire.dumps(body), {"X-MBX-USED-WEIGHT-1M": str(used)})

    def _depth(self, q: dict[str, str], used: int) -> Response:
        """protocols.md §3.7 ``GET /api/v3/depth``; a ``stale_snapshot`` fault may apply."""
        symbol = q.get("symbol", "")
        if not symbol:
            return self._rest_error(
                400,
                -1102,
                "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed.",
                used,
            )
        st = self._syms.get(symbol)
        if st is None:
            return self._rest_error(400, -1121, "Invalid symbol.", used)
        limit_text = q.get("limit", "100")
        if not limit_text.isdigit() or int(limit_text) < 1:
            return self._rest_error(
                400, -1100, "Illegal characters found in parameter 'limit'.", used
            )
        limit = min(int(limit_text), DEPTH_MAX_LIMIT)
        stale = False
        last_id = st.update_id
        bids: list[tuple[int, int]]
        asks: list[tuple[int, int]]
        rule = next(
            (r for r in self._stale if r.remaining > 0 and r.symbol in (None, symbol)), None
        )
        past = self._past_book(st, rule.age_s) if rule is not None else None
        if rule is not None and past is not None:
            rule.remaining -= 1
            if rule.remaining == 0:
                self._stale.remove(rule)
            stale = True
            last_id, bid_map, ask_map = past
            bids = sorted(bid_map.items(), reverse=True)[:limit]
            asks = sorted(ask_map.items())[:limit]
            self._stats.stale_snapshots += 1
        else:
            bids = st.market.bids.top(limit)
            asks = st.market.asks.top(limit)
        self._stats.snapshots += 1
        self._truth.add(
            {
                "k": "snapshot",
                "venue": "binance",
                "symbol": symbol,
                "last_update_id": last_id,
                "stale": stale,
                "limit": limit,
                "ts_ns": self._ts_ns(),
            }
        )
        body = wire.snapshot_body(last_id, bids, asks, st.pp, st.qp)
        return self._json_response(200, body, {"X-MBX-USED-WEIGHT-1M": str(used)})

    def _past_book(
        self, st: _Sym, age_s: float
    ) -> tuple[int, dict[int, int], dict[int, int]] | None:
        """The book at an update id older than any depth client's first ``U`` (see Faults).

        Rebuilt from the current book by undoing recorded updates newest first.
        None when no history exists yet (the fault then waits for the next request).
        """
        if not st.undo:
            return None
        cutoff = self._now() - age_s
        target = st.undo[0][0] - 1  # everything in the history undone
        for uid, t, _, _ in reversed(st.undo):
            if t <= cutoff:
                target = uid
                break
        for suffix in (s for _, _, s in SPEEDS):
            for c in self._subs.get(st.lower + suffix, ()):
                first = c.first_u.get(st.lower + suffix)
                if first is not None:
                    target = min(target, first - 1)
        target = max(target, st.undo[0][0] - 1)
        if target >= st.update_id:
            return None  # nothing older to show yet (no update for age_s)
        bids = dict(st.market.bids.qty)
        asks = dict(st.market.asks.qty)
        for uid, _, tb, ta in reversed(st.undo):
            if uid <= target:
                break
            for side, touched in ((bids, tb), (asks, ta)):
                for price, old in touched.items():
                    if old is None:
                        side.pop(price, None)
                    else:
                        side[price] = old
        return target, bids, asks

    # ------------------------------------------------------------ connection

    async def _handler(self, ws: ServerConnection) -> None:
        assert isinstance(ws, _WsConnection)
        cid = self._next_cid
        self._next_cid += 1
        conn = _Conn(cid, ws)
        self._conns.add(conn)
        self._stats.connections += 1
        self._stats.open_connections += 1
        path = ws.request.path if ws.request is not None else ""
        self._truth.add(
            {
                "k": "conn_open",
                "venue": "binance",
                "conn": cid,
                "ts_ns": self._ts_ns(),
                "path": path,
            }
        )
        for name in ws.url_streams:
            self._add_stream(conn, name)
        if ws.ws_api:
            self._private.opened(conn, cid)
        self._stats.client_frames += ws.inbound_total  # frames before this handler ran
        ws.inbound_hook = lambda: self._on_inbound(conn, 1)
        self._on_inbound(conn, 0)
        if self._stopping:
            self._abort(conn)
        try:
            async with asyncio.TaskGroup() as tg:
                helpers = [
                    tg.create_task(self._writer(conn)),
                    tg.create_task(self._keepalive(conn)),
                    tg.create_task(self._lifetime(conn)),
                ]
                await self._reader(conn)
                for task in helpers:
                    task.cancel()
        finally:
            ws.inbound_hook = None
            self._drop_conn(conn)
            self._stats.open_connections -= 1
            self._truth.add(
                {
                    "k": "conn_close",
                    "venue": "binance",
                    "conn": cid,
                    "ts_ns": self._ts_ns(),
                    "how": conn.close_how or "client",
                }
            )

    def _drop_conn(self, conn: _Conn) -> None:
        self._private.closed(conn)
        self._conns.discard(conn)
        for name in conn.streams:
            subs = self._subs.get(name)
            if subs is not None:
                subs.discard(conn)
        conn.streams.clear()

    def _on_inbound(self, conn: _Conn, new: int) -> None:
        """protocols.md §3.2: > N frames (pings, pongs, messages) in any 1 s -> 1008."""
        self._stats.client_frames += new
        times = conn.ws.inbound
        limit = self.config.max_inbound_per_s
        now = self._now()
        window = self.config.inbound_window_s
        while times and times[0] <= now - window:
            times.popleft()
        if limit is None or conn.closing or conn.muted or conn.over_rate or conn.ws.ws_api:
            return  # the WS API is limited by request weight, not by messages/s (§3.2)
        if len(times) > limit:
            conn.over_rate = True
            self._violation("inbound_rate", conn)
            _log.info("connection %d: more than %d messages/s, closing", conn.cid, limit)
            self._close(conn, 1008, "Too many requests")

    async def _reader(self, conn: _Conn) -> None:
        while True:
            try:
                async with asyncio.timeout(3600.0):
                    msg = await conn.ws.recv()
            except TimeoutError:
                continue
            except ConnectionClosed:
                return
            self._stats.client_messages += 1
            if conn.closing or conn.muted:
                continue
            if conn.ws.ws_api:
                self._private.on_message(conn, msg)
                continue
            self._on_message(conn, msg)

    async def _writer(self, conn: _Conn) -> None:
        """Drain ``conn.queue`` in order (FIFO keeps acks before the data they enable)."""
        ws = conn.ws
        while True:
            if not conn.queue:
                conn.drained.set()
                conn.wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(3600.0):
                        await conn.wake.wait()
                continue
            item = conn.queue.popleft()
            if isinstance(item, _CloseCmd):
                conn.queue.clear()
                conn.drained.set()
                if conn.close_how is None:
                    conn.close_how = f"close:{item.code}"
                with contextlib.suppress(Exception):
                    await ws.close(item.code, item.reason)
                return
            if conn.muted:
                continue
            try:
                await ws.send(item)
            except ConnectionClosed:
                conn.drained.set()
                return
            self._stats.frames_sent += 1
            self._stats.bytes_sent += len(item)

    def _ping_payload(self) -> bytes:
        """Event-time milliseconds as ASCII digits, unique per simulator."""
        ms = max(self._ms(), self._last_ping_ms + 1)
        self._last_ping_ms = ms
        return str(ms).encode()

    async def _keepalive(self, conn: _Conn) -> None:
        """protocols.md §3.3: ping every ``ping_interval_s``; close if a ping stays unanswered
        for ``pong_timeout_s``. A pong acknowledges its ping and every earlier one."""
        cfg = self.config
        interval = cfg.ping_interval_s
        if interval is None:
            return
        timeout = cfg.pong_timeout_s
        pending: deque[tuple[float, asyncio.Future[float]]] = deque()
        next_ping = self._now() + interval
        while not conn.closing:
            while pending and pending[0][1].done():
                pending.popleft()
            now = self._now()
            if conn.muted:
                pending.clear()
                next_ping = now + interval
            deadline = next_ping
            if pending:
                deadline = min(deadline, pending[0][0] + timeout)
            if deadline > now + 1e-6:
                await asyncio.sleep(max(deadline - now, 1e-3))
                continue
            if pending and now + 1e-6 >= pending[0][0] + timeout:
                self._violation("pong_timeout", conn)
                _log.info("connection %d: no pong within %.1f s, closing", conn.cid, timeout)
                self._close(conn, cfg.pong_timeout_close_code, "Pong timeout")
                return
            next_ping = now + interval
            try:
                waiter = await conn.ws.ping(self._ping_payload())
            except ConnectionClosed:
                return
            self._stats.pings_sent += 1
            pending.append((now, asyncio.ensure_future(waiter)))

    async def _lifetime(self, conn: _Conn) -> None:
        """protocols.md §3.2 / §3.4: 1001 after ``lifetime_s``, ``serverShutdown`` before it."""
        cfg = self.config
        life = cfg.lifetime_s
        if life is None:
            return
        before = cfg.server_shutdown_before_s
        if before is not None and before > 0:
            lead = min(before, life)
            await asyncio.sleep(max(life - lead, 1e-3))
            self._send_shutdown(conn)
            await asyncio.sleep(max(lead, 1e-3))
        else:
            await asyncio.sleep(max(life, 1e-3))
        self._close(conn, 1001, "")

    def _send_shutdown(self, conn: _Conn) -> None:
        if conn.closing or conn.muted:
            return
        ms = self._ms()
        self._truth.add(
            {
                "k": "server_shutdown",
                "venue": "binance",
                "conn": conn.cid,
                "ts_ns": ms * 1_000_000,
            }
        )
        self._send(conn, wire.server_shutdown_event(ms, conn.combined))

    def _send(self, conn: _Conn, text: str) -> None:
        """Queue a frame (dropped if the connection is closing or muted)."""
        if conn.closing or conn.muted:
            return
        if len(conn.queue) >= self.config.send_queue_max:
            _log.warning("connection %d: outbound queue overflow, aborting", conn.cid)
            self._stats.slow_consumer_aborts += 1
            self._abort(conn)
            return
        conn.queue.append(text)
        conn.drained.clear()
        conn.wake.set()

    def _close(self, conn: _Conn, code: int, reason: str) -> None:
        if conn.closing:
            return
        conn.closing = True
        conn.queue.append(_CloseCmd(code, reason))
        conn.drained.clear()
        conn.wake.set()

    def _abort(self, conn: _Conn) -> None:
        if conn.close_how is None:
            client_closed = conn.ws.protocol.close_rcvd is not None
            conn.close_how = "client" if client_closed else "abort"
        conn.closing = True
        conn.queue.clear()
        conn.drained.set()
        conn.wake.set()
        transport = conn.ws.transport
        if transport is not None:
            transport.abort()

    # -------------------------------------------------------------- control

    def _add_stream(self, conn: _Conn, name: str) -> None:
        if name in conn.streams:
            return
        conn.streams[name] = None
        conn.first_u.pop(name, None)
        self._subs.setdefault(name, set()).add(conn)

    def _remove_stream(self, conn: _Conn, name: str) -> None:
        if name not in conn.streams:
            return
        del conn.streams[name]
        conn.first_u.pop(name, None)
        subs = self._subs.get(name)
        if subs is not None:
            subs.discard(conn)

    def _on_message(self, conn: _Conn, msg: str | bytes) -> None:
        """protocols.md §3.5: SUBSCRIBE, UNSUBSCRIBE, LIST_SUBSCRIPTIONS, SET/GET_PROPERTY."""
        try:
            text = msg.decode("utf-8") if isinstance(msg, bytes) else msg
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            self._send(
                conn,
                wire.error_frame(
                    3,
                    f"Invalid JSON: {exc.msg.lower()} at line {exc.lineno} column {exc.colno}",
                    None,
                ),
            )
            return
        except (UnicodeDecodeError, ValueError, RecursionError):
            self._send(conn, wire.error_frame(3, "Invalid JSON: invalid data", None))
            return
        if not isinstance(obj, dict):
            self._send(conn, wire.error_frame(2, "Invalid request: expected a JSON object", None))
            return
        req_id = obj.get("id")
        if not _valid_id(req_id):
            self._send(
                conn,
                wire.error_frame(
                    2,
                    "Invalid request: request ID must be a signed 64-bit integer, a string of "
                    "at most 36 alphanumeric characters, or null",
                    None,
                ),
            )
            return
        method = obj.get("method")
        if "method" not in obj:
            self._error(conn, f"missing field `method` at line 1 column {len(text)}", req_id)
            return
        if method not in _METHODS:
            col = text.find(json.dumps(method)) + len(json.dumps(method))
            self._error(
                conn,
                f"unknown variant `{method}`, expected one of "
                + ", ".join(f"`{m}`" for m in _METHODS)
                + f" at line 1 column {max(col, 1)}",
                req_id,
            )
            return
        params = obj.get("params")
        if method in ("SUBSCRIBE", "UNSUBSCRIBE"):
            self._on_subscription(conn, method, params, req_id)
        elif method == "LIST_SUBSCRIPTIONS":
            self._send(conn, wire.result_frame(list(conn.streams), req_id))
        else:
            self._on_property(conn, method, params, req_id)

    def _error(self, conn: _Conn, detail: str, req_id: Any, code: int = 2) -> None:
        msg = f"Invalid request: {detail}" if code == 2 else detail
        self._send(conn, wire.error_frame(code, msg, req_id))

    def _on_subscription(self, conn: _Conn, method: str, params: Any, req_id: Any) -> None:
        if params is None:
            params = []
        if not isinstance(params, list) or not all(isinstance(p, str) for p in params):
            self._error(conn, "params must be a list of stream names", req_id)
            return
        names = list(dict.fromkeys(params))
        if any(wire.parse_stream(n, self._lower) is None for n in names):
            self._error(conn, "invalid stream", req_id)
            return
        if method == "SUBSCRIBE":
            new = [n for n in names if n not in conn.streams]
            if len(conn.streams) + len(new) > self.config.max_streams:
                self._error(conn, "too many parameters", req_id)
                return
            # ack first: every event generated after it is queued behind it
            self._send(conn, wire.result_frame(None, req_id))
            for n in new:
                self._add_stream(conn, n)
        else:
            self._send(conn, wire.result_frame(None, req_id))
            for n in names:
                self._remove_stream(conn, n)

    def _on_property(self, conn: _Conn, method: str, params: Any, req_id: Any) -> None:
        want = 2 if method == "SET_PROPERTY" else 1
        if not isinstance(params, list) or len(params) != want:
            self._error(
                conn,
                "too many parameters" if isinstance(params, list) else "missing params",
                req_id,
            )
            return
        name = params[0]
        if not isinstance(name, str):
            self._error(conn, "property name must be a string", req_id)
            return
        if name != "combined":
            self._error(conn, "Unknown property", req_id, code=0)
            return
        if method == "GET_PROPERTY":
            self._send(conn, wire.result_frame(conn.combined, req_id))
            return
        value = params[1]
        if not isinstance(value, bool):
            self._error(conn, "Invalid value type: expected Boolean", req_id, code=1)
            return
        self._send(conn, wire.result_frame(None, req_id))
        conn.combined = value

    # ---------------------------------------------------------------- market

    async def _market_loop(self) -> None:
        """Tick every symbol at ``tick_rate_hz`` x burst and flush depth events every
        100 ms / 1000 ms, all on the loop clock (sleeps are >= 1 ms)."""
        base = self.config.tick_rate_hz
        start = self._now()
        next_tick = start
        next_flush = {speed: start + interval for speed, interval, _ in SPEEDS}
        syms = list(self._syms.values())
        while True:
            now = self._now()
            wake = next_tick
            for speed, _, _ in SPEEDS:  # an idle market does not wake up for empty flushes
                if next_flush[speed] < wake and any(
                    st.pending[speed].first is not None for st in syms
                ):
                    wake = next_flush[speed]
            if wake > now + 1e-6:
                await asyncio.sleep(max(wake - now, 1e-3))
                now = self._now()
            steps = 0
            while next_tick <= now + 1e-6 and steps < 200:
                for st in self._syms.values():
                    self._tick(st)
                factor = max(self._bursts, default=1.0)
                next_tick += 1.0 / (base * factor)
                steps += 1
            if next_tick < now - 1.0:
                next_tick = now  # far behind (stalled loop): do not try to catch up
            for speed, interval, suffix in SPEEDS:
                if next_flush[speed] <= now + 1e-6:
                    self._flush(speed, suffix)
                    # the next boundary of the grid anchored at start (skips missed ones)
                    k = math.floor((now + 1e-6 - start) / interval) + 1
                    next_flush[speed] = start + k * interval
            if steps >= 200:
                await asyncio.sleep(0)

    def _tick(self, st: _Sym) -> None:
        m = st.market
        change: MarketChange = m.tick()
        self._stats.ticks += 1
        if not change.touched_bids and not change.touched_asks:
            return
        st.update_id += 1
        uid = st.update_id
        self._stats.updates += 1
        now = self._now()
        st.undo.append((uid, now, change.touched_bids, change.touched_asks))
        horizon = now - self.config.history_s
        while st.undo and (st.undo[0][1] < horizon or len(st.undo) > 200_000):
            st.undo.popleft()
        for pend in st.pending.values():
            if pend.first is None:
                pend.first = uid
            pend.last = uid
            pend.bids.update(change.touched_bids)
            pend.asks.update(change.touched_asks)
        if change.fills:
            ms = self._ms()
            st.last_ms = ms
            stream = st.lower + "@trade"
            subs = self._subs.get(stream)
            for fill in change.fills:
                tid = m.next_trade_id
                m.next_trade_id += 1
                self._stats.trades += 1
                self._truth.add(
                    {
                        "k": "trade",
                        "venue": "binance",
                        "symbol": st.name,
                        "ts_ns": ms * 1_000_000,
                        "trade_id": tid,
                        "price": wire.num(fill.price, st.pp),
                        "qty": wire.num(fill.qty, st.qp),
                        "side": fill.side,
                    }
                )
                self._private.on_public_trade(
                    st.name,
                    Decimal(fill.price).scaleb(-st.pp),
                    Decimal(fill.qty).scaleb(-st.qp),
                    fill.side,
                )
                if subs:
                    raw = wire.trade_event(
                        ms,
                        st.name,
                        tid,
                        fill.price,
                        fill.qty,
                        ms,
                        fill.side == "sell",
                        st.pp,
                        st.qp,
                    )
                    self._broadcast(subs, stream, st.name, raw)
        bbo = st.bbo()
        if bbo != st.last_bbo:
            st.last_bbo = bbo
            ms = self._ms()
            st.last_ms = ms
            self._stats.book_tickers += 1
            self._truth.add(
                {
                    "k": "book_ticker",
                    "venue": "binance",
                    "symbol": st.name,
                    "u": uid,
                    "ts_ns": ms * 1_000_000,
                }
            )
            stream = st.lower + "@bookTicker"
            subs = self._subs.get(stream)
            if subs:
                raw = wire.book_ticker_event(uid, st.name, bbo, st.pp, st.qp)
                self._broadcast(subs, stream, st.name, raw)

    def _flush(self, speed: str, suffix: str) -> None:
        """Emit one depth event per symbol with updates pending on ``speed``."""
        for st in self._syms.values():
            pend = st.pending[speed]
            if pend.first is None:
                continue
            first, last = pend.first, pend.last
            bid_prices, ask_prices = pend.bids, pend.asks
            st.pending[speed] = _Pending()
            ms = self._ms()
            st.last_ms = ms
            self._stats.depth_events += 1
            rec: dict[str, Any] = {
                "k": "book",
                "venue": "binance",
                "symbol": st.name,
                "speed": speed,
                "ts_ns": ms * 1_000_000,
                "U": first,
                "u": last,
            }
            stream = st.lower + suffix
            subs = self._subs.get(stream)
            if st.gaps[speed] > 0:
                st.gaps[speed] -= 1
                rec["skipped"] = True
                self._truth.add(rec)
                self._stats.frames_withheld += len(subs) if subs else 0
                continue
            self._truth.add(rec)
            if not subs:
                continue
            bq, aq = st.market.bids.qty, st.market.asks.qty
            bids = [(p, bq.get(p, 0)) for p in sorted(bid_prices, reverse=True)]
            asks = [(p, aq.get(p, 0)) for p in sorted(ask_prices)]
            raw = wire.depth_event(ms, st.name, first, last, bids, asks, st.pp, st.qp)
            for c in self._broadcast(subs, stream, st.name, raw):
                if stream not in c.first_u:
                    c.first_u[stream] = first

    def _broadcast(self, subs: set[_Conn], stream: str, symbol: str, raw: str) -> list[_Conn]:
        """Send ``raw`` (or its combined wrapper) to ``subs``; return who got it."""
        wrapped: str | None = None
        sent: list[_Conn] = []
        for c in list(subs):
            if c.stalled and (symbol in c.stalled or "*" in c.stalled):
                self._stats.frames_withheld += 1
                continue
            if c.combined:
                if wrapped is None:
                    wrapped = wire.combined(stream, raw)
                self._send(c, wrapped)
            else:
                self._send(c, raw)
            sent.append(c)
        return sent

    # ---------------------------------------------------------------- faults

    async def _run_scenario(self, scenario: Scenario, start: float) -> None:
        for fault in scenario:
            delay = start + fault.at_s - self._now()
            if delay > 0:
                await asyncio.sleep(max(delay, 1e-3))
            try:
                self._inject(fault)
            except ValueError:
                _log.exception("scenario fault %r could not be applied", fault)

    def _pick_symbol(self, symbol: Any) -> str:
        if symbol is None:
            return self._fault_rng.choice(list(self._syms))
        if symbol not in self._syms:
            raise ValueError(f"fault symbol {symbol!r} is not simulated")
        return str(symbol)

    def _validate(self, kind: str, p: dict[str, Any]) -> None:
        """Check (and resolve) a fault's params before anything is recorded."""
        if kind not in BINANCE_FAULT_KINDS:
            raise ValueError(f"fault kind {kind!r} is not implemented by the Binance simulator")
        if kind == "depth_gap":
            p["symbol"] = self._pick_symbol(p["symbol"])
            if p["speed"] not in (None, "100ms", "1000ms"):
                raise ValueError("depth_gap speed must be None, '100ms' or '1000ms'")
            if not isinstance(p["events"], int) or p["events"] < 1:
                raise ValueError("depth_gap events must be an int >= 1")
        elif kind == "stale_snapshot":
            if p["symbol"] is not None:
                p["symbol"] = self._pick_symbol(p["symbol"])
            if not isinstance(p["count"], int) or p["count"] < 1:
                raise ValueError("stale_snapshot count must be an int >= 1")
            age = p["age_s"]
            if isinstance(age, bool) or not isinstance(age, int | float) or age <= 0:
                raise ValueError("stale_snapshot age_s must be > 0")
        elif kind in ("rest_429", "rest_418"):
            if p["duration_s"] is None:
                raise ValueError(f"{kind} needs duration_s")
        elif kind == "server_shutdown":
            d = p["delay_s"]
            if isinstance(d, bool) or not isinstance(d, int | float) or d < 0:
                raise ValueError("server_shutdown delay_s must be a non-negative number")
        elif kind == "data_stall" and p["symbols"] is not None:
            p["symbols"] = [self._pick_symbol(s) for s in p["symbols"]]
        elif kind in PRIVATE_FAULT_DEFAULTS:
            self._private.validate_fault(kind, p)

    def _inject(self, fault: Fault) -> None:
        if self._tg is None:
            raise RuntimeError("the simulator is not running (use 'async with sim:')")
        p = fault.resolved()
        kind = fault.kind
        self._validate(kind, p)
        conns = sorted(self._conns, key=lambda c: c.cid)  # deterministic truth order
        now = self._now()
        self._stats.faults_injected[kind] = self._stats.faults_injected.get(kind, 0) + 1
        self._truth.add(
            {"k": "fault", "venue": "binance", "kind": kind, "ts_ns": self._ts_ns(), "params": p}
        )
        _log.info("fault %s %s", kind, p)
        if kind == "close":
            for c in conns:
                self._close(c, int(p["code"]), str(p["reason"]))
        elif kind == "abort":
            for c in conns:
                self._abort(c)
        elif kind == "silent_stall":
            for c in conns:
                c.muted = True
                c.ws.muted = True
                c.queue.clear()
                c.drained.set()
            if p["duration_s"] is not None:
                self._spawn(self._end_stall(conns, float(p["duration_s"])))
        elif kind == "data_stall":
            symbols: list[str] = p["symbols"] if p["symbols"] is not None else ["*"]
            for c in conns:
                for s in symbols:
                    c.stalled[s] = c.stalled.get(s, 0) + 1
            self._spawn(self._end_data_stall(conns, symbols, float(p["duration_s"])))
        elif kind == "burst":
            factor = float(p["factor"])
            self._bursts.append(factor)
            self._spawn(self._end_burst(factor, float(p["duration_s"])))
        elif kind == "malformed":
            self._malformed(conns, str(p["variant"]), int(p["size_bytes"]))
        elif kind == "ban":
            self._ban_until = max(self._ban_until, now + float(p["duration_s"]))
            ra = p["retry_after_s"]
            self._ban_retry_after = None if ra is None else math.ceil(float(ra))
            for c in conns:
                self._abort(c)
        elif kind == "server_shutdown":
            for c in conns:
                self._send_shutdown(c)
            self._spawn(self._delayed_close(conns, float(p["delay_s"]), 1001, ""))
        elif kind == "lifetime_close":
            for c in conns:
                self._close(c, 1001, "")
        elif kind == "rate_limit_close":
            for c in conns:
                self._close(c, 1008, "Too many requests")
        elif kind == "depth_gap":
            st = self._syms[p["symbol"]]
            for speed, _, _ in SPEEDS:
                if p["speed"] in (None, speed):
                    st.gaps[speed] += int(p["events"])
        elif kind == "stale_snapshot":
            self._stale.append(_StaleRule(int(p["count"]), p["symbol"], float(p["age_s"])))
        elif kind in ("rest_429", "rest_418"):
            status = 429 if kind == "rest_429" else 418
            ra = p.get("retry_after_s")  # rest_429 has none: Retry-After = time left
            self._rest_fault[status] = (
                now + float(p["duration_s"]),
                None if ra is None else max(1, math.ceil(float(ra))),
            )
        elif kind in PRIVATE_FAULT_DEFAULTS:
            self._private.inject(kind, p)
        else:  # pragma: no cover - _validate rejects everything else
            raise ValueError(f"unknown fault kind {kind!r}")

    async def _delayed_close(
        self, conns: list[_Conn], delay: float, code: int, reason: str
    ) -> None:
        if delay > 0:
            await asyncio.sleep(max(delay, 1e-3))
        for c in conns:
            if c in self._conns:
                self._close(c, code, reason)

    async def _end_stall(self, conns: list[_Conn], duration: float) -> None:
        await asyncio.sleep(max(duration, 1e-3))
        for c in conns:
            if c in self._conns:
                self._abort(c)

    async def _end_data_stall(
        self, conns: list[_Conn], symbols: list[str], duration: float
    ) -> None:
        await asyncio.sleep(max(duration, 1e-3))
        for c in conns:
            for s in symbols:
                n = c.stalled.get(s, 0) - 1
                if n > 0:
                    c.stalled[s] = n
                else:
                    c.stalled.pop(s, None)

    async def _end_burst(self, factor: float, duration: float) -> None:
        await asyncio.sleep(max(duration, 1e-3))
        self._bursts.remove(factor)

    def _malformed(self, conns: list[_Conn], variant: str, size: int) -> None:
        first = self._syms[self.config.symbols[0]]
        if variant == "invalid_json":
            text = f'{{"e":"depthUpdate","E":{self._ms()},"s":"{first.name}","U":1,"u":'
            for c in conns:
                self._send(c, text)
        elif variant == "wrong_types":
            for c in conns:
                stream = next((s for s in c.streams if "@depth" in s), first.lower + "@depth@100ms")
                sym = self._lower.get(stream.partition("@")[0], first.name)
                raw = wire.dumps(
                    {
                        "e": "depthUpdate",
                        "E": "soon",
                        "s": sym,
                        "U": "one",
                        "u": None,
                        "b": [[1.5, {"x": 1}]],
                        "a": "none",
                    }
                )
                self._send(c, wire.combined(stream, raw) if c.combined else raw)
        elif variant == "huge":
            head = '{"e":"noise","x":"'
            tail = '"}'
            text = head + "x" * max(0, size - len(head) - len(tail)) + tail
            for c in conns:
                self._send(c, text)
        else:  # deep
            text = "[" * 10_000 + "]" * 10_000
            for c in conns:
                self._send(c, text)


def _valid_id(req_id: Any) -> bool:
    """protocols.md §3.5: signed 64-bit int, short alphanumeric string, or null."""
    if req_id is None:
        return True
    if isinstance(req_id, bool):
        return False
    if isinstance(req_id, int):
        return _INT64[0] <= req_id <= _INT64[1]
    return isinstance(req_id, str) and _ID_STRING.match(req_id) is not None
