"""Measure WebSocket transports and JSON decoders on simulated Kraken v2 book traffic.

Three measurements, all on the same deterministic set of frames:

1. **transport**: a client (``websockets`` asyncio client or ``picows``) receives N text
   frames over a real loopback TCP socket. The server runs in a separate process
   (multiprocessing, ``spawn``); once a client connects and says ``go`` it writes all N
   frames, pre-encoded, as fast as the socket takes them, then closes. We record wall time,
   frames/s, payload MB/s and the CPU seconds of the client process
   (``time.process_time()``) between ``go`` and the N-th frame reaching user code.
2. **json**: decoding the same frames in-process, no I/O, with several decoders; µs per
   frame, and whether the decoded prices/quantities keep their exact decimal text (Kraken's
   CRC32 checksum needs ``0.50930100``, not ``0.509301``).
3. **combined**: transport + the decoder gapless uses (``msgspec.json.Decoder(float_hook=str)``).

Run ``python bench/transport_json.py --help``. ``--quick`` is a smoke run (seconds).
picows and orjson are optional (the ``bench`` extra); missing ones are skipped with a note.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import importlib
import importlib.metadata
import json
import multiprocessing
import os
import platform
import random
import re
import statistics
import sys
import time
import zlib
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from multiprocessing.connection import Connection
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import msgspec
from websockets.asyncio.client import connect as ws_connect_client
from websockets.asyncio.server import ServerConnection
from websockets.asyncio.server import serve as ws_serve
from websockets.exceptions import ConnectionClosed

try:
    import orjson
except ImportError:  # optional "bench" extra
    orjson = None  # type: ignore[assignment]


def _importable(name: str) -> bool:
    try:
        importlib.import_module(name)
    except ImportError:
        return False
    return True


HAVE_PICOWS = _importable("picows")  # optional "bench" extra
HAVE_ORJSON = orjson is not None

DEFAULT_FRAMES = 200_000
DEFAULT_REPEAT = 3
QUICK_FRAMES = 2_000
QUICK_REPEAT = 1
DEFAULT_SEED = 20261121
EXACTNESS_SAMPLE = 5_000
EXAMPLE_FRAME = (
    b'{"channel":"book","type":"update","data":[{"symbol":"BTC/USD",'
    b'"bids":[{"price":62807.1,"qty":0.50930100}],'
    b'"asks":[{"price":62808.0,"qty":0.00000000},{"price":62810.5,"qty":1.25000000}],'
    b'"checksum":3310070434,"timestamp":"2026-11-21T17:35:55.440295Z"}]}'
)
_NUMBER_RE = re.compile(rb'"(?:price|qty)":(-?[0-9][0-9.eE+-]*)')


# --------------------------------------------------------------------------- frames


def _fmt_price(tenths: int) -> str:
    return f"{tenths // 10}.{tenths % 10}"


def _fmt_qty(sats: int) -> str:
    return f"{sats // 100_000_000}.{sats % 100_000_000:08d}"


def _random_qty(rng: random.Random) -> int:
    """A quantity in units of 1e-8, log-uniform in ~[0.0001, 30]; often round (trailing zeros)."""
    sats = int(10 ** rng.uniform(4.0, 9.5))
    roll = rng.random()
    if roll < 0.15:
        sats = max(1_000_000, sats - sats % 1_000_000)  # e.g. 1.25000000
    elif roll < 0.35:
        sats = max(10_000, sats - sats % 10_000)  # e.g. 0.50930000
    return max(1, sats)


def generate_frames(n: int, seed: int = DEFAULT_SEED) -> list[bytes]:
    """N Kraken v2 BTC/USD book updates with 1-4 levels, deterministic for a given seed.

    Prices are printed with 1 decimal, quantities with 8, trailing zeros kept, removals as
    ``0.00000000``, like live Kraken frames (protocols.md §1.7).
    """
    rng = random.Random(seed)
    mid = 628_071  # price in tenths of a dollar
    ts_us = int(datetime(2026, 11, 21, 17, 35, 55, 440_295, tzinfo=UTC).timestamp()) * 1_000_000
    ts_us += 440_295
    frames: list[bytes] = []
    for _ in range(n):
        mid += rng.choice((-3, -2, -1, 0, 0, 1, 2, 3))
        bids: list[str] = []
        asks: list[str] = []
        for _level in range(rng.randint(1, 4)):
            offset = 1 + int(rng.expovariate(0.25))
            qty = 0 if rng.random() < 0.25 else _random_qty(rng)
            if rng.random() < 0.5:
                bids.append(f'{{"price":{_fmt_price(mid - offset)},"qty":{_fmt_qty(qty)}}}')
            else:
                asks.append(f'{{"price":{_fmt_price(mid + offset)},"qty":{_fmt_qty(qty)}}}')
        ts_us += rng.randint(20, 3_000)
        secs, micros = divmod(ts_us, 1_000_000)
        stamp = datetime.fromtimestamp(secs, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        frames.append(
            (
                '{"channel":"book","type":"update","data":[{"symbol":"BTC/USD",'
                f'"bids":[{",".join(bids)}],"asks":[{",".join(asks)}],'
                f'"checksum":{rng.getrandbits(32)},"timestamp":"{stamp}.{micros:06d}Z"}}]}}'
            ).encode()
        )
    return frames


def frames_fingerprint(frames: Sequence[bytes]) -> tuple[int, int, int]:
    """(count, payload bytes, crc32 of all payloads): lets the parent check the server's frames."""
    crc = 0
    for frame in frames:
        crc = zlib.crc32(frame, crc)
    return len(frames), sum(len(f) for f in frames), crc


