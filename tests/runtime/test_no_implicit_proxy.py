"""No proxy is taken from the environment; an explicitly configured one is used.

Every proxy variable a client library might read (``HTTP_PROXY``,
``HTTPS_PROXY``, ``ALL_PROXY``, ``WS_PROXY``, ``WSS_PROXY``, upper and lower
case; ``NO_PROXY`` removed) points at a *trap*: a local TCP listener that
counts the connections it accepts and closes them. A control test first shows
the trap is effective on this machine: a websockets client with its default
``proxy=True`` and an aiohttp session with ``trust_env=True`` both walk into
it. Then gapless's transport (both backends), its ``RestClient`` and a whole
feed (WebSocket + REST snapshot) reach the Binance simulator on loopback
directly: the simulator counts the traffic, the trap counts nothing.

An explicit proxy (``TransportOptions.proxy``, ``RestOptions.proxy``) is a
minimal HTTP proxy written here (``CONNECT`` tunnels and absolute-form
requests); the tests check it saw each request. Real sockets, real time.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import aiohttp
import pytest
import trustme
import websockets
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import InvalidProxyStatus
from websockets.http11 import Request, Response

import gapless
from gapless import kraken
from gapless.errors import ConfigError
from gapless.events import BookSnapshot, Event
from gapless.runtime.rest import RestClient, RestOptions
from gapless.runtime.supervisor import RuntimeOptions
from gapless.runtime.transport import HAVE_PICOWS, TransportOptions, open_connection
from gapless.sim import BinanceSim, BinanceSimConfig
from gapless.venues import binance
from gapless.venues.binance.adapter import BinanceOptions

pytestmark = pytest.mark.timeout(60)

BACKENDS = [
    pytest.param(
        "picows", marks=pytest.mark.skipif(not HAVE_PICOWS, reason="picows not installed")
    ),
    "websockets",
]

PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "WS_PROXY", "WSS_PROXY")

TRAP_ANSWER = b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n"

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def _tcp_server(handle: Handler) -> AsyncIterator[int]:
    """A TCP server on 127.0.0.1 (yields its port); its handlers end with it."""
    tasks: set[asyncio.Task[object]] = set()
    writers: set[asyncio.StreamWriter] = set()

    async def tracked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        writers.add(writer)
        try:
            await handle(reader, writer)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(tracked, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for writer in writers:
            writer.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()


@dataclass
class Trap:
    """The proxy the environment names: counts what it accepts, serves nothing."""

    port: int = 0
    accepted: int = 0
    first_lines: list[bytes] = field(default_factory=list)


@contextlib.asynccontextmanager
async def _trap() -> AsyncIterator[Trap]:
    trap = Trap()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        trap.accepted += 1
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(1.0):
                trap.first_lines.append(await reader.readline())
        writer.write(TRAP_ANSWER)  # a clean refusal: the client fails, it does not hang
        await writer.drain()

    async with _tcp_server(handle) as port:
        trap.port = port
        yield trap


@pytest.fixture
async def trap(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Trap]:
    async with _trap() as t:
        for name in ("NO_PROXY", "no_proxy"):
            monkeypatch.delenv(name, raising=False)
        for name in PROXY_VARS:
            monkeypatch.setenv(name, f"http://127.0.0.1:{t.port}")
            monkeypatch.setenv(name.lower(), f"http://127.0.0.1:{t.port}")
        yield t


@contextlib.asynccontextmanager
async def _binance() -> AsyncIterator[BinanceSim]:
    cfg = BinanceSimConfig(seed=3, symbols=("BTCUSDT",), tick_rate_hz=20.0)
    async with BinanceSim(cfg) as sim:
        yield sim


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.close()


@contextlib.asynccontextmanager
async def _http_proxy() -> AsyncIterator[tuple[int, list[bytes]]]:
    """A minimal HTTP proxy: ``CONNECT host:port`` tunnels, and absolute-form
    requests (``GET http://host:port/path``, aiohttp's form for ``http://``
    URLs) forwarded in origin form. Yields its port and the request lines seen."""
    seen: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        line, rest = head.split(b"\r\n", 1)
        seen.append(line)
        method, target, version = line.split(b" ", 2)
        if method == b"CONNECT":
            host, port = target.rsplit(b":", 1)
            up_reader, up_writer = await asyncio.open_connection(host.decode(), int(port))
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        else:
            assert target.startswith(b"http://"), target
            authority, _, path = target[len(b"http://") :].partition(b"/")
            host, port = authority.rsplit(b":", 1)
            up_reader, up_writer = await asyncio.open_connection(host.decode(), int(port))
            up_writer.write(b" ".join((method, b"/" + path, version)) + b"\r\n" + rest)
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

    async with _tcp_server(handle) as port:
        yield port, seen


# --------------------------------------------------------------------------- control


async def test_the_trap_catches_clients_that_read_the_environment(trap: Trap) -> None:
    """Without this, 'the trap saw nothing' below could mean the environment was
    not set up in a way clients honour (e.g. a NO_PROXY for loopback)."""
    async with _binance() as sim:
        with pytest.raises(InvalidProxyStatus, match="407"):
            async with asyncio.timeout(5):
                await websockets.connect(f"{sim.ws_url}/ws/btcusdt@trade", open_timeout=3)
        assert trap.accepted == 1
        url = f"{sim.rest_url}/api/v3/ping"
        async with (
            aiohttp.ClientSession(trust_env=True) as session,
            asyncio.timeout(5),
            session.get(url) as resp,
        ):
            assert resp.status == 407  # the trap's answer
        assert trap.accepted == 2
        assert sim.stats["connections"] == 0
        assert sim.stats["rest_requests"] == 0


# --------------------------------------------------------------------------- no implicit proxy


@pytest.mark.parametrize("backend", BACKENDS)
async def test_the_transport_ignores_environment_proxies(backend: str, trap: Trap) -> None:
    async with _binance() as sim:
        opts = TransportOptions(backend=backend, connect_timeout_s=3.0)
        conn = await open_connection(f"{sim.ws_url}/ws/btcusdt@depth@100ms", opts)
        try:
            async with asyncio.timeout(5):
                first = await anext(conn.frames())
        finally:
            await conn.close()
        assert "depthUpdate" in str(first)
        assert sim.stats["connections"] == 1
    assert trap.accepted == 0, trap.first_lines


async def test_the_rest_client_ignores_environment_proxies(trap: Trap) -> None:
    async with _binance() as sim, RestClient() as rest:
        resp = await rest.request("GET", f"{sim.rest_url}/api/v3/ping")
        assert resp.status == 200
        assert sim.stats["rest_requests"] == 1
    assert trap.accepted == 0, trap.first_lines


@pytest.mark.parametrize("backend", BACKENDS)
async def test_a_feed_ignores_environment_proxies(backend: str, trap: Trap) -> None:
    """WebSocket stream and REST snapshot (Binance book sync) both go direct."""
    async with _binance() as sim:
        ropts = RuntimeOptions(transport=TransportOptions(backend=backend))
        async with gapless.connect(
            binance.book("BTCUSDT"),
            urls={"binance": sim.ws_url, "binance_rest": sim.rest_url},
            binance=BinanceOptions(subscribe_ack_timeout_s=3.0, snapshot_timeout_s=5.0),
            runtime=ropts,
        ) as feed:
            async with asyncio.timeout(15):
                async for ev in feed:
                    if isinstance(ev, BookSnapshot):
                        break
        assert sim.stats["connections"] >= 1
        assert sim.stats["snapshots"] >= 1
    assert trap.accepted == 0, trap.first_lines


# --------------------------------------------------------------------------- explicit proxy


@pytest.mark.parametrize("backend", BACKENDS)
async def test_an_explicit_proxy_carries_the_feed_websocket_and_rest(
    backend: str, trap: Trap
) -> None:
    """``TransportOptions.proxy`` set: the WebSocket is tunnelled (CONNECT) and
    the feed's REST snapshot goes through the same proxy (absolute-form GET);
    the environment's proxy is still not used."""
    events: list[Event] = []
    async with _binance() as sim, _http_proxy() as (proxy_port, seen):
        transport = TransportOptions(backend=backend, proxy=f"http://127.0.0.1:{proxy_port}")
        async with gapless.connect(
            binance.book("BTCUSDT"),
            urls={"binance": sim.ws_url, "binance_rest": sim.rest_url},
            binance=BinanceOptions(subscribe_ack_timeout_s=3.0, snapshot_timeout_s=5.0),
            runtime=RuntimeOptions(transport=transport),
        ) as feed:
            async with asyncio.timeout(15):
                async for ev in feed:
                    events.append(ev)
                    if isinstance(ev, BookSnapshot):
                        break
    target = f"127.0.0.1:{sim.port}".encode()
    assert f"CONNECT {target.decode()} HTTP/1.1".encode() in seen, seen
    assert any(line.startswith(b"GET http://" + target + b"/api/v3/depth") for line in seen), seen
    assert trap.accepted == 0, trap.first_lines


