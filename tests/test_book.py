"""Unit tests for gapless.book: fixed-point L2 book and the Kraken checksum (protocols.md §1.7).

The random-stream test checks :class:`Book` against a deliberately naive
reference: a dict of Decimals per side, sorted from scratch after every
message, truncated to depth, with the checksum computed exactly as the
protocols.md §1.7 reference sketch does (Decimal formatting at precision,
drop ``.``, strip leading zeros).
"""

from __future__ import annotations

import gc
import zlib
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gapless.book import Book, BookView, fixed_to_decimal, fixed_to_str
from gapless.events import BookUpdate, Level, Levels, event_to_dict
from gapless.venues.numbers import parse_fixed

# ------------------------------------------------------------------ naive reference


def _tok(value: Decimal, prec: int) -> str:
    return f"{value:.{prec}f}".replace(".", "").lstrip("0")


def _naive_checksum(
    asks: dict[Decimal, Decimal], bids: dict[Decimal, Decimal], pp: int, qp: int
) -> int:
    a = sorted(asks.items(), key=lambda x: x[0])[:10]
    b = sorted(bids.items(), key=lambda x: -x[0])[:10]
    s = "".join(_tok(p, pp) + _tok(q, qp) for p, q in a)
    s += "".join(_tok(p, pp) + _tok(q, qp) for p, q in b)
    return zlib.crc32(s.encode()) & 0xFFFFFFFF


class NaiveBook:
    def __init__(self, depth: int, pp: int, qp: int) -> None:
        self.depth, self.pp, self.qp = depth, pp, qp
        self.bids: dict[Decimal, Decimal] = {}
        self.asks: dict[Decimal, Decimal] = {}

    def reset(self) -> None:
        self.bids = {}
        self.asks = {}

    def apply(self, bids: list[tuple[str, str]], asks: list[tuple[str, str]]) -> None:
        for side, levels in ((self.bids, bids), (self.asks, asks)):
            for p, q in levels:
                if Decimal(q) == 0:
                    side.pop(Decimal(p), None)
                else:
                    side[Decimal(p)] = Decimal(q)
        self.bids = dict(sorted(self.bids.items(), key=lambda x: -x[0])[: self.depth])
        self.asks = dict(sorted(self.asks.items(), key=lambda x: x[0])[: self.depth])

    def top_bids(self) -> list[tuple[Decimal, Decimal]]:
        return sorted(self.bids.items(), key=lambda x: -x[0])

    def top_asks(self) -> list[tuple[Decimal, Decimal]]:
        return sorted(self.asks.items(), key=lambda x: x[0])

    def checksum(self) -> int:
        return _naive_checksum(self.asks, self.bids, self.pp, self.qp)


def _fixed(levels: list[tuple[str, str]], pp: int, qp: int) -> list[tuple[int, int]]:
    return [(parse_fixed(p, pp), parse_fixed(q, qp)) for p, q in levels]


# ------------------------------------------------------------------ fixed-point helpers


@pytest.mark.parametrize(
    ("value", "prec", "text"),
    [
        (628071, 1, "62807.1"),
        (5, 8, "0.00000005"),
        (0, 8, "0.00000000"),
        (0, 0, "0"),
        (42, 0, "42"),
        (-5, 8, "-0.00000005"),
        (-628071, 1, "-62807.1"),
        (100000000, 8, "1.00000000"),
        (5660, 4, "0.5660"),
    ],
)
def test_fixed_to_str_and_decimal(value: int, prec: int, text: str) -> None:
    assert fixed_to_str(value, prec) == text
    dec = fixed_to_decimal(value, prec)
    assert dec == Decimal(text)
    assert f"{dec:f}" == text  # keeps exactly `prec` decimals


@settings(max_examples=200, deadline=None)
@given(v=st.integers(-(10**25), 10**25), prec=st.integers(0, 18))
def test_fixed_to_str_matches_decimal_formatting(v: int, prec: int) -> None:
    assert fixed_to_str(v, prec) == f"{Decimal(v).scaleb(-prec):.{prec}f}"
    assert fixed_to_decimal(v, prec) == Decimal(fixed_to_str(v, prec))


