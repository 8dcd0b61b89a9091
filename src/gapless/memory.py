"""Memory of a long-running feed process: the allocator, not gapless's objects.

A feed that runs for days allocates and frees millions of small objects and
some large ones (REST snapshots, hostile frames). Its live objects stay bounded
(the soak samples ``sys.getallocatedblocks()``: not growing), but glibc keeps freed
memory resident: chunks freed in the middle of its heap stay part of RSS until
trimmed, and after one big free it raises its mmap threshold, so later large
buffers come from the heap too. The soak measured RSS growing about 6% in ten
minutes that way with no growth of live blocks (RELIABILITY.md). Two remedies,
both opt-in, both no-ops where the C library is not glibc:

- :func:`pin_mmap_threshold` at start-up: allocations of 1 MiB and more get
  their own mapping, returned to the system when freed;
- :func:`trim_heap_every` in the application's task group: gives the heap's
  free pages back to the system periodically (glibc ``malloc_trim(0)``; on a
  220 MB process here it took 7 ms with 50 MB to give back and 1 ms after; it
  holds the event loop for that long).

Example::

    async with asyncio.TaskGroup() as tg:
        tg.create_task(gapless.memory.trim_heap_every(30.0))
        ...
"""

from __future__ import annotations

import asyncio
import ctypes
import functools
import sys
from typing import Any

__all__ = ["heap_free_bytes", "pin_mmap_threshold", "trim_heap", "trim_heap_every"]


class _Mallinfo2(ctypes.Structure):
    _fields_ = [  # the layout of glibc's struct mallinfo2
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    """The C library, loaded once (the trimmer and the soak's sampler call in
    every few seconds)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


@functools.cache
def _mallinfo2() -> Any:
    """glibc's ``mallinfo2`` with its return type set, or None (before 2.33)."""
    libc = _glibc()
    fn = getattr(libc, "mallinfo2", None) if libc is not None else None
    if fn is not None:
        fn.restype = _Mallinfo2
    return fn


def heap_free_bytes() -> int:
    """glibc only (2.33+): bytes in the heap's free chunks, -1 when unknown."""
    fn = _mallinfo2()
    if fn is None:
        return -1
    info: _Mallinfo2 = fn()
    return int(info.fordblks)


def trim_heap() -> bool:
    """glibc only: give the heap's free pages back to the system
    (``malloc_trim(0)``); whether it was done."""
    libc = _glibc()
    if libc is None:
        return False
    libc.malloc_trim(0)
    return True


def pin_mmap_threshold(nbytes: int = 1 << 20) -> bool:
    """glibc only: serve every allocation of ``nbytes`` or more with its own mmap,
    returned to the system when freed (``mallopt(M_MMAP_THRESHOLD)``; the same as
    ``MALLOC_MMAP_THRESHOLD_`` in the environment). Without it glibc raises the
    threshold after the first big free, so one transient 10 MiB hostile frame
    stays in the heap's high-water mark and RSS steps up for good. Returns
    whether it was applied."""
    libc = _glibc()
    if libc is None:
        return False
    m_mmap_threshold = -3
    return bool(libc.mallopt(m_mmap_threshold, nbytes))


async def trim_heap_every(every_s: float) -> None:
    """Trim the heap (:func:`trim_heap`) every ``every_s`` seconds, for ever
    (cancel it to stop). Returns at once where the C library is not glibc."""
    if every_s <= 0:
        raise ValueError(f"every_s must be positive, not {every_s!r}")
    if not trim_heap():
        return
    while True:
        await asyncio.sleep(every_s)
        trim_heap()
