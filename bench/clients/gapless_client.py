"""The gapless benchmark client (bench/HARNESS.md): ``python bench/clients/gapless_client.py
spec.json``, run with gapless's own virtual environment.

gapless is used as a user would: ``gapless.connect(...)`` with the venue's stream builders,
``async for event in feed``, and every delivered ``BookUpdate``/``Trade`` is one callback.
Every Kraken book message is checksum-verified (always on in gapless); Binance and KuCoin
books are sequence-checked (those venues publish no checksum).

Configuration: defaults, except ``RuntimeOptions(overflow="backpressure")`` in throughput
mode. The server writes every message as fast as the socket takes it, which is a sustained
overload for every client; gapless's default (``"resync"``) would then drop, declare a gap
and resync by design, while the peers simply stop reading. With ``"backpressure"`` gapless
stops reading too, so all clients are measured on the same messages. Latency and recovery
runs use the defaults.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(__file__))

import _common

import gapless
from gapless import binance, kraken, kucoin
from gapless.events import (
    BookSnapshot,
    BookUpdate,
    ConnectionState,
    Gap,
    Trade,
)
from gapless.runtime.supervisor import RuntimeOptions
from gapless.venues.base import StreamSpec

_VENUE = {"kraken-v2": "kraken", "binance": "binance", "kucoin": "kucoin"}


def _streams(spec: _common.Spec) -> tuple[list[StreamSpec], dict[str, str]]:
    if spec.protocol == "kraken-v2":
        return [kraken.book(s, depth=spec.depth) for s in spec.symbols], {"kraken": spec.ws_url}
    if spec.protocol == "binance":
        streams = [binance.book(s) for s in spec.symbols]
        if spec.expected_trades:
            streams += [binance.trades(s) for s in spec.symbols]
        return streams, {"binance": spec.ws_url, "binance_rest": spec.rest_url}
    if spec.protocol == "kucoin":
        return [kucoin.book(s) for s in spec.symbols], {"kucoin_rest": spec.rest_url}
    raise SystemExit(f"gapless client: protocol {spec.protocol!r} is not supported")


def _books(feed: Any, spec: _common.Spec) -> dict[str, dict[str, list[list[str]]]]:
    venue = _VENUE[spec.protocol]
    out: dict[str, dict[str, list[list[str]]]] = {}
    for symbol in spec.symbols:
        view = feed.book(symbol, venue=venue)
        if view is None or not view.valid:
            continue
        n = spec.book_levels
        out[symbol] = {
            "bids": [[format(lv.price, "f"), format(lv.qty, "f")] for lv in view.bids(n)],
            "asks": [[format(lv.price, "f"), format(lv.qty, "f")] for lv in view.asks(n)],
        }
    return out


async def run(spec: _common.Spec) -> _common.Result:
    result = _common.Result(client="gapless", version=gapless.__version__)
    result.checksum = "verified" if spec.protocol == "kraken-v2" else "unsupported"
    if spec.protocol != "kraken-v2":
        result.notes.append("no checksum on this venue: every update's sequence is checked")
    streams, urls = _streams(spec)
    runtime = RuntimeOptions(overflow="backpressure") if spec.mode == "throughput" else None
    expected = spec.expected_updates + spec.expected_trades
    rec = _common.Recorder(expected, keep_times=spec.latency_path is not None)
    dropped_at: int | None = None
    gaps = 0
    done = asyncio.Event()

    async def consume(feed: Any) -> None:
        try:
            await _consume(feed)
        finally:
            done.set()  # the count was reached, or the feed ended (or failed)

    async def _consume(feed: Any) -> None:
        nonlocal dropped_at, gaps
        mark = rec.mark
        async for ev in feed:
            kind = type(ev)
            if kind is BookUpdate or kind is Trade:
                if kind is Trade:
                    result.trades += 1
                else:
                    result.updates += 1
                if mark():
                    break
            elif kind is BookSnapshot:
                result.snapshots += 1
                if dropped_at is not None and "recovered_mono_ns" not in result.recovery:
                    result.recovery["recovered_mono_ns"] = time.monotonic_ns()
                    if spec.mode == "recovery" and rec.n >= expected:
                        break
            elif kind is Gap:
                gaps += 1
                result.recovery["gap_declared"] = True
            elif kind is ConnectionState and ev.previous == "LIVE" and dropped_at is None:
                dropped_at = time.monotonic_ns()
                result.recovery["drop_seen_mono_ns"] = dropped_at

    async with gapless.connect(*streams, urls=urls, runtime=runtime) as feed:
        consumer = asyncio.create_task(consume(feed))
        ended = await _common.wait_for_end(spec, rec, done)
        rec.finish(result, spec)
        consumer.cancel()
        (failure,) = await asyncio.gather(consumer, return_exceptions=True)
        if isinstance(failure, Exception):
            result.notes.append(f"the feed failed: {type(failure).__name__}: {failure}")
        result.books = _books(feed, spec)
        stats = feed.stats()
    note = _common.end_note(ended, spec, rec)
    if note is not None:
        result.notes.append(note)
    result.recovery["gaps"] = gaps
    result.recovery.setdefault("gap_declared", False)
    result.recovery["reconnected"] = result.snapshots > len(spec.symbols)
    dropped = sum(int(s.get("frames_dropped", 0)) for s in stats.values())
    if dropped:
        result.notes.append(f"{dropped} frames dropped by the overflow policy (declared)")
    if spec.mode == "recovery":
        # some updates were missed while away: success is a verified book again
        result.ok = "recovered_mono_ns" in result.recovery
        if not result.ok:
            result.error = "no verified book after the drop"
    else:
        result.ok = rec.n >= expected
        if not result.ok:
            result.error = f"{rec.n} of {expected} callbacks"
    return result


def main() -> int:
    spec = _common.load_spec()
    try:
        result, loop_note = _common.run_loop(run(spec))
        result.notes.append(loop_note)
    except Exception as exc:  # a failed run is a result, never a silent crash
        result = _common.Result(client="gapless", version=gapless.__version__)
        result.error = f"{type(exc).__name__}: {exc}"
    result.write(spec.result_path)
    return 0 if result.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
