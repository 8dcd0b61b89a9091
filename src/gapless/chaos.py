"""Pieces of a long chaos run (``gapless soak``) that the demo composes.

- :class:`SoakSettings`: what a soak adds to the demo (transport faults through
  a :class:`~gapless.sim.FaultProxy` per venue endpoint, faults in the
  consumer, spilling, resource samples, smaller queues so a slow consumer
  overflows them).
- :func:`drive_transport`: applies a venue's transport faults (``latency``,
  ``bandwidth``, ``blackhole``, ``reset``, ``slicer``, ``limit_data``) to its
  proxies at their offsets, and records each as a ground-truth ``fault``.
- :func:`consume`: the run's "user code": reads every event into an
  :class:`EventSpill` and, at the scheduled times, stops reading for seconds
  (``slow_consumer``) or blocks the whole event loop (``loop_block``).
- :class:`EventSpill`: delivered events, slimmed to what the checker reads and
  pickled to a file in batches, so a long run keeps nothing growing in memory.
- :class:`ResourceSampler`: RSS, open file descriptors and asyncio tasks over time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pickle
import sys
import time
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import msgspec

from gapless.events import BookSnapshot, BookUpdate, Event
from gapless.memory import heap_free_bytes
from gapless.runtime.clock import WallClock
from gapless.sim.faults import Fault, Scenario
from gapless.sim.proxy import FaultProxy

__all__ = [
    "EventSpill",
    "ResourceSampler",
    "SoakSettings",
    "consume",
    "debug_log_file",
    "drive_transport",
    "find_secrets",
    "read_jsonl",
]

_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SoakSettings:
    """What a soak adds to :func:`gapless.demo.run_demo`.

    ``spill_dir`` holds the truth files, the spilled events, the DEBUG log and
    the raw capture (created owner-only). ``queue_size`` (the feed's event
    queue) and ``frame_queue_size`` (each connection's frame queue) are small
    enough that a ``slow_consumer`` of a few seconds overflows them: the
    declared policy (gaps and a resync) is then part of what is checked.
    Order histories are bounded (``keep_closed_orders``) so that memory after
    warm-up is the steady state, not histories filling."""

    spill_dir: str
    transport_faults: bool = True
    consumer_faults: bool = True
    sample_every_s: float = 5.0
    #: trim the heap every ``sample_every_s`` (:func:`gapless.memory.trim_heap_every`)
    trim_heap: bool = True
    queue_size: int = 1_000
    frame_queue_size: int = 500
    #: the client's order history (``max_closed_orders``; the simulator keeps
    #: half as many again): the bot places about 85 orders a minute, so both are
    #: full before warm-up ends and the soak runs evicting, as a long-lived bot does
    keep_closed_orders: int = 100


class EventSpill:
    """Delivered events in pickled batches on disk.

    Book snapshots and updates lose their levels and live book view (the
    checker and the recovery report read keys, sequences, checksums and
    times, never levels); everything else is kept whole."""

    def __init__(self, path: str | Path, batch: int = 2_000) -> None:
        self.path = Path(path)
        self.batch = batch
        self.count = 0
        self._buf: list[Event] = []
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        self._fh: IO[bytes] | None = os.fdopen(fd, "wb")

    def add(self, ev: Event) -> None:
        if isinstance(ev, (BookUpdate, BookSnapshot)):
            ev = msgspec.structs.replace(ev, bids=(), asks=(), book=None)
        self._buf.append(ev)
        self.count += 1
        if len(self._buf) >= self.batch:
            self.flush()

    def flush(self) -> None:
        if self._buf and self._fh is not None:
            pickle.dump(self._buf, self._fh, protocol=pickle.HIGHEST_PROTOCOL)
            self._buf = []

    def close(self) -> None:
        self.flush()
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def load(self) -> Iterator[Event]:
        """Every spilled event in delivery order (closes the writer first)."""
        self.close()
        with self.path.open("rb") as fh:
            while True:
                try:
                    batch: list[Event] = pickle.load(fh)
                except EOFError:
                    return
                yield from batch


def read_jsonl(paths: Iterable[str | Path]) -> Iterator[dict[str, Any]]:
    """The records of JSON Lines files, one file after the other."""
    dec = msgspec.json.Decoder(dict[str, Any])
    for path in paths:
        with Path(path).open("rb") as fh:
            for line in fh:
                if line.strip():
                    yield dec.decode(line)


class ResourceSampler:
    """Samples ``[seconds, rss_mb, open_fds, asyncio_tasks, py_blocks, heap_free_mb]``
    every ``every_s``: ``py_blocks`` is the interpreter's live allocated blocks
    (``sys.getallocatedblocks``: grows only if live objects do) and
    ``heap_free_mb`` the glibc heap's free chunks (``mallinfo2().fordblks``; -1
    elsewhere), the part of RSS that is freed memory the allocator keeps."""

    def __init__(self, every_s: float) -> None:
        self.every_s = every_s
        self.samples: list[list[float]] = []

    def sample(self, t_s: float) -> None:
        self.samples.append(
            [
                round(t_s, 1),
                round(rss_bytes() / 2**20, 1),
                open_fds(),
                len(asyncio.all_tasks()),
                sys.getallocatedblocks(),
                round(heap_free_bytes() / 2**20, 2),
            ]
        )

    async def run(self, started: float) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self.sample(loop.time() - started)
            await asyncio.sleep(self.every_s)


def rss_bytes() -> int:
    """Resident set size of this process (Linux ``/proc``; else the peak from ``resource``)."""
    try:
        with open("/proc/self/statm", "rb") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def open_fds() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return -1


def _fault_record(venue: str, f: Fault, clock: WallClock) -> dict[str, Any]:
    return {
        "k": "fault",
        "venue": venue,
        "kind": f.kind,
        "ts_ns": clock(),
        "params": dict(f.params),
    }


async def drive_transport(
    venue: str,
    proxies: Sequence[FaultProxy],
    scenario: Scenario,
    clock: WallClock,
    records: list[dict[str, Any]],
) -> None:
    """Apply ``scenario``'s transport faults to ``proxies`` at their offsets from
    now (the faults of one venue do not overlap: each is cleared after its
    ``duration_s``, before the next starts)."""
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    try:
        for f in scenario:
            await asyncio.sleep(max(0.0, t0 + f.at_s - loop.time()))
            p = f.resolved()
            records.append(_fault_record(venue, f, clock))
            _log.info("soak: %s transport fault %s %s", venue, f.kind, dict(f.params))
            for proxy in proxies:
                if f.kind == "reset":
                    proxy.reset_all()
                elif f.kind == "latency":
                    proxy.set(latency_s=p["latency_s"], jitter_s=p["jitter_s"])
                elif f.kind == "bandwidth":
                    proxy.set(bandwidth_bps=p["bytes_per_s"])
                elif f.kind == "blackhole":
                    proxy.set(blackhole=True)
                elif f.kind == "slicer":
                    proxy.set(slice_bytes=p["slice_bytes"], slice_delay_s=p["slice_delay_s"])
                elif f.kind == "limit_data":
                    proxy.set(limit_bytes=p["bytes"])
                else:
                    raise ValueError(f"not a transport fault: {f.kind!r}")
            if f.kind != "reset":
                await asyncio.sleep(float(p["duration_s"]))
                for proxy in proxies:
                    proxy.clear()
    finally:
        for proxy in proxies:
            proxy.clear()


async def consume(
    events: AsyncIterator[Event],
    spill: EventSpill,
    scenario: Scenario,
    clock: WallClock,
    records: list[dict[str, Any]],
) -> None:
    """Read every event into ``spill``; run ``scenario``'s consumer faults when
    their time has come (checked as events arrive, as user code would)."""
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    pending = list(scenario)
    async for ev in events:
        spill.add(ev)
        if pending and loop.time() - t0 >= pending[0].at_s:
            f = pending.pop(0)
            d = float(f.resolved()["duration_s"])
            records.append(_fault_record("consumer", f, clock))
            _log.info("soak: consumer fault %s for %.2f s", f.kind, d)
            if f.kind == "slow_consumer":
                await asyncio.sleep(d)
            elif f.kind == "loop_block":
                time.sleep(d)  # noqa: ASYNC251 (the fault: user code that blocks the loop)
            else:
                raise ValueError(f"not a consumer fault: {f.kind!r}")


@contextlib.contextmanager
def debug_log_file(path: str | Path) -> Iterator[None]:
    """Every log record at DEBUG (gapless and the libraries under it) into ``path``
    (owner-only) while inside; the handlers already installed keep the level
    they had (stderr does not fill up with DEBUG lines)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.close(fd)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setLevel(logging.DEBUG)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    old_level = root.level
    raised = [h for h in root.handlers if h.level == logging.NOTSET]
    for h in raised:
        h.setLevel(old_level)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
        for h in raised:
            h.setLevel(logging.NOTSET)
        handler.close()


