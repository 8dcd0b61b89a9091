"""FastQueue: the runtime's bounded FIFO (frames → processor, events → user)."""

from __future__ import annotations

import asyncio

import pytest

from gapless.runtime.fastqueue import FastQueue


async def test_fifo_order_and_bounds() -> None:
    q: FastQueue[int] = FastQueue(3)
    assert q.empty()
    assert not q.full()
    assert q.qsize() == 0
    for i in range(3):
        q.put_nowait(i)
    assert q.full()
    assert q.qsize() == 3
    with pytest.raises(asyncio.QueueFull):
        q.put_nowait(9)
    assert [q.get_nowait() for _ in range(3)] == [0, 1, 2]
    with pytest.raises(asyncio.QueueEmpty):
        q.get_nowait()


async def test_unbounded_when_maxsize_is_zero() -> None:
    q: FastQueue[int] = FastQueue()
    for i in range(10_000):
        q.put_nowait(i)
    assert not q.full()
    assert q.qsize() == 10_000


async def test_get_waits_for_put() -> None:
    q: FastQueue[str] = FastQueue(2)
    getter = asyncio.create_task(q.get())
    await asyncio.sleep(0)
    assert not getter.done()
    q.put_nowait("a")
    assert await asyncio.wait_for(getter, 1) == "a"


async def test_put_waits_for_room_and_producers_keep_their_order() -> None:
    q: FastQueue[int] = FastQueue(1)
    q.put_nowait(0)
    first = asyncio.create_task(q.put(1))
    second = asyncio.create_task(q.put(2))
    await asyncio.sleep(0)
    assert not first.done()
    assert not second.done()
    got = [await asyncio.wait_for(q.get(), 1) for _ in range(3)]
    assert got == [0, 1, 2]
    await asyncio.gather(first, second)


async def test_a_cancelled_getter_passes_the_item_on() -> None:
    q: FastQueue[int] = FastQueue(4)
    cancelled = asyncio.create_task(q.get())
    waiting = asyncio.create_task(q.get())
    await asyncio.sleep(0)
    q.put_nowait(7)  # wakes ``cancelled`` first ...
    cancelled.cancel()  # ... which is cancelled before it runs
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    assert await asyncio.wait_for(waiting, 1) == 7  # the item was not stranded


async def test_a_cancelled_putter_passes_the_slot_on() -> None:
    q: FastQueue[int] = FastQueue(1)
    q.put_nowait(0)
    cancelled = asyncio.create_task(q.put(1))
    waiting = asyncio.create_task(q.put(2))
    await asyncio.sleep(0)
    assert q.get_nowait() == 0  # frees the slot and wakes ``cancelled`` ...
    cancelled.cancel()  # ... which gives it up
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    await asyncio.wait_for(waiting, 1)
    assert q.get_nowait() == 2
