"""Kraken simulator private side over real loopback sockets: REST signing and calls
(aiohttp), the token rule, executions/balances channels, order methods, status
gating, the dead man's switch and the private fault kinds (protocols.md §1.5, §1.6,
§1.10, §1.11, §1.13, §5 item 4)."""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import time
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest
from simkit import RFC3339_US, closed, loads, recv, recv_until
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from gapless.sim import (
    DEFAULT_CHAOS_KINDS,
    DEMO_KRAKEN_ACCOUNT,
    FAULT_KINDS,
    KRAKEN_PRIVATE_FAULT_KINDS,
    AccountSpec,
    Fault,
    KrakenSim,
    Scenario,
    SimConfig,
    kraken_signature,
)
from gapless.sim.kraken_private import verify_signature

KEY = DEMO_KRAKEN_ACCOUNT.api_key
SECRET = DEMO_KRAKEN_ACCOUNT.api_secret
_NUMBER_KEYS = (
    "order_qty|limit_price|cum_qty|cum_cost|avg_price|last_qty|last_price|cost|qty|"
    "fee_usd_equiv|amount|fee|balance"
)
NUMBER_TOKEN = re.compile(rf'"(?:{_NUMBER_KEYS})":([^,}}\]]+)')
PLAIN_NUMBER = re.compile(r"^-?\d+(\.\d+)?$")
_nonces = itertools.count(int(time.time() * 1000))


class Clock:
    """Exchange clock (epoch µs) that a test can move forward."""

    def __init__(self) -> None:
        self.offset_us = 0

    def __call__(self) -> int:
        return time.time_ns() // 1000 + self.offset_us

    def jump(self, seconds: float) -> None:
        self.offset_us += int(seconds * 1_000_000)


def cfg(**kw: Any) -> SimConfig:
    base: dict[str, Any] = {"seed": 11, "symbols": ("BTC/USD", "ETH/USD"), "tick_rate_hz": 20.0}
    base.update(kw)
    return SimConfig(**base)


async def rest(
    sim: KrakenSim,
    method: str,
    *,
    key: str = KEY,
    secret: str = SECRET,
    nonce: int | None = None,
    sign: str | None = None,
    http_method: str = "POST",
    form: dict[str, str] | None = None,
    **params: str,
) -> tuple[int, Any]:
    path = f"/0/private/{method}"
    n = str(next(_nonces) if nonce is None else nonce)
    body = urlencode({"nonce": n, **(form or {}), **params})
    headers = {
        "API-Key": key,
        "API-Sign": sign if sign is not None else kraken_signature(secret, path, n, body),
        "Content-Type": "application/x-www-form-urlencoded; charset=utf-8",
    }
    async with (
        aiohttp.ClientSession() as session,
        session.request(http_method, sim.rest_url + path, data=body, headers=headers) as r,
    ):
        assert r.headers["Content-Type"] == "application/json"
        return r.status, json.loads(await r.text(), parse_float=Decimal)


async def ok(sim: KrakenSim, method: str, key: str = KEY, **params: str) -> Any:
    status, body = await rest(sim, method, key=key, form=params)
    assert status == 200
    assert body["error"] == [], body
    return body["result"]


async def token(sim: KrakenSim) -> str:
    result = await ok(sim, "GetWebSocketsToken")
    assert result["expires"] == 900
    assert isinstance(result["token"], str)
    return str(result["token"])


async def auth_ws(sim: KrakenSim, url: str | None = None) -> ClientConnection:
    ws = await connect(url or sim.auth_url, ping_interval=None)
    first = await recv(ws)
    assert first["channel"] == "status"
    return ws


def req(method: str, req_id: int, **params: Any) -> str:
    return json.dumps({"method": method, "params": params, "req_id": req_id})


def sub(channel: str, tok: str, req_id: int = 1, **params: Any) -> str:
    return req("subscribe", req_id, channel=channel, token=tok, **params)


def order(tok: str, req_id: int, **params: Any) -> str:
    base: dict[str, Any] = {"order_type": "limit", "side": "buy", "symbol": "BTC/USD"}
    base.update(params)
    return req("add_order", req_id, token=tok, **base)


def is_frame(m: Any) -> bool:
    return isinstance(m, dict) and m.get("channel") not in ("heartbeat", "status")


async def frames(ws: ClientConnection, n: int, limit_s: float = 3.0) -> list[Any]:
    """The next ``n`` frames that are not heartbeats or status messages."""
    out: list[Any] = []
    async with asyncio.timeout(limit_s):
        while len(out) < n:
            m = loads(await ws.recv())
            if is_frame(m):
                out.append(m)
    return out


async def response(ws: ClientConnection, method: str, req_id: int) -> Any:
    m, _ = await recv_until(ws, lambda m: m.get("method") == method and m.get("req_id") == req_id)
    return m


async def until_exec(ws: ClientConnection, exec_type: str) -> list[Any]:
    """Frames up to and including the executions update with ``exec_type``."""
    last, seen = await recv_until(
        ws,
        lambda m: (
            m.get("channel") == "executions"
            and m["type"] == "update"
            and m["data"][0]["exec_type"] == exec_type
        ),
    )
    return [m for m in [*seen, last] if is_frame(m)]


def best(sim: KrakenSim, symbol: str) -> tuple[Decimal, Decimal]:
    """(best bid, best ask) of the public book (simulator internals, for placing orders)."""
    m = sim._syms[symbol].market
    return Decimal(m.bids.best()).scaleb(-m.pp), Decimal(m.asks.best()).scaleb(-m.pp)


def check_envelope(m: Any, method: str, req_id: int) -> None:
    assert m["method"] == method
    assert m["req_id"] == req_id
    assert RFC3339_US.match(m["time_in"])
    assert RFC3339_US.match(m["time_out"])
    assert m["time_in"] <= m["time_out"]


def error_of(m: Any, method: str, req_id: int) -> str:
    check_envelope(m, method, req_id)
    assert set(m) == {"error", "method", "req_id", "success", "time_in", "time_out"}
    assert m["success"] is False
    return str(m["error"])


