"""Simulated accounts and matching engine (gapless.sim.accounts): pure unit tests plus
Hypothesis properties (balances never negative, totals move exactly by the ledger,
holds return to zero, cum_qty <= qty)."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from decimal import Decimal
from itertools import count
from typing import Any, Literal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gapless.sim.accounts import (
    DEMO_KRAKEN_ACCOUNT,
    AccountSpec,
    DmsFired,
    ExecutionReport,
    Instrument,
    LedgerEntry,
    MatchingEngine,
    OrderRejected,
    Record,
)
from gapless.sim.market import DEFAULT_PAIRS

D = Decimal
KEY = "k1"
BTC = Instrument("BTC/USD", "BTC", "USD", 1, 8, D("0.0001"), D("0.5"))
TST = Instrument("TST/USD", "TST", "USD", 1, 4, D("0.0001"), D(0))
PREC = {"USD": 4, "BTC": 10, "TST": 10}


class FakeBook:
    """Static public books: levels best first, (price, qty)."""

    def __init__(self) -> None:
        self.levels: dict[tuple[str, str], list[tuple[Decimal, Decimal]]] = {
            ("BTC/USD", "asks"): [
                (D("100.0"), D("0.5")),
                (D("100.5"), D("1")),
                (D("101.0"), D("2")),
            ],
            ("BTC/USD", "bids"): [(D("99.5"), D("0.5")), (D("99.0"), D("1")), (D("98.0"), D("2"))],
        }

    def __call__(self, symbol: str, side: Literal["bids", "asks"]) -> Iterator[tuple[D, D]]:
        yield from self.levels.get((symbol, side), [])


def make_engine(
    balances: dict[str, str] | None = None,
    book: FakeBook | None = None,
    keep_closed: int | None = None,
) -> MatchingEngine:
    counter = count(1)

    def new_id(kind: str) -> str:
        return f"{kind[0].upper()}{next(counter)}"

    spec = AccountSpec(KEY, "c2VjcmV0", balances or {"USD": "100000", "BTC": "10"})
    return MatchingEngine(
        [BTC, TST],
        PREC,
        new_id,
        book or FakeBook(),
        accounts=[spec],
        first_trade_id=500,
        keep_closed=keep_closed,
    )


def kinds(records: list[Record]) -> list[str]:
    out: list[str] = []
    for r in records:
        if isinstance(r, ExecutionReport):
            out.append(r.exec_type)
        elif isinstance(r, LedgerEntry):
            out.append(f"L:{r.asset}")
        else:
            out.append("dms")
    return out


def test_demo_account() -> None:
    spec = DEMO_KRAKEN_ACCOUNT
    assert spec.api_key == "gapless-sim-demo-key"
    assert len(base64.b64decode(spec.api_secret)) == 64
    assert spec.api_secret not in repr(spec)
    assert D(spec.balances["USD"]) == 1_000_000
    assert D(spec.balances["BTC"]) == 10
    assert D(spec.balances["ETH"]) == 100
    assert {p.base for p in DEFAULT_PAIRS} <= set(spec.balances)


def test_resting_limit_buy_holds_then_cancel_releases() -> None:
    eng = make_engine()
    acct = eng.account(KEY)
    view, recs = eng.add_order(
        KEY, symbol="BTC/USD", side="buy", order_type="limit", qty=D("2"),
        limit_price=D("90.0"), cl_ord_id="c1", ts=10,
    )  # fmt: skip
    assert kinds(recs) == ["new"]
    assert view.status == "new"
    assert view.cl_ord_id == "c1"
    assert view.time_in_force == "GTC"
    # qty x limit = 180, plus the max (taker) fee 0.468, both rounded up at 4 dp
    assert acct.hold("USD") == D("180.4680")
    assert acct.available("USD") == D("100000") - D("180.4680")
    assert [o.order_id for o in eng.snapshot_orders(KEY)] == [view.order_id]
    recs = eng.cancel(KEY, view.order_id, 20)
    assert kinds(recs) == ["canceled"]
    rep = recs[0]
    assert isinstance(rep, ExecutionReport)
    assert rep.order.reason == "User requested"
    assert rep.order.close_ts == 20
    assert acct.hold("USD") == 0
    assert eng.snapshot_orders(KEY) == []
    with pytest.raises(OrderRejected, match="EOrder:Unknown order"):
        eng.cancel(KEY, view.order_id, 21)
    assert eng.final_orders(KEY)[view.order_id].status == "canceled"


def test_keep_closed_forgets_the_oldest_closed_orders_never_open_ones() -> None:
    """A long soak bounds the engine's history as a venue's is: the oldest closed
    orders are forgotten (counted), open ones never; a forgotten order is
    unknown to cancel, as on the venue."""
    eng = make_engine(keep_closed=2)
    acct = eng.account(KEY)

    def rest(ts: int) -> str:
        view, _ = eng.add_order(
            KEY, symbol="BTC/USD", side="buy", order_type="limit", qty=D("0.1"),
            limit_price=D("90.0"), cl_ord_id=None, ts=ts,
        )  # fmt: skip
        return view.order_id

    resting = rest(1)  # stays open throughout
    closed = []
    for ts in range(2, 6):
        oid = rest(ts)
        eng.cancel(KEY, oid, ts)
        closed.append(oid)
    assert acct.forgotten == 2
    assert list(eng.final_orders(KEY)) == [resting, *closed[2:]]
    assert eng.final_orders(KEY)[resting].status == "new"
    with pytest.raises(OrderRejected, match="EOrder:Unknown order"):
        eng.cancel(KEY, closed[0], 9)
    assert make_engine().account(KEY).forgotten == 0  # None keeps everything
    with pytest.raises(ValueError, match="keep_closed"):
        make_engine(keep_closed=-1)


def test_marketable_limit_walks_visible_levels_as_taker() -> None:
    eng = make_engine()
    acct = eng.account(KEY)
    view, recs = eng.add_order(
        KEY, symbol="BTC/USD", side="buy", order_type="limit", qty=D("1"),
        limit_price=D("100.5"), ts=5,
    )  # fmt: skip
    assert kinds(recs) == ["new", "trade", "L:BTC", "L:USD", "trade", "L:BTC", "L:USD", "filled"]
    t1, b1, q1, t2, _b2, q2 = recs[1:7]
    assert isinstance(t1, ExecutionReport)
    assert t1.fill is not None
    assert isinstance(t2, ExecutionReport)
    assert t2.fill is not None
    assert (t1.fill.price, t1.fill.qty, t1.fill.liquidity) == (D("100.0"), D("0.5"), "t")
    assert (t2.fill.price, t2.fill.qty) == (D("100.5"), D("0.5"))
    assert t1.fill.cost == D("50.00")
    assert t2.fill.cost == D("50.250")
    assert t1.fill.trade_id == 500
    assert t2.fill.trade_id == 501
    assert t1.order.status == "partially_filled"
    assert t2.order.status == "filled"
    # fees 0.26 %: 0.13 and 0.13065 -> cumulative rounding posts 0.1300 then 0.1307
    assert t1.fill.fee == D("0.1300")
    assert t2.fill.fee == D("0.1307")
    assert isinstance(b1, LedgerEntry)
    assert isinstance(q1, LedgerEntry)
    assert b1.ref_id == q1.ref_id == t1.fill.exec_id
    assert (b1.amount, b1.fee) == (D("0.5"), D(0))
    assert (q1.amount, q1.fee) == (D("-50.0000"), D("0.1300"))
    assert isinstance(q2, LedgerEntry)
    assert q2.amount == D("-50.2500")
    assert view.avg_price == D("100.2")  # 100.25 half-even at 1 dp
    assert view.cum_cost == D("100.25")
    assert acct.total("BTC") == D("11")
    assert acct.total("USD") == D("100000") - D("100.25") - D("0.2607")
    assert acct.hold("USD") == 0
    assert view.fee == D("0.2607")
    assert [r.fill.exec_id for r in eng.recent_fills(KEY) if r.fill] == [
        t1.fill.exec_id,
        t2.fill.exec_id,
    ]


def test_partial_taker_then_rest_and_ioc_remainder() -> None:
    eng = make_engine()
    view, recs = eng.add_order(
        KEY, symbol="BTC/USD", side="buy", order_type="limit", qty=D("2"),
        limit_price=D("100.5"), ts=5,
    )  # fmt: skip
    assert view.status == "partially_filled"
    assert view.cum_qty == D("1.5")
    assert kinds(recs)[-1] == "L:USD"  # still open: no filled/canceled report
    assert eng.account(KEY).hold("USD") > 0
    view, recs = eng.add_order(
        KEY, symbol="BTC/USD", side="buy", order_type="limit", qty=D("2"),
        limit_price=D("100.0"), time_in_force="ioc", ts=6,
    )  # fmt: skip
    assert view.status == "canceled"
    assert view.cum_qty == D("0.5")
    assert view.reason == "Immediate or cancel"
    assert kinds(recs)[-1] == "canceled"
    assert len(eng.snapshot_orders(KEY)) == 1


def test_market_sell_and_market_remainder() -> None:
    eng = make_engine()
    view, recs = eng.add_order(
        KEY, symbol="BTC/USD", side="sell", order_type="market", qty=D("4"), ts=7
    )
    fills = [r.fill for r in recs if isinstance(r, ExecutionReport) and r.fill]
    assert [(f.price, f.qty) for f in fills] == [
        (D("99.5"), D("0.5")),
        (D("99.0"), D("1")),
        (D("98.0"), D("2")),
    ]
    assert view.status == "canceled"
    assert view.cum_qty == D("3.5")
    acct = eng.account(KEY)
    assert acct.total("BTC") == D("6.5")
    assert acct.hold("BTC") == 0
    proceeds = D("49.75") + D("99") + D("196")
    assert acct.total("USD") == D("100000") + proceeds - view.fee
    assert view.fee == (proceeds * D("0.0026")).quantize(D("0.0001"))


def test_post_only_and_rejections_change_nothing() -> None:
    eng = make_engine({"USD": "150", "BTC": "1"})
    acct = eng.account(KEY)

    def add(**kw: Any) -> None:
        args: dict[str, Any] = {
            "symbol": "BTC/USD",
            "side": "buy",
            "order_type": "limit",
            "qty": D("1"),
            "limit_price": D("99.0"),
            "ts": 1,
        }
        args.update(kw)
        eng.add_order(KEY, **args)

    cases: list[tuple[dict[str, Any], str]] = [
        ({"limit_price": D("100.0"), "post_only": True}, "EOrder:Post only order"),
        ({"side": "sell", "limit_price": D("99.5"), "post_only": True}, "EOrder:Post only order"),
        ({"qty": D("2")}, "EOrder:Insufficient funds"),
        ({"side": "sell", "qty": D("1.5"), "limit_price": D("120.0")}, "EOrder:Insufficient funds"),
        ({"symbol": "NOPE/USD"}, "EQuery:Unknown asset pair"),
        ({"qty": D("0.00005")}, "EOrder:Order minimum not met"),
        ({"qty": D("0.000100001")}, "EGeneral:Invalid arguments:order_qty"),
        ({"limit_price": D("99.05")}, "EGeneral:Invalid arguments:limit_price"),
        ({"limit_price": None}, "EGeneral:Invalid arguments:limit_price"),
        ({"qty": D("0.001"), "limit_price": D("99.0")}, "EOrder:Cost minimum not met"),
        ({"order_type": "market", "post_only": True}, "EGeneral:Invalid arguments:post_only"),
        ({"post_only": True, "time_in_force": "IOC"}, "EGeneral:Invalid arguments:post_only"),
        ({"time_in_force": "GTD"}, "EGeneral:Invalid arguments:time_in_force"),
        ({"side": "hold"}, "EGeneral:Invalid arguments:side"),
        ({"order_type": "stop"}, "EGeneral:Invalid arguments:order_type"),
    ]
    for kw, error in cases:
        with pytest.raises(OrderRejected) as info:
            add(**kw)
        assert info.value.error == error, kw
    assert eng.final_orders(KEY) == {}
    assert acct.balances() == {"USD": D("150"), "BTC": D("1")}
    assert acct.hold("USD") == 0
    assert acct.hold("BTC") == 0
    # a post-only order that does not cross rests; a duplicate client id is refused
    add(post_only=True, cl_ord_id="x", qty=D("0.5"))
    with pytest.raises(OrderRejected, match="EOrder:Duplicate cl_ord_id"):
        add(cl_ord_id="x", qty=D("0.1"))
    assert eng.find_open_by_cl(KEY, "x") is not None


def test_maker_fills_from_public_trades_in_price_time_priority() -> None:
    eng = make_engine()
    a, _ = eng.add_order(
        KEY, symbol="BTC/USD", side="sell", order_type="limit", qty=D("1"),
        limit_price=D("102.0"), ts=1,
    )  # fmt: skip
    b, _ = eng.add_order(
        KEY, symbol="BTC/USD", side="sell", order_type="limit", qty=D("1"),
        limit_price=D("101.5"), ts=2,
    )  # fmt: skip
    c, _ = eng.add_order(
        KEY, symbol="BTC/USD", side="sell", order_type="limit", qty=D("1"),
        limit_price=D("101.5"), ts=3,
    )  # fmt: skip
    # a taker *sell* never fills resting sells; a buy below every limit fills nothing
    assert eng.on_public_trade("BTC/USD", D("103.0"), D("5"), "sell", 4) == []
    assert eng.on_public_trade("BTC/USD", D("101.0"), D("5"), "buy", 4) == []
    assert eng.on_public_trade("ETH/USD", D("200.0"), D("5"), "buy", 4) == []
    recs = eng.on_public_trade("BTC/USD", D("102.0"), D("1.5"), "buy", 5)
    fills = [(r.order.order_id, r.fill) for r in recs if isinstance(r, ExecutionReport) and r.fill]
    assert [(oid, f.qty, f.price, f.liquidity) for oid, f in fills] == [
        (b.order_id, D("1"), D("101.5"), "m"),
        (c.order_id, D("0.5"), D("101.5"), "m"),
    ]
    assert fills[0][1].fee == (D("101.5") * D("0.0016")).quantize(D("0.0001"))
    final = eng.final_orders(KEY)
    assert final[b.order_id].status == "filled"
    assert final[c.order_id].status == "partially_filled"
    assert final[a.order_id].status == "new"


def test_force_fill_fraction_and_all() -> None:
    eng = make_engine()
    v, _ = eng.add_order(
        KEY, symbol="TST/USD", side="buy", order_type="limit", qty=D("0.0003"),
        limit_price=D("900.0"), ts=1,
    )  # fmt: skip
    recs = eng.force_fill(KEY, v.order_id, 0.5, 2)
    fill = next(r.fill for r in recs if isinstance(r, ExecutionReport) and r.fill)
    assert fill.qty == D("0.0001")
    assert fill.price == D("900.0")
    recs = eng.force_fill(KEY, None, 1.0, 3)
    assert kinds(recs) == ["trade", "L:TST", "L:USD", "filled"]
    assert eng.final_orders(KEY)[v.order_id].cum_qty == D("0.0003")
    assert eng.account(KEY).hold("USD") == 0
    with pytest.raises(OrderRejected):
        eng.force_fill(KEY, v.order_id, 1.0, 4)


def test_cumulative_rounding_never_drifts() -> None:
    eng = make_engine()
    v, _ = eng.add_order(
        KEY, symbol="BTC/USD", side="sell", order_type="limit", qty=D("1"),
        limit_price=D("101.3"), ts=1,
    )  # fmt: skip
    ledger: list[LedgerEntry] = []
    for i in range(1000):
        recs = eng.on_public_trade("BTC/USD", D("101.3"), D("0.001"), "buy", 2 + i)
        ledger += [r for r in recs if isinstance(r, LedgerEntry) and r.asset == "USD"]
    final = eng.final_orders(KEY)[v.order_id]
    assert final.status == "filled"
    assert sum(e.amount for e in ledger) == D("101.3")
    assert sum(e.fee for e in ledger) == (D("101.3") * D("0.0016")).quantize(D("0.0001"))
    assert final.fee == sum(e.fee for e in ledger)


def test_cancel_all_and_dead_mans_switch() -> None:
    eng = make_engine()
    for price in ("90.0", "91.0"):
        eng.add_order(
            KEY, symbol="BTC/USD", side="buy", order_type="limit", qty=D("1"),
            limit_price=D(price), ts=1,
        )  # fmt: skip
    assert eng.arm(KEY, 60, 1_000_000) == 61_000_000
    assert not eng.dms_due(60_999_999)
    assert eng.check_dms(60_999_999) == []
    assert eng.arm(KEY, 60, 2_000_000) == 62_000_000  # pushed back
    recs = eng.check_dms(62_000_000)
    assert kinds(recs) == ["dms", "canceled", "canceled"]
    assert recs[0] == DmsFired(KEY, 62_000_000, 2)
    assert all(
        r.order.reason == "Dead man's switch" for r in recs if isinstance(r, ExecutionReport)
    )
    assert eng.account(KEY).dms_deadline is None  # stays off until re-armed (§1.11)
    eng.add_order(
        KEY, symbol="BTC/USD", side="buy", order_type="limit", qty=D("1"),
        limit_price=D("90.0"), ts=3,
    )  # fmt: skip
    assert eng.check_dms(10**12) == []
    eng.arm(KEY, 5, 100)
    assert eng.arm(KEY, 0, 200) is None
    assert eng.check_dms(10**12) == []
    count_, recs = eng.cancel_all(KEY, 4)
    assert count_ == 1
    assert kinds(recs) == ["canceled"]
    assert eng.cancel_all(KEY, 5) == (0, [])


def test_engine_config_validation() -> None:
    with pytest.raises(ValueError, match="precision"):
        MatchingEngine([BTC], {"USD": 4}, str, FakeBook())
    with pytest.raises(ValueError, match="base precision"):
        MatchingEngine([BTC], {"USD": 4, "BTC": 6}, str, FakeBook())
    spec = AccountSpec("a", "s", {"USD": "-1"})
    with pytest.raises(ValueError, match="bad balance"):
        MatchingEngine([BTC], PREC, str, FakeBook(), accounts=[spec])
    with pytest.raises(ValueError, match="duplicate"):
        MatchingEngine(
            [BTC], PREC, str, FakeBook(), accounts=[AccountSpec("a", "s"), AccountSpec("a", "t")]
        )


# --------------------------------------------------------------- properties

_side = st.sampled_from(["buy", "sell"])
_op = st.one_of(
    st.tuples(
        st.just("limit"),
        _side,
        st.integers(1, 40_000),  # qty in 0.0001 units
        st.integers(-30, 30),  # price offset in ticks from 100.0
        st.sampled_from(["GTC", "IOC"]),
        st.booleans(),
    ),
    st.tuples(st.just("market"), _side, st.integers(1, 40_000)),
    st.tuples(st.just("trade"), _side, st.integers(-30, 30), st.integers(1, 40_000)),
    st.tuples(st.just("cancel"), st.integers(0, 20)),
    st.tuples(st.just("cancel_all")),
    st.tuples(st.just("force"), st.sampled_from([0.1, 0.5, 0.999, 1.0])),
    st.tuples(st.just("dms"), st.integers(0, 6), st.integers(0, 3)),
)


def _tst_book() -> FakeBook:
    book = FakeBook()
    book.levels = {
        ("TST/USD", "asks"): [(D(100) + D(i) / 10, D("0.7") + D(i) / 10) for i in range(1, 15)],
        ("TST/USD", "bids"): [(D(100) - D(i) / 10, D("0.9") + D(i) / 10) for i in range(1, 15)],
    }
    return book


@settings(max_examples=200, deadline=None)
@given(st.lists(_op, min_size=10, max_size=80))
def test_property_balances_and_ledger(ops: list[tuple[Any, ...]]) -> None:
    eng = make_engine({"USD": "700", "TST": "5"}, _tst_book())
    acct = eng.account(KEY)
    initial = {"USD": D("700"), "TST": D("5")}
    ledger_sum = {a: D(0) for a in initial}
    fills: dict[str, D] = {}
    now = 0
    for op in ops:
        now += 1_000_000
        recs: list[Record] = []
        kind = op[0]
        try:
            if kind == "limit":
                _, side, units, off, tif, post = op
                _, recs = eng.add_order(
                    KEY,
                    symbol="TST/USD",
                    side=side,
                    order_type="limit",
                    qty=D(units) / 10_000,
                    limit_price=D(100) + D(off) / 10,
                    time_in_force=tif,
                    post_only=post and tif == "GTC",
                    ts=now,
                )
            elif kind == "market":
                _, side, units = op
                _, recs = eng.add_order(
                    KEY,
                    symbol="TST/USD",
                    side=side,
                    order_type="market",
                    qty=D(units) / 10_000,
                    ts=now,
                )
            elif kind == "trade":
                _, side, off, units = op
                recs = eng.on_public_trade(
                    "TST/USD", D(100) + D(off) / 10, D(units) / 10_000, side, now
                )
            elif kind == "cancel":
                open_ids = list(acct.open)
                if open_ids:
                    recs = eng.cancel(KEY, open_ids[op[1] % len(open_ids)], now)
            elif kind == "cancel_all":
                _, recs = eng.cancel_all(KEY, now)
            elif kind == "force":
                recs = eng.force_fill(KEY, None, op[1], now)
            else:
                eng.arm(KEY, op[1], now)
                recs = eng.check_dms(now + op[2] * 1_000_000)
        except OrderRejected:
            recs = []
        for r in recs:
            if isinstance(r, LedgerEntry):
                ledger_sum[r.asset] += r.amount - r.fee
                assert r.fee >= 0
                assert r.balance == initial[r.asset] + ledger_sum[r.asset]
            elif isinstance(r, ExecutionReport) and r.fill is not None:
                fills[r.order.order_id] = fills.get(r.order.order_id, D(0)) + r.fill.qty
        for asset in initial:
            assert acct.total(asset) >= 0
            assert acct.hold(asset) >= 0
            assert acct.available(asset) >= 0
            assert acct.total(asset) == initial[asset] + ledger_sum[asset]
            assert acct.hold(asset) == sum(
                (o.hold for o in acct.open.values() if o.hold_asset == asset), D(0)
            )
        if not acct.open:
            assert acct.hold("USD") == 0
            assert acct.hold("TST") == 0
        for oid, o in eng.final_orders(KEY).items():
            assert 0 <= o.cum_qty <= o.qty
            assert o.cum_qty == fills.get(oid, D(0))
            assert (o.status in ("new", "partially_filled")) == (oid in acct.open)
