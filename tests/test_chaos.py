"""The soak's pieces (gapless.chaos) and the transport and consumer fault kinds."""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest

from gapless.chaos import (
    EventSpill,
    ResourceSampler,
    consume,
    drive_transport,
    find_secrets,
    read_jsonl,
)
from gapless.events import BookUpdate, Event, Level, Trade
from gapless.sim import CONSUMER_FAULT_KINDS, TRANSPORT_FAULT_KINDS, Fault, FaultProxy, Scenario
from gapless.sim.truth import TruthLog


def _clock() -> int:
    return 1_000


def _update(i: int) -> BookUpdate:
    lv = (Level(Decimal("1.5"), Decimal("2")),)
    return BookUpdate(
        venue="kraken",
        local_ts_ns=i,
        symbol="BTC/USD",
        exchange_ts_ns=i,
        stream="kraken:book:BTC/USD:10",
        depth=10,
        bids=lv,
        asks=lv,
        checksum=i,
    )


def _trade(i: int) -> Trade:
    return Trade(
        venue="kraken",
        local_ts_ns=i,
        symbol="BTC/USD",
        exchange_ts_ns=i,
        stream="kraken:trade:BTC/USD",
        trade_id=i,
        price=Decimal(1),
        qty=Decimal(1),
        side="buy",
    )


@pytest.mark.parametrize("duration_s", [120.0, 600.0])
def test_chaos_schedules_with_transport_kinds_never_overlap_and_use_every_kind(
    duration_s: float,
) -> None:
    kinds = ("abort", "close", *TRANSPORT_FAULT_KINDS)
    sc = Scenario.chaos(duration_s, 3, min_faults=4, kinds=kinds)
    assert {f.kind for f in sc} == set(kinds)  # each kind before any repeats
    for a, b in zip(sc.faults, sc.faults[1:], strict=False):
        assert b.at_s >= a.at_s + Scenario.recovery_s(a) - 1e-6
    holes = [f for f in sc if f.kind == "blackhole"]
    # a half-open link must outlast the liveness timers to be one
    assert all(5.0 <= f.resolved()["duration_s"] <= 8.0 for f in holes)
    assert len(sc) >= duration_s / 20


def test_consumer_kinds_are_faults_with_durations() -> None:
    for kind in CONSUMER_FAULT_KINDS:
        assert Fault.make(kind).resolved()["duration_s"] > 0
    with pytest.raises(ValueError, match="unknown params"):
        Fault.make("slow_consumer", speed=1)


def test_the_spill_keeps_order_drops_levels_and_is_owner_only(tmp_path: Path) -> None:
    spill = EventSpill(tmp_path / "events.pickle", batch=3)
    sent: list[Event] = [_update(i) if i % 2 else _trade(i) for i in range(10)]
    for ev in sent:
        spill.add(ev)
    got = list(spill.load())
    assert [e.local_ts_ns for e in got] == list(range(10))
    ups = [e for e in got if isinstance(e, BookUpdate)]
    assert ups
    assert all(e.bids == () and e.asks == () and e.checksum == e.local_ts_ns for e in ups)
    assert [e for e in got if isinstance(e, Trade)] == [e for e in sent if isinstance(e, Trade)]
    assert stat.S_IMODE(os.stat(tmp_path / "events.pickle").st_mode) == 0o600


def test_find_secrets_sees_a_needle_across_a_chunk_boundary_and_never_echoes_it(
    tmp_path: Path,
) -> None:
    needle = "sEcReT-canary-1234567890"
    f = tmp_path / "big.log"
    cut = (1 << 20) - 7  # the needle straddles the 1 MiB read boundary
    f.write_bytes(b"x" * cut + needle.encode() + b"y" * 100)
    out = find_secrets({"api secret": needle, "api key": "not-there"}, [f], {"stdout": "clean"})
    assert out["leaks"] == ["api secret in big.log"]
    assert out["needles"] == 2
    assert out["bytes_scanned"] == cut + len(needle) + 100 + len("clean")
    assert needle not in repr(out)
    assert find_secrets({"k": needle}, [], {"summary": f"..{needle}.."})["leaks"] == [
        "k in summary"
    ]


def test_a_truth_log_can_keep_nothing_in_memory(tmp_path: Path) -> None:
    log = TruthLog(tmp_path / "t.jsonl", keep=False)
    log.open()
    for i in range(3):
        log.add({"k": "trade", "i": i})
    log.close()
    assert log.records == []
    assert [r["i"] for r in read_jsonl([tmp_path / "t.jsonl"])] == [0, 1, 2]
    with pytest.raises(ValueError, match="needs a path"):
        TruthLog(None, keep=False)


@pytest.mark.looptime
async def test_drive_transport_applies_each_fault_for_its_duration_then_clears() -> None:
    async def echo(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        while data := await r.read(100):
            w.write(data)
        w.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    records: list[dict[str, object]] = []
    async with server, FaultProxy(port) as proxy:
        _, w = await asyncio.open_connection("127.0.0.1", proxy.port)
        sc = Scenario(
            [
                Fault.make("latency", 1.0, latency_s=0.3, jitter_s=0.0, duration_s=2.0),
                Fault.make("reset", 5.0),
            ]
        )
        task = asyncio.create_task(drive_transport("kraken", [proxy], sc, _clock, records))
        await asyncio.sleep(1.5)
        assert proxy.toxics.latency_s == 0.3
        await asyncio.sleep(2.0)
        assert proxy.toxics.latency_s == 0.0  # cleared after its duration
        await task
        assert proxy.stats.resets == 1
        w.close()
    assert [(r["venue"], r["kind"], r["k"]) for r in records] == [
        ("kraken", "latency", "fault"),
        ("kraken", "reset", "fault"),
    ]


@pytest.mark.looptime
async def test_consume_stalls_and_blocks_when_its_faults_are_due(tmp_path: Path) -> None:
    async def events() -> AsyncIterator[Event]:
        for i in range(40):
            await asyncio.sleep(0.1)
            yield _trade(i)

    loop = asyncio.get_running_loop()
    spill = EventSpill(tmp_path / "e.pickle")
    records: list[dict[str, object]] = []
    sc = Scenario([Fault.make("slow_consumer", 1.0, duration_s=3.0)])
    t0 = loop.time()
    await consume(events(), spill, sc, _clock, records)
    assert loop.time() - t0 >= 4.0 + 3.0 - 0.01  # 40 events 0.1 s apart plus the stall
    assert spill.count == 40
    assert [r["kind"] for r in records] == ["slow_consumer"]


def test_resource_samples_are_plausible() -> None:
    async def main() -> ResourceSampler:
        s = ResourceSampler(1.0)
        s.sample(0.0)
        return s

    s = asyncio.run(main())
    t, rss_mb, fds, tasks, py_blocks, heap_free_mb = s.samples[0]
    assert t == 0.0
    assert 5 < rss_mb < 10_000
    assert fds >= 3
    assert tasks >= 1
    assert py_blocks > 10_000  # an interpreter with gapless imported
    assert heap_free_mb == -1 or 0 <= heap_free_mb < rss_mb
