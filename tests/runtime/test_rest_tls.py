"""REST TLS: certificates are verified by default; a supplied CA is used.

A local HTTPS server with a certificate from a throwaway CA (trustme, the same
as the WebSocket TLS tests in ``test_transport.py`` and
``test_feed_integration.py``): the default :class:`RestClient` refuses it
before any request is sent; with the CA supplied through
``RestOptions.ssl_context`` it is accepted; the hostname is still checked.
Real sockets, real time.
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import AsyncIterator

import pytest
import trustme
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from gapless.errors import TransportError
from gapless.runtime.rest import RestClient, RestOptions

pytestmark = pytest.mark.timeout(30)


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def _client_ctx(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    return ctx


@contextlib.asynccontextmanager
async def _https_server(ca: trustme.CA, name: str) -> AsyncIterator[tuple[str, list[str]]]:
    """An HTTPS server on 127.0.0.1 whose certificate names ``name``; yields
    its base URL and the paths of the requests it answered."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(name).configure_cert(ctx)
    seen: list[str] = []

    async def process_request(conn: ServerConnection, req: Request) -> Response:
        seen.append(req.path)
        body = b'{"serverTime":1}'
        headers = Headers({"Content-Type": "application/json", "Content-Length": str(len(body))})
        return Response(200, "OK", headers, body)

    async def no_ws(ws: ServerConnection) -> None:  # pragma: no cover - REST only
        await ws.close()

    server = await serve(no_ws, "127.0.0.1", 0, ssl=ctx, process_request=process_request)
    port = next(iter(server.sockets)).getsockname()[1]
    try:
        yield f"https://127.0.0.1:{port}", seen
    finally:
        server.close()
        await server.wait_closed()


async def test_rest_verifies_tls_by_default_and_uses_a_supplied_ca(ca: trustme.CA) -> None:
    async with _https_server(ca, "127.0.0.1") as (base, seen):
        async with RestClient() as rest:
            with pytest.raises(TransportError, match="CERTIFICATE_VERIFY_FAILED"):
                await rest.request("GET", f"{base}/api/v3/time")
        assert seen == []  # refused during the handshake: no request was sent
        async with RestClient(RestOptions(ssl_context=_client_ctx(ca))) as rest:
            resp = await rest.request("GET", f"{base}/api/v3/time")
    assert resp.status == 200
    assert resp.body == b'{"serverTime":1}'
    assert seen == ["/api/v3/time"]


async def test_rest_verifies_the_hostname(ca: trustme.CA) -> None:
    async with (
        _https_server(ca, "exchange.example") as (base, seen),
        RestClient(RestOptions(ssl_context=_client_ctx(ca))) as rest,
    ):
        with pytest.raises(TransportError, match="CERTIFICATE_VERIFY_FAILED"):
            await rest.request("GET", f"{base}/api/v3/time")
    assert seen == []
