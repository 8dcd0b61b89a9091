"""KrakenPrivateAdapter driven frame by frame (pure: no sockets, no clock)."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from gapless.errors import ConfigError
from gapless.events import (
    BalanceUpdate,
    DeadMansSwitch,
    Gap,
    GapCause,
    OrderResponse,
    OrderUpdate,
    Reconciled,
    SubscriptionRejected,
)
from gapless.secrets import Credentials, Secret
from gapless.venues.base import Now, Phase, RestResult, Step, StreamSpec
from gapless.venues.kraken.private import (
    KrakenPrivateAdapter,
    KrakenPrivateOptions,
    OrderRequest,
)

SECRET_B64 = "a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5"
TOKEN = "tok-ABCDEF0123456789"
T0 = 1_700_000_000_000_000_000


def creds() -> Credentials:
    return Credentials("kraken", Secret("apikey-123"), Secret(SECRET_B64))


def now(t: float = 0.0, backlog: int = 0) -> Now:
    return Now(t, T0 + int(t * 1e9), backlog)


def ts(t: float) -> str:
    from gapless.venues.kraken.protocol import format_rfc3339_ns

    return format_rfc3339_ns(T0 + int(t * 1e9))


def ack(channel: str, req_id: int, success: bool = True, error: str | None = None) -> str:
    msg: dict[str, Any] = {"method": "subscribe", "req_id": req_id, "success": success}
    if success:
        msg["result"] = {"channel": channel}
    else:
        msg["error"] = error
    msg["time_in"] = ts(0)
    msg["time_out"] = ts(0)
    return json.dumps(msg)


def order(
    oid: str, status: str = "new", cum: str = "0", exec_type: str | None = None, **kw: Any
) -> dict[str, Any]:
    d: dict[str, Any] = {
        "order_id": oid,
        "symbol": "BTC/USD",
        "side": "buy",
        "order_type": "limit",
        "order_qty": 1.5,
        "limit_price": 100.0,
        "order_status": status,
        "cum_qty": cum,
        "timestamp": ts(1),
    }
    if exec_type:
        d["exec_type"] = exec_type
    d.update(kw)
    return d


def frame(channel: str, typ: str, data: list[Any], seq: int) -> str:
    # numbers as the wire sends them; json.dumps prints floats like 1.5
    return json.dumps({"channel": channel, "type": typ, "data": data, "sequence": seq})


def sent(step: Step) -> list[dict[str, Any]]:
    return [json.loads(s) for s in step.sends]


def phase_of(a: KrakenPrivateAdapter) -> Phase:
    return a.phase


def token_answer(token: str = TOKEN) -> RestResult:
    body = json.dumps({"error": [], "result": {"token": token, "expires": 900}}).encode()
    return RestResult("token", 200, body)


def live_adapter(
    opts: KrakenPrivateOptions | None = None,
) -> tuple[KrakenPrivateAdapter, list[Any]]:
    """Connected, subscribed, both snapshots in: returns the adapter and all events."""
    a = KrakenPrivateAdapter(creds(), opts)
    a.add(StreamSpec("kraken", "executions", "*"))
    a.add(StreamSpec("kraken", "balances", "*"))
    events: list[Any] = []
    step = a.on_connected("c1", now())
    assert [c.key for c in step.rest] == ["token"]
    call = step.rest[0]
    assert call.private
    assert call.method == "POST"
    assert call.url.endswith("/0/private/GetWebSocketsToken")
    assert dict(call.headers)["API-Key"] == "apikey-123"
    assert "apikey-123" not in repr(call)
    step = a.on_rest(token_answer(), now(0.1))
    subs = sent(step)
    assert [m["params"]["channel"] for m in subs] == ["executions", "balances"]
    assert all(m["params"]["token"] == TOKEN for m in subs)
    assert TOKEN in a.redactions()
    ex_req, bal_req = subs[0]["req_id"], subs[1]["req_id"]
    step = a.on_frame(ack("executions", ex_req), now(0.2))
    events += step.events
    dms = sent(step)
    assert dms
    assert dms[0]["method"] == "cancel_all_orders_after"
    assert dms[0]["params"]["timeout"] == a.options.dms_timeout_s
    events += a.on_frame(ack("balances", bal_req), now(0.2)).events
    trig = ts(60)
    events += a.on_frame(
        json.dumps(
            {
                "method": "cancel_all_orders_after",
                "req_id": dms[0]["req_id"],
                "success": True,
                "result": {"currentTime": ts(0), "triggerTime": trig},
            }
        ),
        now(0.25),
    ).events
    assert phase_of(a) is Phase.SYNCING
    events += a.on_frame(
        frame("executions", "snapshot", [order("O1"), order("O2", "partially_filled", "0.5")], 1),
        now(0.3),
    ).events
    events += a.on_frame(
        frame(
            "balances",
            "snapshot",
            [{"asset": "USD", "balance": "1000.00"}, {"asset": "BTC", "balance": "2.0"}],
            1,
        ),
        now(0.3),
    ).events
    assert phase_of(a) is Phase.LIVE
    return a, events


def test_initial_sync_delivers_snapshot_lines_and_arms_the_switch() -> None:
    a, events = live_adapter()
    orders = [e for e in events if isinstance(e, OrderUpdate)]
    assert [(o.order_id, o.source, o.status) for o in orders] == [
        ("O1", "snapshot", "new"),
        ("O2", "snapshot", "partially_filled"),
    ]
    assert orders[0].qty == Decimal("1.5")
    assert orders[1].cum_qty == Decimal("0.5")
    bals = [e for e in events if isinstance(e, BalanceUpdate)]
    assert {b.asset: b.balance for b in bals} == {"USD": Decimal("1000.00"), "BTC": Decimal("2.0")}
    assert all(b.source == "snapshot" for b in bals)
    armed = [e for e in events if isinstance(e, DeadMansSwitch)]
    assert len(armed) == 1
    assert armed[0].state == "armed"
    assert armed[0].trigger_ts_ns == T0 + 60 * 10**9
    rec = [e for e in events if isinstance(e, Reconciled)]
    assert len(rec) == 1
    assert rec[0].reason == "initial snapshot"
    assert rec[0].open_orders == 2
    assert not any(isinstance(e, Gap) for e in events)
    assert set(a.open_orders()) == {"O1", "O2"}


def test_updates_fill_and_ledger() -> None:
    a, _ = live_adapter()
    fill = order(
        "O1",
        "partially_filled",
        "0.5",
        "trade",
        exec_id="E1",
        trade_id=7,
        last_qty=0.5,
        last_price=99.5,
        liquidity_ind="m",
        fees=[{"asset": "USD", "qty": 0.08}],
    )
    ev = a.on_frame(frame("executions", "update", [fill], 2), now(1)).events
    assert len(ev) == 1
    o = ev[0]
    assert isinstance(o, OrderUpdate)
    assert (o.source, o.exec_type, o.last_qty, o.last_price, o.fee, o.liquidity) == (
        "update",
        "trade",
        Decimal("0.5"),
        Decimal("99.5"),
        Decimal("0.08"),
        "m",
    )
    ledger = [
        {
            "asset": "BTC",
            "amount": "0.5",
            "balance": "2.5",
            "fee": "0",
            "ledger_id": "L1",
            "ref_id": "7",
            "type": "trade",
            "timestamp": ts(1),
        },
        {
            "asset": "USD",
            "amount": "-49.83",
            "balance": "950.17",
            "fee": "0.08",
            "ledger_id": "L2",
            "ref_id": "7",
            "type": "trade",
            "timestamp": ts(1),
        },
    ]
    ev = a.on_frame(frame("balances", "update", ledger, 2), now(1)).events
    bals = [b for b in ev if isinstance(b, BalanceUpdate)]
    assert len(bals) == len(ev)
    assert [(b.asset, b.balance, b.change, b.ref_id) for b in bals] == [
        ("BTC", Decimal("2.5"), Decimal("0.5"), "7"),
        ("USD", Decimal("950.17"), Decimal("-49.83"), "7"),
    ]
    assert a.balances() == {"USD": Decimal("950.17"), "BTC": Decimal("2.5")}


def test_duplicate_sequence_is_dropped() -> None:
    a, _ = live_adapter()
    a.on_frame(frame("executions", "update", [order("O1", exec_type="status")], 2), now(1))
    ev = a.on_frame(frame("executions", "update", [order("O1", exec_type="status")], 2), now(1))
    assert ev.events == []
    assert a.stats.duplicates_dropped == 1


def test_sequence_jump_declares_a_gap_resubscribes_and_reconciles_through_rest() -> None:
    a, _ = live_adapter()
    step = a.on_frame(frame("executions", "update", [order("O1", exec_type="status")], 5), now(2))
    assert step.events == []  # declared when the resync point is known
    msgs = sent(step)
    assert [m["method"] for m in msgs] == ["unsubscribe", "subscribe"]
    assert phase_of(a) is Phase.SUBSCRIBING
    a.on_frame(ack("executions", msgs[1]["req_id"]), now(2.1))
    # O1 is gone from the new snapshot (filled meanwhile); O2 grew
    step = a.on_frame(
        frame("executions", "snapshot", [order("O2", "partially_filled", "1.0")], 1), now(2.2)
    )
    gaps = [e for e in step.events if isinstance(e, Gap)]
    assert len(gaps) == 1
    g = gaps[0]
    assert (g.stream, g.cause, g.first_seq, g.last_seq) == (
        "kraken:executions:*",
        GapCause.SEQUENCE_GAP,
        2,
        4,
    )
    rec2 = [e for e in step.events if isinstance(e, OrderUpdate)]
    assert [(o.order_id, o.source, o.cum_qty) for o in rec2] == [
        ("O2", "reconciled", Decimal("1.0"))
    ]
    keys = sorted(c.key for c in step.rest)
    assert keys[0].startswith("closed:")
    assert keys[1] == "query:0"
    query = next(c for c in step.rest if c.key == "query:0")
    assert "txid=O1" in (query.body or "")
    assert phase_of(a) is Phase.SYNCING
    refused = a.gate(
        OrderRequest("add_order", 1, "BTC/USD", "buy", qty=Decimal(1), limit_price=Decimal(1))
    )
    assert refused is not None
    assert refused[0] == "not_ready"
    assert a.gate(OrderRequest("cancel_all", 2)) is None  # cancels pass while reconciling
    body = {
        "error": [],
        "result": {
            "O1": {
                "status": "closed",
                "vol": "1.5",
                "vol_exec": "1.5",
                "cost": "150",
                "fee": "0.2",
                "price": "100.0",
                "closetm": 1700000001.5,
                "descr": {"pair": "BTC/USD", "type": "buy", "ordertype": "limit", "price": "100.0"},
            }
        },
    }
    ev = a.on_rest(RestResult("query:0", 200, json.dumps(body).encode()), now(2.3)).events
    assert [
        (o.order_id, o.status, o.cum_qty, o.source) for o in ev if isinstance(o, OrderUpdate)
    ] == [("O1", "filled", Decimal("1.5"), "reconciled")]
    assert not any(isinstance(e, Reconciled) for e in ev)  # ClosedOrders still pending
    closed = {"error": [], "result": {"closed": {}, "count": 0}}
    ev = a.on_rest(RestResult(keys[0], 200, json.dumps(closed).encode()), now(2.4)).events
    rec = [e for e in ev if isinstance(e, Reconciled)]
    assert len(rec) == 1
    assert rec[0].complete
    assert rec[0].orders_changed == 2
    assert rec[0].reason == "sequence gap"
    assert phase_of(a) is Phase.LIVE
    assert set(a.open_orders()) == {"O2"}


def test_reconnect_gap_reconciles_orders_closed_while_blind_and_balances() -> None:
    a, _ = live_adapter()
    step = a.on_disconnected("abort", now(5))
    assert step.events == []
    assert a.gate(OrderRequest("cancel_all", 1)) == (
        "disconnected",
        "the private connection is down; order requests are not queued",
    )
    step = a.on_connected("c2", now(8))
    step = a.on_rest(token_answer("tok-2"), now(8.1))
    assert "tok-2" in a.redactions()
    assert TOKEN in a.redactions()
    ex, bal = sent(step)[0]["req_id"], sent(step)[1]["req_id"]
    a.on_frame(ack("executions", ex), now(8.2))
    a.on_frame(ack("balances", bal), now(8.2))
    step = a.on_frame(
        frame(
            "balances",
            "snapshot",
            [{"asset": "USD", "balance": "900"}, {"asset": "BTC", "balance": "2.0"}],
            1,
        ),
        now(8.3),
    )
    g = [e for e in step.events if isinstance(e, Gap)]
    assert len(g) == 1
    assert g[0].stream == "kraken:balances:*"
    assert g[0].cause is GapCause.DISCONNECT
    b = [e for e in step.events if isinstance(e, BalanceUpdate)]
    assert [(x.asset, x.balance, x.change, x.source) for x in b] == [
        ("USD", Decimal("900"), Decimal("-100.00"), "reconciled")
    ]
    step = a.on_frame(frame("executions", "snapshot", [], 1), now(8.4))
    closed_call = next(c for c in step.rest if c.key.startswith("closed:"))
    assert "start=1700000000.000000" in (
        closed_call.body or ""
    )  # blind since t=5, minus 5 s lookback
    # QueryOrders times out once: retried with a new nonce
    q = next(c for c in step.rest if c.key == "query:0")
    a.on_rest(RestResult("query:0", None, b"", error="timeout"), now(8.5))
    retry = a.on_timer(now(11))
    again = [c for c in retry.rest if c.key == "query:0"]
    assert len(again) == 1
    assert again[0].body != q.body
    body = {
        "error": [],
        "result": {
            "O1": {
                "status": "canceled",
                "vol": "1.5",
                "vol_exec": "0",
                "cost": "0",
                "fee": "0",
                "price": "0",
                "descr": {"pair": "BTC/USD"},
            },
            "O2": {
                "status": "closed",
                "vol": "1.5",
                "vol_exec": "1.5",
                "cost": "150",
                "fee": "0",
                "price": "100",
                "descr": {"pair": "BTC/USD"},
            },
        },
    }
    a.on_rest(RestResult("query:0", 200, json.dumps(body).encode()), now(11.1))
    # an order placed and filled while blind (an add_order whose answer was lost)
    closed = {
        "error": [],
        "result": {
            "count": 1,
            "closed": {
                "O9": {
                    "status": "closed",
                    "vol": "0.1",
                    "vol_exec": "0.1",
                    "cost": "10",
                    "fee": "0",
                    "price": "100",
                    "cl_ord_id": "mine-9",
                    "descr": {
                        "pair": "BTC/USD",
                        "type": "sell",
                        "ordertype": "limit",
                        "price": "100",
                    },
                }
            },
        },
    }
    ev = a.on_rest(RestResult(closed_call.key, 200, json.dumps(closed).encode()), now(11.2)).events
    o9 = [e for e in ev if isinstance(e, OrderUpdate)]
    assert [(o.order_id, o.cl_ord_id, o.status) for o in o9] == [("O9", "mine-9", "filled")]
    rec = [e for e in ev if isinstance(e, Reconciled)]
    assert rec
    assert rec[0].complete
    assert rec[0].reason == "reconnect"
    assert rec[0].open_orders == 0
    assert {k: v.status for k, v in a.orders().items()} == {
        "O1": "canceled",
        "O2": "filled",
        "O9": "filled",
    }


def test_invalid_session_fetches_a_new_token() -> None:
    a = KrakenPrivateAdapter(creds())
    a.add(StreamSpec("kraken", "executions", "*"))
    a.on_connected("c1", now())
    step = a.on_rest(token_answer(), now(0.1))
    req = sent(step)[0]["req_id"]
    step = a.on_frame(ack("executions", req, False, "ESession:Invalid session"), now(0.2))
    rej = [e for e in step.events if isinstance(e, SubscriptionRejected)]
    assert rej
    assert "Invalid session" in rej[0].error
    step = a.on_timer(now(0.3))
    assert [c.key for c in step.rest] == ["token"]


def test_bad_credentials_are_reported_and_retried_slowly() -> None:
    a = KrakenPrivateAdapter(creds())
    a.add(StreamSpec("kraken", "executions", "*"))
    a.on_connected("c1", now())
    body = json.dumps({"error": ["EAPI:Invalid key"], "result": {}}).encode()
    step = a.on_rest(RestResult("token", 200, body), now(0.1))
    rej = [e for e in step.events if isinstance(e, SubscriptionRejected)]
    assert rej
    assert "EAPI:Invalid key" in rej[0].error
    assert rej[0].retry_in_s == 60.0
    assert "apikey" not in rej[0].error
    assert SECRET_B64 not in rej[0].error
    assert a.on_timer(now(30)).rest == []
    assert [c.key for c in a.on_timer(now(60.2)).rest] == ["token"]


@pytest.mark.parametrize(
    ("system", "req", "reason"),
    [
        ("maintenance", OrderRequest("cancel_all", 1), "maintenance"),
        (
            "cancel_only",
            OrderRequest("add_order", 1, "BTC/USD", "buy", qty=Decimal(1), limit_price=Decimal(1)),
            "cancel_only",
        ),
        ("cancel_only", OrderRequest("cancel_all", 1), None),
        (
            "post_only",
            OrderRequest("add_order", 1, "BTC/USD", "buy", qty=Decimal(1), limit_price=Decimal(1)),
            "post_only",
        ),
        (
            "post_only",
            OrderRequest(
                "add_order",
                1,
                "BTC/USD",
                "buy",
                qty=Decimal(1),
                limit_price=Decimal(1),
                post_only=True,
            ),
            None,
        ),
        (
            "limit_only",
            OrderRequest("add_order", 1, "BTC/USD", "buy", "market", qty=Decimal(1)),
            "limit_only",
        ),
        (
            "limit_only",
            OrderRequest("add_order", 1, "BTC/USD", "buy", qty=Decimal(1), limit_price=Decimal(1)),
            None,
        ),
        ("online", OrderRequest("add_order", 1, "BTC/USD", "buy", "market", qty=Decimal(1)), None),
    ],
)
def test_order_gate_follows_system_status(
    system: str, req: OrderRequest, reason: str | None
) -> None:
    a, _ = live_adapter()
    a.on_frame(
        json.dumps({"channel": "status", "type": "update", "data": [{"system": system}]}), now(1)
    )
    got = a.gate(req)
    assert (got[0] if got else None) == reason
    step = a.order(req, now(1))
    if reason is None:
        assert len(step.sends) == 1
    else:
        assert step.sends == []
        assert isinstance(step.events[0], OrderResponse)
        assert step.events[0].outcome == "refused"


def test_order_answers_accepted_rejected_and_unknown() -> None:
    a, _ = live_adapter()
    req = OrderRequest(
        "add_order",
        a.new_req_id(),
        "BTC/USD",
        "sell",
        qty=Decimal("0.00010000"),
        limit_price=Decimal("30000.5"),
        cl_ord_id="c-1",
    )
    step = a.order(req, now(1))
    assert '"order_qty":0.00010000' in step.sends[0]
    assert '"limit_price":30000.5' in step.sends[0]
    resp = json.dumps(
        {
            "method": "add_order",
            "req_id": req.req_id,
            "success": True,
            "result": {"order_id": "OX", "cl_ord_id": "c-1"},
            "time_in": ts(1),
            "time_out": ts(1),
        }
    )
    ev = a.on_frame(resp, now(1.1)).events
    assert isinstance(ev[0], OrderResponse)
    assert ev[0].ok
    assert ev[0].order_id == "OX"
    req2 = OrderRequest("cancel_order", a.new_req_id(), order_ids=("nope",))
    a.order(req2, now(2))
    ev = a.on_frame(
        json.dumps(
            {
                "method": "cancel_order",
                "req_id": req2.req_id,
                "success": False,
                "error": "EOrder:Unknown order",
            }
        ),
        now(2.1),
    ).events
    assert isinstance(ev[0], OrderResponse)
    assert ev[0].outcome == "rejected"
    assert ev[0].error == "EOrder:Unknown order"
    req3 = OrderRequest("cancel_all", a.new_req_id())
    a.order(req3, now(3))
    assert not [e for e in a.on_timer(now(12.9)).events if isinstance(e, OrderResponse)]
    answers = [e for e in a.on_timer(now(13.1)).events if isinstance(e, OrderResponse)]
    assert len(answers) == 1
    assert answers[0].outcome == "unknown"
    req4 = OrderRequest("cancel_all", a.new_req_id())
    a.order(req4, now(14))
    lost = [e for e in a.on_disconnected("abort", now(14.5)).events if isinstance(e, OrderResponse)]
    assert len(lost) == 1
    assert lost[0].outcome == "unknown"
    assert "not re-sent" in (lost[0].error or "")


def test_order_request_validation() -> None:
    with pytest.raises(ConfigError):
        OrderRequest(
            "add_order", 1, "BTC/USD", "hold", qty=Decimal(1), limit_price=Decimal(1)
        ).validate()
    with pytest.raises(ConfigError):
        OrderRequest(
            "add_order", 1, "BTC/USD", "buy", qty=Decimal(0), limit_price=Decimal(1)
        ).validate()
    with pytest.raises(ConfigError):
        OrderRequest("add_order", 1, "BTC/USD", "buy", qty=Decimal(1)).validate()
    with pytest.raises(ConfigError):
        OrderRequest("cancel_order", 1).validate()


def test_switch_refresh_failure_and_clean_disarm() -> None:
    opts = KrakenPrivateOptions(dms_timeout_s=60, dms_refresh_s=20)
    a, _ = live_adapter(opts)
    assert a.on_timer(now(10)).sends == []
    step = a.on_timer(now(20.3))
    refresh = [m for m in sent(step) if m["method"] == "cancel_all_orders_after"]
    assert len(refresh) == 1
    ev = a.on_timer(now(26)).events  # no answer within 5 s
    failed = [e for e in ev if isinstance(e, DeadMansSwitch)]
    assert failed
    assert failed[0].state == "refresh_failed"
    step = a.on_timer(now(28.1))
    assert [m["method"] for m in sent(step)] == ["cancel_all_orders_after"]
    step = a.closing(now(29))
    m = sent(step)[-1]
    assert m["method"] == "cancel_all_orders_after"
    assert m["params"]["timeout"] == 0
    assert not a.closing_complete
    ev = a.on_frame(
        json.dumps(
            {
                "method": "cancel_all_orders_after",
                "req_id": m["req_id"],
                "success": True,
                "result": {"currentTime": ts(29), "triggerTime": "0"},
            }
        ),
        now(29.1),
    ).events
    assert a.closing_complete
    assert [(e.state, e.timeout_s) for e in ev if isinstance(e, DeadMansSwitch)] == [
        ("disarmed", 0)
    ]


def test_switch_is_disarmed_before_a_known_maintenance_window() -> None:
    window = (T0 + 100 * 10**9, T0 + 200 * 10**9)
    a, _ = live_adapter(KrakenPrivateOptions(maintenance_windows=(window,), dms_disarm_lead_s=30))
    step = a.on_timer(now(75))
    m = [x for x in sent(step) if x["method"] == "cancel_all_orders_after"]
    assert m
    assert m[0]["params"]["timeout"] == 0
    a.on_frame(
        json.dumps(
            {
                "method": "cancel_all_orders_after",
                "req_id": m[0]["req_id"],
                "success": True,
                "result": {"currentTime": ts(75), "triggerTime": "0"},
            }
        ),
        now(75.1),
    )
    assert not [x for x in sent(a.on_timer(now(150))) if x["method"] == "cancel_all_orders_after"]
    step = a.on_timer(now(200.5))
    m = [x for x in sent(step) if x["method"] == "cancel_all_orders_after"]
    assert m
    assert m[0]["params"]["timeout"] == 60


def test_hostile_frames_are_counted_not_raised() -> None:
    a, _ = live_adapter()
    for bad in [
        '{"channel":"executions","type":"update","data":"x","sequence":2}',
        '{"channel":"executions","type":"update","data":[{"order_id":5}],"sequence":2}',
        '{"channel":"balances","type":"snapshot","data":[{"asset":"USD"}],"sequence":2}',
        "[" * 5000,
        '{"method":"add_order","success":"yes"}',
    ]:
        step = a.on_frame(bad, now(1))
        assert step.events
        assert type(step.events[0]).__name__ == "BadFrame"
    assert a.bad_frames == 5
    assert TOKEN not in repr(
        a.on_frame('{"channel":"executions","token":"' + TOKEN + '","type":1}', now(1)).events
    )
