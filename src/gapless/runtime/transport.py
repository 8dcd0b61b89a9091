"""The one place gapless touches WebSocket sockets.

Two backends sit behind one interface (:func:`open_connection` returning a
:class:`WsConnection`); :attr:`TransportOptions.backend` picks one:

- ``"picows"``: the `picows <https://github.com/tarasko/picows>`_ client (a
  Cython frame parser on aiofastnet transports, both picows dependencies),
  about 5x less CPU per received frame than websockets (bench/README.md §1).
  picows calls a listener for every frame; the listener copies the payload
  once and appends it to a ``deque``. :meth:`WsConnection.frames` drains that
  deque and creates a waiter future only when it is empty.
- ``"websockets"``: the `websockets` asyncio client.
- ``"auto"`` (the default): picows when it can be imported, else websockets.

Common to both backends (design.md §3, issue 2 item 5):

- TLS: ``wss://`` URLs use ``ssl.create_default_context()`` (certificate and
  hostname verification on) unless the caller passes its own context (e.g.
  one trusting a private CA). There is no switch that turns verification off.
- Proxies: websockets >= 15 reads ``HTTPS_PROXY``/``ALL_PROXY`` by default;
  gapless passes ``proxy=None`` so nothing is picked up implicitly (picows reads
  no environment). A proxy must be configured explicitly. picows tunnels through
  ``http://``, ``https://``, ``socks4://`` and ``socks5://`` proxies; any other
  scheme (``socks5h://``, ``socks4a://``) makes that dial use websockets.
- Size: ``max_frame_bytes`` bounds a message (after reassembling fragments; for
  websockets also after decompression). A bigger one closes the connection
  with 1009 (``Closed(code=1009, too_large=True)``), which the supervisor
  reports as a bad frame and recovers from. Frames that arrived before it are
  still delivered.
- Keepalive: our own ping frames are off; liveness is the supervisor's
  dead-peer watchdog plus the venue's keepalive duty. The server's ping frames
  (Binance) are answered with a pong by either library.
- The handshake's HTTP status (429 ban, 503 maintenance) becomes
  :class:`~gapless.errors.HandshakeRejected` with ``Retry-After``; redirects are
  followed. Every other dial failure is a :class:`~gapless.errors.TransportError`
  whose message never carries the URL's query string (where venues put tokens).
- The client sends ``User-Agent: gapless``.
- Frames: text frames are yielded as ``str`` (copied and UTF-8 checked in one
  step) and binary frames as ``bytes``, by both backends. The capture sink and
  replay tell text frames from binary ones by this type, so a text frame must
  stay ``str``; msgspec decodes a ``str`` as fast as ``bytes``. A text frame
  that is not valid UTF-8 closes the connection with 1007; a fragment out of
  order closes it with 1002.
- Logs never carry frame contents (private frames carry tokens and signatures,
  design.md §1.6): the websockets logger drops records below INFO; picows'
  records below WARNING are dropped (its INFO lines include redirect URLs) and
  the rest are logged as WARNING on ``gapless.transport.picows`` (picows logs a
  1009 it handles at ERROR).

Differences:

- ``compression=True`` (permessage-deflate) applies to the websockets backend
  only: picows has no permessage-deflate, so the picows backend does not offer
  it and the server sends uncompressed frames.
- Flow control: the picows backend pauses reading the socket while more than
  :data:`HIGH_WATER` frames wait to be consumed and resumes at
  :data:`LOW_WATER`, so a slow consumer pushes back on the server instead of
  growing memory. The pause acts on the next read, so the frames of the read
  in progress still land: one read's worth at most, and picows' read buffer
  doubles whenever a read fills it, up to what the kernel holds for the socket
  (``net.ipv4.tcp_rmem``'s maximum: 6 MiB by default, 32 MiB on some hosts).
  websockets bounds its queue with ``max_queue``.
- Close: after the closing handshake the picows backend closes the TCP
  connection itself, at the latest ``close_timeout_s`` after its own close
  frame. websockets waits for the server to close it; when the server never
  does, the supervisor's dead-peer watchdog ends the connection. After
  :meth:`WsConnection.close` the picows backend drops data frames that still
  arrive.
- ``closed`` is set by the picows backend as soon as the socket is gone (the
  frames queued before that are still yielded); the websockets backend sets it
  when :meth:`WsConnection.frames` ends.
- Connect timeout: picows' own handshake timeout is set to the connect timeout
  too, so a dial abandoned during the handshake is torn down by then.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Final

import websockets
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from gapless.errors import ConfigError, HandshakeRejected, TransportError

try:
    import picows
    from python_socks import ProxyError as _ProxyError  # picows' proxy dependency
except ImportError:  # picows is optional at run time: "auto" then uses websockets
    HAVE_PICOWS = False
else:
    HAVE_PICOWS = True

#: The websockets library dumps every frame at DEBUG, and private frames carry
#: tokens (Kraken ``params.token``) and signatures (Binance WS API): its
#: connection logger drops DEBUG records so a DEBUG run never writes them
#: (design.md §1.6). Our own logs never print frame text.
_WS_LOG = logging.getLogger("gapless.transport.websockets")
_WS_LOG.addFilter(lambda record: record.levelno >= logging.INFO)

#: picows' logger. picows logs at INFO per connection and on redirects (with the
#: target URL, query string included) and dumps frames at a level below DEBUG;
#: only WARNING and above pass (see :class:`_QuietLog`).
_PICOWS_LOG = logging.getLogger("gapless.transport.picows")

__all__ = [
    "BACKENDS",
    "HAVE_PICOWS",
    "HIGH_WATER",
    "LOW_WATER",
    "Closed",
    "TransportOptions",
    "WsConnection",
    "open_connection",
    "resolve_backend",
    "safe_url",
]

BACKENDS: Final = ("auto", "picows", "websockets")

#: picows backend: reading the socket pauses when more frames than this wait in
#: the connection's queue, and resumes once the consumer is down to LOW_WATER.
HIGH_WATER: Final = 4096
LOW_WATER: Final = 1024

#: proxy schemes picows can tunnel through; others fall back to websockets
_PICOWS_PROXY_SCHEMES: Final = ("http", "https", "socks4", "socks5")


@dataclass(frozen=True, slots=True)
class TransportOptions:
    connect_timeout_s: float = 10.0
    close_timeout_s: float = 2.0
    #: hostile input: a message bigger than this (after reassembly and, with
    #: websockets' permessage-deflate, after inflating: a deflate bomb is cut off at
    #: the limit) closes the connection with 1009; the supervisor reports a BadFrame
    #: and reconnects
    max_frame_bytes: int = 4 * 1024 * 1024
    #: hostile input: a REST body (snapshot, token) bigger than this is refused while
    #: it is read; the supervisor reports a BadFrame and the adapter asks again later
    max_rest_body_bytes: int = 16 * 1024 * 1024
    #: permessage-deflate; offered by the websockets backend only (picows has none)
    compression: bool = True
    ssl_context: ssl.SSLContext | None = None
    proxy: str | None = None
    #: "auto" (picows when importable, else websockets), "picows" or "websockets"
    backend: str = "auto"

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ConfigError(f"unknown transport backend {self.backend!r}: one of {BACKENDS}")


@dataclass(frozen=True, slots=True)
class Closed:
    """How a connection ended."""

    code: int | None
    reason: str
    too_large: bool = False


class WsConnection(ABC):
    """A connected WebSocket: iterate frames, send text, close or abort."""

    #: which library carries this connection: "picows" or "websockets"
    backend: str

    @property
    @abstractmethod
    def closed(self) -> Closed | None:
        """How the connection ended, once it has."""

    @abstractmethod
    def frames(self) -> AsyncIterator[str | bytes]:
        """Yield frames until the connection ends; then ``self.closed`` says how."""

    @abstractmethod
    async def send(self, text: str) -> None:
        """Send a text frame; :class:`TransportError` if the connection is closed."""

    @abstractmethod
    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Closing handshake, bounded by ``close_timeout_s``; never raises."""

    @abstractmethod
    def abort(self) -> None:
        """Drop the TCP connection now, without a closing handshake."""

    @abstractmethod
    async def ping(self) -> None:
        """Send a WebSocket ping and return when its pong arrives (RFC 6455 §5.5.2:
        the peer must answer); the caller bounds the wait. :class:`TransportError`
        if the connection is closed."""


