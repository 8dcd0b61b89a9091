"""KuCoin simulator REST, read with a raw HTTP/1.1 client (protocols.md §2.1, §2.4, §2.5, §2.8)."""

from __future__ import annotations

import asyncio
import json
import re

import pytest
from simkit import closed
from test_sim_kucoin_kit import bullet, http, kcfg, recv_json
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from gapless.sim import Fault
from gapless.sim.kucoin import KucoinSim

NUM = re.compile(r"^(0|[1-9]\d*)(\.\d*[1-9])?$")
"""KuCoin number text: no forced trailing zeros, no exponent."""


async def test_bullet_shape_headers_and_fresh_tokens() -> None:
    async with KucoinSim(kcfg()) as sim:
        r = await http(sim.ports[0], "POST", "/api/v1/bullet-public")
        assert r.status == 200
        assert r.headers["content-type"] == "application/json"
        assert int(r.headers["content-length"]) == len(r.body)
        body = r.json()
        assert body["code"] == "200000"
        data = body["data"]
        assert set(data) == {"token", "instanceServers"}
        assert isinstance(data["token"], str)
        assert len(data["token"]) > 100
        assert [s["endpoint"] for s in data["instanceServers"]] == sim.ws_urls
        assert len(sim.ws_urls) == 2
        assert len(set(sim.ports)) == 2
        assert sim.rest_url == f"http://127.0.0.1:{sim.ports[0]}"
        for s in data["instanceServers"]:
            assert s == {
                "endpoint": s["endpoint"],
                "encrypt": False,
                "protocol": "websocket",
                "pingInterval": 18000,
                "pingTimeout": 10000,
            }
        # REST is served on every instance port; every call issues a fresh token
        other = await http(sim.ports[1], "POST", "/api/v1/bullet-public", post_length=False)
        again = await bullet(sim)
        tokens = {data["token"], other.json()["data"]["token"], again["token"]}
        assert len(tokens) == 3
        recs = [r for r in sim.truth if r["k"] == "token"]
        assert [r["issued"] for r in recs] == [1, 2, 3]
        assert all(r["venue"] == "kucoin" and r["ttl_s"] == 86400.0 for r in recs)
        dumped = json.dumps(sim.truth) + json.dumps(sim.stats)
        assert not any(t in dumped for t in tokens)  # tokens never reach truth or stats
        assert sim.stats["tokens_issued"] == 3


async def test_instance_servers_are_configurable() -> None:
    config = kcfg(ports=(0,), instance_servers=("ws://10.0.0.1:9/", "wss://example.test/"))
    async with KucoinSim(config) as sim:
        data = await bullet(sim)
        assert len(sim.ws_urls) == 1
        servers = data["instanceServers"]
        assert [(s["endpoint"], s["encrypt"]) for s in servers] == [
            ("ws://10.0.0.1:9/", False),
            ("wss://example.test/", True),
        ]


async def test_timestamp_status_symbols() -> None:
    async with KucoinSim(kcfg(symbols=("BTC-USDT", "ETH-USDT", "KCS-USDT"))) as sim:
        port = sim.ports[0]
        ts = (await http(port, "GET", "/api/v1/timestamp")).json()
        assert ts["code"] == "200000"
        assert isinstance(ts["data"], int)
        assert ts["data"] > 1_600_000_000_000
        st = (await http(port, "GET", "/api/v1/status")).json()
        assert st == {"code": "200000", "data": {"status": "open", "msg": ""}}
        syms = (await http(port, "GET", "/api/v2/symbols")).json()["data"]
        by = {s["symbol"]: s for s in syms}
        assert set(by) == {"BTC-USDT", "ETH-USDT", "KCS-USDT"}
        assert (by["BTC-USDT"]["priceIncrement"], by["BTC-USDT"]["baseIncrement"]) == (
            "0.1",
            "0.00000001",
        )
        assert (by["ETH-USDT"]["priceIncrement"], by["ETH-USDT"]["baseIncrement"]) == (
            "0.01",
            "0.0000001",
        )
        assert (by["KCS-USDT"]["priceIncrement"], by["KCS-USDT"]["baseIncrement"]) == (
            "0.001",
            "0.0001",
        )
        assert by["KCS-USDT"]["baseCurrency"] == "KCS"
        assert by["KCS-USDT"]["quoteCurrency"] == "USDT"
        nf = await http(port, "GET", "/api/v1/nothing")
        assert nf.status == 404
        assert nf.json()["code"] == "404000"
        wrong_method = await http(port, "GET", "/api/v1/bullet-public")
        assert wrong_method.status == 404


