"""``bench/clients/_common.py``: the event loop the gapless and floor clients run on."""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench" / "clients"))

import _common

HAS_UVLOOP = importlib.util.find_spec("uvloop") is not None


async def _loop_type() -> str:
    return type(asyncio.get_running_loop()).__module__


def test_asyncio_is_used_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BENCH_LOOP", "asyncio")
    module, note = _common.run_loop(_loop_type())
    assert module.startswith("asyncio")
    assert note == "event loop: asyncio"


@pytest.mark.skipif(not HAS_UVLOOP, reason="uvloop is not installed")
def test_uvloop_is_the_default_when_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BENCH_LOOP", raising=False)
    module, note = _common.run_loop(_loop_type())
    assert module.startswith("uvloop")
    assert note.startswith("event loop: uvloop ")


def test_an_unknown_loop_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BENCH_LOOP", "trio")
    with pytest.raises(SystemExit, match="uvloop or asyncio"):
        _common.run_loop(_loop_type())
