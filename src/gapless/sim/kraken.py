"""Kraken Spot WebSocket v2 simulator: server, market feeds, faults, ground truth.

An independent implementation of the venue (protocols.md §1 and §5 items 1-3).
It imports nothing from the gapless client (``venues``, ``runtime``, ``book``),
so a misreading of the protocol shared by client and simulator cannot hide.

Wire behaviour
==============

* Any path is accepted (``/v2`` is what :attr:`KrakenSim.url` names).
  Connections opened on ``/v2-auth`` (:attr:`KrakenSim.auth_url`) may also
  use the private channels ``executions``/``balances`` and the order
  methods; plain HTTP requests on the same port are the REST API
  (:attr:`KrakenSim.rest_url`). Both are documented in
  :mod:`gapless.sim.kraken_private`, accounts and matching in
  :mod:`gapless.sim.accounts`.
* First frame of every connection: ``status`` (protocols.md §1.4) with a
  seeded random ``connection_id`` > 2^53, the current ``system`` status,
  ``api_version`` "v2" and ``version`` "2.0.0".
* Methods ``subscribe`` / ``unsubscribe`` on ``book``, ``trade``, ``ticker``,
  ``instrument``; ``ping`` -> ``pong`` with ``req_id``, ``time_in``,
  ``time_out`` (§1.3). Anything else, invalid JSON included, gets the error
  envelope ``{"error", "method", "success": false, "time_in", "time_out",
  "req_id"?}`` and the connection stays open.
* One ack per symbol (§1.5). Errors: "Subscription depth not supported" for a
  depth outside {10, 25, 100, 500, 1000} (whole request, no ``symbol``,
  §1.5 [OBS]); "Currency pair not supported <SYM>" with ``symbol``;
  "Already subscribed" when the (channel, symbol[, depth]) is already active
  on the connection; "Subscription Not Found" for unsubscribing something not
  subscribed. A ``ticker`` subscription is keyed by (channel, symbol): the
  same symbol cannot be subscribed with both event triggers on one connection.
* No server ping frames (§1.3, configurable); websockets answers client pings.
* ``heartbeat`` about once per ``heartbeat_interval_s`` per connection, only
  while it has >= 1 subscription and nothing else was sent for that long.
* Idle timeout: a connection with no client *message* (control frames do not
  count) for ``idle_timeout_s`` is closed with ``idle_close_code`` (1001,
  §1.13 picks 1001 for "going away"). §1.2 leaves open whether a subscribed
  connection counts as idle; here it does, so clients must ``ping``.
* Connection-attempt rate (§1.2): upgrade attempts are counted per client IP
  in a rolling window; above ``connect_limit`` per ``connect_window_s`` the IP
  is banned for ``ban_s`` and every upgrade is answered HTTP 429 with
  ``Retry-After`` (§1.2 leaves the ban's wire form [UNCERTAIN]; 429 chosen).
* A connection whose outbound queue exceeds ``send_queue_max`` frames (a
  client that does not read) is aborted, like a venue dropping a slow consumer.

Ordering guarantee (the client and the checker rely on it)
==========================================================

For a subscription acknowledged with ``time_out`` = T, every event of that
channel+symbol with exchange timestamp > T is sent on that connection (unless
a fault says otherwise), and none with timestamp <= T except snapshot content.
For ``book`` the snapshot follows right after its ack; its ``timestamp`` is
the timestamp of the most recent market change of that book (so it reflects
every update with ts <= snapshot ts), and every update sent after it has a
larger ts. All timestamps come from one global strictly increasing
microsecond clock, so they are strictly increasing per symbol and unique
across the whole simulator (a trade, the book change it caused and the ticker
update each get their own timestamp, in that order). An unsubscribe acked at
T' stops the stream: nothing with ts > T' follows on that connection.

This holds because the asyncio loop is single threaded: acks, snapshots and
registry changes happen synchronously with the clock reads, and each
connection has one FIFO outbound queue.

Book feeds (protocols.md §1.7)
==============================

A *feed* is (symbol, depth). It exists from the first time any client
subscribes to it and is then published for the rest of the run, connected or
not. After every market change each feed emits the levels of its top-``depth``
window that changed (see :class:`gapless.sim.market.DepthView` for the rules
2-4), one message per symbol with a ``checksum`` over the top 10 after the
change. Checksums are computed by :mod:`gapless.sim.checksum`.

Faults (design.md §4; parameters in :mod:`gapless.sim.faults`)
==============================================================

``close``: close frame with ``code``/``reason`` to all current connections
(queued frames are flushed first). ``abort``: ``transport.abort()``, no close
frame. ``silent_stall``: current connections get no frames at all (not even
websockets' automatic pongs); new connections are served; after
``duration_s`` the stalled sockets are aborted. ``data_stall``: book, trade
and ticker frames of the given symbols are withheld on current connections
(still in truth) while heartbeats and pongs flow; afterwards data resumes on
those connections, leaving their books broken. ``maintenance``: ``status``
"maintenance" pushed, connections closed with 1001 after
``maintenance_close_delay_s``, upgrades refused with HTTP 503 until
``duration_s`` has passed; then new connections see ``cancel_only`` for
``cancel_only_s`` (an update is pushed when it ends) and then
``after_status``. ``status``: push a status update, keep connections.
``reject_subscriptions``: the next ``count`` per-symbol subscriptions
(matching ``symbol`` if given) are refused with ``error``; with
``then_close`` current connections are closed with 1000 at once.
``ban``: abort connections and answer 429 + ``Retry-After`` for
``duration_s``. ``drop_update``: a book update of the symbol is published
in truth but sent to nobody; with ``detectable`` (default) it is the first
one whose loss every subscribed client will notice through the next
update's checksum (see ``KrakenSim._publish_book``), otherwise simply the
next. ``corrupt_checksum``: the next book update of the symbol goes out with
a wrong checksum (truth keeps the right one). ``burst``:
tick rate times ``factor``. ``malformed``: an invalid JSON text, a book
update with wrongly typed fields, a huge valid JSON text or 10,000-deep
nested arrays, sent to all current connections. ``maintenance`` and
``status`` also gate the private order methods, REST and matching (see
:mod:`gapless.sim.kraken_private`). Private-side kinds ``token_expiry``,
``private_sequence_jump`` and ``fill_while_disconnected``: see
:mod:`gapless.sim.kraken_private`. A kind of another venue raises
``ValueError``.

Ground truth records (exact keys; ``ts_ns`` = wire microseconds x 1000)
=====================================================================

::

    {"k":"meta","venue":"kraken","seed":7,"symbols":[..],"precisions":{"BTC/USD":[1,8]}}
    {"k":"trade","symbol":S,"ts_ns":N,"trade_id":I,"price":"62807.1","qty":"0.01000000",
     "side":"buy"}
    {"k":"book","symbol":S,"depth":D,"ts_ns":N,"checksum":C}
    {"k":"ticker","symbol":S,"ts_ns":N}          # event_trigger "trades"
    {"k":"ticker_bbo","symbol":S,"ts_ns":N}      # event_trigger "bbo" (once subscribed)
    {"k":"snapshot","conn":CID,"symbol":S,"depth":D,"ts_ns":N,"checksum":C}
    {"k":"ack","conn":CID,"channel":C,"symbol":S|None,"depth":D|None,"ts_ns":N}
    {"k":"conn_open","conn":CID,"ts_ns":N}
    {"k":"conn_close","conn":CID,"ts_ns":N,"how":"abort"|"close:<code>"|"client"}
    {"k":"refused","status":429|503,"ts_ns":N}
    {"k":"fault","kind":K,"ts_ns":N,"params":{..}}
    {"k":"violation","rule":"connect_rate","ts_ns":N}
    {"k":"final_book","symbol":S,"depth":D,"ts_ns":N,"checksum":C,"bids":[["p","q"],..],
     "asks":[..]}

Private-side records (``token``, ``order``, ``ledger``, ``dms_armed``,
``dms_fired``, ``private_skip``, ``final_order``, ``final_balance``; private
subscriptions also log ``ack`` with ``symbol``/``depth`` None) are listed in
:mod:`gapless.sim.kraken_private`.

Concurrency
===========

All simulator tasks (market generator, scenario runners, fault timers) live
in one ``asyncio.TaskGroup`` entered by ``__aenter__`` and exited by
``__aexit__`` (enter and exit the simulator from the same task). Each
connection's handler (a task owned by the websockets server, which
``__aexit__`` closes and awaits) runs its writer in its own TaskGroup. Time
is the running loop's clock, so the simulator works under ``looptime``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import http
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
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.server import ServerProtocol

from gapless.sim import wire
from gapless.sim.accounts import DEMO_KRAKEN_ACCOUNT, Account, AccountSpec
from gapless.sim.checksum import checksum_scaled
from gapless.sim.faults import FAULT_KINDS, KRAKEN_PRIVATE_FAULT_KINDS, Fault, Scenario
from gapless.sim.kraken_private import (
    AUTH_PATH,
    ORDER_METHODS,
    PRIVATE_CHANNELS,
    KrakenPrivate,
    PrivConn,
    install_body_parser,
)
from gapless.sim.market import (
    DEFAULT_PAIRS,
    DepthView,
    MarketChange,
    PairSpec,
    SymbolMarket,
    TickerStats,
)
from gapless.sim.numbers import fmt_fixed, rfc3339_us
from gapless.sim.truth import TruthLog

__all__ = ["BOOK_DEPTHS", "KRAKEN_FAULT_KINDS", "KrakenSim", "SimConfig", "SimStats"]

_log = logging.getLogger("gapless.sim")
#: websockets dumps every frame at DEBUG; private frames carry tokens, so the
#: server's connection logger drops DEBUG records (design.md §1.6)
_ws_log = logging.getLogger("gapless.sim.kraken.websockets")
_ws_log.addFilter(lambda record: record.levelno >= logging.INFO)

KRAKEN_FAULT_KINDS: tuple[str, ...] = FAULT_KINDS + KRAKEN_PRIVATE_FAULT_KINDS
"""Every fault kind the Kraken simulator implements (common + private side)."""

BOOK_DEPTHS = frozenset({10, 25, 100, 500, 1000})
"""protocols.md §1.7: the only depths Kraken v2 accepts; others are refused."""

CHANNELS = ("book", "trade", "ticker", "instrument")

INSTRUMENT_WARNING = "tick_size is deprecated, use price_increment"


@dataclass(frozen=True)
class SimConfig:
    """Simulator settings. Times are seconds on the running loop's clock.

    ``seed`` drives the market (per symbol), connection ids and random fault
    choices through independent ``random.Random`` streams. ``symbols`` must
    each have a :class:`PairSpec` in ``pairs``. ``tick_rate_hz`` is per symbol.
    ``truth_path`` optionally mirrors the truth log to a JSONL file.
    ``idle_timeout_s`` None disables the idle close. ``connect_limit`` /
    ``connect_window_s`` / ``ban_s`` are the connection-attempt rule of
    protocols.md §1.2. ``send_queue_max`` bounds each connection's outbound
    queue (overflow aborts it). ``server_ping_interval_s`` None means no server
    ping frames (§1.3). ``clock`` returns epoch microseconds (made strictly
    increasing by the simulator).
    """

    seed: int = 0
    symbols: tuple[str, ...] = tuple(p.symbol for p in DEFAULT_PAIRS)
    tick_rate_hz: float = 50.0
    host: str = "127.0.0.1"
    port: int = 0
    truth_path: str | Path | None = None
    #: False (with a ``truth_path``): the truth file is the only copy (long soaks)
    truth_in_memory: bool = True
    #: closed orders the matching engine remembers per account (None: all; long
    #: soaks bound it, as a venue's order history is)
    keep_closed_orders: int | None = None
    idle_timeout_s: float | None = 60.0
    heartbeat_interval_s: float = 1.0
    connect_limit: int = 150
    connect_window_s: float = 600.0
    ban_s: float = 600.0
    pairs: tuple[PairSpec, ...] = DEFAULT_PAIRS
    book_levels: int = 1200
    min_levels: int = 1100
    trade_snapshot_count: int = 50
    maintenance_close_delay_s: float = 0.2
    max_message_size: int = 1 << 20
    send_queue_max: int = 100_000
    close_timeout_s: float = 2.0
    server_ping_interval_s: float | None = None
    idle_close_code: int = 1001
    maintenance_close_code: int = 1001
    clock: Callable[[], int] | None = None
    """Default: wall time at start plus elapsed loop time (works under looptime)."""
    accounts: tuple[AccountSpec, ...] = (DEMO_KRAKEN_ACCOUNT,)
    """Simulated accounts of the private side (:mod:`gapless.sim.kraken_private`)."""
    token_ttl_s: float = 900.0
    """protocols.md §1.6: a WS token must be used within 900 s (exchange clock)."""
    dms_check_interval_s: float = 0.1
    """How often the dead man's switch deadlines are checked (loop seconds)."""
    dms_max_timeout_s: int = 86400
    """§1.11: ``cancel_all_orders_after`` timeout must be < this (86400 refused)."""
    maker_fee: str = "0.0016"
    taker_fee: str = "0.0026"


