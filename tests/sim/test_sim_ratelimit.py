"""Connection-attempt rate rule (protocols.md §1.2): ~150 attempts / 10 min / IP, then a ban."""

from __future__ import annotations

import asyncio

import pytest
from simkit import recv
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from gapless.sim import KrakenSim, SimConfig


async def _attempt(url: str) -> int:
    """One upgrade attempt: 101 on success, else the HTTP status."""
    try:
        async with connect(url) as ws:
            await recv(ws)
            return 101
    except InvalidStatus as exc:
        return exc.response.status_code


@pytest.mark.looptime
async def test_default_limit_bans_the_ip_for_ten_minutes() -> None:
    loop = asyncio.get_running_loop()
    async with KrakenSim(SimConfig(seed=3, symbols=("BTC/USD",), tick_rate_hz=1.0)) as sim:
        for _ in range(150):
            assert await _attempt(sim.url) == 101
        t_ban = loop.time()
        with pytest.raises(InvalidStatus) as ei:
            async with connect(sim.url):
                pass
        assert ei.value.response.status_code == 429
        assert 599 <= int(ei.value.response.headers["Retry-After"]) <= 600
        assert sim.stats["violations"] == 1
        violations = [r for r in sim.truth if r["k"] == "violation"]
        assert len(violations) == 1
        assert violations[0]["rule"] == "connect_rate"
        await asyncio.sleep(300)
        assert await _attempt(sim.url) == 429
        assert sim.stats["violations"] == 1  # one ban, one violation record
        await asyncio.sleep(600 - (loop.time() - t_ban) + 1)
        assert await _attempt(sim.url) == 101


@pytest.mark.looptime
async def test_a_polite_client_is_never_banned() -> None:
    async with KrakenSim(SimConfig(seed=3, symbols=("BTC/USD",), tick_rate_hz=1.0)) as sim:
        for _ in range(200):  # one attempt every 5 s: 120 per rolling 10 minutes
            assert await _attempt(sim.url) == 101
            await asyncio.sleep(5.0)
        assert sim.stats["violations"] == 0
        assert not [r for r in sim.truth if r["k"] == "violation"]


async def test_scaled_down_limit() -> None:
    config = SimConfig(
        seed=3, symbols=("BTC/USD",), connect_limit=5, connect_window_s=0.5, ban_s=0.5
    )
    async with KrakenSim(config) as sim:
        assert [await _attempt(sim.url) for _ in range(6)] == [101] * 5 + [429]
        await asyncio.sleep(0.6)
        assert await _attempt(sim.url) == 101
        assert sim.stats["refused_by_status"] == {429: 1}
        assert [r["status"] for r in sim.truth if r["k"] == "refused"] == [429]
