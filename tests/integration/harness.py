"""The fault-matrix harness shared by the Binance and KuCoin integration tests.

One run: start the venue's simulator, connect ``gapless`` to it over loopback
with short timeouts, schedule the faults, let the market run, quiesce, wait
(bounded) for the client to converge, drain its events, then run
:func:`gapless.checker.check` against the simulator's truth and final books
(top 50 levels). :func:`assert_no_silent_loss` states the promise every case
must keep. A :class:`Venue` holds what differs per venue. Virtual time
(``looptime``) is the caller's marker.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Callable, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Any, Generic, NamedTuple, Protocol, Self, TypeVar

import gapless
from gapless.checker import CheckReport, check
from gapless.demo import _freeze_books, demo_client_options
from gapless.events import Event, Gap, GapCause
from gapless.runtime.clock import loop_anchored_wall_clock
from gapless.runtime.supervisor import RuntimeOptions
from gapless.sim import Fault, Scenario
from gapless.venues.base import StreamSpec

DEPTH = 50  # levels of the final books compared


class VenueSim(Protocol):
    """What the harness uses of a venue simulator (``BinanceSim``, ``KucoinSim``)."""

    @property
    def rest_url(self) -> str: ...

    @property
    def truth(self) -> list[dict[str, Any]]: ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(self, *exc_info: Any) -> bool | None: ...

    def schedule(self, scenario: Scenario | Sequence[Fault]) -> None: ...

    async def quiesce(self, drain_timeout_s: float = 5.0) -> None: ...

    def final_books(self) -> dict[str, dict[str, Any]]: ...


SimT = TypeVar("SimT", bound=VenueSim)


@dataclass(frozen=True)
class Venue(Generic[SimT]):
    """One venue under test: its simulator, streams, URLs and client options."""

    name: str  # the venue name of the feed, the checker and ``connect``'s options keyword
    symbols: tuple[str, ...]
    config: Callable[..., Any]  # the simulator's config class
    sim: Callable[[Any], SimT]  # the simulator class (built from a config)
    streams: tuple[Callable[[str], StreamSpec], ...]  # subscribed for every symbol
    urls: Callable[[SimT], dict[str, str]]  # ``connect(urls=...)`` for a started simulator
    options: Any  # the venue options (short timeouts), passed as ``connect(<name>=...)``


@dataclass(frozen=True)
class Case:
    """One row of a fault matrix: the faults and the gap causes they must declare."""

    faults: list[Fault]
    causes: set[GapCause]
    run_s: float = 12.0


class Run(NamedTuple):
    report: CheckReport
    events: list[Event]
    truth: list[dict[str, Any]]
    books: dict[str, Any]  # the client's final books (whole), by symbol


def runtime_options() -> RuntimeOptions:
    """The demo's runtime options, with wall stamps tied to the loop clock like the simulator's."""
    _, ropts = demo_client_options("ws://unused")
    return dataclasses.replace(ropts, wall_clock=loop_anchored_wall_clock())


def gap_causes(events: list[Event]) -> set[GapCause]:
    return {e.cause for e in events if isinstance(e, Gap)}


def violations(truth: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Venue rules the client broke, as the simulator recorded them."""
    return [t for t in truth if t.get("k") == "violation"]


async def run_faults(
    venue: Venue[SimT],
    faults: list[Fault],
    run_s: float = 12.0,
    *,
    capture: str | None = None,
    **sim_kw: Any,
) -> Run:
    """One run of ``faults`` against ``venue``, checked (see the module docstring);
    ``capture`` writes the client's raw capture there."""
    config = venue.config(seed=5, symbols=venue.symbols, tick_rate_hz=30.0, **sim_kw)
    events: list[Event] = []
    async with venue.sim(config) as sim:
        ropts = runtime_options()
        specs = [f(s) for s in venue.symbols for f in venue.streams]
        options = {venue.name: venue.options}
        async with gapless.connect(
            *specs, urls=venue.urls(sim), runtime=ropts, capture=capture, **options
        ) as feed:

            async def consume() -> None:
                async for ev in feed:
                    events.append(ev)

            task = asyncio.create_task(consume())
            sim.schedule(Scenario(faults))
            await asyncio.sleep(run_s)
            await sim.quiesce()
            final = sim.final_books()
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 20.0
            while loop.time() < deadline:
                views = [feed.book(s, venue=venue.name) for s in venue.symbols]
                if all(v is not None and v.valid for v in views) and all(
                    a.stream_state(k) in ("live", "rejected")
                    for a in feed.adapters
                    for k in a.streams()
                ):
                    break
                await asyncio.sleep(0.2)
            await asyncio.sleep(1.0)
            whole = _freeze_books({(s, 0): feed.book(s, venue=venue.name) for s in venue.symbols})
            frozen = {(s, DEPTH): book for (s, _), book in whole.items()}
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await feed.aclose()
            events.extend(feed.drain())
        truth = list(sim.truth)
    want = {
        (s, DEPTH): {"bids": v["bids"][:DEPTH], "asks": v["asks"][:DEPTH]} for s, v in final.items()
    }
    report = check(truth, events, final_books=want, client_books=frozen, venue=venue.name)
    return Run(report, events, truth, {s: book for (s, _), book in whole.items()})


def assert_no_silent_loss(run: Run, causes: AbstractSet[GapCause] = frozenset()) -> None:
    """The promise: every published event delivered once or inside a declared gap (among
    them gaps of every cause in ``causes``), final books equal to the simulator's, and
    no venue rule broken."""
    report = run.report
    assert report.published > 300
    assert report.lost == 0, [s.lost_examples for s in report.streams.values() if s.lost]
    assert report.duplicated == 0
    assert report.unexpected == 0
    assert report.books_equal, report.book_diffs
    assert causes <= gap_causes(run.events)
    assert not violations(run.truth), "the client broke a venue rule"


async def check_case(venue: Venue[SimT], case: Case) -> None:
    """Run one fault-matrix case against ``venue`` and assert the promise."""
    run = await run_faults(venue, case.faults, case.run_s)
    assert_no_silent_loss(run, case.causes)
