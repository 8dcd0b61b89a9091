"""Fault validation, scenario files, chaos generation and scheduling (design.md §4)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from simkit import closed, recv
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from gapless.sim import FAULT_KINDS, Fault, KrakenSim, Scenario, SimConfig


def test_fault_validation() -> None:
    assert Fault("abort").params == {}
    assert Fault.make("close", 1.5, code=4000) == Fault("close", 1.5, {"code": 4000})
    assert Fault("maintenance").resolved() == {
        "duration_s": 10.0,
        "after_status": "online",
        "cancel_only_s": 0.0,
    }
    with pytest.raises(ValueError, match="unknown fault kind"):
        Fault("explode")
    with pytest.raises(ValueError, match="unknown params"):
        Fault.make("abort", code=1000)
    with pytest.raises(ValueError, match="status system"):
        Fault.make("status", system="sleeping")
    with pytest.raises(ValueError, match="variant"):
        Fault.make("malformed", variant="emoji")
    with pytest.raises(ValueError, match="close code"):
        Fault.make("close", code=1006)
    with pytest.raises(ValueError, match="non-negative"):
        Fault.make("ban", duration_s=-1)
    with pytest.raises(ValueError, match="non-negative"):
        Fault("abort", -1.0)


def test_scenario_json_file(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    path.write_text(
        '[{"at": 9, "kind": "maintenance", "duration_s": 6}, {"at": 5.0, "kind": "abort"},'
        ' {"at_s": 12, "kind": "data_stall", "params": {"symbols": ["BTC/USD"]}}]'
    )
    sc = Scenario.load(path)
    assert [(f.at_s, f.kind) for f in sc] == [
        (5.0, "abort"),
        (9.0, "maintenance"),
        (12.0, "data_stall"),
    ]
    assert sc.faults[1].params == {"duration_s": 6}
    assert sc.faults[2].params == {"symbols": ["BTC/USD"]}
    assert Scenario.from_json(sc.to_json()) == sc
    sc.dump(tmp_path / "again.json")
    assert Scenario.load(tmp_path / "again.json") == sc
    assert Scenario.from_json('{"faults": [{"at": 1, "kind": "abort"}]}') == Scenario(
        [Fault("abort", 1.0)]
    )
    with pytest.raises(ValueError, match="unknown params"):
        Scenario.from_json('[{"at": 1, "kind": "abort", "cod": 1}]')
    with pytest.raises(ValueError, match="without 'kind'"):
        Scenario.from_json('[{"at": 1}]')


def _check_chaos(sc: Scenario, duration: float, min_faults: int) -> None:
    faults = sc.faults
    assert len(faults) >= min_faults
    assert [f.at_s for f in faults] == sorted(f.at_s for f in faults)
    for i, f in enumerate(faults):
        restore = (
            f.kind == "status"
            and f.params["system"] != "online"
            and faults[i + 1].kind == "status"
            and faults[i + 1].params["system"] == "online"
        )
        if i + 1 < len(faults):
            gap = faults[i + 1].at_s - f.at_s
            need = 1.5 if restore else Scenario.recovery_s(f)
            assert gap >= need - 0.01, (f, faults[i + 1])
        if not restore:
            assert f.at_s + Scenario.recovery_s(f) <= duration - 8.0 + 0.01
        if f.kind == "silent_stall":
            assert f.params["duration_s"] is not None
        if f.kind == "maintenance":
            assert Scenario.recovery_s(f) >= 5.0 + f.params["duration_s"]
        if f.kind == "ban":
            assert Scenario.recovery_s(f) >= f.params["duration_s"]


@pytest.mark.parametrize("seed", range(8))
def test_chaos_spacing_and_coverage(seed: int) -> None:
    sc = Scenario.chaos(240.0, seed)
    _check_chaos(sc, 240.0, 12)
    assert {f.kind for f in sc} == set(FAULT_KINDS)
    # the quiet tail: nothing starts in the last 8 s
    assert max(f.at_s for f in sc) <= 240.0 - 8.0


@pytest.mark.parametrize("seed", range(20))
def test_default_chaos_fits_a_sixty_second_demo(seed: int) -> None:
    sc = Scenario.chaos(60.0, seed)
    _check_chaos(sc, 60.0, 12)


def test_chaos_is_deterministic_by_seed() -> None:
    assert Scenario.chaos(200.0, 3) == Scenario.chaos(200.0, 3)
    assert Scenario.chaos(200.0, 3) != Scenario.chaos(200.0, 4)
    assert Scenario.from_json(Scenario.chaos(200.0, 3).to_json()) == Scenario.chaos(200.0, 3)


def test_chaos_options() -> None:
    sc = Scenario.chaos(60.0, 1, min_faults=5, kinds=["abort", "close"])
    _check_chaos(sc, 60.0, 5)
    assert {f.kind for f in sc} == {"abort", "close"}
    sc = Scenario.chaos(300.0, 2, symbols=["BTC/USD", "ETH/USD"])
    for f in sc:
        if f.kind in ("drop_update", "corrupt_checksum"):
            assert f.params["symbol"] in ("BTC/USD", "ETH/USD")
    with pytest.raises(ValueError, match="longer run"):
        Scenario.chaos(30.0, 1)
    with pytest.raises(ValueError, match="unknown fault kind"):
        Scenario.chaos(100.0, 1, kinds=["nope"])


@pytest.mark.looptime
async def test_schedule_runs_faults_at_offsets() -> None:
    sc = Scenario.from_json(
        json.dumps([{"at": 2.0, "kind": "close", "code": 4001}, {"at": 5, "kind": "abort"}])
    )
    loop = asyncio.get_running_loop()
    async with KrakenSim(SimConfig(seed=1, symbols=("BTC/USD",), tick_rate_hz=10.0)) as sim:
        t0 = loop.time()
        sim.schedule(sc)
        async with connect(sim.url) as ws:
            await recv(ws)
            exc = await closed(ws, limit_s=10)
            assert exc.rcvd is not None
            assert exc.rcvd.code == 4001
            assert 1.99 <= loop.time() - t0 <= 2.1
        async with connect(sim.url) as ws:
            await recv(ws)
            exc = await closed(ws, limit_s=10)
            assert exc.rcvd is None
            assert 4.99 <= loop.time() - t0 <= 5.1
        faults = [r for r in sim.truth if r["k"] == "fault"]
        assert [f["kind"] for f in faults] == ["close", "abort"]
        assert faults[0]["params"] == {"code": 4001, "reason": ""}
        assert sim.stats["faults_injected"] == {"close": 1, "abort": 1}


@pytest.mark.looptime
async def test_chaos_scenario_runs_against_a_client() -> None:
    """A whole chaos run in virtual time: the sim survives every fault and keeps serving."""
    syms = ("BTC/USD", "ETH/USD")
    sc = Scenario.chaos(150.0, 5, symbols=list(syms))
    async with KrakenSim(SimConfig(seed=5, symbols=syms, tick_rate_hz=10.0)) as sim:
        sim.schedule(sc)
        loop = asyncio.get_running_loop()
        end = loop.time() + 150.0
        connects = 0
        refusals: list[int] = []
        while loop.time() < end:
            try:
                async with connect(sim.url, max_size=None, close_timeout=1) as ws:
                    connects += 1
                    await ws.send(
                        json.dumps(
                            {
                                "method": "subscribe",
                                "params": {"channel": "book", "symbol": list(syms)},
                            }
                        )
                    )
                    async with asyncio.timeout(max(0.1, end - loop.time())):
                        while True:
                            async with asyncio.timeout(5):
                                await ws.recv()
            except (ConnectionClosed, TimeoutError, OSError):
                await asyncio.sleep(1.0)
            except InvalidStatus as exc:  # during bans / maintenance
                refusals.append(exc.response.status_code)
                await asyncio.sleep(5.0)
        await sim.quiesce()
        assert sum(sim.stats["faults_injected"].values()) == len(sc)
        assert connects > 5
        assert set(refusals) <= {429, 503}
        assert len([r for r in sim.truth if r["k"] == "final_book"]) == 2
