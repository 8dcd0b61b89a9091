"""Benchmark client for ccxt.pro (run with ``bench/.venvs/ccxt/bin/python``).

``python bench/clients/ccxt_client.py spec.json``: loops over ccxt.pro's
``watch_order_book_for_symbols`` (and ``watch_trades_for_symbols`` when the workload has
trades), as ccxt's manual shows, on uvloop (ccxt ships uvloop as an accelerator and its
examples select it). One returned order book (or one returned trade) counts as one callback.

ccxt.pro resolves a ``watch_*`` future only for the message that arrives while user code is
awaiting it; messages that arrive in between are applied to the book silently. So ccxt merges
updates, and in throughput mode it cannot reach the expected count: the run then ends on the
idle timeout, as the harness contract says.

Protocols: ``kraken-v2`` (ccxt's Kraken watch methods use WebSocket v2), ``binance``
(``/ws`` + SUBSCRIBE, ``depth@100ms`` + ``trade``, REST snapshot) and ``kucoin``
(bullet-public, ``/market/level2``, REST ``level2_100`` snapshot). Overrides: ``bench/PEERS.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _common

CLIENT = "ccxt"
# watch_* is called again after an error (ccxt.pro's pattern); when this many errors came
# before any data, the run stops instead of retrying until the deadline
MAX_ERRORS_BEFORE_DATA = 5


def _text(value: Any) -> str:
    # ccxt keeps prices and sizes as Python floats; repr() is the shortest exact decimal text
    # of the float (trailing zeros of the wire text are gone, the value is the same).
    return repr(value) if isinstance(value, float) else str(value)


def _side(levels: Any, n: int) -> list[list[str]]:
    return [[_text(level[0]), _text(level[1])] for level in list(levels)[:n]]


class _Run:
    def __init__(self, spec: _common.Spec) -> None:
        self.spec = spec
        expected = spec.expected_updates + spec.expected_trades
        self.rec = _common.Recorder(expected, keep_times=spec.latency_path is not None)
        self.done = asyncio.Event()
        self.updates = 0
        self.trades = 0
        self.snapshots = 0
        self.last_other: float | None = None  # time.monotonic() of the last snapshot/error
        self.errors: list[str] = []
        self.error_ns: int | None = None  # first error that reached user code
        self.recovered_ns: int | None = None
        self.needs_snapshot: set[str] = set()

    def on_book(self, symbol: str, book: Any) -> None:
        if symbol in self.needs_snapshot:
            # the first book returned for a symbol (and the first after a reconnect) is the
            # one that carries the snapshot
            self.needs_snapshot.discard(symbol)
            self.snapshots += 1
            self.last_other = time.monotonic()
            if self.error_ns is not None and self.recovered_ns is None:
                self.recovered_ns = time.monotonic_ns()
            return
        self.updates += 1
        if self.rec.mark():
            self.done.set()

    def on_trades(self, trades: list[Any]) -> None:
        for _ in trades:
            self.trades += 1
            if self.rec.mark():
                self.done.set()

    def on_error(self, where: str, exc: BaseException, symbols: list[str]) -> None:
        self.last_other = time.monotonic()
        if self.error_ns is None:
            self.error_ns = time.monotonic_ns()
        self.errors.append(f"{where}: {type(exc).__name__}: {exc}"[:300])
        self.needs_snapshot.update(symbols)

    def stopped(self, tasks: list[asyncio.Task[None]]) -> str | None:
        """ccxt's own stop rules: every watch task ended, or connecting keeps failing."""
        if all(t.done() for t in tasks):
            return "every watch task ended"
        if self.rec.n + self.snapshots == 0 and len(self.errors) >= MAX_ERRORS_BEFORE_DATA:
            return f"no data after {len(self.errors)} error(s): {self.errors[0]}"
        return None

    async def supervise(self, tasks: list[asyncio.Task[None]]) -> str:
        """Wait for the end of the run (``_common.wait_for_end``); returns why it ended."""
        ended: str = await _common.wait_for_end(
            self.spec,
            self.rec,
            self.done,
            last_activity=lambda: self.last_other,
            stop=lambda: self.stopped(tasks),
        )
        return ended