@dataclass
class SimStats:
    """The simulator's counters; ``KrakenSim.stats`` returns them as a plain dict.

    ``connections`` (accepted, total), ``open_connections``, ``frames_sent``,
    ``bytes_sent``, ``frames_withheld`` (by data stalls and dropped updates),
    ``client_messages``, ``refused`` / ``refused_by_status`` (HTTP 429/503),
    ``violations`` (connection-rate rule tripped), ``slow_consumer_aborts``,
    ``faults_injected`` (by kind), ``ticks``, ``trades``, ``book_updates``
    (published feed updates).
    """

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
    book_updates: int = 0
    rest_requests: int = 0
    tokens_issued: int = 0
    orders_added: int = 0
    orders_rejected: int = 0
    private_fills: int = 0
    private_messages: int = 0
    dms_fired: int = 0


class _Clock:
    """One global strictly increasing microsecond clock (unique timestamps)."""

    def __init__(self, source: Callable[[], int]) -> None:
        self._source = source
        self.last = 0

    def next(self) -> int:
        now = self._source()
        if now <= self.last:
            now = self.last + 1
        self.last = now
        return now

    def peek(self) -> int:
        """The current time without consuming a timestamp."""
        return max(self._source(), self.last)


class _WsConnection(ServerConnection):
    """websockets connection that can be muted at the byte level.

    A silent stall must suppress *every* frame, including the pongs and close
    frames websockets writes on its own; overriding ``send_data`` is the one
    place all outgoing bytes pass.
    """

    muted: bool = False

    def __init__(self, protocol: ServerProtocol, *args: Any, **kwargs: Any) -> None:
        # REST calls carry a form body, which websockets' handshake parser refuses
        install_body_parser(protocol, 65536)
        super().__init__(protocol, *args, **kwargs)

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


