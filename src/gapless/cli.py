"""The ``gapless`` command line.

Commands:

- ``gapless demo``   simulator + chaos + client + integrity report (the quick start)
- ``gapless stream`` stream venue data (human-readable or ``--jsonl``), optional raw ``--capture``
- ``gapless sim``    run the Kraken simulator with a scenario, for your own bots
- ``gapless replay`` re-verify a raw capture offline
- ``gapless soak``   every venue under sustained chaos, with resource samples and a secrets canary
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.live import Live
from rich.table import Table

from gapless.errors import ConfigError, GaplessError
from gapless.events import (
    BadFrame,
    BookSnapshot,
    BookUpdate,
    ConnectionState,
    Event,
    Gap,
    SinkFailed,
    SubscriptionRejected,
    Ticker,
    Trade,
    VenueStatus,
    WatchdogFired,
    event_to_dict,
)
from gapless.observe.tasks import install_task_dump
from gapless.venues.base import StreamSpec

app = typer.Typer(
    name="gapless",
    help="Real-time crypto-exchange data that survives every WebSocket failure "
    "and never loses data silently.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
err = Console(stderr=True)
out = Console()


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.WARNING),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def parse_spec(text: str) -> StreamSpec:
    """``kraken:book:BTC/USD:10``, ``kraken:trade:BTC/USD``, ``kraken:ticker:ETH/USD``."""
    from gapless.venues import kraken

    parts = text.split(":")
    if len(parts) < 3:
        raise ConfigError(f"stream spec must look like venue:channel:SYMBOL[:depth], got {text!r}")
    venue, channel, symbol = parts[0].lower(), parts[1].lower(), parts[2]
    if venue != "kraken":
        raise ConfigError(f"unsupported venue {venue!r} (supported: kraken)")
    if channel == "book":
        depth = int(parts[3]) if len(parts) > 3 else 10
        return kraken.book(symbol, depth=depth)
    if channel in ("trade", "trades"):
        return kraken.trades(symbol)
    if channel == "ticker":
        return kraken.ticker(symbol)
    raise ConfigError(f"unknown channel {channel!r} (book, trade, ticker)")


def _stop_event(duration: float | None) -> asyncio.Event:
    """Set on Ctrl-C / SIGTERM, or after ``duration`` seconds."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError):
        loop.add_signal_handler(signal.SIGINT, stop.set)
        loop.add_signal_handler(signal.SIGTERM, stop.set)
    if duration is not None:
        loop.call_later(duration, stop.set)
    return stop