def _unified(exchange: Any, protocol_symbol: str) -> str:
    """The ccxt unified symbol for a symbol in the protocol's own spelling."""
    markets: dict[str, Any] = exchange.markets
    if protocol_symbol in markets:
        return protocol_symbol
    by_id: dict[str, Any] = exchange.markets_by_id or {}
    found = by_id.get(protocol_symbol)
    if found:
        return str(found[0]["symbol"])
    for market in markets.values():
        info = market.get("info") or {}
        if protocol_symbol in (info.get("wsname"), info.get("altname")):
            return str(market["symbol"])
    raise RuntimeError(f"symbol {protocol_symbol!r} is not in ccxt's markets")


def _configure(ccxtpro: Any, spec: _common.Spec, notes: list[str]) -> Any:
    config: dict[str, Any] = {}
    if spec.ca_file:
        # ccxt builds its aiohttp session (REST and WebSocket) with
        # ssl.create_default_context(cafile=exchange.cafile); 'cafile' is a constructor option
        config["cafile"] = spec.ca_file
        notes.append("TLS: constructor option cafile=<bench certificate>")
    rest = spec.rest_url.rstrip("/")
    if spec.protocol == "kraken-v2":
        exchange = ccxtpro.kraken(config)
        exchange.urls["api"]["public"] = rest
        exchange.urls["api"]["ws"]["publicV2"] = spec.ws_url
        checksum = bool(spec.extra.get("checksum", False))
        exchange.options["watchOrderBook"] = {"checksum": checksum}
        notes.append(
            f"Kraken: urls.api.public={rest}, urls.api.ws.publicV2={spec.ws_url}; "
            f"options.watchOrderBook.checksum={checksum} (ccxt's default is False: 'checksum "
            "temporarily disabled because the exchange checksum was not reliable')"
        )
    elif spec.protocol == "binance":
        exchange = ccxtpro.binance(config)
        exchange.urls["api"]["public"] = rest + "/api/v3"
        exchange.urls["api"]["ws"]["spot"] = spec.ws_url.rstrip("/") + "/ws"
        exchange.options["fetchMarkets"] = {"types": ["spot"]}
        notes.append(
            f"Binance: urls.api.public={rest}/api/v3, urls.api.ws.spot={spec.ws_url}/ws, "
            "options.fetchMarkets.types=['spot'] (no futures/options exchangeInfo); ccxt "
            "connects to <ws.spot>/<stream index> and sends SUBSCRIBE; book and trades use "
            "separate stream indexes, i.e. two connections"
        )
        notes.append(
            "Binance has no checksum; ccxt checks U == previous u + 1 and raises ChecksumError "
            "on a gap (options.watchOrderBook.checksum=True, its default)"
        )
    elif spec.protocol == "kucoin":
        exchange = ccxtpro.kucoin(config)
        exchange.urls["api"]["public"] = rest
        exchange.options["fetchMarkets"] = {"types": ["spot"]}
        notes.append(
            f"KuCoin: urls.api.public={rest} (bullet-public, symbols, snapshot), "
            "options.fetchMarkets.types=['spot'] (no futures markets); the "
            "WebSocket URL is the one bullet-public returns"
        )
        notes.append(
            "KuCoin has no checksum; ccxt caches 5 deltas (snapshotDelay), fetches the REST "
            "snapshot (level2_100 without credentials: the top 100 levels) and replays the "
            "cached deltas by sequence"
        )
    else:
        raise RuntimeError(f"ccxt client does not support protocol {spec.protocol!r}")
    return exchange


async def _watch_books(
    exchange: Any, run: _Run, unified: list[str], to_proto: dict[str, str], limit: int | None
) -> None:
    while not run.done.is_set():
        try:
            book = await exchange.watch_order_book_for_symbols(unified, limit)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # ccxt.pro's documented pattern: report, then watch again
            run.on_error("watch_order_book_for_symbols", exc, unified)
            await asyncio.sleep(0)
            continue
        run.on_book(str(book["symbol"]), book)


