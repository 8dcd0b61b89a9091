"""``gapless demo``: the embedded simulators, a chaos schedule, one client, and the checker.

Runs everything in one process over real loopback sockets:

1. starts the simulator of each venue (Kraken, Binance and KuCoin by default;
   seeded markets, ground-truth logs), with the 24 h connection lifetime of
   Binance and KuCoin compressed to :data:`DEMO_LIFETIME_S`,
2. schedules a seeded chaos scenario per venue, drawn from the fault kinds its
   simulator implements (design.md §4): sequence gaps, stale snapshots, token
   expiry, 509, rate-limit closes, ``serverShutdown``, bans, aborts, ...,
3. streams books, trades and tickers of a few symbols per venue through one
   ``gapless.connect``,
4. after ``duration`` stops the markets, lets the client converge, closes it,
5. classifies every published event with :mod:`gapless.checker` and compares
   final books (Kraken: the subscribed depth; Binance/KuCoin: top 50 levels).

Planned closes (Binance ``serverShutdown`` and both venues' lifetime) are
replaced make-before-break; ``planned_disconnect_gaps`` counts every ``Gap``
they caused (the goal is 0) and ``handovers`` how many there were, by reason.

Client timeouts are shortened for the demo (dead-peer 3 s, a silent link
pinged after 1.5 s and dead 1.5 s later, staleness 3 s, ping every 5 s) so
recoveries fit in a short run; the production defaults are in the venues'
options classes and :class:`~gapless.runtime.supervisor.RuntimeOptions`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import json
import logging
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from gapless.chaos import (
    EventSpill,
    ResourceSampler,
    SoakSettings,
    consume,
    debug_log_file,
    drive_transport,
    find_secrets,
    read_jsonl,
)
from gapless.checker import check
from gapless.demo_private import (
    BotStats,
    compare_balances,
    compare_orders,
    private_faults,
    run_bot,
)
from gapless.errors import GaplessError
from gapless.events import (
    ConnectionState,
    DeadMansSwitch,
    Event,
    Gap,
    OrderUpdate,
    Reconciled,
)
from gapless.memory import trim_heap_every
from gapless.observe.tasks import dump_tasks
from gapless.runtime.backoff import BackoffPolicy
from gapless.runtime.clock import loop_anchored_wall_clock
from gapless.runtime.feed import Feed, connect
from gapless.runtime.supervisor import RuntimeOptions
from gapless.runtime.transport import TransportOptions
from gapless.secrets import Credentials, Secret
from gapless.sim import (
    CONSUMER_FAULT_KINDS,
    DEFAULT_CHAOS_KINDS,
    TRANSPORT_FAULT_KINDS,
    BinanceSim,
    BinanceSimConfig,
    Fault,
    FaultProxy,
    KrakenSim,
    KucoinSim,
    KucoinSimConfig,
    Scenario,
    SimConfig,
)
from gapless.sim.accounts import DEMO_KRAKEN_ACCOUNT
from gapless.venues import binance, kraken, kucoin
from gapless.venues.base import StreamSpec
from gapless.venues.binance.adapter import BinanceOptions
from gapless.venues.kraken.adapter import KrakenOptions
from gapless.venues.kraken.private import KrakenPrivateOptions
from gapless.venues.kucoin.adapter import KucoinOptions

__all__ = [
    "DEMO_VENUES",
    "DemoResult",
    "DemoStuck",
    "demo_client_options",
    "demo_venue_options",
    "run_demo",
]

_log = logging.getLogger(__name__)

DEMO_VENUES = ("kraken", "binance", "kucoin")
DEFAULT_SYMBOLS = ("BTC/USD", "ETH/USD", "ALGO/USD")
DEFAULT_VENUE_SYMBOLS: dict[str, tuple[str, ...]] = {
    "kraken": DEFAULT_SYMBOLS,
    "binance": ("BTCUSDT", "ETHUSDT"),
    "kucoin": ("BTC-USDT", "ETH-USDT"),
}

#: The compressed "24 h" connection lifetime of the Binance and KuCoin simulators.
DEMO_LIFETIME_S = 15.0
#: The client replaces a connection this long before the lifetime ends.
DEMO_LIFETIME_MARGIN_S = 4.0

#: Fault kinds per venue for the random schedule. Left out: Binance
#: ``silent_stall`` (its dead-peer floor is 65 s, longer than a demo: a known
#: limit, see docs/binance.md) and ``data_stall`` (its bookTicker has no sequence
#: to show withheld frames); KuCoin ``maintenance``; ``lifetime_close`` (the
#: configured lifetime closes connections on its own).
DEMO_FAULT_KINDS: dict[str, tuple[str, ...]] = {
    "binance": (
        "abort",
        "close",
        "burst",
        "malformed",
        "ban",
        "server_shutdown",
        "rate_limit_close",
        "depth_gap",
        "stale_snapshot",
        "rest_429",
        "rest_418",
    ),
    "kucoin": (
        "abort",
        "close",
        "burst",
        "malformed",
        "silent_stall",
        "data_stall",
        "token_expiry",
        "level2_gap",
        "stale_snapshot",
        "topic_limit",
        "instance_down",
        "rest_429",
    ),
}

#: Levels of the Binance and KuCoin books compared at the end (their REST
#: snapshots are deeper than any client keeps verified).
COMPARE_DEPTH = 50


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
        probe_after_s=1.5,
        probe_timeout_s=1.5,
    )
    return kopts, ropts


def demo_private_options(max_closed_orders: int = 10_000) -> KrakenPrivateOptions:
    """Kraken private settings for short runs: a 20 s dead man's switch refreshed
    every 5 s (production: 60 s / 20 s), short ack and answer deadlines."""
    return KrakenPrivateOptions(
        max_closed_orders=max_closed_orders,
        ping_interval_s=5.0,
        pong_timeout_s=3.0,
        subscribe_ack_timeout_s=3.0,
        snapshot_timeout_s=5.0,
        request_timeout_s=3.0,
        dms_timeout_s=20,
        dms_refresh_s=5.0,
        dms_answer_timeout_s=3.0,
        reconcile_retry_s=0.5,
    )


def demo_venue_options() -> tuple[BinanceOptions, KucoinOptions]:
    """Binance and KuCoin settings for short runs (lifetime as the simulators')."""
    bopts = BinanceOptions(
        subscribe_ack_timeout_s=3.0,
        snapshot_timeout_s=5.0,
        lifetime_s=DEMO_LIFETIME_S,
        lifetime_margin_s=DEMO_LIFETIME_MARGIN_S,
    )
    kuopts = KucoinOptions(
        subscribe_ack_timeout_s=3.0,
        lifetime_s=DEMO_LIFETIME_S,
        lifetime_margin_s=DEMO_LIFETIME_MARGIN_S,
    )
    return bopts, kuopts


@dataclass(slots=True)
class DemoResult:
    summary: dict[str, Any]
    events: list[Event] = field(default_factory=list)
    truth: list[dict[str, Any]] = field(default_factory=list)
    #: soak only: ``[seconds, rss_mb, open_fds, asyncio_tasks]`` over the run
    samples: list[list[float]] = field(default_factory=list)


def _truth_path(path: str | None, venue: str, venues: Sequence[str]) -> str | None:
    """One truth file per simulator: the path itself for a single venue, else
    ``<path>.<venue>``."""
    if path is None:
        return None
    return path if len(venues) == 1 else f"{path}.{venue}"


def _split(scenario: Scenario, kinds: Mapping[str, tuple[str, ...]]) -> dict[str, Scenario]:
    """A scenario file's faults, each to every venue whose simulator has the kind."""
    out: dict[str, list[Fault]] = {v: [] for v in kinds}
    for f in scenario.faults:
        for venue, known in kinds.items():
            if f.kind in known:
                out[venue].append(f)
    return {v: Scenario(fs) for v, fs in out.items()}


async def run_demo(
    duration_s: float = 60.0,
    seed: int = 7,
    *,
    venues: Sequence[str] = DEMO_VENUES,
    symbols: tuple[str, ...] = DEFAULT_SYMBOLS,
    venue_symbols: Mapping[str, tuple[str, ...]] | None = None,
    depth: int = 10,
    scenario: Scenario | None = None,
    min_faults: int = 12,
    tick_rate_hz: float = 40.0,
    truth_path: str | None = None,
    capture: str | None = None,
    progress: Callable[[dict[str, Any]], None] | None = None,
    converge_timeout_s: float = 20.0,
    private: bool = False,
    shutdown_timeout_s: float = 120.0,
    soak: SoakSettings | None = None,
) -> DemoResult:
    """Run the demo. ``symbols`` are Kraken's; ``venue_symbols`` overrides the
    others'. ``min_faults`` is the Kraken schedule's minimum; Binance and KuCoin
    get at least ``max(4, min_faults // 2)`` each (more while the run has room).

    Everything after the market stops (quiesce, converge, closing the client
    and the simulators) must finish within ``shutdown_timeout_s``; past it the
    pending asyncio tasks and their stacks are written to stderr and
    :class:`DemoStuck` is raised, so a wedged shutdown is reported, not waited on.

    ``soak`` (see :mod:`gapless.soak`) adds a :class:`~gapless.sim.FaultProxy` in
    front of every WebSocket endpoint with transport faults in each venue's
    schedule, faults in the consumer, resource samples (``DemoResult.samples``)
    and smaller queues; truth and delivered events then go to files in
    ``soak.spill_dir`` instead of memory, and are read back for the check.
    """
    venues = tuple(dict.fromkeys(venues))
    unknown = [v for v in venues if v not in DEMO_VENUES]
    if unknown or not venues:
        raise ValueError(f"unknown venues {unknown} (known: {', '.join(DEMO_VENUES)})")
    if private and "kraken" not in venues:
        raise ValueError("--private trades the Kraken simulator's demo account: include kraken")
    syms = {**DEFAULT_VENUE_SYMBOLS, **(venue_symbols or {}), "kraken": tuple(symbols)}
    events: list[Event] = []
    extra_faults: list[dict[str, Any]] = []  # transport and consumer faults (soak)
    sampler = ResourceSampler(soak.sample_every_s) if soak else None

    def tpath(venue: str) -> str | None:
        if soak is not None:
            return str(Path(soak.spill_dir) / f"truth.{venue}.jsonl")
        return _truth_path(truth_path, venue, venues)

    async with contextlib.AsyncExitStack() as stack:
        # entered first, left last: sees a cancellation of its own from any step
        watch = stack.enter_context(_ShutdownWatch(shutdown_timeout_s))
        sims: dict[str, Any] = {}
        if "kraken" in venues:
            sims["kraken"] = await stack.enter_async_context(
                KrakenSim(
                    SimConfig(
                        seed=seed,
                        symbols=syms["kraken"],
                        tick_rate_hz=tick_rate_hz,
                        truth_path=tpath("kraken"),
                        truth_in_memory=soak is None,
                        keep_closed_orders=(
                            None if soak is None else soak.keep_closed_orders * 3 // 2
                        ),
                    )
                )
            )
        if "binance" in venues:
            sims["binance"] = await stack.enter_async_context(
                BinanceSim(
                    BinanceSimConfig(
                        seed=seed,
                        symbols=syms["binance"],
                        tick_rate_hz=tick_rate_hz,
                        lifetime_s=DEMO_LIFETIME_S,
                        truth_path=tpath("binance"),
                        truth_in_memory=soak is None,
                    )
                )
            )
        if "kucoin" in venues:
            sims["kucoin"] = await stack.enter_async_context(
                KucoinSim(
                    KucoinSimConfig(
                        seed=seed,
                        symbols=syms["kucoin"],
                        tick_rate_hz=tick_rate_hz,
                        lifetime_s=DEMO_LIFETIME_S,
                        truth_path=tpath("kucoin"),
                        truth_in_memory=soak is None,
                    )
                )
            )
        transport = soak is not None and soak.transport_faults
        scenarios = _scenarios(
            venues,
            scenario,
            duration_s,
            seed,
            min_faults,
            extra_kinds=TRANSPORT_FAULT_KINDS if transport else (),
        )
        if private and scenario is None:
            extra = private_faults(duration_s, seed)
            scenarios["kraken"] = Scenario([*scenarios["kraken"].faults, *extra])
        transport_scenarios = {v: _only(sc, TRANSPORT_FAULT_KINDS) for v, sc in scenarios.items()}
        scenarios = {v: _only(sc, TRANSPORT_FAULT_KINDS, keep=False) for v, sc in scenarios.items()}
        consumer_scenario = Scenario()
        if soak is not None and soak.consumer_faults and scenario is None:
            consumer_scenario = Scenario.chaos(
                duration_s, seed * 97 + 5, min_faults=2, kinds=CONSUMER_FAULT_KINDS
            )
        # transport faults: a proxy in front of each WebSocket listener
        proxies: dict[str, list[FaultProxy]] = {}
        if transport:
            for venue, sim in sims.items():
                ports = sim.ports if venue == "kucoin" else [sim.port]
                proxies[venue] = [
                    await stack.enter_async_context(FaultProxy(p, seed=seed + i))
                    for i, p in enumerate(ports)
                ]
            if "kucoin" in sims:
                ku = sims["kucoin"]
                ku.advertise(
                    [px.rewrite(u) for px, u in zip(proxies["kucoin"], ku.ws_urls, strict=True)]
                )

        def ws(venue: str, url: str) -> str:
            return proxies[venue][0].rewrite(url) if venue in proxies else url

        kopts, ropts = demo_client_options(
            ws("kraken", sims["kraken"].url) if "kraken" in sims else ""
        )
        bopts, kuopts = demo_venue_options()
        # wall stamps tied to the loop clock, like the simulators': consistent in virtual time
        clock = loop_anchored_wall_clock()
        ropts = dataclasses.replace(ropts, wall_clock=clock)
        if soak is not None:
            ropts = dataclasses.replace(ropts, queue_size=soak.frame_queue_size)
            capture = str(Path(soak.spill_dir) / "capture.jsonl")
            stack.enter_context(debug_log_file(Path(soak.spill_dir) / "debug.log"))
        specs: list[StreamSpec] = []
        urls: dict[str, str] = {}
        if "kraken" in sims:
            for s in syms["kraken"]:
                specs += [kraken.book(s, depth=depth), kraken.trades(s), kraken.ticker(s)]
        if "binance" in sims:
            urls |= {
                "binance": ws("binance", sims["binance"].ws_url),
                "binance_rest": sims["binance"].rest_url,
            }
            for s in syms["binance"]:
                specs += [binance.book(s), binance.trades(s), binance.book_ticker(s)]
        if "kucoin" in sims:
            urls["kucoin_rest"] = sims["kucoin"].rest_url
            for s in syms["kucoin"]:
                specs += [kucoin.book(s), kucoin.trades(s), kucoin.ticker(s)]
        credentials: dict[str, Credentials] = {}
        if private:
            ksim = sims["kraken"]
            specs += [kraken.executions(), kraken.balances()]
            urls |= {"kraken_auth": ws("kraken", ksim.auth_url), "kraken_rest": ksim.rest_url}
            credentials["kraken"] = Credentials(
                "kraken",
                Secret(DEMO_KRAKEN_ACCOUNT.api_key),
                Secret(DEMO_KRAKEN_ACCOUNT.api_secret),
            )
        loop = asyncio.get_running_loop()
        started = loop.time()
        feed = connect(
            *specs,
            urls=urls,
            kraken=kopts if "kraken" in sims else None,
            binance=bopts,
            kucoin=kuopts,
            runtime=ropts,
            capture=capture,
            credentials=credentials,
            kraken_private=(
                demo_private_options(soak.keep_closed_orders if soak else 10_000)
                if private
                else None
            ),
            queue_size=soak.queue_size if soak is not None else 10_000,
        )
        bot_stats = BotStats()
        private_diffs: tuple[list[str], list[str]] = ([], [])
        spill = EventSpill(Path(soak.spill_dir) / "events.pickle") if soak else None
        if spill is not None:
            stack.callback(spill.close)  # closed on any way out (load() closes it too)
        helpers: list[asyncio.Task[None]] = []
        async with feed:
            for venue, sim in sims.items():
                sim.schedule(scenarios[venue])
            for venue, pxs in proxies.items():
                helpers.append(
                    asyncio.create_task(
                        drive_transport(venue, pxs, transport_scenarios[venue], clock, extra_faults)
                    )
                )
            if sampler is not None:
                helpers.append(asyncio.create_task(sampler.run(started)))
            if soak is not None and soak.trim_heap:
                helpers.append(asyncio.create_task(trim_heap_every(soak.sample_every_s)))
            consumer = asyncio.create_task(
                _consume(feed, events)
                if spill is None
                else consume(feed, spill, consumer_scenario, clock, extra_faults)
            )
            stop_bot = asyncio.Event()
            bot = (
                asyncio.create_task(run_bot(feed, syms["kraken"], seed, stop_bot, bot_stats))
                if private
                else None
            )
            try:
                while (elapsed := loop.time() - started) < duration_s:
                    await asyncio.sleep(min(0.5, max(0.0, duration_s - elapsed)))
                    if progress is not None:
                        progress(_progress(feed, sims, events, elapsed))
                watch.arm()
                if sampler is not None:
                    sampler.sample(loop.time() - started)
                for helper in helpers:  # transport faults off before the client converges
                    helper.cancel()
                if helpers:
                    await asyncio.wait(helpers, timeout=5.0)
                stop_bot.set()
                if bot is not None:
                    await bot
                for sim in sims.values():
                    await sim.quiesce()
                final = _final_books(sims, depth)
                await _converge(feed, final, converge_timeout_s)
                if private:
                    private_diffs = await _converge_private(
                        feed,
                        sims["kraken"],
                        converge_timeout_s,
                        soak.keep_closed_orders if soak else None,
                    )
            finally:
                stop_bot.set()
                for task in (consumer, bot, *helpers):
                    if task is not None and not task.done():
                        task.cancel()
                        with contextlib.suppress(asyncio.CancelledError):
                            await task
            report_books = _freeze_books(
                {(sym, d): _client_book(feed, venue, sym, d) for venue, sym, d in final}
            )
            valid_at_end = {k: (v.valid if v else False) for k, v in report_books.items()}
            await feed.aclose()
            if spill is not None:
                events.extend(spill.load())
            events.extend(feed.drain())
            stats = feed.stats()
            counters = [c for a in feed.adapters for c in a.counters().values()]
        truth = [r for sim in sims.values() for r in sim.truth]
        sim_stats = {v: _sim_stats(sim) for v, sim in sims.items()}
        proxy_stats = {v: [dataclasses.asdict(p.stats) for p in pxs] for v, pxs in proxies.items()}
        tokens = sims["kraken"].issued_tokens() if private else []
        forgotten = sims["kraken"].forgotten_orders() if private else 0
    if soak is not None:  # the simulators closed their truth files on the way out
        truth = [*read_jsonl(p for v in sims if (p := tpath(v)) is not None), *extra_faults]
    want = {(sym, d): book for (_venue, sym, d), book in final.items()}
    report = check(truth, events, final_books=want, client_books=report_books)
    faults = sorted((r for r in truth if r.get("k") == "fault"), key=lambda r: int(r["ts_ns"]))
    summary: dict[str, Any] = {"venues": list(sims), **report.summary()}
    summary.update(
        {
            "reconnects": sum(max(0, s["connects"] - 1) for s in stats.values()),
            "handovers": _handovers(events),
            "planned_disconnect_gaps": sum(s["planned_disconnect_gaps"] for s in stats.values()),
            "checksum_ok": sum(getattr(c, "checksum_ok", 0) for c in counters),
            "checksum_mismatch": sum(getattr(c, "checksum_mismatch", 0) for c in counters),
            "sequence_gaps": sum(
                1 for e in events if isinstance(e, Gap) and e.cause == "sequence_gap"
            ),
            "faults": len(faults),
            "fault_kinds": dict(Counter(f"{_venue_of(f)}:{f['kind']}" for f in faults)),
            "recovery": _recoveries(faults, events),
            "books_valid_at_end": all(valid_at_end.values()),
            "bad_frames": sum(s["bad_frames"] for s in stats.values()),
            "per_venue": _per_venue(report.streams, events, sims),
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
    if private:
        order_diffs, balance_diffs = private_diffs
        summary["orders_equal"] = not order_diffs
        summary["balances_equal"] = not balance_diffs
        summary["private"] = _private_summary(events, bot_stats, truth)
        if soak is not None:  # bounded histories: evicting is part of the run
            summary["private"]["keep_closed_orders"] = soak.keep_closed_orders
            summary["private"]["sim_forgotten_orders"] = forgotten
        if order_diffs:
            summary["order_diffs"] = order_diffs[:10]
        if balance_diffs:
            summary["balance_diffs"] = balance_diffs[:10]
    summary["sim"] = {
        v: {k: x for k, x in st.items() if isinstance(x, (int, float, str))}
        for v, st in sim_stats.items()
    }
    if proxy_stats:
        summary["proxy"] = proxy_stats
    if soak is not None:
        summary["reconnects_by_connection"] = {
            name: max(0, s["connects"] - 1) for name, s in stats.items()
        }
        # the DEBUG log (exceptions and tracebacks included), the raw capture,
        # every delivered event (reasons and error texts), the feed's counters
        # and this report
        summary["secrets"] = find_secrets(
            _canaries(tokens) if private else {},
            [
                Path(soak.spill_dir) / name
                for name in ("debug.log", "capture.jsonl", "events.pickle")
            ],
            texts={
                "feed stats": repr(stats),
                "report": json.dumps(summary, default=str),
            },
        )
    return DemoResult(
        summary=summary,
        events=events,
        truth=truth,
        samples=sampler.samples if sampler is not None else [],
    )


class DemoStuck(GaplessError):
    """The demo's shutdown overran its deadline (a bug: every wait is bounded)."""


class _ShutdownWatch:
    """A loop timer armed when the market stops: if the run is still going
    when it fires, dump the pending tasks and cancel the run's task; on the
    way out, that cancellation becomes :class:`DemoStuck`."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.fired = False
        self._handle: asyncio.TimerHandle | None = None

    def __enter__(self) -> _ShutdownWatch:
        return self

    def __exit__(self, et: type[BaseException] | None, *_: object) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if self.fired and et is not None and issubclass(et, asyncio.CancelledError):
            raise DemoStuck(
                f"the demo did not shut down within {self.timeout_s:g} s after the "
                "market stopped (pending tasks written to stderr)"
            ) from None

    def arm(self) -> None:
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        if task is None or self._handle is not None:
            return

        def fire() -> None:
            self.fired = True
            _log.error(
                "demo: shutdown still running %.0f s after the market stopped; pending tasks:",
                self.timeout_s,
            )
            dump_tasks(loop)
            task.cancel()

        self._handle = loop.call_later(self.timeout_s, fire)


def _scenarios(
    venues: Sequence[str],
    scenario: Scenario | None,
    duration_s: float,
    seed: int,
    min_faults: int,
    extra_kinds: tuple[str, ...] = (),
) -> dict[str, Scenario]:
    kinds: dict[str, tuple[str, ...]] = {"kraken": tuple(DEFAULT_CHAOS_KINDS), **DEMO_FAULT_KINDS}
    kinds = {v: kinds[v] + extra_kinds for v in venues}
    if scenario is not None:
        return _split(scenario, kinds)
    out: dict[str, Scenario] = {}
    for i, venue in enumerate(venues):
        if venue == "kraken":
            out[venue] = Scenario.chaos(duration_s, seed, min_faults=min_faults, kinds=kinds[venue])
        else:
            out[venue] = Scenario.chaos(
                duration_s, seed * 31 + i, min_faults=max(4, min_faults // 2), kinds=kinds[venue]
            )
    return out


def _canaries(tokens: Sequence[str]) -> dict[str, str]:
    """The demo account's secrets and every token the simulator issued."""
    acct = DEMO_KRAKEN_ACCOUNT
    out = {
        "api key": acct.api_key,
        "api secret": acct.api_secret,
        "api secret (hex)": base64.b64decode(acct.api_secret).hex(),
    }
    out |= {f"token #{i}": t for i, t in enumerate(tokens)}
    return out


def _only(scenario: Scenario, kinds: Sequence[str], *, keep: bool = True) -> Scenario:
    """The faults of ``scenario`` whose kind is in ``kinds`` (``keep=False``: the others)."""
    return Scenario(f for f in scenario if (f.kind in kinds) == keep)


async def _converge_private(
    feed: Feed, sim: Any, timeout_s: float, client_keep: int | None
) -> tuple[list[str], list[str]]:
    """Wait (bounded) until the client's account view equals the simulator's;
    returns the remaining differences (orders, balances). ``client_keep``: the
    client's closed-order retention when it is bounded (a soak)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        orders = compare_orders(
            feed.orders("kraken"),
            sim.final_orders(),
            client_keep=client_keep,
            sim_forgot=sim.forgotten_orders(),
        )
        balances = compare_balances(feed.balances("kraken"), sim.final_balances())
        if (not orders and not balances) or loop.time() >= deadline:
            return orders, balances
        await asyncio.sleep(0.1)


def _private_summary(
    events: list[Event], bot: BotStats, truth: list[dict[str, Any]]
) -> dict[str, Any]:
    private_streams = ("kraken:executions:*", "kraken:balances:*")
    gaps = [e for e in events if isinstance(e, Gap) and e.stream in private_streams]
    recs = [e for e in events if isinstance(e, Reconciled)]
    dms = Counter(e.state for e in events if isinstance(e, DeadMansSwitch))
    sources = Counter(e.source for e in events if isinstance(e, OrderUpdate))
    return {
        "bot": bot.summary(),
        "order_events_by_source": dict(sources),
        "gaps": dict(Counter(f"{g.stream.split(':')[1]}:{g.cause.value}" for g in gaps)),
        "reconciliations": dict(Counter(r.reason for r in recs)),
        "reconciled_orders": sum(r.orders_changed for r in recs),
        "reconciled_balances": sum(r.balances_changed for r in recs),
        "incomplete_reconciliations": sum(1 for r in recs if not r.complete),
        "dead_mans_switch": dict(dms),
        "dms_fired_in_sim": sum(1 for r in truth if r.get("k") == "dms_fired"),
        "sim_orders": sum(1 for r in truth if r.get("k") == "order"),
    }


def _venue_of(rec: Mapping[str, Any]) -> str:
    return str(rec.get("venue", "kraken"))


def _sim_stats(sim: Any) -> dict[str, Any]:
    st = sim.stats
    return dict(st() if callable(st) else st)


def _final_books(sims: Mapping[str, Any], depth: int) -> dict[tuple[str, str, int], dict[str, Any]]:
    """Every simulator's final books keyed ``(venue, symbol, levels compared)``."""
    out: dict[tuple[str, str, int], dict[str, Any]] = {}
    for venue, sim in sims.items():
        books = sim.final_books()
        if venue == "kraken":
            for (sym, d), book in books.items():
                if d == depth:
                    out[("kraken", sym, d)] = book
        else:
            n = COMPARE_DEPTH
            for sym, book in books.items():
                out[(venue, sym, n)] = {"bids": book["bids"][:n], "asks": book["asks"][:n]}
    return out


def _client_book(feed: Feed, venue: str, symbol: str, depth: int) -> Any:
    return feed.book(symbol, venue=venue, depth=depth if venue == "kraken" else None)


async def _consume(feed: Feed, sink: list[Event]) -> None:
    async for ev in feed:
        sink.append(ev)


async def _converge(
    feed: Feed, final: Mapping[tuple[str, str, int], Mapping[str, Any]], timeout_s: float
) -> None:
    """Wait (bounded) until every client book is valid and equals the sim's final
    book, and every stream is live again."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while loop.time() < deadline:
        done = all(
            _matches(_client_book(feed, venue, sym, d), want, d)
            for (venue, sym, d), want in final.items()
        )
        if done and all(
            a.stream_state(k) in ("live", "rejected") for a in feed.adapters for k in a.streams()
        ):
            return
        await asyncio.sleep(0.1)


def _matches(view: Any, want: Mapping[str, Any], n: int) -> bool:
    if view is None or not view.valid:
        return False
    if "checksum" in want:
        return bool(view.checksum() == want["checksum"])
    for side, levels in (("bids", view.bids(n)), ("asks", view.asks(n))):
        expected = want[side]
        if len(levels) != len(expected):
            return False
        for lv, (price, qty) in zip(levels, expected, strict=True):
            if lv.price != Decimal(price) or lv.qty != Decimal(qty):
                return False
    return True


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


def _progress(
    feed: Feed, sims: Mapping[str, Any], events: list[Event], elapsed: float
) -> dict[str, Any]:
    stats = feed.stats()
    gaps = sum(1 for e in events if isinstance(e, Gap))
    return {
        "elapsed": elapsed,
        "connections": stats,
        "events": len(events),
        "gaps": gaps,
        "faults": sum(
            sum(_sim_stats(sim).get("faults_injected", {}).values()) for sim in sims.values()
        ),
        "last_states": [
            (e.conn, e.state, e.reason) for e in events[-400:] if isinstance(e, ConnectionState)
        ][-3:],
    }


def _handovers(events: list[Event]) -> dict[str, int]:
    """Make-before-break handovers by what planned them (and how many were forced)."""
    out: Counter[str] = Counter()
    for e in events:
        if isinstance(e, ConnectionState) and e.reason.startswith("make-before-break handover"):
            out["total"] += 1
            out[
                f"{e.venue}:{'server_shutdown' if 'serverShutdown' in e.reason else 'lifetime'}"
            ] += 1
            if "forced" in e.reason:
                out["forced"] += 1
    return dict(out)


def _per_venue(
    streams: Mapping[str, Any], events: list[Event], sims: Mapping[str, Any]
) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for venue in sims:
        rows = [r for key, r in streams.items() if key.startswith(f"{venue}:")]
        out[venue] = {
            "published": sum(r.published for r in rows),
            "delivered_once": sum(r.delivered_once for r in rows),
            "in_declared_gaps": sum(r.in_declared_gaps for r in rows),
            "lost": sum(r.lost for r in rows),
            "duplicated": sum(r.duplicated for r in rows),
            "unexpected": sum(r.unexpected for r in rows),
            "gaps": sum(1 for e in events if isinstance(e, Gap) and e.venue == venue),
        }
    return out


def _recoveries(faults: list[dict[str, Any]], events: list[Event]) -> dict[str, Any]:
    """For each fault: did its venue's connection leave LIVE, and when was it LIVE again?

    Events are taken in delivery order (timestamps may tie in virtual time); a
    fault's window ends at the next fault of the same venue."""
    states = [e for e in events if isinstance(e, ConnectionState)]
    per_fault = []
    times: dict[str, list[float]] = {}
    for i, f in enumerate(faults):
        venue = _venue_of(f)
        t0 = int(f["ts_ns"])
        t_next = next((int(g["ts_ns"]) for g in faults[i + 1 :] if _venue_of(g) == venue), None)
        mine = [e for e in states if e.venue == venue]
        disrupted = next(
            (
                j
                for j, e in enumerate(mine)
                if e.local_ts_ns >= t0
                and e.state not in ("LIVE", "CLOSED")  # CLOSED: the run ended
                and (t_next is None or e.local_ts_ns < t_next)
            ),
            None,
        )
        kind = f"{venue}:{f['kind']}"
        if disrupted is None:
            per_fault.append({"kind": kind, "disrupted": False, "recovered": True})
            continue
        live = next((e for e in mine[disrupted + 1 :] if e.state == "LIVE"), None)
        entry: dict[str, Any] = {"kind": kind, "disrupted": True, "recovered": live is not None}
        entry["detected_s"] = round(max(0, mine[disrupted].local_ts_ns - t0) / 1e9, 3)
        if live is not None:
            entry["recovery_s"] = round(max(0, live.local_ts_ns - t0) / 1e9, 3)
            times.setdefault(kind, []).append(entry["recovery_s"])
        per_fault.append(entry)
    return {
        "per_fault": per_fault,
        "max_recovery_s_by_kind": {k: max(v) for k, v in times.items()},
    }
