"""KuCoin simulator WebSocket session rules, plain websockets client (protocols.md §2.1-§2.4)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from simkit import closed, recv_until
from test_sim_kucoin_kit import bullet, frames_for, kcfg, open_ws, recv_json, sub
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from gapless.sim.kucoin import KucoinSim


async def test_welcome_is_first_with_connect_id_on_every_instance() -> None:
    async with KucoinSim(kcfg()) as sim:
        for instance in (0, 1):
            ws = await open_ws(sim, instance=instance, connect_id=f"hQvf8jkno{instance}")
            async with ws:
                raw = await ws.recv()
                assert raw == json.dumps(
                    {"id": f"hQvf8jkno{instance}", "type": "welcome"}, separators=(",", ":")
                )
        # without connectId the server makes one up
        async with await open_ws(sim, connect_id=None) as ws:
            w = await recv_json(ws)
            assert w["type"] == "welcome"
            assert isinstance(w["id"], str)
            assert w["id"]
        opens = [r for r in sim.truth if r["k"] == "conn_open"]
        assert [(r["connect_id"], r["instance"]) for r in opens[:2]] == [
            ("hQvf8jkno0", 0),
            ("hQvf8jkno1", 1),
        ]
        assert [r["conn"] for r in opens] == [1, 2, 3]


async def test_unknown_token_gets_error_frame_then_close() -> None:
    async with KucoinSim(kcfg()) as sim:
        async with await open_ws(sim, token="not-a-token") as ws:
            first = await recv_json(ws)
            assert first == {"type": "error", "code": 401, "data": "token is expired"}
            exc = await closed(ws)
            assert exc.rcvd is not None
            assert exc.rcvd.code == 1000
        # no token at all
        async with connect(sim.ws_urls[1], ping_interval=None) as ws:
            assert (await recv_json(ws))["code"] == 401
        refused = [r for r in sim.truth if r["k"] == "refused"]
        assert [(r["status"], r["how"], r["instance"]) for r in refused] == [
            (401, "error_frame", 0),
            (401, "error_frame", 1),
        ]
        assert not [r for r in sim.truth if r["k"] == "conn_open"]
        assert sim.stats["refused_by_status"] == {401: 2}


async def test_http_401_mode_refuses_the_upgrade() -> None:
    async with KucoinSim(kcfg(bad_token_response="http_401")) as sim:
        with pytest.raises(InvalidStatus) as ei:
            await open_ws(sim, token="nope")
        assert ei.value.response.status_code == 401
        assert json.loads(ei.value.response.body)["msg"] == "token is expired"
        async with await open_ws(sim) as ws:  # a real token still works
            assert (await recv_json(ws))["type"] == "welcome"


@pytest.mark.looptime
async def test_token_ttl() -> None:
    async with KucoinSim(kcfg(tick_rate_hz=1.0, token_ttl_s=60.0)) as sim:
        token = (await bullet(sim))["token"]
        async with await open_ws(sim, token=token) as ws:
            assert (await recv_json(ws))["type"] == "welcome"
        await asyncio.sleep(61.0)
        async with await open_ws(sim, token=token) as ws:
            assert (await recv_json(ws))["data"] == "token is expired"
        async with await open_ws(sim) as ws:  # a fresh bullet
            assert (await recv_json(ws))["type"] == "welcome"


async def test_ping_pong_echoes_the_id_as_string() -> None:
    async with KucoinSim(kcfg()) as sim, await open_ws(sim) as ws:
        await recv_json(ws)
        await ws.send(json.dumps({"id": "1545910590801", "type": "ping"}))
        assert await recv_json(ws) == {"id": "1545910590801", "type": "pong"}
        await ws.send(json.dumps({"id": 1545910590802, "type": "ping"}))
        assert await recv_json(ws) == {"id": "1545910590802", "type": "pong"}


@pytest.mark.looptime
async def test_idle_close_after_ping_interval_plus_timeout() -> None:
    loop = asyncio.get_running_loop()
    async with KucoinSim(kcfg(tick_rate_hz=1.0)) as sim:
        async with await open_ws(sim) as ws:
            await recv_json(ws)
            t0 = loop.time()
            exc = await closed(ws, limit_s=40.0)
            assert 27.9 <= loop.time() - t0 <= 28.5
            assert exc.rcvd is not None
            assert exc.rcvd.code == 1000
        # JSON pings every pingInterval keep it open
        async with await open_ws(sim) as ws:
            await recv_json(ws)
            for i in range(4):
                await asyncio.sleep(18.0)
                await ws.send(json.dumps({"id": str(i), "type": "ping"}))
                assert (await recv_json(ws))["type"] == "pong"
        # so do protocol ping frames (cryptofeed's way, §2.3 [OBS])
        async with await open_ws(sim, ping_interval=9.0) as ws:
            await recv_json(ws)
            assert await frames_for(ws, 60.0) == []
        await asyncio.sleep(0.1)
        causes = [r["cause"] for r in sim.truth if r["k"] == "conn_close"]
        assert causes == ["idle", None, None]


@pytest.mark.looptime
async def test_control_frames_can_be_excluded_from_activity() -> None:
    config = kcfg(tick_rate_hz=1.0, control_frames_are_activity=False, idle_timeout_s=10.0)
    loop = asyncio.get_running_loop()
    async with KucoinSim(config) as sim, await open_ws(sim, ping_interval=2.0) as ws:
        await recv_json(ws)
        t0 = loop.time()
        exc = await closed(ws, limit_s=20.0)
        assert 9.9 <= loop.time() - t0 <= 10.5
        assert exc.rcvd is not None


async def test_ack_only_with_response_true_and_id_as_string() -> None:
    async with KucoinSim(kcfg()) as sim, await open_ws(sim) as ws:
        await recv_json(ws)
        await ws.send(sub("/market/ticker:BTC-USDT", 1545910660739, response=True))
        assert await recv_json(ws) == {"id": "1545910660739", "type": "ack"}
        await ws.send(sub("/market/level2:ETH-USDT", "a2", response=False))
        await ws.send(sub("/market/match:ETH-USDT", "a3", response=None))
        await ws.send(sub("/market/ticker:BTC-USDT", "u1", kind="unsubscribe"))
        await ws.send(json.dumps({"id": "p", "type": "ping"}))
        controls = [
            m for m in await frames_for(ws, 0.5) if m.get("type") in ("ack", "pong", "error")
        ]
        assert controls == [{"id": "u1", "type": "ack"}, {"id": "p", "type": "pong"}]


async def test_404_unknown_symbol_or_topic_keeps_the_connection() -> None:
    async with KucoinSim(kcfg()) as sim, await open_ws(sim) as ws:
        await recv_json(ws)
        await ws.send(sub("/market/level2:BSV-BTC", "e1"))
        assert await recv_json(ws) == {
            "id": "e1",
            "type": "error",
            "code": 404,
            "data": "topic /market/level2:BSV-BTC is not found",
        }
        # all-or-nothing: a known symbol in the same request is not subscribed
        await ws.send(sub("/market/level2:BTC-USDT,XYZ-USDT", "e2"))
        err = await recv_json(ws)
        assert (err["code"], err["data"]) == (404, "topic /market/level2:XYZ-USDT is not found")
        await ws.send(sub("/market/nothing:BTC-USDT", "e3"))
        err = await recv_json(ws)
        assert (err["id"], err["code"]) == ("e3", 404)
        await ws.send("{not json")
        assert (await recv_json(ws))["code"] == 400
        await ws.send(json.dumps({"id": "p", "type": "ping"}))
        assert await recv_json(ws) == {"id": "p", "type": "pong"}
        assert not [m for m in await frames_for(ws, 0.3) if m.get("type") == "message"]


async def test_509_more_than_100_symbols_in_one_message() -> None:
    async with KucoinSim(kcfg()) as sim, await open_ws(sim) as ws:
        await recv_json(ws)
        many = ",".join(f"S{i}-USDT" for i in range(101))
        await ws.send(sub(f"/market/ticker:{many}", "big"))
        assert await recv_json(ws) == {
            "id": "big",
            "type": "error",
            "code": 509,
            "data": "exceed max subscription count limitation of 100 per time",
        }
        await ws.send(sub("/market/ticker:BTC-USDT", "ok"))
        assert await recv_json(ws) == {"id": "ok", "type": "ack"}
        assert [v["rule"] for v in sim.truth if v["k"] == "violation"] == ["topics_per_message"]


async def test_509_per_connection_limit() -> None:
    async with KucoinSim(kcfg(max_topics_per_conn=3)) as sim, await open_ws(sim) as ws:

        async def reply(to: str) -> Any:  # market data flows once s1 is acked
            m, _ = await recv_until(ws, lambda m: isinstance(m, dict) and m.get("id") == to)
            return m

        await recv_json(ws)
        await ws.send(sub("/market/level2:BTC-USDT,ETH-USDT", "s1"))
        assert (await reply("s1"))["type"] == "ack"
        await ws.send(sub("/market/match:BTC-USDT,ETH-USDT", "s2"))
        assert await reply("s2") == {
            "id": "s2",
            "type": "error",
            "code": 509,
            "data": "exceed max subscription count limitation of 3 per session",
        }
        await ws.send(sub("/market/level2:BTC-USDT", "again"))  # already active: no new topic
        assert await reply("again") == {"id": "again", "type": "ack"}
        await ws.send(sub("/market/match:BTC-USDT", "s3"))
        assert (await reply("s3"))["type"] == "ack"
        await ws.send(sub("/market/ticker:BTC-USDT", "s4"))
        assert (await reply("s4"))["code"] == 509
        await ws.send(sub("/market/level2:ETH-USDT", "u", kind="unsubscribe"))
        await ws.send(sub("/market/ticker:BTC-USDT", "s5"))
        acks = [m for m in await frames_for(ws, 0.3) if m.get("type") in ("ack", "error")]
        assert acks == [{"id": "u", "type": "ack"}, {"id": "s5", "type": "ack"}]
        # another connection has its own budget
        async with await open_ws(sim) as other:
            await recv_json(other)
            await other.send(sub("/market/ticker:BTC-USDT,ETH-USDT", "o"))
            assert await recv_json(other) == {"id": "o", "type": "ack"}


@pytest.mark.looptime
async def test_lifetime_close() -> None:
    loop = asyncio.get_running_loop()
    async with KucoinSim(kcfg(tick_rate_hz=1.0, lifetime_s=100.0)) as sim:
        async with await open_ws(sim, ping_interval=10.0) as ws:
            await recv_json(ws)
            t0 = loop.time()
            exc = await closed(ws, limit_s=120.0)
            assert 99.9 <= loop.time() - t0 <= 100.5
            assert exc.rcvd is not None
            assert exc.rcvd.code == 1000
        await asyncio.sleep(0.1)
        (rec,) = [r for r in sim.truth if r["k"] == "conn_close"]
        assert (rec["how"], rec["cause"]) == ("close:1000", "lifetime")


@pytest.mark.looptime
async def test_lifetime_close_code_is_configurable() -> None:
    config = kcfg(tick_rate_hz=1.0, lifetime_s=5.0, lifetime_close_code=4000)
    async with KucoinSim(config) as sim, await open_ws(sim, ping_interval=1.0) as ws:
        await recv_json(ws)
        exc = await closed(ws, limit_s=10.0)
        assert exc.rcvd is not None
        assert exc.rcvd.code == 4000