async def test_an_explicit_rest_proxy_is_used_for_http_and_https(trap: Trap) -> None:
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)

    async def process_request(conn: ServerConnection, req: Request) -> Response:
        body = b'{"ok":true}'
        headers = Headers({"Content-Type": "application/json", "Content-Length": str(len(body))})
        return Response(200, "OK", headers, body)

    async def no_ws(ws: ServerConnection) -> None:  # pragma: no cover - REST only
        await ws.close()

    tls = await serve(no_ws, "127.0.0.1", 0, ssl=server_ctx, process_request=process_request)
    tls_port = next(iter(tls.sockets)).getsockname()[1]
    try:
        async with _binance() as sim, _http_proxy() as (proxy_port, seen):
            opts = RestOptions(proxy=f"http://127.0.0.1:{proxy_port}", ssl_context=client_ctx)
            async with RestClient(opts) as rest:
                plain = await rest.request("GET", f"{sim.rest_url}/api/v3/ping")
                secure = await rest.request("GET", f"https://127.0.0.1:{tls_port}/x")
    finally:
        tls.close()
        await tls.wait_closed()
    assert plain.status == 200
    assert secure.status == 200
    assert secure.body == b'{"ok":true}'
    assert seen == [
        f"GET http://127.0.0.1:{sim.port}/api/v3/ping HTTP/1.1".encode(),
        f"CONNECT 127.0.0.1:{tls_port} HTTP/1.1".encode(),
    ]
    assert trap.accepted == 0, trap.first_lines


def test_a_proxy_rest_cannot_use_is_refused_rather_than_bypassed() -> None:
    """aiohttp has no SOCKS support: a feed that needs REST (Binance snapshots)
    refuses such a proxy at connect() instead of sending REST direct. A feed
    without REST (Kraken public) takes it (picows/websockets tunnel SOCKS)."""
    socks = RuntimeOptions(transport=TransportOptions(proxy="socks5://127.0.0.1:1080"))
    with pytest.raises(ConfigError, match="'socks5' proxy"):
        gapless.connect(binance.book("BTCUSDT"), runtime=socks)
    gapless.connect(kraken.book("BTC/USD"), runtime=socks)  # no REST: accepted
