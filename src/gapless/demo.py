"""``gapless demo``: the embedded simulator, a chaos schedule, a client, and the checker.

Runs everything in one process over real loopback sockets:

1. starts :class:`gapless.sim.KrakenSim` (seeded market, ground-truth log),
2. schedules a chaos scenario drawn from the fault catalogue (design.md §4),
3. streams books, trades and tickers of a few symbols through ``gapless.connect``,
4. after ``duration`` stops the market, lets the client converge, closes it,
5. classifies every published event with :mod:`gapless.checker` and compares
   final books.

Client timeouts are shortened for the demo (dead-peer 3 s, staleness 3 s,
ping every 5 s) so recoveries fit in a one-minute run; the production
defaults are in :class:`~gapless.venues.kraken.KrakenOptions` and
:class:`~gapless.runtime.supervisor.RuntimeOptions`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gapless.checker import check
from gapless.events import ConnectionState, Event, Gap
from gapless.runtime.backoff import BackoffPolicy
from gapless.runtime.clock import loop_anchored_wall_clock
from gapless.runtime.feed import Feed, connect
from gapless.runtime.supervisor import RuntimeOptions
from gapless.runtime.transport import TransportOptions
from gapless.sim import KrakenSim, Scenario, SimConfig
from gapless.venues import kraken
from gapless.venues.kraken.adapter import KrakenOptions

__all__ = ["DemoResult", "demo_client_options", "run_demo"]

DEFAULT_SYMBOLS = ("BTC/USD", "ETH/USD", "ALGO/USD")


def demo_client_options(url: str) -> tuple[KrakenOptions, RuntimeOptions]:
    """Client settings tuned for short simulated runs."""
    kopts = KrakenOptions(
        url=url,
        ping_interval_s=5.0,
        pong_timeout_s=3.0,
        subscribe_ack_timeout_s=3.0,
        book_stale_after_s=3.0,
        resubscribe_min_interval_s=1.0,
        max_resyncs_per_minute=6,
        reject_retry_base_s=1.0,
        reject_retry_cap_s=4.0,
    )
    ropts = RuntimeOptions(
        transport=TransportOptions(connect_timeout_s=3.0, max_frame_bytes=4 * 1024 * 1024),
        backoff=BackoffPolicy(base_s=0.2, cap_s=3.0, stable_after_s=5.0),
        dead_after_s=3.0,
    )
    return kopts, ropts


@dataclass(slots=True)
class DemoResult:
    summary: dict[str, Any]
    events: list[Event] = field(default_factory=list)
    truth: list[dict[str, Any]] = field(default_factory=list)


async def run_demo(
    duration_s: float = 60.0,
    seed: int = 7,
    *,
    symbols: tuple[str, ...] = DEFAULT_SYMBOLS,
    depth: int = 10,
    scenario: Scenario | None = None,
    min_faults: int = 12,
    tick_rate_hz: float = 40.0,
    truth_path: str | None = None,
    capture: str | None = None,
    progress: Callable[[dict[str, Any]], None] | None = None,
    converge_timeout_s: float = 20.0,
) -> DemoResult:
    config = SimConfig(
        seed=seed, symbols=tuple(symbols), tick_rate_hz=tick_rate_hz, truth_path=truth_path
    )
    events: list[Event] = []
    async with KrakenSim(config) as sim:
        if scenario is None:
            scenario = Scenario.chaos(duration_s, seed, min_faults=min_faults)
        kopts, ropts = demo_client_options(sim.url)
        # wall stamps tied to the loop clock, like the simulator's: consistent in virtual time
        ropts = dataclasses.replace(ropts, wall_clock=loop_anchored_wall_clock())
        specs = []
        for s in symbols:
            specs += [kraken.book(s, depth=depth), kraken.trades(s), kraken.ticker(s)]
        loop = asyncio.get_running_loop()
        started = loop.time()
        feed = connect(*specs, kraken=kopts, runtime=ropts, capture=capture)
        async with feed:
            sim.schedule(scenario)
            consumer = asyncio.create_task(_consume(feed, events))
            try:
                while (elapsed := loop.time() - started) < duration_s:
                    await asyncio.sleep(min(0.5, max(0.0, duration_s - elapsed)))
                    if progress is not None:
                        progress(_progress(feed, sim, events, elapsed))
                await sim.quiesce()
                final = sim.final_books()
                await _converge(feed, final, depth, converge_timeout_s)
            finally:
                consumer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await consumer
            client_books = {(s, depth): feed.book(s, depth=depth) for s in symbols}
            valid_at_end = {k: (v.valid if v else False) for k, v in client_books.items()}
            report_books = _freeze_books(client_books)
            await feed.aclose()
            events.extend(feed.drain())
            stats = feed.stats()
            counters = [c for a in feed.adapters for c in a.counters().values()]
        truth = list(sim.truth)
        sim_stats = dict(sim.stats)
    report = check(truth, events, final_books=final, client_books=report_books)
    faults = [r for r in truth if r.get("k") == "fault"]
    summary: dict[str, Any] = {"venues": ["kraken"], **report.summary()}
    summary.update(
        {
            "reconnects": sum(max(0, s["connects"] - 1) for s in stats.values()),
            "checksum_ok": sum(getattr(c, "checksum_ok", 0) for c in counters),
            "checksum_mismatch": sum(getattr(c, "checksum_mismatch", 0) for c in counters),
            "faults": len(faults),
            "fault_kinds": dict(Counter(str(f["kind"]) for f in faults)),
            "recovery": _recoveries(faults, events),
            "books_valid_at_end": all(valid_at_end.values()),
            "bad_frames": sum(s["bad_frames"] for s in stats.values()),
            "seed": seed,
            "duration_s": duration_s,
        }
    )
    summary["every_fault_recovered"] = all(r["recovered"] for r in summary["recovery"]["per_fault"])
    if report.book_diffs:
        summary["book_diffs"] = report.book_diffs
    lost_examples = [e for s in report.streams.values() for e in s.lost_examples]
    if lost_examples:
        summary["lost_examples"] = lost_examples[:5]
    summary["sim"] = {k: v for k, v in sim_stats.items() if isinstance(v, (int, float, str))}
    return DemoResult(summary=summary, events=events, truth=truth)


async def _consume(feed: Feed, sink: list[Event]) -> None:
    async for ev in feed:
        sink.append(ev)


async def _converge(
    feed: Feed, final: dict[tuple[str, int], dict[str, Any]], depth: int, timeout_s: float
) -> None:
    """Wait (bounded) until every client book is valid and equals the sim's final book."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while loop.time() < deadline:
        done = True
        for (symbol, d), want in final.items():
            if d != depth:
                continue
            view = feed.book(symbol, depth=d)
            if view is None or not view.valid or view.checksum() != want["checksum"]:
                done = False
                break
        if done and all(
            a.stream_state(k) in ("live", "rejected") for a in feed.adapters for k in a.streams()
        ):
            return
        await asyncio.sleep(0.1)


