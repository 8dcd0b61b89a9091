"""Binance REST on the simulator's port (protocols.md §3.7, §3.11), read with raw asyncio HTTP."""

from __future__ import annotations

import asyncio
import re

import pytest
from test_sim_binance_kit import WIRE_NUM, cfg, http_get
from websockets.asyncio.client import connect

from gapless.sim.binance import BinanceSim
from gapless.sim.binance_rest import RestLimiter, depth_weight

NUM = re.compile(WIRE_NUM)


async def test_plain_http_on_the_websocket_port() -> None:
    async with BinanceSim(cfg()) as sim:
        assert sim.rest_url == f"http://127.0.0.1:{sim.port}"
        assert sim.ws_url == f"ws://127.0.0.1:{sim.port}"
        r = await http_get(sim, "/api/v3/ping")
        assert (r.status, r.reason) == (200, "OK")
        assert r.headers["content-type"] == "application/json"
        assert r.headers["content-length"] == str(len(r.body)) == "2"
        assert r.body == b"{}"
        assert r.headers["x-mbx-used-weight-1m"] == "1"
        assert r.eof_after_body  # one request per connection, then the server closes
        r = await http_get(sim, "/api/v3/time")
        assert isinstance(r.json()["serverTime"], int)
        r = await http_get(sim, "/api/v3/nothing")
        assert r.status == 404
        assert r.headers["content-type"] == "application/json"
        async with connect(sim.ws_url + "/ws/btcusdt@trade") as ws:  # same port, WebSocket
            assert "trade" in str(await ws.recv())


async def test_exchange_info_lists_tick_and_step_sizes() -> None:
    async with BinanceSim(cfg(symbols=("BTCUSDT", "ETHUSDT", "BNBUSDT", "DOGEUSDT"))) as sim:
        info = (await http_get(sim, "/api/v3/exchangeInfo")).json()
        assert info["rateLimits"][0] == {
            "rateLimitType": "REQUEST_WEIGHT",
            "interval": "MINUTE",
            "intervalNum": 1,
            "limit": 6000,
        }
        filters = {s["symbol"]: {f["filterType"]: f for f in s["filters"]} for s in info["symbols"]}
        assert filters["BTCUSDT"]["PRICE_FILTER"]["tickSize"] == "0.01000000"
        assert filters["BTCUSDT"]["LOT_SIZE"]["stepSize"] == "0.00001000"
        assert filters["ETHUSDT"]["LOT_SIZE"]["stepSize"] == "0.00010000"
        assert filters["BNBUSDT"]["LOT_SIZE"]["stepSize"] == "0.00100000"
        assert filters["DOGEUSDT"]["PRICE_FILTER"]["tickSize"] == "0.00001000"
        assert filters["DOGEUSDT"]["LOT_SIZE"]["stepSize"] == "1.00000000"
        btc = next(s for s in info["symbols"] if s["symbol"] == "BTCUSDT")
        assert (btc["baseAsset"], btc["quoteAsset"], btc["status"]) == ("BTC", "USDT", "TRADING")
        one = (await http_get(sim, "/api/v3/exchangeInfo?symbol=ETHUSDT")).json()
        assert [s["symbol"] for s in one["symbols"]] == ["ETHUSDT"]
        two = await http_get(sim, '/api/v3/exchangeInfo?symbols=["BTCUSDT","BNBUSDT"]')
        assert [s["symbol"] for s in two.json()["symbols"]] == ["BTCUSDT", "BNBUSDT"]
        bad = await http_get(sim, "/api/v3/exchangeInfo?symbol=XRPUSDT")
        assert bad.status == 400
        assert bad.json() == {"code": -1121, "msg": "Invalid symbol."}
        # exchangeInfo weighs 20, also when the request is refused
        assert (await http_get(sim, "/api/v3/ping")).headers["x-mbx-used-weight-1m"] == "81"


async def test_depth_snapshot_shape_and_weights() -> None:
    async with BinanceSim(cfg()) as sim:
        used = 0
        for limit, weight in ((5, 5), (100, 5), (101, 25), (500, 25), (1000, 50), (5000, 250)):
            r = await http_get(sim, f"/api/v3/depth?symbol=ETHUSDT&limit={limit}")
            assert r.status == 200
            used += weight
            assert r.headers["x-mbx-used-weight-1m"] == str(used)
            snap = r.json()
            assert list(snap) == ["lastUpdateId", "bids", "asks"]
            assert isinstance(snap["lastUpdateId"], int)
            assert len(snap["bids"]) == min(limit, len(snap["bids"]))
            if limit <= 1000:
                assert len(snap["bids"]) == len(snap["asks"]) == limit
            bids = [float(p) for p, _ in snap["bids"]]
            asks = [float(p) for p, _ in snap["asks"]]
            assert bids == sorted(bids, reverse=True)
            assert asks == sorted(asks)
            assert bids[0] < asks[0]
            assert all(NUM.match(x) for lv in snap["bids"] + snap["asks"] for x in lv)
        r = await http_get(sim, "/api/v3/depth?symbol=ETHUSDT")  # default limit 100
        assert len(r.json()["bids"]) == 100
        r = await http_get(sim, "/api/v3/depth?symbol=ETHUSDT&limit=9000")  # capped at 5000
        assert r.status == 200
        assert r.json()["lastUpdateId"] <= sim.update_id("ETHUSDT")
        r = await http_get(sim, "/api/v3/depth?limit=5")
        assert (r.status, r.json()["code"]) == (400, -1102)
        r = await http_get(sim, "/api/v3/depth?symbol=btcusdt")
        assert (r.status, r.json()["code"]) == (400, -1121)
        assert sim.stats["snapshots"] == 8


