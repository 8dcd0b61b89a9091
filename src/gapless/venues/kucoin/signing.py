"""KuCoin REST request signing, KC-API-* headers (protocols.md §2.2), pure.

- ``prehash = timestamp + METHOD + request_path + body``: ``METHOD`` upper
  case, ``request_path`` including ``?query`` for GET/DELETE, ``body`` the
  exact JSON sent (``""`` when none).
- ``KC-API-SIGN = base64(HMAC-SHA256(api_secret, prehash))`` (TV-C1).
- Key version 2: ``KC-API-PASSPHRASE = base64(HMAC-SHA256(api_secret,
  passphrase))``; version 1 sent the passphrase in plain text and is not
  supported.

The timestamp (ms) comes in as an argument (no clock here); KuCoin rejects it
when more than 5 s away from server time (400002). Secrets come in as
:class:`gapless.secrets.Secret` (revealed only inside the HMAC call) or
``str`` and never appear in errors.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from gapless.errors import ConfigError, LocalProtocolError
from gapless.secrets import Secret

__all__ = ["KEY_VERSION", "auth_headers", "prehash", "sign", "sign_passphrase"]

KEY_VERSION = "2"
_METHODS = frozenset({"GET", "POST", "PUT", "DELETE", "PATCH"})


def _key_bytes(secret: Secret | str) -> bytes:
    if isinstance(secret, Secret):
        return secret.reveal().encode("utf-8")
    if isinstance(secret, str) and secret:
        return secret.encode("utf-8")
    raise ConfigError("the API secret must be a non-empty Secret or str")


def _b64_hmac(secret: Secret | str, message: str) -> str:
    mac = hmac.new(_key_bytes(secret), message.encode("utf-8"), hashlib.sha256).digest()
    return base64.b64encode(mac).decode("ascii")


def prehash(timestamp_ms: int | str, method: str, request_path: str, body: str = "") -> str:
    """The string to sign: ``"1547015186532POST/api/v1/deposit-addresses{...}"``."""
    ts = str(timestamp_ms)
    if not (ts.isascii() and ts.isdigit()):
        raise LocalProtocolError("timestamp must be integer milliseconds")
    m = method.upper()
    if m not in _METHODS:
        raise LocalProtocolError(f"unsupported HTTP method {method!r}")
    if not request_path.startswith("/"):
        raise LocalProtocolError("request_path must start with '/' (no host)")
    return f"{ts}{m}{request_path}{body}"


def sign(
    secret: Secret | str, timestamp_ms: int | str, method: str, request_path: str, body: str = ""
) -> str:
    """``KC-API-SIGN`` (base64 HMAC-SHA256 of :func:`prehash`)."""
    return _b64_hmac(secret, prehash(timestamp_ms, method, request_path, body))


def sign_passphrase(secret: Secret | str, passphrase: Secret | str) -> str:
    """``KC-API-PASSPHRASE`` for key version 2."""
    phrase = passphrase.reveal() if isinstance(passphrase, Secret) else passphrase
    if not isinstance(phrase, str) or not phrase:
        raise ConfigError("the passphrase must be a non-empty Secret or str")
    return _b64_hmac(secret, phrase)


def auth_headers(
    *,
    api_key: Secret | str,
    api_secret: Secret | str,
    passphrase: Secret | str,
    timestamp_ms: int,
    method: str,
    request_path: str,
    body: str = "",
) -> dict[str, str]:
    """The five KC-API-* headers of a signed request (key version 2)."""
    key = api_key.reveal() if isinstance(api_key, Secret) else api_key
    if not isinstance(key, str) or not key:
        raise ConfigError("the API key must be a non-empty Secret or str")
    return {
        "KC-API-KEY": key,
        "KC-API-SIGN": sign(api_secret, timestamp_ms, method, request_path, body),
        "KC-API-TIMESTAMP": str(timestamp_ms),
        "KC-API-PASSPHRASE": sign_passphrase(api_secret, passphrase),
        "KC-API-KEY-VERSION": KEY_VERSION,
    }