def count_levels(frames: Sequence[bytes]) -> int:
    return sum(len(_NUMBER_RE.findall(f)) for f in frames) // 2


def _server_frame_header(length: int) -> bytes:
    """RFC 6455 header of an unmasked, final text frame (server to client)."""
    if length < 126:
        return bytes((0x81, length))
    if length < 1 << 16:
        return bytes((0x81, 126)) + length.to_bytes(2, "big")
    return bytes((0x81, 127)) + length.to_bytes(8, "big")


# --------------------------------------------------------------------------- server process


def _server_process_main(
    conn: Connection, n_frames: int, seed: int, parent_pid: int, lifetime: float, cpu: int | None
) -> None:
    """Entry point of the spawned server process. Reports ("ready", port, fingerprint)."""
    try:
        if cpu is not None and hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(0, {cpu})
        asyncio.run(_serve(conn, n_frames, seed, parent_pid, lifetime))
    except BaseException as exc:  # report anything, then exit
        with contextlib.suppress(Exception):
            conn.send(("error", repr(exc)))
        raise
    finally:
        conn.close()


async def _serve(
    conn: Connection, n_frames: int, seed: int, parent_pid: int, lifetime: float
) -> None:
    frames = generate_frames(n_frames, seed)
    fingerprint = frames_fingerprint(frames)
    # Pre-encode every frame so the server costs one memcpy per socket write: the client,
    # not the server, must be the bottleneck.
    blob = b"".join(_server_frame_header(len(f)) + f for f in frames)
    del frames
    per_connection_timeout = 30.0 + n_frames / 4_000

    async def handler(ws: ServerConnection) -> None:
        with contextlib.suppress(ConnectionClosed, TimeoutError):
            async with asyncio.timeout(per_connection_timeout):
                await ws.recv()  # the client's "go": it has started its clocks
                # Raw write on the connection's own transport: ordered before the close frame
                # that ws.close() writes next.
                ws.transport.write(blob)
                await ws.close()

    loop = asyncio.get_running_loop()
    async with ws_serve(
        handler,
        "127.0.0.1",
        0,
        compression=None,
        ping_interval=None,
        close_timeout=per_connection_timeout,
    ) as server:
        port = server.sockets[0].getsockname()[1]
        conn.send(("ready", port, fingerprint))
        deadline = loop.time() + lifetime
        while loop.time() < deadline and os.getppid() == parent_pid:
            if conn.poll() and conn.recv() == "stop":
                break
            await asyncio.sleep(0.05)
        server.close(close_connections=False)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(server.wait_closed(), 2.0)