# ------------------------------------------------------------------ official vectors

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
TV_K1_ASKS_STRING = (
    "45285210000045286415457195345286615457110945289615456091145290215890660"
    "452918154553491452947445474945296135380000452975994554245299518772827"
)
TV_K1_BIDS_STRING = (
    "452835100000004528341545820154528211000000045281010000000452803154592586"
    "452790799000045277633101034527753000000045277315460273745276615445238"
)

# TV-K2: the doc text exactly as printed (trailing zeros missing, e.g. 0.566, 18097.1547)
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


def test_tv_k1_btc_usd() -> None:
    book = Book("kraken", "BTC/USD", 10, 1, 8)
    book.apply(_fixed(TV_K1_BIDS, 1, 8), _fixed(TV_K1_ASKS, 1, 8))
    assert book.checksum() == 3310070434
    # the per-side token strings are exactly the documented ones
    asks_s = "".join(f"{p}{q}" for p, q in book.asks_fixed(10))
    bids_s = "".join(f"{p}{q}" for p, q in book.bids_fixed(10))
    assert asks_s == TV_K1_ASKS_STRING
    assert bids_s == TV_K1_BIDS_STRING
    assert zlib.crc32((TV_K1_ASKS_STRING + TV_K1_BIDS_STRING).encode()) == 3310070434


def test_tv_k1_input_order_does_not_matter() -> None:
    book = Book("kraken", "BTC/USD", 10, 1, 8)
    book.apply(_fixed(TV_K1_BIDS[::-1], 1, 8), _fixed(TV_K1_ASKS[::-1], 1, 8))
    assert book.checksum() == 3310070434


def test_tv_k2_matic_snapshot_then_update() -> None:
    book = Book("kraken", "MATIC/USD", 10, 4, 8)
    book.apply(_fixed(TV_K2_BIDS, 4, 8), _fixed(TV_K2_ASKS, 4, 8))
    assert book.checksum() == 2439117997
    assert book.bids_fixed(10)[6] == (5660, 1809715470000)  # 0.566 -> 0.5660, 18097.15470000
    book.apply(_fixed([("0.5657", "1098.3947558")], 4, 8), [])
    assert book.checksum() == 2114181697
    assert book.bids(10)[-1] == Level(Decimal("0.5657"), Decimal("1098.39475580"))


def test_tv_k2_trap_raw_doc_text_gives_the_wrong_checksum() -> None:
    """protocols.md §1.7: stripping the printed text as-is gives 3830085102 (wrong)."""

    def raw(v: str) -> str:
        return v.replace(".", "").lstrip("0")

    text = "".join(raw(p) + raw(q) for p, q in TV_K2_ASKS)
    text += "".join(raw(p) + raw(q) for p, q in TV_K2_BIDS)
    assert zlib.crc32(text.encode()) == 3830085102
    # and the naive reference (Decimal formatting at precision) agrees with the Book
    naive = NaiveBook(10, 4, 8)
    naive.apply(TV_K2_BIDS, TV_K2_ASKS)
    assert naive.checksum() == 2439117997


TV_K3_ASKS = [(f"0.0{5005 + 5 * i}", "0.00000500") for i in range(10)]
TV_K3_BIDS = [
    (p, "0.00000500")
    for p in (
        "0.05000",
        "0.04995",
        "0.04990",
        "0.04980",
        "0.04975",
        "0.04970",
        "0.04965",
        "0.04960",
        "0.04955",
        "0.04950",
    )
]
TV_K3_STRING = (
    "5005500501050050155005020500502550050305005035500504050050455005050500"
    "5000500499550049905004980500497550049705004965500496050049555004950500"
)


def test_tv_k3_v1_string_tokens() -> None:
    """v1 strings are already padded: the token is str(scaled price) + str(scaled qty),
    i.e. the wire text with '.' and leading zeros stripped."""
    assert TV_K3_ASKS[0] == ("0.05005", "0.00000500")
    assert TV_K3_ASKS[-1] == ("0.05050", "0.00000500")

    def token(p: str, q: str) -> str:
        fp, fq = parse_fixed(p, 5), parse_fixed(q, 8)
        assert str(fp) == p.replace(".", "").lstrip("0")
        assert str(fq) == q.replace(".", "").lstrip("0")
        return f"{fp}{fq}"

    text = "".join(token(p, q) for p, q in TV_K3_ASKS) + "".join(token(p, q) for p, q in TV_K3_BIDS)
    assert text == TV_K3_STRING
    assert zlib.crc32(text.encode()) & 0xFFFFFFFF == 974947235
    # the Book produces the same string and CRC
    book = Book("kraken", "BTC/USD", 1000, 5, 8)
    book.apply(_fixed(TV_K3_BIDS, 5, 8), _fixed(TV_K3_ASKS, 5, 8))
    assert book.checksum() == 974947235
    # the v1 guide's single-level example
    assert f"{parse_fixed('0.05000', 5)}{parse_fixed('0.00000304', 8)}" == "5000304"


