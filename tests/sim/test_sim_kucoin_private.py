"""KuCoin simulator, private side, over loopback (protocols.md §2.1-§2.3, §2.7)."""

from __future__ import annotations

import asyncio
import json
import time
from decimal import Decimal
from typing import Any

import aiohttp
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from gapless.sim import Fault
from gapless.sim.kucoin import KUCOIN_FAULT_KINDS, KucoinSim, KucoinSimConfig
from gapless.sim.kucoin_private import DEMO_KUCOIN_ACCOUNT, sign, sign_passphrase

ACCT = DEMO_KUCOIN_ACCOUNT
SECRET = ACCT.api_secret
PHRASE = ACCT.passphrase or ""


def kcfg(**kw: Any) -> KucoinSimConfig:
    base: dict[str, Any] = {"seed": 11, "symbols": ("BTC-USDT",), "ports": (0,)}
    base.update(kw)
    return KucoinSimConfig(**base)


def headers(
    method: str,
    path: str,
    body: str = "",
    *,
    key: str = ACCT.api_key,
    secret: str = SECRET,
    phrase: str = PHRASE,
    ts_ms: int | None = None,
    sign_secret: str | None = None,
) -> dict[str, str]:
    ts = str(ts_ms if ts_ms is not None else time.time_ns() // 1_000_000)
    return {
        "KC-API-KEY": key,
        "KC-API-SIGN": sign(sign_secret or secret, ts, method, path, body),
        "KC-API-TIMESTAMP": ts,
        "KC-API-PASSPHRASE": sign_passphrase(secret, phrase),
        "KC-API-KEY-VERSION": "2",
        "Content-Type": "application/json",
    }


async def call(
    base: str, method: str, path: str, payload: dict[str, Any] | None = None, **kw: Any
) -> tuple[int, Any]:
    body = json.dumps(payload) if payload is not None else ""
    async with (
        aiohttp.ClientSession() as s,
        s.request(
            method, base + path, headers=headers(method, path, body, **kw), data=body or None
        ) as r,
    ):
        return r.status, await r.json()


async def place(sim: KucoinSim, **order: Any) -> str:
    status, body = await call(sim.orders_url, "POST", "/api/v1/orders", order)
    assert status == 200, body
    assert body["code"] == "200000", body
    oid: str = body["data"]["orderId"]
    return oid


def best(sim: KucoinSim) -> tuple[Decimal, Decimal]:
    bids, asks = sim.private._book("BTC-USDT", "bids"), sim.private._book("BTC-USDT", "asks")
    return bids[0][0], asks[0][0]


async def private_ws(sim: KucoinSim, *, private: bool = True) -> ClientConnection:
    path = "/api/v1/bullet-private" if private else "/api/v1/bullet-public"
    if private:
        _, body = await call(sim.rest_url, "POST", path)
    else:
        async with aiohttp.ClientSession() as s, s.post(sim.rest_url + path) as r:
            body = await r.json()
    token = body["data"]["token"]
    endpoint = body["data"]["instanceServers"][0]["endpoint"]
    ws = await connect(f"{endpoint}?token={token}&connectId=p1")
    assert json.loads(await ws.recv()) == {"id": "p1", "type": "welcome"}
    return ws


async def subscribe(ws: ClientConnection, topic: str, rid: str) -> Any:
    await ws.send(
        json.dumps(
            {
                "id": rid,
                "type": "subscribe",
                "topic": topic,
                "privateChannel": True,
                "response": True,
            }
        )
    )
    return await next_frame(ws, lambda m: m.get("id") == rid)


async def next_frame(ws: ClientConnection, pred: Any, limit_s: float = 3.0) -> Any:
    async with asyncio.timeout(limit_s):
        while True:
            m = json.loads(await ws.recv())
            if pred(m):
                return m


async def private_frames(ws: ClientConnection, seconds: float) -> list[Any]:
    out = []
    try:
        async with asyncio.timeout(seconds):
            while True:
                m = json.loads(await ws.recv())
                if m.get("channelType") == "private":
                    out.append(m)
    except TimeoutError:
        pass
    return out


def test_signature_matches_tv_c1() -> None:
    """protocols.md §2.2 / §4 TV-C1, and the computed v2 passphrase value."""
    secret = "f03a5284-5c39-4aaa-9b20-dea10bdcf8e3"
    got = sign(secret, "1547015186532", "POST", "/api/v1/deposit-addresses", '{"currency":"BTC"}')
    assert got == "7QP/oM0ykidMdrfNEUmng8eZjg/ZvPafjIqmxiVfYu4="
    assert sign_passphrase(secret, "Ab12345678)(*&^%$#@") == (
        "F2p2bNS1bBehHvC/Z4YkB7l1Wd0Pq2iV/oLHM/DyE+I="
    )


def test_private_faults_are_registered() -> None:
    assert "private_fill_while_disconnected" in KUCOIN_FAULT_KINDS
    assert "private_drop" in KUCOIN_FAULT_KINDS


async def test_signing_accepted_and_refused() -> None:
    async with KucoinSim(kcfg()) as sim:
        path = "/api/v1/accounts?type=trade"
        status, body = await call(sim.rest_url, "GET", path)
        assert status == 200
        assert body["code"] == "200000"
        usdt = next(a for a in body["data"] if a["currency"] == "USDT")
        assert usdt == {**usdt, "balance": "1000000", "available": "1000000", "holds": "0"}
        # the same on the body-reading listener
        assert (await call(sim.orders_url, "GET", path))[1]["code"] == "200000"
        cases: dict[str, dict[str, Any]] = {
            "400005": {"sign_secret": "not-the-secret"},
            "400003": {"key": "unknown-key"},
            "400004": {"phrase": "wrong passphrase"},
            "400002": {"ts_ms": time.time_ns() // 1_000_000 - 6_000},
        }
        for code, kw in cases.items():
            status, body = await call(sim.rest_url, "GET", path, **kw)
            assert (status, body["code"]) == (401, code), (code, body)
        # a signature over another path (the query is signed) is refused
        async with (
            aiohttp.ClientSession() as s,
            s.get(sim.rest_url + path, headers=headers("GET", "/api/v1/accounts")) as r,
        ):
            assert (await r.json())["code"] == "400005"
        # missing headers
        async with aiohttp.ClientSession() as s, s.get(sim.rest_url + path) as r:
            assert r.status == 401
            assert (await r.json())["code"] == "400001"


async def test_private_subscribe_needs_private_token() -> None:
    async with KucoinSim(kcfg()) as sim:
        ws = await private_ws(sim)
        assert await subscribe(ws, "/spotMarket/tradeOrdersV2", "1") == {"id": "1", "type": "ack"}
        assert await subscribe(ws, "/account/balance", "2") == {"id": "2", "type": "ack"}
        await ws.close()
        pub = await private_ws(sim, private=False)
        err = await subscribe(pub, "/spotMarket/tradeOrdersV2", "9")
        assert err["type"] == "error"
        assert err["code"] == 403
        assert err["id"] == "9"
        await pub.close()


async def test_orders_push_order_change_and_balance() -> None:
    async with KucoinSim(kcfg()) as sim:
        ws = await private_ws(sim)
        await subscribe(ws, "/spotMarket/tradeOrdersV2", "1")
        await subscribe(ws, "/account/balance", "2")
        bid, _ask = best(sim)
        low = (bid * Decimal("0.8")).quantize(Decimal("0.1"))
        oid = await place(
            sim, clientOid="c-1", side="buy", symbol="BTC-USDT", type="limit", price=str(low),
            size="0.01",
        )  # fmt: skip
        frames = await private_frames(ws, 0.5)
        changes = [f["data"] for f in frames if f["subject"] == "orderChange"]
        assert [(c["type"], c["status"]) for c in changes] == [
            ("received", "new"),
            ("open", "open"),
        ]
        assert all(f["topic"] == "/spotMarket/tradeOrdersV2" for f in frames[:2])
        assert changes[0]["orderId"] == oid
        assert changes[0]["clientOid"] == "c-1"
        bal = [f["data"] for f in frames if f["subject"] == "account.balance"]
        assert [b["currency"] for b in bal] == ["USDT"]
        assert Decimal(bal[0]["hold"]) > 0
        assert bal[0]["relationEvent"] == "trade.hold"
        assert Decimal(bal[0]["available"]) + Decimal(bal[0]["hold"]) == Decimal(bal[0]["total"])
        assert all(f["userId"] and f["type"] == "message" for f in frames)
        # REST agrees
        _, active = await call(sim.rest_url, "GET", "/api/v1/orders?status=active")
        assert [o["id"] for o in active["data"]["items"]] == [oid]
        assert active["data"]["items"][0]["isActive"] is True
        # cancel: canceled/done and the hold released
        _, body = await call(sim.orders_url, "DELETE", f"/api/v1/orders/{oid}")
        assert body["data"] == {"cancelledOrderIds": [oid]}
        frames = await private_frames(ws, 0.5)
        kinds = [(f["data"].get("type"), f["data"].get("status")) for f in frames]
        assert ("canceled", "done") in kinds
        usdt = [f["data"] for f in frames if f["subject"] == "account.balance"]
        assert usdt[-1]["hold"] == "0"
        _, det = await call(sim.rest_url, "GET", f"/api/v1/orders/{oid}")
        assert det["data"]["isActive"] is False
        assert det["data"]["cancelExist"] is True
        # a marketable order fills at once as taker
        oid2 = await place(sim, side="buy", symbol="BTC-USDT", type="market", size="0.001")
        frames = await private_frames(ws, 0.5)
        types = [f["data"]["type"] for f in frames if f["subject"] == "orderChange"]
        assert types[0] == "received"
        assert "match" in types
        assert types[-1] == "filled"
        match = next(f["data"] for f in frames if f["data"].get("type") == "match")
        assert match["liquidity"] == "taker"
        assert Decimal(match["matchPrice"]) > low
        truth = sim.final_orders()
        assert truth[oid]["status"] == "canceled"
        assert truth[oid2]["status"] == "filled"
        assert truth[oid2]["cum_qty"] == "0.001"
        assert Decimal(sim.final_balances()["BTC"]) == Decimal("10.001")
        # bad order → KuCoin error code, nothing changes
        _, body = await call(
            sim.orders_url, "POST", "/api/v1/orders",
            {"side": "buy", "symbol": "BTC-USDT", "type": "limit", "price": str(low),
             "size": "1000"},
        )  # fmt: skip
        assert body["code"] == "200004"
        await ws.close()


async def test_private_drop_withholds_messages() -> None:
    async with KucoinSim(kcfg()) as sim:
        ws = await private_ws(sim)
        await subscribe(ws, "/spotMarket/tradeOrdersV2", "1")
        await sim.inject(Fault("private_drop", params={"count": 2}))
        bid, _ = best(sim)
        low = (bid * Decimal("0.8")).quantize(Decimal("0.1"))
        await place(sim, side="buy", symbol="BTC-USDT", type="limit", price=str(low), size="0.01")
        await place(sim, side="buy", symbol="BTC-USDT", type="limit", price=str(low), size="0.02")
        frames = await private_frames(ws, 0.5)
        # four orderChange messages were published; the first two never arrive
        assert [(f["data"]["type"], f["data"]["size"]) for f in frames] == [
            ("received", "0.02"),
            ("open", "0.02"),
        ]
        assert sim.private.withheld == 2
        await ws.close()


async def test_fill_while_disconnected_aborts_and_fills() -> None:
    async with KucoinSim(kcfg()) as sim:
        ws = await private_ws(sim)
        await subscribe(ws, "/spotMarket/tradeOrdersV2", "1")
        bid, _ = best(sim)
        low = (bid * Decimal("0.8")).quantize(Decimal("0.1"))
        oid = await place(
            sim, side="buy", symbol="BTC-USDT", type="limit", price=str(low), size="0.01"
        )
        await private_frames(ws, 0.3)
        await sim.inject(Fault("private_fill_while_disconnected"))
        try:
            async with asyncio.timeout(2.0):
                while True:
                    await ws.recv()
        except ConnectionClosed:
            pass
        assert sim.final_orders()[oid]["status"] == "filled"
        _, det = await call(sim.rest_url, "GET", f"/api/v1/orders/{oid}")
        assert det["data"]["dealSize"] == "0.01"
        assert det["data"]["isActive"] is False
        assert Decimal(sim.final_balances()["BTC"]) == Decimal("10.01")


async def wait_for(cond: Any, limit_s: float = 10.0) -> None:
    """Poll ``cond`` (the adapter's state changes inside the supervisor's task)."""
    async with asyncio.timeout(limit_s):
        while not cond():  # noqa: ASYNC110
            await asyncio.sleep(0.02)


async def test_client_adapter_under_supervisor_reconciles_fills_while_down() -> None:
    """End to end: the real KucoinPrivateAdapter under the runtime Supervisor, over
    loopback, against the simulator; orders placed by REST; a fill while the private
    connection is down is found by the reconnect's REST reconciliation."""
    from gapless.events import Event, Gap, GapCause, OrderUpdate, Reconciled
    from gapless.runtime.backoff import TokenBucket
    from gapless.runtime.rest import RestClient
    from gapless.runtime.supervisor import RuntimeOptions, Supervisor
    from gapless.secrets import Credentials, Secret
    from gapless.venues.base import StreamSpec
    from gapless.venues.kucoin.private import KucoinPrivateAdapter, KucoinPrivateOptions

    async with KucoinSim(kcfg()) as sim:
        creds = Credentials("kucoin", Secret(ACCT.api_key), Secret(SECRET), Secret(PHRASE))
        adapter = KucoinPrivateAdapter(creds, KucoinPrivateOptions(rest_url=sim.rest_url))
        adapter.add(StreamSpec("kucoin", "orders", "*"))
        adapter.add(StreamSpec("kucoin", "balances", "*"))
        events: list[Event] = []

        async def emit(ev: Event) -> None:
            events.append(ev)

        def reconciled() -> list[Reconciled]:
            return [e for e in events if isinstance(e, Reconciled)]

        loop = asyncio.get_running_loop()
        async with RestClient() as rest:
            sup = Supervisor(
                "kucoin-private",
                adapter,
                RuntimeOptions(),
                emit,
                TokenBucket(30, 0.5, loop.time()),
                rest=rest,
            )
            task = asyncio.create_task(sup.run())
            try:
                await wait_for(lambda: len(reconciled()) == 1)
                assert reconciled()[0].reason == "initial snapshot"
                assert Decimal(adapter.balances()["USDT"]) == Decimal("1000000")
                bid, _ = best(sim)
                low = (bid * Decimal("0.8")).quantize(Decimal("0.1"))
                lower = (bid * Decimal("0.7")).quantize(Decimal("0.1"))
                a = await place(
                    sim, side="buy", symbol="BTC-USDT", type="limit", price=str(low), size="0.01"
                )
                b = await place(
                    sim, side="buy", symbol="BTC-USDT", type="limit", price=str(lower),
                    size="0.02", clientOid="mine-b",
                )  # fmt: skip
                c = await place(
                    sim, side="buy", symbol="BTC-USDT", type="limit", price=str(lower), size="0.03"
                )
                await call(sim.orders_url, "DELETE", f"/api/v1/orders/{c}")
                await wait_for(lambda: set(adapter.open_orders()) == {a, b})
                assert adapter.orders()[c].status == "canceled"
                assert adapter.orders()[b].cl_ord_id == "mine-b"
                live = [e for e in events if isinstance(e, OrderUpdate) and e.source == "update"]
                assert {e.order_id for e in live} == {a, b, c}
                before = len(events)
                await sim.inject(Fault("private_fill_while_disconnected"))
                await wait_for(lambda: len(reconciled()) == 2)
                after = events[before:]
                gaps = [e for e in after if isinstance(e, Gap)]
                assert {g.stream for g in gaps} == {"kucoin:orders:*", "kucoin:balances:*"}
                assert all(g.cause is GapCause.DISCONNECT for g in gaps)
                assert all(
                    g.start_ts_ns is not None
                    and g.end_ts_ns is not None
                    and g.start_ts_ns < g.end_ts_ns
                    for g in gaps
                )
                fixed = [e for e in after if isinstance(e, OrderUpdate)]
                assert {e.order_id for e in fixed} == {a, b}
                assert all(e.source == "reconciled" and e.status == "filled" for e in fixed)
                rec = reconciled()[1]
                assert rec.orders_changed == 2
                assert rec.complete
                assert rec.open_orders == 0
                assert rec.balances_changed >= 2  # USDT and BTC
                # the adapter's view equals the simulator's ground truth
                truth = sim.final_orders()
                view = adapter.orders()
                assert set(view) == set(truth)
                for oid, t in truth.items():
                    assert view[oid].status == t["status"], oid
                    assert view[oid].cum_qty == Decimal(t["cum_qty"]), oid
                assert adapter.balances() == {
                    k: Decimal(v) for k, v in sim.final_balances().items()
                }
                assert adapter.phase.value == "live"
                assert adapter.stats.bullets >= 2
                tokens = adapter.redactions()
                assert tokens
                assert all(t not in repr(events) for t in tokens)
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
