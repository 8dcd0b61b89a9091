"""Hostile input at the transport: deflate bombs, oversized REST bodies (issue 6).

- **permessage-deflate** (``TransportOptions.compression``, websockets backend
  only): a compressed message that inflates past ``max_frame_bytes`` is cut off
  at the limit (websockets inflates with ``max_length``), never held whole; the
  connection closes with 1009 and the supervisor reports a ``BadFrame`` and
  reconnects. picows has no permessage-deflate: it never offers it, and a
  server that compresses anyway gets its frame refused, never inflated.
- **REST body** (``RestOptions.max_body_bytes``; a feed's
  ``TransportOptions.max_rest_body_bytes``): read in chunks and refused past the
  limit, also after gzip decoding (a gzip bomb); the supervisor turns the refusal
  into a ``BadFrame`` (the Binance integration test shows the resync).

Servers are raw asyncio sockets where a test needs frames no library would
send (a compressed frame nobody negotiated), websockets servers otherwise.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gzip
import hashlib
import json
import re
import tracemalloc
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

import gapless
from gapless.events import BadFrame, ConnectionState, Event, Gap, Trade
from gapless.runtime.rest import RestClient, RestOptions, RestTooLarge
from gapless.runtime.supervisor import RuntimeOptions
from gapless.runtime.transport import HAVE_PICOWS, TransportOptions, open_connection
from gapless.venues import kraken
from gapless.venues.kraken.adapter import KrakenOptions

MiB = 1024 * 1024
BOMB_BYTES = 50 * MiB

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def _deflate_bomb(size: int = BOMB_BYTES) -> bytes:
    """A permessage-deflate payload (RFC 7692 §7.2.1: raw deflate, the final
    ``00 00 ff ff`` removed) inflating to ``size`` zeros, built without ever
    holding them: about 1/1000 of ``size``."""
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    chunk = b"0" * MiB
    parts = [comp.compress(chunk) for _ in range(size // MiB)]
    parts.append(comp.flush(zlib.Z_SYNC_FLUSH))
    payload = b"".join(parts)
    assert payload.endswith(b"\x00\x00\xff\xff")
    return payload[:-4]


BOMB = _deflate_bomb()


def _frame(payload: bytes, *, rsv1: bool = False, opcode: int = 0x1) -> bytes:
    head = 0x80 | opcode | (0x40 if rsv1 else 0)
    n = len(payload)
    if n < 126:
        return bytes([head, n]) + payload
    if n < 1 << 16:
        return bytes([head, 126]) + n.to_bytes(2, "big") + payload
    return bytes([head, 127]) + n.to_bytes(8, "big") + payload


Handle = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def _tcp_server(handle: Handle) -> AsyncIterator[int]:
    tasks: set[asyncio.Task[Any]] = set()

    async def tracked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
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
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()


def _bomb_server(offers: list[bytes | None]) -> Handle:
    """Upgrades (negotiating permessage-deflate only if the client offers it), then
    sends "small", the bomb as a compressed message (RSV1) whether negotiated or
    not, and "after"; hangs up when the client sends anything (its close frame)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        key = re.search(rb"(?i)sec-websocket-key:\s*(\S+)", head)
        assert key is not None
        offer = re.search(rb"(?i)sec-websocket-extensions:\s*([^\r]*)", head)
        offers.append(offer.group(1) if offer else None)
        accept = base64.b64encode(hashlib.sha1(key.group(1) + _GUID).digest())
        ext = b"Sec-WebSocket-Extensions: permessage-deflate\r\n" if offer else b""
        writer.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + accept + b"\r\n" + ext + b"\r\n"
        )
        writer.write(_frame(b"small") + _frame(BOMB, rsv1=True) + _frame(b"after"))
        await writer.drain()
        await reader.read(1)  # the client's close frame (or EOF): hang up

    return handle


async def _receive(backend: str, compression: bool, port: int) -> tuple[list[Any], Any, int]:
    """Frames, how the connection closed, and the peak of Python allocations meanwhile."""
    opts = TransportOptions(
        backend=backend, compression=compression, max_frame_bytes=MiB, close_timeout_s=0.5
    )
    tracemalloc.start()
    try:
        conn = await open_connection(f"ws://127.0.0.1:{port}/", opts)
        async with asyncio.timeout(10):
            frames = [f async for f in conn.frames()]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return frames, conn.closed, peak


async def test_a_deflate_bomb_is_cut_off_at_max_frame_bytes() -> None:
    """websockets with permessage-deflate: 50 MiB of zeros in a 51 KB message. The
    client inflates at most ``max_frame_bytes`` (1 MiB here) of it, refuses it with
    1009, and what arrived before it is delivered."""
    offers: list[bytes | None] = []
    async with _tcp_server(_bomb_server(offers)) as port:
        frames, closed, peak = await _receive("websockets", True, port)
    (offer,) = offers
    assert offer is not None
    assert offer.startswith(b"permessage-deflate")
    assert frames == ["small"]
    assert closed is not None
    assert closed.code == 1009
    assert closed.too_large
    assert len(BOMB) < BOMB_BYTES // 500
    assert peak < 8 * MiB, f"{peak / MiB:.1f} MiB held for a 50 MiB bomb"