# --------------------------------------------------------------------------- websockets


class _WebsocketsConnection(WsConnection):
    backend = "websockets"

    def __init__(self, ws: ClientConnection) -> None:
        self._ws = ws
        self._closed: Closed | None = None

    @property
    def closed(self) -> Closed | None:
        return self._closed

    async def frames(self) -> AsyncIterator[str | bytes]:
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
        self._closed = Closed(code=code, reason=reason, too_large=too_large)

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

    async def ping(self) -> None:
        try:
            await (await self._ws.ping())
        except ConnectionClosed as exc:
            raise TransportError(f"ping on closed connection: {exc}") from None


async def _open_websockets(
    url: str, ctx: ssl.SSLContext | None, options: TransportOptions
) -> WsConnection:
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
        headers = exc.response.headers
        raise HandshakeRejected(
            exc.response.status_code, _retry_after(headers.get("Retry-After"))
        ) from None
    except (OSError, TimeoutError, websockets.exceptions.WebSocketException) as exc:
        raise _dial_error(url, exc) from None
    return _WebsocketsConnection(ws)


# --------------------------------------------------------------------------- picows


def _close_payload(payload: bytes) -> tuple[int, str]:
    """(code, reason) of a close frame; an empty one means 1005 (no status)."""
    if len(payload) < 2:
        return 1005, ""
    return int.from_bytes(payload[:2], "big"), payload[2:].decode("utf-8", "replace")