async def _watch_trades(exchange: Any, run: _Run, unified: list[str]) -> None:
    while not run.done.is_set():
        try:
            trades = await exchange.watch_trades_for_symbols(unified)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            run.on_error("watch_trades_for_symbols", exc, [])
            await asyncio.sleep(0)
            continue
        run.on_trades(list(trades))


def _book_limit(spec: _common.Spec) -> int | None:
    if spec.protocol == "kraken-v2":
        return int(spec.depth)  # ccxt accepts 10, 25, 100, 500, 1000 (the subscription depth)
    if spec.protocol == "binance":
        valid = (5, 10, 20, 50, 100, 500, 1000, 5000)
        return int(spec.depth) if spec.depth in valid else None  # REST snapshot limit
    return None  # KuCoin: limit 5/50 would switch to the Depth5/Depth50 snapshot channels


async def _main(spec: _common.Spec, result: _common.Result) -> None:
    import ccxt
    import ccxt.pro as ccxtpro

    result.version = str(ccxt.__version__)
    notes = result.notes
    exchange = _configure(ccxtpro, spec, notes)
    run = _Run(spec)
    tasks: list[asyncio.Task[None]] = []
    unified: list[str] = []
    to_proto: dict[str, str] = {}
    try:
        await exchange.load_markets()
        to_proto = {_unified(exchange, s): s for s in spec.symbols}
        unified = list(to_proto)
        run.needs_snapshot.update(unified)
        limit = _book_limit(spec)
        notes.append(f"watch_order_book_for_symbols({len(unified)} symbols, limit={limit})")
        if spec.protocol == "kraken-v2":
            result.checksum = "verified" if spec.extra.get("checksum") else "off"
        else:
            result.checksum = "unsupported"
        tasks.append(asyncio.create_task(_watch_books(exchange, run, unified, to_proto, limit)))
        if spec.expected_trades:
            tasks.append(asyncio.create_task(_watch_trades(exchange, run, unified)))
            notes.append("watch_trades_for_symbols: every returned trade counts as a callback")
        ended = await run.supervise(tasks)
        note = _common.end_note(ended, spec, run.rec)
        if note is not None:
            notes.append(note)
    finally:
        run.rec.finish(result, spec)
        result.updates = run.updates
        result.trades = run.trades
        result.snapshots = run.snapshots
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
        books: dict[str, Any] = dict(getattr(exchange, "orderbooks", {}) or {})
        for symbol in unified:
            book = books.get(symbol)
            if book is None:
                continue
            result.books[to_proto.get(symbol, symbol)] = {
                "bids": _side(book["bids"], spec.book_levels),
                "asks": _side(book["asks"], spec.book_levels),
            }
        if spec.mode == "recovery":
            result.recovery = {
                "recovered_mono_ns": run.recovered_ns,
                "gap_declared": run.error_ns is not None,
                "reconnected": run.recovered_ns is not None,
                "error_mono_ns": run.error_ns,
            }
            notes.append(
                "recovery: ccxt.pro does not reconnect by itself; the pending watch_* call "
                "raises (NetworkError) in user code, and calling watch_* again reconnects, "
                "resubscribes and returns the book rebuilt from the new snapshot"
            )
        if run.errors:
            notes.append(f"{len(run.errors)} exception(s) reached user code")
            notes.extend(run.errors[:10])
        with contextlib.suppress(Exception):
            await asyncio.wait_for(exchange.close(), timeout=5)
    if run.rec.n + run.snapshots == 0 and run.errors and result.error is None:
        result.error = f"no data after {len(run.errors)} error(s): {run.errors[0]}"
    result.ok = result.error is None and run.rec.n + run.snapshots > 0


def main() -> int:
    spec = _common.load_spec()
    result = _common.Result(client=CLIENT, version="")
    use_uvloop = bool(spec.extra.get("uvloop", True))
    try:
        if use_uvloop:
            import uvloop

            asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
            result.notes.append("event loop: uvloop")
        else:
            result.notes.append("event loop: asyncio default")
        asyncio.run(_main(spec, result))
    except BaseException as exc:  # the result file must be written whatever happened
        result.ok = False
        result.error = f"{type(exc).__name__}: {exc}"
    if result.error is not None:
        result.ok = False
    result.write(spec.result_path)
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