def result_of(m: Any, method: str, req_id: int) -> Any:
    check_envelope(m, method, req_id)
    assert set(m) == {"method", "req_id", "result", "success", "time_in", "time_out"}, m
    assert m["success"] is True
    return m["result"]


# ------------------------------------------------------------------- signing


def test_tv_k0_signature_vector() -> None:
    """protocols.md §1.6 / §4 TV-K0."""
    secret = (
        "kQH5HW/8p1uGOVjbgWA7FunAmGO8lsSUXNsu3eow76sz84Q18fWxnyRzBHCd3pd5nE9qa99HAZtuZuj6F1huXg=="
    )
    postdata = "nonce=1616492376594&ordertype=limit&pair=XBTUSD&price=37500&type=buy&volume=1.25"
    expected = (
        "4/dpxb3iT4tp/ZCVEwSnEsLxx0bqyhLpdfOpc6fn7OR8+UClSV5n9E6aSS8MPtnRfp32bAb0nmbRn6H8ndwLUQ=="
    )
    path = "/0/private/AddOrder"
    assert kraken_signature(secret, path, "1616492376594", postdata) == expected
    assert verify_signature(secret, path, "1616492376594", postdata, expected)
    assert not verify_signature(secret, path, "1616492376595", postdata, expected)
    assert not verify_signature(secret, "/0/private/Balance", "1616492376594", postdata, expected)
    assert not verify_signature(secret, path, "1616492376594", postdata, "not base64 ✗")
    assert not verify_signature("@@@", path, "1616492376594", postdata, expected)


async def test_rest_auth_accepts_and_rejects() -> None:
    async with KrakenSim(cfg()) as sim:
        assert sim.rest_url == f"http://127.0.0.1:{sim.port}"
        assert sim.auth_url == f"ws://127.0.0.1:{sim.port}/v2-auth"
        tok = await token(sim)
        assert re.fullmatch(r"[A-Za-z0-9]{43}", tok)
        assert await token(sim) != tok
        assert (await rest(sim, "GetWebSocketsToken", key="nobody"))[1] == {
            "error": ["EAPI:Invalid key"]
        }
        other = kraken_signature(SECRET, "/0/private/Balance", "1", "nonce=1")
        assert (await rest(sim, "GetWebSocketsToken", sign=other))[1] == {
            "error": ["EAPI:Invalid signature"]
        }
        wrong_secret = AccountSpec("x", "c2VjcmV0").api_secret
        assert (await rest(sim, "Balance", secret=wrong_secret))[1]["error"] == [
            "EAPI:Invalid signature"
        ]
        n = next(_nonces) + 1000
        assert (await rest(sim, "Balance", nonce=n))[1]["error"] == []
        for replay in (n, n - 1):  # replayed or lower nonce
            assert (await rest(sim, "Balance", nonce=replay))[1] == {
                "error": ["EAPI:Invalid nonce"]
            }
        assert (await rest(sim, "Balance", nonce=n + 1))[1]["error"] == []
        # a nonce is required
        async with (
            aiohttp.ClientSession() as s,
            s.post(sim.rest_url + "/0/private/Balance", data="x=1", headers={"API-Key": KEY}) as r,
        ):
            assert await r.json() == {"error": ["EAPI:Invalid nonce"]}
        status, body = await rest(sim, "NoSuchMethod")
        assert (status, body) == (404, {"error": ["EGeneral:Unknown method"]})
        status, body = await rest(sim, "Balance", http_method="GET")
        assert status == 405
        async with (
            aiohttp.ClientSession() as s,
            s.get(sim.rest_url + "/0/public/SystemStatus") as r,
        ):
            data = await r.json()
            assert data["result"]["status"] == "online"
            assert r.headers["Connection"] == "close"
        assert sim.stats["tokens_issued"] == 2
        assert [r["issued"] for r in sim.truth if r["k"] == "token"] == [1, 2]
        assert tok not in json.dumps(sim.truth)


# ---------------------------------------------------------------- the token


async def test_token_rule_900s_or_subscribed_on_this_connection() -> None:
    clock = Clock()
    async with KrakenSim(cfg(clock=clock)) as sim:
        tok = await token(sim)
        clock.jump(899)
        async with await auth_ws(sim) as ws1:
            await ws1.send(sub("executions", tok, 1))
            assert (await response(ws1, "subscribe", 1))["success"] is True
            clock.jump(2)  # 901 s old now
            async with await auth_ws(sim) as ws2:
                await ws2.send(sub("executions", tok, 2))
                m = await response(ws2, "subscribe", 2)
                assert error_of(m, "subscribe", 2) == "ESession:Invalid session"
                await ws2.send(order(tok, 3, order_qty=0.01, limit_price=1000.0))
                assert error_of(await response(ws2, "add_order", 3), "add_order", 3) == (
                    "ESession:Invalid session"
                )
                fresh = await token(sim)
                await ws2.send(sub("balances", fresh, 4))
                assert (await response(ws2, "subscribe", 4))["success"] is True
            # still valid on the connection where it subscribed: more subscribes and orders
            await ws1.send(sub("balances", tok, 5))
            assert (await response(ws1, "subscribe", 5))["success"] is True
            await ws1.send(order(tok, 6, order_qty=0.01, limit_price=1000.0))
            assert result_of(await response(ws1, "add_order", 6), "add_order", 6)["order_id"]
            clock.jump(100_000)
            await ws1.send(req("cancel_all", 7, token=tok))
            assert result_of(await response(ws1, "cancel_all", 7), "cancel_all", 7) == {"count": 1}
            for bad in ("nope", None, 5):
                await ws1.send(req("cancel_all", 8, token=bad))
                m = await response(ws1, "cancel_all", 8)
                assert error_of(m, "cancel_all", 8) == "ESession:Invalid session"


