"""The benchmark server: pre-generated traffic over real loopback sockets (bench/HARNESS.md).

``python -m bench.server --traffic FILE --mode throughput|latency|recovery [--rate R]
[--drop-after N] [--outage-s S] [--tls --cert C --key K] [--report PATH] [--settle-s 0.5]
[--expect-subscriptions N] [--protocols P,..] [--port 0]`` loads a traffic file
(:mod:`bench.traffic`), pre-encodes every message as a complete WebSocket frame, listens on
``127.0.0.1`` and prints ``READY <port>``. ``python -m bench.server --make-cert DIR`` writes
a self-signed certificate for ``127.0.0.1``/``localhost`` (``cert.pem``, ``key.pem``;
clients trust ``cert.pem``) and prints their paths as JSON.

One asyncio process, one port, every venue (the traffic's venue answers; others are 404):

==========  ===========================================  ======================================
protocol    WebSocket                                    REST
==========  ===========================================  ======================================
Kraken v2   ``/kraken/v2``                               ``/kraken/0/public/{AssetPairs,Assets,
Kraken v1   ``/kraken/v1``                               Time,SystemStatus}``
Binance     ``/binance/stream?streams=a/b``,             ``/binance/api/v3/{depth,exchangeInfo,
            ``/binance/stream``, ``/binance/ws``,        ping,time}``
            ``/binance/ws/<stream>``
KuCoin      ``/kucoin/ws?token=..&connectId=..`` (the    ``/kucoin/api/v1/bullet-public`` (POST),
            endpoint ``bullet-public`` returns)          ``/kucoin/api/v1/market/orderbook/
                                                         level2_{20,100}``, ``/kucoin/api/v3/
                                                         market/orderbook/level2``, ``/kucoin/
                                                         api/v{1,2}/symbols``, ``/kucoin/api/
                                                         v{1,3}/currencies``, ``/kucoin/api/v1/
                                                         {timestamp,status,market/allTickers}``
==========  ===========================================  ======================================

Binance streams are ``<sym>@depth@100ms`` / ``<sym>@depth`` and ``<sym>@trade`` /
``<sym>@aggTrade`` (cryptofeed's trade stream: every trade as an ``aggTrade`` event of that
one trade, same count and order; one connection gets one kind of trade stream). KuCoin
topics may have spaces around the symbol names (``/market/level2: BTC-USDT,ETH-USDT``, as
cryptofeed writes them).

Server frames are written straight to the connection's transport (a pre-built RFC 6455
header + payload per message, whole frames per write), never through ``ws.send``; the
websockets library only does the handshake, reads client frames and answers control
frames. Modes (HARNESS.md "Server"):

* ``throughput``: once every (symbol, channel) of the workload is subscribed on some
  connection (or ``--expect-subscriptions`` of them) and ``--settle-s`` passed, each
  connection gets all its frames (the symbols it subscribed, in traffic order) in large
  writes with flow control.
* ``latency``: the same start; messages paced at ``--rate`` per second on an absolute
  schedule, sent in 1 ms batches; the send time of each is reported.
* ``recovery``: paced; after ``--drop-after`` updates every client connection is aborted
  (no close frame). The market keeps moving at the pace (messages with no subscriber are
  *missed*), new connections are refused for ``--outage-s``, and the next subscription gets
  a snapshot of the current book (REST snapshots too), then the rest of the messages.

Snapshots: Kraken snapshots and Binance/KuCoin REST snapshots show the initial book in
throughput and latency modes (clients subscribe before the messages start, so the initial
book is always consistent with what they buffer), the current book in recovery mode.

The report (``--report``) is written when the run is over (every message sent and every
WebSocket client gone) or on SIGTERM/SIGINT; the server then exits.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import email.utils
import http
import json
import logging
import os
import secrets
import signal
import ssl
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.protocol import State

from bench import kraken_v1
from bench import traffic as T
from gapless.sim import binance_wire as bw
from gapless.sim import kucoin_wire as kw
from gapless.sim import wire as kraken_wire
from gapless.sim.numbers import fmt_fixed, rfc3339_us

__all__ = ["BenchServer", "binance_agg_trade_event", "main", "make_self_signed", "ws_frame"]

MODES = ("throughput", "latency", "recovery")
KRAKEN_DEPTHS = (10, 25, 100, 500, 1000)
CHUNK_BYTES = 1 << 19  # throughput writes: whole frames, about 512 KiB per write
WRITE_HIGH = 4 << 20  # transport write-buffer limits while blasting
WRITE_LOW = 1 << 20
HEARTBEAT_S = 1.0
WARMUP_TIMEOUT_S = 180.0  # the slowest peer paces 50 snapshots over tens of seconds
WARMUP_SETTLE_S = 0.5  # the client applies its snapshots and buffered updates
# warm-up book messages per book: ccxt (KuCoin snapshotDelay) asks for a book's REST
# snapshot only once it has cached 5 of its deltas; with one each, it would never ask
WARMUP_UPDATES_PER_BOOK = 8
MAX_ERRORS = 1000
KUCOIN_PING_INTERVAL_MS = 18_000
KUCOIN_PING_TIMEOUT_MS = 10_000


def ws_frame(payload: bytes) -> bytes:
    """An unmasked, final RFC 6455 text frame (server to client) carrying ``payload``."""
    n = len(payload)
    if n < 126:
        return bytes((0x81, n)) + payload
    if n < 1 << 16:
        return bytes((0x81, 126)) + n.to_bytes(2, "big") + payload
    return bytes((0x81, 127)) + n.to_bytes(8, "big") + payload


def binance_agg_trade_event(symbol: str, t: T.TradeEvent, pp: int, qp: int) -> str:
    """One trade as a Binance ``aggTrade`` event (an aggregate of just that trade: ``a``,
    ``f`` and ``l`` are its trade id); ``E``, ``T``, ``p``, ``q`` and ``m`` as in the trade's
    ``trade`` event (``m``: the buyer is the maker, i.e. the taker sold)."""
    ms = t.ts_us // 1000
    m = "false" if t.taker_buy else "true"
    tid = t.trade_id
    return (
        f'{{"e":"aggTrade","E":{ms},"s":"{symbol}","a":{tid},"p":"{bw.num(t.price, pp)}",'
        f'"q":"{bw.num(t.qty, qp)}","f":{tid},"l":{tid},"T":{ms},"m":{m},"M":true}}'
    )


def _now_us() -> int:
    return time.time_ns() // 1000


def make_self_signed(directory: str | Path) -> tuple[str, str]:
    """Write a self-signed certificate for ``127.0.0.1`` and ``localhost`` into
    ``directory`` (``cert.pem``, ``key.pem``) and return their paths. The certificate is
    its own CA: a client trusts it by loading ``cert.pem`` as its CA file."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gapless bench 127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    import ipaddress

    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(ski, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    cert_path = d / "cert.pem"
    key_path = d / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    os.chmod(key_path, 0o600)
    return str(cert_path), str(key_path)


# --------------------------------------------------------------------------- connections


class Conn:
    """One WebSocket client connection."""

    __slots__ = (
        "blasting",
        "cid",
        "combined",
        "connect_id",
        "depth_suffix",
        "last_write",
        "proto",
        "subs",
        "trade_suffix",
        "transport",
        "ws",
    )

    def __init__(self, cid: int, ws: ServerConnection, proto: str) -> None:
        self.cid = cid
        self.ws = ws
        self.proto = proto
        self.transport = ws.transport
        self.subs: set[tuple[int, int]] = set()
        self.combined = True  # Binance: wrap events as {"stream":..,"data":..}
        self.depth_suffix = "@depth@100ms"
        self.trade_suffix = "@trade"  # Binance: "@trade" or "@aggTrade" (cryptofeed)
        self.connect_id = ""
        self.last_write = time.monotonic()
        self.blasting = False

    @property
    def open(self) -> bool:
        return self.ws.state is State.OPEN and not self.transport.is_closing()

    def write(self, data: bytes) -> bool:
        """Write whole frames; False (nothing written) once the connection is going away."""
        if not self.open:
            return False
        self.transport.write(data)
        self.last_write = time.monotonic()
        return True

    def send(self, text: str) -> bool:
        return self.write(ws_frame(text.encode()))


class _Upgrade:
    """What ``process_request`` learnt about a WebSocket request, for the handler."""

    __slots__ = ("combined", "connect_id", "proto", "streams")

    def __init__(self, proto: str) -> None:
        self.proto = proto
        self.streams: list[str] = []
        self.combined = True
        self.connect_id = ""


# --------------------------------------------------------------------------- server


class BenchServer:
    """Serves one :class:`bench.traffic.Traffic` (see the module docstring)."""

    def __init__(
        self,
        traffic: T.Traffic,
        mode: str = "throughput",
        *,
        rate: float = 1000.0,
        drop_after: int | None = None,
        outage_s: float = 0.0,
        settle_s: float = 0.5,
        expect_subscriptions: int | None = None,
        await_snapshots: bool = False,
        report_path: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
        protocols: Sequence[str] | None = None,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}")
        if mode != "throughput" and not rate > 0:
            raise ValueError("--rate must be > 0 in latency and recovery modes")
        self.traffic = traffic
        self.mode = mode
        self.rate = rate
        self.outage_s = outage_s
        self.settle_s = settle_s
        # Binance/KuCoin books need a REST snapshot after their first update: with
        # ``await_snapshots`` the run starts once every book was served one (warm-up)
        self.await_snapshots = await_snapshots
        self.warmup_messages = 0
        self.warmup_s: float | None = None
        self._snapped: set[int] = set()
        self._snap_evt = asyncio.Event()
        self.report_path = report_path
        self.ssl_context = ssl_context
        self.protocols = tuple(protocols) if protocols else traffic.protocols
        for p in self.protocols:
            if p not in traffic.protocols:
                raise ValueError(f"{traffic.workload} is {traffic.venue} traffic: no {p}")
        self.port = 0
        self._server: Server | None = None
        # traffic, routing, frames
        self._msg_sym, self._msg_idx = traffic.message_routes()
        self._order = traffic.order
        self._frames: dict[str, list[bytes]] = {}
        # Binance: raw payloads, then frames per (combined, kind, stream suffix) for the
        # messages of one kind, then whole per-connection variants (combined, depth, trade)
        self._binance_raw: list[bytes] | None = None
        self._binance_parts: dict[tuple[bool, int, str], list[bytes]] = {}
        self._binance_variants: dict[tuple[bool, str, str], list[bytes]] = {}
        self._index = {p: traffic.symbol_index(p) for p in traffic.protocols}
        self._binance_lower = {p.symbol.lower(): i for i, p in enumerate(traffic.pairs)}
        n = len(traffic.pairs)
        required = {(i, T.BOOK) for i in range(n)}
        if traffic.trades:
            required |= {(t.sym, T.TRADE) for t in traffic.trade_events}
        self._required = required
        self._expect = min(expect_subscriptions or len(required), len(required))
        self.drop_after: int | None = None
        if mode == "recovery":
            self.drop_after = drop_after if drop_after is not None else traffic.updates // 2
        # market state (recovery mode: the current book; otherwise the initial one)
        self._states = traffic.initial_states() if mode == "recovery" else None
        self._last_ts = [s.ts_us for s in traffic.snapshots]
        self._last_id = [s.seq for s in traffic.snapshots]
        # connections and subscriptions
        self._upgrades: dict[ServerConnection, _Upgrade] = {}
        self._conns: set[Conn] = set()
        self._subs: dict[tuple[int, int], list[Conn]] = {}
        self._next_cid = 1
        self._kucoin_tokens: set[str] = set()
        # run state
        self._start_evt = asyncio.Event()
        self._done = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None
        self._hb_task: asyncio.Task[None] | None = None
        self._run_complete = False
        self._started = False
        self._stopping = False
        self._dropped = False
        self._outage_until = 0.0
        self._resnap_pending: set[int] = set()
        # report
        self.start_mono_ns: int | None = None
        self.end_mono_ns: int | None = None
        self.updates_sent = 0
        self.trades_sent = 0
        self.send_mono_ns: list[int] = []
        self.errors: list[dict[str, Any]] = []
        self.errors_total = 0
        self.notes: list[str] = []
        self.drop: dict[str, Any] = {}
        self.connections = 0
        self.rest_requests = 0
        self.subscriptions = 0
        self.report_written = False
        self._protocols_seen: set[str] = set()

    # ----------------------------------------------------------------- frames

    def _encode_protocol(self, protocol: str) -> list[bytes]:
        frames = self._frames.get(protocol)
        if frames is None:
            if protocol == "binance":
                frames = self._binance_frames(True, "@depth@100ms", "@trade")
            else:
                frames = [ws_frame(p) for p in T.encode(self.traffic, protocol)]
            self._frames[protocol] = frames
        return frames

    def _binance_part(self, combined: bool, kind: int, suffix: str) -> list[bytes]:
        """The frames of every Binance message of one kind (in send order) as served on
        ``<sym><suffix>`` streams: wrapped as ``{"stream":..,"data":..}`` when ``combined``.
        ``@aggTrade`` trades are the same trades as ``aggTrade`` events, one trade each."""
        key = (combined, kind, suffix)
        part = self._binance_parts.get(key)
        if part is not None:
            return part
        if self._binance_raw is None:
            self._binance_raw = T.encode(self.traffic, "binance")
        order = self._order
        if kind == T.TRADE and suffix == "@aggTrade":
            pairs = self.traffic.pairs
            payloads = [
                binance_agg_trade_event(
                    pairs[t.sym].symbol, t, pairs[t.sym].price_precision, pairs[t.sym].qty_precision
                ).encode()
                for t in self.traffic.trade_events
            ]
        else:
            payloads = [p for k, p in enumerate(self._binance_raw) if order[k] == kind]
        if not combined:
            part = [ws_frame(p) for p in payloads]
        else:
            lowers = [p.symbol.lower().encode() for p in self.traffic.pairs]
            tail = suffix.encode() + b'","data":'
            syms = [self._msg_sym[k] for k in range(len(order)) if order[k] == kind]
            part = [
                ws_frame(b'{"stream":"' + lowers[sym] + tail + payload + b"}")
                for sym, payload in zip(syms, payloads, strict=True)
            ]
        self._binance_parts[key] = part
        return part

    def _binance_frames(self, combined: bool, depth_suffix: str, trade_suffix: str) -> list[bytes]:
        """Every Binance message as one connection gets it (frames shared between variants)."""
        key = (combined, depth_suffix, trade_suffix)
        frames = self._binance_variants.get(key)
        if frames is not None:
            return frames
        books = iter(self._binance_part(combined, T.BOOK, depth_suffix))
        trades = iter(self._binance_part(combined, T.TRADE, trade_suffix))
        frames = [next(books) if kind == T.BOOK else next(trades) for kind in self._order]
        self._binance_variants[key] = frames
        return frames

    def _conn_frames(self, conn: Conn) -> list[bytes]:
        if conn.proto == "binance":
            return self._binance_frames(conn.combined, conn.depth_suffix, conn.trade_suffix)
        return self._encode_protocol(conn.proto)

    def prepare(self) -> None:
        """Pre-encode every frame of the served protocols (done before listening): for
        Binance also the ``@aggTrade`` frames of the trades (cryptofeed's trade stream)."""
        for p in self.protocols:
            self._encode_protocol(p)
        if "binance" in self.protocols and self.traffic.trades:
            self._binance_frames(True, "@depth@100ms", "@aggTrade")

    # ------------------------------------------------------------- lifecycle

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        self.prepare()
        ws_logger = logging.getLogger("bench.server.websockets")
        ws_logger.setLevel(logging.CRITICAL)
        self._server = await serve(
            self._handler,
            host,
            port,
            ssl=self.ssl_context,
            process_request=self._process_request,
            compression=None,
            ping_interval=None,
            close_timeout=2.0,
            max_size=1 << 22,
            logger=ws_logger,
        )
        self.port = int(self._server.sockets[0].getsockname()[1])
        self._runner = asyncio.create_task(self._run())
        self._hb_task = asyncio.create_task(self._heartbeats())
        return self.port

    @property
    def run_complete(self) -> bool:
        """Every message of the run was sent (or missed)."""
        return self._run_complete

    @property
    def connections_open(self) -> int:
        return len(self._conns)

    async def wait_done(self) -> None:
        await self._done.wait()

    def request_stop(self) -> None:
        """SIGTERM: end now (the report says what was sent so far)."""
        if not self._done.is_set():
            self.notes.append("stopped by signal")
            self._done.set()

    async def close(self) -> None:
        self._stopping = True
        for task in (self._runner, self._hb_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        for conn in list(self._conns):
            with contextlib.suppress(Exception):
                conn.transport.abort()
        if self._server is not None:
            self._server.close(close_connections=False)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)

    def _maybe_finish(self) -> None:
        if self._run_complete and not self._conns and not self._done.is_set():
            self._done.set()

    # ----------------------------------------------------------------- report

    def report(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "workload": self.traffic.workload,
            "venue": self.traffic.venue,
            "mode": self.mode,
            "tls": self.ssl_context is not None,
            "rate": self.rate if self.mode != "throughput" else None,
            "settle_s": self.settle_s,
            "warmup_messages": self.warmup_messages,
            "warmup_s": self.warmup_s,
            "start_mono_ns": self.start_mono_ns,
            "end_mono_ns": self.end_mono_ns,
            "updates_sent": self.updates_sent,
            "trades_sent": self.trades_sent,
            "updates_total": self.traffic.updates,
            "trades_total": self.traffic.trades,
            "complete": self._run_complete,
            "connections": self.connections,
            "subscriptions": self.subscriptions,
            "rest_requests": self.rest_requests,
            "protocols_seen": sorted(self._protocols_seen),
            "errors": self.errors,
            "errors_total": self.errors_total,
            "notes": self.notes,
        }
        if self.mode != "throughput":
            out["send_mono_ns"] = self.send_mono_ns
        if self.mode == "recovery":
            out["drop"] = dict(self.drop)
        return out

    def write_report(self) -> None:
        if self.report_path is None or self.report_written:
            return
        self.report_written = True
        tmp = f"{self.report_path}.tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(self.report(), fh)
        os.replace(tmp, self.report_path)

    def _note(self, text: str) -> None:
        if text not in self.notes and len(self.notes) < MAX_ERRORS:
            self.notes.append(text)

    def _error(self, proto: str, conn: Conn | None, request: str, error: str) -> None:
        """Something a client sent that the server did not understand (HARNESS.md)."""
        self.errors_total += 1
        if len(self.errors) < MAX_ERRORS:
            self.errors.append(
                {
                    "protocol": proto,
                    "conn": conn.cid if conn is not None else None,
                    "request": request[:500],
                    "error": error,
                    "mono_ns": time.monotonic_ns(),
                }
            )

    # -------------------------------------------------------- subscriptions

    def _subscribe(self, conn: Conn, key: tuple[int, int]) -> None:
        conn.subs.add(key)
        self.subscriptions += 1
        subs = self._subs.setdefault(key, [])
        if conn not in subs:
            subs.append(conn)
        if self._started and self.mode == "throughput" and not self._run_complete:
            self._note("a subscription after the throughput run started gets no frames")
        self._check_start()

    def _unsubscribe(self, conn: Conn, key: tuple[int, int]) -> None:
        conn.subs.discard(key)
        subs = self._subs.get(key)
        if subs is not None and conn in subs:
            subs.remove(conn)
            if not subs:
                del self._subs[key]

    def _check_start(self) -> None:
        if self._start_evt.is_set():
            return
        covered = sum(1 for key in self._required if key in self._subs)
        if covered >= self._expect:
            self._start_evt.set()

    def _drop_conn(self, conn: Conn) -> None:
        self._conns.discard(conn)
        for key in list(conn.subs):
            self._unsubscribe(conn, key)
        self._maybe_finish()

    # ---------------------------------------------------------------- runs

    async def _run(self) -> None:
        await self._start_evt.wait()
        if self.settle_s > 0:
            await asyncio.sleep(self.settle_s)
        self._started = True
        try:
            first = await self._warm_up() if self.await_snapshots else 0
            if self.mode == "throughput":
                await self._run_throughput(first)
            else:
                await self._run_paced(first)
        finally:
            self.end_mono_ns = time.monotonic_ns()
            self._run_complete = True
            self._maybe_finish()

    async def _warm_up(self) -> int:
        """Send messages until every book had ``WARMUP_UPDATES_PER_BOOK`` updates, wait (up to
        ``WARMUP_TIMEOUT_S``) until every book was served its REST snapshot, let the
        client settle, and return where the measured run starts. The warm-up
        messages are not counted in ``updates_sent``/``trades_sent`` nor timed in
        ``send_mono_ns`` (``warmup_messages`` says how many the client got first)."""
        order = self._order
        per_book: dict[int, int] = {}
        done = 0
        k = 0
        n = len(self.traffic.pairs)
        while k < len(order) and done < n:
            if order[k] == T.BOOK:
                sym = self._msg_sym[k]
                per_book[sym] = c = per_book.get(sym, 0) + 1
                done += c == WARMUP_UPDATES_PER_BOOK
            k += 1
        t0 = time.monotonic()
        self._send_range(0, k)
        self.warmup_messages = self.updates_sent + self.trades_sent
        self.updates_sent = self.trades_sent = 0
        self.send_mono_ns.clear()
        try:
            await asyncio.wait_for(self._snap_evt.wait(), WARMUP_TIMEOUT_S)
        except TimeoutError:
            self._note(f"warm-up: {len(self._snapped)} of {n} books fetched a snapshot")
        self.warmup_s = round(time.monotonic() - t0, 3)
        await asyncio.sleep(WARMUP_SETTLE_S)
        return k

    def _route(self, k: int) -> list[Conn] | None:
        return self._subs.get((self._msg_sym[k], self._order[k]))

    async def _run_throughput(self, first: int = 0) -> None:
        per_conn: dict[Conn, list[bytes]] = {}
        frames_of: dict[Conn, list[bytes]] = {}
        order = self._order
        ups = trs = 0
        for k in range(first, len(order)):
            conns = self._route(k)
            if not conns:
                continue
            if order[k] == T.BOOK:
                ups += 1
            else:
                trs += 1
            for c in conns:
                out = per_conn.get(c)
                if out is None:
                    out = per_conn[c] = []
                    frames_of[c] = self._conn_frames(c)
                out.append(frames_of[c][k])
        chunks = {c: _chunks(frames) for c, frames in per_conn.items()}
        del per_conn
        self.updates_sent = ups
        self.trades_sent = trs
        self.start_mono_ns = time.monotonic_ns()
        results = await asyncio.gather(
            *(self._write_all(c, ch) for c, ch in chunks.items()), return_exceptions=True
        )
        for c, res in zip(chunks, results, strict=True):
            if res is not True:
                self._note(f"conn {c.cid} went away during the throughput run")

    async def _write_all(self, conn: Conn, chunks: list[bytes]) -> bool:
        """Write ``chunks`` with flow control, then wait until the kernel has them all."""
        tr = conn.transport
        conn.blasting = True
        try:
            tr.set_write_buffer_limits(high=WRITE_HIGH, low=WRITE_LOW)
            for chunk in chunks:
                if not conn.write(chunk):
                    return False
                if tr.get_write_buffer_size() > WRITE_HIGH:
                    await conn.ws.drain()
            if not conn.open:
                return False
            tr.set_write_buffer_limits(high=0, low=0)
            await conn.ws.drain()
            return conn.open
        except (ConnectionError, OSError):
            return False
        finally:
            conn.blasting = False
            with contextlib.suppress(Exception):
                if not tr.is_closing():
                    tr.set_write_buffer_limits(high=WRITE_HIGH, low=WRITE_LOW)

    async def _run_paced(self, first: int = 0) -> None:
        rate = self.rate
        total = len(self._order)
        t0 = time.monotonic()
        self.start_mono_ns = time.monotonic_ns()
        k = first
        while k < total:
            now = time.monotonic()
            due = min(total, first + int((now - t0) * rate) + 1)
            if due > k:
                k = self._send_range(k, due)
            if k >= total:
                break
            wait = t0 + (k - first) / rate - time.monotonic()
            await asyncio.sleep(wait if wait > 0 else 0)

    def _send_range(self, k: int, end: int) -> int:
        """Send (or miss) messages ``k..end-1``; returns where it stopped (a drop stops it)."""
        order = self._order
        ts = time.monotonic_ns()
        batches: dict[Conn, list[bytes]] = {}
        states = self._states
        ups = self.traffic.book_updates
        drop_at = self.drop_after if not self._dropped else None
        dropping = False
        j = k
        while j < end:
            if drop_at is not None and self.updates_sent >= drop_at:
                dropping = True  # exactly ``drop_after`` updates went out
                break
            kind = order[j]
            idx = self._msg_idx[j]
            if kind == T.BOOK and states is not None:
                u = ups[idx]
                states[u.sym].apply(u.bids, u.asks)
                self._last_ts[u.sym] = u.ts_us
                self._last_id[u.sym] = u.last_id
            conns = self._route(j)
            if conns:
                if kind == T.BOOK:
                    self.updates_sent += 1
                else:
                    self.trades_sent += 1
                self.send_mono_ns.append(ts)
                for c in conns:
                    batch = batches.get(c)
                    if batch is None:
                        batch = batches[c] = []
                    batch.append(self._conn_frames(c)[j])
            elif self._dropped:
                key = "missed" if kind == T.BOOK else "missed_trades"
                self.drop[key] = self.drop.get(key, 0) + 1
            j += 1
        if drop_at is not None and self.updates_sent >= drop_at:
            dropping = True
        for c, frames in batches.items():
            c.write(b"".join(frames))
        if dropping:
            self._drop_clients()
        return j

    def _drop_clients(self) -> None:
        """Recovery: abort every client connection (no close frame) and keep going."""
        self._dropped = True
        self.drop.update(
            {
                "drop_after": self.drop_after,
                "drop_mono_ns": time.monotonic_ns(),
                "reaccept_mono_ns": None,
                "resnapshot_mono_ns": None,
                "missed": 0,
                "missed_trades": 0,
                "dropped_connections": len(self._conns),
            }
        )
        self._outage_until = time.monotonic() + self.outage_s
        self._resnap_pending = {sym for sym, kind in self._required if kind == T.BOOK}
        for conn in list(self._conns):
            for key in list(conn.subs):
                self._unsubscribe(conn, key)
            with contextlib.suppress(Exception):
                conn.transport.abort()

    def _resnapshot(self, sym: int) -> None:
        self._snapped.add(sym)
        if len(self._snapped) >= len(self.traffic.pairs):
            self._snap_evt.set()
        if not self._dropped or self.drop.get("resnapshot_mono_ns") is not None:
            return
        self._resnap_pending.discard(sym)
        if not self._resnap_pending:
            self.drop["resnapshot_mono_ns"] = time.monotonic_ns()

    async def _heartbeats(self) -> None:
        """Kraken v1/v2: a heartbeat after ~1 s without data on a subscribed connection."""
        v2 = ws_frame(kraken_wire.HEARTBEAT.encode())
        v1 = ws_frame(kraken_v1.HEARTBEAT.encode())
        while True:
            await asyncio.sleep(HEARTBEAT_S / 4)
            now = time.monotonic()
            for conn in list(self._conns):
                if (
                    conn.subs
                    and not conn.blasting
                    and now - conn.last_write >= HEARTBEAT_S
                    and conn.proto in ("kraken-v2", "kraken-v1")
                ):
                    conn.write(v2 if conn.proto == "kraken-v2" else v1)

    # ---------------------------------------------------------------- book state

    def _book(self, sym: int) -> tuple[list[tuple[int, int]], list[tuple[int, int]], int, int]:
        """(bids, asks, ts_us, sequence) of the book a snapshot shows now."""
        if self._states is not None:
            bids, asks = self._states[sym].top()
            return bids, asks, self._last_ts[sym], self._last_id[sym]
        s = self.traffic.snapshots[sym]
        return list(s.bids), list(s.asks), s.ts_us, s.seq

    # ------------------------------------------------------------ HTTP gate

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        try:
            upgrade = any("websocket" in v.lower() for v in request.headers.get_all("Upgrade"))
            if not upgrade:
                self.rest_requests += 1
                return self._rest(request)
            return self._ws_gate(connection, request)
        except Exception as exc:  # never let a request take the server down
            self._error("http", None, f"{request.method} {request.path}", f"server error: {exc!r}")
            return _json_response(500, {"error": "internal error"})

    def _ws_gate(self, connection: ServerConnection, request: Request) -> Response | None:
        url = urlsplit(request.path)
        path = url.path.rstrip("/")
        if self._stopping:
            return _text_response(503, "Service Unavailable (shutting down)")
        if self._dropped and time.monotonic() < self._outage_until:
            return _text_response(503, "Service Unavailable (bench outage)")
        venue = self.traffic.venue
        up: _Upgrade | None = None
        if path in ("/kraken/v2", "/kraken/v1") and venue == "kraken":
            up = _Upgrade("kraken-v2" if path.endswith("v2") else "kraken-v1")
        elif path.startswith(("/binance/stream", "/binance/ws")) and venue == "binance":
            up = _Upgrade("binance")
            if path == "/binance/stream":
                raw = parse_qs(url.query).get("streams", [""])[0]
                up.streams = [s for s in raw.split("/") if s]
            elif path == "/binance/ws":
                up.combined = False
            elif path.startswith("/binance/ws/"):
                # a raw stream; ccxt dials /ws/<n> (not a stream) and SUBSCRIBEs later
                up.combined = False
                names = [s for s in path[len("/binance/ws/") :].split("/") if s]
                up.streams = [s for s in names if self._binance_stream(s) is not None]
                if len(up.streams) < len(names):
                    self._note("/binance/ws/<name>: names that are no stream are ignored")
            else:
                up = None
            if up is not None:
                bad = [s for s in up.streams if self._binance_stream(s) is None]
                if bad:
                    self._error("binance", None, request.path, f"invalid stream(s) {bad}")
                    return _text_response(400, f"Invalid stream name(s): {bad}")
        elif path == "/kucoin/ws" and venue == "kucoin":
            q = parse_qs(url.query)
            token = q.get("token", [""])[0]
            up = _Upgrade("kucoin")
            up.connect_id = q.get("connectId", [""])[0] or secrets.token_hex(8)
            if token not in self._kucoin_tokens:
                self._error("kucoin", None, request.path, "unknown token (not from bullet-public)")
                return _json_response(401, {"code": "401", "msg": "token is expired"})
        if up is None:
            self._error("ws", None, request.path, f"no WebSocket endpoint here for {venue} traffic")
            return _text_response(404, "Not Found")
        self._upgrades[connection] = up
        return None

    # ------------------------------------------------------------ WebSocket

    async def _handler(self, ws: ServerConnection) -> None:
        up = self._upgrades.pop(ws, None)
        if up is None:
            return
        conn = Conn(self._next_cid, ws, up.proto)
        self._next_cid += 1
        self.connections += 1
        self._protocols_seen.add(up.proto)
        if self._dropped and self.drop.get("reaccept_mono_ns") is None:
            self.drop["reaccept_mono_ns"] = time.monotonic_ns()
        self._conns.add(conn)
        try:
            self._on_open(conn, up)
            async for msg in ws:
                text = msg if isinstance(msg, str) else msg.decode("utf-8", "replace")
                try:
                    self._on_message(conn, text)
                except Exception as exc:  # a bad request must not end the connection
                    self._error(conn.proto, conn, text, f"server error: {exc!r}")
        except ConnectionClosed:
            pass
        finally:
            self._drop_conn(conn)

    def _on_open(self, conn: Conn, up: _Upgrade) -> None:
        if conn.proto == "kraken-v2":
            conn.send(kraken_wire.status_message(secrets.randbits(63), "online"))
        elif conn.proto == "kraken-v1":
            conn.send(kraken_v1.system_status(secrets.randbits(63)))
        elif conn.proto == "kucoin":
            conn.connect_id = up.connect_id
            conn.send(kw.dumps({"id": up.connect_id, "type": "welcome"}))
        elif conn.proto == "binance":
            conn.combined = up.combined
            for name in up.streams:
                self._binance_add(conn, name)
            self._conn_frames(conn)  # build this connection's frames now, not in a send

    def _on_message(self, conn: Conn, text: str) -> None:
        if conn.proto == "kraken-v2":
            self._kraken_v2(conn, text)
        elif conn.proto == "kraken-v1":
            self._kraken_v1(conn, text)
        elif conn.proto == "binance":
            self._binance(conn, text)
        else:
            self._kucoin(conn, text)

    # ---- Kraken v2

    def _v2_error(
        self,
        conn: Conn,
        text: str,
        error: str,
        method: str | None,
        req_id: Any,
        time_in: int,
        symbol: str | None = None,
    ) -> None:
        out: dict[str, Any] = {"error": error}
        if method is not None:
            out["method"] = method
        if req_id is not None:
            out["req_id"] = req_id
        out["success"] = False
        if symbol is not None:
            out["symbol"] = symbol
        out["time_in"] = rfc3339_us(time_in)
        out["time_out"] = rfc3339_us(_now_us())
        conn.send(kraken_wire.dumps(out))
        self._error(conn.proto, conn, text, error)

    def _v2_ack(
        self, conn: Conn, method: str, result: dict[str, Any], req_id: Any, time_in: int
    ) -> None:
        out: dict[str, Any] = {"method": method, "result": result, "success": True}
        out["time_in"] = rfc3339_us(time_in)
        out["time_out"] = rfc3339_us(_now_us())
        if req_id is not None:
            out["req_id"] = req_id
        conn.send(kraken_wire.dumps(out))

    def _kraken_v2(self, conn: Conn, text: str) -> None:
        time_in = _now_us()
        try:
            obj = json.loads(text)
        except ValueError:
            self._v2_error(conn, text, "Malformed request: invalid JSON", None, None, time_in)
            return
        if not isinstance(obj, dict):
            self._v2_error(conn, text, "Malformed request: expected an object", None, None, time_in)
            return
        method = obj.get("method")
        req_id = obj.get("req_id")
        if method == "ping":
            out: dict[str, Any] = {"method": "pong"}
            if req_id is not None:
                out["req_id"] = req_id
            out["time_in"] = rfc3339_us(time_in)
            out["time_out"] = rfc3339_us(_now_us())
            conn.send(kraken_wire.dumps(out))
            return
        if method not in ("subscribe", "unsubscribe"):
            self._v2_error(conn, text, f"Method not found: {method}", None, req_id, time_in)
            return
        params = obj.get("params")
        if not isinstance(params, dict):
            self._v2_error(conn, text, "Malformed request: missing params", method, req_id, time_in)
            return
        channel = params.get("channel")
        if channel == "instrument":
            if method == "subscribe":
                self._v2_ack(
                    conn,
                    method,
                    {
                        "channel": "instrument",
                        "snapshot": params.get("snapshot", True),
                        "warnings": ["tick_size is deprecated, use price_increment"],
                    },
                    req_id,
                    time_in,
                )
                if params.get("snapshot", True):
                    conn.send(self._instrument_text())
            else:
                self._v2_ack(conn, method, {"channel": "instrument"}, req_id, time_in)
            return
        if channel not in ("book", "trade"):
            self._v2_error(conn, text, f"Channel not supported: {channel}", method, req_id, time_in)
            return
        symbols = params.get("symbol")
        if not isinstance(symbols, list) or not symbols:
            self._v2_error(
                conn, text, "Malformed request: symbol must be a list", method, req_id, time_in
            )
            return
        depth = params.get("depth", 10)
        if channel == "book" and depth != self.traffic.depth:
            error = "Subscription depth not supported"
            if depth in KRAKEN_DEPTHS:
                error += f" (the bench serves depth {self.traffic.depth})"
            self._v2_error(conn, text, error, method, req_id, time_in)
            return
        snapshot = params.get("snapshot", channel == "book")
        index = self._index["kraken-v2"]
        kind = T.BOOK if channel == "book" else T.TRADE
        for sym_name in symbols:
            i = index.get(sym_name) if isinstance(sym_name, str) else None
            if i is None:
                self._v2_error(
                    conn,
                    text,
                    f"Currency pair not supported {sym_name}",
                    method,
                    req_id,
                    time_in,
                    str(sym_name),
                )
                continue
            key = (i, kind)
            result: dict[str, Any] = {"channel": channel}
            if channel == "book":
                result["depth"] = depth
            if method == "subscribe":
                if key in conn.subs:
                    self._v2_error(
                        conn, text, "Already subscribed", method, req_id, time_in, sym_name
                    )
                    continue
                result["snapshot"] = snapshot
                result["symbol"] = sym_name
                self._v2_ack(conn, method, result, req_id, time_in)
                if channel == "book":
                    if snapshot:
                        bids, asks, ts, _ = self._book(i)
                        conn.send(T.kraken_v2_snapshot(self.traffic, i, bids, asks, ts))
                        self._resnapshot(i)
                elif snapshot:
                    conn.send('{"channel":"trade","type":"snapshot","data":[]}')
                self._subscribe(conn, key)
            else:
                if key not in conn.subs:
                    self._v2_error(
                        conn, text, "Subscription Not Found", method, req_id, time_in, sym_name
                    )
                    continue
                result["symbol"] = sym_name
                self._unsubscribe(conn, key)
                self._v2_ack(conn, method, result, req_id, time_in)

    def _instrument_text(self) -> str:
        return kraken_wire.dumps(
            {
                "channel": "instrument",
                "type": "snapshot",
                "data": kraken_wire.instrument_data(self.traffic.pairs),
            }
        )

    # ---- Kraken v1

    def _kraken_v1(self, conn: Conn, text: str) -> None:
        try:
            obj = json.loads(text)
        except ValueError:
            conn.send(kraken_v1.error("Malformed request"))
            self._error(conn.proto, conn, text, "invalid JSON")
            return
        if not isinstance(obj, dict):
            conn.send(kraken_v1.error("Malformed request"))
            self._error(conn.proto, conn, text, "not an object")
            return
        event = obj.get("event")
        reqid = obj.get("reqid")
        if event == "ping":
            conn.send(kraken_v1.pong(reqid))
            return
        if event not in ("subscribe", "unsubscribe"):
            conn.send(kraken_v1.error(f"Unsupported event {event}", reqid))
            self._error(conn.proto, conn, text, f"unsupported event {event}")
            return
        sub = obj.get("subscription")
        pairs = obj.get("pair")
        if not isinstance(sub, dict) or not isinstance(pairs, list) or not pairs:
            conn.send(kraken_v1.subscription_error("Malformed request", None, None, reqid))
            self._error(conn.proto, conn, text, "malformed subscription")
            return
        name = sub.get("name")
        if name not in ("book", "trade"):
            conn.send(
                kraken_v1.subscription_error(
                    f"Subscription name not supported by the bench: {name}", None, sub, reqid
                )
            )
            self._error(conn.proto, conn, text, f"unsupported subscription {name}")
            return
        depth = sub.get("depth", 10)
        if name == "book" and depth != self.traffic.depth:
            conn.send(
                kraken_v1.subscription_error(
                    f"Subscription depth not supported (the bench serves depth "
                    f"{self.traffic.depth})",
                    None,
                    sub,
                    reqid,
                )
            )
            self._error(conn.proto, conn, text, f"book depth {depth} != {self.traffic.depth}")
            return
        index = self._index["kraken-v1"]
        kind = T.BOOK if name == "book" else T.TRADE
        echo: dict[str, Any] = (
            {"depth": depth, "name": "book"} if name == "book" else {"name": name}
        )
        for pair in pairs:
            i = index.get(pair) if isinstance(pair, str) else None
            if i is None:
                conn.send(
                    kraken_v1.subscription_error(
                        f"Currency pair not supported {pair}", str(pair), echo, reqid
                    )
                )
                self._error(conn.proto, conn, text, f"unknown pair {pair}")
                continue
            key = (i, kind)
            channel_id = T.kraken_v1_channel_id(i) if kind == T.BOOK else 500_000 + i
            channel_name = kraken_v1.channel_name(depth) if kind == T.BOOK else "trade"
            if event == "subscribe":
                if key in conn.subs:
                    conn.send(
                        kraken_v1.subscription_error(
                            "Subscription already exists", pair, echo, reqid
                        )
                    )
                    self._error(conn.proto, conn, text, f"already subscribed {pair}")
                    continue
                conn.send(
                    kraken_v1.subscription_status(channel_id, channel_name, pair, echo, reqid=reqid)
                )
                if kind == T.BOOK:
                    bids, asks, ts, _ = self._book(i)
                    conn.send(T.kraken_v1_snapshot(self.traffic, i, bids, asks, ts))
                    self._resnapshot(i)
                self._subscribe(conn, key)
            else:
                if key not in conn.subs:
                    conn.send(
                        kraken_v1.subscription_error("Subscription Not Found", pair, echo, reqid)
                    )
                    self._error(conn.proto, conn, text, f"not subscribed {pair}")
                    continue
                self._unsubscribe(conn, key)
                conn.send(
                    kraken_v1.subscription_status(
                        channel_id, channel_name, pair, echo, "unsubscribed", reqid
                    )
                )

    # ---- Binance

    def _binance_stream(self, name: str) -> tuple[int, int, str] | None:
        sym, sep, rest = name.partition("@")
        i = self._binance_lower.get(sym)
        if i is None or not sep:
            return None
        if rest in ("depth@100ms", "depth"):
            return i, T.BOOK, "@" + rest
        if rest in ("trade", "aggTrade"):
            return i, T.TRADE, "@" + rest
        return None

    def _binance_add(self, conn: Conn, name: str) -> None:
        """Subscribe ``conn`` to a stream. A connection's first depth stream sets the depth
        suffix of all its depth frames, its first trade stream whether it gets ``trade``
        or ``aggTrade`` events (one aggTrade per trade, same count and order)."""
        parsed = self._binance_stream(name)
        if parsed is None:
            return
        i, kind, suffix = parsed
        if not any(k == kind for _, k in conn.subs):
            if kind == T.BOOK:
                conn.depth_suffix = suffix
            else:
                conn.trade_suffix = suffix
        elif kind == T.TRADE and suffix != conn.trade_suffix:
            # both streams on one connection would mean every trade twice: not served
            self._error(
                conn.proto,
                conn,
                name,
                f"{suffix} on a connection that has {conn.trade_suffix} streams: not served",
            )
            return
        if (i, kind) not in conn.subs:
            self._subscribe(conn, (i, kind))

    def _binance(self, conn: Conn, text: str) -> None:
        def err(code: int, msg: str, req_id: Any) -> None:
            conn.send(bw.error_frame(code, msg, req_id))
            self._error(conn.proto, conn, text, msg)

        try:
            obj = json.loads(text)
        except ValueError:
            err(3, "Invalid JSON: expected value at line 1 column 1", None)
            return
        if not isinstance(obj, dict):
            err(2, "Invalid request: expected a JSON object", None)
            return
        req_id = obj.get("id")
        method = obj.get("method")
        params = obj.get("params")
        if method in ("SUBSCRIBE", "UNSUBSCRIBE"):
            if params is None:
                params = []
            if not isinstance(params, list) or not all(isinstance(p, str) for p in params):
                err(2, "Invalid request: params must be a list of stream names", req_id)
                return
            bad = [p for p in params if self._binance_stream(p) is None]
            if bad:
                err(2, f"Invalid request: invalid stream {bad}", req_id)
                return
            conn.send(bw.result_frame(None, req_id))
            for name in params:
                if method == "SUBSCRIBE":
                    self._binance_add(conn, name)
                else:
                    parsed = self._binance_stream(name)
                    if parsed is not None:
                        self._unsubscribe(conn, (parsed[0], parsed[1]))
            self._conn_frames(conn)
        elif method == "LIST_SUBSCRIPTIONS":
            lowers = [p.symbol.lower() for p in self.traffic.pairs]
            names = [
                lowers[i] + (conn.depth_suffix if k == T.BOOK else conn.trade_suffix)
                for i, k in sorted(conn.subs)
            ]
            conn.send(bw.result_frame(names, req_id))
        elif method == "SET_PROPERTY":
            if (
                isinstance(params, list)
                and len(params) == 2
                and params[0] == "combined"
                and isinstance(params[1], bool)
            ):
                conn.combined = params[1]
                conn.send(bw.result_frame(None, req_id))
                self._conn_frames(conn)
            else:
                err(0, "Unknown property", req_id)
        elif method == "GET_PROPERTY":
            if isinstance(params, list) and params == ["combined"]:
                conn.send(bw.result_frame(conn.combined, req_id))
            else:
                err(0, "Unknown property", req_id)
        else:
            err(
                2,
                f"Invalid request: unknown variant `{method}`, expected one of `SUBSCRIBE`, "
                "`UNSUBSCRIBE`, `LIST_SUBSCRIPTIONS`, `SET_PROPERTY`, `GET_PROPERTY`",
                req_id,
            )

    # ---- KuCoin

    def _kucoin(self, conn: Conn, text: str) -> None:
        try:
            obj = json.loads(text)
        except ValueError:
            conn.send(kw.error(conn.connect_id, 400, "invalid json"))
            self._error(conn.proto, conn, text, "invalid JSON")
            return
        if not isinstance(obj, dict):
            conn.send(kw.error(conn.connect_id, 400, "invalid request"))
            self._error(conn.proto, conn, text, "not an object")
            return
        raw_id = obj.get("id")
        req_id = conn.connect_id if raw_id is None else str(raw_id)
        kind = obj.get("type")
        if kind == "ping":
            conn.send(kw.dumps({"id": req_id, "type": "pong"}))
            return
        if kind not in ("subscribe", "unsubscribe"):
            conn.send(kw.error(req_id, 400, f"unsupported type {kind}"))
            self._error(conn.proto, conn, text, f"unsupported type {kind}")
            return
        topic = obj.get("topic")
        if not isinstance(topic, str) or ":" not in topic:
            conn.send(kw.error(req_id, 404, f"topic {topic} is not found"))
            self._error(conn.proto, conn, text, f"bad topic {topic}")
            return
        prefix, _, names = topic.partition(":")
        # cryptofeed writes "/market/level2: BTC-USDT,ETH-USDT" (a space after the colon)
        symbols = [s.strip() for s in names.split(",")]
        index = self._index["kucoin"]
        unknown = [s for s in symbols if s not in index]
        if prefix not in ("/market/level2", "/market/match", "/market/ticker") or unknown:
            conn.send(kw.error(req_id, 404, f"topic {topic} is not found"))
            self._error(conn.proto, conn, text, f"topic not served: {topic}")
            return
        if prefix == "/market/level2":
            for s in symbols:
                key = (index[s], T.BOOK)
                if kind == "subscribe":
                    if key not in conn.subs:
                        self._subscribe(conn, key)
                else:
                    self._unsubscribe(conn, key)
        if obj.get("response") is True:
            conn.send(kw.dumps({"id": req_id, "type": "ack"}))

    # ------------------------------------------------------------------ REST

    def _rest(self, request: Request) -> Response:
        url = urlsplit(request.path)
        path = url.path.rstrip("/")
        q = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        venue = self.traffic.venue
        if path.startswith("/kraken/0/public/") and venue == "kraken":
            return self._kraken_rest(request, path[len("/kraken/0/public/") :], q)
        if path.startswith("/binance/api/") and venue == "binance":
            return self._binance_rest(request, path[len("/binance") :], q)
        if path.startswith("/kucoin/api/") and venue == "kucoin":
            return self._kucoin_rest(request, path[len("/kucoin") :], q)
        self._error("http", None, f"{request.method} {request.path}", "unknown REST path")
        return _json_response(404, {"error": f"not found (this server runs {venue} traffic)"})

    # ---- Kraken REST

    def _kraken_rest(self, request: Request, name: str, q: dict[str, str]) -> Response:
        now = time.time()
        if name == "Time":
            return _json_response(
                200,
                {
                    "error": [],
                    "result": {
                        "unixtime": int(now),
                        "rfc1123": email.utils.formatdate(now, usegmt=True),
                    },
                },
            )
        if name == "SystemStatus":
            return _json_response(
                200,
                {
                    "error": [],
                    "result": {"status": "online", "timestamp": rfc3339_us(_now_us())[:19] + "Z"},
                },
            )
        if name == "Assets":
            return _json_response(200, {"error": [], "result": _kraken_assets(self.traffic)})
        if name == "AssetPairs":
            pairs = _kraken_asset_pairs(self.traffic)
            wanted = q.get("pair")
            if wanted:
                result: dict[str, Any] = {}
                for w in wanted.split(","):
                    hit = _kraken_find_pair(pairs, w)
                    if hit is None:
                        self._error("http", None, request.path, f"unknown asset pair {w}")
                        return _json_response(200, {"error": ["EQuery:Unknown asset pair"]})
                    key, entry = hit
                    result[w if "/" in w else key] = entry
                return _json_response(200, {"error": [], "result": result})
            return _json_response(200, {"error": [], "result": pairs})
        self._error("http", None, f"{request.method} {request.path}", "unknown Kraken REST path")
        return _json_response(404, {"error": ["EGeneral:Unknown method"]})

    # ---- Binance REST

    def _binance_rest(self, request: Request, path: str, q: dict[str, str]) -> Response:
        ms = time.time_ns() // 1_000_000
        if path == "/api/v3/ping":
            return _json_response(200, {})
        if path == "/api/v3/time":
            return _json_response(200, {"serverTime": ms})
        if path == "/api/v3/exchangeInfo":
            pairs = self.traffic.binance_pairs
            wanted: list[str] | None = None
            if "symbol" in q:
                wanted = [q["symbol"]]
            elif "symbols" in q:
                with contextlib.suppress(ValueError):
                    parsed = json.loads(q["symbols"])
                    if isinstance(parsed, list):
                        wanted = [str(s) for s in parsed]
            if wanted is not None:
                known = {p.symbol for p in pairs}
                if any(s not in known for s in wanted):
                    self._error("http", None, request.path, "exchangeInfo: unknown symbol")
                    return _json_response(400, {"code": -1121, "msg": "Invalid symbol."})
                pairs = [p for p in pairs if p.symbol in wanted]
            return _json_response(200, bw.exchange_info(pairs, ms, 6000))
        if path == "/api/v3/depth":
            i = self._index["binance"].get(q.get("symbol", ""))
            if i is None:
                self._error("http", None, request.path, "depth: unknown symbol")
                return _json_response(400, {"code": -1121, "msg": "Invalid symbol."})
            limit_text = q.get("limit", "100")
            if not limit_text.isdigit() or int(limit_text) < 1:
                self._error("http", None, request.path, "depth: bad limit")
                return _json_response(
                    400, {"code": -1100, "msg": "Illegal characters found in parameter 'limit'."}
                )
            limit = min(int(limit_text), 5000)
            bids, asks, _, seq = self._book(i)
            body = T.binance_depth_body(self.traffic, i, seq, bids[:limit], asks[:limit])
            self._resnapshot(i)
            return _raw_json_response(200, body)
        self._error("http", None, f"{request.method} {request.path}", "unknown Binance REST path")
        return _json_response(404, {"code": -1000, "msg": "Not found."})

    # ---- KuCoin REST

    def _kucoin_rest(self, request: Request, path: str, q: dict[str, str]) -> Response:
        ms = time.time_ns() // 1_000_000
        if path == "/api/v1/bullet-public":
            if request.method != "POST":
                self._error("http", None, request.path, "bullet-public must be POST")
            token = secrets.token_urlsafe(48)
            self._kucoin_tokens.add(token)
            scheme = "wss" if self.ssl_context is not None else "ws"
            host = request.headers.get("Host") or f"127.0.0.1:{self.port}"
            return _json_response(
                200,
                kw.rest_ok(
                    {
                        "token": token,
                        "instanceServers": [
                            {
                                "endpoint": f"{scheme}://{host}/kucoin/ws",
                                "encrypt": scheme == "wss",
                                "protocol": "websocket",
                                "pingInterval": KUCOIN_PING_INTERVAL_MS,
                                "pingTimeout": KUCOIN_PING_TIMEOUT_MS,
                            }
                        ],
                    }
                ),
            )
        if path == "/api/v1/timestamp":
            return _json_response(200, kw.rest_ok(ms))
        if path == "/api/v1/status":
            return _json_response(200, kw.rest_ok({"status": "open", "msg": ""}))
        if path in ("/api/v1/symbols", "/api/v2/symbols"):
            return _json_response(200, kw.rest_ok([kw.symbol_info(p) for p in self.traffic.pairs]))
        if path in ("/api/v1/currencies", "/api/v3/currencies"):
            return _json_response(200, kw.rest_ok(_kucoin_currencies(self.traffic)))
        if path == "/api/v1/market/allTickers":
            return _json_response(200, kw.rest_ok(self._kucoin_tickers(ms)))
        depth = {
            "/api/v1/market/orderbook/level2_20": 20,
            "/api/v1/market/orderbook/level2_100": 100,
            "/api/v3/market/orderbook/level2": None,
            "/api/v1/market/orderbook/level2": None,
        }
        if path in depth:
            i = self._index["kucoin"].get(q.get("symbol", ""))
            if i is None:
                self._error("http", None, request.path, "level2: unknown symbol")
                return _json_response(
                    400, {"code": "400100", "msg": f"symbol {q.get('symbol')!r} does not exist"}
                )
            n = depth[path]
            bids, asks, _, seq = self._book(i)
            if n is not None:
                bids, asks = bids[:n], asks[:n]
            data = T.kucoin_level2_data(self.traffic, i, seq, bids, asks, ms)
            self._resnapshot(i)
            return _json_response(200, kw.rest_ok(data))
        self._error("http", None, f"{request.method} {request.path}", "unknown KuCoin REST path")
        return _json_response(404, {"code": "404000", "msg": "Not Found"})

    def _kucoin_tickers(self, ms: int) -> dict[str, Any]:
        tickers = []
        for i, p in enumerate(self.traffic.pairs):
            bids, asks, _, _ = self._book(i)
            pp, qp = p.price_precision, p.qty_precision
            bid = kw.fmt_plain(bids[0][0], pp) if bids else None
            ask = kw.fmt_plain(asks[0][0], pp) if asks else None
            tickers.append(
                {
                    "symbol": p.symbol,
                    "symbolName": p.symbol,
                    "buy": bid,
                    "bestBidSize": kw.fmt_plain(bids[0][1], qp) if bids else None,
                    "sell": ask,
                    "bestAskSize": kw.fmt_plain(asks[0][1], qp) if asks else None,
                    "changeRate": "0",
                    "changePrice": "0",
                    "high": ask,
                    "low": bid,
                    "vol": "0",
                    "volValue": "0",
                    "last": bid,
                    "averagePrice": bid,
                    "takerFeeRate": "0.001",
                    "makerFeeRate": "0.001",
                    "takerCoefficient": "1",
                    "makerCoefficient": "1",
                }
            )
        return {"time": ms, "ticker": tickers}


# --------------------------------------------------------------------------- REST helpers


def _chunks(frames: list[bytes], limit: int = CHUNK_BYTES) -> list[bytes]:
    """Join whole frames into writes of about ``limit`` bytes."""
    out: list[bytes] = []
    cur: list[bytes] = []
    size = 0
    for f in frames:
        cur.append(f)
        size += len(f)
        if size >= limit:
            out.append(b"".join(cur))
            cur = []
            size = 0
    if cur:
        out.append(b"".join(cur))
    return out


def _raw_json_response(status: int, body: str) -> Response:
    data = body.encode()
    headers = Headers(
        [
            ("Date", email.utils.formatdate(usegmt=True)),
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(data))),
            ("Connection", "close"),
        ]
    )
    return Response(status, http.HTTPStatus(status).phrase, headers, data)


