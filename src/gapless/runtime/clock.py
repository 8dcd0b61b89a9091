"""Clocks. Monotonic time is always the event loop's (``loop.time()``), so
virtual-time tests (``looptime``) drive every timer. Wall time (event
``local_ts_ns``) is injectable; :func:`loop_anchored_wall_clock` ties it to the
loop clock so wall stamps stay consistent with timers in virtual time."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

__all__ = ["WallClock", "loop_anchored_wall_clock", "system_wall_clock"]

WallClock = Callable[[], int]


def system_wall_clock() -> int:
    return time.time_ns()


def loop_anchored_wall_clock(loop: asyncio.AbstractEventLoop | None = None) -> WallClock:
    """Wall time at creation plus loop-clock elapsed time, in ns."""
    lp = loop or asyncio.get_running_loop()
    wall0 = time.time_ns()
    t0 = lp.time()

    def now() -> int:
        return wall0 + int((lp.time() - t0) * 1e9)

    return now
