"""Benchmark client for python-kraken-sdk (run with ``bench/.venvs/python-kraken-sdk/bin/python``).

``python bench/clients/kraken_sdk_client.py spec.json``: maintains the books with the SDK's
``kraken.spot.SpotOrderBookClient`` (Kraken WebSocket v2, the SDK validates the CRC32
checksum of every update) and counts its ``callback(pair, message)`` calls, one per book
message. Only the ``kraken-v2`` protocol exists for this library.

Overrides (see ``bench/PEERS.md``): the WebSocket base URL is the class attribute ``WS_URL``
(the SDK appends ``/v2``; ``SpotOrderBookClient.__init__`` has no URL argument), the REST
``Market`` the book client uses for ``AssetPairs`` (price/lot decimals for the checksum) is
pointed at the bench, and TLS trust comes from ``SSL_CERT_FILE``/``REQUESTS_CA_BUNDLE``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import time
from typing import Any
from urllib.parse import urlsplit

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _common

CLIENT = "python-kraken-sdk"


class _Run:
    def __init__(self, spec: _common.Spec) -> None:
        self.spec = spec
        self.rec = _common.Recorder(spec.expected_updates, keep_times=spec.latency_path is not None)
        self.done = asyncio.Event()
        self.updates = 0
        self.snapshots = 0
        self.last_other: float | None = None  # time.monotonic() of the last snapshot/error
        self.errors: list[str] = []
        self.first_error_ns: int | None = None
        self.updates_seen_ns: int | None = None  # first update (the stream is live)
        self.recovered_ns: int | None = None
        self.snapshots_after_start = 0

    async def callback(self, pair: str, message: dict[str, Any]) -> None:
        if "error" in message:
            self.last_other = time.monotonic()
            # the SDK's own notice: "Checksum mismatch - resubscribing to the orderbook for X"
            if self.first_error_ns is None:
                self.first_error_ns = time.monotonic_ns()
            self.errors.append(f"{pair}: {message['error']}"[:300])
            return
        if message.get("type") == "snapshot":
            self.snapshots += 1
            self.last_other = time.monotonic()
            if self.updates_seen_ns is not None:
                self.snapshots_after_start += 1
                if self.recovered_ns is None:
                    self.recovered_ns = time.monotonic_ns()
            return
        if self.updates_seen_ns is None:
            self.updates_seen_ns = time.monotonic_ns()
        self.updates += 1
        if self.rec.mark():
            self.done.set()

    async def supervise(self, client: Any) -> str:
        """Wait for the end of the run (``_common.wait_for_end``); returns why it ended. The
        SDK's own stop rule: its connection gave up (``exception_occur``)."""
        ended: str = await _common.wait_for_end(
            self.spec,
            self.rec,
            self.done,
            last_activity=lambda: self.last_other,
            stop=lambda: "the SDK's connection stopped" if client.exception_occur else None,
        )
        return ended


def _ws_base(ws_url: str, api_v: str) -> str:
    url = ws_url.rstrip("/")
    if not url.endswith(api_v):
        raise RuntimeError(f"python-kraken-sdk appends {api_v!r} to its WS_URL; got {ws_url!r}")
    return url[: -len(api_v)]


