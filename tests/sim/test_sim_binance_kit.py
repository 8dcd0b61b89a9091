"""Helpers for the Binance simulator tests, plus checks of the helpers themselves.

GETs through the raw HTTP/1.1 client of ``simkit`` (no HTTP library), a
``websockets`` client connection that records server pings and can stop
answering them, and a naive Decimal reference of the protocols.md §3.8
local-book algorithm.
Nothing here imports gapless client code.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from simkit import HttpResponse, http_exchange
from websockets.asyncio.client import ClientConnection
from websockets.frames import Frame, Opcode
from websockets.protocol import Event

from gapless.sim.binance import BinanceSim, BinanceSimConfig

WIRE_NUM = r"^\d+\.\d{8}$"


def cfg(**kw: Any) -> BinanceSimConfig:
    base: dict[str, Any] = {"seed": 7, "symbols": ("BTCUSDT", "ETHUSDT"), "tick_rate_hz": 50.0}
    base.update(kw)
    return BinanceSimConfig(**base)


async def http_get(sim: BinanceSim, path: str, limit_s: float = 5.0) -> HttpResponse:
    """One GET on a fresh connection; reads on to see whether the server closes after it."""
    headers = {"Accept": "application/json", "User-Agent": "raw-test"}
    return await http_exchange(
        sim.config.host, sim.port, "GET", path, headers, limit_s=limit_s, read_to_eof=True
    )


class SpyConnection(ClientConnection):
    """Records server ping frames as (loop time, payload); ``answer_pings`` False
    suppresses websockets' automatic pongs (explicit :func:`send_pong` still goes out)."""

    answer_pings = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pings: list[tuple[float, bytes]] = []
        self.manual_pong = False
        send_frame = self.protocol.send_frame

        def filtered(frame: Frame) -> None:
            if frame.opcode is Opcode.PONG and not self.answer_pings and not self.manual_pong:
                return
            send_frame(frame)

        self.protocol.send_frame = filtered  # type: ignore[method-assign]

    def process_event(self, event: Event) -> None:
        if isinstance(event, Frame) and event.opcode is Opcode.PING:
            self.pings.append((self.loop.time(), bytes(event.data)))
        super().process_event(event)


async def send_pong(ws: SpyConnection, data: bytes = b"") -> None:
    ws.manual_pong = True
    try:
        await ws.pong(data)
    finally:
        ws.manual_pong = False


class GapError(Exception):
    """§3.8: ``U`` > book id + 1, events were missed."""


class RefBook:
    """protocols.md §3.8 step by step, Decimal throughout (deliberately naive)."""

    def __init__(self) -> None:
        self.bids: dict[Decimal, Decimal] = {}
        self.asks: dict[Decimal, Decimal] = {}
        self.book_id: int | None = None
        self.buffer: list[dict[str, Any]] = []

    def feed(self, event: dict[str, Any]) -> None:
        if self.book_id is None:
            self.buffer.append(event)  # step 1
        else:
            self.apply(event)

    def load(self, snap: dict[str, Any]) -> bool:
        """Steps 3-6; False when the snapshot is older than the first buffered ``U``."""
        last = int(snap["lastUpdateId"])
        if self.buffer and last < self.buffer[0]["U"]:
            return False  # step 3: fetch again
        self.bids = {Decimal(p): Decimal(q) for p, q in snap["bids"]}
        self.asks = {Decimal(p): Decimal(q) for p, q in snap["asks"]}
        self.book_id = last
        pending = [e for e in self.buffer if e["u"] > last]  # step 4
        self.buffer = []
        if pending:
            assert pending[0]["U"] <= last + 1 <= pending[0]["u"]
        for i, e in enumerate(pending):
            self.apply(e, straddle=i == 0)
        return True

    def apply(self, e: dict[str, Any], straddle: bool = False) -> None:
        """Step 6; only the first event after the snapshot may start before book id + 1."""
        assert self.book_id is not None
        if e["u"] <= self.book_id:
            return
        if e["U"] > self.book_id + 1:
            raise GapError(f"U={e['U']} after book id {self.book_id}")
        if not straddle:
            assert e["U"] == self.book_id + 1, "strictly consistent stream"
        for side, levels in ((self.bids, e["b"]), (self.asks, e["a"])):
            for p, q in levels:
                if Decimal(q) == 0:
                    side.pop(Decimal(p), None)
                else:
                    side[Decimal(p)] = Decimal(q)
        self.book_id = e["u"]

    def as_text(self) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        bids = [(f"{p:.8f}", f"{self.bids[p]:.8f}") for p in sorted(self.bids, reverse=True)]
        asks = [(f"{p:.8f}", f"{self.asks[p]:.8f}") for p in sorted(self.asks)]
        return bids, asks


def test_ref_book_follows_section_3_8() -> None:
    book = RefBook()
    book.feed({"U": 5, "u": 7, "b": [["1.00000000", "2.00000000"]], "a": []})
    assert not book.load({"lastUpdateId": 3, "bids": [], "asks": []})  # 3 < first U 5
    assert book.load(
        {"lastUpdateId": 6, "bids": [["1.00000000", "1.00000000"]], "asks": [["2.0", "1.0"]]}
    )
    assert book.book_id == 7
    assert book.bids == {Decimal(1): Decimal(2)}
    book.apply({"U": 8, "u": 8, "b": [["1.00000000", "0.00000000"]], "a": []})
    assert book.bids == {}
    try:
        book.apply({"U": 10, "u": 11, "b": [], "a": []})
    except GapError:
        pass
    else:  # pragma: no cover
        raise AssertionError("gap not detected")