_Levels = tuple[dict[int, int], dict[int, int]]
"""(bids, asks) as price -> qty (scaled ints)."""

SubKey = tuple[str, str, int]
"""(channel, symbol, depth): ("book","BTC/USD",10), ("trade","BTC/USD",0), ("instrument","",0)."""


class _Conn:
    __slots__ = (
        "cid",
        "close_how",
        "closing",
        "drained",
        "last_sent",
        "muted",
        "priv",
        "queue",
        "stalled",
        "subs",
        "ticker_trigger",
        "wake",
        "ws",
    )

    def __init__(self, cid: int, ws: _WsConnection, now: float) -> None:
        self.cid = cid
        self.ws = ws
        self.queue: deque[str | _CloseCmd] = deque()
        self.wake = asyncio.Event()
        self.drained = asyncio.Event()
        self.drained.set()
        self.subs: set[SubKey] = set()
        self.ticker_trigger: dict[str, str] = {}
        self.stalled: dict[str, int] = {}
        self.muted = False
        self.closing = False
        self.close_how: str | None = None
        self.last_sent = now
        self.priv = PrivConn()


@dataclass
class _Reject:
    remaining: int
    error: str
    symbol: str | None


class _SymbolState:
    """Per-symbol market, feeds and publication state."""

    def __init__(self, pair: PairSpec, market: SymbolMarket, ts: int, keep: int) -> None:
        self.pair = pair
        self.symbol_json = json.dumps(pair.symbol)
        self.market = market
        self.views: dict[int, DepthView] = {}
        self.trades: deque[str] = deque(maxlen=max(1, keep))
        self.ticker = TickerStats(market)
        self.last_book_ts = ts
        self.last_ticker_ts = ts
        self.last_bbo_ts = ts
        self.bbo_feed = False
        self.last_bbo = self._bbo()
        self.last_checksum = market.checksum()
        self.drops: deque[bool] = deque()  # pending drop_update faults: detectable?
        self.held: list[tuple[int, str]] | None = None  # update held back by a drop
        self.shadow: dict[int, _Levels] = {}  # what clients hold without the held update
        self.corrupt_pending = 0

    def _bbo(self) -> tuple[int, int, int, int]:
        m = self.market
        bp, bq = next(m.bids.iter_top(1))
        ap, aq = next(m.asks.iter_top(1))
        return bp, bq, ap, aq