# ---------------------------------------------------------------------------- demo
@app.command()
def demo(
    duration: Annotated[float, typer.Option(help="Seconds of simulated market.")] = 60.0,
    seed: Annotated[int, typer.Option(help="Seed for the market and the chaos schedule.")] = 7,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print the report as one JSON object on the last line.")
    ] = False,
    venues: Annotated[
        str, typer.Option(help="Comma-separated venues to simulate and stream.")
    ] = "kraken,binance,kucoin",
    symbols: Annotated[
        str, typer.Option(help="Comma-separated Kraken symbols.")
    ] = "BTC/USD,ETH/USD,ALGO/USD",
    binance_symbols: Annotated[
        str, typer.Option(help="Comma-separated Binance symbols.")
    ] = "BTCUSDT,ETHUSDT",
    kucoin_symbols: Annotated[
        str, typer.Option(help="Comma-separated KuCoin symbols.")
    ] = "BTC-USDT,ETH-USDT",
    depth: Annotated[int, typer.Option(help="Kraken book depth (10, 25, 100, 500, 1000).")] = 10,
    scenario: Annotated[
        Path | None,
        typer.Option(
            help="Fault scenario JSON file instead of random chaos (each fault goes to every "
            "venue whose simulator implements its kind)."
        ),
    ] = None,
    min_faults: Annotated[
        int,
        typer.Option(help="Faults in Kraken's random schedule (Binance, KuCoin: half, >= 4)."),
    ] = 12,
    truth: Annotated[
        Path | None,
        typer.Option(help="Write the ground truth here (PATH.<venue> with several venues)."),
    ] = None,
    capture: Annotated[
        Path | None, typer.Option(help="Write the client's raw capture here.")
    ] = None,
    private: Annotated[
        bool,
        typer.Option(
            "--private",
            help="Also trade the Kraken simulator's demo account: a bot places and cancels "
            "orders through gapless while orders fill during disconnects, private sequence "
            "jumps and token expiry; the report adds orders_equal and balances_equal.",
        ),
    ] = False,
    log_level: Annotated[str, typer.Option(help="Logging level (stderr).")] = "WARNING",
) -> None:
    """Run the venue simulators with a chaos schedule and one client, then print the
    integrity report (exit 1 if anything was lost, duplicated or unexpected, a book
    differs, a planned close caused a gap, or with --private the account view differs
    from the simulator's)."""
    from gapless.demo import run_demo
    from gapless.sim import Scenario

    _setup_logging(log_level)
    sc = Scenario.load(scenario) if scenario else None
    live: Live | None = None
    view = _Progress()

    def progress(p: dict[str, Any]) -> None:
        if live is not None:
            live.update(view.table(p))

    async def main() -> Any:
        install_task_dump()
        return await run_demo(
            duration,
            seed,
            venues=_csv(venues),
            symbols=_csv(symbols),
            venue_symbols={"binance": _csv(binance_symbols), "kucoin": _csv(kucoin_symbols)},
            depth=depth,
            scenario=sc,
            min_faults=min_faults,
            truth_path=str(truth) if truth else None,
            capture=str(capture) if capture else None,
            progress=progress,
            private=private,
        )

    try:
        if json_out:
            result = asyncio.run(main())
        else:
            err.print(
                f"[bold]gapless demo[/]: {venues}, {duration:g} s, seed {seed}, "
                "simulators on loopback"
            )
            with Live(view.table(None), console=err, refresh_per_second=4) as lv:
                live = lv
                result = asyncio.run(main())
    except (GaplessError, ValueError) as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None
    summary = result.summary
    if json_out:
        print(json.dumps(summary, sort_keys=True))
    else:
        _print_report(summary)
    raise typer.Exit(0 if _verdict(summary) else 1)


# ---------------------------------------------------------------------------- soak
@app.command()
def soak(
    duration: Annotated[
        float, typer.Option(help="Seconds of chaos (then converge and check).")
    ] = 600.0,
    seed: Annotated[int, typer.Option(help="Seed for the markets and every fault schedule.")] = 3,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print the report as one JSON object on the last line.")
    ] = False,
    venues: Annotated[
        str, typer.Option(help="Comma-separated venues to simulate and stream.")
    ] = "kraken,binance,kucoin",
    private: Annotated[
        bool,
        typer.Option(
            help="Also run the Kraken private feed with a trading bot (the account "
            "view is compared at the end)."
        ),
    ] = True,
    keep: Annotated[
        Path | None,
        typer.Option(
            help="Keep the truth files, spilled events, DEBUG log and raw capture in "
            "this directory (default: a temporary directory, removed)."
        ),
    ] = None,
    sample_every: Annotated[
        float, typer.Option(help="Seconds between resource samples (RSS, fds, tasks).")
    ] = 5.0,
    pin_malloc: Annotated[
        bool,
        typer.Option(
            help="Pin glibc's mmap threshold at 1 MiB, so memory of the run's transient "
            "10 MiB hostile frames goes back to the system and RSS follows live memory."
        ),
    ] = True,
    trim_heap: Annotated[
        bool,
        typer.Option(
            help="Give the heap's free pages back to the system at every sampling period "
            "(glibc malloc_trim; gapless.memory.trim_heap_every), as a long-running "
            "service may. Without it glibc keeps freed memory resident and RSS creeps."
        ),
    ] = True,
) -> None:
    """Run every venue simulator behind a fault proxy with sustained random faults (venue,
    transport and consumer faults), sample memory, descriptors and tasks, and check that
    nothing was lost, duplicated or invented and that no secret leaked (exit 1 if not)."""
    from gapless.soak import run_soak

    _setup_logging("WARNING")

    async def main() -> dict[str, Any]:
        install_task_dump()
        return await run_soak(
            duration,
            seed,
            venues=_csv(venues),
            private=private,
            spill_dir=str(keep) if keep else None,
            sample_every_s=sample_every,
            pin_malloc=pin_malloc,
            trim_heap=trim_heap,
        )

    if not json_out:
        err.print(f"[bold]gapless soak[/]: {venues}, {duration:g} s, seed {seed}")
    try:
        report = asyncio.run(main())
    except (GaplessError, ValueError) as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None
    if json_out:
        print(json.dumps(report, sort_keys=True))
    else:
        _print_soak(report)
    raise typer.Exit(0 if report["ok"] else 1)