async def test_private_needs_the_auth_path() -> None:
    async with KrakenSim(cfg()) as sim:
        tok = await token(sim)
        async with await auth_ws(sim, sim.url) as ws:
            await ws.send(sub("executions", tok, 1))
            m = await response(ws, "subscribe", 1)
            assert error_of(m, "subscribe", 1) == "EGeneral:Permission denied"
            await ws.send(order(tok, 2, order_qty=0.01, limit_price=1000.0))
            m = await response(ws, "add_order", 2)
            assert error_of(m, "add_order", 2) == "EGeneral:Permission denied"
        # public channels still work on /v2-auth
        async with await auth_ws(sim) as ws:
            await ws.send(json.dumps({"method": "subscribe", "params": {"channel": "instrument"}}))
            m, _ = await recv_until(ws, lambda m: m.get("channel") == "instrument")
            assert m["type"] == "snapshot"


# ------------------------------------------------------- channels and orders


async def test_snapshots_updates_sequence_and_ledger() -> None:
    async with KrakenSim(cfg()) as sim:
        tok = await token(sim)
        async with await auth_ws(sim) as ws:
            await ws.send(order(tok, 1, order_qty=0.01, limit_price=1000.0, cl_ord_id="rest-1"))
            rid = result_of(await response(ws, "add_order", 1), "add_order", 1)
            assert set(rid) == {"order_id", "cl_ord_id"}
            assert rid["cl_ord_id"] == "rest-1"
            assert re.fullmatch(r"O[A-Z0-9]{5}-[A-Z0-9]{5}-[A-Z0-9]{6}", rid["order_id"])
            await ws.send(sub("executions", tok, 2))
            await ws.send(sub("balances", tok, 3))
            ack_e, snap_e, ack_b, snap_b = await frames(ws, 4)
            assert result_of_ack(ack_e, 2) == {
                "channel": "executions",
                "maxratecount": 125,
                "snap_orders": True,
                "snap_trades": False,
            }
            assert result_of_ack(ack_b, 3) == {"channel": "balances", "snapshot": True}
            assert (snap_e["channel"], snap_e["type"], snap_e["sequence"]) == (
                "executions",
                "snapshot",
                1,
            )
            [o] = snap_e["data"]
            assert o["order_id"] == rid["order_id"]
            assert o["exec_type"] == "new"
            assert o["order_status"] == "new"
            assert o["cl_ord_id"] == "rest-1"
            assert o["time_in_force"] == "GTC"
            assert o["post_only"] is False
            assert o["order_qty"] == Decimal("0.01")
            assert (snap_b["channel"], snap_b["type"], snap_b["sequence"]) == (
                "balances",
                "snapshot",
                1,
            )
            bal = {b["asset"]: b for b in snap_b["data"]}
            assert bal["USD"] == {
                "asset": "USD",
                "asset_class": "currency",
                "balance": Decimal("1000000.0000"),
                "wallets": [{"type": "spot", "id": "main", "balance": Decimal("1000000.0000")}],
            }
            assert set(bal) == {"USD", "BTC", "ETH", "MATIC", "ALGO"}

            # a marketable order: new, one trade per level taken, filled; two ledger
            # entries per trade sharing ref_id; sequences +1 per message per channel
            await ws.send(order(tok, 4, order_qty=0.0002, limit_price=200000.0))
            seen = await until_exec(ws, "filled")
            resp = seen[0]
            oid = result_of(resp, "add_order", 4)["order_id"]
            ex = [m for m in seen if m.get("channel") == "executions"]
            led = [m for m in seen if m.get("channel") == "balances"]
            assert [m["sequence"] for m in ex] == list(range(2, 2 + len(ex)))
            assert [m["sequence"] for m in led] == list(range(2, 2 + len(led)))
            assert all(m["type"] == "update" and len(m["data"]) == 1 for m in ex + led)
            reports = [m["data"][0] for m in ex]
            assert reports[0]["exec_type"] == "new"
            assert reports[-1]["exec_type"] == "filled"
            trades = [r for r in reports if r["exec_type"] == "trade"]
            assert trades
            assert len(led) == 2 * len(trades)
            assert all(r["order_id"] == oid for r in reports)
            assert sum(t["last_qty"] for t in trades) == Decimal("0.0002")
            usd = Decimal("1000000")
            for t, (b, q) in zip(trades, zip(led[0::2], led[1::2], strict=True), strict=True):
                be, qe = b["data"][0], q["data"][0]
                assert t["liquidity_ind"] == "t"
                assert t["cost"] == t["last_qty"] * t["last_price"]
                fee = t["fees"][0]["qty"]
                assert t["fees"] == [{"asset": "USD", "qty": fee}]
                assert t["fee_usd_equiv"] == fee
                assert be["ref_id"] == qe["ref_id"] == t["exec_id"]
                assert be["ledger_id"] != qe["ledger_id"]
                assert (be["asset"], be["amount"], be["fee"]) == ("BTC", t["last_qty"], 0)
                assert (qe["asset"], qe["amount"], qe["fee"]) == (
                    "USD",
                    -t["cost"].quantize(Decimal("0.0001")),
                    fee,
                )
                usd += qe["amount"] - qe["fee"]
                assert qe["balance"] == usd
                assert set(qe) == {
                    "ledger_id",
                    "ref_id",
                    "timestamp",
                    "type",
                    "subtype",
                    "category",
                    "asset",
                    "asset_class",
                    "wallet_type",
                    "wallet_id",
                    "amount",
                    "fee",
                    "balance",
                }
                assert (qe["type"], qe["category"], qe["wallet_type"], qe["wallet_id"]) == (
                    "trade",
                    "trade",
                    "spot",
                    "main",
                )
            last = trades[-1]
            assert last["order_status"] == "filled"
            assert last["cum_qty"] == Decimal("0.0002")
            assert set(last) == {
                "order_id",
                "symbol",
                "side",
                "order_type",
                "order_qty",
                "limit_price",
                "time_in_force",
                "post_only",
                "exec_type",
                "order_status",
                "cum_qty",
                "cum_cost",
                "avg_price",
                "timestamp",
                "exec_id",
                "trade_id",
                "last_qty",
                "last_price",
                "cost",
                "liquidity_ind",
                "fees",
                "fee_usd_equiv",
            }
            assert RFC3339_US.match(last["timestamp"])
            balances = await ok(sim, "Balance")
            assert Decimal(balances["USD"]) == usd
            assert balances["BTC"] == "10.0002000000"
        # number tokens on the wire: plain decimals, never an exponent
        async with await auth_ws(sim) as ws:
            tok2 = await token(sim)
            await ws.send(sub("executions", tok2, 1, snap_trades=True))
            await recv_until(ws, lambda m: m.get("method") == "subscribe")
            raw = await ws.recv()
            assert isinstance(raw, str)
            snap = loads(raw)
            assert [d["exec_type"] for d in snap["data"]][:1] == ["new"]
            assert any(d["exec_type"] == "trade" for d in snap["data"])
            tokens = NUMBER_TOKEN.findall(raw)
            assert tokens
            assert all(PLAIN_NUMBER.match(t) for t in tokens), tokens


