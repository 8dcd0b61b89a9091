"""KuCoin Spot (classic API) simulator: REST + WebSocket on loopback, faults, ground truth.

An independent implementation of the venue (protocols.md §2 and §5 items 5
and 7). It imports nothing from the gapless client (``venues``, ``runtime``,
``book``), so a misreading of the protocol shared by client and simulator
cannot hide. The market is :class:`gapless.sim.market.SymbolMarket` (seeded,
fixed-point ints); level2 sequencing lives in :mod:`gapless.sim.kucoin_feed`,
frame text in :mod:`gapless.sim.kucoin_wire`.

Listeners
=========

The simulator listens on ``len(config.ports)`` ports (default two ephemeral
ports): each is one *instance server* of the bullet response. Every port
serves both WebSocket upgrades and the REST calls, through websockets'
``process_request`` hook: a request without ``Upgrade: websocket`` gets a
plain HTTP/1.1 JSON response (``Content-Type: application/json``,
``Content-Length``, ``Connection: close``). websockets does not read request
bodies, so only calls that need none are served (a ``POST`` must send no body
or ``Content-Length: 0``). :attr:`KucoinSim.rest_url` names the first port.

REST (protocols.md §2.1, §2.4, §2.5, §2.8)
=========================================

* ``POST /api/v1/bullet-public`` (weight 10): a fresh token per call (valid
  ``token_ttl_s``) and ``instanceServers`` (``config.instance_servers`` or one
  entry per listening port) with ``encrypt`` false, ``protocol``
  "websocket", ``pingInterval``/``pingTimeout`` from the config.
* ``GET /api/v1/market/orderbook/level2_20|level2_100?symbol=S`` (weight 2):
  ``{"time", "sequence": "<string>", "bids", "asks"}``, the current book
  (pending, not yet published l2update changes included; see
  :mod:`gapless.sim.kucoin_feed`). ``GET /api/v3/market/orderbook/level2``
  (weight 3) returns the full book; the live venue requires KC-API-*
  signing there, the simulator does not check it.
* ``GET /api/v1/timestamp`` (3), ``GET /api/v1/status`` (3, ``open`` |
  ``close`` | ``cancelonly``), ``GET /api/v2/symbols`` (4, increments).
* Rate limit (§2.4, §5 item 7): per client IP, a fixed window of
  ``rest_window_s`` starting at the first request, ``rest_quota`` weight
  units. Every response carries ``gw-ratelimit-limit``,
  ``gw-ratelimit-remaining`` and ``gw-ratelimit-reset`` (ms until the window
  ends). Above the quota: HTTP 429, body ``{"code":"429000",..}``, the same
  headers with remaining 0. The ``rest_429`` fault models overload instead:
  429000 *without* the headers (§2.4 says overload responses lack them).
* Private, signed routes (``/api/v1/bullet-private``, ``/api/v1/orders...``,
  ``/api/v1/accounts``): :mod:`gapless.sim.kucoin_private` (not rate limited;
  ``POST /api/v1/orders`` needs a body: use :attr:`KucoinSim.orders_url`).
* Unknown route: HTTP 404 ``{"code":"404000","msg":"Not Found"}``; unknown
  symbol: HTTP 400 ``{"code":"400100",..}``.

WebSocket (protocols.md §2.1, §2.3, §2.4, §2.8)
==============================================

* Connect ``ws://host:port/?token=T&connectId=C`` (any path). A missing,
  unknown or expired token is answered, per ``bad_token_response``, with
  ``{"type":"error","code":401,"data":"token is expired"}`` and a close
  (``token_close_code``, default) or an HTTP 401 refusal of the upgrade
  [OBS: both forms are reported].
* The first frame is ``{"id":C,"type":"welcome"}`` (a generated id when the
  client sent no ``connectId``); nothing is queued before it.
* ``{"id":X,"type":"ping"}`` -> ``{"id":"X","type":"pong"}``. Ids come back
  as strings, as acks do (§2.3); a client sending string ids sees its id
  unchanged.
* Idle close (§2.3 simulator rule): nothing from the client for
  ``idle_timeout_s`` (default ``"auto"`` = pingInterval + pingTimeout, 28 s)
  closes with ``idle_close_code``. WebSocket control frames count as activity
  when ``control_frames_are_activity`` (default; cryptofeed relies on it,
  §2.3 [OBS]).
* ``subscribe`` / ``unsubscribe`` with topics ``/market/level2:S1,S2``,
  ``/market/match:..``, ``/market/ticker:..``; each symbol is one topic
  (§2.4). The ack ``{"id":"<id as string>","type":"ack"}`` is sent only when
  ``response`` is ``true``. A request is all-or-nothing: more than
  ``max_topics_per_message`` (100) symbols -> 509 "exceed max subscription
  count limitation of 100 per time"; unknown topic or symbol -> 404 "topic
  <prefix>:<symbols> is not found"; more topics on the connection than the
  per-connection limit (``max_topics_per_conn``, 400, lowered by the
  ``topic_limit`` fault) -> 509 "exceed max subscription count limitation of
  <limit> per session" (a ``violation`` only beyond ``max_topics_per_conn``:
  the fault changes what is refused, not the documented rule). Subscribing
  an active topic again is accepted (idempotent), so is unsubscribing an
  inactive one; ``privateChannel`` is
  ignored (no private topics are simulated). Invalid JSON or an
  unknown ``type`` gets a 400 error frame (undocumented [UNCERTAIN]). The
  connection stays open after every error.
* Lifetime (§2.1/§2.8): a connection is closed ``lifetime_s`` after it
  opened, with ``lifetime_close_code`` (1000; observers report 1000 closes).
* Data is pushed on per-symbol topics (``/market/level2:BTC-USDT``). Level2
  messages are consecutive per symbol (see :mod:`gapless.sim.kucoin_feed`);
  ``trade.l3match`` once per fill; ``trade.ticker`` at most every
  ``ticker_interval_s`` (100 ms) per symbol, when last trade or best bid/ask
  changed.
* A connection whose outbound queue exceeds ``send_queue_max`` frames is
  aborted (slow consumer).

Ordering guarantee
==================

A subscription is registered before its ack is queued and every connection
has one FIFO queue, so every level2 message flushed after the subscribe
request was processed reaches the connection, and a REST snapshot requested
after the ack has ``sequence`` >= the ``sequenceStart`` - 1 of the first
level2 message received: the §2.5 calibration always succeeds.

Faults (design.md §4; common kinds in :mod:`gapless.sim.faults`)
===============================================================

Common kinds: ``close`` (``code``, ``reason``), ``abort``, ``silent_stall``
(no bytes at all, not even pongs, then an abort after ``duration_s``),
``data_stall`` (level2/match/ticker frames of ``symbols`` withheld on current
connections; pongs flow; data resumes afterwards, so their level2 streams
show a sequence gap), ``burst`` (tick rate x ``factor``), ``malformed``
(``invalid_json``, ``wrong_types`` l2update, ``huge`` frame, ``deep``
nesting), ``maintenance`` (REST status ``close``, connections closed with
``maintenance_close_code`` after ``maintenance_close_delay_s``, upgrades
refused with HTTP 503 for ``duration_s``, then ``cancelonly`` for
``cancel_only_s``, then ``after_status``), ``status`` (sets the REST status;
Kraken names are mapped: online/post_only/limit_only -> open, cancel_only ->
cancelonly, maintenance -> close). ``reject_subscriptions``, ``ban``,
``drop_update`` and ``corrupt_checksum`` are Kraken-only: injecting them
raises ``ValueError`` (use ``level2_gap`` for a lost update).

KuCoin kinds (registered here; parameters [defaults]):

==================  =================================================================
``token_expiry``    (none): every token issued so far expires now; current
                    connections get the 401 "token is expired" frame and are closed
``level2_gap``      ``symbol`` [None = random]: the next l2update of the symbol is
                    sent to nobody (truth: ``skipped`` true), so the following one
                    has ``sequenceStart`` > last end + 1
``stale_snapshot``  ``symbol`` [None = any], ``count`` [1], ``age_s`` [2.0]: the
                    next ``count`` REST level2 snapshots show the exact book as it
                    was ``age_s`` ago (older than what the stream has moved past)
``topic_limit``     ``limit`` [0], ``duration_s`` [None = rest of the run]: the
                    per-connection topic limit for new subscriptions -> 509
``instance_down``   ``index`` [1], ``duration_s`` [5.0; None = for good]: that
                    instance server's listener closes (TCP refusals), its
                    connections are aborted; then it listens on the same port
                    again. Index 0 also takes :attr:`rest_url` down.
``rest_429``        ``duration_s`` [5.0]: every REST call gets 429000 without headers
``lifetime_close``  (none): close every connection now as the lifetime rule does
==================  =================================================================

Ground truth records (exact keys; ``ts_ns`` = simulator microseconds x 1000)
==========================================================================

::

    {"k":"meta","venue":"kucoin","seed":7,"symbols":[..],
     "increments":{"BTC-USDT":{"price":"0.1","size":"0.00000001"}},"instances":N}
    {"k":"book","venue":"kucoin","symbol":S,"ts_ns":N,"seq_start":A,"seq_end":B,
     "skipped":false}
    {"k":"trade","venue":"kucoin","symbol":S,"ts_ns":N,"trade_id":"..","sequence":I,
     "price":"67523","size":"0.003","side":"buy"}
    {"k":"ticker","venue":"kucoin","symbol":S,"ts_ns":N,"sequence":I}
    {"k":"snapshot","venue":"kucoin","symbol":S,"ts_ns":N,"sequence":I,"depth":20|100|None,
     "stale":false}
    {"k":"token","venue":"kucoin","issued":N,"ts_ns":N,"ttl_s":86400.0}
    {"k":"conn_open","venue":"kucoin","conn":CID,"connect_id":C,"instance":I,"ts_ns":N}
    {"k":"conn_close","venue":"kucoin","conn":CID,"ts_ns":N,
     "how":"abort"|"close:<code>"|"client","cause":C|None}
    {"k":"refused","venue":"kucoin","status":401|503,"instance":I,"ts_ns":N,
     "reason":"bad_token"|"maintenance","how":"http"|"error_frame"}
    {"k":"fault","venue":"kucoin","kind":K,"ts_ns":N,"params":{..}}
    {"k":"violation","venue":"kucoin","rule":"rest_rate"|"topics_per_message"|
     "topics_per_conn","ts_ns":N}
    {"k":"final_book","venue":"kucoin","symbol":S,"ts_ns":N,"sequence":I,
     "bids":[["p","s"],..],"asks":[..]}

``cause`` of a server-side close: ``idle``, ``lifetime``, ``token_expired``,
``fault``, ``maintenance``, ``instance_down``, ``slow_consumer``,
``shutdown`` (None when the client closed). Tokens never appear in truth,
stats or logs.

Concurrency
===========

All simulator tasks (market generator, scenario runners, fault timers) live
in one ``asyncio.TaskGroup`` entered by ``__aenter__`` and exited by
``__aexit__`` (enter and exit from the same task). Each connection's handler
(owned by its websockets server, which ``__aexit__`` closes and awaits) runs
its writer in its own TaskGroup. Every wait is bounded. Time is the running
loop's clock, so the simulator works under ``looptime``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import json
import logging
import math
import random
import time
from collections import deque
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from gapless.sim import kucoin_wire as kw
from gapless.sim.accounts import AccountSpec
from gapless.sim.faults import Fault, Scenario, register_fault_kinds
from gapless.sim.kucoin_feed import L2Message, SymbolFeed
from gapless.sim.kucoin_private import DEMO_KUCOIN_ACCOUNT, PRIVATE_FAULT_DEFAULTS, KucoinPrivate
from gapless.sim.market import PairSpec, SymbolMarket
from gapless.sim.numbers import fmt_fixed
from gapless.sim.truth import TruthLog

__all__ = [
    "KUCOIN_FAULT_KINDS",
    "KUCOIN_PAIRS",
    "KucoinSim",
    "KucoinSimConfig",
    "KucoinSimStats",
]

_log = logging.getLogger("gapless.sim.kucoin")
#: websockets dumps every frame at DEBUG; private frames carry signatures and
#: tokens, so the server's connection logger drops DEBUG records (design.md §1.6)
_ws_log = logging.getLogger("gapless.sim.kucoin.websockets")
_ws_log.addFilter(lambda record: record.levelno >= logging.INFO)

KUCOIN_PAIRS = kw.KUCOIN_PAIRS

_KUCOIN_DEFAULTS: dict[str, dict[str, Any]] = {
    "token_expiry": {},
    "level2_gap": {"symbol": None},
    "stale_snapshot": {"symbol": None, "count": 1, "age_s": 2.0},
    "topic_limit": {"limit": 0, "duration_s": None},
    "instance_down": {"index": 1, "duration_s": 5.0},
    "rest_429": {"duration_s": 5.0},
    "lifetime_close": {},
    **PRIVATE_FAULT_DEFAULTS,  # private side: gapless.sim.kucoin_private
}
register_fault_kinds(_KUCOIN_DEFAULTS)

KUCOIN_FAULT_KINDS: tuple[str, ...] = (
    "close",
    "abort",
    "silent_stall",
    "data_stall",
    "burst",
    "malformed",
    "maintenance",
    "status",
    *_KUCOIN_DEFAULTS,
)
"""Every kind the KuCoin simulator implements (pass to ``Scenario.chaos(kinds=...)``)."""

TOKEN_EXPIRED = "token is expired"
"""protocols.md §2.1/§2.3 [OBS: XChange #4740]."""

_TOPICS = {"/market/level2": "level2", "/market/match": "match", "/market/ticker": "ticker"}
_TOPIC_PREFIX = {v: k for k, v in _TOPICS.items()}

_ROUTES: dict[tuple[str, str], tuple[str, int]] = {
    ("POST", "/api/v1/bullet-public"): ("bullet", 10),
    ("GET", "/api/v1/market/orderbook/level2_20"): ("level2_20", 2),
    ("GET", "/api/v1/market/orderbook/level2_100"): ("level2_100", 2),
    ("GET", "/api/v3/market/orderbook/level2"): ("level2_full", 3),
    ("GET", "/api/v1/timestamp"): ("timestamp", 3),
    ("GET", "/api/v1/status"): ("status", 3),
    ("GET", "/api/v2/symbols"): ("symbols", 4),
}
"""(method, path) -> (handler name, request weight) (weights: KC-SDK spec / KC-NEW)."""

_STATUS_MAP = {
    "online": "open",
    "post_only": "open",
    "limit_only": "open",
    "cancel_only": "cancelonly",
    "maintenance": "close",
}

_TOKEN_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


@dataclass(frozen=True)
class KucoinSimConfig:
    """Simulator settings. Times are seconds on the running loop's clock.

    ``ports``: one listener per entry (0 = ephemeral); each is an instance
    server. ``instance_servers``: the endpoints the bullet advertises (None =
    ``ws://host:port/`` of every listener). ``idle_timeout_s``: ``"auto"`` =
    (``ping_interval_ms`` + ``ping_timeout_ms``) / 1000, None disables.
    ``lifetime_s`` None disables the lifetime close. ``bad_token_response``:
    ``"error_frame"`` (401 frame then close) or ``"http_401"``.
    ``l2_aggregate_max`` / ``l2_aggregate_prob`` / ``zero_price_prob`` /
    ``snapshot_history_s``: see :mod:`gapless.sim.kucoin_feed`.
    ``final_book_depth`` None = the full book. ``clock`` returns epoch
    microseconds (made strictly increasing).
    """

    seed: int = 0
    symbols: tuple[str, ...] = tuple(p.symbol for p in KUCOIN_PAIRS)
    tick_rate_hz: float = 50.0
    host: str = "127.0.0.1"
    ports: tuple[int, ...] = (0, 0)
    instance_servers: tuple[str, ...] | None = None
    truth_path: str | Path | None = None
    #: False (with a ``truth_path``): the truth file is the only copy (long soaks)
    truth_in_memory: bool = True
    ping_interval_ms: int = 18000
    ping_timeout_ms: int = 10000
    idle_timeout_s: float | Literal["auto"] | None = "auto"
    control_frames_are_activity: bool = True
    idle_close_code: int = 1000
    max_topics_per_conn: int = 400
    max_topics_per_message: int = 100
    lifetime_s: float | None = 86400.0
    lifetime_close_code: int = 1000
    token_ttl_s: float = 86400.0
    bad_token_response: Literal["error_frame", "http_401"] = "error_frame"
    token_close_code: int = 1000
    rest_quota: int = 2000
    rest_window_s: float = 30.0
    status: Literal["open", "close", "cancelonly"] = "open"
    pairs: tuple[PairSpec, ...] = KUCOIN_PAIRS
    book_levels: int = 1200
    min_levels: int = 1100
    l2_aggregate_max: int = 3
    l2_aggregate_prob: float = 0.3
    zero_price_prob: float = 0.02
    ticker_interval_s: float = 0.1
    snapshot_history_s: float = 10.0
    final_book_depth: int | None = None
    maintenance_close_delay_s: float = 0.2
    maintenance_close_code: int = 1000
    max_message_size: int = 1 << 20
    send_queue_max: int = 100_000
    close_timeout_s: float = 2.0
    clock: Callable[[], int] | None = None
    accounts: tuple[AccountSpec, ...] = (DEMO_KUCOIN_ACCOUNT,)
    """Private-side accounts (gapless.sim.kucoin_private; the demo one works only here)."""


@dataclass
class KucoinSimStats:
    """Counters; :attr:`KucoinSim.stats` returns them as a plain dict."""

    connections: int = 0
    open_connections: int = 0
    frames_sent: int = 0
    bytes_sent: int = 0
    frames_withheld: int = 0
    client_messages: int = 0
    refused: int = 0
    refused_by_status: dict[int, int] = field(default_factory=dict)
    violations: int = 0
    slow_consumer_aborts: int = 0
    faults_injected: dict[str, int] = field(default_factory=dict)
    ticks: int = 0
    trades: int = 0
    l2_messages: int = 0
    l2_skipped: int = 0
    tickers: int = 0
    tokens_issued: int = 0
    rest_requests: int = 0
    rest_429: int = 0
    snapshots_served: int = 0
    stale_snapshots: int = 0


class _Clock:
    """One global strictly increasing microsecond clock."""

    def __init__(self, source: Callable[[], int]) -> None:
        self._source = source
        self.last = 0

    def next(self) -> int:
        now = self._source()
        if now <= self.last:
            now = self.last + 1
        self.last = now
        return now


class _WsConnection(ServerConnection):
    """websockets connection that can be muted and that stamps incoming bytes.

    ``send_data`` is the one place all outgoing bytes pass (a silent stall
    must also suppress automatic pongs and close frames); ``data_received``
    sees every incoming byte, control frames included (idle rule).
    """

    muted: bool = False
    last_rx: float = 0.0
    instance: int = 0
    token_ok: bool = False
    token: str = ""
    connect_id: str = ""

    def send_data(self) -> None:
        if self.muted:
            for _ in self.protocol.data_to_send():
                pass
            return
        super().send_data()

    def data_received(self, data: bytes) -> None:
        self.last_rx = self.loop.time()
        super().data_received(data)


@dataclass(frozen=True)
class _CloseCmd:
    code: int
    reason: str


class _Conn:
    __slots__ = (
        "cause",
        "cid",
        "close_how",
        "closing",
        "connect_id",
        "drained",
        "instance",
        "last_msg",
        "muted",
        "opened",
        "queue",
        "stalled",
        "token",
        "topics",
        "wake",
        "ws",
    )

    def __init__(self, cid: int, ws: _WsConnection, now: float) -> None:
        self.cid = cid
        self.ws = ws
        self.instance = ws.instance
        self.connect_id = ws.connect_id
        self.token = ws.token
        self.opened = now
        self.last_msg = now
        self.queue: deque[str | _CloseCmd] = deque()
        self.wake = asyncio.Event()
        self.drained = asyncio.Event()
        self.drained.set()
        self.topics: set[tuple[str, str]] = set()
        self.stalled: dict[str, int] = {}
        self.muted = False
        self.closing = False
        self.close_how: str | None = None
        self.cause: str | None = None


class _SymbolState:
    def __init__(self, pair: PairSpec, feed: SymbolFeed, now: float) -> None:
        self.pair = pair
        self.feed = feed
        self.pp = pair.price_precision
        self.qp = pair.qty_precision
        self.gaps = 0
        self.last_ticker: tuple[int, int, int, int, int, int] | None = None
        self.next_ticker_t = now
        self.last_book_ts = 0


@dataclass
class _Stale:
    symbol: str | None
    remaining: int
    age_s: float


@dataclass
class _RestWindow:
    start: float
    used: int = 0


class KucoinSim:
    """A KuCoin Spot venue (REST + classic WebSocket) on loopback.

    Use as ``async with KucoinSim(cfg) as sim:``.
    """

    def __init__(self, config: KucoinSimConfig | None = None) -> None:
        self.config = cfg = config if config is not None else KucoinSimConfig()
        pairs = {p.symbol: p for p in cfg.pairs}
        missing = [s for s in cfg.symbols if s not in pairs]
        if missing:
            raise ValueError(f"symbols without a PairSpec in config.pairs: {missing}")
        if not cfg.symbols:
            raise ValueError("at least one symbol is required")
        if cfg.tick_rate_hz <= 0:
            raise ValueError("tick_rate_hz must be > 0")
        if not cfg.ports:
            raise ValueError("at least one port is required")
        if cfg.bad_token_response not in ("error_frame", "http_401"):
            raise ValueError("bad_token_response must be 'error_frame' or 'http_401'")
        if cfg.status not in ("open", "close", "cancelonly"):
            raise ValueError("status must be open, close or cancelonly")
        self._pairs = [pairs[s] for s in cfg.symbols]
        self._truth = TruthLog(cfg.truth_path, keep=cfg.truth_in_memory)
        self._advertised: tuple[str, ...] | None = None
        self._stats = KucoinSimStats()
        self._token_rng = random.Random(f"{cfg.seed}:kucoin:tokens")
        self._conn_rng = random.Random(f"{cfg.seed}:kucoin:conn")
        self._fault_rng = random.Random(f"{cfg.seed}:kucoin:faults")
        self._syms: dict[str, _SymbolState] = {}
        self._conns: set[_Conn] = set()
        self._subs: dict[tuple[str, str], set[_Conn]] = {}
        self._tokens: dict[str, float] = {}
        self._status: str = cfg.status
        self._maintenance_depth = 0
        self._maintenance_until = 0.0
        self._rest_429_until = 0.0
        self._rest_windows: dict[str, _RestWindow] = {}
        self._topic_limits: list[tuple[int, float]] = []
        self._stale: list[_Stale] = []
        self._bursts: list[float] = []
        self._down_depth: list[int] = [0] * len(cfg.ports)
        self._tasks: set[asyncio.Task[None]] = set()
        self._tg: asyncio.TaskGroup | None = None
        self._servers: list[Server | None] = [None] * len(cfg.ports)
        self._ports: list[int] = list(cfg.ports)
        self._market_task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._clock: _Clock | None = None
        self._next_cid = 1
        self._quiesced = False
        self._started = False
        self._stopping = False
        self._private = KucoinPrivate(self, cfg.accounts)

    # ----------------------------------------------------------------- public

    @property
    def private(self) -> KucoinPrivate:
        """The private side (accounts, signed REST, private topics, private faults)."""
        return self._private

    @property
    def orders_url(self) -> str:
        """``http://host:port`` of the plain-HTTP listener that also reads request
        bodies (``POST /api/v1/orders``); it serves every private route."""
        return f"http://{self.config.host}:{self._private.orders_port}"

    def final_orders(self) -> dict[str, dict[str, str]]:
        """Ground truth: ``{order_id: {"status", "cum_qty", ...}}`` of every account."""
        return self._private.final_orders()

    def final_balances(self, api_key: str | None = None) -> dict[str, str]:
        """Ground truth: ``{currency: total}`` of ``api_key`` (default: the first account)."""
        return self._private.final_balances(api_key)

    @property
    def rest_url(self) -> str:
        """``http://host:<first port>`` (valid after start)."""
        return f"http://{self.config.host}:{self._ports[0]}"

    def advertise(self, endpoints: Sequence[str] | None) -> None:
        """Endpoints the bullet advertises from now on, e.g. a :class:`FaultProxy`
        per listener (None: back to ``config.instance_servers`` or :attr:`ws_urls`)."""
        self._advertised = tuple(endpoints) if endpoints is not None else None

    @property
    def ws_urls(self) -> list[str]:
        """``ws://host:port/`` of every listener, in ``config.ports`` order."""
        return [f"ws://{self.config.host}:{p}/" for p in self._ports]

    @property
    def ports(self) -> list[int]:
        return list(self._ports)

    @property
    def truth(self) -> list[dict[str, Any]]:
        """Every ground-truth record so far (live list; do not mutate)."""
        return self._truth.records

    @property
    def stats(self) -> dict[str, Any]:
        """A snapshot of the counters (keys: the fields of :class:`KucoinSimStats`)."""
        return dataclasses.asdict(self._stats)

    @property
    def status(self) -> str:
        """The REST ``/api/v1/status`` value: open, close or cancelonly (§2.8)."""
        return self._status

    @property
    def symbols(self) -> tuple[str, ...]:
        return self.config.symbols

    async def __aenter__(self) -> KucoinSim:
        if self._started:
            raise RuntimeError("a KucoinSim can be started only once")
        self._started = True
        cfg = self.config
        loop = asyncio.get_running_loop()
        self._loop = loop
        if cfg.clock is not None:
            self._clock = _Clock(cfg.clock)
        else:
            wall0 = time.time_ns() // 1000
            loop0 = loop.time()
            self._clock = _Clock(lambda: wall0 + int((loop.time() - loop0) * 1_000_000))
        now = loop.time()
        for pair in self._pairs:
            rng = random.Random(f"{cfg.seed}:market:{pair.symbol}")
            market = SymbolMarket(pair, rng, levels=cfg.book_levels, min_levels=cfg.min_levels)
            feed = SymbolFeed(
                market,
                random.Random(f"{cfg.seed}:kucoin:feed:{pair.symbol}"),
                aggregate_max=cfg.l2_aggregate_max,
                aggregate_prob=cfg.l2_aggregate_prob,
                zero_price_prob=cfg.zero_price_prob,
                history_s=cfg.snapshot_history_s,
            )
            self._syms[pair.symbol] = _SymbolState(pair, feed, now)
        self._truth.open()
        self._truth.add(
            {
                "k": "meta",
                "venue": "kucoin",
                "seed": cfg.seed,
                "symbols": list(cfg.symbols),
                "increments": {
                    p.symbol: {
                        "price": fmt_fixed(1, p.price_precision),
                        "size": fmt_fixed(1, p.qty_precision),
                    }
                    for p in self._pairs
                },
                "instances": len(cfg.ports),
            }
        )
        tg = asyncio.TaskGroup()
        await tg.__aenter__()
        self._tg = tg
        try:
            for index in range(len(cfg.ports)):
                await self._listen(index)
            await self._private.start()
            self._market_task = self._spawn(self._market_loop())
        except BaseException:
            for task in list(self._tasks):
                task.cancel()
            for srv in self._servers:
                if srv is not None:
                    srv.close()
            await tg.__aexit__(None, None, None)
            self._tg = None
            self._truth.close()
            raise
        return self

    async def __aexit__(self, *exc_info: Any) -> bool | None:
        self._stopping = True
        try:
            for conn in list(self._conns):
                self._abort(conn, "shutdown")
            servers = [s for s in self._servers if s is not None]
            self._servers = [None] * len(self._servers)
            for srv in servers:
                srv.close(close_connections=False)
            for srv in servers:
                try:
                    async with asyncio.timeout(self.config.close_timeout_s + 3.0):
                        await srv.wait_closed()
                except TimeoutError:
                    _log.warning("simulator server did not close in time")
            for task in list(self._tasks):
                task.cancel()
            await self._private.stop()
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
        """Apply ``fault`` now (its ``at_s`` is ignored). Timed parts run in background."""
        self._inject(fault)

    async def quiesce(self, drain_timeout_s: float = 5.0) -> None:
        """Stop the market, publish pending level2 changes, drain, write ``final_book`` records.

        The server keeps serving (pings, subscriptions, REST snapshots of the
        frozen books). A second call does nothing.
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
        for st in self._syms.values():
            msg = st.feed.flush()
            if msg is not None:
                self._publish_l2(st, msg)
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
                    "venue": "kucoin",
                    "symbol": sym,
                    "ts_ns": self._syms[sym].last_book_ts * 1000,
                    "sequence": fb["sequence"],
                    "bids": [list(lv) for lv in fb["bids"]],
                    "asks": [list(lv) for lv in fb["asks"]],
                }
            )
        self._truth.flush()

    def final_books(self) -> dict[str, dict[str, Any]]:
        """``{symbol: {"sequence", "bids": [(p, s)..], "asks"}}``, KuCoin number text.

        Depth ``config.final_book_depth`` (None = full). ``sequence`` includes
        changes not yet published; call after :meth:`quiesce` for a book every
        client can reach.
        """
        out: dict[str, dict[str, Any]] = {}
        for sym, st in self._syms.items():
            seq, bids, asks = st.feed.snapshot(self.config.final_book_depth)
            out[sym] = {
                "sequence": seq,
                "bids": [(kw.fmt_plain(p, st.pp), kw.fmt_plain(q, st.qp)) for p, q in bids],
                "asks": [(kw.fmt_plain(p, st.pp), kw.fmt_plain(q, st.qp)) for p, q in asks],
            }
        return out

    # ------------------------------------------------------------- internals

    def _now(self) -> float:
        assert self._loop is not None
        return self._loop.time()

    def _ts(self) -> int:
        assert self._clock is not None
        return self._clock.next()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        if self._tg is None:
            coro.close()
            raise RuntimeError("the simulator is not running (use 'async with sim:')")
        task = self._tg.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _record(self, rec: dict[str, Any]) -> None:
        self._truth.add(rec)

    async def _listen(self, index: int) -> None:
        cfg = self.config
        server = await serve(
            functools.partial(self._handler, index),
            cfg.host,
            self._ports[index],
            process_request=functools.partial(self._process_request, index),
            ping_interval=None,
            close_timeout=cfg.close_timeout_s,
            max_size=cfg.max_message_size,
            compression=None,
            create_connection=_WsConnection,
            logger=_ws_log,
        )
        if self._stopping:  # shutdown began while we were binding (instance_down recovery)
            server.close()
            return
        self._servers[index] = server
        self._ports[index] = server.sockets[0].getsockname()[1]

    # -------------------------------------------------------- handshake gate

    def _process_request(
        self, index: int, connection: ServerConnection, request: Request
    ) -> Response | None:
        if request.headers.get("Upgrade", "").lower() != "websocket":
            return self._rest(connection, request)
        assert isinstance(connection, _WsConnection)
        connection.instance = index
        if self._maintenance_depth > 0:
            return self._refuse(connection, index, 503, "maintenance")
        query = parse_qs(urlsplit(request.path).query)
        token = query.get("token", [""])[0]
        connect_id = query.get("connectId", [""])[0]
        if not connect_id:
            connect_id = f"{self._conn_rng.getrandbits(64):x}"
        connection.connect_id = connect_id
        expires = self._tokens.get(token)
        if expires is None or self._now() >= expires:
            if self.config.bad_token_response == "http_401":
                return self._refuse(connection, index, 401, "bad_token")
            connection.token_ok = False
            return None
        connection.token = token
        connection.token_ok = True
        return None

    def _refuse(
        self, connection: ServerConnection, index: int, status: int, reason: str
    ) -> Response:
        self._count_refusal(status)
        self._record(
            {
                "k": "refused",
                "venue": "kucoin",
                "status": status,
                "instance": index,
                "ts_ns": self._ts() * 1000,
                "reason": reason,
                "how": "http",
            }
        )
        if status == 401:
            body: dict[str, Any] = {"code": "401", "msg": TOKEN_EXPIRED}
        else:
            body = {"code": "503000", "msg": "Service Unavailable"}
        return self._json_response(connection, status, body)

    def _count_refusal(self, status: int) -> None:
        self._stats.refused += 1
        self._stats.refused_by_status[status] = self._stats.refused_by_status.get(status, 0) + 1

    # ------------------------------------------------------------------ REST

    def _json_response(
        self,
        connection: ServerConnection,
        status: int,
        obj: Any,
        headers: Sequence[tuple[str, str]] = (),
    ) -> Response:
        response = connection.respond(status, kw.dumps(obj))
        del response.headers["Content-Type"]
        response.headers["Content-Type"] = "application/json"
        for name, value in headers:
            response.headers[name] = value
        return response

    def _rest(self, connection: ServerConnection, request: Request) -> Response:
        """Plain HTTP: the REST calls of protocols.md §2.1, §2.5, §2.8 with §2.4 limits."""
        self._stats.rest_requests += 1
        now = self._now()
        url = urlsplit(request.path)
        if self._private.handles(request.method, request.path):
            # signed private routes (gapless.sim.kucoin_private); no body on this listener
            status, obj = self._private.handle(request.method, request.path, request.headers, "")
            return self._json_response(connection, status, obj)
        route = _ROUTES.get((request.method.upper(), url.path))
        if route is None:
            return self._json_response(connection, 404, {"code": "404000", "msg": "Not Found"})
        name, weight = route
        if now < self._rest_429_until:
            # overload: 429000 without the gw-ratelimit headers (§2.4)
            self._stats.rest_429 += 1
            return self._json_response(
                connection, 429, {"code": "429000", "msg": "Too Many Requests"}
            )
        addr = connection.remote_address
        ip = str(addr[0]) if addr else "?"
        cfg = self.config
        window = self._rest_windows.get(ip)
        if window is None or now >= window.start + cfg.rest_window_s:
            window = self._rest_windows[ip] = _RestWindow(now)
        reset_ms = max(0, math.ceil((window.start + cfg.rest_window_s - now) * 1000))
        if window.used + weight > cfg.rest_quota:
            self._stats.rest_429 += 1
            self._stats.violations += 1
            self._record(
                {
                    "k": "violation",
                    "venue": "kucoin",
                    "rule": "rest_rate",
                    "ts_ns": self._ts() * 1000,
                }
            )
            return self._json_response(
                connection,
                429,
                {"code": "429000", "msg": "Too Many Requests"},
                self._gw_headers(window.used, reset_ms),
            )
        window.used += weight
        query = parse_qs(url.query)
        status, body = self._rest_call(name, query)
        return self._json_response(
            connection, status, body, self._gw_headers(window.used, reset_ms)
        )

    def _gw_headers(self, used: int, reset_ms: int) -> list[tuple[str, str]]:
        quota = self.config.rest_quota
        return [
            ("gw-ratelimit-limit", str(quota)),
            ("gw-ratelimit-remaining", str(max(0, quota - used))),
            ("gw-ratelimit-reset", str(reset_ms)),
        ]

    def _rest_call(self, name: str, query: dict[str, list[str]]) -> tuple[int, Any]:
        if name == "bullet":
            return 200, kw.rest_ok(self._bullet())
        if name == "timestamp":
            return 200, kw.rest_ok(self._ts() // 1000)
        if name == "status":
            return 200, kw.rest_ok({"status": self._status, "msg": ""})
        if name == "symbols":
            return 200, kw.rest_ok([kw.symbol_info(p) for p in self._pairs])
        symbol = query.get("symbol", [""])[0]
        st = self._syms.get(symbol)
        if st is None:
            return 400, {"code": "400100", "msg": f"symbol {symbol!r} does not exist"}
        depth = {"level2_20": 20, "level2_100": 100}.get(name)
        return 200, kw.rest_ok(self._snapshot(st, depth))

    def _bullet(self) -> dict[str, Any]:
        """protocols.md §2.1: a fresh token and the instance servers."""
        cfg = self.config
        body = "".join(self._token_rng.choice(_TOKEN_ALPHABET) for _ in range(120))
        tail = "".join(self._token_rng.choice(_TOKEN_ALPHABET) for _ in range(22))
        token = f"{body}.{tail}=="
        self._tokens[token] = self._now() + cfg.token_ttl_s
        self._stats.tokens_issued += 1
        self._record(
            {
                "k": "token",
                "venue": "kucoin",
                "issued": self._stats.tokens_issued,
                "ts_ns": self._ts() * 1000,
                "ttl_s": cfg.token_ttl_s,
            }
        )
        endpoints: Sequence[str] = self.ws_urls
        if self._advertised is not None:
            endpoints = self._advertised
        elif cfg.instance_servers is not None:
            endpoints = cfg.instance_servers
        return {
            "token": token,
            "instanceServers": [
                {
                    "endpoint": ep,
                    "encrypt": ep.startswith("wss:"),
                    "protocol": "websocket",
                    "pingInterval": cfg.ping_interval_ms,
                    "pingTimeout": cfg.ping_timeout_ms,
                }
                for ep in endpoints
            ],
        }

    def _snapshot(self, st: _SymbolState, depth: int | None) -> dict[str, Any]:
        """protocols.md §2.5 REST snapshot (fresh, or stale under ``stale_snapshot``)."""
        sym = st.pair.symbol
        snap = None
        rule = next((r for r in self._stale if r.remaining > 0 and r.symbol in (None, sym)), None)
        if rule is not None:
            snap = st.feed.stale_snapshot(depth, rule.age_s, self._now())
            if snap is not None:
                rule.remaining -= 1
                if rule.remaining == 0:
                    self._stale.remove(rule)
                self._stats.stale_snapshots += 1
        stale = snap is not None
        if snap is None:
            snap = st.feed.snapshot(depth)
        seq, bids, asks = snap
        ts = self._ts()
        self._stats.snapshots_served += 1
        self._record(
            {
                "k": "snapshot",
                "venue": "kucoin",
                "symbol": sym,
                "ts_ns": ts * 1000,
                "sequence": seq,
                "depth": depth,
                "stale": stale,
            }
        )
        pp, qp = st.pp, st.qp
        return {
            "time": ts // 1000,
            "sequence": str(seq),
            "bids": [[kw.fmt_plain(p, pp), kw.fmt_plain(q, qp)] for p, q in bids],
            "asks": [[kw.fmt_plain(p, pp), kw.fmt_plain(q, qp)] for p, q in asks],
        }

    # ------------------------------------------------------------ connection

    async def _handler(self, index: int, ws: ServerConnection) -> None:
        assert isinstance(ws, _WsConnection)
        if not ws.token_ok:
            await self._reject_token(index, ws)
            return
        cid = self._next_cid
        self._next_cid += 1
        now = self._now()
        ws.last_rx = now
        conn = _Conn(cid, ws, now)
        self._stats.connections += 1
        self._stats.open_connections += 1
        # protocols.md §2.3: the welcome comes first, before anything else is queued
        self._send(conn, kw.dumps({"id": conn.connect_id, "type": "welcome"}))
        self._conns.add(conn)
        self._record(
            {
                "k": "conn_open",
                "venue": "kucoin",
                "conn": cid,
                "connect_id": conn.connect_id,
                "instance": index,
                "ts_ns": self._ts() * 1000,
            }
        )
        if self._stopping or self._servers[index] is None:
            self._abort(conn, "shutdown" if self._stopping else "instance_down")
        try:
            async with asyncio.TaskGroup() as tg:
                writer = tg.create_task(self._writer(conn))
                await self._reader(conn)
                writer.cancel()
        finally:
            conn.closing = True
            conn.drained.set()  # nothing more will be written (quiesce must not wait)
            self._drop_conn(conn)
            self._stats.open_connections -= 1
            self._record(
                {
                    "k": "conn_close",
                    "venue": "kucoin",
                    "conn": cid,
                    "ts_ns": self._ts() * 1000,
                    "how": conn.close_how or "client",
                    "cause": conn.cause if conn.close_how not in (None, "client") else None,
                }
            )

    async def _reject_token(self, index: int, ws: _WsConnection) -> None:
        """protocols.md §2.1 [OBS]: ``{"type":"error","code":401,...}`` then close."""
        self._count_refusal(401)
        self._record(
            {
                "k": "refused",
                "venue": "kucoin",
                "status": 401,
                "instance": index,
                "ts_ns": self._ts() * 1000,
                "reason": "bad_token",
                "how": "error_frame",
            }
        )
        with contextlib.suppress(ConnectionClosed):
            async with asyncio.timeout(self.config.close_timeout_s + 1.0):
                await ws.send(kw.error(None, 401, TOKEN_EXPIRED))
                await ws.close(self.config.token_close_code, "")

    def _drop_conn(self, conn: _Conn) -> None:
        self._private.drop(conn)
        self._conns.discard(conn)
        for key in conn.topics:
            self._subs.get(key, set()).discard(conn)
        conn.topics.clear()

    def _idle_timeout(self) -> float | None:
        cfg = self.config
        if cfg.idle_timeout_s == "auto":
            return (cfg.ping_interval_ms + cfg.ping_timeout_ms) / 1000.0
        return cfg.idle_timeout_s

    async def _reader(self, conn: _Conn) -> None:
        cfg = self.config
        idle = self._idle_timeout()
        while True:
            now = self._now()
            deadline = now + 3600.0
            if not conn.closing and not conn.muted:
                if idle is not None:
                    deadline = min(deadline, self._last_activity(conn) + idle)
                if cfg.lifetime_s is not None:
                    deadline = min(deadline, conn.opened + cfg.lifetime_s)
            try:
                async with asyncio.timeout_at(max(deadline, now)):
                    msg = await conn.ws.recv()
            except TimeoutError:
                now = self._now()
                if conn.closing or conn.muted:
                    continue
                if cfg.lifetime_s is not None and now >= conn.opened + cfg.lifetime_s:
                    self._close(conn, cfg.lifetime_close_code, "", "lifetime")
                elif idle is not None and now >= self._last_activity(conn) + idle:
                    self._close(conn, cfg.idle_close_code, "", "idle")
                continue
            except ConnectionClosed:
                return
            conn.last_msg = self._now()
            self._stats.client_messages += 1
            self._on_message(conn, msg)

    def _last_activity(self, conn: _Conn) -> float:
        if self.config.control_frames_are_activity:
            return max(conn.last_msg, conn.ws.last_rx)
        return conn.last_msg

    async def _writer(self, conn: _Conn) -> None:
        """Drain ``conn.queue`` in order (bounded waits)."""
        ws = conn.ws
        while True:
            if not conn.queue:
                conn.drained.set()
                conn.wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(5.0):
                        await conn.wake.wait()
                continue
            item = conn.queue.popleft()
            if isinstance(item, _CloseCmd):
                conn.queue.clear()
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
                return
            self._stats.frames_sent += 1
            self._stats.bytes_sent += len(item)

    def _send(self, conn: _Conn, text: str) -> None:
        """Queue a frame for ``conn`` (dropped if the connection is closing or muted)."""
        if conn.closing or conn.muted:
            return
        if len(conn.queue) >= self.config.send_queue_max:
            _log.warning("connection %d: outbound queue overflow, aborting", conn.cid)
            self._stats.slow_consumer_aborts += 1
            self._abort(conn, "slow_consumer")
            return
        conn.queue.append(text)
        conn.drained.clear()
        conn.wake.set()

    def _send_data(self, conn: _Conn, symbol: str, text: str) -> None:
        if conn.stalled and (conn.stalled.get(symbol) or conn.stalled.get("*")):
            self._stats.frames_withheld += 1
            return
        self._send(conn, text)

    def _close(self, conn: _Conn, code: int, reason: str, cause: str) -> None:
        if conn.closing:
            return
        conn.closing = True
        conn.cause = cause
        conn.queue.append(_CloseCmd(code, reason))
        conn.drained.clear()
        conn.wake.set()

    def _abort(self, conn: _Conn, cause: str) -> None:
        if conn.close_how is None:
            # a client that already sent its close frame closed the connection itself
            client_closed = conn.ws.protocol.close_rcvd is not None
            conn.close_how = "client" if client_closed else "abort"
            conn.cause = cause
        conn.closing = True
        conn.queue.clear()
        conn.drained.set()
        conn.wake.set()
        transport = conn.ws.transport
        if transport is not None:
            transport.abort()

    # -------------------------------------------------------------- requests

    def _on_message(self, conn: _Conn, msg: str | bytes) -> None:
        try:
            text = msg.decode("utf-8") if isinstance(msg, bytes) else msg
            obj = json.loads(text)
        except (UnicodeDecodeError, ValueError, RecursionError):
            self._send(conn, kw.error(conn.connect_id, 400, "invalid json"))
            return
        if not isinstance(obj, dict):
            self._send(conn, kw.error(conn.connect_id, 400, "invalid request"))
            return
        raw_id = obj.get("id")
        req_id = conn.connect_id if raw_id is None else _id_text(raw_id)
        kind = obj.get("type")
        if kind == "ping":
            self._send(conn, kw.dumps({"id": req_id, "type": "pong"}))
        elif kind in ("subscribe", "unsubscribe"):
            self._on_subscription(conn, str(kind), obj, req_id)
        else:
            self._send(conn, kw.error(req_id, 400, f"unsupported type {kind}"))

    def _topic_limit(self) -> int:
        now = self._now()
        self._topic_limits = [(lim, until) for lim, until in self._topic_limits if until > now]
        return min([self.config.max_topics_per_conn, *(lim for lim, _ in self._topic_limits)])

    def _violation(self, rule: str) -> None:
        self._stats.violations += 1
        self._record(
            {"k": "violation", "venue": "kucoin", "rule": rule, "ts_ns": self._ts() * 1000}
        )

    def _on_subscription(self, conn: _Conn, kind: str, obj: dict[str, Any], req_id: str) -> None:
        """protocols.md §2.3/§2.4: all-or-nothing; 509 limits, 404 unknown; ack if asked."""
        cfg = self.config
        if self._private.on_subscription(conn, kind, obj, req_id):
            return
        topic = obj.get("topic")
        if not isinstance(topic, str) or ":" not in topic:
            self._send(conn, kw.error(req_id, 404, f"topic {topic} is not found"))
            return
        prefix, _, sym_text = topic.partition(":")
        symbols = sym_text.split(",")
        if len(symbols) > cfg.max_topics_per_message:
            self._violation("topics_per_message")
            text = (
                f"exceed max subscription count limitation of {cfg.max_topics_per_message} per time"
            )
            self._send(conn, kw.error(req_id, 509, text))
            return
        channel = _TOPICS.get(prefix)
        if channel is None:
            self._send(conn, kw.error(req_id, 404, f"topic {topic} is not found"))
            return
        unknown = [s for s in symbols if s not in self._syms]
        if unknown:
            text = f"topic {prefix}:{','.join(unknown)} is not found"
            self._send(conn, kw.error(req_id, 404, text))
            return
        keys = list(dict.fromkeys((channel, s) for s in symbols))
        if kind == "subscribe":
            new = [k for k in keys if k not in conn.topics]
            limit = self._topic_limit()
            if new and len(conn.topics) + len(new) > limit:
                if len(conn.topics) + len(new) > self.config.max_topics_per_conn:
                    # the documented rule (a topic_limit fault lowers only what is refused)
                    self._violation("topics_per_conn")
                text = f"exceed max subscription count limitation of {limit} per session"
                self._send(conn, kw.error(req_id, 509, text))
                return
            for key in new:
                conn.topics.add(key)
                self._subs.setdefault(key, set()).add(conn)
        else:
            for key in keys:
                if key in conn.topics:
                    conn.topics.discard(key)
                    self._subs.get(key, set()).discard(conn)
        if obj.get("response") is True:
            self._send(conn, kw.dumps({"id": req_id, "type": "ack"}))

    # ---------------------------------------------------------------- market

    async def _market_loop(self) -> None:
        """Tick every symbol at ``tick_rate_hz`` x burst factor, on the loop clock."""
        base = self.config.tick_rate_hz
        next_t = self._now()
        while True:
            now = self._now()
            if next_t > now + 1e-6:
                # coarse clocks (looptime in tests) may wake us a hair early: tolerate it
                await asyncio.sleep(max(next_t - now, 1e-3))
                now = self._now()
            steps = 0
            while next_t <= now + 1e-6 and steps < 200:
                for sym in self._syms:
                    self._tick(sym)
                factor = max(self._bursts, default=1.0)
                next_t += 1.0 / (base * factor)
                steps += 1
            if next_t < now - 1.0:
                next_t = now  # far behind (stalled loop): do not try to catch up
            if steps >= 200:
                await asyncio.sleep(0)

    def _tick(self, sym: str) -> None:
        st = self._syms[sym]
        now = self._now()
        matches, msg = st.feed.tick(now)
        self._stats.ticks += 1
        if msg is not None:
            self._publish_l2(st, msg)
        if matches:
            subs = self._subs.get(("match", sym))
            for ev in matches:
                ts = self._ts()
                price = kw.fmt_plain(ev.price, st.pp)
                size = kw.fmt_plain(ev.size, st.qp)
                self._stats.trades += 1
                self._record(
                    {
                        "k": "trade",
                        "venue": "kucoin",
                        "symbol": sym,
                        "ts_ns": ts * 1000,
                        "trade_id": ev.trade_id,
                        "sequence": ev.sequence,
                        "price": price,
                        "size": size,
                        "side": ev.side,
                    }
                )
                self._private.on_public_trade(sym, Decimal(price), Decimal(size), ev.side)
                if subs:
                    text = kw.match(
                        sym,
                        maker_order_id=ev.maker_order_id,
                        taker_order_id=ev.taker_order_id,
                        price=price,
                        size=size,
                        side=ev.side,
                        sequence=ev.sequence,
                        trade_id=ev.trade_id,
                        time_ns=ts * 1000,
                    )
                    for conn in list(subs):
                        self._send_data(conn, sym, text)
        if now >= st.next_ticker_t:
            self._maybe_ticker(st, now)

    def _maybe_ticker(self, st: _SymbolState, now: float) -> None:
        """protocols.md §2.6: ``trade.ticker`` about every 100 ms, when something changed."""
        feed = st.feed
        bp, bq, ap, aq = feed.bbo()
        state = (feed.last_price, feed.last_size, bp, bq, ap, aq)
        if state == st.last_ticker:
            return
        st.last_ticker = state
        st.next_ticker_t = now + self.config.ticker_interval_s
        sym = st.pair.symbol
        ts = self._ts()
        self._stats.tickers += 1
        self._record(
            {
                "k": "ticker",
                "venue": "kucoin",
                "symbol": sym,
                "ts_ns": ts * 1000,
                "sequence": feed.seq,
            }
        )
        subs = self._subs.get(("ticker", sym))
        if not subs:
            return
        pp, qp = st.pp, st.qp
        text = kw.ticker(
            sym,
            sequence=feed.seq,
            price=kw.fmt_plain(feed.last_price, pp),
            size=kw.fmt_plain(feed.last_size, qp),
            best_ask=kw.fmt_plain(ap, pp),
            best_ask_size=kw.fmt_plain(aq, qp),
            best_bid=kw.fmt_plain(bp, pp),
            best_bid_size=kw.fmt_plain(bq, qp),
            time_ms=ts // 1000,
        )
        for conn in list(subs):
            self._send_data(conn, sym, text)

    def _publish_l2(self, st: _SymbolState, msg: L2Message) -> None:
        sym = st.pair.symbol
        ts = self._ts()
        st.last_book_ts = ts
        skipped = st.gaps > 0
        if skipped:
            st.gaps -= 1
            self._stats.l2_skipped += 1
        self._stats.l2_messages += 1
        self._record(
            {
                "k": "book",
                "venue": "kucoin",
                "symbol": sym,
                "ts_ns": ts * 1000,
                "seq_start": msg.seq_start,
                "seq_end": msg.seq_end,
                "skipped": skipped,
            }
        )
        subs = self._subs.get(("level2", sym))
        if not subs:
            return
        if skipped:
            self._stats.frames_withheld += len(subs)
            return
        text = kw.l2update(
            sym, msg.asks, msg.bids, msg.seq_start, msg.seq_end, ts // 1000, st.pp, st.qp
        )
        for conn in list(subs):
            self._send_data(conn, sym, text)

    # ---------------------------------------------------------------- faults

    async def _run_scenario(self, scenario: Scenario, start: float) -> None:
        for fault in scenario:
            delay = start + fault.at_s - self._now()
            if delay > 0:
                await asyncio.sleep(delay)
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

    def _check(self, kind: str, p: dict[str, Any]) -> None:
        """Validate a fault before anything is recorded (ValueError)."""
        if kind not in KUCOIN_FAULT_KINDS:
            raise ValueError(f"fault kind {kind!r} is not supported by the KuCoin simulator")
        if kind in ("level2_gap",):
            p["symbol"] = self._pick_symbol(p["symbol"])
        if kind == "stale_snapshot":
            if p["symbol"] is not None:
                p["symbol"] = self._pick_symbol(p["symbol"])
            if not isinstance(p["count"], int) or isinstance(p["count"], bool) or p["count"] < 1:
                raise ValueError("stale_snapshot count must be an int >= 1")
            if not isinstance(p["age_s"], int | float) or p["age_s"] <= 0:
                raise ValueError("stale_snapshot age_s must be > 0")
        if kind == "data_stall" and p["symbols"] is not None:
            p["symbols"] = [self._pick_symbol(s) for s in p["symbols"]]
        if kind == "topic_limit" and (
            not isinstance(p["limit"], int) or isinstance(p["limit"], bool) or p["limit"] < 0
        ):
            raise ValueError("topic_limit limit must be an int >= 0")
        if kind == "instance_down":
            idx = p["index"]
            if not isinstance(idx, int) or isinstance(idx, bool) or not 0 <= idx < len(self._ports):
                raise ValueError(f"instance_down index must be in 0..{len(self._ports) - 1}")
        if kind == "rest_429" and p["duration_s"] is None:
            raise ValueError("rest_429 needs duration_s")

    def _inject(self, fault: Fault) -> None:
        if self._tg is None:
            raise RuntimeError("the simulator is not running (use 'async with sim:')")
        p = fault.resolved()
        kind = fault.kind
        self._check(kind, p)
        conns = list(self._conns)
        now = self._now()
        self._stats.faults_injected[kind] = self._stats.faults_injected.get(kind, 0) + 1
        self._record(
            {"k": "fault", "venue": "kucoin", "kind": kind, "ts_ns": self._ts() * 1000, "params": p}
        )
        _log.info("fault %s %s", kind, p)
        if kind == "close":
            for c in conns:
                self._close(c, int(p["code"]), str(p["reason"]), "fault")
        elif kind == "abort":
            for c in conns:
                self._abort(c, "fault")
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
        elif kind == "maintenance":
            self._status = "close"
            self._maintenance_depth += 1
            self._maintenance_until = max(self._maintenance_until, now + float(p["duration_s"]))
            self._spawn(self._maintenance(p))
        elif kind == "status":
            self._status = _STATUS_MAP[str(p["system"])]
        elif kind == "token_expiry":
            for token, expires in self._tokens.items():
                self._tokens[token] = min(expires, now)
            frame = kw.error(None, 401, TOKEN_EXPIRED)
            for c in conns:
                self._send(c, frame)
                self._close(c, self.config.token_close_code, "", "token_expired")
        elif kind in PRIVATE_FAULT_DEFAULTS:
            self._private.inject(kind, p)
        elif kind == "level2_gap":
            self._syms[p["symbol"]].gaps += 1
        elif kind == "stale_snapshot":
            self._stale.append(_Stale(p["symbol"], int(p["count"]), float(p["age_s"])))
        elif kind == "topic_limit":
            d = p["duration_s"]
            until = math.inf if d is None else now + float(d)
            self._topic_limits.append((int(p["limit"]), until))
        elif kind == "instance_down":
            d = p["duration_s"]
            self._spawn(self._instance_down(int(p["index"]), None if d is None else float(d)))
        elif kind == "rest_429":
            self._rest_429_until = max(self._rest_429_until, now + float(p["duration_s"]))
        elif kind == "lifetime_close":
            for c in conns:
                self._close(c, self.config.lifetime_close_code, "", "lifetime")
        else:  # pragma: no cover - _check rejects other kinds
            raise ValueError(f"unknown fault kind {kind!r}")

    async def _end_stall(self, conns: list[_Conn], duration: float) -> None:
        await asyncio.sleep(duration)
        for c in conns:
            if c in self._conns:
                self._abort(c, "fault")

    async def _end_data_stall(
        self, conns: list[_Conn], symbols: list[str], duration: float
    ) -> None:
        await asyncio.sleep(duration)
        for c in conns:
            for s in symbols:
                n = c.stalled.get(s, 0) - 1
                if n > 0:
                    c.stalled[s] = n
                else:
                    c.stalled.pop(s, None)

    async def _end_burst(self, factor: float, duration: float) -> None:
        await asyncio.sleep(duration)
        self._bursts.remove(factor)

    async def _maintenance(self, p: dict[str, Any]) -> None:
        cfg = self.config
        duration = float(p["duration_s"])
        delay = min(cfg.maintenance_close_delay_s, duration)
        try:
            await asyncio.sleep(delay)
            for c in list(self._conns):
                self._close(c, cfg.maintenance_close_code, "", "maintenance")
            await asyncio.sleep(duration - delay)
        finally:
            self._maintenance_depth -= 1
        if self._maintenance_depth > 0:
            return  # an overlapping maintenance owns the rest of the sequence
        cancel_only = float(p["cancel_only_s"])
        if cancel_only > 0:
            self._status = "cancelonly"
            await asyncio.sleep(cancel_only)
            if self._maintenance_depth > 0:
                return
        self._status = _STATUS_MAP[str(p["after_status"])]

    async def _instance_down(self, index: int, duration: float | None) -> None:
        """Close instance ``index``'s listener and connections; listen again after ``duration``."""
        self._down_depth[index] += 1
        server = self._servers[index]
        self._servers[index] = None
        if server is not None:
            server.close(close_connections=False)
        for c in list(self._conns):
            if c.instance == index:
                self._abort(c, "instance_down")
        if server is not None:
            try:
                async with asyncio.timeout(self.config.close_timeout_s + 3.0):
                    await server.wait_closed()
            except TimeoutError:
                _log.warning("instance %d did not close in time", index)
        if duration is None:
            return  # down for good
        await asyncio.sleep(duration)
        self._down_depth[index] -= 1
        if self._down_depth[index] > 0 or self._stopping:
            return
        for _ in range(50):
            try:
                await self._listen(index)
                return
            except OSError as exc:
                _log.warning("instance %d: cannot listen again yet: %s", index, exc)
                await asyncio.sleep(0.2)
        _log.error("instance %d: gave up listening on port %d", index, self._ports[index])

    def _malformed(self, conns: list[_Conn], variant: str, size: int) -> None:
        sym = self.config.symbols[0]
        if variant == "invalid_json":
            text = (
                f'{{"type":"message","topic":"/market/level2:{sym}",'
                '"subject":"trade.l2update","data":{"changes":{"asks":[["'
            )
        elif variant == "wrong_types":
            text = kw.dumps(
                {
                    "type": "message",
                    "topic": f"/market/level2:{sym}",
                    "subject": "trade.l2update",
                    "data": {
                        "changes": {"asks": [[1, None, {"x": 1}]], "bids": "none"},
                        "sequenceEnd": "abc",
                        "sequenceStart": [1],
                        "symbol": 12,
                        "time": "now",
                    },
                }
            )
        elif variant == "huge":
            head = '{"type":"message","topic":"/noise","subject":"noise","data":"'
            tail = '"}'
            text = head + "x" * max(0, size - len(head) - len(tail)) + tail
        else:  # deep
            text = "[" * 10_000 + "]" * 10_000
        for c in conns:
            self._send(c, text)


def _id_text(raw: Any) -> str:
    """§2.3: ids come back as strings even when sent as numbers (``1545910660739``)."""
    if isinstance(raw, str):
        return raw
    if isinstance(raw, bool):
        return "true" if raw else "false"
    if isinstance(raw, float) and raw.is_integer():
        return str(int(raw))
    return json.dumps(raw, separators=(",", ":"))