# ------------------------------------------------------------------ Book basics


def _book(depth: int = 10, pp: int = 1, qp: int = 8) -> Book:
    return Book("kraken", "BTC/USD", depth, pp, qp)


def test_empty_book() -> None:
    b = _book()
    assert len(b) == 0
    assert b.checksum() == zlib.crc32(b"") == 0
    assert b.bids() == ()
    assert b.asks() == ()
    assert not b.crossed()
    assert not b.valid
    assert b.last_ts_ns is None
    v = b.view
    assert v.best_bid() is None
    assert v.best_ask() is None
    assert v.bids_float() == []
    assert "bid=None ask=None" in repr(v)


def test_apply_sorts_deletes_and_overwrites() -> None:
    b = _book()
    b.apply([(100, 1), (102, 2), (101, 3)], [(105, 1), (103, 2), (104, 3)])
    assert b.bids_fixed() == [(102, 2), (101, 3), (100, 1)]
    assert b.asks_fixed() == [(103, 2), (104, 3), (105, 1)]
    b.apply([(101, 0), (100, 7)], [(103, 0), (999, 0)])  # delete, overwrite, absent delete
    assert b.bids_fixed() == [(102, 2), (100, 7)]
    assert b.asks_fixed() == [(104, 3), (105, 1)]
    assert len(b) == 4


def test_same_price_twice_in_one_message_applies_in_order() -> None:
    b = _book()
    b.apply([(100, 1), (100, 0), (100, 5)], [(200, 3), (200, 0)])
    assert b.bids_fixed() == [(100, 5)]
    assert b.asks_fixed() == []
    b.apply([(100, 0), (100, 0)], [(200, 0)])  # delete twice: second one is a no-op
    assert len(b) == 0


def test_truncates_to_depth_after_each_message() -> None:
    b = _book(depth=3)
    b.apply([(i, 1) for i in range(1, 6)], [(i, 1) for i in range(10, 15)])
    assert [p for p, _ in b.bids_fixed()] == [5, 4, 3]
    assert [p for p, _ in b.asks_fixed()] == [10, 11, 12]
    # a deleted level inside the window is NOT refilled from beyond depth: it is gone
    b.apply([(5, 0)], [])
    assert [p for p, _ in b.bids_fixed()] == [4, 3]
    # a better price pushes the worst one out (no delete is sent for it)
    b.apply([(9, 1), (8, 1)], [(1, 1)])
    assert [p for p, _ in b.bids_fixed()] == [9, 8, 4]
    assert [p for p, _ in b.asks_fixed()] == [1, 10, 11]
    assert len(b) == 6


def test_checksum_only_top_ten_whatever_the_depth() -> None:
    b25 = _book(depth=25)
    b10 = _book(depth=10)
    bids = [(1000 - i, i + 1) for i in range(25)]
    asks = [(2000 + i, i + 1) for i in range(25)]
    b25.apply(bids, asks)
    b10.apply(bids, asks)
    assert len(b25) == 50
    assert len(b10) == 20
    assert b25.checksum() == b10.checksum()
    b25.apply([(1000 - 20, 0)], [(2000 + 24, 99)])  # changes below the top 10
    assert b25.checksum() == b10.checksum()


def test_reset_forgets_everything() -> None:
    b = _book()
    b.apply([(1, 1)], [(2, 1)])
    b.valid = True
    b.reset()
    assert len(b) == 0
    assert not b.valid
    assert b.checksum() == 0
    b.apply([(3, 1)], [])
    assert b.bids_fixed() == [(3, 1)]


def test_crossed() -> None:
    b = _book()
    b.apply([(100, 1)], [(101, 1)])
    assert not b.crossed()
    b.apply([(101, 1)], [])  # locked counts as crossed
    assert b.crossed()
    b.apply([(101, 0)], [(101, 0), (99, 1)])
    assert b.crossed()
    b.apply([], [(99, 0)])
    assert not b.crossed()  # asks empty
    b.apply([(100, 0)], [(50, 1)])
    assert not b.crossed()  # bids empty


