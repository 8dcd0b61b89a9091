"""Benchmark client for cryptofeed (run with ``bench/.venvs/cryptofeed/bin/python``).

``python bench/clients/cryptofeed_client.py spec.json``: subscribes through cryptofeed's
``FeedHandler`` (uvloop on, as in cryptofeed's default config), counts the ``L2_BOOK`` and
``TRADES`` callbacks, and writes the result file described in ``bench/HARNESS.md``.

Protocols: ``kraken-v1`` (cryptofeed 2.4 speaks Kraken WebSocket v1, with
``checksum_validation=True``), ``binance`` (combined stream, ``depth@100ms`` + ``aggTrade``,
REST depth snapshot) and ``kucoin`` (bullet-public, ``/market/level2``, REST v3 snapshot; the
snapshot endpoint is signed, so fake credentials are configured). Every override that points
cryptofeed at the bench server is listed in ``bench/PEERS.md``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _common

CLIENT = "cryptofeed"

# cryptofeed's hard-coded production hosts, rewritten to the bench server when they appear in
# a synchronous REST call (KuCoin's bullet-public request is built from this literal).
_KUCOIN_PROD = "https://api.kucoin.com"
# cryptofeed retries a failing connection with a doubling back-off (10 retries by default);
# after this many failures without any data the run stops with an error instead of waiting
MAX_FAILURES_BEFORE_DATA = 3


class _NoteHandler(logging.Handler):
    """Keeps cryptofeed's WARNING/ERROR log records so they can go into ``notes``."""

    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(f"{record.levelname}: {record.getMessage()}"[:300])


class _RewritingHTTPSync:
    """Wraps cryptofeed's ``HTTPSync`` to send its production-host requests to the bench."""

    def __init__(self, inner: Any, rewrites: dict[str, str]) -> None:
        self._inner = inner
        self._rewrites = rewrites

    def _fix(self, address: str) -> str:
        for prod, bench in self._rewrites.items():
            if address.startswith(prod):
                return bench + address[len(prod) :]
        return address

    def read(self, address: str, *args: Any, **kwargs: Any) -> Any:
        return self._inner.read(self._fix(address), *args, **kwargs)

    def write(self, address: str, *args: Any, **kwargs: Any) -> Any:
        return self._inner.write(self._fix(address), *args, **kwargs)


def _text(value: Any) -> str:
    return format(value, "f") if isinstance(value, Decimal) else str(value)


def _side(levels: Any, n: int) -> list[list[str]]:
    out: list[list[str]] = []
    for price, size in levels.to_list()[:n]:
        out.append([_text(price), _text(size)])
    return out


class _Run:
    """State shared by the callbacks and the supervisor coroutine."""

    def __init__(self, spec: _common.Spec) -> None:
        self.spec = spec
        expected = spec.expected_updates + spec.expected_trades
        self.rec = _common.Recorder(expected, keep_times=spec.latency_path is not None)
        self.done = asyncio.Event()
        self.updates = 0
        self.trades = 0
        self.snapshots = 0
        self.last_snapshot: float | None = None  # time.monotonic() of the last snapshot
        self.opens: list[int] = []  # monotonic_ns of every WebSocket (re)connect
        self.conn_ids: set[int] = set()
        self.reconnect_ns: int | None = None
        self.recovered_ns: int | None = None
        self.count_checked = False  # Kraken v1: count updates whose checksum cryptofeed checks
        self.checked = 0

    async def on_book(self, book: Any, receipt_timestamp: float) -> None:
        if book.delta is None:  # cryptofeed passes delta=None for a (re)snapshot
            self.snapshots += 1
            self.last_snapshot = time.monotonic()
            if self.reconnect_ns is not None and self.recovered_ns is None:
                self.recovered_ns = time.monotonic_ns()
            return
        self.updates += 1
        if self.count_checked and "c" in book.raw[0]:
            self.checked += 1  # the same test cryptofeed's Kraken._book applies
        if self.rec.mark():
            self.done.set()

    async def on_trade(self, trade: Any, receipt_timestamp: float) -> None:
        self.trades += 1
        if self.rec.mark():
            self.done.set()

    def on_open(self, conn: Any) -> None:
        now = time.monotonic_ns()
        self.opens.append(now)
        # the same connection object opened again: a reconnect
        if id(conn) in self.conn_ids and self.reconnect_ns is None:
            self.reconnect_ns = now
        self.conn_ids.add(id(conn))

    def failed(self, log: _NoteHandler) -> str | None:
        """cryptofeed's own stop rule: before any data, connecting failed repeatedly or the
        venue answered the subscription with an error (cryptofeed would retry for minutes)."""
        if self.rec.n or self.snapshots:
            return None
        failures = [r for r in log.records if "reconnecting in" in r]
        if len(failures) >= MAX_FAILURES_BEFORE_DATA:
            return f"no data after {len(failures)} failed connection attempts: {failures[0]}"
        rejected = [r for r in log.records if "error from exchange" in r]
        if rejected:  # e.g. a KuCoin subscription answered with an error message
            return f"no data, the venue answered with an error: {rejected[0]}"
        return None

    async def supervise(self, log: _NoteHandler) -> str:
        """Wait for the end of the run (``_common.wait_for_end``); returns why it ended."""
        ended: str = await _common.wait_for_end(
            self.spec,
            self.rec,
            self.done,
            last_activity=lambda: self.last_snapshot,
            stop=lambda: self.failed(log),
        )
        return ended


