"""Kraken API-Sign (protocols.md §1.6, TV-K0) and nonces."""

from __future__ import annotations

import pytest

from gapless.errors import ConfigError, LocalProtocolError
from gapless.secrets import Secret
from gapless.venues.kraken.signing import NonceSource, encode_body, sign

TV_K0_SECRET = (
    "kQH5HW/8p1uGOVjbgWA7FunAmGO8lsSUXNsu3eow76sz84Q18fWxnyRzBHCd3pd5nE9qa99HAZtuZuj6F1huXg=="
)
TV_K0_SIGN = (
    "4/dpxb3iT4tp/ZCVEwSnEsLxx0bqyhLpdfOpc6fn7OR8+UClSV5n9E6aSS8MPtnRfp32bAb0nmbRn6H8ndwLUQ=="
)


def test_tv_k0() -> None:
    body = encode_body(
        [
            ("nonce", "1616492376594"),
            ("ordertype", "limit"),
            ("pair", "XBTUSD"),
            ("price", "37500"),
            ("type", "buy"),
            ("volume", "1.25"),
        ]
    )
    assert (
        body == "nonce=1616492376594&ordertype=limit&pair=XBTUSD&price=37500&type=buy&volume=1.25"
    )
    assert sign(Secret(TV_K0_SECRET), "/0/private/AddOrder", 1616492376594, body) == TV_K0_SIGN
    assert sign(TV_K0_SECRET, "/0/private/AddOrder", "1616492376594", body) == TV_K0_SIGN


def test_sign_refuses_bad_input_without_echoing_the_secret() -> None:
    with pytest.raises(ConfigError) as info:
        sign(Secret("not base64 !!"), "/0/private/X", 1, "nonce=1")
    assert "not base64" not in str(info.value).replace("not valid base64", "")
    with pytest.raises(LocalProtocolError):
        sign(TV_K0_SECRET, "https://api.kraken.com/0/private/X", 1, "nonce=1")


def test_nonces_strictly_increase_even_when_the_clock_stalls_or_steps_back() -> None:
    src = NonceSource()
    a = src.next(1_700_000_000_000_000_000)
    b = src.next(1_700_000_000_000_000_000)
    c = src.next(1_600_000_000_000_000_000)
    d = src.next(1_700_000_000_001_000_000)
    assert a < b < c < d
    assert a == 1_700_000_000_000_000