def result_of_ack(m: Any, req_id: int) -> Any:
    assert set(m) == {"method", "result", "success", "time_in", "time_out", "req_id"}
    assert m["method"] == "subscribe"
    assert m["success"] is True
    assert m["req_id"] == req_id
    return m["result"]


async def test_no_snapshot_and_unsubscribe() -> None:
    async with KrakenSim(cfg()) as sim:
        tok = await token(sim)
        async with await auth_ws(sim) as ws:
            await ws.send(sub("executions", tok, 1, snap_orders=False))
            await ws.send(sub("balances", tok, 2, snapshot=False))
            await ws.send(order(tok, 3, order_qty=0.01, limit_price=1000.0))
            ack1, ack2, resp, new = await frames(ws, 4)
            assert ack1["result"]["snap_orders"] is False
            assert ack2["result"] == {"channel": "balances", "snapshot": False}
            assert resp["method"] == "add_order"
            assert (new["type"], new["sequence"]) == ("update", 1)
            await ws.send(sub("executions", tok, 4))
            m = await response(ws, "subscribe", 4)
            assert error_of(m, "subscribe", 4) == "Already subscribed"
            await ws.send(sub("executions", tok, 5, snap_trades="yes"))
            assert error_of(await response(ws, "subscribe", 5), "subscribe", 5) == (
                "Already subscribed"
            )
            await ws.send(req("unsubscribe", 6, channel="executions", token=tok))
            m = await response(ws, "unsubscribe", 6)
            assert m["success"] is True
            assert m["result"] == {"channel": "executions"}
            await ws.send(req("unsubscribe", 7, channel="executions", token=tok))
            m = await response(ws, "unsubscribe", 7)
            assert error_of(m, "unsubscribe", 7) == "Subscription Not Found"
            await ws.send(req("cancel_all", 8, token=tok))
            assert (await response(ws, "cancel_all", 8))["result"] == {"count": 1}
            await ws.send(sub("executions", tok, 9, snap_orders="yes"))
            m = await response(ws, "subscribe", 9)
            assert error_of(m, "subscribe", 9) == "EGeneral:Invalid arguments:snap_orders"
            # nothing for executions after the unsubscribe
            rest_frames = [m for m in await frames_for(ws, 0.3) if is_frame(m)]
            assert not [m for m in rest_frames if m.get("channel") == "executions"]


async def frames_for(ws: ClientConnection, seconds: float) -> list[Any]:
    out: list[Any] = []
    try:
        async with asyncio.timeout(seconds):
            while True:
                out.append(loads(await ws.recv()))
    except TimeoutError:
        return out


async def test_add_order_rejections_and_cancels() -> None:
    async with KrakenSim(cfg()) as sim:
        tok = await token(sim)
        async with await auth_ws(sim) as ws:
            await ws.send(sub("executions", tok, 1, snap_orders=False))
            await response(ws, "subscribe", 1)
            _, ask = best(sim, "BTC/USD")
            cases: list[tuple[dict[str, Any], str]] = [
                ({"order_qty": 0.01, "limit_price": 200000.0, "post_only": True},
                 "EOrder:Post only order"),
                ({"order_qty": 100, "limit_price": 60000.0}, "EOrder:Insufficient funds"),
                ({"side": "sell", "order_type": "market", "order_qty": 11},
                 "EOrder:Insufficient funds"),
                ({"order_qty": 0.01, "limit_price": 1000.05},
                 "EGeneral:Invalid arguments:limit_price"),
                ({"order_qty": "x", "limit_price": 1000.0}, "EGeneral:Invalid arguments:order_qty"),
                ({"order_qty": 0.01}, "EGeneral:Invalid arguments:limit_price"),
                ({"order_qty": 0.01, "limit_price": 1000.0, "symbol": "XBT/USD"},
                 "EQuery:Unknown asset pair"),
                ({"order_qty": 0.00001, "limit_price": 1000.0}, "EOrder:Order minimum not met"),
                ({"order_qty": 0.01, "limit_price": 1000.0, "post_only": "yes"},
                 "EGeneral:Invalid arguments:post_only"),
                ({"order_qty": 0.01, "limit_price": 1000.0, "cl_ord_id": "x" * 37},
                 "EGeneral:Invalid arguments:cl_ord_id"),
            ]  # fmt: skip
            for i, (params, error) in enumerate(cases, start=10):
                await ws.send(order(tok, i, **params))
                assert error_of(await response(ws, "add_order", i), "add_order", i) == error
            assert sim.final_orders() == {}
            assert sim.stats["orders_rejected"] == len(cases)
            # post-only below the ask rests; cancel by order_id list and by cl_ord_id
            await ws.send(
                order(tok, 30, order_qty=0.01, limit_price=float(ask - 500), post_only=True)
            )
            a = result_of(await response(ws, "add_order", 30), "add_order", 30)["order_id"]
            await ws.send(order(tok, 31, order_qty=0.01, limit_price=1000.0, cl_ord_id="c-31"))
            b = result_of(await response(ws, "add_order", 31), "add_order", 31)["order_id"]
            await ws.send(order(tok, 32, order_qty=0.01, limit_price=1001.0))
            await response(ws, "add_order", 32)
            await ws.send(req("cancel_order", 33, token=tok, order_id=[a, "OXXXXX-XXXXX-XXXXXX"]))
            assert result_of(await response(ws, "cancel_order", 33), "cancel_order", 33) == {
                "order_id": a
            }
            m = await response(ws, "cancel_order", 33)
            assert error_of(m, "cancel_order", 33) == "EOrder:Unknown order"
            await ws.send(req("cancel_order", 34, token=tok, cl_ord_id=["c-31"]))
            assert result_of(await response(ws, "cancel_order", 34), "cancel_order", 34) == {
                "order_id": b,
                "cl_ord_id": "c-31",
            }
            await ws.send(req("cancel_order", 35, token=tok, order_id=[]))
            m = await response(ws, "cancel_order", 35)
            assert error_of(m, "cancel_order", 35) == "EGeneral:Invalid arguments:order_id"
            await ws.send(req("cancel_all", 36, token=tok))
            assert result_of(await response(ws, "cancel_all", 36), "cancel_all", 36) == {"count": 1}
            canceled = await until_exec(ws, "canceled")
            assert canceled[-1]["data"][0]["reason"] == "User requested"
        finals = sim.final_orders()
        assert [f["status"] for f in finals.values()] == ["canceled"] * 3
        assert finals[a] == {
            "status": "canceled",
            "cum_qty": "0.00000000",
            "symbol": "BTC/USD",
            "side": "buy",
            "qty": "0.01000000",
            "limit_price": f"{ask - 500:.1f}",
        }
        assert sim.account().hold("USD") == 0