def _point_market_at(market: Any, rest_url: str, notes: list[str]) -> list[int]:
    """Send the book client's REST ``Market`` to the bench; returns a one-item call counter.

    The SDK builds request URLs with ``urljoin(URL, "/0/public/AssetPairs")``, which drops
    any path of ``URL``; the bench serves Kraken REST under ``/kraken``, so the path prefix
    is put back in front of the ``uri`` of each request.
    """
    parts = urlsplit(rest_url)
    market.URL = f"{parts.scheme}://{parts.netloc}"
    prefix = parts.path.rstrip("/")
    calls = [0]
    inner = market.request

    def request(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        if "uri" in kwargs:
            kwargs["uri"] = prefix + kwargs["uri"]
        elif len(args) >= 2:
            args = (args[0], prefix + args[1], *args[2:])
        return inner(*args, **kwargs)

    market.request = request
    if prefix:
        notes.append(
            f"REST: the book client's Market uses URL={market.URL} and every uri is prefixed "
            f"with {prefix!r} (the SDK's urljoin drops the path of its URL)"
        )
    return calls


async def _main(spec: _common.Spec, result: _common.Result) -> None:
    from kraken.spot import Market, SpotOrderBookClient

    notes = result.notes
    run = _Run(spec)
    base = _ws_base(spec.ws_url, SpotOrderBookClient.API_V)
    SpotOrderBookClient.WS_URL = base
    notes.append(f"WebSocket: SpotOrderBookClient.WS_URL={base} (+ the SDK's '/v2')")
    client = SpotOrderBookClient(depth=spec.depth, callback=run.callback)
    market = Market(url=spec.rest_url)
    rest_calls = _point_market_at(market, spec.rest_url, notes)
    client._SpotOrderBookClient__market = market  # the SDK creates Market() with no URL
    notes.append(
        "the book client's private Market instance (_SpotOrderBookClient__market) is replaced "
        "by one pointed at the bench; it is called synchronously (requests) the first time "
        "each pair's book message arrives"
    )
    result.checksum = "verified"
    notes.append(
        "checksum: the SDK validates every update's CRC32 over its top 10 levels (prices and "
        "sizes re-printed from floats with AssetPairs' pair_decimals/lot_decimals); on a "
        "mismatch it calls back with {'error': ...}, unsubscribes, waits 3 s and resubscribes"
    )
    try:
        await client.start()
        await client.add_book(pairs=list(spec.symbols))
        ended = await run.supervise(client)
        note = _common.end_note(ended, spec, run.rec)
        if note is not None:
            notes.append(note)
    finally:
        run.rec.finish(result, spec)
        result.updates = run.updates
        result.snapshots = run.snapshots
        for symbol in spec.symbols:
            book = client.get(pair=symbol)
            if not book:
                continue
            result.books[symbol] = {
                "bids": [[p, v[0]] for p, v in list(book["bid"].items())[: spec.book_levels]],
                "asks": [[p, v[0]] for p, v in list(book["ask"].items())[: spec.book_levels]],
            }
        if spec.mode == "recovery":
            result.recovery = {
                "recovered_mono_ns": run.recovered_ns,
                "gap_declared": run.first_error_ns is not None,
                "reconnected": run.snapshots_after_start > 0,
                "checksum_error_mono_ns": run.first_error_ns,
            }
            notes.append(
                "recovery: the SDK reconnects by itself (a random wait of round(1 + "
                "random() * (2**n - 1)) s before attempt n) and re-sends its subscriptions; the "
                "subscribe acknowledgement drops its book and the new snapshot rebuilds it; the "
                "reconnect is only logged (WARNING), user code is not told that updates were "
                "missed (the checksum-mismatch error message is the SDK's only signal, and "
                "only for a book that went wrong)"
            )
        notes.append(f"AssetPairs requests made by the SDK: {rest_calls[0]}")
        if run.errors:
            notes.append(f"{len(run.errors)} error message(s) reached the callback")
            notes.extend(run.errors[:10])
        if client.exception_occur:
            notes.append("the SDK's connection stopped with an exception (exception_occur)")
        await _shutdown(client)
    result.ok = run.rec.n + run.snapshots > 0


async def _shutdown(client: Any) -> None:
    """Stop the SDK's connection without waiting for its 10 s receive timeout."""
    logging.getLogger("kraken").setLevel(logging.ERROR)  # its "will be recovered" warning
    conn = client._pub_conn
    if conn is not None:
        conn.keep_alive = False  # its reconnect loop ends instead of reconnecting
        if conn.socket is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.socket.close(), timeout=2)
    with contextlib.suppress(Exception):
        await asyncio.wait_for(client.close(), timeout=5)


def _dist_version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return ""


def main() -> int:
    spec = _common.load_spec()
    result = _common.Result(client=CLIENT, version=_dist_version("python-kraken-sdk"))
    try:
        if spec.protocol != "kraken-v2":
            raise RuntimeError(f"python-kraken-sdk only speaks kraken-v2, not {spec.protocol!r}")
        if spec.ca_file:
            # websockets uses ssl.create_default_context() (OpenSSL honours SSL_CERT_FILE);
            # the SDK's REST calls use requests (REQUESTS_CA_BUNDLE) and aiohttp (built at
            # import time, hence before the import below)
            os.environ["SSL_CERT_FILE"] = spec.ca_file
            os.environ["REQUESTS_CA_BUNDLE"] = spec.ca_file
            result.notes.append("TLS: SSL_CERT_FILE and REQUESTS_CA_BUNDLE point at the bench CA")
        result.notes.append("event loop: asyncio default (the SDK does not use uvloop)")
        asyncio.run(_main(spec, result))
    except BaseException as exc:  # the result file must be written whatever happened
        result.ok = False
        result.error = f"{type(exc).__name__}: {exc}"
    result.write(spec.result_path)
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
