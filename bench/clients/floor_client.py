"""W5, the floor (bench/HARNESS.md): receive frames and parse JSON, nothing else.

``python bench/clients/floor_client.py spec.json`` with gapless's virtual environment
(picows and orjson come with the ``bench`` extra). The fastest transport measured on this
machine (picows, bench/README.md "transport_json") and the fastest JSON parser (orjson)
receive the same traffic the clients get; each data message is parsed and counted, with no
book, no checks and no events. This is what a Python client cannot go below: gapless's
figures are compared with it.

It subscribes with raw protocol requests (Kraken v2 ``book``; Binance combined streams in the
URL) and counts every message that carries data (Kraken ``"type":"update"``, Binance
``"stream"``); snapshots are counted apart. It keeps no book, so it reports none.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
import os
import ssl
import sys
from typing import Any

sys.path.insert(0, os.path.dirname(__file__))

import _common
import orjson
from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect


def _url(spec: _common.Spec) -> tuple[str, list[str]]:
    """The URL to dial and the requests to send once connected."""
    if spec.protocol == "kraken-v2":
        sub = {
            "method": "subscribe",
            "params": {"channel": "book", "symbol": spec.symbols, "depth": spec.depth},
            "req_id": 1,
        }
        return spec.ws_url, [json.dumps(sub)]
    if spec.protocol == "binance":
        names = [f"{s.lower()}@depth@100ms" for s in spec.symbols]
        if spec.expected_trades:
            names += [f"{s.lower()}@trade" for s in spec.symbols]
        return f"{spec.ws_url}/stream?streams={'/'.join(names)}", []
    raise SystemExit(f"floor client: protocol {spec.protocol!r} is not supported")


async def run(spec: _common.Spec) -> _common.Result:
    result = _common.Result(client="floor", version=importlib.metadata.version("picows"))
    result.checksum = "off"
    result.notes.append(f"picows {result.version} + orjson {importlib.metadata.version('orjson')}")
    url, requests = _url(spec)
    expected = spec.expected_updates + spec.expected_trades
    rec = _common.Recorder(expected, keep_times=spec.latency_path is not None)
    done = asyncio.Event()
    kraken = spec.protocol == "kraken-v2"
    loads = orjson.loads

    class Listener(WSListener):
        def on_ws_connected(self, transport: WSTransport) -> None:
            for text in requests:
                transport.send(WSMsgType.TEXT, text.encode())

        def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
            if frame.msg_type is not WSMsgType.TEXT:
                if frame.msg_type is WSMsgType.PING:
                    transport.send_pong(frame.get_payload_as_bytes())
                elif frame.msg_type is WSMsgType.CLOSE:
                    done.set()
                return
            msg: Any = loads(frame.get_payload_as_memoryview())
            if kraken:
                # book messages only: the status message on connect is a "type":"update" too
                kind = msg.get("type")
                if kind != "update" or msg.get("channel") != "book":
                    if kind == "snapshot":
                        result.snapshots += 1
                    return
                result.updates += 1
            elif "stream" in msg:
                if msg["stream"].endswith("@trade"):
                    result.trades += 1
                else:
                    result.updates += 1
            else:
                return
            if rec.mark():
                done.set()

        def on_ws_disconnected(self, transport: WSTransport) -> None:
            done.set()

    ctx: ssl.SSLContext | None = None
    if url.startswith("wss://"):
        ctx = ssl.create_default_context(cafile=spec.ca_file)
    transport, _listener = await ws_connect(
        Listener, url, ssl_context=ctx, enable_auto_pong=True, max_frame_size=64 * 1024 * 1024
    )
    try:
        ended = await _common.wait_for_end(spec, rec, done)
    finally:
        rec.finish(result, spec)
        transport.disconnect()
    note = _common.end_note(ended, spec, rec)
    if note is not None:
        result.notes.append(note)
    result.ok = rec.n >= expected
    if not result.ok:
        result.error = f"{rec.n} of {expected} messages"
    return result


def main() -> int:
    spec = _common.load_spec()
    try:
        result, loop_note = _common.run_loop(run(spec))
        result.notes.append(loop_note)
    except Exception as exc:
        result = _common.Result(client="floor", version="?")
        result.error = f"{type(exc).__name__}: {exc}"
    result.write(spec.result_path)
    return 0 if result.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
