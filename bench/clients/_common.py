"""What every benchmark client shares (standard library only: peers import it from their
own virtual environments).

A client is a script run as ``<python> bench/clients/<name>.py <spec.json>``. It reads the
spec (:class:`Spec`), subscribes with its library's public API, counts the callbacks that
reach user code, and writes one result file (:class:`Result`). The contract is described in
``bench/HARNESS.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import json
import os
import resource
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = [
    "END_DEADLINE",
    "END_DONE",
    "END_IDLE",
    "Recorder",
    "Result",
    "Spec",
    "end_note",
    "load_spec",
    "peak_rss_mb",
    "run_loop",
    "wait_for_end",
]


@dataclass
class Spec:
    """What the harness asks of one client run (written by ``bench/run.py``)."""

    workload: str  # "W1".."W7"
    mode: str  # "throughput" | "latency" | "recovery"
    protocol: str  # "kraken-v2" | "kraken-v1" | "binance" | "kucoin"
    ws_url: str  # the venue WebSocket URL (kraken v1/v2), or base (binance/kucoin)
    rest_url: str  # https base URL of the venue's REST API on the bench server
    symbols: list[str]  # in the protocol's own spelling
    depth: int
    expected_updates: int  # book update messages the server sends after the snapshots
    expected_trades: int  # trade messages (W3), else 0
    result_path: str
    ca_file: str | None = None  # the self-signed certificate to trust (wss/https)
    latency_path: str | None = None  # latency mode: write callback times here
    idle_timeout_s: float = 3.0  # stop when nothing arrived for this long after data
    # before the first update/trade callback, other callbacks (snapshots, errors) end the run
    # only after this long without any callback: the server starts streaming only once every
    # symbol is subscribed and it settled, so early snapshots must not start the idle clock
    start_timeout_s: float = 10.0
    deadline_s: float = 300.0  # hard cap on the whole run
    book_levels: int = 10  # how many levels per side to report in ``books``
    extra: dict[str, Any] = field(default_factory=dict)


def load_spec(argv: list[str] | None = None) -> Spec:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        raise SystemExit("usage: <client>.py <spec.json>")
    with open(args[0], encoding="utf-8") as fh:
        raw = json.load(fh)
    return Spec(**raw)


def peak_rss_mb() -> float:
    """Peak resident set size of this process, in MiB.

    ``VmHWM`` from ``/proc/self/status``: the high-water mark of this program's own memory.
    ``getrusage().ru_maxrss`` is not used: Linux carries it over from the parent across
    fork and exec, so every client would report at least the harness's own peak."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


@dataclass
class Result:
    client: str
    version: str
    ok: bool = False
    error: str | None = None
    updates: int = 0  # book update callbacks seen by user code (snapshots excluded)
    trades: int = 0  # trade callbacks
    snapshots: int = 0
    first_mono_ns: int | None = None  # first update/trade callback (time.monotonic_ns)
    last_mono_ns: int | None = None  # last update/trade callback
    cpu_s: float | None = None  # process CPU between the first and the last callback
    rss_mb: float | None = None  # peak RSS at the end
    checksum: str = "off"  # "verified" | "off" | "unsupported"
    books: dict[str, dict[str, list[list[str]]]] = field(default_factory=dict)
    recovery: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def write(self, path: str) -> None:
        tmp = f"{path}.tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(asdict(self), fh)
        os.replace(tmp, path)


class Recorder:
    """Counts callbacks and keeps the clocks; cheap enough to call on every callback.

    ``mark()`` on every update or trade callback; ``done()`` says when the expected
    number arrived. In latency mode every callback time is kept (an int per callback)."""

    __slots__ = ("cpu_first", "expected", "first", "keep", "last", "n", "times")

    def __init__(self, expected: int, keep_times: bool) -> None:
        self.expected = expected
        self.n = 0
        self.first: int | None = None
        self.last: int | None = None
        self.cpu_first: float | None = None
        self.keep = keep_times
        self.times: list[int] = []

    def mark(self) -> bool:
        """Record one callback; True once ``expected`` callbacks have been seen."""
        t = time.monotonic_ns()
        if self.first is None:
            self.first = t
            self.cpu_first = time.process_time()
        self.last = t
        self.n += 1
        if self.keep:
            self.times.append(t)
        return self.n >= self.expected

    def finish(self, result: Result, spec: Spec) -> None:
        """Fill the clocks, CPU and RSS into ``result``; write latency samples if asked."""
        result.first_mono_ns = self.first
        result.last_mono_ns = self.last
        if self.cpu_first is not None:
            result.cpu_s = time.process_time() - self.cpu_first
        result.rss_mb = peak_rss_mb()
        if spec.latency_path is not None:
            with open(spec.latency_path, "w", encoding="utf-8") as fh:
                json.dump(self.times, fh)


