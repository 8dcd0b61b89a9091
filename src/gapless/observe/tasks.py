"""What is a live process waiting for? Dump every asyncio task's stack.

``install_task_dump()`` makes SIGUSR1 print each pending task of the running
loop, with its chain of frames down to the future it is parked on, to stderr
(or ``file``). The CLI
installs it for every long-running command, so a run that seems stuck can be
asked ``kill -USR1 <pid>`` without stopping it. ``py-spy`` shows threads, not
the coroutines parked in the event loop; this shows those.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import signal
import sys
from typing import TextIO

__all__ = ["dump_tasks", "install_task_dump"]


def dump_tasks(loop: asyncio.AbstractEventLoop | None = None, file: TextIO | None = None) -> int:
    """Write every unfinished task of ``loop`` (default: the running loop) and
    its stack to ``file`` (default: stderr); return how many were written."""
    loop = loop or asyncio.get_running_loop()
    out = file if file is not None else sys.stderr
    tasks = sorted((t for t in asyncio.all_tasks(loop) if not t.done()), key=lambda t: t.get_name())
    buf = io.StringIO()
    buf.write(f"--- {len(tasks)} asyncio tasks ---\n")
    for task in tasks:
        # cancelling(): cancellation requests not taken back. A running task with one
        # pending may have absorbed a CancelledError; a hint, not proof (on 3.11 a
        # TaskGroup whose child failed also leaves one behind on its parent)
        buf.write(f"* {task.get_name()} (cancel requests pending: {task.cancelling()})\n")
        lines = _await_chain(task.get_coro())
        waiter = getattr(task, "_fut_waiter", None)  # the future the task is parked on
        if waiter is not None and lines and "FutureIter" in lines[-1]:
            lines[-1] = f"awaiting {waiter!r}"[:300]
        elif waiter is not None:
            lines.append(f"parked on {waiter!r}"[:300])
        for line in lines:
            buf.write(f"    {line}\n")
    buf.write("--- end of tasks ---\n")
    out.write(buf.getvalue())
    out.flush()
    return len(tasks)


def _await_chain(obj: object, limit: int = 40) -> list[str]:
    """The frames from a task's coroutine down to what it awaits at the bottom
    (``Task.print_stack`` shows only the outermost frame of a suspended task)."""
    lines: list[str] = []
    for _ in range(limit):
        frame = None
        for attr in ("cr_frame", "gi_frame", "ag_frame"):
            frame = getattr(obj, attr, None)
            if frame is not None:
                break
        if frame is None:
            if obj is not None:
                lines.append(f"awaiting {obj!r}"[:300])
            break
        code = frame.f_code
        lines.append(f"{code.co_filename}:{frame.f_lineno} in {code.co_name}")
        nxt = None
        for attr in ("cr_await", "gi_yieldfrom", "ag_await"):
            nxt = getattr(obj, attr, None)
            if nxt is not None:
                break
        obj = nxt
    return lines


def install_task_dump(
    loop: asyncio.AbstractEventLoop | None = None,
    signum: int | None = None,
    file: TextIO | None = None,
) -> bool:
    """Dump the tasks on ``signum`` (default SIGUSR1). Returns False where the
    platform has no such signal or the loop cannot take signal handlers."""
    loop = loop or asyncio.get_running_loop()
    sig = signum if signum is not None else getattr(signal, "SIGUSR1", None)
    if sig is None:
        return False
    with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
        loop.add_signal_handler(sig, dump_tasks, loop, file)
        return True
    return False
