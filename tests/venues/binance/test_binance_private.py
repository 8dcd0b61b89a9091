"""BinancePrivateAdapter driven frame by frame (pure: no sockets, no clock)."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from gapless.events import (
    BadFrame,
    BalanceUpdate,
    Gap,
    GapCause,
    OrderResponse,
    OrderUpdate,
    Reconciled,
    Subscribed,
    SubscriptionRejected,
)
from gapless.secrets import Credentials, Secret
from gapless.venues.base import Now, Phase, RestCall, RestResult, Step, StreamSpec
from gapless.venues.binance.private import BinancePrivateAdapter, BinancePrivateOptions
from gapless.venues.binance.signing import encode_query, sign_rest, ws_api_payload

KEY = "testKey123"
SECRET = "testSecret456"
T0 = 1_700_000_000_000  # ms


def creds() -> Credentials:
    return Credentials("binance", Secret(KEY), Secret(SECRET))


def now(mono: float = 0.0, ms: int = T0) -> Now:
    return Now(mono=mono, wall_ns=ms * 1_000_000)


def make() -> BinancePrivateAdapter:
    a = BinancePrivateAdapter(creds(), BinancePrivateOptions(rest_url="http://sim"))
    a.add(StreamSpec("binance", "orders", "*"))
    a.add(StreamSpec("binance", "balances", "*"))
    return a


def phase_of(a: BinancePrivateAdapter) -> Phase:
    """Read the phase through a function (mypy would narrow the property)."""
    return a.phase


def sub_ok(req_id: int, sub_id: int = 0) -> str:
    return json.dumps({"id": req_id, "status": 200, "result": {"subscriptionId": sub_id}})


def order_json(oid: int, status: str = "NEW", executed: str = "0", upd: int = T0) -> dict[str, Any]:
    return {
        "symbol": "BTCUSDT",
        "orderId": oid,
        "clientOrderId": f"c{oid}",
        "price": "60000.00000000",
        "origQty": "1.00000000",
        "executedQty": executed,
        "cummulativeQuoteQty": str(Decimal(executed) * 60000),
        "status": status,
        "timeInForce": "GTC",
        "type": "LIMIT",
        "side": "BUY",
        "time": T0,
        "updateTime": upd,
    }


def account_json(usdt_free: str, usdt_locked: str = "0", upd: int = T0) -> dict[str, Any]:
    return {
        "updateTime": upd,
        "balances": [
            {"asset": "USDT", "free": usdt_free, "locked": usdt_locked},
            {"asset": "BTC", "free": "1", "locked": "0"},
        ],
    }


def exec_report(
    oid: int, x: str, status: str, z: str = "0", t: int = T0 + 1, last: str = "0", sub: int = 0
) -> str:
    ev = {
        "e": "executionReport",
        "E": t,
        "s": "BTCUSDT",
        "c": f"c{oid}",
        "S": "BUY",
        "o": "LIMIT",
        "f": "GTC",
        "q": "1.00000000",
        "p": "60000.00000000",
        "x": x,
        "X": status,
        "r": "NONE",
        "i": oid,
        "l": last,
        "z": z,
        "L": "60000.00000000",
        "n": "0.1",
        "N": "USDT",
        "T": t,
        "t": 77 if x == "TRADE" else -1,
        "m": True,
        "Z": str(Decimal(z) * 60000),
    }
    return json.dumps({"subscriptionId": sub, "event": ev})


def position(usdt_free: str, usdt_locked: str, u: int = T0 + 1, sub: int = 0) -> str:
    ev = {
        "e": "outboundAccountPosition",
        "E": u,
        "u": u,
        "B": [{"a": "USDT", "f": usdt_free, "l": usdt_locked}],
    }
    return json.dumps({"subscriptionId": sub, "event": ev})


def rest_ok(call: RestCall, body: Any) -> RestResult:
    return RestResult(call.key, 200, json.dumps(body).encode())


def answer(a: BinancePrivateAdapter, step: Step, opens: list[Any], acct: Any, t: Now) -> Step:
    """Answer the snapshot calls in ``step`` (openOrders, account)."""
    out = Step()
    for call in step.rest:
        if call.url.endswith("/openOrders"):
            out.extend(a.on_rest(rest_ok(call, opens), t))
        elif call.url.endswith("/account"):
            out.extend(a.on_rest(rest_ok(call, acct), t))
    return out


def connect_and_sync(a: BinancePrivateAdapter, opens: list[Any], acct: Any) -> list[Any]:
    s1 = a.on_connected("c1", now())
    sub = json.loads(s1.sends[0])
    s2 = a.on_frame(sub_ok(sub["id"]), now(0.1))
    s3 = answer(a, s2, opens, acct, now(0.2))
    return s2.events + s3.events


def test_subscribe_is_signed_per_ws_api_rules_and_redacted() -> None:
    a = make()
    step = a.on_connected("c1", now())
    assert phase_of(a) is Phase.SUBSCRIBING
    frame = json.loads(step.sends[0])
    assert frame["method"] == "userDataStream.subscribe.signature"
    params = frame["params"]
    assert set(params) == {"apiKey", "timestamp", "signature"}
    assert params["apiKey"] == KEY
    assert params["timestamp"] == T0
    payload = ws_api_payload({k: v for k, v in params.items() if k != "signature"})
    assert payload == f"apiKey={KEY}&timestamp={T0}"
    assert params["signature"] == sign_rest(SECRET, payload)
    assert params["signature"] in a.redactions()
    assert KEY in a.redactions()


def test_initial_sync_uses_signed_rest_and_goes_live() -> None:
    a = make()
    a.on_connected("c1", now())
    step = a.on_frame(sub_ok(1), now(0.1))
    assert sum(isinstance(e, Subscribed) for e in step.events) == 2
    assert phase_of(a) is Phase.SYNCING
    urls = sorted(c.url for c in step.rest)
    assert urls == ["http://sim/api/v3/account", "http://sim/api/v3/openOrders"]
    for call in step.rest:
        assert call.private
        assert dict(call.headers)["X-MBX-APIKEY"] == KEY
        params = list(call.params)
        assert params[-1][0] == "signature"
        assert params[-1][1] == sign_rest(SECRET, encode_query(params[:-1]))
        assert "<private>" in repr(call)
    done = answer(a, step, [order_json(5)], account_json("900", "100"), now(0.2))
    assert phase_of(a) is Phase.LIVE
    orders = [e for e in done.events if isinstance(e, OrderUpdate)]
    assert [(o.order_id, o.source, o.status) for o in orders] == [("5", "snapshot", "new")]
    bals = {e.asset: e for e in done.events if isinstance(e, BalanceUpdate)}
    assert bals["USDT"].balance == Decimal(1000)
    assert bals["USDT"].hold == Decimal(100)
    assert bals["USDT"].source == "snapshot"
    assert isinstance(done.events[-1], Reconciled)
    assert not any(isinstance(e, Gap) for e in done.events)


def test_live_execution_report_and_account_position() -> None:
    a = make()
    connect_and_sync(a, [order_json(5)], account_json("900", "100"))
    step = a.on_frame(exec_report(5, "TRADE", "PARTIALLY_FILLED", z="0.4", last="0.4"), now(1))
    (ev,) = step.events
    assert isinstance(ev, OrderUpdate)
    assert ev.status == "partially_filled"
    assert ev.exec_type == "trade"
    assert ev.source == "update"
    assert ev.cum_qty == Decimal("0.4")
    assert ev.last_qty == Decimal("0.4")
    assert ev.trade_id == 77
    assert ev.liquidity == "m"
    assert ev.fee_asset == "USDT"
    assert ev.exchange_ts_ns == (T0 + 1) * 1_000_000
    assert ev.avg_price == Decimal(60000)
    step = a.on_frame(position("900", "76"), now(1))
    (bal,) = step.events
    assert isinstance(bal, BalanceUpdate)
    assert bal.balance == Decimal(976)
    assert bal.available == Decimal(900)
    assert bal.change == Decimal(-24)
    assert a.balances()["USDT"] == Decimal(976)
    # events for another subscription on the same connection are not ours
    assert a.on_frame(position("1", "1", sub=9), now(1)).events == []


def test_reconnect_with_fills_meanwhile_reconciles() -> None:
    a = make()
    connect_and_sync(a, [order_json(5), order_json(6)], account_json("800", "200"))
    a.on_frame(exec_report(5, "TRADE", "PARTIALLY_FILLED", z="0.5", last="0.5"), now(1))
    a.on_disconnected("abort", now(2, T0 + 2000))
    assert phase_of(a) is Phase.SUBSCRIBING
    s1 = a.on_connected("c2", now(3, T0 + 3000))
    sub = json.loads(s1.sends[0])
    assert sub["params"]["timestamp"] == T0 + 3000  # re-signed, fresh
    s2 = a.on_frame(sub_ok(sub["id"], 1), now(3.1, T0 + 3100))
    # order 5 no longer open (filled), order 6 still open
    s3 = answer(a, s2, [order_json(6)], account_json("800", "100"), now(3.2, T0 + 3200))
    (q,) = s3.rest
    assert q.url.endswith("/api/v3/order")
    assert dict(q.params)["orderId"] == "5"
    assert dict(q.params)["symbol"] == "BTCUSDT"
    assert phase_of(a) is Phase.SYNCING
    s4 = a.on_rest(rest_ok(q, order_json(5, "FILLED", "1")), now(3.3, T0 + 3300))
    gaps = [e for e in s4.events if isinstance(e, Gap)]
    assert {g.stream for g in gaps} == {"binance:orders:*", "binance:balances:*"}
    assert all(g.cause is GapCause.DISCONNECT for g in gaps)
    og = next(g for g in gaps if g.stream == "binance:orders:*")
    assert og.start_ts_ns == (T0 + 1) * 1_000_000
    assert og.end_ts_ns == (T0 + 3300) * 1_000_000
    ups = [e for e in s4.events if isinstance(e, OrderUpdate)]
    assert [(u.order_id, u.status, u.source, u.cum_qty) for u in ups] == [
        ("5", "filled", "reconciled", Decimal(1))
    ]
    bals = [e for e in s4.events if isinstance(e, BalanceUpdate)]
    assert [(b.asset, b.balance, b.source) for b in bals] == [("USDT", Decimal(900), "reconciled")]
    rec = s4.events[-1]
    assert isinstance(rec, Reconciled)
    assert rec.orders_changed == 1
    assert rec.balances_changed == 1
    assert rec.complete
    assert rec.open_orders == 1
    assert s4.events.index(gaps[-1]) < s4.events.index(ups[0])
    assert phase_of(a) is Phase.LIVE


def test_event_stream_terminated_resubscribes_and_reconciles() -> None:
    a = make()
    connect_and_sync(a, [], account_json("1000"))
    term = json.dumps({"subscriptionId": 0, "event": {"e": "eventStreamTerminated", "E": T0 + 5}})
    step = a.on_frame(term, now(1, T0 + 10))
    (resub,) = step.sends
    frame = json.loads(resub)
    assert frame["method"] == "userDataStream.subscribe.signature"
    assert phase_of(a) is Phase.SUBSCRIBING
    s2 = a.on_frame(sub_ok(frame["id"], 1), now(1.1, T0 + 20))
    s3 = answer(a, s2, [], account_json("1000"), now(1.2, T0 + 30))
    assert {e.stream for e in s3.events if isinstance(e, Gap)} == {
        "binance:orders:*",
        "binance:balances:*",
    }
    assert isinstance(s3.events[-1], Reconciled)
    assert a.subscription_id == 1


def test_events_during_rest_are_buffered_and_applied_by_rule() -> None:
    a = make()
    a.on_connected("c1", now())
    s2 = a.on_frame(sub_ok(1), now(0.1))
    # arrive while REST is in flight: nothing delivered yet
    early = [
        exec_report(5, "NEW", "NEW", t=T0 - 5),  # already in the snapshot: dropped
        exec_report(5, "TRADE", "PARTIALLY_FILLED", z="0.3", last="0.3", t=T0 + 5),  # newer
        exec_report(7, "NEW", "NEW", t=T0 + 6),  # placed after the snapshot
        position("700", "300", u=T0 - 1),  # older than the account snapshot: dropped
        position("650", "350", u=T0 + 7),  # newer
    ]
    for f in early:
        assert a.on_frame(f, now(0.15)).events == []
    done = answer(a, s2, [order_json(5)], account_json("800", "200"), now(0.2))
    kinds = [
        (type(e).__name__, getattr(e, "order_id", getattr(e, "asset", "")), e.source)
        for e in done.events
        if isinstance(e, OrderUpdate | BalanceUpdate)
    ]
    assert kinds == [
        ("OrderUpdate", "5", "snapshot"),
        ("BalanceUpdate", "USDT", "snapshot"),
        ("BalanceUpdate", "BTC", "snapshot"),
        ("OrderUpdate", "5", "update"),
        ("OrderUpdate", "7", "update"),
        ("BalanceUpdate", "USDT", "update"),
    ]
    assert isinstance(done.events[-1], Reconciled)
    assert a.orders()["5"].cum_qty == Decimal("0.3")
    assert a.balances()["USDT"] == Decimal(1000)
    assert phase_of(a) is Phase.LIVE


def test_bad_key_is_an_event_and_retried_slowly() -> None:
    a = make()
    a.on_connected("c1", now())
    err = json.dumps(
        {
            "id": 1,
            "status": 401,
            "error": {"code": -2015, "msg": "Invalid API-key, IP, or permissions for action."},
        }
    )
    step = a.on_frame(err, now(0.1))
    rej = [e for e in step.events if isinstance(e, SubscriptionRejected)]
    assert len(rej) == 2
    assert all(r.retry_in_s == 60.0 for r in rej)
    assert not step.sends
    assert a.stream_state("binance:orders:*") == "rejected"
    assert a.on_timer(now(30)).sends == []
    again = a.on_timer(now(60.2, T0 + 60_200))
    assert json.loads(again.sends[0])["method"] == "userDataStream.subscribe.signature"


def test_timestamp_error_is_retried_at_once_with_fresh_timestamp() -> None:
    a = make()
    a.on_connected("c1", now())
    err = {"id": 1, "status": 400, "error": {"code": -1021, "msg": "outside of the recvWindow."}}
    step = a.on_frame(json.dumps(err), now(0.1, T0 + 100))
    (resend,) = step.sends
    assert json.loads(resend)["params"]["timestamp"] == T0 + 100


def test_rate_limited_subscribe_waits_for_retry_after() -> None:
    a = make()
    a.on_connected("c1", now())
    err = {
        "id": 1,
        "status": 429,
        "error": {"code": -1003, "msg": "Too many requests", "data": {"retryAfter": T0 + 30_000}},
    }
    step = a.on_frame(json.dumps(err), now(0.0, T0))
    rej = [e for e in step.events if isinstance(e, SubscriptionRejected)]
    assert rej
    assert rej[0].retry_in_s == 30.0


def test_closing_unsubscribes_and_completes_on_answer() -> None:
    a = make()
    connect_and_sync(a, [], account_json("1"))
    step = a.closing(now(5))
    frame = json.loads(step.sends[0])
    assert frame["method"] == "userDataStream.unsubscribe"
    assert frame["params"] == {"subscriptionId": 0}
    assert not a.closing_complete
    a.on_frame(json.dumps({"id": frame["id"], "status": 200, "result": {}}), now(5.1))
    assert a.closing_complete


def test_order_entry_is_refused() -> None:
    a = make()
    connect_and_sync(a, [], account_json("1"))

    class Req:
        method = "add_order"
        req_id = 3
        cl_ord_id = "x"

    refused = a.gate(Req())
    assert refused is not None
    assert refused[0] == "unsupported"
    (resp,) = a.order(Req(), now(1)).events
    assert isinstance(resp, OrderResponse)
    assert resp.outcome == "refused"
    assert a.stats.orders_refused == 1


def test_bad_frame_triggers_reconciliation() -> None:
    a = make()
    connect_and_sync(a, [], account_json("1"))
    step = a.on_frame('{"subscriptionId":0,"event":{"e":"executionReport","X":5}}', now(1))
    assert isinstance(step.events[0], BadFrame)
    assert len(step.rest) == 2
    assert phase_of(a) is Phase.SYNCING
    done = answer(a, step, [], account_json("1"), now(1.1))
    assert any(isinstance(e, Gap) and e.cause is GapCause.BAD_FRAME for e in done.events)
    assert isinstance(done.events[-1], Reconciled)


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8) | st.floats(),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4)
    ),
    max_leaves=20,
)
_keys = st.sampled_from(["e", "E", "X", "x", "i", "z", "B", "a", "f", "l", "u", "s", "S", "T"])


@settings(max_examples=300, deadline=None)
@given(
    raw=st.one_of(
        st.binary(max_size=64),
        st.text(max_size=64),
        _json.map(json.dumps),
        st.dictionaries(_keys, _json, max_size=8).map(
            lambda ev: json.dumps({"subscriptionId": 0, "event": ev})
        ),
        st.dictionaries(st.sampled_from(["id", "status", "result", "error"]), _json).map(
            json.dumps
        ),
    )
)
def test_hostile_frames_never_raise(raw: str | bytes) -> None:
    a = make()
    connect_and_sync(a, [order_json(5)], account_json("1"))
    step = a.on_frame(raw, now(1))
    for ev in step.events:
        assert isinstance(ev, BadFrame | OrderUpdate | BalanceUpdate | SubscriptionRejected)
