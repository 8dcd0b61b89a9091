"""Every file gapless writes that may hold account data or captures is owner-only.

The files gapless creates (``grep`` of ``src`` for ``open``/``os.open``/
``write_text``/``mkdir``):

- the raw capture (``connect(capture=...)``, ``gapless stream --capture``,
  ``gapless demo --capture``): :class:`~gapless.sinks.capture.CaptureWriter`;
- the simulator's truth log (``SimConfig.truth_path`` of every simulator,
  ``gapless sim/demo --truth``): :class:`~gapless.sim.truth.TruthLog`, which
  holds the simulated accounts' orders and balances; its missing parent
  directories are created too.

Both go through :mod:`gapless._owner_only`: files ``0600``, created
directories ``0700``, an existing file with wider permissions tightened (and
only then truncated), existing directories and device nodes left alone.
``Scenario.dump`` (a fault list, no account data) is not owner-only by design.

Each test runs under a permissive umask (022), restored afterwards, so a
``0600`` is gapless's doing and not the environment's.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

import gapless
from gapless import kraken
from gapless.demo import demo_client_options
from gapless.events import Subscribed
from gapless.sim import KrakenSim, SimConfig
from gapless.sim.truth import TruthLog
from gapless.sinks.capture import CaptureWriter


@pytest.fixture(autouse=True)
def permissive_umask() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def _mode(path: Path | str) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_a_new_capture_is_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "cap.jsonl"
    writer = CaptureWriter(path)
    writer.write(1.0, "kraken", "kraken#1.1", "ws_in", data="{}")
    writer.close()
    assert _mode(path) == 0o600
    assert writer.error is None
    assert path.read_text().count("\n") == 1


def test_an_existing_wide_capture_is_tightened_before_it_is_truncated(tmp_path: Path) -> None:
    path = tmp_path / "cap.jsonl"
    path.write_text("an older capture\n")
    os.chmod(path, 0o666)
    writer = CaptureWriter(path)
    assert _mode(path) == 0o600
    assert path.read_text() == ""  # truncated (after the chmod)
    writer.close()


def test_a_capture_to_a_device_does_not_change_the_device(tmp_path: Path) -> None:
    """``/dev/null`` is a shared device node: making it 0600 (root could) would
    break every other user of the machine."""
    before = os.stat("/dev/null")
    writer = CaptureWriter("/dev/null")
    writer.write(1.0, "kraken", "kraken#1.1", "ws_in", data="{}")
    writer.close()
    assert writer.error is None
    assert os.stat("/dev/null").st_mode == before.st_mode


async def test_a_feed_capture_over_an_existing_world_readable_file_is_owner_only(
    tmp_path: Path,
) -> None:
    path = tmp_path / "cap.jsonl"
    path.write_text("")
    os.chmod(path, 0o644)
    cfg = SimConfig(seed=2, symbols=("BTC/USD",), tick_rate_hz=20.0)
    async with KrakenSim(cfg) as sim:
        kopts, ropts = demo_client_options(sim.url)
        async with gapless.connect(
            kraken.trades("BTC/USD"), kraken=kopts, runtime=ropts, capture=str(path)
        ) as feed:
            async for ev in feed:
                if isinstance(ev, Subscribed):
                    break
    assert _mode(path) == 0o600
    assert '"kind":"ws_in"' in path.read_text()


async def test_the_simulator_truth_file_and_its_new_directories_are_owner_only(
    tmp_path: Path,
) -> None:
    os.chmod(tmp_path, 0o755)
    path = tmp_path / "runs" / "today" / "truth.jsonl"
    async with KrakenSim(SimConfig(seed=1, symbols=("BTC/USD",), truth_path=path)):
        pass
    assert _mode(path) == 0o600
    assert _mode(tmp_path / "runs") == 0o700
    assert _mode(tmp_path / "runs" / "today") == 0o700
    assert _mode(tmp_path) == 0o755  # an existing directory is not ours to change
    assert '"k":"meta"' in path.read_text()


def test_an_existing_wide_truth_file_is_tightened(tmp_path: Path) -> None:
    path = tmp_path / "truth.jsonl"
    path.write_text("old\n")
    os.chmod(path, 0o644)
    log = TruthLog(path)
    log.open()
    log.add({"k": "meta"})
    log.close()
    assert _mode(path) == 0o600
    assert path.read_text() == '{"k":"meta"}\n'
