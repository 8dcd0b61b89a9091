"""The transport over real loopback sockets, the same behaviour for both backends.

Each test runs against the picows and the websockets backend: frames and close
codes, abort, too-large frames, fragments, the handshake's HTTP status,
connect failures, TLS verification, server pings, proxies and flow control.
Servers are websockets servers, or a raw socket server where a test needs
frames websockets would not send.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import logging
import re
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from http import HTTPStatus

import pytest
import trustme
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from gapless.errors import ConfigError, HandshakeRejected, TransportError
from gapless.runtime import transport as transport_mod
from gapless.runtime.transport import (
    HAVE_PICOWS,
    HIGH_WATER,
    Closed,
    TransportOptions,
    WsConnection,
    open_connection,
    resolve_backend,
)

BACKENDS = [
    pytest.param(
        "picows", marks=pytest.mark.skipif(not HAVE_PICOWS, reason="picows not installed")
    ),
    "websockets",
]

Handler = Callable[[ServerConnection], Awaitable[None]]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _opts(backend: str, **kw: object) -> TransportOptions:
    kw.setdefault("connect_timeout_s", 3.0)
    kw.setdefault("close_timeout_s", 1.0)
    return TransportOptions(backend=backend, **kw)  # type: ignore[arg-type]


@contextlib.asynccontextmanager
async def _server(handler: Handler, **kw: object) -> AsyncIterator[tuple[Server, int]]:
    server = await serve(handler, "127.0.0.1", 0, compression=None, **kw)  # type: ignore[arg-type]
    port = next(iter(server.sockets)).getsockname()[1]
    try:
        yield server, port
    finally:
        server.close()
        await server.wait_closed()


async def _drain(conn: WsConnection, limit_s: float = 5.0) -> list[str | bytes]:
    out: list[str | bytes] = []
    async with asyncio.timeout(limit_s):
        async for frame in conn.frames():
            out.append(frame)
    return out


async def _wait_closed(ws: ServerConnection) -> None:
    with contextlib.suppress(ConnectionClosed):
        await ws.wait_closed()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


StreamHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def _tcp_server(handle: StreamHandler) -> AsyncIterator[int]:
    """A plain TCP server on 127.0.0.1; yields its port. On exit its connections are
    dropped and its handlers awaited, so none outlives the test's event loop."""
    tasks: set[asyncio.Task[object]] = set()
    writers: set[asyncio.StreamWriter] = set()

    async def tracked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        writers.add(writer)
        try:
            await handle(reader, writer)
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(tracked, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for writer in writers:
            writer.transport.abort()  # a handler blocked on a read sees EOF
        async with asyncio.timeout(5):
            await asyncio.gather(*tasks)
        await server.wait_closed()


# --------------------------------------------------------------------------- frames, close


async def test_frames_then_peer_close_with_code_and_reason(
    backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    seen: list[str | None] = []

    async def handler(ws: ServerConnection) -> None:
        assert ws.request is not None
        seen.append(ws.request.headers.get("User-Agent"))
        await ws.send('{"a":1}')
        await ws.send(b"\x00\x01\xff")
        await ws.send("zürich")
        await ws.close(4001, "maintenance")

    async with _server(handler) as (_, port):
        conn = await open_connection(f"ws://127.0.0.1:{port}/v2?token=SECRET123", _opts(backend))
        assert conn.backend == backend
        await asyncio.sleep(0.1)  # frames queued before the close are still yielded
        frames = await _drain(conn)
    assert frames == ['{"a":1}', b"\x00\x01\xff", "zürich"]
    assert conn.closed == Closed(4001, "maintenance", too_large=False)
    assert seen == ["gapless"]
    client_records = [r for r in caplog.records if not r.name.startswith("websockets.server")]
    assert not [r for r in client_records if "SECRET123" in r.getMessage()]
    picows_records = [r for r in caplog.records if r.name.startswith("gapless.transport.picows")]
    assert all(r.levelno >= logging.WARNING for r in picows_records)


async def test_local_close_sends_code_and_reason_and_send_then_fails(backend: str) -> None:
    got: list[tuple[int | None, str | None]] = []

    async def handler(ws: ServerConnection) -> None:
        async for msg in ws:
            assert isinstance(msg, str)
            await ws.send(f"echo:{msg}")
        got.append((ws.close_code, ws.close_reason))

    async with _server(handler) as (_, port):
        conn = await open_connection(f"ws://127.0.0.1:{port}/", _opts(backend))
        await conn.send("hello")
        frames = conn.frames()
        assert await anext(frames) == "echo:hello"
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        await conn.close(1000, "gapless reconnecting")
        assert loop.time() - t0 < 0.9  # the peer answered; no close timeout
        rest = [f async for f in frames]
        with pytest.raises(TransportError, match="send on closed connection"):
            await conn.send("late")
        await conn.close()  # a second close is harmless
        await asyncio.sleep(0.05)
    assert rest == []
    assert conn.closed is not None
    assert conn.closed.code == 1000
    assert conn.closed.reason == "gapless reconnecting"
    assert not conn.closed.too_large
    assert got == [(1000, "gapless reconnecting")]


async def test_close_is_bounded_when_the_peer_never_answers(backend: str) -> None:
    """A peer that ignores our close frame: close() returns after close_timeout_s."""
    async with _tcp_server(_raw_handler([], hang_up=False)) as port:
        conn = await open_connection(f"ws://127.0.0.1:{port}/", _opts(backend, close_timeout_s=0.3))
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        await conn.close(1000, "bye")
        assert loop.time() - t0 < 2.0
        assert await _drain(conn) == []
    assert conn.closed is not None
    assert conn.closed.code == 1000  # what we sent: nothing came back


async def test_abort_ends_the_stream_with_1006(backend: str) -> None:
    async def handler(ws: ServerConnection) -> None:
        await ws.send("one")
        await _wait_closed(ws)

    async with _server(handler) as (_, port):
        conn = await open_connection(f"ws://127.0.0.1:{port}/", _opts(backend))
        frames = conn.frames()
        assert await anext(frames) == "one"
        conn.abort()
        async with asyncio.timeout(3):
            assert [f async for f in frames] == []
    assert conn.closed == Closed(1006, "connection lost without a close frame")


async def test_peer_dropping_the_tcp_connection_is_1006(backend: str) -> None:
    async def handler(ws: ServerConnection) -> None:
        await ws.send("one")
        assert ws.transport is not None
        ws.transport.abort()

    async with _server(handler) as (_, port):
        conn = await open_connection(f"ws://127.0.0.1:{port}/", _opts(backend))
        assert await _drain(conn) == ["one"]
    assert conn.closed == Closed(1006, "connection lost without a close frame")


@pytest.mark.parametrize("fragmented", [False, True], ids=["frame", "fragments"])
async def test_a_too_large_message_closes_with_1009(backend: str, fragmented: bool) -> None:
    async def handler(ws: ServerConnection) -> None:
        await ws.send("small")
        if fragmented:
            await ws.send(["x" * 600, "x" * 600])  # each fragment fits, the message doesn't
        else:
            await ws.send("x" * 2000)
        await ws.send("never delivered")
        await _wait_closed(ws)

    async with _server(handler) as (_, port):
        conn = await open_connection(
            f"ws://127.0.0.1:{port}/", _opts(backend, max_frame_bytes=1000)
        )
        frames = await _drain(conn)
    assert frames == ["small"]
    assert conn.closed is not None
    assert conn.closed.code == 1009
    assert conn.closed.too_large


async def test_fragmented_messages_are_reassembled(backend: str) -> None:
    async def handler(ws: ServerConnection) -> None:
        await ws.send(["ab", "cd", "é!"])
        await ws.send([b"\x01", b"\x02\x03"])
        await ws.send("after")
        await ws.close()

    async with _server(handler) as (_, port):
        conn = await open_connection(f"ws://127.0.0.1:{port}/", _opts(backend))
        frames = await _drain(conn)
    assert frames == ["abcdé!", b"\x01\x02\x03", "after"]
    assert conn.closed == Closed(1000, "")


async def test_invalid_utf8_in_a_text_frame_closes_with_1007(backend: str) -> None:
    async def handler(ws: ServerConnection) -> None:
        await ws.send("fine")
        await ws.send(b"\xff\xfe{}", text=True)
        await _wait_closed(ws)

    async with _server(handler) as (_, port):
        conn = await open_connection(f"ws://127.0.0.1:{port}/", _opts(backend))
        frames = await _drain(conn)
    assert frames == ["fine"]
    assert conn.closed is not None
    assert conn.closed.code == 1007
    assert not conn.closed.too_large


# --------------------------------------------------------------------------- raw server


_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def _raw_frame(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    assert len(payload) < 126
    return bytes([(0x80 if fin else 0) | opcode, len(payload)]) + payload


def _raw_handler(frames: list[bytes], *, hang_up: bool = True) -> StreamHandler:
    """Completes the upgrade and writes ``frames`` verbatim. Then, with ``hang_up``,
    it closes the TCP connection when the client sends anything (its close frame:
    the clients here send nothing else); without, it ignores the client until EOF."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        found = re.search(rb"(?i)sec-websocket-key:\s*(\S+)", head)
        assert found is not None
        accept = base64.b64encode(hashlib.sha1(found.group(1) + _GUID).digest())
        writer.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
        )
        for frame in frames:
            writer.write(frame)
        await writer.drain()
        while await reader.read(65536):
            if hang_up:
                break

    return handle


@pytest.mark.parametrize(
    ("frames", "expected_frames", "code"),
    [
        # a continuation frame with no message to continue: protocol error
        ([_raw_frame(0x1, b"ok"), _raw_frame(0x0, b"stray")], ["ok"], 1002),
        # a new message inside a fragmented one: protocol error
        ([_raw_frame(0x1, b"a", fin=False), _raw_frame(0x1, b"b")], [], 1002),
        # a close frame without a status code is reported as 1005
        ([_raw_frame(0x1, b"ok"), _raw_frame(0x8, b"")], ["ok"], 1005),
    ],
    ids=["stray-continuation", "interleaved-message", "empty-close"],
)
async def test_protocol_edge_cases(
    backend: str, frames: list[bytes], expected_frames: list[str], code: int
) -> None:
    async with _tcp_server(_raw_handler(frames)) as port:
        conn = await open_connection(f"ws://127.0.0.1:{port}/", _opts(backend, close_timeout_s=0.3))
        assert await _drain(conn) == expected_frames
    assert conn.closed is not None
    assert conn.closed.code == code


# --------------------------------------------------------------------------- handshake


def _reject(status: int, retry_after: str | None) -> Callable[..., Response]:
    def process_request(connection: ServerConnection, request: Request) -> Response:
        headers = Headers()
        if retry_after is not None:
            headers["Retry-After"] = retry_after
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = "Unknown"
        headers["Content-Length"] = "3"
        return Response(status, phrase, headers, b"no\n")

    return process_request


async def _never(ws: ServerConnection) -> None:
    raise AssertionError("the handshake should have been rejected")


@pytest.mark.parametrize(
    ("status", "retry_after", "expected"),
    [(429, "7", 7.0), (503, None, None), (418, "1e9", 86_400.0), (520, "soon", None)],
)
async def test_handshake_status_becomes_handshake_rejected(
    backend: str, status: int, retry_after: str | None, expected: float | None
) -> None:
    async with _server(_never, process_request=_reject(status, retry_after)) as (_, port):
        with pytest.raises(HandshakeRejected) as info:
            await open_connection(f"ws://127.0.0.1:{port}/?token=SECRET", _opts(backend))
    assert info.value.status == status
    assert info.value.retry_after_s == expected


async def test_connect_refused_is_a_transport_error_without_the_query(backend: str) -> None:
    url = f"ws://127.0.0.1:{_free_port()}/ws?token=SECRET123&connectId=abc"
    with pytest.raises(TransportError) as info:
        await open_connection(url, _opts(backend))
    text = str(info.value)
    assert "SECRET123" not in text
    assert "connectId" not in text
    assert f"ws://127.0.0.1:{url.split(':')[2].split('/')[0]}/ws" in text


async def test_connect_timeout_when_the_server_never_answers(backend: str) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()

    loop = asyncio.get_running_loop()
    async with _tcp_server(silent) as port:
        t0 = loop.time()
        with pytest.raises(TransportError) as info:
            await open_connection(
                f"ws://127.0.0.1:{port}/?token=SECRET", _opts(backend, connect_timeout_s=0.3)
            )
        assert loop.time() - t0 < 2.0
    assert "SECRET" not in str(info.value)


async def test_unknown_backend_and_url_scheme_are_config_errors() -> None:
    with pytest.raises(ConfigError):
        TransportOptions(backend="aiohttp")
    with pytest.raises(ConfigError):
        await open_connection("http://127.0.0.1:1/", TransportOptions())


def test_auto_prefers_picows_and_falls_back_for_unsupported_proxies(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    auto = TransportOptions()
    assert resolve_backend(auto) == ("picows" if HAVE_PICOWS else "websockets")
    assert resolve_backend(TransportOptions(backend="websockets")) == "websockets"
    if HAVE_PICOWS:
        with_http_proxy = TransportOptions(proxy="http://127.0.0.1:3128")
        assert resolve_backend(with_http_proxy) == "picows"
        assert resolve_backend(TransportOptions(proxy="socks5h://127.0.0.1:1080")) == "websockets"
    monkeypatch.setattr(transport_mod, "HAVE_PICOWS", False)
    assert resolve_backend(auto) == "websockets"
    with pytest.raises(ConfigError, match="not installed"):
        resolve_backend(TransportOptions(backend="picows"))


# --------------------------------------------------------------------------- TLS


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def _server_ctx(ca: trustme.CA, *names: str) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*names).configure_cert(ctx)
    return ctx


def _client_ctx(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    return ctx


async def _hello(ws: ServerConnection) -> None:
    await ws.send("hello over tls")
    await ws.close()


async def test_tls_verification_is_on_and_a_supplied_ca_is_used(
    backend: str, ca: trustme.CA
) -> None:
    async with _server(_hello, ssl=_server_ctx(ca, "127.0.0.1")) as (_, port):
        url = f"wss://127.0.0.1:{port}/v2"
        # the default context does not trust the test CA
        with pytest.raises(TransportError, match="CERTIFICATE_VERIFY_FAILED"):
            await open_connection(url, _opts(backend))
        conn = await open_connection(url, _opts(backend, ssl_context=_client_ctx(ca)))
        assert await _drain(conn) == ["hello over tls"]
        assert conn.closed == Closed(1000, "")


async def test_tls_hostname_is_verified(backend: str, ca: trustme.CA) -> None:
    async with _server(_hello, ssl=_server_ctx(ca, "exchange.example")) as (_, port):
        with pytest.raises(TransportError, match="CERTIFICATE_VERIFY_FAILED"):
            await open_connection(
                f"wss://127.0.0.1:{port}/", _opts(backend, ssl_context=_client_ctx(ca))
            )


# --------------------------------------------------------------------------- pings, proxy


async def test_server_pings_are_answered(backend: str) -> None:
    async def handler(ws: ServerConnection) -> None:
        for i in range(3):
            pong = await ws.ping(f"p{i}".encode())
            await asyncio.wait_for(pong, 2.0)  # resolves only when our pong arrives
            await ws.send(f"pong {i} received")
        await ws.close()

    async with _server(handler, ping_interval=None) as (_, port):
        conn = await open_connection(f"ws://127.0.0.1:{port}/", _opts(backend))
        frames = await _drain(conn)
    assert frames == [f"pong {i} received" for i in range(3)]
    assert conn.closed == Closed(1000, "")


async def test_our_ping_returns_when_the_pong_arrives(backend: str) -> None:
    """ping() is the watchdog's half-open probe: it resolves on the peer's pong,
    and a closed connection is a TransportError (not a hang)."""

    async def handler(ws: ServerConnection) -> None:
        await ws.send("ready")
        await _wait_closed(ws)

    async with _server(handler, ping_interval=None) as (_, port):
        conn = await open_connection(f"ws://127.0.0.1:{port}/", _opts(backend))
        frames = conn.frames()
        assert await anext(frames) == "ready"
        pump = asyncio.create_task(_drain(conn))  # the reader runs, as the supervisor's does
        for _ in range(3):
            async with asyncio.timeout(2.0):
                await conn.ping()
        conn.abort()
        await pump
        with pytest.raises(TransportError):
            async with asyncio.timeout(2.0):
                await conn.ping()


async def test_our_ping_waits_while_the_peer_is_silent(backend: str) -> None:
    """A peer that never answers (a raw TCP server that completed the handshake and
    then discards every byte) never pongs: ping() only ends by the caller's deadline."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await reader.readuntil(b"\r\n\r\n")
        key = next(
            line.split(b":", 1)[1].strip()
            for line in request.split(b"\r\n")
            if line.lower().startswith(b"sec-websocket-key")
        )
        accept = base64.b64encode(
            hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest()
        )
        writer.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
        )
        await writer.drain()
        while await reader.read(4096):  # half-open: bytes go nowhere, nothing answers
            pass

    async with _tcp_server(handler) as port:
        conn = await open_connection(f"ws://127.0.0.1:{port}/", _opts(backend))
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.5):
                await conn.ping()
        conn.abort()


@contextlib.asynccontextmanager
async def _connect_proxy() -> AsyncIterator[tuple[int, list[bytes]]]:
    """A minimal HTTP CONNECT proxy; yields its port and the CONNECT targets seen."""
    targets: list[bytes] = []

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        method, target, _ = head.split(b"\r\n", 1)[0].split(b" ", 2)
        assert method == b"CONNECT"
        targets.append(target)
        host, port = target.rsplit(b":", 1)
        up_reader, up_writer = await asyncio.open_connection(host.decode(), int(port))
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    async with _tcp_server(handle) as port:
        yield port, targets


@pytest.mark.parametrize("tls", [False, True], ids=["ws", "wss"])
async def test_an_explicit_http_proxy_is_used(backend: str, ca: trustme.CA, tls: bool) -> None:
    ctx = _server_ctx(ca, "127.0.0.1") if tls else None
    async with _server(_hello, ssl=ctx) as (_, port), _connect_proxy() as (proxy_port, targets):
        opts = _opts(
            backend,
            proxy=f"http://127.0.0.1:{proxy_port}",
            ssl_context=_client_ctx(ca) if tls else None,
        )
        scheme = "wss" if tls else "ws"
        conn = await open_connection(f"{scheme}://127.0.0.1:{port}/", opts)
        frames = await _drain(conn)
    assert frames == ["hello over tls"]
    assert targets == [f"127.0.0.1:{port}".encode()]


# --------------------------------------------------------------------------- flow control

N_FLOOD = 100_000


def _one_read_of_frames(frame_bytes: int) -> int:
    """How many frames one read can carry at most: picows' read buffer doubles
    whenever a read fills it, up to what the kernel holds for the socket."""
    try:
        with open("/proc/sys/net/ipv4/tcp_rmem") as fh:
            rmem_max = int(fh.read().split()[2])
    except (OSError, IndexError, ValueError):
        rmem_max = 6 * 2**20  # Linux's default
    return rmem_max // frame_bytes + 1


async def test_a_slow_consumer_pushes_back_on_the_server(backend: str) -> None:
    """100k frames (about 100 MB, more than the kernel buffers hold) to a consumer
    that stops reading: the server blocks, the client's queue stays bounded, and
    once the consumer resumes every frame arrives in order."""
    sent = 0
    pad = "x" * 1000
    one_read = _one_read_of_frames(len(f"{0:06d}{pad}"))

    async def handler(ws: ServerConnection) -> None:
        nonlocal sent
        for i in range(N_FLOOD):
            await ws.send(f"{i:06d}{pad}")
            sent += 1
        await ws.close()

    async with _server(handler, write_limit=65536) as (_, port):
        conn = await open_connection(f"ws://127.0.0.1:{port}/", _opts(backend))
        frames = conn.frames()
        first = await anext(frames)
        assert isinstance(first, str)
        assert first.startswith("000000")
        queue = getattr(getattr(conn, "_listener", None), "queue", None)
        longest = 0
        for _ in range(40):  # the consumer sleeps; the socket fills up
            await asyncio.sleep(0.01)
            if queue is not None:
                longest = max(longest, len(queue))
        stalled_at = sent
        await asyncio.sleep(0.1)
        assert sent == stalled_at < N_FLOOD  # the server is blocked
        if queue is not None:  # picows: reading is paused at the high-water mark
            assert conn._listener.read_paused  # type: ignore[attr-defined]
            assert HIGH_WATER < longest <= HIGH_WATER + one_read
        count = 1
        async with asyncio.timeout(30):
            async for frame in frames:
                assert isinstance(frame, str)
                assert frame[:6] == f"{count:06d}"
                count += 1
                if queue is not None and count % 997 == 0:
                    longest = max(longest, len(queue))
    assert count == N_FLOOD
    if queue is not None:  # past the mark by one read at most (the pause acts on the next)
        assert longest <= HIGH_WATER + one_read
    assert conn.closed == Closed(1000, "")