def _close_reason(reason: str) -> bytes:
    """``reason`` as UTF-8, cut to the 123 bytes a close frame has room for."""
    raw = reason.encode("utf-8")
    if len(raw) <= 123:
        return raw
    return raw[:123].decode("utf-8", "ignore").encode("utf-8")


class _QuietLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """picows' logger: its WARNING and ERROR records, all as WARNING; nothing below.

    picows logs a protocol error the transport handles (a frame over
    max_frame_size: the supervisor reports it as a bad frame) at ERROR; for the
    application that is a warning. A LoggerAdapter, not a Logger: picows then
    logs on it directly instead of on per-socket child loggers, so every record
    passes through here."""

    def isEnabledFor(self, level: int) -> bool:
        return level >= logging.WARNING and self.logger.isEnabledFor(logging.WARNING)

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        if level >= logging.WARNING:
            super().log(logging.WARNING, msg, *args, **kwargs)


if HAVE_PICOWS:
    _TEXT: Final = picows.WSMsgType.TEXT
    _BINARY: Final = picows.WSMsgType.BINARY
    _CONTINUATION: Final = picows.WSMsgType.CONTINUATION
    _CLOSE: Final = picows.WSMsgType.CLOSE
    _PONG: Final = picows.WSMsgType.PONG
    _PICOWS_LOGGER: Final = _QuietLog(_PICOWS_LOG, {})

    # listener states
    _OPEN: Final = 0  # data frames are delivered
    _FRAGMENTED: Final = 1  # inside a fragmented message
    _CLOSING: Final = 2  # close frame sent or received: data frames are dropped

    class _Listener(picows.WSListener):
        """Receives picows' callbacks; owns the frame queue the consumer drains."""

        __slots__ = (
            "_abort_timer",
            "_append",
            "_close_timeout_s",
            "_frag_parts",
            "_frag_size",
            "_frag_text",
            "_loop",
            "_max_bytes",
            "_reaper",
            "_recv_close",
            "_state",
            "_write_waiter",
            "closed",
            "disconnected",
            "ended",
            "pong_waiter",
            "queue",
            "read_paused",
            "transport",
            "waiter",
            "write_paused",
        )

        def __init__(self, loop: asyncio.AbstractEventLoop, options: TransportOptions) -> None:
            super().__init__()
            self._loop = loop
            self._max_bytes = options.max_frame_bytes
            self._close_timeout_s = options.close_timeout_s
            self._state = _OPEN
            self._frag_parts: list[bytes] = []
            self._frag_size = 0
            self._frag_text = False
            self._recv_close: tuple[int, str] | None = None
            self._abort_timer: asyncio.TimerHandle | None = None
            self._write_waiter: asyncio.Future[None] | None = None
            self._reaper: asyncio.Task[None] | None = None
            self.pong_waiter: asyncio.Future[None] | None = None
            self.transport: picows.WSTransport | None = None
            self.queue: deque[str | bytes] = deque()
            self._append = self.queue.append
            self.waiter: asyncio.Future[None] | None = None
            self.ended = False
            self.read_paused = False
            self.write_paused = False
            self.closed: Closed | None = None
            self.disconnected: asyncio.Future[None] = loop.create_future()

        # ---- picows callbacks

        def on_ws_connected(self, transport: picows.WSTransport) -> None:
            self.transport = transport

        def on_ws_frame(self, transport: picows.WSTransport, frame: picows.WSFrame) -> None:
            # Every frame passes here: each attribute read costs 10-90 ns against a
            # budget under 1 µs, hence the flat code and the cached bound method.
            if (
                frame.msg_type is _TEXT
                and frame.fin
                and self._state == _OPEN
                and frame.payload_size <= self._max_bytes
            ):
                # the hot path: one complete text frame, copied once into a str
                try:
                    self._append(frame.get_payload_as_utf8_text())
                except UnicodeDecodeError:
                    self.fail(1007, "invalid UTF-8 in a text frame")
                    return
            else:
                data = self._other_frame(frame)
                if data is None:
                    return
                self._append(data)
            if self.waiter is not None:
                self._wake_consumer()
            elif (
                frame.last_in_buffer  # the pause can only act on the next read
                and len(self.queue) > HIGH_WATER
                and not self.read_paused
            ):
                self.read_paused = True
                transport.underlying_transport.pause_reading()

        def _other_frame(self, frame: picows.WSFrame) -> str | bytes | None:
            """Everything but a complete text frame: returns what to deliver, if any."""
            msg_type = frame.msg_type
            if msg_type is _CLOSE:
                self._on_close_frame(frame.get_payload_as_bytes())
                return None
            if self._state == _CLOSING or frame.payload_size > self._max_bytes:
                # A frame over max_frame_size: picows has sent 1009 and drops the
                # socket 10 ms later, but it keeps parsing until then and hands
                # over that frame and the ones after it: dropped. (Frames parsed
                # before it are delivered, as websockets does.)
                self._state = _CLOSING
                return None
            if msg_type is _BINARY and frame.fin and self._state == _OPEN:
                return frame.get_payload_as_bytes()
            if msg_type is _TEXT or msg_type is _BINARY or msg_type is _CONTINUATION:
                return self._on_fragment(frame, msg_type)
            if msg_type is _PONG:  # the answer to ping(), or unsolicited
                waiter = self.pong_waiter
                if waiter is not None and not waiter.done():
                    waiter.set_result(None)
            return None  # (pings are answered by picows itself)

        def _wake_consumer(self) -> None:
            waiter = self.waiter
            self.waiter = None
            if waiter is not None and not waiter.done():
                waiter.set_result(None)

        def _on_fragment(
            self, frame: picows.WSFrame, msg_type: picows.WSMsgType
        ) -> str | bytes | None:
            """Reassemble a fragmented message; returns it once complete."""
            state = self._state
            if state == _CLOSING:
                return None
            if msg_type is _CONTINUATION:
                if state != _FRAGMENTED:
                    self.fail(1002, "unexpected continuation frame")
                    return None
            elif state == _FRAGMENTED:
                self.fail(1002, "expected a continuation frame")
                return None
            else:  # the first fragment
                self._state = _FRAGMENTED
                self._frag_text = msg_type is _TEXT
                self._frag_parts = []
                self._frag_size = 0
            self._frag_size += frame.payload_size
            if self._frag_size > self._max_bytes:
                self._frag_parts = []
                self.fail(1009, f"message over {self._max_bytes} bytes")
                return None
            self._frag_parts.append(frame.get_payload_as_bytes())
            if not frame.fin:
                return None
            raw = b"".join(self._frag_parts)
            self._frag_parts = []
            self._state = _OPEN
            if not self._frag_text:
                return raw
            try:
                return raw.decode("utf-8")
            except UnicodeDecodeError:
                self.fail(1007, "invalid UTF-8 in a text frame")
                return None

        def _on_close_frame(self, payload: bytes) -> None:
            transport = self.transport
            assert transport is not None
            if self._recv_close is None:
                self._recv_close = _close_payload(payload)
            self._state = _CLOSING
            if not transport.is_close_frame_sent:
                code = self._recv_close[0]
                # echo the peer's code (RFC 6455 §5.5.1); 1005 must not be sent
                transport.send_close(
                    picows.WSCloseCode(1000 if code == 1005 else code),
                    _close_reason(self._recv_close[1]),
                )
            transport.disconnect()
            self._arm_abort_timer()

        def on_ws_disconnected(self, transport: picows.WSTransport) -> None:
            if self._abort_timer is not None:
                self._abort_timer.cancel()
                self._abort_timer = None
            recv = self._recv_close
            sent: tuple[int, str] | None = None
            handshake = transport.close_handshake
            if handshake is not None:
                if handshake.sent is not None:
                    sent = (handshake.sent.code.value, handshake.sent.reason)
                if recv is None and handshake.recv is not None:
                    recv = (handshake.recv.code.value, handshake.recv.reason)
            if recv is not None:
                code, reason = recv
            elif sent is not None:
                code, reason = sent
            else:
                code, reason = 1006, "connection lost without a close frame"
            self.closed = Closed(code, reason, too_large=sent is not None and sent[0] == 1009)
            self.ended = True
            self._state = _CLOSING
            self._wake_consumer()
            self._wake_writer()
            if not self.disconnected.done():
                self.disconnected.set_result(None)
            # After a protocol error picows stores the exception in the future that
            # wait_disconnected() awaits; retrieve it, or asyncio logs it as never
            # retrieved. (The error is already in `closed`: a 1009 is too_large.)
            self._reaper = self._loop.create_task(self._reap(transport))

        @staticmethod
        async def _reap(transport: picows.WSTransport) -> None:
            with contextlib.suppress(Exception):
                await transport.wait_disconnected()

        def pause_writing(self) -> None:
            self.write_paused = True

        def resume_writing(self) -> None:
            self.write_paused = False
            self._wake_writer()

        # ---- used by the connection

        def resume_reading(self) -> None:
            self.read_paused = False
            if self.transport is not None:
                self.transport.underlying_transport.resume_reading()

        async def writable(self) -> None:
            while self.write_paused and not self.ended:
                if self._write_waiter is None:
                    self._write_waiter = self._loop.create_future()
                await asyncio.shield(self._write_waiter)

        def _wake_writer(self) -> None:
            writer, self._write_waiter = self._write_waiter, None
            if writer is not None and not writer.done():
                writer.set_result(None)

        def fail(self, code: int, reason: str) -> None:
            """Start the closing handshake because of what the peer sent."""
            self.start_close(code, reason)

        def start_close(self, code: int, reason: str) -> None:
            """Send a close frame (once); the connection is dropped when the peer
            answers or after ``close_timeout_s``. Data frames are dropped from now on."""
            transport = self.transport
            if transport is None or self.ended:
                return
            self._state = _CLOSING
            if self.read_paused:  # the peer's close frame is behind unread data
                self.resume_reading()
            if not transport.is_close_frame_sent and not transport.is_disconnected:
                transport.send_close(picows.WSCloseCode(code), _close_reason(reason))
            self._arm_abort_timer()

        def _arm_abort_timer(self) -> None:
            if self._abort_timer is None and not self.ended:
                self._abort_timer = self._loop.call_later(self._close_timeout_s, self.abort)

        def abort(self) -> None:
            transport = self.transport
            if transport is not None and not self.ended:
                transport.disconnect(graceful=False)