def _print_soak(s: dict[str, Any]) -> None:
    _print_report(s)
    t = Table(title="soak")
    t.add_column("measure")
    t.add_column("value", justify="right")
    res = s["resources"]
    rows = {
        "faults injected": s["faults"],
        "kinds missing": ", ".join(s["kinds_missing"]) or "none",
        "half-open detection (max s / bound s)": (
            f"{s['half_open'].get('detection_s', {}).get('max', '-')} / {s['half_open']['bound_s']}"
        ),
        "RSS growth after warm-up (%)": res.get("rss_growth_pct", "-"),
        "open fds (min-max)": res.get("fds_range", "-"),
        "asyncio tasks (min-max)": res.get("tasks_range", "-"),
        "gaps by cause": s["gaps_by_cause"],
        "secrets leaked": len(s["secrets"]["leaks"]),
    }
    for k, v in rows.items():
        t.add_row(k, str(v))
    out.print(t)
    for kind, p in s["recovery_s_by_kind"].items():
        out.print(
            f"  recovery {kind}: p50 {p['p50']} s, p99 {p['p99']} s, max {p['max']} s (n={p['n']})"
        )
    out.print("[green]PASS[/]" if s["ok"] else "[red]FAIL[/]")


def _csv(text: str) -> tuple[str, ...]:
    return tuple(s.strip() for s in text.split(",") if s.strip())


def _verdict(s: dict[str, Any]) -> bool:
    return bool(
        s["lost"] == 0
        and s["duplicated"] == 0
        and s["unexpected"] == 0
        and s["books_equal"]
        and s.get("planned_disconnect_gaps", 0) == 0
        and s.get("orders_equal", True)
        and s.get("balances_equal", True)
    )


class _Progress:
    """Live view of the demo: per connection state, message rate, reconnects, gaps."""

    def __init__(self) -> None:
        self._last: dict[str, tuple[float, int]] = {}

    def table(self, p: dict[str, Any] | None) -> Table:
        t = Table(title="gapless demo (live)", expand=False)
        for col in ("connection", "state", "msgs/s", "frames", "reconnects", "bad frames"):
            t.add_column(col, justify="right" if col not in ("connection", "state") else "left")
        if p is None:
            t.caption = "starting..."
            return t
        for name, s in p["connections"].items():
            then, frames = self._last.get(name, (0.0, 0))
            dt = p["elapsed"] - then
            rate = (s["frames_in"] - frames) / dt if dt > 0 else 0.0
            self._last[name] = (p["elapsed"], s["frames_in"])
            t.add_row(
                name,
                s["state"],
                f"{rate:,.0f}",
                f"{s['frames_in']:,}",
                str(s["reconnects"]),
                str(s["bad_frames"]),
            )
        recent = "  ".join(f"{st} ({why[:40]})" for _, st, why in p["last_states"])
        t.caption = (
            f"{p['elapsed']:.0f} s   events {p['events']:,}   gaps declared {p['gaps']}   "
            f"faults injected {p['faults']}\nrecent: {recent or '-'}"
        )
        return t


