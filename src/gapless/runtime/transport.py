"""The one place gapless touches WebSocket sockets (websockets' asyncio client).

Choices (design.md §3, issue 2 item 5):

- TLS: ``wss://`` URLs use ``ssl.create_default_context()`` (certificate and
  hostname verification on) unless the caller passes its own context (e.g.
  one trusting a private CA). There is no switch that turns verification off.
- Proxies: websockets >= 15 reads ``HTTPS_PROXY``/``ALL_PROXY`` by default;
  gapless passes ``proxy=None`` so nothing is picked up implicitly. A proxy
  must be configured explicitly.
- Size: ``max_frame_bytes`` bounds a message after decompression
  (websockets' ``max_size``); a bigger frame closes the connection with 1009,
  which the supervisor reports as a bad frame and recovers from.
- Keepalive: websockets' own ping frames are off; liveness is the
  supervisor's dead-peer watchdog plus the venue's keepalive duty.
- The handshake's HTTP status (429 ban, 503 maintenance) becomes
  :class:`~gapless.errors.HandshakeRejected` with ``Retry-After``.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass

import websockets
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from gapless.errors import ConfigError, HandshakeRejected, TransportError

#: The websockets library dumps every frame at DEBUG, and private frames carry
#: tokens (Kraken ``params.token``) and signatures (Binance WS API): its
#: connection logger drops DEBUG records so a DEBUG run never writes them
#: (design.md §1.6). Our own logs never print frame text.
_WS_LOG = logging.getLogger("gapless.transport.websockets")
_WS_LOG.addFilter(lambda record: record.levelno >= logging.INFO)

__all__ = ["Closed", "TransportOptions", "WsConnection", "open_connection", "safe_url"]


@dataclass(frozen=True, slots=True)
class TransportOptions:
    connect_timeout_s: float = 10.0
    close_timeout_s: float = 2.0
    max_frame_bytes: int = 4 * 1024 * 1024
    compression: bool = True
    ssl_context: ssl.SSLContext | None = None
    proxy: str | None = None


@dataclass(frozen=True, slots=True)
class Closed:
    """How a connection ended."""

    code: int | None
    reason: str
    too_large: bool = False


class WsConnection:
    """A connected WebSocket: iterate frames, send text, close or abort."""

    def __init__(self, ws: ClientConnection) -> None:
        self._ws = ws
        self.closed: Closed | None = None

    async def frames(self) -> AsyncIterator[str | bytes]:
        """Yield frames until the connection ends; then ``self.closed`` says how."""
        try:
            async for message in self._ws:
                yield message
        except ConnectionClosed as exc:
            self._set_closed(exc)
            return
        self._set_closed(None)

    def _set_closed(self, exc: ConnectionClosed | None) -> None:
        proto = self._ws.protocol
        rcvd = proto.close_rcvd
        sent = proto.close_sent
        code = rcvd.code if rcvd is not None else (sent.code if sent is not None else 1006)
        reason = rcvd.reason if rcvd is not None else (sent.reason if sent is not None else "")
        too_large = sent is not None and sent.code == 1009
        if exc is not None and rcvd is None and sent is None:
            code = 1006
            reason = "connection lost without a close frame"
        self.closed = Closed(code=code, reason=reason, too_large=too_large)

    async def send(self, text: str) -> None:
        try:
            await self._ws.send(text)
        except ConnectionClosed as exc:
            raise TransportError(f"send on closed connection: {exc}") from None

    async def close(self, code: int = 1000, reason: str = "") -> None:
        try:
            await self._ws.close(code, reason)
        except Exception:  # closing must never raise into the supervisor
            self.abort()

    def abort(self) -> None:
        transport = self._ws.transport
        if transport is not None:
            transport.abort()


def safe_url(url: str) -> str:
    """``url`` without its query string (where venues put tokens: KuCoin's bullet)."""
    return url.split("?", 1)[0]


async def open_connection(url: str, options: TransportOptions) -> WsConnection:
    """Dial ``url``; raises :class:`HandshakeRejected` or :class:`TransportError`."""
    if url.startswith("wss://"):
        ctx = options.ssl_context or ssl.create_default_context()
    elif url.startswith("ws://"):
        ctx = None
    else:
        raise ConfigError(f"unsupported WebSocket URL scheme: {safe_url(url)!r}")
    try:
        ws = await connect(
            url,
            ssl=ctx,
            proxy=options.proxy,
            open_timeout=options.connect_timeout_s,
            close_timeout=options.close_timeout_s,
            ping_interval=None,
            ping_timeout=None,
            max_size=options.max_frame_bytes,
            max_queue=64,
            compression="deflate" if options.compression else None,
            user_agent_header="gapless",
            logger=_WS_LOG,
        )
    except InvalidStatus as exc:
        status = exc.response.status_code
        retry_after = None
        raw = exc.response.headers.get("Retry-After")
        if raw is not None:
            try:
                retry_after = max(0.0, min(float(raw), 86_400.0))
            except ValueError:
                retry_after = None
        raise HandshakeRejected(status, retry_after) from None
    except (OSError, TimeoutError, websockets.exceptions.WebSocketException) as exc:
        detail = str(exc).replace(url, safe_url(url))
        raise TransportError(
            f"connect to {safe_url(url)} failed: {type(exc).__name__}: {detail}"
        ) from None
    return WsConnection(ws)
