"""Kraken REST request signing, ``API-Sign`` (protocols.md §1.6), pure.

1. ``postdata`` is the URL-encoded form body, including ``nonce``;
2. ``inner = SHA256(nonce + postdata)`` (raw 32 bytes);
3. ``msg = uri_path + inner`` (``uri_path`` from ``/0/private/...``);
4. ``API-Sign = base64(HMAC-SHA512(base64_decode(secret), msg))`` (TV-K0).

The nonce must increase for every request of one API key
(``EAPI:Invalid nonce`` otherwise). :class:`NonceSource` hands out
strictly increasing nonces from the wall time passed in (microseconds), so
two connections sharing a key never collide. Secrets come in as
:class:`~gapless.secrets.Secret` and are revealed only inside the HMAC call.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from urllib.parse import urlencode

from gapless.errors import ConfigError, LocalProtocolError
from gapless.secrets import Secret

__all__ = ["NonceSource", "encode_body", "sign"]


def encode_body(params: list[tuple[str, str]]) -> str:
    """The form body exactly as sent (order kept)."""
    return urlencode(params)


def sign(secret: Secret | str, uri_path: str, nonce: int | str, postdata: str) -> str:
    """``API-Sign`` of one request (TV-K0 in protocols.md §1.6)."""
    if not uri_path.startswith("/0/"):
        raise LocalProtocolError("uri_path must start with /0/ (no host)")
    raw = secret.reveal() if isinstance(secret, Secret) else secret
    if not isinstance(raw, str) or not raw:
        raise ConfigError("the Kraken API secret must be a non-empty string")
    try:
        key = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError("the Kraken API secret is not valid base64") from None
    inner = hashlib.sha256((str(nonce) + postdata).encode("utf-8")).digest()
    mac = hmac.new(key, uri_path.encode("utf-8") + inner, hashlib.sha512)
    return base64.b64encode(mac.digest()).decode("ascii")


class NonceSource:
    """Strictly increasing nonces: the wall time in µs, or last + 1."""

    __slots__ = ("_last",)

    def __init__(self) -> None:
        self._last = 0

    def next(self, wall_ns: int) -> int:
        n = max(wall_ns // 1000, self._last + 1)
        self._last = n
        return n
