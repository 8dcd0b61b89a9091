"""Checksum test vectors (protocols.md §1.7 TV-K1, TV-K2) and number formatting."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from simkit import ref_checksum

from gapless.sim.checksum import checksum_scaled, checksum_text
from gapless.sim.numbers import fmt_fixed, parse_fixed, rfc3339_us

TV_K1_BIDS = [
    ("45283.5", "0.10000000"),
    ("45283.4", "1.54582015"),
    ("45282.1", "0.10000000"),
    ("45281.0", "0.10000000"),
    ("45280.3", "1.54592586"),
    ("45279.0", "0.07990000"),
    ("45277.6", "0.03310103"),
    ("45277.5", "0.30000000"),
    ("45277.3", "1.54602737"),
    ("45276.6", "0.15445238"),
]
TV_K1_ASKS = [
    ("45285.2", "0.00100000"),
    ("45286.4", "1.54571953"),
    ("45286.6", "1.54571109"),
    ("45289.6", "1.54560911"),
    ("45290.2", "0.15890660"),
    ("45291.8", "1.54553491"),
    ("45294.7", "0.04454749"),
    ("45296.1", "0.35380000"),
    ("45297.5", "0.09945542"),
    ("45299.5", "0.18772827"),
]

# TV-K2: the numbers exactly as the doc page prints them (some without trailing zeros)
TV_K2_BIDS = [
    ("0.5666", "4831.75496356"),
    ("0.5665", "6658.22734739"),
    ("0.5664", "18724.91513344"),
    ("0.5663", "11563.92544914"),
    ("0.5662", "14006.65365711"),
    ("0.5661", "17454.85679807"),
    ("0.566", "18097.1547"),
    ("0.5659", "33644.89175666"),
    ("0.5658", "148.3464"),
    ("0.5657", "606.70854372"),
]
TV_K2_ASKS = [
    ("0.5668", "4410.79769741"),
    ("0.5669", "4655.40412487"),
    ("0.567", "49844.89424998"),
    ("0.5671", "24306.41678"),
    ("0.5672", "29783.25223475"),
    ("0.5673", "57234.71239278"),
    ("0.5674", "45065.04744"),
    ("0.5675", "5912.76380354"),
    ("0.5676", "42514.92434778"),
    ("0.5677", "36304.0847022"),
]


def test_tv_k1() -> None:
    assert checksum_text(TV_K1_ASKS, TV_K1_BIDS, 1, 8) == 3310070434


def test_tv_k1_order_independent() -> None:
    assert checksum_text(TV_K1_ASKS[::-1], TV_K1_BIDS[::-1], 1, 8) == 3310070434


def test_tv_k2_snapshot_then_update() -> None:
    assert checksum_text(TV_K2_ASKS, TV_K2_BIDS, 4, 8) == 2439117997
    bids = dict(TV_K2_BIDS)
    bids["0.5657"] = "1098.3947558"
    assert checksum_text(TV_K2_ASKS, list(bids.items()), 4, 8) == 2114181697


def test_tv_k2_trap_raw_text_is_wrong() -> None:
    """Using printed text without precision formatting gives 3830085102 (protocols.md §1.7)."""
    import zlib

    def raw(levels: list[tuple[str, str]]) -> str:
        return "".join(
            (p.replace(".", "").lstrip("0") + q.replace(".", "").lstrip("0")) for p, q in levels
        )

    s = raw(TV_K2_ASKS) + raw(TV_K2_BIDS)
    assert zlib.crc32(s.encode()) == 3830085102
    assert checksum_text(TV_K2_ASKS, TV_K2_BIDS, 4, 8) != 3830085102


def test_reference_matches_vectors() -> None:
    bids = {Decimal(p): Decimal(q) for p, q in TV_K1_BIDS}
    asks = {Decimal(p): Decimal(q) for p, q in TV_K1_ASKS}
    assert ref_checksum(bids, asks, 1, 8) == 3310070434


@settings(max_examples=200, deadline=None)
@given(
    pp=st.integers(0, 6),
    qp=st.integers(0, 8),
    bids=st.dictionaries(st.integers(1, 10**9), st.integers(1, 10**12), max_size=15),
    asks=st.dictionaries(st.integers(1, 10**9), st.integers(1, 10**12), max_size=15),
)
def test_scaled_checksum_matches_decimal_reference(
    pp: int, qp: int, bids: dict[int, int], asks: dict[int, int]
) -> None:
    a = sorted(asks.items())
    b = sorted(bids.items(), reverse=True)
    dec_bids = {Decimal(p).scaleb(-pp): Decimal(q).scaleb(-qp) for p, q in bids.items()}
    dec_asks = {Decimal(p).scaleb(-pp): Decimal(q).scaleb(-qp) for p, q in asks.items()}
    assert checksum_scaled(a, b) == ref_checksum(dec_bids, dec_asks, pp, qp)


@pytest.mark.parametrize(
    ("value", "prec", "text"),
    [
        (628070, 1, "62807.0"),
        (0, 8, "0.00000000"),
        (5660, 4, "0.5660"),
        (12315, 5, "0.12315"),
        (3282824000000, 8, "32828.24000000"),
        (7, 0, "7"),
        (-17, 5, "-0.00017"),
    ],
)
def test_fmt_fixed(value: int, prec: int, text: str) -> None:
    assert fmt_fixed(value, prec) == text
    assert parse_fixed(text, prec) == value


def test_parse_fixed_rejects_excess_precision() -> None:
    with pytest.raises(ValueError, match="fractional digits"):
        parse_fixed("0.123", 2)


def test_rfc3339() -> None:
    assert rfc3339_us(1696613755440295) == "2023-10-06T17:35:55.440295Z"
    assert rfc3339_us(1696613755000001) == "2023-10-06T17:35:55.000001Z"
