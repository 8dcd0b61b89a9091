"""Kraken private frames and REST answers (protocols.md §1.10, §1.11), pure."""

from __future__ import annotations

import contextlib
import json
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gapless.errors import DecodeError
from gapless.venues.kraken import private_protocol as pp
from gapless.venues.kraken.protocol import Ack, StatusMsg

# protocols.md §1.10 example fill, verbatim
DOC_FILL = (
    '{"channel":"executions","type":"update","data":[{"order_id":"OK4GJX-KSTLS-7DZZO5",'
    '"order_userref":3,"exec_id":"TGBB7L-HT5LX-J3BZ4A","exec_type":"trade","trade_id":62887576,'
    '"symbol":"BTC/USD","side":"sell","last_qty":0.005,"last_price":26599.9,"liquidity_ind":"t",'
    '"cost":132.9995,"order_type":"limit","timestamp":"2023-09-22T10:33:05.709993Z",'
    '"order_status":"partially_filled","cum_qty":0.005,"cum_cost":132.9995,"avg_price":26599.9,'
    '"fee_usd_equiv":0.3458,"fees":[{"asset":"USD","qty":0.3458}]}],"sequence":10}'
)


def test_doc_fill_decodes_exactly() -> None:
    msg = pp.decode(DOC_FILL)
    assert isinstance(msg, pp.ExecutionsMsg)
    assert not msg.snapshot
    assert msg.sequence == 10
    r = msg.reports[0]
    assert r.order_id == "OK4GJX-KSTLS-7DZZO5"
    assert (r.exec_type, r.order_status, r.trade_id) == ("trade", "partially_filled", 62887576)
    assert (r.last_qty, r.last_price, r.fee, r.fee_asset) == (
        Decimal("0.005"),
        Decimal("26599.9"),
        Decimal("0.3458"),
        "USD",
    )
    assert r.cum_cost == Decimal("132.9995")
    assert r.timestamp_ns == 1695378785709993000


def test_balances_snapshot_and_ledger() -> None:
    snap = pp.decode(
        '{"channel":"balances","type":"snapshot","data":[{"asset":"BTC","asset_class":"currency",'
        '"balance":1.2,"wallets":[{"type":"spot","id":"main","balance":1.2}]}],"sequence":1}'
    )
    assert isinstance(snap, pp.BalancesMsg)
    assert snap.lines == (pp.BalanceLine("BTC", Decimal("1.2")),)
    upd = pp.decode(
        '{"channel":"balances","type":"update","data":[{"ledger_id":"L1","ref_id":"T1",'
        '"timestamp":"2023-09-22T10:33:05.709993Z","type":"trade","category":"trade","asset":"USD",'
        '"asset_class":"currency","wallet_type":"spot","wallet_id":"main","amount":-19.9,'
        '"fee":0.0,"balance":100.00}],"sequence":9}'
    )
    assert isinstance(upd, pp.BalancesMsg)
    e = upd.entries[0]
    assert (e.asset, e.amount, e.balance, e.ref_id, e.kind) == (
        "USD",
        Decimal("-19.9"),
        Decimal("100.00"),
        "T1",
        "trade",
    )


def test_method_responses() -> None:
    ok = pp.decode(
        '{"method":"cancel_all_orders_after","req_id":1234567890,"result":{"currentTime":'
        '"2023-09-21T15:49:29Z","triggerTime":"2023-09-21T15:51:09Z"},"success":true,'
        '"time_in":"2023-09-21T15:49:28.627900Z","time_out":"2023-09-21T15:49:28.649057Z"}'
    )
    assert isinstance(ok, pp.MethodResponse)
    assert ok.success
    assert ok.trigger_ts_ns == 1695311469 * 10**9
    off = pp.decode(
        '{"method":"cancel_all_orders_after","req_id":2,"result":{"currentTime":'
        '"2023-09-21T15:49:29Z","triggerTime":"0"},"success":true}'
    )
    assert isinstance(off, pp.MethodResponse)
    assert off.trigger_ts_ns is None
    rej = pp.decode(
        '{"method":"add_order","req_id":3,"success":false,"error":"EOrder:Insufficient funds"}'
    )
    assert isinstance(rej, pp.MethodResponse)
    assert (rej.success, rej.error) == (False, "EOrder:Insufficient funds")


def test_public_frames_are_delegated() -> None:
    assert isinstance(
        pp.decode('{"channel":"status","type":"update","data":[{"system":"online"}]}'), StatusMsg
    )
    ack = pp.decode(
        '{"method":"subscribe","req_id":4,"success":true,"result":{"channel":"executions","maxratecount":125}}'
    )
    assert isinstance(ack, Ack)
    assert ack.channel == "executions"


def test_encoders_keep_exact_numbers_and_the_token_in_params() -> None:
    text = pp.encode_add_order(
        token="T",
        req_id=1,
        symbol="BTC/USD",
        side="buy",
        order_type="limit",
        qty=Decimal("0.00010000"),
        limit_price=Decimal("1E+2"),
        cl_ord_id="x",
    )
    msg = json.loads(text)
    assert msg["params"]["token"] == "T"
    assert '"order_qty":0.00010000' in text
    assert '"limit_price":100' in text
    with pytest.raises(ValueError, match="86400"):
        pp.encode_cancel_after(token="T", req_id=1, timeout_s=86_400)


def test_rest_envelope_and_orders() -> None:
    with pytest.raises(DecodeError, match="EAPI:Invalid nonce"):
        pp.decode_rest(b'{"error":["EAPI:Invalid nonce"],"result":{}}')
    res = pp.decode_rest(
        b'{"error":[],"result":{"closed":{"OA":{"status":"closed","vol":"1.0","vol_exec":"1.0",'
        b'"cost":"10","fee":"0.02","price":"10","closetm":1700000000.25,"descr":{"pair":"BTC/USD",'
        b'"type":"sell","ordertype":"limit","price":"10"}},"OB":{"status":"open","vol":"2",'
        b'"vol_exec":"0.5","descr":{}}},"count":2}}'
    )
    a, b = pp.rest_orders(res, "closed")
    assert (a.status, a.cum_qty, a.close_ts_ns, a.side) == (
        "filled",
        Decimal("1.0"),
        1700000000250000000,
        "sell",
    )
    assert (b.status, b.cum_qty) == ("partially_filled", Decimal("0.5"))
    with pytest.raises(DecodeError):
        pp.rest_orders({"closed": {"X": {"status": "weird"}}}, "closed")


@settings(max_examples=300, deadline=None)
@given(
    st.recursive(
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats(allow_nan=False)
        | st.text(max_size=20),
        lambda inner: (
            st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=5)
        ),
        max_leaves=20,
    ),
    st.sampled_from(["executions", "balances", None]),
    st.sampled_from(["snapshot", "update", "x"]),
)
def test_any_shape_raises_only_decode_error(data: object, channel: str | None, typ: str) -> None:
    frame: dict[str, object] = {"type": typ, "data": data, "sequence": 1}
    if channel:
        frame["channel"] = channel
    else:
        frame["method"] = "add_order"
        frame["success"] = True
        frame["result"] = data
    with contextlib.suppress(DecodeError):
        pp.decode(json.dumps(frame))