class ServerProcess:
    """Context manager: spawn the frame server, yield its port, always terminate it."""

    def __init__(self, n_frames: int, seed: int, cpu: int | None, startup_timeout: float) -> None:
        self.n_frames = n_frames
        self.seed = seed
        self.cpu = cpu
        self.startup_timeout = startup_timeout
        # generous upper bound on the whole benchmark; the server also exits if we die
        self.lifetime = 600.0 + n_frames / 100.0
        self.port = 0
        self.fingerprint: tuple[int, int, int] = (0, 0, 0)
        ctx = multiprocessing.get_context("spawn")
        self._conn, child_conn = ctx.Pipe()
        self._child_conn = child_conn
        self._proc = ctx.Process(
            target=_server_process_main,
            args=(child_conn, n_frames, seed, os.getpid(), self.lifetime, cpu),
            name="gapless-bench-server",
            daemon=True,
        )

    def __enter__(self) -> ServerProcess:
        self._proc.start()
        self._child_conn.close()
        try:
            if not self._conn.poll(self.startup_timeout):
                raise TimeoutError(f"server did not start within {self.startup_timeout:.0f} s")
            msg = self._conn.recv()
            if msg[0] != "ready":
                raise RuntimeError(f"server failed to start: {msg!r}")
            self.port = int(msg[1])
            self.fingerprint = tuple(msg[2])
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def stop(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self._conn.send("stop")
        self._proc.join(5.0)
        if self._proc.is_alive():
            self._proc.terminate()
            self._proc.join(5.0)
        if self._proc.is_alive():
            self._proc.kill()
            self._proc.join(5.0)
        self._conn.close()


# --------------------------------------------------------------------------- clients


@dataclass(frozen=True)
class RunResult:
    frames: int
    payload_bytes: int
    wall_s: float
    cpu_s: float
    levels: int  # levels seen by the decoder (combined runs), else 0

    def as_dict(self) -> dict[str, float | int]:
        return {
            "frames": self.frames,
            "payload_bytes": self.payload_bytes,
            "wall_s": self.wall_s,
            "cpu_s": self.cpu_s,
            "frames_per_s": self.frames / self.wall_s,
            "mb_per_s": self.payload_bytes / self.wall_s / 1e6,
            "cpu_us_per_frame": self.cpu_s / self.frames * 1e6,
            "levels": self.levels,
        }


WsMode = Literal["str", "bytes"]


async def websockets_client(
    url: str,
    n: int,
    mode: WsMode,
    decoder: msgspec.json.Decoder[Any] | None,
    limit_s: float,
) -> RunResult:
    """Receive n frames with the websockets asyncio client (recv() -> str, or bytes)."""
    nbytes = 0
    levels = 0
    async with asyncio.timeout(limit_s):
        async with ws_connect_client(
            url, compression=None, ping_interval=None, open_timeout=10, close_timeout=5
        ) as ws:
            t0 = time.perf_counter()
            c0 = time.process_time()
            await ws.send("go")
            if decoder is None:
                if mode == "str":
                    for _ in range(n):
                        nbytes += len(await ws.recv(decode=True))
                else:
                    for _ in range(n):
                        nbytes += len(await ws.recv(decode=False))
            else:
                decode = decoder.decode
                if mode == "str":
                    for _ in range(n):
                        text = await ws.recv(decode=True)
                        nbytes += len(text)
                        entry = decode(text)["data"][0]
                        levels += len(entry["bids"]) + len(entry["asks"])
                else:
                    for _ in range(n):
                        raw = await ws.recv(decode=False)
                        nbytes += len(raw)
                        entry = decode(raw)["data"][0]
                        levels += len(entry["bids"]) + len(entry["asks"])
            t1 = time.perf_counter()
            c1 = time.process_time()
    return RunResult(n, nbytes, t1 - t0, c1 - c0, levels)


async def picows_client(
    url: str, n: int, decoder: msgspec.json.Decoder[Any] | None, limit_s: float
) -> RunResult:
    """Receive n frames with a picows client listener.

    Transport-only runs materialise each payload as ``bytes``; combined runs decode the
    payload memoryview in the callback (zero copy, what gapless would do).
    """
    from picows import WSCloseCode, WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

    loop = asyncio.get_running_loop()
    done: asyncio.Future[tuple[float, float]] = loop.create_future()

    class Listener(WSListener):
        def __init__(self) -> None:
            super().__init__()
            self.count = 0
            self.nbytes = 0
            self.levels = 0

        def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
            msg_type = frame.msg_type
            if msg_type == WSMsgType.TEXT:
                if decoder is None:
                    self.nbytes += len(frame.get_payload_as_bytes())
                else:
                    view = frame.get_payload_as_memoryview()
                    self.nbytes += len(view)
                    entry = decoder.decode(view)["data"][0]
                    self.levels += len(entry["bids"]) + len(entry["asks"])
                self.count += 1
                if self.count == n and not done.done():
                    done.set_result((time.perf_counter(), time.process_time()))
            elif msg_type == WSMsgType.CLOSE:
                transport.send_close(WSCloseCode.OK)
                transport.disconnect()
            elif msg_type == WSMsgType.PING:
                transport.send_pong(frame.get_payload_as_bytes())

        def on_ws_disconnected(self, transport: WSTransport) -> None:
            if not done.done():
                done.set_exception(ConnectionError(f"disconnected after {self.count}/{n} frames"))

    transport, listener = await asyncio.wait_for(
        ws_connect(Listener, url, websocket_handshake_timeout=10), timeout=15
    )
    assert isinstance(listener, Listener)
    try:
        t0 = time.perf_counter()
        c0 = time.process_time()
        transport.send(WSMsgType.TEXT, b"go")
        t1, c1 = await asyncio.wait_for(done, limit_s)
    finally:
        if not transport.is_disconnected:
            # normally the server's close frame gets here first; bounded either way
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(transport.wait_disconnected(), 5.0)
            transport.disconnect(graceful=False)
    return RunResult(n, listener.nbytes, t1 - t0, c1 - c0, listener.levels)


@dataclass(frozen=True)
class ClientSpec:
    key: str
    label: str
    run: Callable[[str, int, float], Coroutine[Any, Any, RunResult]]  # (url, n, limit_s)


def exact_decoder() -> msgspec.json.Decoder[Any]:
    """The decoder gapless uses: untyped msgspec, JSON floats kept as their exact text."""
    return msgspec.json.Decoder(float_hook=str)


def transport_specs() -> list[ClientSpec]:
    specs = [
        ClientSpec(
            "websockets",
            "websockets recv() -> str",
            lambda url, n, t: websockets_client(url, n, "str", None, t),
        ),
        ClientSpec(
            "websockets_bytes",
            "websockets recv(decode=False) -> bytes",
            lambda url, n, t: websockets_client(url, n, "bytes", None, t),
        ),
    ]
    if HAVE_PICOWS:
        specs.append(
            ClientSpec(
                "picows",
                "picows listener, payload -> bytes",
                lambda url, n, t: picows_client(url, n, None, t),
            )
        )
    return specs


def combined_specs() -> list[ClientSpec]:
    specs = [
        ClientSpec(
            "websockets+msgspec_str",
            "websockets str + msgspec(float_hook=str)",
            lambda url, n, t: websockets_client(url, n, "str", exact_decoder(), t),
        ),
        ClientSpec(
            "websockets_bytes+msgspec_str",
            "websockets bytes + msgspec(float_hook=str)",
            lambda url, n, t: websockets_client(url, n, "bytes", exact_decoder(), t),
        ),
    ]
    if HAVE_PICOWS:
        specs.append(
            ClientSpec(
                "picows+msgspec_str",
                "picows memoryview + msgspec(float_hook=str)",
                lambda url, n, t: picows_client(url, n, exact_decoder(), t),
            )
        )
    return specs


def _median_summary(runs: list[RunResult]) -> dict[str, Any]:
    dicts = [r.as_dict() for r in runs]
    summary: dict[str, Any] = {
        key: statistics.median(float(d[key]) for d in dicts)
        for key in ("frames_per_s", "mb_per_s", "cpu_s", "cpu_us_per_frame", "wall_s")
    }
    summary["runs"] = dicts
    return summary


def run_socket_benchmarks(
    server: ServerProcess,
    specs: Sequence[ClientSpec],
    n: int,
    repeat: int,
    expected_bytes: int,
    expected_levels: int,
    decoding: bool,
) -> dict[str, dict[str, Any]]:
    """Each repeat runs every client once (interleaved, so drift hits them all alike)."""
    url = f"ws://127.0.0.1:{server.port}/"
    timeout = 30.0 + n / 4_000
    runs: dict[str, list[RunResult]] = {s.key: [] for s in specs}
    for _ in range(repeat):
        for spec in specs:
            result = asyncio.run(spec.run(url, n, timeout))
            if result.payload_bytes != expected_bytes:
                raise RuntimeError(
                    f"{spec.key}: got {result.payload_bytes} payload bytes, "
                    f"expected {expected_bytes}"
                )
            if decoding and result.levels != expected_levels:
                raise RuntimeError(
                    f"{spec.key}: decoded {result.levels} levels, expected {expected_levels}"
                )
            runs[spec.key].append(result)
    out: dict[str, dict[str, Any]] = {}
    for spec in specs:
        out[spec.key] = {"label": spec.label, **_median_summary(runs[spec.key])}
    return out


# --------------------------------------------------------------------------- JSON decoders


class LevelDecimal(msgspec.Struct):
    price: Decimal
    qty: Decimal


class BookDataDecimal(msgspec.Struct):
    symbol: str
    bids: list[LevelDecimal]
    asks: list[LevelDecimal]
    checksum: int
    timestamp: str


class BookMsgDecimal(msgspec.Struct):
    channel: str
    type: str
    data: list[BookDataDecimal]


class LevelFloat(msgspec.Struct):
    price: float
    qty: float


class BookDataFloat(msgspec.Struct):
    symbol: str
    bids: list[LevelFloat]
    asks: list[LevelFloat]
    checksum: int
    timestamp: str


class BookMsgFloat(msgspec.Struct):
    channel: str
    type: str
    data: list[BookDataFloat]


@dataclass(frozen=True)
class DecoderSpec:
    key: str
    label: str
    decode: Callable[[bytes], Any]


def decoder_specs() -> tuple[list[DecoderSpec], dict[str, str]]:
    """Decoders to compare, plus {key: reason} for the skipped ones."""
    specs = [
        DecoderSpec(
            "json_str",
            "json.loads(parse_float=str)",
            functools.partial(json.loads, parse_float=str),
        ),
        DecoderSpec("json_float", "json.loads (floats)", json.loads),
    ]
    skipped: dict[str, str] = {}
    if orjson is not None:
        specs.append(DecoderSpec("orjson", "orjson.loads (floats)", orjson.loads))
    else:
        skipped["orjson"] = "orjson not installed (pip install 'gapless[bench]')"
    specs += [
        DecoderSpec("msgspec", "msgspec Decoder() untyped (floats)", msgspec.json.Decoder().decode),
        DecoderSpec(
            "msgspec_str", "msgspec Decoder(float_hook=str) untyped", exact_decoder().decode
        ),
        DecoderSpec(
            "msgspec_struct_decimal",
            "msgspec typed Struct, Decimal fields",
            msgspec.json.Decoder(BookMsgDecimal).decode,
        ),
        DecoderSpec(
            "msgspec_struct_float",
            "msgspec typed Struct, float fields",
            msgspec.json.Decoder(BookMsgFloat).decode,
        ),
    ]
    return specs, skipped


def _number_text(value: object) -> str:
    """The decimal text a decoded number gives back without knowing the pair's precision."""
    if isinstance(value, str):
        return value
    if isinstance(value, Decimal):
        return f"{value:f}"  # Decimal('0E-8') -> '0.00000000': scale is kept
    return repr(value)


def _decoded_number_texts(decoded: Any) -> list[str]:
    """price/qty texts in wire order (bids then asks), from dicts or Structs."""
    out: list[str] = []
    data = decoded["data"] if isinstance(decoded, dict) else decoded.data
    for entry in data:
        for side in ("bids", "asks"):
            levels = entry[side] if isinstance(entry, dict) else getattr(entry, side)
            for level in levels:
                for field in ("price", "qty"):
                    value = level[field] if isinstance(level, dict) else getattr(level, field)
                    out.append(_number_text(value))
    return out


def check_exactness(spec: DecoderSpec, frames: Sequence[bytes]) -> dict[str, Any]:
    """Exact when every decoded price/qty gives back the wire text, e.g. 0.50930100."""
    mismatches = 0
    total = 0
    for frame in frames:
        wire = [m.decode() for m in _NUMBER_RE.findall(frame)]
        got = _decoded_number_texts(spec.decode(frame))
        total += len(wire)
        mismatches += sum(1 for w, g in zip(wire, got, strict=True) if w != g)
    example = _decoded_number_texts(spec.decode(EXAMPLE_FRAME))
    return {
        "exact": mismatches == 0,
        "numbers_checked": total,
        "numbers_changed": mismatches,
        "example_0.50930100": example[1],
        "example_0.00000000": example[3],
    }


def run_decoder_benchmarks(
    frames: Sequence[bytes], repeat: int
) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    specs, skipped = decoder_specs()
    sample = frames[:EXACTNESS_SAMPLE]
    timings: dict[str, list[float]] = {s.key: [] for s in specs}
    for _ in range(repeat):
        for spec in specs:
            decode = spec.decode
            t0 = time.perf_counter()
            for frame in frames:
                decode(frame)
            timings[spec.key].append(time.perf_counter() - t0)
    out: dict[str, dict[str, Any]] = {}
    n = len(frames)
    for spec in specs:
        secs = statistics.median(timings[spec.key])
        out[spec.key] = {
            "label": spec.label,
            "us_per_frame": secs / n * 1e6,
            "frames_per_s": n / secs,
            "runs_s": timings[spec.key],
            **check_exactness(spec, sample),
        }
    return out, skipped


# --------------------------------------------------------------------------- report


def machine_info() -> dict[str, Any]:
    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    loop = asyncio.new_event_loop()
    loop_name = f"{type(loop).__module__}.{type(loop).__name__}"
    loop.close()
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu_model": model,
        "cores": os.cpu_count(),
        "usable_cpus": usable,
        "python": sys.version.split()[0],
        "python_implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "event_loop": loop_name,
    }