class KrakenSim:
    """A Kraken Spot v2 WebSocket venue on loopback. Use as ``async with KrakenSim(cfg):``."""

    def __init__(self, config: SimConfig | None = None) -> None:
        self.config = cfg = config if config is not None else SimConfig()
        pairs = {p.symbol: p for p in cfg.pairs}
        missing = [s for s in cfg.symbols if s not in pairs]
        if missing:
            raise ValueError(f"symbols without a PairSpec in config.pairs: {missing}")
        if not cfg.symbols:
            raise ValueError("at least one symbol is required")
        if cfg.tick_rate_hz <= 0:
            raise ValueError("tick_rate_hz must be > 0")
        self._pairs = [pairs[s] for s in cfg.symbols]
        if cfg.token_ttl_s <= 0 or cfg.dms_check_interval_s <= 0:
            raise ValueError("token_ttl_s and dms_check_interval_s must be > 0")
        self._truth = TruthLog(cfg.truth_path, keep=cfg.truth_in_memory)
        self._stats = SimStats()
        self._conn_rng = random.Random(f"{cfg.seed}:conn")
        self._fault_rng = random.Random(f"{cfg.seed}:faults")
        self._syms: dict[str, _SymbolState] = {}
        self._conns: set[_Conn] = set()
        self._book_subs: dict[tuple[str, int], set[_Conn]] = {}
        self._trade_subs: dict[str, set[_Conn]] = {s: set() for s in cfg.symbols}
        self._ticker_subs: dict[tuple[str, str], set[_Conn]] = {}
        self._instrument_text = ""
        self._system = "online"
        self._rejects: list[_Reject] = []
        self._maintenance_depth = 0
        self._maintenance_until = 0.0
        self._ban_until = 0.0
        self._ban_retry_after: int | None = None
        self._ip_attempts: dict[str, deque[float]] = {}
        self._ip_bans: dict[str, float] = {}
        self._bursts: list[float] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._tg: asyncio.TaskGroup | None = None
        self._server: Server | None = None
        self._market_task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._clock: _Clock | None = None
        self._port = 0
        self._quiesced = False
        self._started = False
        self._stopping = False
        self._private = KrakenPrivate(self)

    # ----------------------------------------------------------------- public

    @property
    def url(self) -> str:
        """``ws://<host>:<port>/v2`` (valid after start)."""
        return f"ws://{self.config.host}:{self._port}/v2"

    @property
    def auth_url(self) -> str:
        """``ws://<host>:<port>/v2-auth``: the private endpoint (protocols.md §1.1, §1.10)."""
        return f"ws://{self.config.host}:{self._port}{AUTH_PATH}"

    @property
    def rest_url(self) -> str:
        """``http://<host>:<port>``: REST on the same port (``/0/private/...``, §1.6)."""
        return f"http://{self.config.host}:{self._port}"

    @property
    def port(self) -> int:
        return self._port

    @property
    def private(self) -> KrakenPrivate:
        """The private side (engine, tokens, REST); see :mod:`gapless.sim.kraken_private`."""
        return self._private

    def account(self, api_key: str | None = None) -> Account:
        """A simulated account (balances, orders); None = the first configured one."""
        return self._private.engine.account(self._private.account_key(api_key))

    def issued_tokens(self) -> list[str]:
        """Every WebSocket token this simulator issued (for secrets canaries)."""
        return list(self._private.tokens)

    def forgotten_orders(self) -> int:
        """Closed orders dropped beyond ``keep_closed_orders`` (all accounts)."""
        return sum(a.forgotten for a in self._private.engine.accounts.values())

    def final_orders(self, api_key: str | None = None) -> dict[str, dict[str, Any]]:
        """Every order of an account (None = the first configured one): ``{order_id:
        {"status", "cum_qty", "symbol", "side", "qty", "limit_price"}}``; ``status`` is a
        WS v2 ``order_status``, amounts are decimal text at the pair precisions
        (``limit_price`` None for market orders)."""
        return self._private.final_orders(api_key)

    def final_balances(self, api_key: str | None = None) -> dict[str, str]:
        """``{asset: total balance as decimal text}`` of an account (None = the first)."""
        return self._private.final_balances(api_key)

    @property
    def truth(self) -> list[dict[str, Any]]:
        """Every ground-truth record so far (live list; do not mutate)."""
        return self._truth.records

    @property
    def stats(self) -> dict[str, Any]:
        """A snapshot of the counters (keys: the fields of :class:`SimStats`)."""
        return dataclasses.asdict(self._stats)

    @property
    def system_status(self) -> str:
        return self._system

    @property
    def symbols(self) -> tuple[str, ...]:
        return self.config.symbols

    async def __aenter__(self) -> KrakenSim:
        if self._started:
            raise RuntimeError("a KrakenSim can be started only once")
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
        ts0 = self._clock.next()
        for pair in self._pairs:
            rng = random.Random(f"{cfg.seed}:market:{pair.symbol}")
            market = SymbolMarket(pair, rng, levels=cfg.book_levels, min_levels=cfg.min_levels)
            self._syms[pair.symbol] = _SymbolState(pair, market, ts0, cfg.trade_snapshot_count)
        self._instrument_text = wire.dumps(
            {"channel": "instrument", "type": "snapshot", "data": wire.instrument_data(self._pairs)}
        )
        self._truth.open()
        self._truth.add(
            {
                "k": "meta",
                "venue": "kraken",
                "seed": cfg.seed,
                "symbols": list(cfg.symbols),
                "precisions": {p.symbol: [p.price_precision, p.qty_precision] for p in self._pairs},
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
                ping_interval=cfg.server_ping_interval_s,
                close_timeout=cfg.close_timeout_s,
                max_size=cfg.max_message_size,
                compression=None,
                create_connection=_WsConnection,
                logger=_ws_log,
            )
            self._port = self._server.sockets[0].getsockname()[1]
            self._market_task = self._spawn(self._market_loop())
            self._spawn(self._private.dms_loop())
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
                    # let the body's own exception propagate unwrapped (a TaskGroup
                    # would wrap it in an ExceptionGroup); our tasks are cancelled
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
        """Stop the market, let queued frames drain, then write ``final_book`` records.

        The server keeps serving (heartbeats, pings, new subscriptions with
        snapshots of the frozen books). A second call does nothing.
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
        for sym, st in self._syms.items():
            if st.held is not None:  # a drop still waiting for its proof: send it late
                self._send_book(sym, st.held)
                st.held = None
                st.shadow = {}
        try:
            async with asyncio.timeout(drain_timeout_s):
                for c in list(self._conns):
                    if not c.muted and not c.closing:
                        await c.drained.wait()
        except TimeoutError:
            _log.warning("quiesce: outbound queues did not drain in %.1f s", drain_timeout_s)
        for (sym, depth), fb in sorted(self.final_books().items()):
            st = self._syms[sym]
            self._truth.add(
                {
                    "k": "final_book",
                    "symbol": sym,
                    "depth": depth,
                    "ts_ns": st.last_book_ts * 1000,
                    "checksum": fb["checksum"],
                    "bids": [list(lv) for lv in fb["bids"]],
                    "asks": [list(lv) for lv in fb["asks"]],
                }
            )
        self._private.write_finals()
        self._truth.flush()

    def final_books(self) -> dict[tuple[str, int], dict[str, Any]]:
        """Current top-``depth`` book of every feed: ``bids``/``asks`` as (price, qty) text."""
        out: dict[tuple[str, int], dict[str, Any]] = {}
        for sym, st in self._syms.items():
            for depth in st.views:
                bids, asks = st.market.book_text(depth)
                out[(sym, depth)] = {
                    "bids": bids,
                    "asks": asks,
                    "checksum": st.market.checksum(),
                }
        return out

    # ------------------------------------------------------------- internals

    def _now(self) -> float:
        assert self._loop is not None
        return self._loop.time()

    def _ts(self) -> int:
        assert self._clock is not None
        return self._clock.next()

    def _peek_us(self) -> int:
        assert self._clock is not None
        return self._clock.peek()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        if self._tg is None:
            coro.close()
            raise RuntimeError("the simulator is not running (use 'async with sim:')")
        task = self._tg.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -------------------------------------------------------- handshake gate

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        """Connection-attempt rate rule (protocols.md §1.2), bans and maintenance refusals.

        A request without ``Upgrade: websocket`` is a REST call (not counted as a
        connection attempt), answered by :meth:`KrakenPrivate.rest`.
        """
        if not any(u.lower() == "websocket" for u in request.headers.get_all("Upgrade")):
            return self._private.rest(connection, request)
        cfg = self.config
        now = self._now()
        addr = connection.remote_address
        ip = str(addr[0]) if addr else "?"
        attempts = self._ip_attempts.setdefault(ip, deque())
        while attempts and attempts[0] <= now - cfg.connect_window_s:
            attempts.popleft()
        attempts.append(now)
        banned_until = self._ip_bans.get(ip)
        if banned_until is not None and now >= banned_until:
            del self._ip_bans[ip]
            banned_until = None
        if banned_until is None and len(attempts) > cfg.connect_limit:
            banned_until = now + cfg.ban_s
            self._ip_bans[ip] = banned_until
            self._stats.violations += 1
            self._truth.add({"k": "violation", "rule": "connect_rate", "ts_ns": self._ts() * 1000})
            _log.warning("connection-rate limit exceeded by %s: banned for %.0f s", ip, cfg.ban_s)
        if banned_until is not None:
            return self._refuse(connection, 429, math.ceil(banned_until - now))
        if now < self._ban_until:
            retry = self._ban_retry_after
            if retry is None:
                retry = math.ceil(self._ban_until - now)
            return self._refuse(connection, 429, retry)
        if self._maintenance_depth > 0:
            return self._refuse(connection, 503, math.ceil(max(0.0, self._maintenance_until - now)))
        return None

    def _refuse(self, connection: ServerConnection, status: int, retry_after: int) -> Response:
        self._stats.refused += 1
        self._stats.refused_by_status[status] = self._stats.refused_by_status.get(status, 0) + 1
        self._truth.add({"k": "refused", "status": status, "ts_ns": self._ts() * 1000})
        phrase = http.HTTPStatus(status).phrase
        response = connection.respond(status, f"{phrase}\n")
        response.headers["Retry-After"] = str(max(0, retry_after))
        return response

    # ------------------------------------------------------------ connection

    async def _handler(self, ws: ServerConnection) -> None:
        assert isinstance(ws, _WsConnection)
        cid = self._conn_rng.randrange(2**60, 2**64)
        conn = _Conn(cid, ws, self._now())
        path = ws.request.path if ws.request is not None else ""
        conn.priv.auth = path.split("?", 1)[0].rstrip("/") == AUTH_PATH
        self._conns.add(conn)
        self._stats.connections += 1
        self._stats.open_connections += 1
        self._truth.add({"k": "conn_open", "conn": cid, "ts_ns": self._ts() * 1000})
        if self._stopping:
            self._abort(conn)
        self._send(conn, wire.status_message(cid, self._system))
        try:
            async with asyncio.TaskGroup() as tg:
                writer = tg.create_task(self._writer(conn))
                await self._reader(conn)
                writer.cancel()
        finally:
            self._drop_conn(conn)
            self._stats.open_connections -= 1
            self._truth.add(
                {
                    "k": "conn_close",
                    "conn": cid,
                    "ts_ns": self._ts() * 1000,
                    "how": conn.close_how or "client",
                }
            )

    def _drop_conn(self, conn: _Conn) -> None:
        self._conns.discard(conn)
        self._private.drop_conn(conn)
        for key in conn.subs:
            self._unregister(conn, key)
        conn.subs.clear()

    async def _reader(self, conn: _Conn) -> None:
        idle = self.config.idle_timeout_s
        while True:
            try:
                async with asyncio.timeout(idle if idle is not None else 3600.0):
                    msg = await conn.ws.recv()
            except TimeoutError:
                if idle is not None and not conn.muted and not conn.closing:
                    self._close(conn, self.config.idle_close_code, "idle timeout")
                continue
            except ConnectionClosed:
                return
            self._stats.client_messages += 1
            self._on_message(conn, msg)

    async def _writer(self, conn: _Conn) -> None:
        """Drain ``conn.queue`` in order; emit heartbeats when idle and subscribed."""
        ws = conn.ws
        hb = self.config.heartbeat_interval_s
        while True:
            if not conn.queue:
                conn.drained.set()
                conn.wake.clear()
                wait = hb - (self._now() - conn.last_sent)
                if wait <= 0:
                    if conn.subs and not conn.muted and not conn.closing:
                        if not await self._write(conn, wire.HEARTBEAT):
                            return
                        continue
                    wait = hb
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):
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
            if not await self._write(conn, item):
                return

    async def _write(self, conn: _Conn, text: str) -> bool:
        try:
            await conn.ws.send(text)
        except ConnectionClosed:
            return False
        conn.last_sent = self._now()
        self._stats.frames_sent += 1
        self._stats.bytes_sent += len(text)
        return True

    def _send(self, conn: _Conn, text: str) -> None:
        """Queue a frame for ``conn`` (dropped if the connection is closing or muted)."""
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

    def _send_data(self, conn: _Conn, symbol: str, text: str) -> None:
        if conn.stalled and (conn.stalled.get(symbol) or conn.stalled.get("*")):
            self._stats.frames_withheld += 1
            return
        self._send(conn, text)

    def _close(self, conn: _Conn, code: int, reason: str) -> None:
        if conn.closing:
            return
        conn.closing = True
        conn.queue.append(_CloseCmd(code, reason))
        conn.wake.set()

    def _abort(self, conn: _Conn) -> None:
        if conn.close_how is None:
            # a client that already sent its close frame closed the connection itself
            client_closed = conn.ws.protocol.close_rcvd is not None
            conn.close_how = "client" if client_closed else "abort"
        conn.closing = True
        conn.queue.clear()
        conn.drained.set()
        conn.wake.set()
        transport = conn.ws.transport
        if transport is not None:
            transport.abort()

    # -------------------------------------------------------------- requests

    def _on_message(self, conn: _Conn, msg: str | bytes) -> None:
        time_in = self._ts()
        try:
            text = msg.decode("utf-8") if isinstance(msg, bytes) else msg
            obj = json.loads(text, parse_float=Decimal)  # order numbers stay exact
        except (UnicodeDecodeError, ValueError, RecursionError):
            self._error(conn, None, None, "Malformed request: invalid JSON", time_in)
            return
        if not isinstance(obj, dict):
            self._error(conn, None, None, "Malformed request: expected a JSON object", time_in)
            return
        method = obj.get("method")
        req_id = obj.get("req_id")
        if "req_id" in obj and (not isinstance(req_id, int) or isinstance(req_id, bool)):
            self._error(
                conn,
                method if isinstance(method, str) else None,
                None,
                "Invalid req_id: must be an integer",
                time_in,
            )
            return
        if not isinstance(method, str):
            self._error(conn, None, req_id, "Malformed request: missing method", time_in)
            return
        if method == "ping":
            out: dict[str, Any] = {"method": "pong"}
            if req_id is not None:
                out["req_id"] = req_id
            out["time_in"] = rfc3339_us(time_in)
            out["time_out"] = rfc3339_us(self._ts())
            self._send(conn, wire.dumps(out))
        elif method in ("subscribe", "unsubscribe"):
            params = obj.get("params")
            if isinstance(params, dict) and params.get("channel") in PRIVATE_CHANNELS:
                self._private.on_subscription(conn, method, params, req_id, time_in)
            else:
                self._on_subscription(conn, method, params, req_id, time_in)
        elif method in ORDER_METHODS:
            self._private.on_method(conn, method, obj.get("params"), req_id, time_in)
        else:
            self._error(conn, method, req_id, f"Method not found: {method}", time_in)

    def _error(
        self,
        conn: _Conn,
        method: str | None,
        req_id: int | None,
        text: str,
        time_in: int,
        symbol: str | None = None,
    ) -> None:
        out: dict[str, Any] = {"error": text}
        if method is not None:
            out["method"] = method
        if req_id is not None:
            out["req_id"] = req_id
        out["success"] = False
        if symbol is not None:
            out["symbol"] = symbol
        out["time_in"] = rfc3339_us(time_in)
        out["time_out"] = rfc3339_us(self._ts())
        self._send(conn, wire.dumps(out))

    def _on_subscription(
        self, conn: _Conn, method: str, params: Any, req_id: int | None, time_in: int
    ) -> None:
        if not isinstance(params, dict):
            self._error(conn, method, req_id, "Malformed request: missing params", time_in)
            return
        channel = params.get("channel")
        if channel not in CHANNELS:
            self._error(conn, method, req_id, f"Channel not supported: {channel}", time_in)
            return
        snapshot = params.get("snapshot", channel != "trade")
        if not isinstance(snapshot, bool):
            self._error(conn, method, req_id, "Invalid snapshot: must be a boolean", time_in)
            return
        if channel == "instrument":
            self._sub_instrument(conn, method, req_id, time_in, snapshot)
            return
        symbols = params.get("symbol")
        if (
            not isinstance(symbols, list)
            or not symbols
            or not all(isinstance(s, str) for s in symbols)
        ):
            self._error(conn, method, req_id, "Malformed request: symbol must be a list", time_in)
            return
        depth = 0
        trigger = ""
        if channel == "book":
            depth = params.get("depth", 10)
            if not isinstance(depth, int) or isinstance(depth, bool) or depth not in BOOK_DEPTHS:
                self._error(conn, method, req_id, "Subscription depth not supported", time_in)
                return
        elif channel == "ticker":
            trigger = params.get("event_trigger", "trades")
            if trigger not in ("trades", "bbo"):
                self._error(conn, method, req_id, "Invalid event_trigger", time_in)
                return
        for sym in symbols:
            key: SubKey = (channel, sym, depth)
            if sym not in self._syms:
                self._error(
                    conn, method, req_id, f"Currency pair not supported {sym}", time_in, sym
                )
            elif method == "subscribe":
                if key in conn.subs:
                    self._error(conn, method, req_id, "Already subscribed", time_in, sym)
                    continue
                rejection = self._take_reject(sym)
                if rejection is not None:
                    self._error(conn, method, req_id, rejection, time_in, sym)
                    continue
                self._subscribe(conn, key, req_id, time_in, snapshot, trigger)
            else:
                if key not in conn.subs:
                    self._error(conn, method, req_id, "Subscription Not Found", time_in, sym)
                    continue
                self._unsubscribe(conn, key, req_id, time_in)

    def _take_reject(self, symbol: str) -> str | None:
        for rule in self._rejects:
            if rule.remaining > 0 and (rule.symbol is None or rule.symbol == symbol):
                rule.remaining -= 1
                if rule.remaining == 0:
                    self._rejects.remove(rule)
                return rule.error
        return None

    def _ack(
        self,
        conn: _Conn,
        method: str,
        result: dict[str, Any],
        req_id: int | None,
        time_in: int,
    ) -> int:
        time_out = self._ts()
        out: dict[str, Any] = {"method": method, "result": result, "success": True}
        out["time_in"] = rfc3339_us(time_in)
        out["time_out"] = rfc3339_us(time_out)
        if req_id is not None:
            out["req_id"] = req_id
        self._send(conn, wire.dumps(out))
        return time_out

    def _sub_instrument(
        self, conn: _Conn, method: str, req_id: int | None, time_in: int, snapshot: bool
    ) -> None:
        key: SubKey = ("instrument", "", 0)
        if method == "subscribe":
            if key in conn.subs:
                self._error(conn, method, req_id, "Already subscribed", time_in)
                return
            conn.subs.add(key)
            result = {
                "channel": "instrument",
                "snapshot": snapshot,
                "warnings": [INSTRUMENT_WARNING],
            }
        else:
            if key not in conn.subs:
                self._error(conn, method, req_id, "Subscription Not Found", time_in)
                return
            conn.subs.discard(key)
            result = {"channel": "instrument"}
        t = self._ack(conn, method, result, req_id, time_in)
        self._truth.add(
            {
                "k": "ack",
                "conn": conn.cid,
                "channel": "instrument",
                "symbol": None,
                "depth": None,
                "ts_ns": t * 1000,
            }
        )
        if method == "subscribe" and snapshot:
            self._send(conn, self._instrument_text)

    def _subscribe(
        self,
        conn: _Conn,
        key: SubKey,
        req_id: int | None,
        time_in: int,
        snapshot: bool,
        trigger: str,
    ) -> None:
        channel, sym, depth = key
        st = self._syms[sym]
        conn.subs.add(key)
        result: dict[str, Any] = {"channel": channel}
        if channel == "book":
            result["depth"] = depth
            if depth not in st.views:
                st.views[depth] = DepthView(st.market, depth)
            self._book_subs.setdefault((sym, depth), set()).add(conn)
        elif channel == "trade":
            self._trade_subs[sym].add(conn)
        else:
            result["event_trigger"] = trigger
            conn.ticker_trigger[sym] = trigger
            if trigger == "bbo" and not st.bbo_feed:
                st.bbo_feed = True
                st.last_bbo = st._bbo()
            self._ticker_subs.setdefault((sym, trigger), set()).add(conn)
        result["snapshot"] = snapshot
        result["symbol"] = sym
        t = self._ack(conn, "subscribe", result, req_id, time_in)
        self._truth.add(
            {
                "k": "ack",
                "conn": conn.cid,
                "channel": channel,
                "symbol": sym,
                "depth": depth if channel == "book" else None,
                "ts_ns": t * 1000,
            }
        )
        if not snapshot:
            return
        m = st.market
        if channel == "book":
            cs = m.checksum()
            text = wire.book_message(
                "snapshot",
                st.symbol_json,
                m.bids.iter_top(depth),
                m.asks.iter_top(depth),
                cs,
                st.last_book_ts,
                m.pp,
                m.qp,
            )
            self._send_data(conn, sym, text)
            self._truth.add(
                {
                    "k": "snapshot",
                    "conn": conn.cid,
                    "symbol": sym,
                    "depth": depth,
                    "ts_ns": st.last_book_ts * 1000,
                    "checksum": cs,
                }
            )
        elif channel == "trade":
            self._send_data(conn, sym, wire.trade_message("snapshot", list(st.trades)))
        else:
            ts = st.last_bbo_ts if trigger == "bbo" else st.last_ticker_ts
            self._send_data(
                conn, sym, wire.ticker_message("snapshot", st.symbol_json, m, st.ticker, ts)
            )

    def _unsubscribe(self, conn: _Conn, key: SubKey, req_id: int | None, time_in: int) -> None:
        channel, sym, depth = key
        result: dict[str, Any] = {"channel": channel}
        if channel == "book":
            result["depth"] = depth
        elif channel == "ticker":
            result["event_trigger"] = conn.ticker_trigger.get(sym, "trades")
        result["symbol"] = sym
        self._unregister(conn, key)
        conn.subs.discard(key)
        t = self._ack(conn, "unsubscribe", result, req_id, time_in)
        self._truth.add(
            {
                "k": "ack",
                "conn": conn.cid,
                "channel": channel,
                "symbol": sym,
                "depth": depth if channel == "book" else None,
                "ts_ns": t * 1000,
            }
        )

    def _unregister(self, conn: _Conn, key: SubKey) -> None:
        channel, sym, depth = key
        if channel == "book":
            self._book_subs.get((sym, depth), set()).discard(conn)
        elif channel == "trade":
            self._trade_subs[sym].discard(conn)
        elif channel == "ticker":
            trigger = conn.ticker_trigger.pop(sym, "trades")
            self._ticker_subs.get((sym, trigger), set()).discard(conn)

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
        m = st.market
        pre: dict[int, _Levels] | None = None
        if st.drops and st.drops[0] and st.held is None:
            # a detectable drop is pending: remember what clients hold before this change
            pre = {d: (dict(m.bids.top(d)), dict(m.asks.top(d))) for d in st.views}
        change: MarketChange = m.tick()
        self._stats.ticks += 1
        if change.fills:
            items: list[str] = []
            for fill in change.fills:
                ts = self._ts()
                tid = m.next_trade_id
                m.next_trade_id += 1
                st.ticker.add(fill)
                item = wire.trade_item(st.symbol_json, fill, tid, ts, m.pp, m.qp)
                st.trades.append(item)
                items.append(item)
                self._stats.trades += 1
                self._truth.add(
                    {
                        "k": "trade",
                        "symbol": sym,
                        "ts_ns": ts * 1000,
                        "trade_id": tid,
                        "price": fmt_fixed(fill.price, m.pp),
                        "qty": fmt_fixed(fill.qty, m.qp),
                        "side": fill.side,
                    }
                )
            text = wire.trade_message("update", items)
            for conn in self._trade_subs[sym]:
                self._send_data(conn, sym, text)
            # private resting orders fill as maker against the printed trades
            self._private.on_public_trades(sym, [(f.side, f.price, f.qty) for f in change.fills])
        ts_book = self._ts()
        st.last_book_ts = ts_book
        updates = []
        for depth, view in st.views.items():
            bids, asks = view.diff(m, change)
            if bids or asks:
                updates.append((depth, bids, asks))
        cs = m.checksum() if updates else st.last_checksum
        if updates:
            self._publish_book(sym, st, updates, cs, ts_book, pre)
        st.last_checksum = cs
        if change.fills:
            ts = self._ts()
            st.last_ticker_ts = ts
            self._truth.add({"k": "ticker", "symbol": sym, "ts_ns": ts * 1000})
            subs = self._ticker_subs.get((sym, "trades"))
            if subs:
                text = wire.ticker_message("update", st.symbol_json, m, st.ticker, ts)
                for conn in subs:
                    self._send_data(conn, sym, text)
        if st.bbo_feed:
            bbo = st._bbo()
            if bbo != st.last_bbo:
                st.last_bbo = bbo
                ts = self._ts()
                st.last_bbo_ts = ts
                self._truth.add({"k": "ticker_bbo", "symbol": sym, "ts_ns": ts * 1000})
                subs = self._ticker_subs.get((sym, "bbo"))
                if subs:
                    text = wire.ticker_message("update", st.symbol_json, m, st.ticker, ts)
                    for conn in subs:
                        self._send_data(conn, sym, text)

    def _publish_book(
        self,
        sym: str,
        st: _SymbolState,
        updates: list[tuple[int, list[tuple[int, int]], list[tuple[int, int]]]],
        cs: int,
        ts: int,
        pre: dict[int, _Levels] | None,
    ) -> None:
        """Record one market change's feed updates in truth and send them (or not).

        ``drop_update`` with ``detectable`` (the default) holds the first update
        that changes the top 10, and at the next update checks, per subscribed
        feed, that a client which missed it gets a checksum mismatch. Only then
        is the drop final; otherwise the held update is sent late (in order,
        one tick late) and the drop is tried again on a later update. Kraken
        levels are absolute values, so a lost update can be healed by the next
        one touching the same levels; such a drop would be a loss no client
        could notice (protocols.md §1.7: the checksum is the only gap signal).
        """
        m = st.market
        corrupt = st.corrupt_pending > 0
        if corrupt:
            st.corrupt_pending -= 1
        wire_cs = (cs ^ 0x5A5A5A5A) if corrupt else cs
        texts: list[tuple[int, str]] = []
        for depth, bids, asks in updates:
            self._stats.book_updates += 1
            self._truth.add(
                {"k": "book", "symbol": sym, "depth": depth, "ts_ns": ts * 1000, "checksum": cs}
            )
            texts.append(
                (
                    depth,
                    wire.book_message(
                        "update", st.symbol_json, bids, asks, wire_cs, ts, m.pp, m.qp
                    ),
                )
            )
        if st.held is not None:
            if self._drop_detected(sym, st, updates, cs):
                self._stats.frames_withheld += sum(
                    len(self._book_subs.get((sym, d), ())) for d, _ in st.held
                )
                st.drops.popleft()
            else:
                self._send_book(sym, st.held)
            st.held = None
            st.shadow = {}
        elif st.drops:
            if not st.drops[0]:  # not required to be detectable: drop this one
                st.drops.popleft()
                self._stats.frames_withheld += sum(
                    len(self._book_subs.get((sym, d), ())) for d, _ in texts
                )
                return
            if pre is not None and cs != st.last_checksum:
                st.held = texts
                st.shadow = pre
                return
        self._send_book(sym, texts)

    def _send_book(self, sym: str, texts: list[tuple[int, str]]) -> None:
        for depth, text in texts:
            for conn in self._book_subs.get((sym, depth), ()):
                self._send_data(conn, sym, text)

    def _drop_detected(
        self,
        sym: str,
        st: _SymbolState,
        updates: list[tuple[int, list[tuple[int, int]], list[tuple[int, int]]]],
        cs: int,
    ) -> bool:
        """Would every subscribed feed's client see a checksum mismatch at this update?"""
        by_depth = {d: (b, a) for d, b, a in updates}
        for depth, (held_bids, held_asks) in st.shadow.items():
            if not self._book_subs.get((sym, depth)):
                continue
            if depth not in by_depth:
                return False
            upd_bids, upd_asks = by_depth[depth]
            bids, asks = dict(held_bids), dict(held_asks)
            for side, levels in ((bids, upd_bids), (asks, upd_asks)):
                for p, q in levels:
                    if q == 0:
                        side.pop(p, None)
                    else:
                        side[p] = q
            top_b = sorted(bids.items(), reverse=True)[:10]
            top_a = sorted(asks.items())[:10]
            if checksum_scaled(top_a, top_b) == cs:
                return False
        return True

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

    def _set_system(self, system: str) -> None:
        self._system = system
        for conn in list(self._conns):
            self._send(conn, wire.status_message(conn.cid, system))

    def _pick_symbol(self, symbol: Any) -> str:
        if symbol is None:
            return self._fault_rng.choice(list(self._syms))
        if symbol not in self._syms:
            raise ValueError(f"fault symbol {symbol!r} is not simulated")
        return str(symbol)

    def _inject(self, fault: Fault) -> None:
        if self._tg is None:
            raise RuntimeError("the simulator is not running (use 'async with sim:')")
        p = fault.resolved()
        kind = fault.kind
        if kind not in KRAKEN_FAULT_KINDS:
            raise ValueError(f"fault kind {kind!r} is not supported by the Kraken simulator")
        conns = list(self._conns)
        if kind in ("drop_update", "corrupt_checksum"):
            p["symbol"] = self._pick_symbol(p["symbol"])
        if kind == "data_stall" and p["symbols"] is not None:
            p["symbols"] = [self._pick_symbol(s) for s in p["symbols"]]
        if kind == "reject_subscriptions" and p["symbol"] is not None:
            p["symbol"] = self._pick_symbol(p["symbol"])
        self._stats.faults_injected[kind] = self._stats.faults_injected.get(kind, 0) + 1
        self._truth.add({"k": "fault", "kind": kind, "ts_ns": self._ts() * 1000, "params": p})
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
            if p["duration_s"] is not None:
                self._spawn(self._end_stall(conns, float(p["duration_s"])))
        elif kind == "data_stall":
            symbols: list[str] = p["symbols"] if p["symbols"] is not None else ["*"]
            for c in conns:
                for s in symbols:
                    c.stalled[s] = c.stalled.get(s, 0) + 1
            self._spawn(self._end_data_stall(conns, symbols, float(p["duration_s"])))
        elif kind == "maintenance":
            self._set_system("maintenance")
            self._maintenance_depth += 1
            self._maintenance_until = max(
                self._maintenance_until, self._now() + float(p["duration_s"])
            )
            self._spawn(self._maintenance(p))
        elif kind == "status":
            self._set_system(str(p["system"]))
        elif kind == "reject_subscriptions":
            self._rejects.append(_Reject(int(p["count"]), str(p["error"]), p["symbol"]))
            if p["then_close"]:
                for c in conns:
                    self._close(c, 1000, "")
        elif kind == "ban":
            self._ban_until = max(self._ban_until, self._now() + float(p["duration_s"]))
            ra = p["retry_after_s"]
            self._ban_retry_after = None if ra is None else math.ceil(float(ra))
            for c in conns:
                self._abort(c)
        elif kind == "drop_update":
            self._syms[p["symbol"]].drops.append(bool(p["detectable"]))
        elif kind == "corrupt_checksum":
            self._syms[p["symbol"]].corrupt_pending += 1
        elif kind == "burst":
            factor = float(p["factor"])
            self._bursts.append(factor)
            self._spawn(self._end_burst(factor, float(p["duration_s"])))
        elif kind == "malformed":
            self._malformed(conns, str(p["variant"]), int(p["size_bytes"]))
        elif kind == "token_expiry":
            self._private.fault_token_expiry(bool(p.get("then_close", True)))
        elif kind == "private_sequence_jump":
            self._private.fault_sequence_jump(str(p["channel"]))
        elif kind == "fill_while_disconnected":
            self._private.fault_fill_while_disconnected(float(p["fraction"]), int(p["cancel_some"]))
        else:  # pragma: no cover - Fault validates kinds
            raise ValueError(f"unknown fault kind {kind!r}")

    async def _end_stall(self, conns: list[_Conn], duration: float) -> None:
        await asyncio.sleep(duration)
        for c in conns:
            if c in self._conns:
                self._abort(c)

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
                self._close(c, cfg.maintenance_close_code, "maintenance")
            await asyncio.sleep(duration - delay)
        finally:
            self._maintenance_depth -= 1
        if self._maintenance_depth > 0:
            return  # an overlapping maintenance owns the rest of the sequence
        cancel_only = float(p["cancel_only_s"])
        if cancel_only > 0:
            self._set_system("cancel_only")
            await asyncio.sleep(cancel_only)
            if self._maintenance_depth > 0:
                return
        self._set_system(str(p["after_status"]))

    def _malformed(self, conns: list[_Conn], variant: str, size: int) -> None:
        if variant == "invalid_json":
            sym = json.dumps(self.config.symbols[0])
            text = f'{{"channel":"book","type":"update","data":[{{"symbol":{sym},"bids":[{{"price":'
            for c in conns:
                self._send(c, text)
        elif variant == "wrong_types":
            for c in conns:
                sym = next((k[1] for k in c.subs if k[0] == "book"), self.config.symbols[0])
                obj = {
                    "channel": "book",
                    "type": "update",
                    "data": [
                        {
                            "symbol": sym,
                            "bids": [{"price": "abc", "qty": {"x": 1}}],
                            "asks": [{"price": [1], "qty": None}],
                            "checksum": "zero",
                            "timestamp": 12,
                        }
                    ],
                }
                self._send(c, wire.dumps(obj))
        elif variant == "huge":
            head = '{"channel":"noise","type":"update","data":["'
            tail = '"]}'
            text = head + "x" * max(0, size - len(head) - len(tail)) + tail
            for c in conns:
                self._send(c, text)
        else:  # deep
            text = "[" * 10_000 + "]" * 10_000
            for c in conns:
                self._send(c, text)