async def test_rest_order_queries() -> None:
    async with KrakenSim(cfg()) as sim:
        t0 = time.time()
        tok = await token(sim)
        async with await auth_ws(sim) as ws:
            await ws.send(order(tok, 1, order_qty=0.01, limit_price=1000.0, cl_ord_id="q1"))
            open_id = result_of(await response(ws, "add_order", 1), "add_order", 1)["order_id"]
            await ws.send(order(tok, 2, order_qty=0.0002, order_type="market", post_only=False))
            done_id = result_of(await response(ws, "add_order", 2), "add_order", 2)["order_id"]
            await ws.send(order(tok, 3, order_qty=0.01, limit_price=1000.0, post_only=True))
            gone_id = result_of(await response(ws, "add_order", 3), "add_order", 3)["order_id"]
            await ws.send(req("cancel_order", 4, token=tok, order_id=[gone_id]))
            await response(ws, "cancel_order", 4)
        opened = (await ok(sim, "OpenOrders"))["open"]
        assert list(opened) == [open_id]
        o = opened[open_id]
        assert o["status"] == "open"
        assert "closetm" not in o
        assert o["descr"]["pair"] == "BTC/USD"
        assert o["descr"]["type"] == "buy"
        assert o["descr"]["ordertype"] == "limit"
        assert o["descr"]["price"] == "1000.0"
        assert (o["vol"], o["vol_exec"], o["cl_ord_id"], o["reason"]) == (
            "0.01000000",
            "0.00000000",
            "q1",
            None,
        )
        assert isinstance(o["opentm"], Decimal)
        assert abs(float(o["opentm"]) - t0) < 60
        closed_ = await ok(sim, "ClosedOrders", start=f"{t0 - 10:.3f}")
        assert closed_["count"] == 2
        assert list(closed_["closed"]) == [gone_id, done_id]
        done = closed_["closed"][done_id]
        assert done["status"] == "closed"
        assert done["vol_exec"] == "0.00020000"
        assert done["descr"]["ordertype"] == "market"
        assert Decimal(done["cost"]) > 0
        assert Decimal(done["fee"]) > 0
        assert Decimal(done["price"]) > 0
        gone = closed_["closed"][gone_id]
        assert gone["status"] == "canceled"
        assert gone["reason"] == "User requested"
        assert gone["oflags"] == "post"
        later = await ok(sim, "ClosedOrders", start=str(time.time() + 3600))
        assert later == {"closed": {}, "count": 0}
        queried = await ok(sim, "QueryOrders", txid=f"{open_id},{done_id}")
        assert list(queried) == [open_id, done_id]
        _status, body = await rest(sim, "QueryOrders", txid="OXXXXX-XXXXX-XXXXXX")
        assert body == {"error": ["EOrder:Unknown order"]}
        bx = await ok(sim, "BalanceEx")
        assert Decimal(bx["USD"]["hold_trade"]) == Decimal("10.0260")  # 10 + 0.26 % taker
        assert bx["BTC"] == {"balance": "10.0002000000", "hold_trade": "0.0000000000"}


# -------------------------------------------------------------- status gate


