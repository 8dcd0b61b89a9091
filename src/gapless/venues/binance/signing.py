"""Binance HMAC-SHA256 request signing (protocols.md §3.10), pure.

``signature = hex(HMAC-SHA256(secretKey, payload))``:

- REST: the payload is the query string concatenated with the body, exactly
  as sent (percent-encoded, parameters in the order sent). Sign the text you
  send; :func:`encode_query` builds such text from ordered pairs.
- WS API: the payload is every ``params`` entry except ``signature``, sorted
  alphabetically by key, joined as ``k=v`` with ``&``, values in UTF-8 and
  **not** percent-encoded (:func:`ws_api_payload`).

Secrets come in as :class:`gapless.secrets.Secret` (revealed only inside the
HMAC call) or ``str``; they never appear in an error message or a return
value. Values are formatted without floats: ``str`` as is, ``int`` in
decimal, ``Decimal`` in fixed point, ``bool`` as ``true``/``false``; a float
is refused (its text is ambiguous).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from decimal import Decimal
from urllib.parse import quote

from gapless.errors import ConfigError, LocalProtocolError
from gapless.secrets import Secret

__all__ = [
    "ParamValue",
    "encode_query",
    "format_value",
    "hmac_sha256_hex",
    "sign_rest",
    "sign_ws_api",
    "signed_query",
    "signed_ws_params",
    "ws_api_payload",
]

ParamValue = str | int | bool | Decimal


def _key_bytes(secret: Secret | str) -> bytes:
    if isinstance(secret, Secret):
        return secret.reveal().encode("utf-8")
    if isinstance(secret, str) and secret:
        return secret.encode("utf-8")
    raise ConfigError("the API secret must be a non-empty Secret or str")


def hmac_sha256_hex(secret: Secret | str, payload: str | bytes) -> str:
    """Lower-case hex HMAC-SHA256 of ``payload`` (UTF-8) under ``secret``."""
    data = payload.encode("utf-8") if isinstance(payload, str) else payload
    return hmac.new(_key_bytes(secret), data, hashlib.sha256).hexdigest()


def format_value(value: ParamValue) -> str:
    """Parameter text: ``True -> "true"``, ``Decimal("0.10") -> "0.10"``, ``5 -> "5"``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise LocalProtocolError("parameter values must be finite")
        return format(value, "f")
    raise LocalProtocolError(
        f"parameter values must be str, int, bool or Decimal, not {type(value).__name__}"
    )


def encode_query(params: Iterable[tuple[str, ParamValue]] | Mapping[str, ParamValue]) -> str:
    """Percent-encoded ``k=v&...`` in the given order (UTF-8, RFC 3986 unreserved kept)."""
    items = params.items() if isinstance(params, Mapping) else params
    return "&".join(f"{quote(k, safe='')}={quote(format_value(v), safe='')}" for k, v in items)


def sign_rest(secret: Secret | str, query: str, body: str = "") -> str:
    """§3.10 REST signature of ``query + body`` as sent (TV-B1, TV-B2)."""
    return hmac_sha256_hex(secret, query + body)


def signed_query(
    secret: Secret | str, params: Iterable[tuple[str, ParamValue]] | Mapping[str, ParamValue]
) -> str:
    """``encode_query(params) + "&signature=" + sign_rest(...)``, ready to send."""
    query = encode_query(params)
    return f"{query}&signature={sign_rest(secret, query)}"


def ws_api_payload(params: Mapping[str, ParamValue]) -> str:
    """§3.10 WS-API payload: sorted ``k=v`` joined by ``&``, ``signature`` excluded."""
    keys = sorted(k for k in params if k != "signature")
    return "&".join(f"{k}={format_value(params[k])}" for k in keys)


def sign_ws_api(secret: Secret | str, params: Mapping[str, ParamValue]) -> str:
    """§3.10 WS-API signature of ``params`` (TV-B3, TV-B4)."""
    return hmac_sha256_hex(secret, ws_api_payload(params))


def signed_ws_params(
    secret: Secret | str, params: Mapping[str, ParamValue]
) -> dict[str, ParamValue]:
    """A copy of ``params`` with ``signature`` set (any previous one replaced)."""
    out: dict[str, ParamValue] = {k: v for k, v in params.items() if k != "signature"}
    out["signature"] = sign_ws_api(secret, out)
    return out