async def test_orderbook_snapshots() -> None:
    async with KucoinSim(kcfg()) as sim:
        port = sim.ports[0]
        await asyncio.sleep(0.2)
        for depth in (20, 100):
            r = await http(port, "GET", f"/api/v1/market/orderbook/level2_{depth}?symbol=BTC-USDT")
            assert r.status == 200
            assert r.headers["content-type"] == "application/json"
            data = r.json()["data"]
            assert set(data) == {"time", "sequence", "bids", "asks"}
            assert isinstance(data["time"], int)
            assert isinstance(data["sequence"], str)
            assert data["sequence"].isdigit()
            assert len(data["bids"]) == depth
            assert len(data["asks"]) == depth
            for p, s in data["bids"] + data["asks"]:
                assert NUM.match(p), p
                assert NUM.match(s), s
            bids = [float(p) for p, _ in data["bids"]]
            asks = [float(p) for p, _ in data["asks"]]
            assert bids == sorted(bids, reverse=True)
            assert asks == sorted(asks)
            assert bids[0] < asks[0]
        full = await http(port, "GET", "/api/v3/market/orderbook/level2?symbol=ETH-USDT")
        fdata = full.json()["data"]
        assert len(fdata["bids"]) > 1000
        assert len(fdata["asks"]) > 1000
        bad = await http(port, "GET", "/api/v1/market/orderbook/level2_20?symbol=DOGE-USDT")
        assert bad.status == 400
        assert bad.json()["code"] == "400100"
        snaps = [r for r in sim.truth if r["k"] == "snapshot"]
        assert [(r["symbol"], r["depth"], r["stale"]) for r in snaps] == [
            ("BTC-USDT", 20, False),
            ("BTC-USDT", 100, False),
            ("ETH-USDT", None, False),
        ]
        assert snaps[2]["sequence"] == int(fdata["sequence"])
        assert sim.stats["snapshots_served"] == 3


@pytest.mark.looptime
async def test_rest_quota_429_with_headers_then_window_resets() -> None:
    loop = asyncio.get_running_loop()
    async with KucoinSim(kcfg(tick_rate_hz=2.0, rest_quota=25)) as sim:
        port = sim.ports[0]
        t0 = loop.time()
        first = await http(port, "POST", "/api/v1/bullet-public")  # weight 10
        assert first.headers["gw-ratelimit-limit"] == "25"
        assert first.headers["gw-ratelimit-remaining"] == "15"
        assert 29_000 <= int(first.headers["gw-ratelimit-reset"]) <= 30_000
        snap = await http(port, "GET", "/api/v1/market/orderbook/level2_20?symbol=BTC-USDT")
        assert snap.headers["gw-ratelimit-remaining"] == "13"  # weight 2
        await bullet(sim)  # 22 used
        await asyncio.sleep(10.0)
        r = await http(port, "POST", "/api/v1/bullet-public")
        assert r.status == 429
        assert r.json()["code"] == "429000"
        assert r.headers["content-type"] == "application/json"
        assert r.headers["gw-ratelimit-limit"] == "25"
        assert r.headers["gw-ratelimit-remaining"] == "3"
        reset_ms = int(r.headers["gw-ratelimit-reset"])
        assert 19_000 <= reset_ms <= 20_000
        ok = await http(port, "GET", "/api/v1/market/orderbook/level2_20?symbol=BTC-USDT")
        assert ok.status == 200  # a lighter call still fits
        assert ok.headers["gw-ratelimit-remaining"] == "1"
        await asyncio.sleep(t0 + 30.0 - loop.time() + 0.01)
        again = await http(port, "POST", "/api/v1/bullet-public")
        assert again.status == 200
        assert again.headers["gw-ratelimit-remaining"] == "15"
        assert sim.stats["rest_429"] == 1
        assert [v["rule"] for v in sim.truth if v["k"] == "violation"] == ["rest_rate"]


async def test_rest_429_fault_is_overload_without_headers() -> None:
    async with KucoinSim(kcfg()) as sim:
        port = sim.ports[0]
        await sim.inject(Fault.make("rest_429", duration_s=0.3))
        r = await http(port, "POST", "/api/v1/bullet-public")
        assert r.status == 429
        assert r.json()["code"] == "429000"
        assert not [h for h in r.headers if h.startswith("gw-ratelimit")]
        await asyncio.sleep(0.35)
        assert (await http(port, "POST", "/api/v1/bullet-public")).status == 200
        assert sim.stats["rest_429"] == 1
        assert sim.stats["violations"] == 0


async def test_maintenance_and_status_faults() -> None:
    async with KucoinSim(kcfg(maintenance_close_delay_s=0.05)) as sim:
        port = sim.ports[0]

        async def status() -> str:
            s: str = (await http(port, "GET", "/api/v1/status")).json()["data"]["status"]
            return s

        data = await bullet(sim)
        url = sim.ws_urls[0] + f"?token={data['token']}&connectId=m"
        async with connect(url, ping_interval=None) as ws:
            assert (await recv_json(ws))["type"] == "welcome"
            await sim.inject(Fault.make("maintenance", duration_s=0.4, cancel_only_s=0.2))
            assert await status() == "close"
            exc = await closed(ws)
            assert exc.rcvd is not None
            assert exc.rcvd.code == 1000
        with pytest.raises(InvalidStatus) as refused:
            async with connect(url, ping_interval=None):
                pass
        assert refused.value.response.status_code == 503
        await asyncio.sleep(0.45)
        assert await status() == "cancelonly"
        await asyncio.sleep(0.25)
        assert await status() == "open"
        await sim.inject(Fault.make("status", system="cancel_only"))
        assert await status() == "cancelonly"
        await sim.inject(Fault.make("status", system="online"))
        assert await status() == "open"
        refusals = [r for r in sim.truth if r["k"] == "refused"]
        assert [(r["status"], r["reason"], r["how"]) for r in refusals] == [
            (503, "maintenance", "http")
        ]
        closes = [r for r in sim.truth if r["k"] == "conn_close"]
        assert [(r["how"], r["cause"]) for r in closes] == [("close:1000", "maintenance")]
