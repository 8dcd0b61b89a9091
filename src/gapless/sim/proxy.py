"""A TCP fault proxy between a client and a simulator (design.md §4, transport faults).

Toxiproxy-style faults below the WebSocket layer, switchable at runtime while
connections are open::

    async with KrakenSim(cfg) as sim, FaultProxy(sim.port) as proxy:
        url = proxy.rewrite(sim.url)          # ws://127.0.0.1:<proxy port>/v2
        proxy.set(latency_s=0.05, jitter_s=0.01)
        proxy.set(blackhole=True)             # half-open: bytes vanish, no FIN, no RST
        proxy.clear()
        proxy.reset_all()                     # RST every open connection

Faults (:class:`Toxics`), each applied per chunk read from a socket:

- ``latency_s`` + ``jitter_s``: each chunk is held for latency plus a uniform
  draw in [0, jitter) (seeded), never reordered;
- ``bandwidth_bps``: bytes per second, per connection and direction;
- ``blackhole``: chunks are dropped in both directions; the connections stay
  open, so only a liveness check (ping/pong, data staleness) notices;
- ``slice_bytes`` (+ ``slice_delay_s``): each chunk is written in pieces of at
  most that many bytes, each its own write (TCP segments on loopback);
- ``limit_bytes``: a connection is cut (RST) once that many bytes went from
  the server to the client; exactly that many are delivered first.

``reset_all()`` aborts every open connection with RST (``SO_LINGER`` 0) on
both sides. Like the simulators, this module uses only the standard library.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
import socket
import struct
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

__all__ = ["FaultProxy", "ProxyStats", "Toxics"]

_CHUNK = 64 * 1024
_UP = "up"  # client -> server
_DOWN = "down"  # server -> client


@dataclass(frozen=True)
class Toxics:
    """The faults in force (all off by default)."""

    latency_s: float = 0.0
    jitter_s: float = 0.0
    bandwidth_bps: float | None = None
    blackhole: bool = False
    slice_bytes: int | None = None
    slice_delay_s: float = 0.0
    limit_bytes: int | None = None

    def __post_init__(self) -> None:
        for name in ("latency_s", "jitter_s", "slice_delay_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")
        if self.bandwidth_bps is not None and self.bandwidth_bps <= 0:
            raise ValueError("bandwidth_bps must be > 0 (None: unlimited)")
        if self.slice_bytes is not None and self.slice_bytes < 1:
            raise ValueError("slice_bytes must be >= 1 (None: off)")
        if self.limit_bytes is not None and self.limit_bytes < 0:
            raise ValueError("limit_bytes must be >= 0 (None: off)")


@dataclass
class ProxyStats:
    connections: int = 0  # accepted from clients
    upstream_failures: int = 0  # the simulator refused or was unreachable
    bytes_up: int = 0  # delivered client -> server
    bytes_down: int = 0  # delivered server -> client
    blackholed_bytes: int = 0
    resets: int = 0  # connections cut with RST (reset_all, limit_bytes)
    limit_cuts: int = 0
    writes: dict[str, int] = field(default_factory=lambda: {_UP: 0, _DOWN: 0})


class _Pair:
    """One proxied connection: the client side, the upstream side, two pumps."""

    def __init__(
        self,
        client: tuple[asyncio.StreamReader, asyncio.StreamWriter],
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter],
    ) -> None:
        self.client_r, self.client_w = client
        self.up_r, self.up_w = upstream
        self.down_bytes = 0
        self.closed = False
        self.due = {_UP: 0.0, _DOWN: 0.0}  # when the last chunk of each direction went out

    def abort(self) -> None:
        """RST both sides: SO_LINGER 0 makes close() send a reset, not a FIN."""
        if self.closed:
            return
        self.closed = True
        for w in (self.client_w, self.up_w):
            sock = w.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            w.transport.abort()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for w in (self.client_w, self.up_w):
            w.close()


class FaultProxy:
    """Listen on ``host:port`` (0: any free port) and forward to
    ``upstream_host:upstream_port`` with the faults in :attr:`toxics`."""

    def __init__(
        self,
        upstream_port: int,
        *,
        upstream_host: str = "127.0.0.1",
        host: str = "127.0.0.1",
        port: int = 0,
        seed: int = 0,
        toxics: Toxics | None = None,
    ) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.host = host
        self._want_port = port
        self.toxics = toxics or Toxics()
        self.stats = ProxyStats()
        self._rng = random.Random(seed)
        self._server: asyncio.Server | None = None
        self._pairs: set[_Pair] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------ lifecycle
    async def __aenter__(self) -> FaultProxy:
        self._server = await asyncio.start_server(self._accept, self.host, self._want_port)
        return self

    async def __aexit__(self, *exc: Any) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for pair in list(self._pairs):
            pair.close()  # the pumps read EOF and end; cancelling is the fallback
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=5.0)
            for task in pending:
                task.cancel()
        if server is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5.0):
                    await server.wait_closed()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the proxy is not running (use 'async with proxy:')")
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    @property
    def open_connections(self) -> int:
        """Proxied connections currently open."""
        return len(self._pairs)

    def rewrite(self, url: str) -> str:
        """``url`` with its host and port replaced by the proxy's."""
        parts = urlsplit(url)
        return urlunsplit(parts._replace(netloc=f"{self.host}:{self.port}"))

    # ------------------------------------------------------------ control
    def set(self, **changes: Any) -> Toxics:
        """Change some faults now; open connections see them on their next chunk."""
        self.toxics = dataclasses.replace(self.toxics, **changes)
        return self.toxics

    def clear(self) -> None:
        """Every fault off."""
        self.toxics = Toxics()

    def reset_all(self) -> int:
        """Cut every open connection with RST; returns how many."""
        pairs = [p for p in self._pairs if not p.closed]
        for pair in pairs:
            pair.abort()
        self.stats.resets += len(pairs)
        return len(pairs)

    # ------------------------------------------------------------ pumping
    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.stats.connections += 1
        try:
            upstream = await asyncio.wait_for(asyncio.open_connection(*self.upstream), 5.0)
        except (OSError, TimeoutError):
            self.stats.upstream_failures += 1
            writer.close()
            return
        pair = _Pair((reader, writer), upstream)
        self._pairs.add(pair)
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._pump(pair, _UP, pair.client_r, pair.up_w))
                tg.create_task(self._pump(pair, _DOWN, pair.up_r, pair.client_w))
        except* (OSError, asyncio.IncompleteReadError):
            pass  # a side went away: the pair ends
        finally:
            pair.close()
            self._pairs.discard(pair)
            self._tasks.discard(task)

    async def _pump(
        self,
        pair: _Pair,
        direction: str,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        loop = asyncio.get_running_loop()
        stats = self.stats
        while not pair.closed:
            chunk = await reader.read(_CHUNK)
            if not chunk:  # EOF: pass the FIN on (unless the hole swallows it too)
                if not self.toxics.blackhole and writer.can_write_eof():
                    with contextlib.suppress(OSError):
                        writer.write_eof()
                return
            tox = self.toxics
            if tox.blackhole:
                stats.blackholed_bytes += len(chunk)
                continue
            if direction == _DOWN and tox.limit_bytes is not None:
                room = tox.limit_bytes - pair.down_bytes
                if room <= 0:
                    self._cut(pair)
                    return
                if len(chunk) > room:
                    await self._deliver(pair, direction, writer, chunk[:room], tox, loop)
                    self._cut(pair)
                    return
            await self._deliver(pair, direction, writer, chunk, tox, loop)

    async def _deliver(
        self,
        pair: _Pair,
        direction: str,
        writer: asyncio.StreamWriter,
        chunk: bytes,
        tox: Toxics,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        if tox.latency_s or tox.jitter_s:
            delay = tox.latency_s + (self._rng.uniform(0.0, tox.jitter_s) if tox.jitter_s else 0.0)
            # never reorder: a chunk goes out no earlier than the one before it
            due = max(loop.time() + delay, pair.due[direction])
            pair.due[direction] = due
            await asyncio.sleep(max(0.0, due - loop.time()))
        n = len(chunk)
        if tox.slice_bytes is not None:
            n = tox.slice_bytes
        if tox.bandwidth_bps is not None:  # pace in pieces of about 10 ms of the budget
            n = min(n, max(1, int(tox.bandwidth_bps * 0.01)))
        # one piece at a time: a 64 KiB chunk sliced to 1 byte is 65,536 objects
        view = memoryview(chunk)
        for i in range(0, len(chunk), n):
            piece = view[i : i + n]
            if pair.closed:
                return
            if i and tox.slice_delay_s:
                await asyncio.sleep(tox.slice_delay_s)
            if tox.bandwidth_bps is not None:  # the time the piece takes on the wire
                await asyncio.sleep(len(piece) / tox.bandwidth_bps)
            writer.write(piece)
            await writer.drain()
            self.stats.writes[direction] += 1
            if direction == _DOWN:
                pair.down_bytes += len(piece)
                self.stats.bytes_down += len(piece)
            else:
                self.stats.bytes_up += len(piece)

    def _cut(self, pair: _Pair) -> None:
        self.stats.limit_cuts += 1
        self.stats.resets += 1
        pair.abort()