def _print_report(s: dict[str, Any]) -> None:
    t = Table(title="integrity report")
    t.add_column("check")
    t.add_column("value", justify="right")
    for key in (
        "published",
        "delivered",
        "delivered_once",
        "in_declared_gaps",
        "lost",
        "duplicated",
        "unexpected",
        "gaps",
        "sequence_gaps",
        "reconnects",
        "handovers",
        "planned_disconnect_gaps",
        "checksum_ok",
        "checksum_mismatch",
        "faults",
        "books_equal",
        "every_fault_recovered",
        "orders_equal",
        "balances_equal",
    ):
        if key in s:
            t.add_row(key, str(s.get(key)))
    out.print(t)
    per_venue = s.get("per_venue") or {}
    if per_venue:
        v = Table(title="per venue")
        cols = ("published", "delivered_once", "in_declared_gaps", "lost", "duplicated", "gaps")
        v.add_column("venue")
        for c in cols:
            v.add_column(c, justify="right")
        for venue, row in per_venue.items():
            v.add_row(venue, *(str(row.get(c)) for c in cols))
        out.print(v)
    out.print("fault kinds:", s.get("fault_kinds"))
    if "private" in s:
        out.print("private:", s["private"])
    out.print("[green]PASS[/]: no silent gaps" if _verdict(s) else "[red]FAIL[/]")


# ---------------------------------------------------------------------------- stream
@app.command()
def stream(
    specs: Annotated[
        list[str],
        typer.Argument(
            help="Streams: kraken:book:BTC/USD:10, kraken:trade:BTC/USD, kraken:ticker:BTC/USD"
        ),
    ],
    url: Annotated[
        list[str] | None,
        typer.Option(help="Endpoint override, venue=URL (e.g. kraken=ws://127.0.0.1:8765/v2)."),
    ] = None,
    jsonl: Annotated[bool, typer.Option("--jsonl", help="One JSON event per line.")] = False,
    capture: Annotated[
        Path | None, typer.Option(help="Record every raw frame (JSON Lines).")
    ] = None,
    duration: Annotated[float | None, typer.Option(help="Stop after this many seconds.")] = None,
    log_level: Annotated[str, typer.Option(help="Logging level (stderr).")] = "WARNING",
) -> None:
    """Stream market data; every connection change and gap is printed too."""
    import gapless

    _setup_logging(log_level)
    try:
        parsed = [parse_spec(s) for s in specs]
        urls = {}
        for u in url or []:
            venue, sep, target = u.partition("=")
            if not sep:
                raise ConfigError(f"--url takes venue=URL, got {u!r}")
            urls[venue.strip().lower()] = target.strip()
    except (ConfigError, ValueError) as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None

    async def main() -> None:
        install_task_dump()
        async with gapless.connect(
            *parsed, urls=urls, capture=str(capture) if capture else None
        ) as feed:
            stop = _stop_event(duration)

            async def pump() -> None:
                async for ev in feed:
                    _print_event(ev, jsonl)

            task = asyncio.create_task(pump())
            await stop.wait()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await feed.aclose()
            for ev in feed.drain():
                _print_event(ev, jsonl)

    try:
        asyncio.run(main())
    except GaplessError as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None


def _print_event(ev: Event, jsonl: bool) -> None:
    if jsonl:
        sys.stdout.write(json.dumps(event_to_dict(ev)) + "\n")
        return
    if isinstance(ev, BookUpdate | BookSnapshot):
        bb, ba = ev.best_bid, ev.best_ask
        kind = "snapshot" if isinstance(ev, BookSnapshot) else "book"
        out.print(
            f"{kind:8} {ev.symbol:10} bid {bb.price if bb else '-'} x {bb.qty if bb else '-'}"
            f"  ask {ba.price if ba else '-'} x {ba.qty if ba else '-'}"
        )
    elif isinstance(ev, Trade):
        out.print(f"trade    {ev.symbol:10} {ev.side:4} {ev.qty} @ {ev.price}  id {ev.trade_id}")
    elif isinstance(ev, Ticker):
        out.print(f"ticker   {ev.symbol:10} last {ev.last} bid {ev.bid} ask {ev.ask}")
    elif isinstance(ev, Gap):
        out.print(f"[yellow]GAP[/]      {ev.stream} cause={ev.cause.value} {ev.detail}")
    elif isinstance(ev, ConnectionState):
        out.print(f"[cyan]conn[/]     {ev.conn} {ev.previous} -> {ev.state}: {ev.reason}")
    elif isinstance(ev, SinkFailed):
        out.print(f"[red]CAPTURE FAILED[/] {ev.path}: {ev.error}; capture stopped, stream goes on")
    elif isinstance(ev, VenueStatus | SubscriptionRejected | BadFrame | WatchdogFired):
        out.print(f"[magenta]{type(ev).__name__}[/] {event_to_dict(ev)}")