class _PicowsConnection(WsConnection):
    backend = "picows"

    def __init__(self, listener: _Listener, close_timeout_s: float) -> None:
        self._listener = listener
        self._close_timeout_s = close_timeout_s

    @property
    def closed(self) -> Closed | None:
        return self._listener.closed

    async def frames(self) -> AsyncIterator[str | bytes]:
        listener = self._listener
        queue = listener.queue
        popleft = queue.popleft
        loop = asyncio.get_running_loop()
        while True:
            if queue:
                frame = popleft()
                if listener.read_paused and len(queue) <= LOW_WATER:
                    listener.resume_reading()
                yield frame
            elif listener.ended:
                return
            else:
                waiter: asyncio.Future[None] = loop.create_future()
                listener.waiter = waiter
                try:
                    await waiter
                finally:
                    listener.waiter = None

    async def send(self, text: str) -> None:
        listener = self._listener
        if listener.write_paused:
            await listener.writable()
        transport = listener.transport
        if (
            transport is None
            or listener.ended
            or transport.is_close_frame_sent
            or transport.is_disconnected
        ):
            closed = listener.closed
            why = f"code {closed.code}" if closed is not None else "closing"
            raise TransportError(f"send on closed connection: {why}")
        transport.send(_TEXT, text)

    async def close(self, code: int = 1000, reason: str = "") -> None:
        listener = self._listener
        try:
            listener.start_close(code, reason)
            # the abort timer armed by start_close bounds this; the timeout is a backstop
            async with asyncio.timeout(self._close_timeout_s + 1.0):
                await asyncio.shield(listener.disconnected)
        except Exception:  # closing must never raise into the supervisor
            self.abort()

    def abort(self) -> None:
        self._listener.abort()

    async def ping(self) -> None:
        listener = self._listener
        transport = listener.transport
        if transport is None or listener.ended or transport.is_disconnected:
            raise TransportError("ping on closed connection")
        waiter = listener.pong_waiter
        if waiter is None or waiter.done():
            waiter = listener.pong_waiter = asyncio.get_running_loop().create_future()
            transport.send_ping(b"gapless")
        # ends with the connection too (the watchdog's deadline bounds a silent peer)
        done, _ = await asyncio.wait(
            [waiter, listener.disconnected], return_when=asyncio.FIRST_COMPLETED
        )
        if waiter not in done:
            raise TransportError("ping on closed connection")


