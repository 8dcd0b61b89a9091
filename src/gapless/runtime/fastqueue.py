"""A bounded FIFO for one event loop, cheaper per item than :class:`asyncio.Queue`.

The runtime moves every frame through one queue (socket → processor) and every
event through another (processor → user). ``asyncio.Queue`` costs about 1 µs per
item in bookkeeping the runtime never uses (``task_done``/``join``, a waiter deque
walked on every put). This queue keeps a ``deque`` of items and creates a
future only when a consumer or producer really has to wait.

Same subset of the API as ``asyncio.Queue``: ``put_nowait`` (raises
:class:`asyncio.QueueFull`), ``get_nowait`` (raises :class:`asyncio.QueueEmpty`),
``await put()``, ``await get()``, ``full()``, ``empty()``, ``qsize()``. Fairness
is FIFO among waiting producers and among waiting consumers. A cancelled
waiter passes its wake-up on, so no item or free slot is stranded.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from typing import Generic, TypeVar

__all__ = ["FastQueue"]

T = TypeVar("T")


class FastQueue(Generic[T]):
    __slots__ = ("_getters", "_items", "_maxsize", "_putters")

    def __init__(self, maxsize: int = 0) -> None:
        self._maxsize = maxsize  # 0: unbounded
        self._items: deque[T] = deque()
        self._getters: deque[asyncio.Future[None]] = deque()
        self._putters: deque[asyncio.Future[None]] = deque()

    @property
    def maxsize(self) -> int:
        return self._maxsize

    def qsize(self) -> int:
        return len(self._items)

    def empty(self) -> bool:
        return not self._items

    def full(self) -> bool:
        return 0 < self._maxsize <= len(self._items)

    def put_nowait(self, item: T) -> None:
        if 0 < self._maxsize <= len(self._items):
            raise asyncio.QueueFull
        self._items.append(item)
        if self._getters:
            _wake_one(self._getters)

    def get_nowait(self) -> T:
        if not self._items:
            raise asyncio.QueueEmpty
        item = self._items.popleft()
        if self._putters:
            _wake_one(self._putters)
        return item

    async def put(self, item: T) -> None:
        while 0 < self._maxsize <= len(self._items):
            fut = asyncio.get_running_loop().create_future()
            self._putters.append(fut)
            try:
                await fut
            except BaseException:
                fut.cancel()
                with contextlib.suppress(ValueError):
                    self._putters.remove(fut)
                if not self.full() and self._putters:
                    _wake_one(self._putters)  # our slot goes to the next producer
                raise
        self.put_nowait(item)

    async def get(self) -> T:
        while not self._items:
            fut = asyncio.get_running_loop().create_future()
            self._getters.append(fut)
            try:
                await fut
            except BaseException:
                fut.cancel()
                with contextlib.suppress(ValueError):
                    self._getters.remove(fut)
                if self._items and self._getters:
                    _wake_one(self._getters)  # our item goes to the next consumer
                raise
        return self.get_nowait()


def _wake_one(waiters: deque[asyncio.Future[None]]) -> None:
    while waiters:
        fut = waiters.popleft()
        if not fut.done():
            fut.set_result(None)
            return