def run_loop(main: Any) -> tuple[Any, str]:
    """Run the coroutine ``main`` on the event loop ``BENCH_LOOP`` names: ``uvloop`` (the
    default, when it is installed) or ``asyncio``. Returns its result and a note naming
    the loop used. Only gapless and the floor call this: peers keep their own choice."""
    want = os.environ.get("BENCH_LOOP", "uvloop")
    if want not in ("uvloop", "asyncio"):
        main.close()
        raise SystemExit(f"BENCH_LOOP={want!r}: uvloop or asyncio")
    if want == "uvloop":
        try:
            import uvloop
        except ImportError:
            return asyncio.run(main), "event loop: asyncio (uvloop is not installed)"
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(main), f"event loop: uvloop {importlib.metadata.version('uvloop')}"
    return asyncio.run(main), "event loop: asyncio"


END_DONE = "done"
END_IDLE = "idle"
END_DEADLINE = "deadline"


async def wait_for_end(
    spec: Spec,
    rec: Recorder,
    done: asyncio.Event,
    *,
    last_activity: Callable[[], float | None] | None = None,
    stop: Callable[[], str | None] | None = None,
    tick_s: float = 0.1,
) -> str:
    """Wait until the run is over; return why: :data:`END_DONE` (``done`` was set: the
    count was reached, or the client ended it), :data:`END_DEADLINE` (``spec.deadline_s``
    after the call), :data:`END_IDLE`, or the text ``stop()`` returned.

    Idle: ``spec.idle_timeout_s`` without any callback once an update or trade callback
    arrived (``rec``). Before that, callbacks of other kinds (``last_activity()``: the
    ``time.monotonic()`` of the client's last snapshot or error callback, ``None`` before
    one) end the run only after ``max(idle_timeout_s, start_timeout_s)`` of silence, and
    with no callback at all only the deadline (or ``stop``) ends it. ``stop`` holds a
    client's own rules (for example, connecting keeps failing): it is called on every tick
    and returns ``None`` to go on."""
    deadline = time.monotonic() + spec.deadline_s
    start_limit = max(spec.idle_timeout_s, spec.start_timeout_s)
    while not done.is_set():
        now = time.monotonic()
        if now >= deadline:
            return END_DEADLINE
        if stop is not None:
            reason = stop()
            if reason is not None:
                return reason
        last = rec.last / 1e9 if rec.last is not None else None
        other = last_activity() if last_activity is not None else None
        if other is not None and (last is None or other > last):
            last = other
        if last is not None:
            limit = spec.idle_timeout_s if rec.n else start_limit
            if now - last >= limit:
                return END_IDLE
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), timeout=tick_s)
    return END_DONE


def end_note(reason: str, spec: Spec, rec: Recorder) -> str | None:
    """The note a client adds for how its run ended (``None`` when the count was reached)."""
    if reason == END_DONE and rec.n >= rec.expected:
        return None
    counts = f"{rec.n} of {rec.expected} update/trade callbacks"
    if reason == END_IDLE:
        limit = spec.idle_timeout_s if rec.n else max(spec.idle_timeout_s, spec.start_timeout_s)
        return f"{counts}: stopped after {limit:g} s without a callback"
    if reason == END_DEADLINE:
        return f"{counts}: stopped at the {spec.deadline_s:g} s deadline"
    if reason == END_DONE:
        return f"{counts}: the client ended the run"
    return f"{counts}: stopped ({reason})"