async def test_status_gates_order_methods_and_rest() -> None:
    async with KrakenSim(cfg()) as sim:
        tok = await token(sim)
        async with await auth_ws(sim) as ws:
            await ws.send(order(tok, 1, order_qty=0.01, limit_price=1000.0))
            oid = result_of(await response(ws, "add_order", 1), "add_order", 1)["order_id"]

            async def status(system: str) -> None:
                await sim.inject(Fault.make("status", system=system))
                m, _ = await recv_until(ws, lambda m: m.get("channel") == "status")
                assert m["data"][0]["system"] == system

            limit = {"order_qty": 0.01, "limit_price": 1000.0}
            await status("cancel_only")
            await ws.send(order(tok, 2, **limit))
            assert error_of(await response(ws, "add_order", 2), "add_order", 2) == (
                "EService:Market in cancel_only mode"
            )
            await status("post_only")
            await ws.send(order(tok, 3, **limit))
            assert error_of(await response(ws, "add_order", 3), "add_order", 3) == (
                "EService:Market in post_only mode"
            )
            await ws.send(order(tok, 4, post_only=True, **limit))
            assert result_of(await response(ws, "add_order", 4), "add_order", 4)
            await status("limit_only")
            await ws.send(order(tok, 5, order_type="market", order_qty=0.01))
            assert error_of(await response(ws, "add_order", 5), "add_order", 5) == (
                "EService:Market in limit_only mode"
            )
            await ws.send(order(tok, 6, **limit))
            assert result_of(await response(ws, "add_order", 6), "add_order", 6)
            await status("maintenance")
            for i, msg in enumerate(
                [
                    order(tok, 0, **limit),
                    req("cancel_order", 0, token=tok, order_id=[oid]),
                    req("cancel_all", 0, token=tok),
                    req("cancel_all_orders_after", 0, token=tok, timeout=60),
                ],
                start=7,
            ):
                method = json.loads(msg)["method"]
                await ws.send(msg.replace('"req_id": 0', f'"req_id": {i}'))
                m = await response(ws, method, i)
                assert error_of(m, method, i) == "EService:Unavailable"
            assert (await rest(sim, "Balance"))[1] == {"error": ["EService:Unavailable"]}
            await status("cancel_only")
            await ws.send(req("cancel_order", 20, token=tok, order_id=[oid]))
            assert result_of(await response(ws, "cancel_order", 20), "cancel_order", 20)
            await status("online")
        assert len(sim.final_orders()) == 3


async def test_maintenance_fault_on_the_private_side() -> None:
    async with KrakenSim(cfg()) as sim:
        tok = await token(sim)
        async with await auth_ws(sim) as ws:
            await sim.inject(Fault.make("maintenance", duration_s=1.0, cancel_only_s=1.5))
            m, _ = await recv_until(ws, lambda m: m.get("channel") == "status")
            assert m["data"][0]["system"] == "maintenance"
            await ws.send(req("cancel_all", 1, token=tok))
            assert error_of(await response(ws, "cancel_all", 1), "cancel_all", 1) == (
                "EService:Unavailable"
            )
            exc = await closed(ws)
            assert exc.rcvd is not None
            assert exc.rcvd.code == 1001
        assert (await rest(sim, "OpenOrders"))[1] == {"error": ["EService:Unavailable"]}
        with pytest.raises(InvalidStatus) as info:
            await connect(sim.auth_url)
        assert info.value.response.status_code == 503
        await asyncio.sleep(1.0)
        async with await auth_ws(sim) as ws:
            fresh = await token(sim)
            await ws.send(order(fresh, 2, order_qty=0.01, limit_price=1000.0))
            assert error_of(await response(ws, "add_order", 2), "add_order", 2) == (
                "EService:Market in cancel_only mode"
            )
            await recv_until(ws, lambda m: m.get("channel") == "status", limit_s=3.0)
            await ws.send(order(fresh, 3, order_qty=0.01, limit_price=1000.0))
            assert result_of(await response(ws, "add_order", 3), "add_order", 3)


# --------------------------------------------------------- dead man's switch


async def test_dead_mans_switch_fires_without_a_client() -> None:
    clock = Clock()
    async with KrakenSim(cfg(clock=clock)) as sim:
        tok = await token(sim)
        async with await auth_ws(sim) as ws:
            for i in (1, 2):
                await ws.send(order(tok, i, order_qty=0.01, limit_price=1000.0 + i))
                await response(ws, "add_order", i)
            for bad in (86400, -1, "60", True):
                await ws.send(req("cancel_all_orders_after", 3, token=tok, timeout=bad))
                m = await response(ws, "cancel_all_orders_after", 3)
                assert error_of(m, "cancel_all_orders_after", 3) == (
                    "EGeneral:Invalid arguments:timeout"
                )
            await ws.send(req("cancel_all_orders_after", 4, token=tok, timeout=0))
            res = result_of(
                await response(ws, "cancel_all_orders_after", 4), "cancel_all_orders_after", 4
            )
            assert res["triggerTime"] == "0"
            assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", res["currentTime"])
            await ws.send(req("cancel_all_orders_after", 5, token=tok, timeout=60))
            res = result_of(
                await response(ws, "cancel_all_orders_after", 5), "cancel_all_orders_after", 5
            )
            assert set(res) == {"currentTime", "triggerTime"}
            cur = time.strptime(res["currentTime"], "%Y-%m-%dT%H:%M:%SZ")
            trig = time.strptime(res["triggerTime"], "%Y-%m-%dT%H:%M:%SZ")
            assert time.mktime(trig) - time.mktime(cur) == 60
        clock.jump(59)
        await asyncio.sleep(0.3)
        assert {f["status"] for f in sim.final_orders().values()} == {"new"}
        clock.jump(2)  # no client connected: the timer still runs
        await asyncio.sleep(0.3)
        assert {f["status"] for f in sim.final_orders().values()} == {"canceled"}
        fired = [r for r in sim.truth if r["k"] == "dms_fired"]
        assert len(fired) == 1
        assert fired[0]["canceled"] == 2
        assert fired[0]["account"] == KEY
        assert sim.stats["dms_fired"] == 1
        assert (await ok(sim, "OpenOrders")) == {"open": {}}
        closed_ = await ok(sim, "ClosedOrders", start="0")
        assert {o["reason"] for o in closed_["closed"].values()} == {"Dead man's switch"}
        # it stays off until armed again
        async with await auth_ws(sim) as ws:
            fresh = await token(sim)
            await ws.send(order(fresh, 6, order_qty=0.01, limit_price=1000.0))
            await response(ws, "add_order", 6)
        clock.jump(1000)
        await asyncio.sleep(0.3)
        assert [f["status"] for f in sim.final_orders().values()].count("new") == 1