def test_fixed_accessors_with_n() -> None:
    b = _book(depth=10)
    b.apply([(i, i) for i in range(1, 8)], [(i, i) for i in range(10, 17)])
    assert b.bids_fixed(2) == [(7, 7), (6, 6)]
    assert b.asks_fixed(0) == []
    assert len(b.asks_fixed(None)) == 7
    assert len(b.asks_fixed(100)) == 7


def test_book_view_accessors() -> None:
    b = Book("kraken", "MATIC/USD", 25, 4, 8)
    b.apply(_fixed(TV_K2_BIDS, 4, 8), _fixed(TV_K2_ASKS, 4, 8))
    v = b.view
    assert isinstance(v, BookView)
    assert v is b.view  # one view per book, live
    assert (v.venue, v.symbol, v.depth) == ("kraken", "MATIC/USD", 25)
    assert v.best_bid() == Level(Decimal("0.5666"), Decimal("4831.75496356"))
    assert v.best_ask() == Level(Decimal("0.5668"), Decimal("4410.79769741"))
    assert str(v.bids(7)[6].price) == "0.5660"  # exact, at precision
    assert str(v.bids(7)[6].qty) == "18097.15470000"
    assert len(v.bids()) == 10
    assert len(v.asks(3)) == 3
    assert v.bids_float(1) == [(0.5666, 4831.75496356)]
    assert v.asks_float(2) == [(0.5668, 4410.79769741), (0.5669, 4655.40412487)]
    assert all(isinstance(x, float) for pair in v.asks_float() for x in pair)
    assert v.checksum() == 2439117997
    assert not v.valid
    assert v.last_ts_ns is None
    b.valid = True
    b.last_ts_ns = 123
    assert v.valid
    assert v.last_ts_ns == 123
    assert repr(v) == "<BookView kraken:MATIC/USD@25 valid=True bid=0.5666 ask=0.5668>"
    # the view is live: a change to the book shows immediately
    b.apply([(5667, 100000000)], [])
    best = v.best_bid()
    assert best is not None
    assert best.price == Decimal("0.5667")


# ------------------------------------------------------------------ random streams vs naive book


def _wire_text(n: int, prec: int, style: int) -> str:
    """The number n / 10**prec as a venue might print it."""
    d = Decimal(n).scaleb(-prec)
    if style == 0:
        return f"{d:.{prec}f}"  # live frames: full precision
    if style == 1:
        t = f"{d:.{prec}f}"  # doc pages: trailing zeros dropped
        return t.rstrip("0").rstrip(".") if "." in t else t
    return f"{d:E}"  # exponent form


@st.composite
def _level(draw: st.DrawFn, price_max: int, pp: int, qp: int) -> tuple[str, str]:
    price = draw(st.integers(1, price_max))
    qty = draw(st.one_of(st.just(0), st.integers(1, 10**12)))
    style_p = draw(st.integers(0, 2))
    style_q = draw(st.integers(0, 2))
    return _wire_text(price, pp, style_p), _wire_text(qty, qp, style_q)


@st.composite
def _stream(
    draw: st.DrawFn,
) -> tuple[int, int, int, list[tuple[bool, list[tuple[str, str]], list[tuple[str, str]]]]]:
    depth = draw(st.sampled_from([10, 25, 100]))
    pp = draw(st.integers(0, 8))
    qp = draw(st.integers(0, 10))
    price_max = draw(st.sampled_from([15, depth + 20, 3 * depth]))
    level = _level(price_max, pp, qp)
    msgs = []
    n = draw(st.integers(1, 15))
    for i in range(n):
        snapshot = i == 0 or draw(st.integers(0, 12)) == 0
        size = 40 if snapshot else 6
        bids = draw(st.lists(level, max_size=size))
        asks = draw(st.lists(level, max_size=size))
        duplicate = draw(st.booleans())
        if bids and duplicate:
            bids.append((bids[0][0], draw(level)[1]))  # the same price twice in one message
        msgs.append((snapshot, bids, asks))
    return depth, pp, qp, msgs


