"""The task dump: what a live process is waiting for, on demand."""

from __future__ import annotations

import asyncio
import io
import os
import signal

import pytest

from gapless.observe.tasks import dump_tasks, install_task_dump


async def _parked(ev: asyncio.Event) -> None:
    await ev.wait()


async def test_dump_names_every_pending_task_and_where_it_waits() -> None:
    ev = asyncio.Event()
    task = asyncio.create_task(_parked(ev), name="parked-one")
    await asyncio.sleep(0)
    out = io.StringIO()
    n = dump_tasks(file=out)
    text = out.getvalue()
    ev.set()
    await task
    assert n >= 2  # this test's own task and the parked one
    assert f"--- {n} asyncio tasks ---" in text
    assert "* parked-one (cancel requests pending: 0)\n" in text
    # the whole chain down to what it waits on, not just the outer frame
    assert "in _parked" in text
    assert "in wait" in text  # Event.wait
    assert "awaiting <Future pending" in text


@pytest.mark.skipif(not hasattr(signal, "SIGUSR1"), reason="POSIX signal")
async def test_sigusr1_dumps_the_tasks_without_stopping_anything() -> None:
    out = io.StringIO()
    loop = asyncio.get_running_loop()
    assert install_task_dump(file=out)
    try:
        ev = asyncio.Event()
        task = asyncio.create_task(_parked(ev), name="parked-two")
        await asyncio.sleep(0)
        os.kill(os.getpid(), signal.SIGUSR1)
        for _ in range(100):
            if "end of tasks" in out.getvalue():
                break
            await asyncio.sleep(0.01)
        assert "* parked-two (cancel requests pending: 0)\n" in out.getvalue()
        assert not task.done()  # nothing was cancelled
        ev.set()
        await task
    finally:
        loop.remove_signal_handler(signal.SIGUSR1)