async def test_dms_updates_reach_subscribers_and_wait_for_maintenance() -> None:
    clock = Clock()
    async with KrakenSim(cfg(clock=clock)) as sim:
        tok = await token(sim)
        async with await auth_ws(sim) as ws:
            await ws.send(sub("executions", tok, 1, snap_orders=False))
            await response(ws, "subscribe", 1)
            await ws.send(order(tok, 2, order_qty=0.01, limit_price=1000.0))
            await ws.send(req("cancel_all_orders_after", 3, token=tok, timeout=10))
            await response(ws, "cancel_all_orders_after", 3)
            await sim.inject(Fault.make("status", system="maintenance"))
            clock.jump(11)
            await asyncio.sleep(0.3)
            assert [r for r in sim.truth if r["k"] == "dms_fired"] == []  # engine is down
            await sim.inject(Fault.make("status", system="online"))
            seen = await until_exec(ws, "canceled")
            assert seen[-1]["data"][0]["reason"] == "Dead man's switch"
            assert seen[-1]["sequence"] == 2  # "new" was 1


# --------------------------------------------------------------- matching


async def test_resting_order_fills_as_maker_from_public_trades() -> None:
    async with KrakenSim(cfg(tick_rate_hz=50.0, symbols=("BTC/USD",))) as sim:
        tok = await token(sim)
        async with await auth_ws(sim) as ws:
            await ws.send(sub("executions", tok, 1, snap_orders=False))
            await ws.send(sub("balances", tok, 2, snapshot=False))
            for attempt in range(5):  # post-only: it can only rest (the market moves meanwhile)
                _, ask = best(sim, "BTC/USD")
                price = ask - Decimal("0.1")
                await ws.send(
                    order(
                        tok,
                        10 + attempt,
                        order_qty=0.0001,
                        limit_price=float(price),
                        post_only=True,
                    )
                )
                if (await response(ws, "add_order", 10 + attempt))["success"]:
                    break
            m, _ = await recv_until(
                ws,
                lambda m: m.get("channel") == "executions" and m["data"][0]["exec_type"] == "trade",
                limit_s=15.0,
            )
            t = m["data"][0]
            assert t["liquidity_ind"] == "m"
            assert t["last_price"] == price
            assert t["fees"][0]["qty"] == (t["cost"] * Decimal("0.0016")).quantize(
                Decimal("0.0001")
            )
            public = [
                r
                for r in sim.truth
                if r["k"] == "trade" and r["side"] == "sell" and Decimal(r["price"]) <= price
            ]
            assert public  # a public taker sell at or through the limit printed


# ------------------------------------------------------------------- faults


async def test_fault_token_expiry() -> None:
    async with KrakenSim(cfg()) as sim:
        tok = await token(sim)
        async with await auth_ws(sim) as ws, await auth_ws(sim, sim.url) as public:
            await ws.send(sub("executions", tok, 1, snap_orders=False))
            await response(ws, "subscribe", 1)
            await sim.inject(Fault.make("token_expiry", then_close=False))
            await ws.send(order(tok, 2, order_qty=0.01, limit_price=1000.0))
            seen = await until_exec(ws, "new")
            assert seen[-1]["sequence"] == 1
            async with await auth_ws(sim) as ws2:
                await ws2.send(sub("executions", tok, 3))
                m = await response(ws2, "subscribe", 3)
                assert error_of(m, "subscribe", 3) == "ESession:Invalid session"
                await ws2.send(sub("executions", await token(sim), 4))
                assert (await response(ws2, "subscribe", 4))["success"] is True
                await sim.inject(Fault("token_expiry"))
                for conn in (ws, ws2):
                    exc = await closed(conn)
                    assert exc.rcvd is not None
                    assert exc.rcvd.code == 1000
            await public.send(json.dumps({"method": "ping", "req_id": 9}))
            m, _ = await recv_until(public, lambda m: m.get("method") == "pong")
            assert m["req_id"] == 9


async def test_fault_private_sequence_jump() -> None:
    async with KrakenSim(cfg()) as sim:
        tok = await token(sim)
        async with await auth_ws(sim) as ws:
            await ws.send(sub("executions", tok, 1))
            await ws.send(sub("balances", tok, 2))
            await frames(ws, 4)  # acks + snapshots (sequence 1)
            await sim.inject(Fault("private_sequence_jump"))
            await ws.send(order(tok, 3, order_qty=0.01, limit_price=1000.0))
            await ws.send(order(tok, 4, order_qty=0.01, limit_price=1001.0))
            resp3, resp4, new = await frames(ws, 3)
            assert (resp3["req_id"], resp4["req_id"]) == (3, 4)
            assert new["sequence"] == 3  # sequence 2 (order 3's "new") was withheld
            assert new["data"][0]["order_id"] == resp4["result"]["order_id"]
            skips = [r for r in sim.truth if r["k"] == "private_skip"]
            assert [(r["channel"], r["sequence"]) for r in skips] == [("executions", 2)]
            # the state change happened: both orders are open
            assert len((await ok(sim, "OpenOrders"))["open"]) == 2
        # with nobody subscribed, the jump waits for the next subscription
        await asyncio.sleep(0.1)
        await sim.inject(Fault.make("private_sequence_jump", channel="balances"))
        async with await auth_ws(sim) as ws:
            fresh = await token(sim)
            await ws.send(sub("balances", fresh, 5))
            _ack, snap = await frames(ws, 2)
            assert snap["sequence"] == 1
            await ws.send(order(fresh, 6, order_type="market", order_qty=0.0001))
            _, _seen = await recv_until(ws, lambda m: m.get("method") == "add_order")
            ledger, _ = await recv_until(ws, lambda m: m.get("channel") == "balances")
            assert ledger["sequence"] == 3