def _json_response(status: int, obj: Any) -> Response:
    return _raw_json_response(status, json.dumps(obj, separators=(",", ":")))


def _text_response(status: int, text: str) -> Response:
    data = (text + "\n").encode()
    headers = Headers(
        [
            ("Date", email.utils.formatdate(usegmt=True)),
            ("Content-Type", "text/plain; charset=utf-8"),
            ("Content-Length", str(len(data))),
            ("Connection", "close"),
        ]
    )
    return Response(status, http.HTTPStatus(status).phrase, headers, data)


# Kraken REST asset naming: legacy assets carry an X (crypto) or Z (fiat) prefix
_KRAKEN_ASSETS: dict[str, tuple[str, str, int, int]] = {
    "BTC": ("XXBT", "XBT", 10, 5),
    "ETH": ("XETH", "ETH", 10, 5),
    "DOGE": ("XXDG", "XDG", 8, 2),
    "USD": ("ZUSD", "USD", 4, 2),
    "EUR": ("ZEUR", "EUR", 4, 2),
    "GBP": ("ZGBP", "GBP", 4, 2),
}


def _kraken_asset(code: str) -> tuple[str, str, int, int]:
    """(REST id, altname, decimals, display_decimals) of a v2 asset code."""
    return _KRAKEN_ASSETS.get(code, (code, code, 8, 5))