@settings(max_examples=120, deadline=None)
@given(case=_stream())
def test_random_stream_matches_naive_reference(
    case: tuple[int, int, int, list[tuple[bool, list[tuple[str, str]], list[tuple[str, str]]]]],
) -> None:
    depth, pp, qp, msgs = case
    book = Book("kraken", "X/Y", depth, pp, qp)
    hot = Book("kraken", "X/Y", depth, pp, qp)  # driven through the hot path
    plain = Book("binance", "X/Y", depth, pp, qp, checksum_tokens=False)  # no tokens kept
    ref = NaiveBook(depth, pp, qp)
    for snapshot, bids, asks in msgs:
        if snapshot:
            book.reset()
            hot.reset()
            plain.reset()
            ref.reset()
        book.apply(_fixed(bids, pp, qp), _fixed(asks, pp, qp))
        plain.apply(_fixed(bids, pp, qp), _fixed(asks, pp, qp))
        assert (plain.bids_fixed(), plain.asks_fixed()) == (book.bids_fixed(), book.asks_fixed())
        crc = hot.apply_checksum(_fixed(bids, pp, qp), _fixed(asks, pp, qp))
        ref.apply(bids, asks)
        assert crc == ref.checksum()
        assert plain.checksum() == crc  # made on demand from the levels
        assert hot.bids_fixed() == book.bids_fixed()
        assert hot.asks_fixed() == book.asks_fixed()
        assert [(lv.price, lv.qty) for lv in book.bids()] == ref.top_bids()
        assert [(lv.price, lv.qty) for lv in book.asks()] == ref.top_asks()
        assert len(book) == len(ref.bids) + len(ref.asks)
        assert book.checksum() == ref.checksum()
        rb, ra = ref.top_bids(), ref.top_asks()
        assert book.crossed() == bool(rb and ra and rb[0][0] >= ra[0][0])
        # Decimal views carry exactly `precision` decimals (what users format)
        for lv in book.bids(3) + book.asks(3):
            assert lv.price.as_tuple().exponent == -pp
            assert lv.qty.as_tuple().exponent == -qp


def test_levels_are_exact_and_lazy() -> None:
    lv = Levels([(628071, 50930100), (628070, 0)], 1, 8)
    assert len(lv) == 2
    assert bool(lv)
    assert lv.fixed() == [(628071, 50930100), (628070, 0)]
    assert lv[0] == Level(Decimal("62807.1"), Decimal("0.50930100"))
    assert str(lv[1].qty) == "0E-8"
    assert format(lv[1].qty, "f") == "0.00000000"
    assert lv == (
        Level(Decimal("62807.1"), Decimal("0.50930100")),
        Level(Decimal("62807.0"), Decimal(0)),
    )
    assert list(lv) == list(lv[0:2])
    assert lv.floats() == [(62807.1, 0.509301), (62807.0, 0.0)]
    assert lv == Levels([(628071, 50930100), (628070, 0)], 1, 8)
    assert lv != Levels([(628071, 50930101), (628070, 0)], 1, 8)
    assert not Levels([], 1, 8)
    assert Levels([], 1, 8) == ()
    assert "62807.1" in repr(lv)
    assert event_to_dict(
        BookUpdate(
            venue="kraken",
            local_ts_ns=1,
            symbol="BTC/USD",
            exchange_ts_ns=2,
            stream="kraken:book:BTC/USD:10",
            depth=10,
            bids=lv,
            asks=Levels([], 1, 8),
            checksum=3,
        )
    )["bids"] == [["62807.1", "0.50930100"], ["62807.0", "0.00000000"]]


def test_replaced_book_is_freed_without_the_cyclic_collector() -> None:
    """A resync replaces a book; the old one (thousands of levels on Binance) must
    go when its last view goes, not wait for a full gc pass (the 10-minute soak
    found dozens of them waiting)."""

    def books() -> int:
        return sum(1 for o in gc.get_objects() if type(o) is Book)

    gc.disable()
    try:
        before = books()
        b = Book("binance", "BTCUSDT", 10, 2, 5)
        b.apply([(100, 1), (99, 2)], [(101, 3)])
        v = b.view
        assert v is b.view
        assert len(b) == 3
        ev_view = b.view  # what an event holds
        del b, v
        assert books() == before + 1  # the view keeps its book alive
        del ev_view
        assert books() == before
    finally:
        gc.enable()
