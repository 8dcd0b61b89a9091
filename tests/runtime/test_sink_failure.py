"""A capture that cannot be written is a declared event, never a crash of the feed.

Real files and a real feed against the Kraken simulator (virtual time). The
failures are made by the kernel, not by a mock:

- **full disk**: the capture path is a symlink to ``/dev/full``, where every
  ``write`` fails with ``ENOSPC`` (opening works). The first buffer write
  fails a few seconds in, while the feed is live.
- **unwritable location**: ``/sys/gapless-capture.jsonl``. The tests may run
  as root, and root ignores file modes (a ``chmod 500`` directory stops
  nobody), but sysfs refuses to create files for every user: ``open`` fails
  with ``EACCES``. A read-only mount (``EROFS``) would need root and a mount
  namespace, so it is not reproduced; it takes the same code path (an
  ``OSError`` from ``open``). For non-root runs a ``chmod 500`` directory is
  tested too.
- **disk fills mid-run**: ``RLIMIT_FSIZE`` (set for this process during the
  test, restored after) makes the kernel refuse to grow any file past N bytes:
  the capture's first buffer is written, the next write is cut short at N
  bytes and then fails with ``EFBIG``. That is the same sequence a filling
  disk produces (a short write, then ``ENOSPC``), with another errno; a real
  full filesystem would need a tiny tmpfs, i.e. root and a mount. Python
  ignores ``SIGXFSZ``, so the process is not killed.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import json
import logging
import os
import resource
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

import gapless
from gapless import kraken
from gapless.demo import demo_client_options
from gapless.events import BookUpdate, ConnectionState, Event, Gap, SinkFailed, Subscribed, Trade
from gapless.replay import replay
from gapless.runtime.clock import loop_anchored_wall_clock
from gapless.runtime.feed import Feed
from gapless.sim import KrakenSim, SimConfig
from gapless.sinks.capture import CaptureWriter

pytestmark = pytest.mark.timeout(60)

NOT_LIVE = {"RECONNECTING", "BACKOFF", "CIRCUIT_OPEN", "MAINTENANCE"}


@contextlib.asynccontextmanager
async def _feed(capture: Path | str, queue_size: int = 10_000) -> AsyncIterator[Feed]:
    cfg = SimConfig(seed=5, symbols=("BTC/USD", "ETH/USD"), tick_rate_hz=40.0)
    async with KrakenSim(cfg) as sim:
        kopts, ropts = demo_client_options(sim.url)
        ropts = dataclasses.replace(ropts, wall_clock=loop_anchored_wall_clock())
        async with gapless.connect(
            kraken.book("BTC/USD"),
            kraken.trades("BTC/USD"),
            kraken.book("ETH/USD"),
            kraken=kopts,
            runtime=ropts,
            capture=str(capture),
            queue_size=queue_size,
        ) as feed:
            yield feed


async def _run_past_failure(feed: Feed, after: int = 200) -> tuple[list[Event], SinkFailed]:
    """Consume until a SinkFailed, then ``after`` more market events."""
    events: list[Event] = []
    failed: SinkFailed | None = None
    market_after = 0
    async with asyncio.timeout(60):
        async for ev in feed:
            events.append(ev)
            if isinstance(ev, SinkFailed):
                assert failed is None, "one SinkFailed per failure"
                failed = ev
            elif failed is not None and isinstance(ev, BookUpdate | Trade):
                market_after += 1
                if market_after >= after:
                    break
    assert failed is not None
    return events, failed


def _assert_same_session(feed: Feed, events: list[Event]) -> None:
    """The capture failure caused no reconnect and no gap."""
    assert [e for e in events if isinstance(e, ConnectionState) and e.state in NOT_LIVE] == []
    assert [e for e in events if isinstance(e, Gap)] == []
    stats = feed.stats()["kraken#1"]
    assert (stats["dials"], stats["connects"], stats["reconnects"]) == (1, 1, 0)
    assert stats["state"] == "LIVE"


@pytest.mark.looptime
async def test_a_full_disk_stops_the_capture_and_the_feed_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "cap.jsonl"
    path.symlink_to("/dev/full")
    caplog.set_level(logging.ERROR)
    async with _feed(path) as feed:
        events, failed = await _run_past_failure(feed)
        _assert_same_session(feed, events)
        capture = feed.capture
        assert capture is not None
        assert not capture.active
        assert capture.dropped > failed.dropped  # records offered after the stop are counted
        book = feed.book("BTC/USD")
        assert book is not None
        assert book.valid
    assert failed.sink == "capture"
    assert failed.path == str(path)
    assert failed.venue == "*"
    assert failed.error.startswith("ENOSPC: No space left on device (write)")
    assert failed.dropped > 0  # the buffer that could not be written
    errors = [r for r in caplog.records if r.levelno == logging.ERROR and "ENOSPC" in r.message]
    assert len(errors) == 1, [r.message for r in caplog.records]
    assert errors[0].name == "gapless.feed"


def _unwritable_paths() -> Iterator[Any]:
    yield pytest.param(
        "/sys/gapless-capture.jsonl",
        errno.EACCES,
        id="sysfs",
        marks=pytest.mark.skipif(not os.path.isdir("/sys"), reason="no sysfs"),
    )
    yield pytest.param(
        None,
        errno.EACCES,
        id="chmod-500-dir",
        marks=pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a 0500 directory"),
    )


@pytest.mark.looptime
@pytest.mark.parametrize(("where", "code"), list(_unwritable_paths()))
async def test_an_unwritable_capture_path_is_declared_and_the_feed_runs(
    tmp_path: Path, where: str | None, code: int
) -> None:
    if where is None:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        where = str(locked / "cap.jsonl")
    async with _feed(where) as feed:
        events: list[Event] = []
        async with asyncio.timeout(30):
            async for ev in feed:
                events.append(ev)
                if sum(isinstance(e, BookUpdate) for e in events) >= 100:
                    break
        _assert_same_session(feed, events)
    failed = [e for e in events if isinstance(e, SinkFailed)]
    assert len(failed) == 1
    assert events[0] is failed[0]  # declared before anything else: the open failed
    assert failed[0].error.startswith(f"{errno.errorcode[code]}: ")
    assert failed[0].error.endswith("(open)")
    assert failed[0].dropped == 0
    assert any(isinstance(e, Subscribed) for e in events)


@contextlib.contextmanager
def _file_size_limit(limit: int) -> Iterator[None]:
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


@pytest.mark.looptime
async def test_a_disk_that_fills_mid_run_keeps_whole_records_and_the_feed_goes_on(
    tmp_path: Path,
) -> None:
    path = tmp_path / "cap.jsonl"
    limit = 100_000  # more than one 64 KiB buffer, less than two
    with _file_size_limit(limit):
        async with _feed(path) as feed:
            events, failed = await _run_past_failure(feed)
            _assert_same_session(feed, events)
            capture = feed.capture
            assert capture is not None
            accepted = capture.records
    assert failed.error.startswith("EFBIG: File too large (write)")
    lines = path.read_bytes().split(b"\n")
    assert lines[-1] == b""  # the torn record was cut off: the file ends with a whole one
    records = [json.loads(line) for line in lines[:-1]]
    assert 64 * 1024 <= path.stat().st_size <= limit
    # every record is either in the file or counted as dropped by the event
    assert len(records) == accepted - failed.dropped
    # what was written replays: whole records only, the books verified up to the failure
    summary = replay(path).summary()
    assert summary["records"] == len(records)
    assert summary["bad_records"] == 0
    assert summary["checksum_ok"] > 0
    assert summary["checksum_mismatch"] == 0


@pytest.mark.looptime
async def test_a_failure_while_the_consumer_lags_is_delivered_when_it_reads_again(
    tmp_path: Path,
) -> None:
    """The queue is full when the capture fails: the event waits for room
    (the socket reader that hit the failure never blocks on it)."""
    path = tmp_path / "cap.jsonl"
    path.symlink_to("/dev/full")
    async with _feed(path, queue_size=5) as feed:
        capture = feed.capture
        assert capture is not None
        # not consuming for 20 s: the queue is full long before the buffer fails
        await asyncio.sleep(20)
        assert not capture.active
        _, failed = await _run_past_failure(feed, after=20)
    assert failed.error.startswith("ENOSPC")


@pytest.mark.looptime
async def test_a_failure_at_the_final_flush_is_in_the_drained_events(tmp_path: Path) -> None:
    """Fewer records than one buffer: nothing is written until close, whose
    flush fails; the feed is closed by then, so the event is read by drain()."""
    path = tmp_path / "cap.jsonl"
    path.symlink_to("/dev/full")
    async with _feed(path) as feed:
        async for ev in feed:
            if isinstance(ev, Subscribed):
                break
        await feed.aclose()
        rest = feed.drain()
    failed = [e for e in rest if isinstance(e, SinkFailed)]
    assert len(failed) == 1
    assert failed[0].error == "ENOSPC: No space left on device (close)"
    assert failed[0].dropped > 0


def test_the_writer_itself_never_raises_and_reports_once(tmp_path: Path) -> None:
    seen: list[str | None] = []
    writer = CaptureWriter("/dev/full", on_failure=lambda w: seen.append(w.error), buffer_bytes=100)
    for i in range(50):
        writer.write(float(i), "kraken", "kraken#1.1", "ws_in", data="x" * 40)
    writer.flush()
    writer.close()
    writer.close()
    assert seen == ["ENOSPC: No space left on device (write)"]
    assert writer.failures == 1
    assert writer.dropped == 50  # none reached the device
    assert writer.errno == errno.ENOSPC