def _kraken_assets(traffic: T.Traffic) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for p in traffic.pairs:
        for code in (p.base, p.quote):
            aid, alt, dec, disp = _kraken_asset(code)
            out[aid] = {
                "aclass": "currency",
                "altname": alt,
                "decimals": dec,
                "display_decimals": disp,
                "collateral_value": 1.0,
                "status": "enabled",
            }
    return out


def _kraken_asset_pairs(traffic: T.Traffic) -> dict[str, Any]:
    out: dict[str, Any] = {}
    fees = [[0, 0.26], [50000, 0.24], [100000, 0.22], [250000, 0.2], [500000, 0.18]]
    fees_maker = [[0, 0.16], [50000, 0.14], [100000, 0.12], [250000, 0.1], [500000, 0.08]]
    for p in traffic.pairs:
        bid, balt, _, _ = _kraken_asset(p.base)
        qid, qalt, _, _ = _kraken_asset(p.quote)
        altname = balt + qalt
        legacy = bid != p.base and qid != p.quote
        key = bid + qid if legacy else altname
        out[key] = {
            "altname": altname,
            "wsname": kraken_v1.v1_symbol(p.symbol),
            "aclass_base": "currency",
            "base": bid,
            "aclass_quote": "currency",
            "quote": qid,
            "lot": "unit",
            "cost_decimals": p.cost_precision,
            "pair_decimals": p.price_precision,
            "lot_decimals": p.qty_precision,
            "lot_multiplier": 1,
            "leverage_buy": [2, 3, 4, 5] if p.marginable else [],
            "leverage_sell": [2, 3, 4, 5] if p.marginable else [],
            "fees": fees,
            "fees_maker": fees_maker,
            "fee_volume_currency": "ZUSD",
            "margin_call": 80,
            "margin_stop": 40,
            "ordermin": p.qty_min,
            "costmin": p.cost_min,
            "tick_size": fmt_fixed(1, p.price_precision),
            "status": "online",
        }
    return out