def find_secrets(
    needles: dict[str, str], files: Iterable[str | Path] = (), texts: dict[str, str] | None = None
) -> dict[str, Any]:
    """Search ``files`` (read in overlapping chunks) and ``texts`` for every needle.

    Returns ``{"needles": n, "bytes_scanned": b, "searched": [where, ...],
    "leaks": ["<what> in <where>", ...]}``; the needles' values never appear in
    the result."""
    wanted = {what: value.encode() for what, value in needles.items() if value}
    longest = max((len(v) for v in wanted.values()), default=1)
    leaks: set[str] = set()
    searched: list[str] = []
    scanned = 0
    for path in files:
        p = Path(path)
        if not p.exists():
            continue
        searched.append(p.name)
        tail = b""
        with p.open("rb") as fh:
            while chunk := fh.read(1 << 20):
                window = tail + chunk
                scanned += len(chunk)
                leaks.update(f"{what} in {p.name}" for what, v in wanted.items() if v in window)
                tail = window[-(longest - 1) :] if longest > 1 else b""
    for where, text in (texts or {}).items():
        searched.append(where)
        data = text.encode()
        scanned += len(data)
        leaks.update(f"{what} in {where}" for what, v in wanted.items() if v in data)
    return {
        "needles": len(wanted),
        "bytes_scanned": scanned,
        "searched": searched,
        "leaks": sorted(leaks),
    }