def package_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in ("websockets", "picows", "orjson", "msgspec", "uvloop"):
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]
    lines = [
        "| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)) + " |",
        "|" + "|".join("-" * (w + 2) for w in widths) + "|",
    ]
    for row in rows:
        lines.append("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |")
    return "\n".join(lines)


def _socket_rows(section: dict[str, dict[str, Any]], ref_key: str) -> list[list[str]]:
    ref = section.get(ref_key, {}).get("cpu_us_per_frame")
    rows: list[list[str]] = []
    for key, r in section.items():
        if "skipped" in r:
            rows.append([key, "skipped (see notes)", "-", "-", "-", "-", "-"])
            continue
        ratio = f"{ref / r['cpu_us_per_frame']:.2f}x" if ref else "-"
        rows.append(
            [
                key,
                f"{r['frames_per_s']:,.0f}",
                f"{r['mb_per_s']:.1f}",
                f"{r['cpu_s']:.3f}",
                f"{r['cpu_us_per_frame']:.2f}",
                ratio,
                f"{r['wall_s']:.3f}",
            ]
        )
    return rows


def format_report(report: dict[str, Any]) -> str:
    cfg = report["config"]
    res = report["results"]
    m = report["machine"]
    v = report["versions"]
    socket_headers = [
        "client",
        "frames/s",
        "MB/s",
        "CPU s",
        "CPU µs/frame",
        "CPU speed-up",
        "wall s",
    ]
    parts = [
        f"machine: {m['cpu_model']}, {m['cores']} cores ({m['usable_cpus']} usable), "
        f"Python {m['python']}",
        "versions: " + ", ".join(f"{k} {val or 'absent'}" for k, val in v.items()),
        f"frames: {cfg['frames']:,} Kraken v2 book updates, mean {cfg['mean_frame_bytes']:.0f} B "
        f"({cfg['levels']:,} levels), median of {cfg['repeat']} run(s), seed {cfg['seed']}",
        "",
        "1. transport: receive N text frames over loopback ws:// "
        "(server in another process; speed-up = CPU vs websockets str)",
        _table(socket_headers, _socket_rows(res["transport"], "websockets")),
        "",
        "2. JSON decode, in-process (bytes in; exact = decoded price/qty give back the wire text)",
        _table(
            ["decoder", "µs/frame", "frames/s", "exact", "0.50930100 ->", "0.00000000 ->"],
            [
                [
                    f"{key}: {r['label']}",
                    f"{r['us_per_frame']:.3f}",
                    f"{r['frames_per_s']:,.0f}",
                    "yes" if r["exact"] else "NO",
                    str(r["example_0.50930100"]),
                    str(r["example_0.00000000"]),
                ]
                for key, r in res["json"].items()
            ],
        ),
        "",
        "3. combined: transport + msgspec Decoder(float_hook=str) "
        "(speed-up = CPU vs websockets str)",
        _table(socket_headers, _socket_rows(res["combined"], "websockets+msgspec_str")),
    ]
    if report["notes"]:
        parts += ["", "notes:", *(f"- {note}" for note in report["notes"])]
    return "\n".join(parts)