def _kraken_find_pair(pairs: dict[str, Any], name: str) -> tuple[str, Any] | None:
    """A pair by REST key, altname, v1 wsname (``XBT/USD``) or v2 name (``BTC/USD``)."""
    if name in pairs:
        return name, pairs[name]
    v1 = kraken_v1.v1_symbol(name) if "/" in name else None
    for key, entry in pairs.items():
        if name == entry["altname"] or (v1 is not None and v1 == entry["wsname"]):
            return key, entry
    return None


def _kucoin_currencies(traffic: T.Traffic) -> list[dict[str, Any]]:
    seen: dict[str, int] = {}
    for p in traffic.pairs:
        base, _, quote = p.symbol.partition("-")
        seen[base] = max(seen.get(base, 0), p.qty_precision)
        seen.setdefault(quote, 6)
    return [
        {
            "currency": c,
            "name": c,
            "fullName": c,
            "precision": prec,
            "confirms": None,
            "contractAddress": None,
            "isMarginEnabled": False,
            "isDebitEnabled": False,
            "chains": [],
        }
        for c, prec in seen.items()
    ]


# --------------------------------------------------------------------------- CLI


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="The gapless benchmark server (bench/HARNESS.md).")
    p.add_argument("--traffic", type=Path, help="a traffic file (bench.traffic.save)")
    p.add_argument("--mode", choices=MODES, default="throughput")
    p.add_argument("--rate", type=float, default=1000.0, help="messages/s (latency, recovery)")
    p.add_argument("--drop-after", type=int, default=None, help="recovery: updates before the drop")
    p.add_argument(
        "--outage-s", type=float, default=0.0, help="recovery: refuse reconnects this long"
    )
    p.add_argument("--tls", action="store_true", help="wss:// and https:// (needs --cert/--key)")
    p.add_argument("--cert", type=Path)
    p.add_argument("--key", type=Path)
    p.add_argument("--report", type=str, default=None)
    p.add_argument("--settle-s", type=float, default=0.5)
    p.add_argument(
        "--await-snapshots",
        action="store_true",
        help="Binance/KuCoin: start the run once every book fetched its REST snapshot",
    )
    p.add_argument(
        "--expect-subscriptions",
        type=int,
        default=None,
        help="start once this many (symbol, channel) subscriptions exist (default: all)",
    )
    p.add_argument(
        "--protocols", default=None, help="comma list to pre-encode (default: all of the venue's)"
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--make-cert", type=Path, default=None, metavar="DIR")
    args = p.parse_args(argv)
    if args.make_cert is None:
        if args.traffic is None:
            p.error("--traffic is required")
        if args.tls and (args.cert is None or args.key is None):
            p.error("--tls needs --cert and --key")
        if args.mode != "throughput" and not args.rate > 0:
            p.error("--rate must be > 0")
    return args


async def _amain(args: argparse.Namespace) -> int:
    traffic = T.load(args.traffic)
    ctx: ssl.SSLContext | None = None
    if args.tls:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(args.cert), str(args.key))
    server = BenchServer(
        traffic,
        args.mode,
        rate=args.rate,
        drop_after=args.drop_after,
        outage_s=args.outage_s,
        settle_s=args.settle_s,
        expect_subscriptions=args.expect_subscriptions,
        await_snapshots=args.await_snapshots,
        report_path=args.report,
        ssl_context=ctx,
        protocols=args.protocols.split(",") if args.protocols else None,
    )
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, server.request_stop)
    port = await server.start(args.host, args.port)
    print(f"READY {port}", flush=True)
    try:
        await server.wait_done()
    finally:
        server.write_report()
        await server.close()
    print("DONE", flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    if args.make_cert is not None:
        cert, key = make_self_signed(args.make_cert)
        print(json.dumps({"cert": cert, "key": key}), flush=True)
        return 0
    return asyncio.run(_amain(args))


if __name__ == "__main__":
    sys.exit(main())
