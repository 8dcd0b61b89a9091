"""Unit tests for gapless.venues.numbers: exact wire-number conversion (protocols.md §1.7)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gapless.book import fixed_to_str
from gapless.errors import DecodeError
from gapless.venues.numbers import (
    PriceCache,
    fixed_plain,
    fixed_plain_cached,
    parse_decimal,
    parse_fixed,
    parse_int,
)

# ------------------------------------------------------------------ parse_fixed


@pytest.mark.parametrize(
    ("text", "prec", "want"),
    [
        ("62807.1", 1, 628071),
        ("62807.0", 1, 628070),
        ("0.00000000", 8, 0),
        ("0.50930100", 8, 50930100),  # trailing zeros kept exactly (design.md §6)
        ("0.00005100", 8, 5100),
        ("32828.24000000", 8, 3282824000000),
        ("0.566", 4, 5660),  # doc text without trailing zeros (TV-K2)
        ("18097.1547", 8, 1809715470000),
        ("0.5", 4, 5000),
        ("1.", 2, 100),
        ("0.0", 0, 0),
        ("45283.5", 1, 452835),
        ("-0.00017", 5, -17),  # ticker change may be negative
        ("-0.17", 2, -17),
        ("-0.0", 8, 0),
    ],
)
def test_parse_fixed_fraction_text(text: str, prec: int, want: int) -> None:
    assert parse_fixed(text, prec) == want


@pytest.mark.parametrize(
    ("text", "prec", "want"),
    [
        ("0.56660000", 4, 5666),  # more decimals than precision, zero tail: fine
        ("62807.10000000000", 1, 628071),
        ("4.000000000000", 8, 400000000),
        ("1.0", 0, 1),
    ],
)
def test_parse_fixed_extra_zero_decimals_accepted(text: str, prec: int, want: int) -> None:
    assert parse_fixed(text, prec) == want


@pytest.mark.parametrize(
    ("text", "prec"),
    [
        ("0.56661", 4),  # non-zero tail: not on the venue's grid
        ("62807.15", 1),
        ("0.000000001", 8),
        ("1.5", 0),
        ("0.00000000000000000000000000001", 8),
    ],
)
def test_parse_fixed_extra_nonzero_decimals_rejected(text: str, prec: int) -> None:
    with pytest.raises(DecodeError, match="more than"):
        parse_fixed(text, prec)


@pytest.mark.parametrize(
    ("text", "prec", "want"),
    [
        ("1e-08", 8, 1),  # the instrument channel's exponent form (§1.9)
        ("1e-8", 8, 1),
        ("1E-08", 8, 1),
        ("5e-05", 8, 5000),
        ("-1e-08", 8, -1),
        ("1e+2", 1, 1000),
        ("1.5e1", 0, 15),
        ("1.50e1", 0, 15),
        ("123.4500e2", 2, 1234500),
        ("0e-999999999", 8, 0),  # zero at any exponent is zero
        ("-0E+5", 2, 0),
        ("1e33", 1, 10**34),
    ],
)
def test_parse_fixed_exponent_forms(text: str, prec: int, want: int) -> None:
    assert parse_fixed(text, prec) == want


@pytest.mark.parametrize(
    ("text", "prec"),
    [
        ("1e-09", 8),  # more decimals than precision
        ("1e-8", 0),
        ("1e-999999999", 8),  # was accepted as 0 (a delete!) through Decimal underflow
        ("1e999999999", 8),  # was decimal.Overflow, not DecodeError
        ("1E+999999", 8),
        ("1e34", 1),  # |scaled| >= 10**35
        ("-1e34", 1),
    ],
)
def test_parse_fixed_exponent_rejections_are_decode_errors(text: str, prec: int) -> None:
    with pytest.raises(DecodeError):
        parse_fixed(text, prec)


@pytest.mark.parametrize(
    ("value", "prec", "want"),
    [(5, 2, 500), (0, 8, 0), (-3, 1, -30), (62807, 1, 628070), (10**34, 0, 10**34)],
)
def test_parse_fixed_ints(value: int, prec: int, want: int) -> None:
    assert parse_fixed(value, prec) == want


def test_parse_fixed_int_out_of_range() -> None:
    with pytest.raises(DecodeError, match="out of range"):
        parse_fixed(10**35, 0)
    with pytest.raises(DecodeError, match="out of range"):
        parse_fixed(-(10**35), 0)


def test_parse_fixed_too_long_text() -> None:
    assert parse_fixed("1." + "0" * 34, 8) == 100000000  # 36 characters: the limit
    with pytest.raises(DecodeError, match="too long"):
        parse_fixed("1." + "0" * 35, 8)
    with pytest.raises(DecodeError, match="too long"):
        parse_fixed("9" * 400, 0)


@pytest.mark.parametrize(
    "text",
    [
        "",
        ".",
        "abc",
        "1.2.3",
        "NaN",
        "nan",
        "sNaN",
        "Infinity",
        "-Infinity",
        "inf",
        "1e",
        "--1",
        "0x10",
    ],
)
def test_parse_fixed_not_a_number(text: str) -> None:
    with pytest.raises(DecodeError):
        parse_fixed(text, 8)


@pytest.mark.parametrize("value", [None, True, False, 1.5, {"a": 1}, [1], b"1.0", Decimal("1.0")])
def test_parse_fixed_wrong_types(value: object) -> None:
    with pytest.raises(DecodeError, match="expected a number"):
        parse_fixed(value, 8)


@settings(max_examples=300, deadline=None)
@given(v=st.integers(min_value=-(10**30), max_value=10**30), prec=st.integers(0, 18))
def test_parse_fixed_round_trips_fixed_to_str(v: int, prec: int) -> None:
    text = fixed_to_str(v, prec)
    assert parse_fixed(text, prec) == v
    # the same value printed with extra trailing zeros is the same number
    if "." in text and len(text) < 30:
        assert parse_fixed(text + "000", prec) == v


@settings(max_examples=300, deadline=None)
@given(v=st.integers(min_value=-(10**20), max_value=10**20), prec=st.integers(0, 12))
def test_parse_fixed_agrees_with_decimal_exponent_form(v: int, prec: int) -> None:
    text = f"{Decimal(v).scaleb(-prec):E}"  # e.g. '1.2345E-3'
    assert parse_fixed(text, prec) == v


# ------------------------------------------------------------------ parse_decimal


@pytest.mark.parametrize(
    ("value", "want"),
    [
        ("0.50930100", "0.50930100"),
        ("0.00000000", "0E-8"),
        ("-0.17", "-0.17"),
        ("1e-08", "1E-8"),
        (5, "5"),
        (-3, "-3"),
    ],
)
def test_parse_decimal_exact(value: object, want: str) -> None:
    got = parse_decimal(value)
    assert str(got) == want
    assert got == Decimal(want)


def test_parse_decimal_keeps_trailing_zeros() -> None:
    assert f"{parse_decimal('0.50930100'):f}" == "0.50930100"
    assert f"{parse_decimal('0.00000000'):f}" == "0.00000000"


@pytest.mark.parametrize("value", ["NaN", "sNaN", "Infinity", "-inf", "abc", "", "1.2.3"])
def test_parse_decimal_rejects_non_finite_and_garbage(value: str) -> None:
    with pytest.raises(DecodeError):
        parse_decimal(value)


@pytest.mark.parametrize("value", [None, True, 1.5, [1], {"x": 1}])
def test_parse_decimal_wrong_types(value: object) -> None:
    with pytest.raises(DecodeError, match="expected a number"):
        parse_decimal(value)


def test_parse_decimal_range() -> None:
    with pytest.raises(DecodeError, match="too long"):
        parse_decimal("1" * 37)
    with pytest.raises(DecodeError, match="out of range"):
        parse_decimal(10**35)
    assert parse_decimal(10**35 - 1) == Decimal(10**35 - 1)


# ------------------------------------------------------------------ parse_int


def test_parse_int_defaults_are_uint64() -> None:
    assert parse_int(0) == 0
    assert parse_int(2**64 - 1) == 2**64 - 1
    with pytest.raises(DecodeError, match="out of range"):
        parse_int(2**64)
    with pytest.raises(DecodeError, match="out of range"):
        parse_int(-1)


def test_parse_int_custom_bounds() -> None:
    assert parse_int(18, hi=18) == 18
    assert parse_int(-5, lo=-10, hi=10) == -5
    with pytest.raises(DecodeError):
        parse_int(19, hi=18)
    with pytest.raises(DecodeError):
        parse_int(-11, lo=-10, hi=10)
    assert parse_int(0xFFFFFFFF, hi=0xFFFFFFFF) == 0xFFFFFFFF
    with pytest.raises(DecodeError):
        parse_int(2**32, hi=0xFFFFFFFF)


@pytest.mark.parametrize("value", [True, False, 1.0, "1", None, [1], Decimal(1)])
def test_parse_int_rejects_non_ints_including_bool(value: object) -> None:
    with pytest.raises(DecodeError, match="expected an integer"):
        parse_int(value)


@settings(max_examples=200, deadline=None)
@given(v=st.integers(min_value=-(2**70), max_value=2**70))
def test_parse_int_matches_bounds(v: int) -> None:
    if 0 <= v <= 2**64 - 1:
        assert parse_int(v) == v
    else:
        with pytest.raises(DecodeError):
            parse_int(v)


@settings(max_examples=400, deadline=None)
@given(
    value=st.one_of(
        st.from_regex(r"[0-9]{1,12}(\.[0-9]{1,12})?", fullmatch=True),
        st.text(alphabet="0123456789.-e ١", max_size=14),
        st.integers(),
        st.none(),
    ),
    prec=st.integers(0, 12),
)
def test_fixed_plain_is_parse_fixed_on_plain_text_and_none_otherwise(
    value: object, prec: int
) -> None:
    """The venues' hot path: never a different number than the validating parser, and
    None (the general path decides) for anything but plain text within the precision."""
    got = fixed_plain(value, prec)
    cache = PriceCache().at(prec)
    assert fixed_plain_cached(cache, value, prec) == got
    assert fixed_plain_cached(cache, value, prec) == got  # from the cache
    if got is not None:
        assert got == parse_fixed(value, prec)
    plain = isinstance(value, str) and value.isascii() and value.replace(".", "", 1).isdigit()
    if plain and isinstance(value, str) and not value.startswith(".") and not value.endswith("."):
        decimals = len(value) - value.find(".") - 1 if "." in value else 0
        assert (got is not None) == (decimals <= prec)
    else:
        assert got is None