def _patch_connections(run: _Run, allow_plain_ws: bool, notes: list[str]) -> None:
    """Instrument WSAsyncConn (count (re)connects); optionally let it use ``ws://``."""
    import cryptofeed.connection as cconn

    cls: Any = cconn.WSAsyncConn
    orig_init: Callable[..., None] = cls.__init__
    orig_open: Callable[..., Any] = cls._open

    def init(self: Any, address: str, *args: Any, **kwargs: Any) -> None:
        if allow_plain_ws and address.startswith("ws://"):
            orig_init(self, "wss://" + address[len("ws://") :], *args, **kwargs)
            self.address = address
        else:
            orig_init(self, address, *args, **kwargs)

    async def open_(self: Any) -> Any:
        result = await orig_open(self)
        run.on_open(self)
        return result

    cls.__init__ = init
    cls._open = open_
    if allow_plain_ws:
        notes.append(
            "patched: cryptofeed.connection.WSAsyncConn accepts ws:// (2.4.1 raises ValueError "
            "for any address that is not wss://); nothing else changed"
        )


def _std_symbols(feed_cls: Any, wanted: list[str]) -> dict[str, str]:
    """Protocol symbol -> cryptofeed's normalised symbol, from the REST symbol listing."""
    mapping: dict[str, str] = feed_cls.symbol_mapping()  # normalised -> exchange symbol
    by_exchange = {exch: std for std, exch in mapping.items()}
    missing = [s for s in wanted if s not in by_exchange]
    if missing:
        raise RuntimeError(f"symbols not in the venue's symbol listing: {missing[:5]}")
    return {s: by_exchange[s] for s in wanted}


