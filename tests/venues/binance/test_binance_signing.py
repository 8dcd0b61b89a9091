"""Binance HMAC-SHA256 signing (protocols.md §3.10): test vectors TV-B1..TV-B4."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from gapless.errors import ConfigError, LocalProtocolError
from gapless.secrets import Secret
from gapless.venues.binance.signing import (
    ParamValue,
    encode_query,
    format_value,
    hmac_sha256_hex,
    sign_rest,
    sign_ws_api,
    signed_query,
    signed_ws_params,
    ws_api_payload,
)

# §3.10: the keys used in all of Binance's examples.
API_KEY = "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A"
SECRET = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"

TV_B1_QUERY = (
    "symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1"
    "&recvWindow=5000&timestamp=1499827319559"
)
TV_B1_SIG = "c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71"
TV_B2_QUERY = (
    "symbol=%EF%BC%91%EF%BC%92%EF%BC%93%EF%BC%94%EF%BC%95%EF%BC%96&side=BUY&type=LIMIT"
    "&timeInForce=GTC&quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559"
)
TV_B2_SIG = "e1353ec6b14d888f1164ae9af8228a3dbd508bc82eb867db8ab6046442f33ef3"
TV_B3_PAYLOAD = (
    f"apiKey={API_KEY}&price=52000.00&quantity=0.01000000&recvWindow=100&side=SELL"
    "&symbol=BTCUSDT&timeInForce=GTC&timestamp=1645423376532&type=LIMIT"
)
TV_B3_SIG = "aa1b5712c094bc4e57c05a1a5c1fd8d88dcd628338ea863fec7b88e59fe2db24"
TV_B4_PAYLOAD = (
    f"apiKey={API_KEY}&price=0.10000000&quantity=1.00000000&recvWindow=5000&side=BUY"
    "&symbol=１２３４５６&timeInForce=GTC&timestamp=1645423376532&type=LIMIT"
)
TV_B4_SIG = "b33892ae8e687c939f4468c6268ddd4c40ac1af18ad19a064864c47bae0752cd"


@pytest.mark.parametrize("secret", [SECRET, Secret(SECRET)])
def test_tv_b1_rest(secret: Secret | str) -> None:
    assert sign_rest(secret, TV_B1_QUERY) == TV_B1_SIG
    # query + body: the same bytes split differently sign the same
    assert sign_rest(secret, TV_B1_QUERY[:40], TV_B1_QUERY[40:]) == TV_B1_SIG


def test_tv_b2_rest_percent_encoded_in_send_order() -> None:
    params: list[tuple[str, Any]] = [
        ("symbol", "１２３４５６"),
        ("side", "BUY"),
        ("type", "LIMIT"),
        ("timeInForce", "GTC"),
        ("quantity", 1),
        ("price", "0.1"),
        ("recvWindow", 5000),
        ("timestamp", 1499827319559),
    ]
    assert encode_query(params) == TV_B2_QUERY
    assert sign_rest(Secret(SECRET), TV_B2_QUERY) == TV_B2_SIG
    assert signed_query(SECRET, params) == f"{TV_B2_QUERY}&signature={TV_B2_SIG}"
    assert encode_query(dict(params)) == TV_B2_QUERY  # a mapping keeps insertion order


def tv_b3_params() -> dict[str, Any]:
    # deliberately not in alphabetical order: the payload sorts
    return {
        "symbol": "BTCUSDT",
        "side": "SELL",
        "type": "LIMIT",
        "timeInForce": "GTC",
        "quantity": "0.01000000",
        "price": "52000.00",
        "recvWindow": 100,
        "timestamp": 1645423376532,
        "apiKey": API_KEY,
    }


def test_tv_b3_ws_api_sorted() -> None:
    params = tv_b3_params()
    assert ws_api_payload(params) == TV_B3_PAYLOAD
    assert sign_ws_api(Secret(SECRET), params) == TV_B3_SIG
    # an existing signature is not part of the payload
    assert sign_ws_api(SECRET, {**params, "signature": "stale"}) == TV_B3_SIG
    signed = signed_ws_params(SECRET, {**params, "signature": "stale"})
    assert signed["signature"] == TV_B3_SIG
    assert {k: v for k, v in signed.items() if k != "signature"} == params


def test_tv_b4_ws_api_raw_utf8_not_percent_encoded() -> None:
    params: dict[str, ParamValue] = {
        "apiKey": API_KEY,
        "price": "0.10000000",
        "quantity": "1.00000000",
        "recvWindow": 5000,
        "side": "BUY",
        "symbol": "１２３４５６",
        "timeInForce": "GTC",
        "timestamp": 1645423376532,
        "type": "LIMIT",
    }
    assert ws_api_payload(params) == TV_B4_PAYLOAD
    assert "%" not in ws_api_payload(params)
    assert sign_ws_api(Secret(SECRET), params) == TV_B4_SIG
    assert hmac_sha256_hex(SECRET, TV_B4_PAYLOAD.encode("utf-8")) == TV_B4_SIG


def test_format_value() -> None:
    assert format_value(True) == "true"
    assert format_value(False) == "false"
    assert format_value(5000) == "5000"
    assert format_value("0.10") == "0.10"
    assert format_value(Decimal("0.10000000")) == "0.10000000"
    assert format_value(Decimal("1E-8")) == "0.00000001"
    with pytest.raises(LocalProtocolError):
        format_value(0.1)  # type: ignore[arg-type]
    with pytest.raises(LocalProtocolError):
        format_value(Decimal("NaN"))
    with pytest.raises(LocalProtocolError):
        ws_api_payload({"x": None})  # type: ignore[dict-item]


@pytest.mark.parametrize("bad", ["", None, b"bytes", 5])
def test_bad_secret_is_refused_without_echo(bad: Any) -> None:
    with pytest.raises(ConfigError) as info:
        sign_rest(bad, TV_B1_QUERY)
    assert TV_B1_QUERY not in str(info.value)


def test_secret_never_in_outputs() -> None:
    secret = Secret(SECRET)
    assert SECRET not in repr(secret)
    out = signed_ws_params(secret, tv_b3_params())
    assert SECRET not in repr(out)
    assert SECRET not in signed_query(secret, [("a", 1)])