async def _open_picows(
    url: str, ctx: ssl.SSLContext | None, options: TransportOptions
) -> WsConnection:
    loop = asyncio.get_running_loop()
    listener = _Listener(loop, options)

    def factory(*_: object) -> _Listener:
        return listener

    try:
        try:
            async with asyncio.timeout(options.connect_timeout_s):
                await picows.ws_connect(
                    factory,
                    url,
                    ssl_context=ctx,
                    websocket_handshake_timeout=options.connect_timeout_s,
                    logger_name=_PICOWS_LOGGER,
                    enable_auto_ping=False,
                    enable_auto_pong=True,
                    max_frame_size=options.max_frame_bytes,
                    extra_headers={"User-Agent": "gapless"},
                    proxy=options.proxy,
                )
        except BaseException:
            # timed out or cancelled just as the handshake completed: nobody will
            # read this connection, drop it
            listener.abort()
            raise
    except picows.WSHandshakeError as exc:
        rejected = _rejection(exc)
        if rejected is not None:
            raise rejected from None
        raise _dial_error(url, exc) from None
    except TimeoutError:
        raise TransportError(
            f"connect to {safe_url(url)} failed: TimeoutError: "
            f"no WebSocket connection within {options.connect_timeout_s:g} s"
        ) from None
    except (OSError, picows.WSError, _ProxyError, ValueError) as exc:
        raise _dial_error(url, exc) from None
    return _PicowsConnection(listener, options.close_timeout_s)


