"""One error tree for gapless.

::

    GaplessError
    ├── ConfigError            bad options, URLs or stream specs (raised at once)
    ├── ProtocolError          the *venue* broke its protocol
    │   └── DecodeError        a frame that is not valid JSON / not the expected shape
    ├── LocalProtocolError     *we* were about to break the protocol (a bug or misuse)
    ├── TransportError         the connection failed (handshake refused, dropped, timed out)
    │   ├── HandshakeRejected  HTTP error on upgrade (429 ban, 503 maintenance)
    │   └── GaveUp             RuntimeOptions.give_up_after consecutive failed attempts
    ├── OutboxFull             control request queued while disconnected, but the outbox is full
    ├── OrderRefused           an order request the order gate did not send (disconnected,
    │                          wrong system status, no private connection); never re-sent
    ├── AuthError              the venue refused our credentials (bad key, signature, token)
    └── FeedClosed             the feed was closed

Decoders raise only :class:`DecodeError` on bad input: a session catches it,
counts it, reports a ``BadFrame`` event and resyncs where state could be
affected. Nothing a venue sends may crash a session. A checksum mismatch is
not an exception: it is a ``Gap`` event and a resync.

``GaveUp`` (only with ``give_up_after`` set) ends the supervisor task; like any
failure of a task owned by the feed it surfaces from ``async with connect(...)``
inside an ``ExceptionGroup``.
"""

from __future__ import annotations

__all__ = [
    "AuthError",
    "ConfigError",
    "DecodeError",
    "FeedClosed",
    "GaplessError",
    "GaveUp",
    "HandshakeRejected",
    "LocalProtocolError",
    "OrderRefused",
    "OutboxFull",
    "ProtocolError",
    "TransportError",
]


class GaplessError(Exception):
    """Base of every error gapless raises."""


class ConfigError(GaplessError, ValueError):
    """Invalid configuration or stream specification."""


class ProtocolError(GaplessError):
    """The venue sent something that breaks its documented protocol."""


class DecodeError(ProtocolError):
    """A frame could not be decoded into a known message."""


class LocalProtocolError(GaplessError):
    """gapless itself was about to violate the protocol."""


class TransportError(GaplessError):
    """The network connection failed."""


class HandshakeRejected(TransportError):
    """The WebSocket upgrade was answered with an HTTP error status."""

    def __init__(self, status: int, retry_after_s: float | None = None) -> None:
        detail = f" (Retry-After {retry_after_s:g} s)" if retry_after_s is not None else ""
        super().__init__(f"WebSocket upgrade rejected with HTTP {status}{detail}")
        self.status = status
        self.retry_after_s = retry_after_s


class GaveUp(TransportError):
    """The configured give-up threshold of consecutive failed attempts was reached."""


class OutboxFull(GaplessError):
    """Too many control requests queued while disconnected."""


class FeedClosed(GaplessError):
    """The feed has been closed."""


class OrderRefused(GaplessError):
    """The order gate refused a request before sending it: ``reason`` is
    ``disconnected``, ``not_ready``, ``maintenance``, ``cancel_only``,
    ``post_only``, ``limit_only``, ``no_private_connection`` or ``closing``.
    Order requests are never queued or replayed on a later connection."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class AuthError(GaplessError):
    """The venue refused the credentials (bad key or signature, expired token,
    missing permission). Messages never contain the key, secret or token."""
