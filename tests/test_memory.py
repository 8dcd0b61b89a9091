"""``gapless.memory``: the allocator remedies for a long-running feed (glibc)."""

from __future__ import annotations

import asyncio

import pytest

from gapless.chaos import rss_bytes
from gapless.memory import heap_free_bytes, trim_heap, trim_heap_every

glibc_only = pytest.mark.skipif(heap_free_bytes() < 0, reason="glibc 2.33+ only (mallinfo2)")


def _holes() -> list[bytearray]:
    # 60 KB blocks live in the heap (below the mmap threshold); freeing every
    # other one leaves holes that glibc keeps resident until trimmed
    keep = [bytearray(60_000) for _ in range(400)]
    del keep[::2]
    return keep


@glibc_only
def test_trimming_gives_the_heaps_free_pages_back() -> None:
    keep = _holes()
    assert heap_free_bytes() > 150 * 60_000
    before = rss_bytes()
    assert trim_heap()
    assert before - rss_bytes() > 5 * 2**20
    assert len(keep) == 200


@glibc_only
def test_the_periodic_trimmer_trims_until_cancelled() -> None:
    async def main() -> int:
        keep = _holes()
        before = rss_bytes()
        task = asyncio.create_task(trim_heap_every(0.05))
        await asyncio.sleep(0.2)
        after = rss_bytes()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert len(keep) == 200
        return before - after

    assert asyncio.run(main()) > 5 * 2**20


def test_the_period_must_be_positive() -> None:
    with pytest.raises(ValueError, match="every_s"):
        asyncio.run(trim_heap_every(0))