def _rejection(exc: picows.WSHandshakeError) -> HandshakeRejected | None:
    """The HTTP status of a failed upgrade, if the server answered with one.

    Redirects are followed by both libraries; one that cannot be followed (too
    many, or from wss:// to ws://) is a TransportError for both, not a rejection."""
    response = exc.response
    if response is not None:
        status = int(response.status)
        retry_after = response.headers.get("Retry-After")
    else:
        # a status outside http.HTTPStatus (520, ...): picows kept only the raw header
        raw = exc.raw_header
        if raw is None:
            return None
        lines = raw.split(b"\r\n")
        parts = lines[0].split(b" ", 2)
        if len(parts) < 2 or parts[0] != b"HTTP/1.1" or not parts[1].isdigit():
            return None
        status = int(parts[1])
        retry_after = None
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            if sep and name.strip().lower() == b"retry-after":
                retry_after = value.strip().decode("latin-1")
    if not 100 <= status <= 999 or status == 101 or 300 <= status < 400:
        return None
    return HandshakeRejected(status, _retry_after(retry_after))


# --------------------------------------------------------------------------- common


def safe_url(url: str) -> str:
    """``url`` without its query string (where venues put tokens: KuCoin's bullet)."""
    return url.split("?", 1)[0]


def _retry_after(raw: str | None) -> float | None:
    """``Retry-After`` in seconds (0 to one day); an HTTP date or garbage gives None."""
    if raw is None:
        return None
    try:
        return max(0.0, min(float(raw), 86_400.0))
    except ValueError:
        return None