# ---------------------------------------------------------------------------- sim
@app.command()
def sim(
    port: Annotated[int, typer.Option(help="TCP port (0 picks a free one).")] = 8765,
    host: Annotated[str, typer.Option(help="Bind address (loopback by default).")] = "127.0.0.1",
    seed: Annotated[int, typer.Option(help="Market seed.")] = 7,
    symbols: Annotated[
        str, typer.Option(help="Comma-separated pairs.")
    ] = "BTC/USD,ETH/USD,ALGO/USD",
    scenario: Annotated[Path | None, typer.Option(help="Fault scenario JSON file.")] = None,
    chaos: Annotated[
        float | None, typer.Option(help="Random chaos over this many seconds.")
    ] = None,
    truth: Annotated[Path | None, typer.Option(help="Write the ground truth (JSON Lines).")] = None,
    tick_rate: Annotated[float, typer.Option(help="Market ticks per second per symbol.")] = 50.0,
    duration: Annotated[float | None, typer.Option(help="Stop after this many seconds.")] = None,
) -> None:
    """Run the Kraken v2 simulator (ws://HOST:PORT/v2) with optional scheduled faults."""
    from gapless.sim import KrakenSim, Scenario, SimConfig

    async def main() -> None:
        install_task_dump()
        cfg = SimConfig(
            seed=seed,
            symbols=tuple(s.strip() for s in symbols.split(",") if s.strip()),
            tick_rate_hz=tick_rate,
            host=host,
            port=port,
            truth_path=str(truth) if truth else None,
        )
        async with KrakenSim(cfg) as s:
            err.print(f"kraken simulator listening on [bold]{s.url}[/]")
            if scenario is not None:
                s.schedule(Scenario.load(scenario))
            elif chaos is not None:
                s.schedule(Scenario.chaos(chaos, seed))
            await _stop_event(duration).wait()
            await s.quiesce()

    try:
        asyncio.run(main())
    except (GaplessError, ValueError, OSError) as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None


# ---------------------------------------------------------------------------- replay
@app.command()
def replay(
    file: Annotated[Path, typer.Argument(help="A capture written by --capture.")],
    summary_json: Annotated[
        bool,
        typer.Option(
            "--summary-json", help="Print the summary as one JSON object on the last line."
        ),
    ] = False,
    events: Annotated[bool, typer.Option("--events", help="Print every re-derived event.")] = False,
) -> None:
    """Re-run decoding, book building and checksum verification on a capture, offline."""
    from gapless.replay import replay as run_replay

    if not file.exists():
        err.print(f"[red]error:[/] no such file: {file}")
        raise typer.Exit(2)
    result = run_replay(file)
    if events:
        for ev in result.events:
            _print_event(ev, jsonl=True)
    summary = result.summary()
    if summary_json:
        print(json.dumps(summary, sort_keys=True))
        return
    t = Table(title=f"replay of {file}")
    t.add_column("book")
    for col in ("checksum ok", "mismatch", "gaps", "best bid", "best ask"):
        t.add_column(col, justify="right")
    for name, b in summary["books"].items():
        t.add_row(
            name,
            str(b["checksum_ok"]),
            str(b["checksum_mismatch"]),
            str(b["gaps"]),
            str(b["best_bid"]),
            str(b["best_ask"]),
        )
    out.print(t)
    out.print(
        f"frames {summary['frames']}  events {summary['events']}  gaps {summary['gaps']}  "
        f"sequence gaps {summary['sequence_gaps']}  bad frames {summary['bad_frames']}  "
        f"bad records {summary['bad_records']}"
    )


def main() -> None:
    app()


if __name__ == "__main__":
    main()