async def test_fault_fill_while_disconnected() -> None:
    async with KrakenSim(cfg()) as sim:
        tok = await token(sim)
        async with await auth_ws(sim) as ws:
            await ws.send(sub("executions", tok, 1, snap_orders=False))
            await response(ws, "subscribe", 1)
            ids = []
            for i in range(3):
                await ws.send(order(tok, 10 + i, order_qty=0.01, limit_price=1000.0 + i))
                ids.append((await response(ws, "add_order", 10 + i))["result"]["order_id"])
            await sim.inject(Fault.make("fill_while_disconnected", fraction=0.5, cancel_some=1))
            exc = await closed(ws)
            assert exc.rcvd is None  # aborted, no close frame
        finals = sim.final_orders()
        assert finals[ids[0]]["status"] == "canceled"
        for oid in ids[1:]:
            assert finals[oid]["status"] == "partially_filled"
            assert finals[oid]["cum_qty"] == "0.00500000"
        assert sim.final_balances()["BTC"] == "10.0100000000"
        async with await auth_ws(sim) as ws:
            await ws.send(sub("executions", await token(sim), 2))
            _, snap = await frames(ws, 2)
            assert [(d["order_id"], d["order_status"], d["cum_qty"]) for d in snap["data"]] == [
                (oid, "partially_filled", Decimal("0.005")) for oid in ids[1:]
            ]
        fills = [r for r in sim.truth if r["k"] == "order" and r["exec_type"] == "trade"]
        assert [(r["liquidity"], r["last_price"]) for r in fills] == [
            ("m", "1001.0"),
            ("m", "1002.0"),
        ]


def test_private_fault_validation_and_chaos() -> None:
    assert set(KRAKEN_PRIVATE_FAULT_KINDS) == {
        "token_expiry",
        "private_sequence_jump",
        "fill_while_disconnected",
    }
    assert not set(KRAKEN_PRIVATE_FAULT_KINDS) & set(DEFAULT_CHAOS_KINDS)
    assert not set(KRAKEN_PRIVATE_FAULT_KINDS) & set(FAULT_KINDS)
    cases: list[tuple[str, dict[str, Any]]] = [
        ("private_sequence_jump", {"channel": "book"}),
        ("fill_while_disconnected", {"fraction": 1.5}),
        ("fill_while_disconnected", {"fraction": -0.1}),
        ("fill_while_disconnected", {"cancel_some": -1}),
        ("fill_while_disconnected", {"cancel_some": 0.5}),
        ("token_expiry", {"then_close": "yes"}),
        ("token_expiry", {"nope": 1}),
    ]
    for kind, params in cases:
        with pytest.raises(ValueError, match=r"must be|unknown params"):
            Fault(kind, 0.0, params)
    assert Fault("token_expiry").resolved() == {}  # shared with KuCoin: then_close optional
    assert Fault.make("token_expiry", then_close=False).resolved() == {"then_close": False}
    sc = Scenario.chaos(120.0, seed=3, min_faults=6, kinds=KRAKEN_PRIVATE_FAULT_KINDS)
    assert {f.kind for f in sc} == set(KRAKEN_PRIVATE_FAULT_KINDS)
    assert Scenario.from_json(sc.to_json()) == sc


async def test_foreign_fault_kind_is_refused() -> None:
    async with KrakenSim(cfg()) as sim:
        with pytest.raises(ValueError, match="not supported by the Kraken simulator"):
            await sim.inject(Fault("server_shutdown"))
        assert not [r for r in sim.truth if r["k"] == "fault"]


# ------------------------------------------------------------- ground truth


async def test_truth_records_and_finals() -> None:
    spec = AccountSpec("second", DEMO_KRAKEN_ACCOUNT.api_secret, {"USD": "50"})
    async with KrakenSim(cfg(accounts=(DEMO_KRAKEN_ACCOUNT, spec))) as sim:
        tok = await token(sim)
        async with await auth_ws(sim) as ws:
            await ws.send(order(tok, 1, order_qty=0.0002, order_type="market"))
            await response(ws, "add_order", 1)  # market orders fill before the response
            await ws.send(order(tok, 2, order_qty=0.01, limit_price=1000.0, cl_ord_id="t"))
            await response(ws, "add_order", 2)
        assert await ok(sim, "Balance", key="second") == {"USD": "50.0000"}
        assert sim.final_orders("second") == {}
        assert sim.final_balances("second")["USD"] == "50.0000"
        assert sim.account("second").available("USD") == Decimal("50")
        with pytest.raises(KeyError):
            sim.final_orders("nobody")
        await sim.quiesce()
        orders = [r for r in sim.truth if r["k"] == "order"]
        ledger = [r for r in sim.truth if r["k"] == "ledger"]
        trades = [r for r in orders if r["exec_type"] == "trade"]
        assert len(ledger) == 2 * len(trades) > 0
        assert {r["ref_id"] for r in ledger} == {r["exec_id"] for r in trades}
        assert orders[-1]["exec_type"] == "new"
        assert orders[-1]["cl_ord_id"] == "t"
        finals = {r["order_id"]: r for r in sim.truth if r["k"] == "final_order"}
        expect = sim.final_orders()
        assert {
            oid: {k: v for k, v in r.items() if k not in ("k", "account", "order_id")}
            for oid, r in finals.items()
        } == expect
        [fb] = [r for r in sim.truth if r["k"] == "final_balance"]
        assert fb == {"k": "final_balance", "account": KEY, "balances": sim.final_balances()}
        assert sim.stats["orders_added"] == 2
        assert sim.stats["private_fills"] == len(trades)


async def test_ids_and_fills_are_deterministic() -> None:
    async def run() -> tuple[list[str], list[int]]:
        async with KrakenSim(cfg(seed=5, tick_rate_hz=1.0)) as sim:
            tok = await token(sim)
            async with await auth_ws(sim) as ws:
                await ws.send(order(tok, 1, order_qty=0.01, limit_price=1000.0))
                await response(ws, "add_order", 1)
            await sim.inject(Fault("fill_while_disconnected"))
            recs = [r for r in sim.truth if r["k"] == "order"]
            return [r["order_id"] for r in recs], [r["trade_id"] for r in recs if "trade_id" in r]

    assert await run() == await run()
