"""Helpers for the simulator tests: a plain ``websockets`` client, a raw HTTP/1.1
client and a Decimal reference book.

Nothing here imports gapless client code; the reference checksum is a
separate, deliberately naive implementation of protocols.md §1.7. The venue
kits (``test_sim_binance_kit``, ``test_sim_kucoin_kit``) build on these.
"""

from __future__ import annotations

import asyncio
import calendar
import json
import re
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

RFC3339_US = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


def tok(value: Decimal, prec: int) -> str:
    return f"{value:.{prec}f}".replace(".", "").lstrip("0")


def ref_checksum(
    bids: dict[Decimal, Decimal], asks: dict[Decimal, Decimal], pp: int, qp: int
) -> int:
    """protocols.md §1.7 reference sketch, verbatim in spirit (Decimal, sorted, top 10)."""
    a = sorted(asks.items())[:10]
    b = sorted(bids.items(), key=lambda x: -x[0])[:10]
    s = "".join(tok(p, pp) + tok(q, qp) for p, q in a)
    s += "".join(tok(p, pp) + tok(q, qp) for p, q in b)
    return zlib.crc32(s.encode()) & 0xFFFFFFFF


class RefBook:
    """A client-side book at one depth: apply, truncate, checksum (Decimal throughout)."""

    def __init__(self, depth: int, pp: int, qp: int) -> None:
        self.depth = depth
        self.pp = pp
        self.qp = qp
        self.bids: dict[Decimal, Decimal] = {}
        self.asks: dict[Decimal, Decimal] = {}

    def load(self, data: dict[str, Any]) -> None:
        self.bids = {lv["price"]: lv["qty"] for lv in data["bids"]}
        self.asks = {lv["price"]: lv["qty"] for lv in data["asks"]}

    def apply(self, data: dict[str, Any]) -> None:
        for side, levels in ((self.bids, data["bids"]), (self.asks, data["asks"])):
            for lv in levels:
                if lv["qty"] == 0:
                    side.pop(lv["price"], None)
                else:
                    side[lv["price"]] = lv["qty"]
        for side, rev in ((self.bids, True), (self.asks, False)):
            keep = set(sorted(side, reverse=rev)[: self.depth])
            for k in [k for k in side if k not in keep]:
                del side[k]

    def checksum(self) -> int:
        return ref_checksum(self.bids, self.asks, self.pp, self.qp)

    def as_text(self) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        bids = [
            (f"{p:.{self.pp}f}", f"{self.bids[p]:.{self.qp}f}")
            for p in sorted(self.bids, reverse=True)
        ]
        asks = [(f"{p:.{self.pp}f}", f"{self.asks[p]:.{self.qp}f}") for p in sorted(self.asks)]
        return bids, asks


def loads(text: str | bytes) -> Any:
    """Parse a frame with Decimal numbers (never floats)."""
    return json.loads(text, parse_float=Decimal)


def sub(
    channel: str,
    symbols: list[str] | None = None,
    req_id: int | None = None,
    method: str = "subscribe",
    **params: Any,
) -> str:
    p: dict[str, Any] = {"channel": channel, **params}
    if symbols is not None:
        p["symbol"] = symbols
    msg: dict[str, Any] = {"method": method, "params": p}
    if req_id is not None:
        msg["req_id"] = req_id
    return json.dumps(msg)


async def recv(ws: ClientConnection, limit_s: float = 3.0) -> Any:
    async with asyncio.timeout(limit_s):
        return loads(await ws.recv())


async def recv_until(
    ws: ClientConnection, pred: Callable[[Any], bool], limit_s: float = 3.0
) -> tuple[Any, list[Any]]:
    """Receive until ``pred(msg)``; return (that message, everything before it)."""
    seen: list[Any] = []
    async with asyncio.timeout(limit_s):
        while True:
            m = loads(await ws.recv())
            if pred(m):
                return m, seen
            seen.append(m)


async def collect(ws: ClientConnection, seconds: float) -> list[str]:
    """Raw frames received during ``seconds``."""
    out: list[str] = []
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while True:
        left = end - loop.time()
        if left <= 0:
            return out
        try:
            async with asyncio.timeout(left):
                m = await ws.recv()
        except TimeoutError:
            return out
        out.append(m if isinstance(m, str) else m.decode())


@dataclass
class HttpResponse:
    status: int
    reason: str
    headers: dict[str, str]
    body: bytes
    eof_after_body: bool | None = None  # None unless the exchange read on to the end

    def json(self) -> Any:
        return json.loads(self.body)


async def http_exchange(
    host: str,
    port: int,
    method: str,
    path: str,
    headers: Mapping[str, str],
    *,
    limit_s: float = 5.0,
    read_to_eof: bool = False,
) -> HttpResponse:
    """One HTTP/1.1 request on a fresh ``asyncio.open_connection`` (no HTTP library), so a
    response is checked as the bytes any client would read: status line, headers, then
    exactly ``Content-Length`` body bytes (never chunked). ``read_to_eof`` reads on to see
    whether the server closes right after the body."""
    async with asyncio.timeout(limit_s):
        reader, writer = await asyncio.open_connection(host, port)
        try:
            head = f"{method} {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
            head += "".join(f"{name}: {value}\r\n" for name, value in headers.items())
            writer.write((head + "\r\n").encode("ascii"))
            await writer.drain()
            status_line = (await reader.readline()).decode("ascii").rstrip("\r\n")
            proto, code, reason = status_line.split(" ", 2)
            assert proto == "HTTP/1.1"
            fields: dict[str, str] = {}
            while True:
                line = (await reader.readline()).decode("latin-1").rstrip("\r\n")
                if not line:
                    break
                name, _, value = line.partition(":")
                fields[name.strip().lower()] = value.strip()
            assert "transfer-encoding" not in fields
            body = await reader.readexactly(int(fields["content-length"]))
            eof = (await reader.read()) == b"" if read_to_eof else None
        finally:
            writer.close()
            await writer.wait_closed()
    return HttpResponse(int(code), reason, fields, body, eof)


def is_ack(m: Any, channel: str | None = None) -> bool:
    return (
        isinstance(m, dict)
        and m.get("method") in ("subscribe", "unsubscribe")
        and (channel is None or m.get("result", {}).get("channel") == channel)
    )


def ts_us(text: str) -> int:
    """RFC 3339 microsecond timestamp -> epoch microseconds (exact, no floats)."""
    dt = datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ")
    return calendar.timegm(dt.timetuple()) * 1_000_000 + dt.microsecond


async def closed(ws: ClientConnection, limit_s: float = 5.0) -> ConnectionClosed:
    """Read until the connection closes; return the ``ConnectionClosed`` it ended with."""
    try:
        async with asyncio.timeout(limit_s):
            while True:
                await ws.recv()
    except ConnectionClosed as exc:
        return exc
