"""Binance simulator private side over real loopback sockets: WS API user data
stream (protocols.md §3.9), signed REST (§3.10), errors (§3.11) and faults."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any

import aiohttp
import pytest
import websockets

from gapless.sim import Fault
from gapless.sim.binance import BinanceSim, BinanceSimConfig
from gapless.sim.binance_private import (
    DEMO_BINANCE_ACCOUNT,
    rest_payload,
    verify,
    ws_api_payload,
)
from gapless.venues.binance.signing import encode_query, sign_rest, signed_ws_params

KEY = DEMO_BINANCE_ACCOUNT.api_key
SECRET = DEMO_BINANCE_ACCOUNT.api_secret
TV_KEY = "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A"
TV_SECRET = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"


def test_verifier_matches_tv_b3_and_tv_b4() -> None:
    b3 = {
        "apiKey": TV_KEY,
        "symbol": "BTCUSDT",
        "side": "SELL",
        "type": "LIMIT",
        "timeInForce": "GTC",
        "quantity": "0.01000000",
        "price": "52000.00",
        "recvWindow": 100,
        "timestamp": 1645423376532,
        "signature": "aa1b5712c094bc4e57c05a1a5c1fd8d88dcd628338ea863fec7b88e59fe2db24",
    }
    assert verify(TV_SECRET, ws_api_payload(b3), b3["signature"])  # type: ignore[arg-type]
    b4 = {
        **b3,
        "symbol": "１２３４５６",
        "side": "BUY",
        "quantity": "1.00000000",
        "price": "0.10000000",
        "recvWindow": 5000,
    }
    sig4 = "b33892ae8e687c939f4468c6268ddd4c40ac1af18ad19a064864c47bae0752cd"
    assert verify(TV_SECRET, ws_api_payload(b4), sig4)
    assert verify(TV_SECRET, ws_api_payload(b4), sig4.upper())
    assert not verify(TV_SECRET, ws_api_payload({**b4, "price": "0.2"}), sig4)


def test_rest_payload_matches_tv_b1() -> None:
    q = (
        "symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1"
        "&recvWindow=5000&timestamp=1499827319559"
    )
    sig = "c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71"
    payload, got = rest_payload(f"{q}&signature={sig}")
    assert payload == q
    assert got == sig
    assert verify(TV_SECRET, payload, sig)


@asynccontextmanager
async def _sim(**kw: Any) -> AsyncIterator[BinanceSim]:
    cfg = BinanceSimConfig(seed=3, symbols=("BTCUSDT",), tick_rate_hz=20.0, **kw)
    async with BinanceSim(cfg) as sim:
        yield sim


def _ms() -> int:
    return time.time_ns() // 1_000_000


def _sub_frame(req_id: int, *, key: str = KEY, secret: str = SECRET, ts: int | None = None) -> str:
    params = signed_ws_params(secret, {"apiKey": key, "timestamp": ts or _ms()})
    return json.dumps(
        {"id": req_id, "method": "userDataStream.subscribe.signature", "params": params}
    )


async def _recv(ws: Any) -> dict[str, Any]:
    async with asyncio.timeout(5.0):
        obj: dict[str, Any] = json.loads(await ws.recv())
        return obj


async def _rest(
    sim: BinanceSim,
    method: str,
    path: str,
    params: list[tuple[str, str]],
    *,
    secret: str = SECRET,
    key: str = KEY,
) -> tuple[int, Any]:
    query = encode_query([*params, ("timestamp", _ms())])
    url = f"{sim.rest_url}{path}?{query}&signature={sign_rest(secret, query)}"
    async with (
        aiohttp.ClientSession() as s,
        s.request(method, url, headers={"X-MBX-APIKEY": key}) as r,
    ):
        return r.status, await r.json()


async def _best_bid(sim: BinanceSim) -> Decimal:
    async with (
        aiohttp.ClientSession() as s,
        s.get(f"{sim.rest_url}/api/v3/depth?symbol=BTCUSDT&limit=5") as r,
    ):
        body = await r.json()
    return Decimal(body["bids"][0][0])


async def _place_resting(sim: BinanceSim, cl: str = "c1") -> dict[str, Any]:
    price = (await _best_bid(sim) - 500).quantize(Decimal("0.01"))
    status, body = await _rest(
        sim,
        "POST",
        "/api/v3/order",
        [
            ("symbol", "BTCUSDT"),
            ("side", "BUY"),
            ("type", "LIMIT"),
            ("timeInForce", "GTC"),
            ("quantity", "0.01000"),
            ("price", str(price)),
            ("newClientOrderId", cl),
        ],
    )
    assert status == 200, body
    return dict(body)


async def test_subscribe_signature_accepted_and_refused() -> None:
    async with _sim() as sim, websockets.connect(sim.ws_api_url) as ws:
        await ws.send(_sub_frame(1))
        ok = await _recv(ws)
        assert ok["id"] == 1
        assert ok["status"] == 200
        assert ok["result"] == {"subscriptionId": 0}
        await ws.send(_sub_frame(2, secret="wrong"))
        bad = await _recv(ws)
        assert bad["status"] == 400
        assert bad["error"]["code"] == -1022
        await ws.send(_sub_frame(3, key="nobody"))
        unknown = await _recv(ws)
        assert unknown["status"] == 401
        assert unknown["error"]["code"] == -2015
        await ws.send(_sub_frame(4, ts=_ms() - 10_000))
        old = await _recv(ws)
        assert old["error"]["code"] == -1021
        await ws.send(_sub_frame(5, ts=_ms() + 5_000))
        ahead = await _recv(ws)
        assert ahead["error"]["code"] == -1021
        await ws.send(json.dumps({"id": 6, "method": "session.subscriptions"}))
        subs = await _recv(ws)
        assert subs["result"] == [{"subscriptionId": 0}]
        await ws.send(json.dumps({"id": 7, "method": "userDataStream.unsubscribe"}))
        term = await _recv(ws)
        assert term["subscriptionId"] == 0
        assert term["event"]["e"] == "eventStreamTerminated"
        done = await _recv(ws)
        assert done["id"] == 7
        assert done["status"] == 200


async def test_signed_rest_refusals() -> None:
    async with _sim() as sim:
        status, body = await _rest(sim, "GET", "/api/v3/account", [], secret="wrong")
        assert status == 400
        assert body["code"] == -1022
        status, body = await _rest(sim, "GET", "/api/v3/account", [], key="nobody")
        assert status == 401
        assert body["code"] == -2015
        status, body = await _rest(
            sim, "GET", "/api/v3/order", [("symbol", "BTCUSDT"), ("orderId", "1")]
        )
        assert status == 400
        assert body["code"] == -2013
        status, body = await _rest(sim, "GET", "/api/v3/account", [])
        assert status == 200
        assert {b["asset"]: b["free"] for b in body["balances"]}["USDT"] == "1000000.00000000"


async def test_order_placement_pushes_events_and_cancel() -> None:
    async with _sim() as sim, websockets.connect(sim.ws_api_url) as ws:
        await ws.send(_sub_frame(1))
        assert (await _recv(ws))["status"] == 200
        placed = await _place_resting(sim)
        assert placed["status"] == "NEW"
        oid = placed["orderId"]
        er = await _recv(ws)
        assert er["subscriptionId"] == 0
        assert er["event"]["e"] == "executionReport"
        assert er["event"]["x"] == "NEW"
        assert er["event"]["i"] == oid
        assert er["event"]["c"] == "c1"
        pos = await _recv(ws)
        assert pos["event"]["e"] == "outboundAccountPosition"
        usdt = next(b for b in pos["event"]["B"] if b["a"] == "USDT")
        assert Decimal(usdt["l"]) > 0
        status, opens = await _rest(sim, "GET", "/api/v3/openOrders", [])
        assert status == 200
        assert [o["orderId"] for o in opens] == [oid]
        status, gone = await _rest(
            sim, "DELETE", "/api/v3/order", [("symbol", "BTCUSDT"), ("orderId", str(oid))]
        )
        assert status == 200
        assert gone["status"] == "CANCELED"
        cancel = await _recv(ws)
        assert cancel["event"]["x"] == "CANCELED"
        assert cancel["event"]["X"] == "CANCELED"
        pos2 = await _recv(ws)
        usdt2 = next(b for b in pos2["event"]["B"] if b["a"] == "USDT")
        assert Decimal(usdt2["l"]) == 0
        assert sim.final_orders()[str(oid)]["status"] == "canceled"
        assert sim.final_balances()["USDT"] == "1000000.00000000"


async def test_market_order_fills_and_moves_balances() -> None:
    async with _sim() as sim:
        status, body = await _rest(
            sim,
            "POST",
            "/api/v3/order",
            [("symbol", "BTCUSDT"), ("side", "BUY"), ("type", "MARKET"), ("quantity", "0.01000")],
        )
        assert status == 200, body
        assert body["status"] == "FILLED", body
        assert Decimal(sim.final_balances()["BTC"]) == Decimal("10.01")
        assert Decimal(sim.final_balances()["USDT"]) < Decimal(1_000_000)


async def test_fault_user_stream_terminated() -> None:
    async with _sim() as sim, websockets.connect(sim.ws_api_url) as ws:
        await ws.send(_sub_frame(1))
        await _recv(ws)
        await sim.inject(Fault("user_stream_terminated"))
        term = await _recv(ws)
        assert term["event"]["e"] == "eventStreamTerminated"
        await _place_resting(sim)
        await ws.send(json.dumps({"id": 2, "method": "session.subscriptions"}))
        assert (await _recv(ws))["result"] == []  # nothing else was pushed


async def test_fault_private_fill_while_disconnected() -> None:
    async with _sim() as sim, websockets.connect(sim.ws_api_url) as ws:
        await ws.send(_sub_frame(1))
        await _recv(ws)
        placed = await _place_resting(sim)
        await _recv(ws)
        await _recv(ws)
        await sim.inject(Fault("private_fill_while_disconnected"))
        with pytest.raises(websockets.ConnectionClosed):
            await _recv(ws)
        final = sim.final_orders()[str(placed["orderId"])]
        assert final["status"] == "filled"
        assert final["cum_qty"] == "0.01000000"
        assert Decimal(sim.final_balances()["BTC"]) == Decimal("10.01")


async def test_fault_private_drop_withholds_next_event() -> None:
    async with _sim() as sim, websockets.connect(sim.ws_api_url) as ws:
        await ws.send(_sub_frame(1))
        await _recv(ws)
        await sim.inject(Fault("private_drop", params={"events": 1}))
        await _place_resting(sim)
        first = await _recv(ws)  # the executionReport NEW was withheld
        assert first["event"]["e"] == "outboundAccountPosition"
        assert any(t.get("withheld") for t in sim.truth if t.get("k") == "private_event")


async def _until(pred: Any, limit_s: float = 15.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit_s
    while not pred():
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


async def test_end_to_end_supervisor_heals_fills_while_disconnected() -> None:
    """The real adapter under the Supervisor against the sim: orders placed by REST,
    a private_fill_while_disconnected fault, and the view ends equal to the truth."""
    from gapless.events import Event, Gap, OrderUpdate, Reconciled
    from gapless.runtime.backoff import TokenBucket
    from gapless.runtime.rest import RestClient
    from gapless.runtime.supervisor import RuntimeOptions, Supervisor
    from gapless.secrets import Credentials, Secret
    from gapless.venues.base import StreamSpec
    from gapless.venues.binance.private import BinancePrivateAdapter, BinancePrivateOptions

    events: list[Event] = []

    async def emit(ev: Event) -> None:
        events.append(ev)

    async with _sim() as sim, RestClient() as rest:
        adapter = BinancePrivateAdapter(
            Credentials("binance", Secret(KEY), Secret(SECRET)),
            BinancePrivateOptions(url=sim.ws_api_url, rest_url=sim.rest_url),
        )
        adapter.add(StreamSpec("binance", "orders", "*"))
        adapter.add(StreamSpec("binance", "balances", "*"))
        loop = asyncio.get_running_loop()
        sup = Supervisor(
            "binance#1", adapter, RuntimeOptions(), emit, TokenBucket(5, 1, loop.time()), rest=rest
        )
        task = asyncio.create_task(sup.run())
        try:
            await _until(lambda: any(isinstance(e, Reconciled) for e in events))
            a = await _place_resting(sim, "r1")
            b = await _place_resting(sim, "r2")
            ids = {str(a["orderId"]), str(b["orderId"])}
            await _until(lambda: ids <= set(adapter.open_orders()))
            await sim.inject(Fault("private_fill_while_disconnected"))
            await _until(lambda: sum(isinstance(e, Reconciled) for e in events) >= 2)
            c = await _place_resting(sim, "r3")
            await _rest(
                sim,
                "DELETE",
                "/api/v3/order",
                [("symbol", "BTCUSDT"), ("orderId", str(c["orderId"]))],
            )
            final = sim.final_orders()

            def view() -> dict[str, tuple[str, Decimal | None]]:
                return {k: (o.status, o.cum_qty) for k, o in adapter.orders().items()}

            want = {k: (v["status"], Decimal(v["cum_qty"])) for k, v in final.items()}
            await _until(lambda: view() == want)
            await _until(
                lambda: (
                    adapter.balances() == {k: Decimal(v) for k, v in sim.final_balances().items()}
                )
            )
            assert {k: v[0] for k, v in want.items()} == {
                str(a["orderId"]): "filled",
                str(b["orderId"]): "filled",
                str(c["orderId"]): "canceled",
            }
            gaps = [e for e in events if isinstance(e, Gap)]
            assert {g.stream for g in gaps} == {"binance:orders:*", "binance:balances:*"}
            healed = [e for e in events if isinstance(e, OrderUpdate) and e.source == "reconciled"]
            assert {e.order_id for e in healed} == ids
            assert await sup.close_gracefully(5.0)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