def _dial_error(url: str, exc: BaseException) -> TransportError:
    """A TransportError naming the URL without its query string, also in the detail."""
    detail = str(exc).replace(url, safe_url(url))
    _, sep, query = url.partition("?")
    if sep and query:
        detail = detail.replace(query, "<redacted>")
    return TransportError(f"connect to {safe_url(url)} failed: {type(exc).__name__}: {detail}")


def resolve_backend(options: TransportOptions) -> str:
    """The backend that will carry a dial with ``options``: "picows" or "websockets"."""
    backend = options.backend
    if backend == "auto":
        backend = "picows" if HAVE_PICOWS else "websockets"
    elif backend == "picows" and not HAVE_PICOWS:
        raise ConfigError("transport backend 'picows' requested but picows is not installed")
    if backend == "picows" and options.proxy is not None:
        scheme = options.proxy.split("://", 1)[0].lower()
        if scheme not in _PICOWS_PROXY_SCHEMES:
            backend = "websockets"
    return backend


async def open_connection(url: str, options: TransportOptions) -> WsConnection:
    """Dial ``url``; raises :class:`HandshakeRejected` or :class:`TransportError`."""
    if url.startswith("wss://"):
        ctx = options.ssl_context or ssl.create_default_context()
    elif url.startswith("ws://"):
        ctx = None
    else:
        raise ConfigError(f"unsupported WebSocket URL scheme: {safe_url(url)!r}")
    if resolve_backend(options) == "picows":
        return await _open_picows(url, ctx, options)
    return await _open_websockets(url, ctx, options)