class _FrozenBook:
    """A copy of a client book taken at the end of the run (for the checker)."""

    def __init__(self, view: Any) -> None:
        self.valid = bool(view.valid)
        self._bids = view.bids()
        self._asks = view.asks()

    def bids(self, n: int | None = None) -> Any:
        return self._bids if n is None else self._bids[:n]

    def asks(self, n: int | None = None) -> Any:
        return self._asks if n is None else self._asks[:n]


def _freeze_books(books: dict[tuple[str, int], Any]) -> dict[tuple[str, int], Any]:
    return {k: (_FrozenBook(v) if v is not None else None) for k, v in books.items()}


def _progress(feed: Feed, sim: KrakenSim, events: list[Event], elapsed: float) -> dict[str, Any]:
    stats = feed.stats()
    gaps = sum(1 for e in events if isinstance(e, Gap))
    return {
        "elapsed": elapsed,
        "connections": stats,
        "events": len(events),
        "gaps": gaps,
        "faults": sum(sim.stats.get("faults_injected", {}).values()),
        "last_states": [
            (e.conn, e.state, e.reason) for e in events[-400:] if isinstance(e, ConnectionState)
        ][-3:],
    }


def _recoveries(faults: list[dict[str, Any]], events: list[Event]) -> dict[str, Any]:
    """For each fault: did the connection leave LIVE, and when was it LIVE again?

    Events are taken in delivery order (timestamps may tie in virtual time)."""
    states = [e for e in events if isinstance(e, ConnectionState)]
    per_fault = []
    times: dict[str, list[float]] = {}
    for i, f in enumerate(faults):
        t0 = int(f["ts_ns"])
        t_next = int(faults[i + 1]["ts_ns"]) if i + 1 < len(faults) else None
        disrupted = next(
            (
                j
                for j, e in enumerate(states)
                if e.local_ts_ns >= t0
                and e.state not in ("LIVE", "CLOSED")  # CLOSED: the run ended
                and (t_next is None or e.local_ts_ns < t_next)
            ),
            None,
        )
        if disrupted is None:
            per_fault.append({"kind": f["kind"], "disrupted": False, "recovered": True})
            continue
        live = next((e for e in states[disrupted + 1 :] if e.state == "LIVE"), None)
        entry: dict[str, Any] = {
            "kind": f["kind"],
            "disrupted": True,
            "recovered": live is not None,
        }
        if live is not None:
            entry["recovery_s"] = round(max(0, live.local_ts_ns - t0) / 1e9, 3)
            times.setdefault(str(f["kind"]), []).append(entry["recovery_s"])
        per_fault.append(entry)
    return {
        "per_fault": per_fault,
        "max_recovery_s_by_kind": {k: max(v) for k, v in times.items()},
    }