def run(spec: _common.Spec, result: _common.Result) -> None:
    notes = result.notes
    if spec.ca_file:
        # websockets and aiohttp use ssl.create_default_context() (OpenSSL honours
        # SSL_CERT_FILE); requests (symbol listing, KuCoin bullet) uses REQUESTS_CA_BUNDLE.
        # Both must be set before aiohttp is imported: it builds its context at import time.
        os.environ["SSL_CERT_FILE"] = spec.ca_file
        os.environ["REQUESTS_CA_BUNDLE"] = spec.ca_file
        notes.append("TLS: SSL_CERT_FILE and REQUESTS_CA_BUNDLE point at the bench certificate")

    import cryptofeed
    from cryptofeed import FeedHandler
    from cryptofeed.connection import RestEndpoint, Routes, WebsocketEndpoint
    from cryptofeed.defines import L2_BOOK, TRADES
    from cryptofeed.exchanges import Binance, Kraken, KuCoin

    result.version = getattr(cryptofeed, "__version__", "") or _dist_version("cryptofeed")
    use_uvloop = bool(spec.extra.get("uvloop", True))
    config: dict[str, Any] = {"uvloop": use_uvloop, "log": {"disabled": True}}
    handler = _NoteHandler()
    logging.getLogger("feedhandler").addHandler(handler)

    run_state: _Run | None = None
    feed_cls: Any
    kwargs: dict[str, Any] = {}
    channels = [L2_BOOK]
    if spec.protocol == "kraken-v1":
        feed_cls = Kraken
        feed_cls.websocket_endpoints = [WebsocketEndpoint(spec.ws_url, limit=20)]
        feed_cls.rest_endpoints = [
            RestEndpoint(spec.rest_url, routes=Routes("/0/public/AssetPairs"))
        ]
        kwargs["max_depth"] = spec.depth
        kwargs["checksum_validation"] = True
        result.checksum = "verified"
        notes.append(
            "Kraken v1 checksum_validation=True; cryptofeed 2.4.1 only checks the checksum of "
            "messages whose first book dict carries 'c' (an update with both 'a' and 'b' dicts "
            "has 'c' in the second one and is not checked); a mismatch raises BadChecksum, "
            "which makes the connection handler reconnect"
        )
        if spec.expected_trades:
            channels.append(TRADES)
    elif spec.protocol == "binance":
        feed_cls = Binance
        feed_cls.websocket_endpoints = [WebsocketEndpoint(spec.ws_url)]
        feed_cls.rest_endpoints = [
            RestEndpoint(
                spec.rest_url,
                routes=Routes(
                    "/api/v3/exchangeInfo",
                    l2book="/api/v3/depth?symbol={}&limit={}",
                    authentication="/api/v3/userDataStream",
                ),
            )
        ]
        kwargs["max_depth"] = spec.depth
        result.checksum = "unsupported"
        notes.append(
            "Binance has no checksum; cryptofeed checks U/u update-id continuity against the "
            "REST snapshot and on a gap resets every book and fetches new snapshots"
        )
        if spec.expected_trades:
            channels.append(TRADES)
            notes.append(
                "cryptofeed's TRADES channel on Binance is the aggTrade stream (<sym>@aggTrade), "
                "not <sym>@trade"
            )
    elif spec.protocol == "kucoin":
        feed_cls = KuCoin
        feed_cls.http_sync = _RewritingHTTPSync(feed_cls.http_sync, {_KUCOIN_PROD: spec.rest_url})
        feed_cls.rest_endpoints = [
            RestEndpoint(
                spec.rest_url,
                routes=Routes(
                    "/api/v1/symbols", l2book="/api/v3/market/orderbook/level2?symbol={}"
                ),
            )
        ]
        config["kucoin"] = {
            "key_id": "bench-key",
            "key_secret": "bench-secret",
            "key_passphrase": "bench-passphrase",
        }
        kwargs["max_depth"] = spec.depth
        result.checksum = "unsupported"
        notes.append(
            "KuCoin: cryptofeed treats L2_BOOK as an authenticated channel (the REST v3 "
            "snapshot is signed), so fake credentials are configured; bullet-public URL "
            "rewritten from https://api.kucoin.com to the bench REST URL"
        )
        notes.append(
            "KuCoin has no checksum; cryptofeed re-fetches the snapshot when sequenceStart "
            "jumps past the last sequenceEnd + 1"
        )
        if spec.expected_trades:
            channels.append(TRADES)
    else:
        raise RuntimeError(f"cryptofeed client does not support protocol {spec.protocol!r}")

    # FeedHandler installs the uvloop policy (config 'uvloop': True, cryptofeed's default);
    # the loop must be created after that.
    fh = FeedHandler(config=config)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    notes.append(f"event loop: {type(loop).__module__}.{type(loop).__name__}")

    run_state = _Run(spec)
    run_state.count_checked = spec.protocol == "kraken-v1"
    _patch_connections(run_state, spec.ws_url.startswith("ws://"), notes)

    to_std = _std_symbols(feed_cls, spec.symbols)
    callbacks: dict[str, Any] = {L2_BOOK: run_state.on_book}
    if TRADES in channels:
        callbacks[TRADES] = run_state.on_trade
    feed = feed_cls(
        symbols=list(to_std.values()),
        channels=channels,
        callbacks=callbacks,
        config=config,
        **kwargs,
    )
    fh.add_feed(feed)
    fh.run(start_loop=False, install_signal_handlers=False)
    try:
        ended = loop.run_until_complete(run_state.supervise(handler))
        if ended not in (_common.END_DONE, _common.END_IDLE, _common.END_DEADLINE):
            result.error = ended
        note = _common.end_note(ended, spec, run_state.rec)
        if note is not None:
            notes.append(note)
    finally:
        run_state.rec.finish(result, spec)
        result.updates = run_state.updates
        result.trades = run_state.trades
        result.snapshots = run_state.snapshots
        books: dict[str, Any] = dict(feed._l2_book)
        for proto_sym, std in to_std.items():
            ob = books.get(std)
            if ob is None:
                continue
            result.books[proto_sym] = {
                "bids": _side(ob.book.bids, spec.book_levels),
                "asks": _side(ob.book.asks, spec.book_levels),
            }
        if spec.mode == "recovery":
            result.recovery = {
                "recovered_mono_ns": run_state.recovered_ns,
                "gap_declared": False,
                "reconnected": run_state.reconnect_ns is not None,
                "reconnect_mono_ns": run_state.reconnect_ns,
            }
            notes.append(
                "recovery: cryptofeed logs a WARNING and reconnects (1 s back-off, doubling), "
                "resubscribes and delivers a new snapshot callback (book.delta is None); no "
                "callback or flag tells user code that updates were missed"
            )
        notes.append(f"websocket connects: {len(run_state.opens)}")
        if run_state.count_checked:
            notes.append(
                f"checksum checked by cryptofeed on {run_state.checked} of "
                f"{run_state.updates} updates"
            )
        if handler.records:
            notes.append(f"cryptofeed logged {len(handler.records)} warning(s)/error(s)")
            notes.extend(handler.records[:10])
        try:
            loop.run_until_complete(asyncio.wait_for(fh.stop_async(loop=loop), timeout=5))
        except (TimeoutError, Exception) as exc:  # shutting down: report, don't fail the run
            notes.append(f"shutdown: {type(exc).__name__}: {exc}")
        _cancel_all(loop)
    result.ok = result.error is None and run_state.rec.n + run_state.snapshots > 0


def _cancel_all(loop: asyncio.AbstractEventLoop) -> None:
    pending = asyncio.all_tasks(loop)
    for task in pending:
        task.cancel()
    if pending:
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
    loop.close()


def _dist_version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return ""


def main() -> int:
    spec = _common.load_spec()
    result = _common.Result(client=CLIENT, version=_dist_version("cryptofeed"))
    try:
        run(spec, result)
    except BaseException as exc:  # the result file must be written whatever happened
        result.ok = False
        result.error = f"{type(exc).__name__}: {exc}"
    result.write(spec.result_path)
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
