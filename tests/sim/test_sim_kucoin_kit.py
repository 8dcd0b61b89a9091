"""Helpers for the KuCoin simulator tests (no tests here; shared by ``test_sim_kucoin_*``).

Requests through the raw HTTP/1.1 client of ``simkit`` (so REST responses are
checked as bytes any client would read), a bullet + connect helper on a plain
``websockets`` client, and a tiny independent reference of the protocols.md
§2.5 calibration algorithm (Decimal throughout). Nothing here imports gapless
client code.
"""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal
from typing import Any

from simkit import HttpResponse, collect, http_exchange
from websockets.asyncio.client import ClientConnection, connect

from gapless.sim.kucoin import KucoinSim, KucoinSimConfig


def kcfg(**kw: Any) -> KucoinSimConfig:
    base: dict[str, Any] = {"seed": 7, "symbols": ("BTC-USDT", "ETH-USDT")}
    base.update(kw)
    return KucoinSimConfig(**base)


async def http(
    port: int, method: str, path: str, *, limit_s: float = 5.0, post_length: bool = True
) -> HttpResponse:
    """One request to the simulator; a POST says ``Content-Length: 0`` unless ``post_length``
    is False."""
    headers = {"Accept": "*/*"}
    if method == "POST" and post_length:
        headers["Content-Length"] = "0"
    return await http_exchange("127.0.0.1", port, method, path, headers, limit_s=limit_s)


async def bullet(sim: KucoinSim) -> dict[str, Any]:
    r = await http(sim.ports[0], "POST", "/api/v1/bullet-public")
    assert r.status == 200, r
    data: dict[str, Any] = r.json()["data"]
    return data


async def open_ws(
    sim: KucoinSim,
    *,
    instance: int = 0,
    connect_id: str | None = "c1",
    token: str | None = None,
    **kw: Any,
) -> ClientConnection:
    """Bullet (unless ``token`` is given) and connect; the caller reads the welcome."""
    if token is None:
        token = (await bullet(sim))["token"]
    url = sim.ws_urls[instance] + f"?token={token}"
    if connect_id is not None:
        url += f"&connectId={connect_id}"
    kw.setdefault("ping_interval", None)
    return await connect(url, **kw)


def sub(
    topic: str, req_id: Any = "1", *, response: bool | None = True, kind: str = "subscribe"
) -> str:
    msg: dict[str, Any] = {"id": req_id, "type": kind, "topic": topic, "privateChannel": False}
    if response is not None:
        msg["response"] = response
    return json.dumps(msg)


async def recv_json(ws: ClientConnection, limit_s: float = 3.0) -> Any:
    async with asyncio.timeout(limit_s):
        return json.loads(await ws.recv())


async def frames_for(ws: ClientConnection, seconds: float) -> list[Any]:
    """Frames received during ``seconds``, parsed (plain JSON)."""
    return [json.loads(m) for m in await collect(ws, seconds)]


def is_l2(m: Any, symbol: str | None = None) -> bool:
    return (
        isinstance(m, dict)
        and m.get("subject") == "trade.l2update"
        and (symbol is None or m["data"]["symbol"] == symbol)
    )


class GapError(Exception):
    pass


class RefL2:
    """protocols.md §2.5 calibration, written from the fact sheet (Decimal, naive)."""

    def __init__(self, snapshot: dict[str, Any]) -> None:
        self.seq = int(snapshot["sequence"])
        self.bids = {Decimal(p): Decimal(s) for p, s in snapshot["bids"]}
        self.asks = {Decimal(p): Decimal(s) for p, s in snapshot["asks"]}
        self.applied = 0
        self.skipped_entries = 0

    def apply(self, data: dict[str, Any]) -> bool:
        """Apply one l2update ``data``; False if dropped as old; GapError on a gap."""
        start, end = data["sequenceStart"], data["sequenceEnd"]
        if end <= self.seq:
            return False  # step 3: already in the snapshot
        if start > self.seq + 1:  # step 4
            raise GapError(f"gap: book at {self.seq}, message {start}..{end}")
        first = self.applied == 0
        for side, entries in (
            (self.asks, data["changes"]["asks"]),
            (self.bids, data["changes"]["bids"]),
        ):
            for price, size, seq in entries:
                if int(seq) <= self.seq:
                    assert first, "only the first applied message may straddle the snapshot"
                    self.skipped_entries += 1
                    continue
                if price == "0":  # step 5: ignore, the sequence still advances
                    continue
                if Decimal(size) == 0:
                    side.pop(Decimal(price), None)
                else:
                    side[Decimal(price)] = Decimal(size)
        self.seq = end
        self.applied += 1
        return True

    def book(self) -> tuple[list[tuple[Decimal, Decimal]], list[tuple[Decimal, Decimal]]]:
        return sorted(self.bids.items(), reverse=True), sorted(self.asks.items())


def dec_levels(levels: Any) -> list[tuple[Decimal, Decimal]]:
    return [(Decimal(p), Decimal(s)) for p, s in levels]
