"""KucoinPrivateAdapter driven frame by frame (pure: no sockets, no clock)."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gapless.errors import ConfigError
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
from gapless.venues.kraken.private import OrderRequest
from gapless.venues.kucoin.private import KucoinPrivateAdapter, KucoinPrivateOptions
from gapless.venues.kucoin.signing import sign, sign_passphrase

SECRET = "f03a5284-5c39-4aaa-9b20-dea10bdcf8e3"
TOKEN = "2neAiuYvAU61ZDXANAGAsiL4-iAExhsBXZxftpOeh_55i3Ysy2q2LEsEWU64mdzUOPusi34M" + ".abc=="
T0 = 1_700_000_000_000_000_000
ORDERS = "/spotMarket/tradeOrdersV2"
BAL = "/account/balance"


def creds() -> Credentials:
    return Credentials("kucoin", Secret("key-1"), Secret(SECRET), Secret("phrase"))


def now(t: float = 0.0, backlog: int = 0) -> Now:
    return Now(t, T0 + int(t * 1e9), backlog)


def bullet_body(token: str = TOKEN) -> bytes:
    return json.dumps(
        {
            "code": "200000",
            "data": {
                "token": token,
                "instanceServers": [
                    {
                        "endpoint": "ws://127.0.0.1:9/",
                        "encrypt": False,
                        "protocol": "websocket",
                        "pingInterval": 18000,
                        "pingTimeout": 10000,
                    }
                ],
            },
        }
    ).encode()


def ok(data: Any) -> bytes:
    return json.dumps({"code": "200000", "data": data}).encode()


def rest_order(
    oid: str, *, active: bool, deal: str = "0", size: str = "1", cancel: bool = False
) -> dict[str, Any]:
    return {
        "id": oid,
        "symbol": "BTC-USDT",
        "type": "limit",
        "side": "buy",
        "price": "100",
        "size": size,
        "dealSize": deal,
        "dealFunds": str(Decimal(deal) * 100),
        "fee": "0",
        "clientOid": f"c-{oid}",
        "isActive": active,
        "cancelExist": cancel,
        "createdAt": 1_700_000_000_000,
    }


def page(items: list[dict[str, Any]], current: int = 1, total: int = 1) -> bytes:
    return ok(
        {
            "currentPage": current,
            "pageSize": 50,
            "totalNum": len(items),
            "totalPage": total,
            "items": items,
        }
    )


def account(cur: str, total: str, hold: str = "0") -> dict[str, str]:
    avail = str(Decimal(total) - Decimal(hold))
    return {"currency": cur, "type": "trade", "balance": total, "available": avail, "holds": hold}


def change(
    oid: str,
    typ: str,
    status: str,
    *,
    filled: str = "0",
    size: str = "1",
    t: float = 0.0,
    **kw: Any,
) -> str:
    data: dict[str, Any] = {
        "orderId": oid,
        "clientOid": f"c-{oid}",
        "symbol": "BTC-USDT",
        "side": "buy",
        "orderType": "limit",
        "type": typ,
        "status": status,
        "size": size,
        "filledSize": filled,
        "remainSize": str(Decimal(size) - Decimal(filled)) if status != "done" else "0",
        "price": "100",
        "ts": T0 + int(t * 1e9),
        **kw,
    }
    msg = {
        "type": "message",
        "topic": ORDERS,
        "subject": "orderChange",
        "channelType": "private",
        "userId": "u1",
        "data": data,
    }
    return json.dumps(msg)


def balance(cur: str, total: str, hold: str = "0", *, t: float = 0.0) -> str:
    data = {
        "accountId": "a1",
        "currency": cur,
        "total": total,
        "available": str(Decimal(total) - Decimal(hold)),
        "hold": hold,
        "availableChange": "1",
        "holdChange": "0",
        "relationEvent": "trade.setted",
        "relationEventId": "o1",
        "time": str((T0 + int(t * 1e9)) // 1_000_000),
    }
    msg = {
        "type": "message",
        "topic": BAL,
        "subject": "account.balance",
        "channelType": "private",
        "userId": "u1",
        "data": data,
    }
    return json.dumps(msg)


def phase(a: KucoinPrivateAdapter) -> Phase:
    return a.phase


def adapter(**kw: Any) -> KucoinPrivateAdapter:
    a = KucoinPrivateAdapter(creds(), KucoinPrivateOptions(rest_url="http://sim", **kw))
    a.add(StreamSpec("kucoin", "orders", "*"))
    a.add(StreamSpec("kucoin", "balances", "*"))
    return a


def dial(a: KucoinPrivateAdapter, t: float = 0.0) -> RestCall:
    call = a.prepare_dial(now(t))
    assert call is not None
    assert a.on_dial_rest(RestResult("bullet", 200, bullet_body()), now(t)) is None
    return call


def connect(a: KucoinPrivateAdapter, t: float = 0.0) -> Step:
    """Dial, welcome and both acks: returns the step with the REST snapshot calls."""
    dial(a, t)
    a.on_connected("c1", now(t))
    cid = parse_qs(urlsplit(a.url).query)["connectId"][0]
    step = a.on_frame(json.dumps({"id": cid, "type": "welcome"}), now(t))
    ids = [json.loads(s)["id"] for s in step.sends]
    assert len(ids) == 2
    out = Step()
    for rid in ids:
        out.extend(a.on_frame(json.dumps({"id": rid, "type": "ack"}), now(t)))
    return out


def answer(
    a: KucoinPrivateAdapter,
    step: Step,
    orders: list[dict[str, Any]],
    accounts: list[dict[str, str]],
    t: float = 0.0,
    details: dict[str, dict[str, Any]] | None = None,
) -> Step:
    out = Step()
    keys = {c.key for c in step.rest}
    assert keys == {"orders:1", "accounts"}
    out.extend(a.on_rest(RestResult("accounts", 200, ok(accounts)), now(t)))
    res = a.on_rest(RestResult("orders:1", 200, page(orders)), now(t))
    out.extend(res)
    for call in res.rest:
        oid = call.key.partition(":")[2]
        assert details is not None, call.key
        assert oid in details, call.key
        out.extend(a.on_rest(RestResult(call.key, 200, ok(details[oid])), now(t)))
    return out


def synced(orders: list[dict[str, Any]] | None = None) -> KucoinPrivateAdapter:
    a = adapter()
    step = connect(a)
    answer(a, step, orders or [], [account("USDT", "1000"), account("BTC", "1")])
    assert phase(a) is Phase.LIVE
    return a


# ---------------------------------------------------------------- dial & signing


def test_prepare_dial_signs_bullet_private() -> None:
    a = adapter()
    call = a.prepare_dial(now(1.0))
    assert call is not None
    assert call.method == "POST"
    assert call.private
    assert call.weight == 10.0
    assert call.url == "http://sim/api/v1/bullet-private"
    h = dict(call.headers)
    ts = str((T0 + 1_000_000_000) // 1_000_000)
    assert h["KC-API-TIMESTAMP"] == ts
    assert h["KC-API-SIGN"] == sign(SECRET, ts, "POST", "/api/v1/bullet-private")
    assert h["KC-API-PASSPHRASE"] == sign_passphrase(SECRET, "phrase")
    assert h["KC-API-KEY-VERSION"] == "2"
    assert h["KC-API-KEY"] == "key-1"
    assert "<private>" in repr(call)
    assert a.on_dial_rest(RestResult("bullet", 200, bullet_body()), now(1.0)) is None
    assert a.url.startswith("ws://127.0.0.1:9/?token=")
    assert "connectId=" in a.url
    assert TOKEN in a.redactions()


def test_bad_credentials_refuse_the_dial_with_the_code() -> None:
    a = adapter()
    a.prepare_dial(now())
    body = json.dumps({"code": "400005", "msg": "Invalid KC-API-SIGN"}).encode()
    why = a.on_dial_rest(RestResult("bullet", 401, body), now())
    assert why is not None
    assert "400005" in why
    assert "signature" in why
    assert a.stats.bullet_failures == 1
    assert a.last_dial_error == why
    with pytest.raises(Exception, match="no bullet"):
        _ = a.url


def test_needs_passphrase_and_private_specs() -> None:
    with pytest.raises(ConfigError):
        KucoinPrivateAdapter(Credentials("kucoin", Secret("k"), Secret("s")))
    a = adapter()
    with pytest.raises(ConfigError):
        a.add(StreamSpec("kucoin", "book", "BTC-USDT"))
    assert a.streams() == ["kucoin:orders:*", "kucoin:balances:*"]
    assert not a.has_book("*")


# ---------------------------------------------------------------- sync


def test_initial_sync_delivers_snapshot_then_reconciled() -> None:
    a = adapter()
    step = connect(a)
    subs = [e for e in step.events if isinstance(e, Subscribed)]
    assert {s.stream for s in subs} == {"kucoin:orders:*", "kucoin:balances:*"}
    assert phase(a) is Phase.SYNCING
    paths = {c.key: urlsplit(c.url) for c in step.rest}
    assert paths["orders:1"].path == "/api/v1/orders"
    assert parse_qs(paths["orders:1"].query) == {
        "status": ["active"],
        "currentPage": ["1"],
        "pageSize": ["50"],
    }
    assert paths["accounts"].query == "type=trade"
    for c in step.rest:  # signed over the path with its query
        h = dict(c.headers)
        path = paths[c.key].path + "?" + paths[c.key].query
        assert h["KC-API-SIGN"] == sign(SECRET, h["KC-API-TIMESTAMP"], "GET", path)
    out = answer(a, step, [rest_order("o1", active=True, deal="0.5")], [account("USDT", "1000")])
    ev = out.events
    assert not any(isinstance(e, Gap) for e in ev)
    o = next(e for e in ev if isinstance(e, OrderUpdate))
    assert (o.order_id, o.status, o.source, o.cum_qty) == (
        "o1",
        "partially_filled",
        "snapshot",
        Decimal("0.5"),
    )
    b = next(e for e in ev if isinstance(e, BalanceUpdate))
    assert (b.asset, b.balance, b.source, b.available, b.hold) == (
        "USDT",
        Decimal(1000),
        "snapshot",
        Decimal(1000),
        Decimal(0),
    )
    assert isinstance(ev[-1], Reconciled)
    assert ev[-1].reason == "initial snapshot"
    assert ev[-1].open_orders == 1
    assert phase(a) is Phase.LIVE


def test_open_orders_are_paged() -> None:
    a = adapter()
    step = connect(a)
    a.on_rest(RestResult("accounts", 200, ok([])), now())
    more = a.on_rest(
        RestResult("orders:1", 200, page([rest_order("o1", active=True)], 1, 2)), now()
    )
    assert [c.key for c in more.rest] == ["orders:2"]
    assert "currentPage=2" in more.rest[0].url
    assert phase(a) is Phase.SYNCING
    done = a.on_rest(
        RestResult("orders:2", 200, page([rest_order("o2", active=True)], 2, 2)), now()
    )
    assert isinstance(done.events[-1], Reconciled)
    assert set(a.open_orders()) == {"o1", "o2"}
    del step


def test_live_updates_map_order_change_and_balance() -> None:
    a = synced()
    ev = a.on_frame(change("o9", "received", "new", t=1), now(1)).events
    assert isinstance(ev[0], OrderUpdate)
    assert ev[0].status == "new"
    assert ev[0].source == "update"
    a.on_frame(change("o9", "open", "open", t=1.1), now(1.1))
    m = a.on_frame(
        change(
            "o9",
            "match",
            "match",
            filled="0.4",
            t=2,
            matchPrice="99.5",
            matchSize="0.4",
            tradeId="123",
            liquidity="maker",
        ),
        now(2),
    ).events[0]
    assert isinstance(m, OrderUpdate)
    assert (m.status, m.exec_type, m.cum_qty, m.last_qty, m.last_price) == (
        "partially_filled",
        "trade",
        Decimal("0.4"),
        Decimal("0.4"),
        Decimal("99.5"),
    )
    assert m.trade_id == 123
    assert m.liquidity == "m"
    assert m.exchange_ts_ns == T0 + 2 * 10**9
    f = a.on_frame(change("o9", "filled", "done", filled="1", t=3), now(3)).events[0]
    assert isinstance(f, OrderUpdate)
    assert f.status == "filled"
    assert f.cum_qty == 1
    c = a.on_frame(change("o8", "canceled", "done", t=3.5), now(3.5)).events[0]
    assert isinstance(c, OrderUpdate)
    assert c.status == "canceled"
    b = a.on_frame(balance("USDT", "900", "50", t=4), now(4)).events[0]
    assert isinstance(b, BalanceUpdate)
    assert (b.balance, b.available, b.hold, b.kind) == (
        Decimal(900),
        Decimal(850),
        Decimal(50),
        "trade.setted",
    )
    assert a.balances()["USDT"] == Decimal(900)
    assert a.open_orders() == {}


def test_reconnect_reconciles_fills_and_cancels_after_a_gap() -> None:
    a = synced([rest_order("o1", active=True), rest_order("o2", active=True)])
    a.on_frame(change("o3", "open", "open", t=1), now(1))
    assert set(a.open_orders()) == {"o1", "o2", "o3"}
    a.on_disconnected("abort", now(2))
    assert phase(a) is Phase.SUBSCRIBING
    step = connect(a, 5)
    assert phase(a) is Phase.SYNCING
    out = answer(
        a,
        step,
        [rest_order("o2", active=True, deal="0.3")],
        [account("USDT", "800"), account("BTC", "1")],
        t=5,
        details={
            "o1": rest_order("o1", active=False, deal="1"),
            "o3": rest_order("o3", active=False, cancel=True),
        },
    )
    ev = out.events
    gaps = [e for e in ev if isinstance(e, Gap)]
    assert {g.stream for g in gaps} == {"kucoin:orders:*", "kucoin:balances:*"}
    for g in gaps:
        assert g.cause is GapCause.DISCONNECT
        assert g.end_ts_ns == T0 + 5 * 10**9
        assert g.start_ts_ns is not None
        assert g.start_ts_ns <= T0 + 2 * 10**9
    first_gap = ev.index(gaps[0])
    ups = [e for e in ev if isinstance(e, OrderUpdate)]
    assert all(ev.index(u) > first_gap for u in ups)
    assert {(u.order_id, u.status, u.source) for u in ups} == {
        ("o1", "filled", "reconciled"),
        ("o2", "partially_filled", "reconciled"),
        ("o3", "canceled", "reconciled"),
    }
    bal = [e for e in ev if isinstance(e, BalanceUpdate)]
    assert [(b.asset, b.balance, b.source, b.change) for b in bal] == [
        ("USDT", Decimal(800), "reconciled", Decimal(-200))
    ]
    rec = ev[-1]
    assert isinstance(rec, Reconciled)
    assert (rec.reason, rec.orders_changed, rec.balances_changed, rec.open_orders) == (
        "reconnect",
        3,
        1,
        1,
    )
    assert rec.complete
    assert phase(a) is Phase.LIVE


def test_unknown_order_makes_reconciliation_incomplete() -> None:
    a = synced([rest_order("o1", active=True)])
    a.on_disconnected("abort", now(2))
    step = connect(a, 3)
    a.on_rest(
        RestResult("accounts", 200, ok([account("USDT", "1000"), account("BTC", "1")])), now(3)
    )
    res = a.on_rest(RestResult("orders:1", 200, page([])), now(3))
    assert [c.key for c in res.rest] == ["order:o1"]
    nf = json.dumps({"code": "400100", "msg": "order not exist."}).encode()
    out = a.on_rest(RestResult("order:o1", 404, nf), now(3))
    rec = out.events[-1]
    assert isinstance(rec, Reconciled)
    assert not rec.complete
    assert "o1" in rec.detail
    del step


def test_messages_during_rest_are_buffered_and_applied_when_newer() -> None:
    a = synced([rest_order("o1", active=True)])
    a.on_disconnected("abort", now(2))
    step = connect(a, 5)
    # arrives while the snapshot is in flight: nothing is delivered yet
    early = [
        change("o1", "match", "match", filled="0.2", t=4.9, matchSize="0.2", matchPrice="100"),
        change("o1", "match", "match", filled="0.6", t=5.1, matchSize="0.4", matchPrice="100"),
        change("o4", "received", "new", t=5.2),
        balance("USDT", "990", t=5.1),
        balance("BTC", "0.5", t=-10),  # far older than the snapshot request: dropped
    ]
    for f in early:
        assert a.on_frame(f, now(5.2)).events == []
    assert a.stats.buffered == 5
    out = answer(
        a,
        step,
        [rest_order("o1", active=True, deal="0.2")],
        [account("USDT", "1000"), account("BTC", "1")],
        t=5.3,
    )
    ev = out.events
    ups = [(e.order_id, e.cum_qty, e.source) for e in ev if isinstance(e, OrderUpdate)]
    # the snapshot already has the 0.2 fill: only the newer ones are applied, in order
    assert ups == [
        ("o1", Decimal("0.2"), "reconciled"),
        ("o1", Decimal("0.6"), "update"),
        ("o4", Decimal("0"), "update"),
    ]
    bals = [(e.asset, e.balance, e.source) for e in ev if isinstance(e, BalanceUpdate)]
    assert bals == [("USDT", Decimal(990), "update")]
    assert a.stats.buffered_dropped == 2
    assert isinstance(ev[-1], Reconciled)
    assert a.orders()["o1"].cum_qty == Decimal("0.6")
    assert a.balances()["BTC"] == 1


def test_rest_failure_is_retried_with_a_fresh_signature() -> None:
    a = adapter()
    step = connect(a)
    a.on_rest(RestResult("accounts", 200, ok([])), now())
    out = a.on_rest(RestResult("orders:1", 500, b"oops"), now())
    assert out.events == []
    assert a.stats.rest_failures == 1
    assert a.on_timer(now(0.5)).rest == []
    again = a.on_timer(now(1.1)).rest
    assert [c.key for c in again] == ["orders:1"]
    assert (
        dict(again[0].headers)["KC-API-TIMESTAMP"] != dict(step.rest[0].headers)["KC-API-TIMESTAMP"]
    )
    done = a.on_rest(RestResult("orders:1", 200, page([])), now(1.2))
    assert isinstance(done.events[-1], Reconciled)


# ---------------------------------------------------------------- errors & keepalive


def test_subscribe_error_is_rejected_and_retried_slowly() -> None:
    a = adapter()
    dial(a)
    a.on_connected("c1", now())
    cid = parse_qs(urlsplit(a.url).query)["connectId"][0]
    sends = a.on_frame(json.dumps({"id": cid, "type": "welcome"}), now()).sends
    first = json.loads(sends[0])
    assert first["privateChannel"] is True
    assert first["response"] is True
    assert first["topic"] == ORDERS
    err = {"id": first["id"], "type": "error", "code": 403, "data": "no permission"}
    ev = a.on_frame(json.dumps(err), now(0.1)).events
    assert isinstance(ev[0], SubscriptionRejected)
    assert ev[0].stream == "kucoin:orders:*"
    assert ev[0].retry_in_s == 2.0
    assert a.on_timer(now(1.0)).sends == []
    resend = [json.loads(s) for s in a.on_timer(now(2.2)).sends if "subscribe" in s]
    assert resend
    assert resend[0]["topic"] == ORDERS


def test_token_expired_reconnects() -> None:
    a = adapter()
    dial(a)
    a.on_connected("c1", now())
    out = a.on_frame(json.dumps({"type": "error", "code": 401, "data": "token is expired"}), now())
    assert out.reconnect
    assert "new bullet" in out.reconnect
    a.on_disconnected("closed", now(0.1))
    assert TOKEN in a.redactions()  # spent tokens stay redacted


def test_welcome_ping_and_pong_watchdogs() -> None:
    a = adapter()
    dial(a)
    a.on_connected("c1", now())
    assert a.on_timer(now(6)).reconnect == "no welcome (a new bullet is needed)"
    b = synced()
    ping = b.on_timer(now(18.5)).sends
    assert json.loads(ping[0])["type"] == "ping"
    pid = json.loads(ping[0])["id"]
    b.on_frame(json.dumps({"id": pid, "type": "pong"}), now(18.6))
    assert b.on_timer(now(30)).reconnect is None
    b.on_timer(now(37))  # next ping
    assert b.on_timer(now(48)).reconnect == "no pong from the private connection"
    assert b.min_dead_after_s == 28.0


def test_order_entry_is_refused() -> None:
    a = synced()
    req = OrderRequest("add_order", a.new_req_id(), symbol="BTC-USDT", side="buy")
    refused = a.gate(req)
    assert refused is not None
    assert refused[0] == "unsupported"
    ev = a.order(req, now()).events[0]
    assert isinstance(ev, OrderResponse)
    assert ev.outcome == "refused"
    assert a.stats.orders_refused == 1
    assert a.counters()["orders_refused"] == 1
    a.closing(now())
    assert a.closing_complete


def test_bad_private_frame_resyncs_in_place() -> None:
    a = synced()
    bad = change("o1", "match", "match").replace('"filledSize": "0"', '"filledSize": 5.5')
    out = a.on_frame(bad, now(3))
    assert isinstance(out.events[0], BadFrame)
    assert [c.key for c in out.rest] == ["orders:1"]  # only the orders stream resyncs
    assert phase(a) is Phase.SYNCING
    done = a.on_rest(RestResult("orders:1", 200, page([])), now(3.1))
    gaps = [e for e in done.events if isinstance(e, Gap)]
    assert [(g.stream, g.cause) for g in gaps] == [("kucoin:orders:*", GapCause.BAD_FRAME)]
    assert isinstance(done.events[-1], Reconciled)
    assert phase(a) is Phase.LIVE


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda kids: (
        st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4)
    ),
    max_leaves=12,
)
_fields = st.fixed_dictionaries(
    {},
    optional={
        k: _json | st.sampled_from(["0", "1.5", "-1", "1e9", "", "done", "match", "open"])
        for k in (
            "orderId",
            "symbol",
            "type",
            "status",
            "ts",
            "size",
            "filledSize",
            "remainSize",
            "matchSize",
            "tradeId",
            "liquidity",
            "currency",
            "total",
            "available",
            "hold",
            "time",
        )
    },
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    topic=st.sampled_from([ORDERS, BAL, "/market/match:BTC-USDT", 7]),
    subject=st.sampled_from(["orderChange", "account.balance", None, 3]),
    data=_fields | _json,
    raw=st.binary(max_size=40),
)
def test_hostile_frames_never_raise(topic: Any, subject: Any, data: Any, raw: bytes) -> None:
    a = synced()
    frame = json.dumps(
        {
            "type": "message",
            "topic": topic,
            "subject": subject,
            "channelType": "private",
            "data": data,
        }
    )
    calls: list[RestCall] = []
    for f in (frame, raw, frame[: len(frame) // 2]):
        out = a.on_frame(f, now(1))
        calls.extend(out.rest)
        assert all(not isinstance(e, Exception) for e in out.events)
    # the adapter still works afterwards: answer every resync call it made
    while calls:
        call = calls.pop(0)
        body = page([]) if call.key.startswith("orders:") else ok([])
        calls.extend(a.on_rest(RestResult(call.key, 200, body), now(2)).rest)
    assert phase(a) is Phase.LIVE
    ev = a.on_frame(change("z1", "open", "open"), now(3)).events
    assert ev
    assert isinstance(ev[-1], OrderUpdate)