# --------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--frames", type=int, default=None, help=f"frames per run ({DEFAULT_FRAMES})")
    p.add_argument("--repeat", type=int, default=None, help=f"runs per case ({DEFAULT_REPEAT})")
    p.add_argument("--json", type=Path, default=None, metavar="OUT.json", help="write results")
    p.add_argument(
        "--quick",
        action="store_true",
        help=f"smoke run: {QUICK_FRAMES} frames, {QUICK_REPEAT} repeat (unless given)",
    )
    p.add_argument("--seed", type=int, default=DEFAULT_SEED)
    p.add_argument(
        "--pin",
        action="store_true",
        help="pin client to the first usable CPU and server to the second (needs >= 2)",
    )
    args = p.parse_args(argv)
    if args.frames is None:
        args.frames = QUICK_FRAMES if args.quick else DEFAULT_FRAMES
    if args.repeat is None:
        args.repeat = QUICK_REPEAT if args.quick else DEFAULT_REPEAT
    if args.frames < 1 or args.repeat < 1:
        p.error("--frames and --repeat must be >= 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    n: int = args.frames
    repeat: int = args.repeat
    notes: list[str] = []

    client_cpu: int | None = None
    server_cpu: int | None = None
    if args.pin:
        cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
        if len(cpus) >= 2:
            client_cpu, server_cpu = cpus[0], cpus[1]
            os.sched_setaffinity(0, {client_cpu})
        else:
            notes.append("--pin ignored: fewer than 2 usable CPUs")

    frames = generate_frames(n, args.seed)
    fingerprint = frames_fingerprint(frames)
    levels = count_levels(frames)
    results: dict[str, Any] = {}

    with ServerProcess(n, args.seed, server_cpu, startup_timeout=60.0 + n / 10_000) as server:
        if server.fingerprint != fingerprint:
            raise RuntimeError(f"server frames differ: {server.fingerprint} != {fingerprint}")
        results["transport"] = run_socket_benchmarks(
            server, transport_specs(), n, repeat, fingerprint[1], levels, decoding=False
        )
        results["combined"] = run_socket_benchmarks(
            server, combined_specs(), n, repeat, fingerprint[1], levels, decoding=True
        )
    if not HAVE_PICOWS:
        reason = "picows not installed (a gapless dependency: pip install -e .)"
        results["transport"]["picows"] = {"skipped": reason}
        results["combined"]["picows+msgspec_str"] = {"skipped": reason}
        notes.append("picows skipped: " + reason)

    results["json"], skipped = run_decoder_benchmarks(frames, repeat)
    for key, reason in skipped.items():
        notes.append(f"{key} skipped: {reason}")
    results["json_skipped"] = skipped

    report: dict[str, Any] = {
        "machine": machine_info(),
        "versions": package_versions(),
        "config": {
            "frames": n,
            "repeat": repeat,
            "seed": args.seed,
            "mean_frame_bytes": fingerprint[1] / n,
            "payload_bytes": fingerprint[1],
            "levels": levels,
            "pinned": {"client_cpu": client_cpu, "server_cpu": server_cpu},
            "server": "websockets asyncio server in a spawned process; frames pre-encoded and "
            "written raw after the client's 'go'",
            "compression": None,
            "statistic": "median of repeats (per metric)",
        },
        "results": results,
        "notes": notes,
    }
    print(format_report(report))
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