@pytest.mark.parametrize(
    ("backend", "compression"),
    [
        pytest.param("picows", True, marks=pytest.mark.skipif(not HAVE_PICOWS, reason="no picows")),
        ("websockets", False),
    ],
)
async def test_without_permessage_deflate_a_compressed_frame_is_refused_not_inflated(
    backend: str, compression: bool
) -> None:
    """picows has no permessage-deflate, so it never offers it (whatever
    ``compression`` says); websockets with ``compression=False`` neither. A server
    that sends a compressed (RSV1) frame anyway: websockets refuses the reserved bit
    (1002); picows hands over the raw payload, which is not UTF-8 text, so the
    connection closes with 1007 (a payload that happened to be text would reach the
    decoder as garbage: a BadFrame). Never more than the 51 KB on the wire is held."""
    offers: list[bytes | None] = []
    async with _tcp_server(_bomb_server(offers)) as port:
        frames, closed, peak = await _receive(backend, compression, port)
    assert offers == [None]
    assert frames == ["small"]
    assert closed is not None
    assert closed.code in (1002, 1007)
    assert not closed.too_large
    assert peak < 4 * MiB


# ------------------------------------------------------------------ through a feed


def _ack(req: dict[str, Any]) -> str:
    params = req["params"]
    return json.dumps(
        {
            "method": "subscribe",
            "result": {"channel": params["channel"], "symbol": params["symbol"][0]},
            "success": True,
            "time_in": "2023-10-06T17:35:55.000000Z",
            "time_out": "2023-10-06T17:35:55.000100Z",
            "req_id": req["req_id"],
        }
    )


def _trades(kind: str, *ids: int) -> str:
    """A §1.8 trade message (``snapshot``: the last trades, after a resubscribe)."""
    items = ",".join(
        '{"symbol":"BTC/USD","side":"buy","price":100.5,"qty":0.25,"ord_type":"limit",'
        f'"trade_id":{i},"timestamp":"2023-10-06T17:35:5{i}.000000Z"}}'
        for i in ids
    )
    return f'{{"channel":"trade","type":"{kind}","data":[{items}]}}'


async def test_a_deflate_bomb_through_a_feed_is_a_bad_frame_then_a_reconnect() -> None:
    """A Kraken trade feed on the websockets backend with compression: the first
    connection sends a trade, then a 50 MiB (inflated) message. The feed reports a
    BadFrame naming the limit, reconnects and carries on; the trade received before
    the bomb was delivered, and the one after it comes with the resubscription."""
    dials = 0

    async def handler(ws: ServerConnection) -> None:
        nonlocal dials
        dials += 1
        req = json.loads(await ws.recv())
        await ws.send(_ack(req))
        if dials == 1:
            await ws.send(_trades("update", 1))
            await ws.send("0" * BOMB_BYTES)  # compressed by the server: about 50 KB
            await ws.send(_trades("update", 2))  # never read: the client closed first
        else:  # the resubscription asks for a snapshot: the last trades
            assert req["params"]["snapshot"] is True
            await ws.send(_trades("snapshot", 1, 2))
        with contextlib.suppress(ConnectionClosed):
            await ws.wait_closed()

    async with serve(handler, "127.0.0.1", 0, compression="deflate", max_size=None) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        transport = TransportOptions(backend="websockets", compression=True, max_frame_bytes=MiB)
        events: list[Event] = []
        async with gapless.connect(
            kraken.trades("BTC/USD"),
            kraken=KrakenOptions(url=f"ws://127.0.0.1:{port}/"),
            runtime=RuntimeOptions(transport=transport),
        ) as feed:
            async with asyncio.timeout(20):
                async for ev in feed:
                    events.append(ev)
                    if isinstance(ev, ConnectionState) and ev.state == "LIVE" and dials == 2:
                        break
    trades = [e.trade_id for e in events if isinstance(e, Trade)]
    assert trades == [1, 2]
    (bad,) = [e for e in events if isinstance(e, BadFrame)]
    assert bad.reason == f"frame larger than {MiB} bytes"
    states = [e.state for e in events if isinstance(e, ConnectionState)]
    assert "RECONNECTING" in states
    assert states.count("LIVE") == 2
    # the resubscription's snapshot reaches back to trade 1: the outage is healed, and
    # the trade the bomb hid (2) is delivered once, with no gap to declare
    assert not [e for e in events if isinstance(e, Gap)]
    assert dials == 2


# ------------------------------------------------------------------ REST bodies


@contextlib.asynccontextmanager
async def _http(
    routes: dict[str, Callable[[web.Request], Awaitable[web.StreamResponse]]],
) -> AsyncIterator[str]:
    app = web.Application()
    for path, route in routes.items():
        app.router.add_get(path, route)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def test_a_gzip_bomb_body_is_refused_while_it_inflates() -> None:
    """``Content-Encoding: gzip`` of 50 MiB of zeros (about 50 KB on the wire): the
    body is refused at ``max_body_bytes`` after decoding, and never held whole."""
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)  # gzip framing
    parts = [comp.compress(b"0" * MiB) for _ in range(BOMB_BYTES // MiB)]
    bomb = b"".join(parts) + comp.flush()
    assert gzip.decompress(bomb) == b"0" * BOMB_BYTES  # a valid gzip body

    async def route(_: web.Request) -> web.StreamResponse:
        return web.Response(body=bomb, headers={"Content-Encoding": "gzip"})

    async with _http({"/bomb": route}) as base:
        tracemalloc.start()
        try:
            async with RestClient(RestOptions(max_body_bytes=MiB)) as rest:
                with pytest.raises(RestTooLarge) as info:
                    await rest.request("GET", f"{base}/bomb")
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert info.value.limit == MiB
    assert MiB < info.value.read <= 2 * MiB  # stopped at the first chunk past the limit
    assert peak < 8 * MiB, f"{peak / MiB:.1f} MiB held for a 50 MiB gzip bomb"
