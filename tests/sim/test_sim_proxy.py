"""The TCP fault proxy over real loopback sockets: each fault is observable on the wire.
A gapless feed behind it: tests/integration/test_transport_faults.py."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from gapless.sim.proxy import FaultProxy, Toxics


class _Sink:
    """An upstream that records what it receives and sends what it is told."""

    def __init__(self) -> None:
        self.received = bytearray()
        self.writers: list[asyncio.StreamWriter] = []
        self.eof = asyncio.Event()
        self.server: asyncio.Server | None = None

    async def handle(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        self.writers.append(w)
        while chunk := await r.read(65536):
            self.received += chunk
        self.eof.set()

    @property
    def port(self) -> int:
        assert self.server is not None
        port: int = self.server.sockets[0].getsockname()[1]
        return port


@contextlib.asynccontextmanager
async def _setup(**toxics: Any) -> AsyncIterator[tuple[_Sink, FaultProxy]]:
    sink = _Sink()
    sink.server = await asyncio.start_server(sink.handle, "127.0.0.1", 0)
    try:
        async with FaultProxy(sink.port, toxics=Toxics(**toxics), seed=1) as proxy:
            yield sink, proxy
    finally:
        sink.server.close()
        for w in sink.writers:
            w.close()


async def _until(pred: Any, limit_s: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + limit_s
    while not pred():
        if loop.time() > end:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


async def test_bytes_pass_through_both_ways() -> None:
    async with _setup() as (sink, proxy):
        r, w = await asyncio.open_connection("127.0.0.1", proxy.port)
        w.write(b"hello")
        await _until(lambda: bytes(sink.received) == b"hello")
        sink.writers[0].write(b"world")
        assert await r.readexactly(5) == b"world"
        w.close()
        await _until(sink.eof.is_set)  # the client's FIN reaches the server
    assert proxy.stats.bytes_up == 5
    assert proxy.stats.bytes_down == 5
    assert proxy.stats.connections == 1


@pytest.mark.looptime
async def test_latency_and_jitter_hold_every_chunk_without_reordering() -> None:
    async with _setup(latency_s=0.2, jitter_s=0.1) as (sink, proxy):
        loop = asyncio.get_running_loop()
        r, w = await asyncio.open_connection("127.0.0.1", proxy.port)
        await _until(lambda: bool(sink.writers))
        t0 = loop.time()
        for i in range(20):
            sink.writers[0].write(b"%02d" % i)
            await asyncio.sleep(0.01)
        got = await r.readexactly(40)
        elapsed = loop.time() - t0
        w.close()
    assert got == b"".join(b"%02d" % i for i in range(20))  # in order
    assert elapsed >= 0.2 + 0.19  # the last chunk left 0.19 s in, then waited >= 0.2 s


@pytest.mark.looptime
async def test_bandwidth_limits_the_rate() -> None:
    async with _setup(bandwidth_bps=10_000.0) as (sink, proxy):
        loop = asyncio.get_running_loop()
        r, w = await asyncio.open_connection("127.0.0.1", proxy.port)
        await _until(lambda: bool(sink.writers))
        t0 = loop.time()
        for _ in range(10):
            sink.writers[0].write(b"x" * 1000)
            await asyncio.sleep(0)
        await r.readexactly(10_000)
        elapsed = loop.time() - t0
        w.close()
    assert elapsed >= 0.99  # 10 kB at 10 kB/s


async def test_blackhole_swallows_bytes_and_keeps_the_connection_open() -> None:
    async with _setup() as (sink, proxy):
        r, w = await asyncio.open_connection("127.0.0.1", proxy.port)
        w.write(b"a")
        await _until(lambda: bytes(sink.received) == b"a")
        proxy.set(blackhole=True)
        w.write(b"lost")
        sink.writers[0].write(b"also lost")
        await _until(lambda: proxy.stats.blackholed_bytes == 4 + 9)
        assert bytes(sink.received) == b"a"
        with pytest.raises(TimeoutError):  # no data, no FIN, no RST: half-open
            async with asyncio.timeout(0.3):
                await r.read(1)
        assert not sink.eof.is_set()
        proxy.clear()
        w.write(b"b")
        await _until(lambda: bytes(sink.received) == b"ab")
        w.close()


async def _read_twice(r: asyncio.StreamReader) -> None:
    async with asyncio.timeout(5.0):
        await r.read(1)
        await r.read(1)  # some kernels report the reset on the second read


async def test_reset_cuts_every_connection_with_rst() -> None:
    async with _setup() as (_sink, proxy):
        r, w = await asyncio.open_connection("127.0.0.1", proxy.port)
        await _until(lambda: proxy.open_connections == 1)
        assert proxy.reset_all() == 1
        with pytest.raises(ConnectionResetError):
            await _read_twice(r)
        w.close()
        await _until(lambda: proxy.open_connections == 0)
    assert proxy.stats.resets == 1


async def test_slicer_writes_tiny_pieces() -> None:
    async with _setup(slice_bytes=3) as (sink, proxy):
        r, w = await asyncio.open_connection("127.0.0.1", proxy.port)
        await _until(lambda: bool(sink.writers))
        sink.writers[0].write(b"0123456789" * 3)
        assert await r.readexactly(30) == b"0123456789" * 3
        w.close()
    assert proxy.stats.writes["down"] >= 10  # 30 bytes in pieces of at most 3


async def test_limit_data_delivers_exactly_n_bytes_then_cuts() -> None:
    async with _setup(limit_bytes=100) as (sink, proxy):
        r, w = await asyncio.open_connection("127.0.0.1", proxy.port)
        await _until(lambda: bool(sink.writers))
        sink.writers[0].write(b"y" * 250)
        got = bytearray()
        with contextlib.suppress(ConnectionResetError):
            async with asyncio.timeout(5.0):
                while chunk := await r.read(1000):
                    got += chunk
        w.close()
    assert bytes(got) == b"y" * 100
    assert proxy.stats.limit_cuts == 1


def test_bad_toxics_are_refused() -> None:
    for bad, name in (
        ({"latency_s": -1.0}, "latency_s"),
        ({"bandwidth_bps": 0.0}, "bandwidth_bps"),
        ({"slice_bytes": 0}, "slice_bytes"),
        ({"limit_bytes": -1}, "limit_bytes"),
    ):
        with pytest.raises(ValueError, match=name):
            Toxics(**bad)