@pytest.mark.looptime
async def test_over_the_weight_limit_429_then_418_with_escalating_bans() -> None:
    loop = asyncio.get_running_loop()
    async with BinanceSim(cfg(rest_weight_limit=100, tick_rate_hz=1.0)) as sim:
        await asyncio.sleep(10.0)  # 50 s left in the first 1-minute window
        for _ in range(20):
            assert (await http_get(sim, "/api/v3/depth?symbol=BTCUSDT&limit=5")).status == 200
        r = await http_get(sim, "/api/v3/depth?symbol=BTCUSDT&limit=5")
        assert r.status == 429
        assert r.json()["code"] == -1003
        assert r.headers["x-mbx-used-weight-1m"] == "100"
        assert 49 <= int(r.headers["retry-after"]) <= 50
        r = await http_get(sim, "/api/v3/ping")  # did not wait: banned
        assert r.status == 418
        assert r.headers["retry-after"] == "120"
        assert "IP banned until" in r.json()["msg"]
        await asyncio.sleep(60.0)
        r = await http_get(sim, "/api/v3/ping")
        assert r.status == 418  # the ban is not extended, only reported
        assert 59 <= int(r.headers["retry-after"]) <= 60
        await asyncio.sleep(61.0)
        assert (await http_get(sim, "/api/v3/ping")).status == 200  # weight 1
        for _ in range(19):
            assert (await http_get(sim, "/api/v3/depth?symbol=BTCUSDT&limit=5")).status == 200
        assert (await http_get(sim, "/api/v3/depth?symbol=BTCUSDT&limit=5")).status == 429
        r = await http_get(sim, "/api/v3/ping")
        assert (r.status, r.headers["retry-after"]) == (418, "240")  # second ban: doubled
        t_ban = loop.time()
        await asyncio.sleep(241.0 - (loop.time() - t_ban))
        assert (await http_get(sim, "/api/v3/ping")).status == 200
        rules = [r["rule"] for r in sim.truth if r["k"] == "violation"]
        assert rules == ["rest_weight", "rest_ban", "rest_weight", "rest_ban"]
        limited = [(r["status"], r["cause"]) for r in sim.truth if r["k"] == "rest_limited"]
        assert limited == [
            (429, "weight"),
            (418, "ban"),
            (418, "ban"),
            (429, "weight"),
            (418, "ban"),
        ]


@pytest.mark.looptime
async def test_a_client_that_waits_for_retry_after_is_not_banned() -> None:
    async with BinanceSim(cfg(rest_weight_limit=20, tick_rate_hz=1.0)) as sim:
        for _ in range(3):
            statuses = []
            while True:
                r = await http_get(sim, "/api/v3/depth?symbol=BTCUSDT&limit=5")
                statuses.append(r.status)
                if r.status == 429:
                    await asyncio.sleep(int(r.headers["retry-after"]))
                    break
            assert statuses == [200] * 4 + [429]
        assert (await http_get(sim, "/api/v3/ping")).status == 200
        assert "rest_ban" not in sim.stats["violations_by_rule"]


def test_limiter_rules() -> None:
    assert [depth_weight(n) for n in (1, 100, 101, 500, 501, 1000, 1001, 5000)] == [
        5,
        5,
        25,
        25,
        50,
        50,
        250,
        250,
    ]
    lim = RestLimiter(limit=10, window_s=60.0, ban_s=120.0, ban_max_s=300.0, t0=0.0)
    assert lim.check("a", 10, 1.0).status == 200
    assert lim.check("b", 10, 1.0).status == 200  # per IP
    d = lim.check("a", 1, 2.0)
    assert (d.status, d.retry_after_s, d.used) == (429, 58, 10)
    assert lim.check("a", 1, 3.0).new_ban
    assert lim.check("a", 1, 3.0 + 120.0).status == 200  # new window, ban over
    assert lim.check("a", 9, 130.0).status == 200
    assert lim.check("a", 1, 131.0).status == 429
    assert lim.check("a", 1, 132.0).retry_after_s == 240  # second ban: doubled
    assert lim.check("a", 1, 133.0).retry_after_s == 239  # reported, not extended
    assert lim.check("a", 10, 400.0).status == 200
    assert lim.check("a", 1, 401.0).status == 429
    assert lim.check("a", 1, 402.0).retry_after_s == 300  # capped
