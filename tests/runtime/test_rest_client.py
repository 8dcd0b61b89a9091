"""REST client and weight budget over a real loopback HTTP server."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from gapless.errors import ConfigError, TransportError
from gapless.runtime.rest import RestBudget, RestClient, RestOptions, RestTooLarge


def _json(status: int, body: Any, **headers: str) -> Response:
    raw = json.dumps(body).encode()
    h = Headers({"Content-Type": "application/json", "Content-Length": str(len(raw)), **headers})
    return Response(status, "OK" if status == 200 else "Error", h, raw)


@contextlib.asynccontextmanager
async def _http_server() -> AsyncIterator[tuple[str, list[str]]]:
    seen: list[str] = []

    async def process_request(conn: ServerConnection, req: Request) -> Response | None:
        seen.append(req.path)
        if req.path.startswith("/slow"):
            await asyncio.sleep(30)
        if req.path.startswith("/big"):
            return _json(200, {"x": "y" * 200_000})
        if req.path.startswith("/limited"):
            return _json(429, {"code": -1003, "msg": "Too many requests"}, **{"Retry-After": "7"})
        return _json(200, {"lastUpdateId": 1, "path": req.path})

    async def handler(ws: ServerConnection) -> None:  # pragma: no cover - REST only
        await ws.close()

    server = await serve(handler, "127.0.0.1", 0, process_request=process_request)
    port = next(iter(server.sockets)).getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", seen
    finally:
        server.close()
        await server.wait_closed()


async def test_get_json_with_params() -> None:
    async with _http_server() as (base, seen), RestClient() as rest:
        resp = await rest.request("GET", f"{base}/api/v3/depth", params={"symbol": "BTCUSDT"})
    assert resp.status == 200
    assert json.loads(resp.body)["lastUpdateId"] == 1
    assert seen == ["/api/v3/depth?symbol=BTCUSDT"]


async def test_retry_after_is_parsed_and_blocks_the_budget() -> None:
    async with _http_server() as (base, _), RestClient() as rest:
        resp = await rest.request("GET", f"{base}/limited")
    assert resp.status == 429
    assert resp.retry_after_s == 7.0
    budget = RestBudget(capacity=100, per_second=10)
    budget.on_response(resp.status, resp.retry_after_s, now=50.0)
    assert budget.wait_time(1, now=50.0) == pytest.approx(7.0)
    assert budget.wait_time(1, now=57.5) == 0.0


async def test_body_size_cap() -> None:
    async with _http_server() as (base, _), RestClient(RestOptions(max_body_bytes=10_000)) as rest:
        with pytest.raises(RestTooLarge):
            await rest.request("GET", f"{base}/big")


@pytest.mark.looptime
async def test_timeout_is_a_transport_error() -> None:
    async with _http_server() as (base, _), RestClient(RestOptions(timeout_s=2.0)) as rest:
        with pytest.raises(TransportError, match="no answer within 2 s"):
            await rest.request("GET", f"{base}/slow")


async def test_connection_refused_is_a_transport_error() -> None:
    async with RestClient() as rest:
        with pytest.raises(TransportError):
            await rest.request("GET", "http://127.0.0.1:9/nothing")


async def test_environment_proxies_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")
    async with _http_server() as (base, _), RestClient() as rest:
        resp = await rest.request("GET", f"{base}/api/v3/ping")
    assert resp.status == 200


async def test_misuse_is_a_config_error() -> None:
    rest = RestClient()
    with pytest.raises(ConfigError):
        await rest.request("GET", "http://127.0.0.1:1/")
    async with rest:
        with pytest.raises(ConfigError):
            await rest.request("GET", "ftp://example/")


def test_budget_paces_weight_and_418_counts_as_a_ban() -> None:
    budget = RestBudget(capacity=300, per_second=5)  # e.g. 300 weight per minute
    assert budget.wait_time(250, now=0.0) == 0.0
    budget.take(250, now=0.0)
    assert budget.wait_time(250, now=0.0) == pytest.approx((250 - 50) / 5)
    budget.on_response(418, None, now=1.0)
    assert budget.bans == 1
    assert budget.wait_time(1, now=1.0) >= 60.0
    with pytest.raises(ValueError, match="positive"):
        RestBudget(capacity=0, per_second=1)
