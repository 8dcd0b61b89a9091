"""KuCoin KC-API-* signing (protocols.md §2.2): test vector TV-C1."""

from __future__ import annotations

from typing import Any

import pytest

from gapless.errors import ConfigError, LocalProtocolError
from gapless.secrets import Secret
from gapless.venues.kucoin.signing import KEY_VERSION, auth_headers, prehash, sign, sign_passphrase

# §2.2, KC-LEGACY "Authentication" example.
SECRET = "f03a5284-5c39-4aaa-9b20-dea10bdcf8e3"
TIMESTAMP = 1547015186532
BODY = '{"currency":"BTC"}'
TV_C1_PREHASH = '1547015186532POST/api/v1/deposit-addresses{"currency":"BTC"}'
TV_C1_SIGN = "7QP/oM0ykidMdrfNEUmng8eZjg/ZvPafjIqmxiVfYu4="
# protocols.md §2.2: computed there, not documented by KuCoin (regression value only).
PASSPHRASE = "Ab12345678)(*&^%$#@"
PASSPHRASE_V2 = "F2p2bNS1bBehHvC/Z4YkB7l1Wd0Pq2iV/oLHM/DyE+I="


@pytest.mark.parametrize("secret", [SECRET, Secret(SECRET)])
def test_tv_c1(secret: Secret | str) -> None:
    assert prehash(TIMESTAMP, "POST", "/api/v1/deposit-addresses", BODY) == TV_C1_PREHASH
    assert sign(secret, TIMESTAMP, "POST", "/api/v1/deposit-addresses", BODY) == TV_C1_SIGN
    assert sign(secret, str(TIMESTAMP), "post", "/api/v1/deposit-addresses", BODY) == TV_C1_SIGN


def test_prehash_get_includes_query_and_empty_body() -> None:
    assert prehash(1, "get", "/api/v1/orders?status=active") == "1GET/api/v1/orders?status=active"


def test_passphrase_v2() -> None:
    assert sign_passphrase(Secret(SECRET), Secret(PASSPHRASE)) == PASSPHRASE_V2
    assert sign_passphrase(SECRET, PASSPHRASE) == PASSPHRASE_V2


def test_auth_headers() -> None:
    headers = auth_headers(
        api_key=Secret("my-key"),
        api_secret=Secret(SECRET),
        passphrase=Secret(PASSPHRASE),
        timestamp_ms=TIMESTAMP,
        method="POST",
        request_path="/api/v1/deposit-addresses",
        body=BODY,
    )
    assert headers == {
        "KC-API-KEY": "my-key",
        "KC-API-SIGN": TV_C1_SIGN,
        "KC-API-TIMESTAMP": "1547015186532",
        "KC-API-PASSPHRASE": PASSPHRASE_V2,
        "KC-API-KEY-VERSION": KEY_VERSION,
    }
    assert KEY_VERSION == "2"
    assert SECRET not in repr(headers)
    assert PASSPHRASE not in repr(headers)


@pytest.mark.parametrize(
    ("ts", "method", "path"),
    [("12a", "GET", "/x"), (-1, "GET", "/x"), (1, "FETCH", "/x"), (1, "GET", "api/x")],
)
def test_prehash_refuses_misuse(ts: Any, method: str, path: str) -> None:
    with pytest.raises(LocalProtocolError):
        prehash(ts, method, path)


@pytest.mark.parametrize("bad", ["", None, 5])
def test_bad_secrets_are_refused(bad: Any) -> None:
    with pytest.raises(ConfigError):
        sign(bad, 1, "GET", "/x")
    with pytest.raises(ConfigError):
        sign_passphrase(SECRET, bad)
    with pytest.raises(ConfigError):
        auth_headers(
            api_key=bad,
            api_secret=SECRET,
            passphrase="p",
            timestamp_ms=1,
            method="GET",
            request_path="/x",
        )
