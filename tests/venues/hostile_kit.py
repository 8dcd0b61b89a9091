"""Live public adapters of the three venues for the hostile-input tests.

``test_json_depth.py`` and ``test_hostile_numbers.py`` need each venue's
adapter with a live book and a live trade stream, fed by hand: :class:`Live`
plays the venue (answers subscriptions, REST snapshots and dials) and keeps
every event. Frames are built from protocols.md shapes (Kraken §1.5-§1.9,
KuCoin §2.1-§2.6, Binance §3.4-§3.8), checksums with the simulator's
independent implementation.

Named ``hostile_kit`` because test directories have no ``__init__.py`` and
basenames must be unique across the tree.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

from gapless.events import BookSnapshot, BookUpdate, Event, Trade
from gapless.sim import wire as kw
from gapless.sim.checksum import checksum_scaled
from gapless.sim.market import PairSpec
from gapless.sim.numbers import rfc3339_us
from gapless.venues import binance, kraken, kucoin
from gapless.venues.base import Now, Phase, RestResult, Step
from gapless.venues.binance.adapter import BinanceAdapter, BinanceOptions
from gapless.venues.kraken.adapter import KrakenAdapter, KrakenOptions
from gapless.venues.kucoin.adapter import KucoinAdapter, KucoinOptions

__all__ = ["VENUES", "BinanceLive", "KrakenLive", "KucoinLive", "Live", "of"]

WALL0 = 1_700_000_000_000_000_000
E = TypeVar("E", bound=Event)


def of(events: Iterable[Event], cls: type[E]) -> list[E]:
    return [e for e in events if isinstance(e, cls)]


class Live:
    """One venue's public adapter (a book and trades of one symbol) made live.

    ``frame`` feeds one frame and plays the venue's side of whatever the
    adapter asks in return (acks, REST snapshots); every event is kept in
    ``events``. Subclasses know one venue's wire shapes."""

    venue = ""
    symbol = ""
    adapter: Any

    def __init__(self) -> None:
        self.t = 0.0
        self.events: list[Event] = []
        self.trade_id = 10
        self.seq = 0

    def now(self) -> Now:
        return Now(self.t, WALL0 + round(self.t * 1e9))

    def tick(self, dt: float = 1.0) -> Step:
        self.t += dt
        return self.serve(self.adapter.on_timer(self.now()))

    def frame(self, data: str | bytes) -> Step:
        """Feed one frame; the returned step holds only this frame's own answer."""
        step: Step = self.adapter.on_frame(data, self.now())
        self.serve(step)
        return step

    def serve(self, step: Step) -> Step:
        self.events.extend(step.events)
        for text in step.sends:
            for answer in self.answer(json.loads(text)):
                self.serve(self.adapter.on_frame(answer, self.now()))
        for call in step.rest:
            body = self.rest(call.key)
            if body is not None:
                result = RestResult(call.key, 200, body)
                self.serve(self.adapter.on_rest(result, self.now()))
        return step

    def settle(self) -> None:
        """Timers until every stream is live again (acks and snapshots answered)."""
        for _ in range(30):
            states = {self.adapter.stream_state(k) for k in self.adapter.streams()}
            if states == {"live"} and self.adapter.phase is Phase.LIVE and self.book_valid():
                return
            self.tick(2.0)
            self.frame(self.book_update())
        raise AssertionError(f"{self.venue}: not live again: {self.adapter.streams()}")

    # ---- per venue
    def answer(self, request: dict[str, Any]) -> list[str]:
        raise NotImplementedError

    def rest(self, key: str) -> bytes | None:
        return None

    def book_update(self) -> str:
        raise NotImplementedError

    def trade(
        self, price: str = "100.5", qty: str = "0.25", trade_id: Any = None, *, record: bool = True
    ) -> str:
        """A trade with ``price``, ``qty`` and ``trade_id`` (None: the next one) as
        given; ``record=False`` keeps it out of what the venue replays later."""
        raise NotImplementedError

    def number_frames(self, field: str, value: str) -> list[str]:
        """Frames carrying ``value`` (wire text) as ``field``: "book price", "book qty",
        "trade price" or "trade qty" (a book update is a bid)."""
        raise NotImplementedError

    def book_valid(self) -> bool:
        b = self.adapter.book(self.symbol)
        return b is not None and bool(b.valid)

    def book_levels(self) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
        b = self.adapter.book(self.symbol)
        assert b is not None
        return tuple(b.bids()), tuple(b.asks())

    def delivered(self) -> list[Event]:
        return [e for e in self.events if isinstance(e, Trade | BookSnapshot | BookUpdate)]


# ------------------------------------------------------------------ Kraken (§1.5-§1.9)


class KrakenLive(Live):
    venue = "kraken"
    symbol = "BTC/USD"
    pp, qp = 1, 8

    def __init__(self, **opts: Any) -> None:
        super().__init__()
        self.adapter = KrakenAdapter(
            [kraken.book(self.symbol, 10), kraken.trades(self.symbol)], KrakenOptions(**opts)
        )
        self.ts_us = 1_696_613_755_000_000
        self.last_trades: list[str] = []
        # scaled ints (pp 1, qp 8): bids 100.0 .. 99.1, asks 100.1 .. 101.0
        self.bids = {1000 - i: (i + 1) * 10**8 for i in range(10)}
        self.asks = {1001 + i: (i + 1) * 10**8 for i in range(10)}
        self.serve(self.adapter.on_connected("c1", self.now()))
        self.settle()

    def stamp(self) -> str:
        self.ts_us += 1000
        return rfc3339_us(self.ts_us)

    def answer(self, request: dict[str, Any]) -> list[str]:
        params = request.get("params", {})
        channel = params.get("channel")
        if request.get("method") not in ("subscribe", "unsubscribe"):
            return []
        result: dict[str, Any] = {"channel": channel, "snapshot": True}
        if "depth" in params:
            result["depth"] = params["depth"]
        out = []
        for sym in params.get("symbol") or [None]:
            if sym is not None:
                result = {**result, "symbol": sym}
            out.append(
                json.dumps(
                    {
                        "method": request["method"],
                        "result": result,
                        "success": True,
                        "time_in": self.stamp(),
                        "time_out": self.stamp(),
                        "req_id": request.get("req_id"),
                    }
                )
            )
        if request["method"] == "subscribe" and channel == "instrument":
            data = kw.instrument_data([PairSpec(self.symbol, "100.0", self.pp, self.qp)])
            out.append(json.dumps({"channel": "instrument", "type": "snapshot", "data": data}))
        if request["method"] == "subscribe" and channel == "book":
            out.append(self.book_message("snapshot", self.bids, self.asks))
        if request["method"] == "subscribe" and channel == "trade" and params.get("snapshot"):
            # §1.8: the last trades, the point a resubscribed trade stream resumes from
            items = ",".join(self.last_trades[-3:])
            out.append(f'{{"channel":"trade","type":"snapshot","data":[{items}]}}')
        return out

    def checksum(self) -> int:
        asks = sorted(self.asks.items())
        bids = sorted(self.bids.items(), reverse=True)
        return checksum_scaled(asks, bids)

    def book_message(self, kind: str, bids: dict[int, int], asks: dict[int, int]) -> str:
        return kw.book_message(
            kind,
            json.dumps(self.symbol),
            sorted(bids.items(), reverse=True),
            sorted(asks.items()),
            self.checksum(),
            self.ts_us,
            self.pp,
            self.qp,
        )

    def book_update(self) -> str:
        self.ts_us += 1000
        best = max(self.bids)
        self.bids[best] += 1
        return self.book_message("update", {best: self.bids[best]}, {})

    def raw_book_update(self, price: str, qty: str) -> str:
        """A bid update with ``price`` and ``qty`` inserted verbatim (JSON text)."""
        self.ts_us += 1000
        return (
            f'{{"channel":"book","type":"update","data":[{{"symbol":"{self.symbol}",'
            f'"bids":[{{"price":{price},"qty":{qty}}}],"asks":[],'
            f'"checksum":{self.checksum()},"timestamp":"{rfc3339_us(self.ts_us)}"}}]}}'
        )

    def trade(
        self, price: str = "100.5", qty: str = "0.25", trade_id: Any = None, *, record: bool = True
    ) -> str:
        if trade_id is None:
            self.trade_id += 1
            trade_id = self.trade_id
        item = (
            f'{{"symbol":"{self.symbol}","side":"buy","price":{price},"qty":{qty},'
            f'"ord_type":"limit","trade_id":{trade_id},"timestamp":"{self.stamp()}"}}'
        )
        if record:
            self.last_trades.append(item)
        return f'{{"channel":"trade","type":"update","data":[{item}]}}'

    def number_frames(self, field: str, value: str) -> list[str]:
        """Kraken prints numbers as JSON numbers: ``value`` verbatim, and quoted."""
        out = []
        for v in (value, json.dumps(value)):
            if field == "book price":
                out.append(self.raw_book_update(v, "1.0"))
            elif field == "book qty":
                out.append(self.raw_book_update("100.0", v))
            elif field == "trade price":
                out.append(self.trade(v, "0.25", record=False))
            else:
                out.append(self.trade("100.5", v, record=False))
        return out


# ------------------------------------------------------------------ Binance (§3.4-§3.8)


class BinanceLive(Live):
    venue = "binance"
    symbol = "BTCUSDT"

    def __init__(self, **opts: Any) -> None:
        super().__init__()
        self.adapter = BinanceAdapter(
            [binance.book(self.symbol), binance.trades(self.symbol)], BinanceOptions(**opts)
        )
        self.e_ms = 1_700_000_000_000
        self.seq = 100
        self.serve(self.adapter.on_connected("c1", self.now()))
        self.frame(self.book_update())
        self.settle()

    def answer(self, request: dict[str, Any]) -> list[str]:
        return [json.dumps({"result": None, "id": request["id"]})]

    def rest(self, key: str) -> bytes | None:
        if key != f"depth:{self.symbol}":
            return None
        body = {
            "lastUpdateId": self.seq,
            "bids": [["100.00000000", "1.00000000"], ["99.00000000", "2.00000000"]],
            "asks": [["101.00000000", "1.00000000"], ["102.00000000", "2.00000000"]],
        }
        return json.dumps(body).encode()

    def combined(self, stream: str, data: dict[str, Any]) -> str:
        return json.dumps({"stream": stream, "data": data}, separators=(",", ":"))

    def depth(self, bids: list[list[Any]], first: Any = None, last: Any = None) -> str:
        self.e_ms += 100
        if first is None:
            first = last = self.seq + 1
            self.seq += 1
        payload = {
            "e": "depthUpdate",
            "E": self.e_ms,
            "s": self.symbol,
            "U": first,
            "u": last,
            "b": bids,
            "a": [],
        }
        return self.combined(f"{self.symbol.lower()}@depth@100ms", payload)

    def book_update(self) -> str:
        return self.depth([["98.00000000", f"{self.seq % 7 + 1}.00000000"]])

    def number_frames(self, field: str, value: str) -> list[str]:
        """Binance prints numbers as decimal strings (§3.4)."""
        if field == "book price":
            return [self.depth([[value, "1.00000000"]])]
        if field == "book qty":
            return [self.depth([["98.00000000", value]])]
        if field == "trade price":
            return [self.trade(value, "0.25")]
        return [self.trade("100.5", value)]

    def trade(
        self, price: str = "100.5", qty: str = "0.25", trade_id: Any = None, *, record: bool = True
    ) -> str:
        if trade_id is None:
            self.trade_id += 1
            trade_id = self.trade_id
        self.e_ms += 1
        payload = {
            "e": "trade",
            "E": self.e_ms + 1,
            "s": self.symbol,
            "t": trade_id,
            "p": price,
            "q": qty,
            "T": self.e_ms,
            "m": True,
            "M": True,
        }
        return self.combined(f"{self.symbol.lower()}@trade", payload)


# ------------------------------------------------------------------ KuCoin (§2.1-§2.6)


class KucoinLive(Live):
    venue = "kucoin"
    symbol = "BTC-USDT"

    def __init__(self, **opts: Any) -> None:
        super().__init__()
        self.adapter = KucoinAdapter(
            [kucoin.book(self.symbol), kucoin.trades(self.symbol)], KucoinOptions(**opts)
        )
        self.ms = WALL0 // 1_000_000
        self.seq = 100
        call = self.adapter.prepare_dial(self.now())
        assert call is not None
        bullet = {
            "code": "200000",
            "data": {
                "token": "hostile-kit-token",
                "instanceServers": [
                    {
                        "endpoint": "wss://ws.example/",
                        "encrypt": True,
                        "protocol": "websocket",
                        "pingInterval": 18000,
                        "pingTimeout": 10000,
                    }
                ],
            },
        }
        answer = RestResult(call.key, 200, json.dumps(bullet).encode())
        assert self.adapter.on_dial_rest(answer, self.now()) is None
        self.serve(self.adapter.on_connected("kucoin#1", self.now()))
        connect_id = parse_qs(urlsplit(self.adapter.url).query)["connectId"][0]
        self.frame(json.dumps({"id": connect_id, "type": "welcome"}))
        self.frame(self.book_update())
        self.settle()

    def answer(self, request: dict[str, Any]) -> list[str]:
        if request.get("type") in ("subscribe", "unsubscribe"):
            return [json.dumps({"id": request["id"], "type": "ack"})]
        return []

    def rest(self, key: str) -> bytes | None:
        if key != f"l2:{self.symbol}":
            return None
        data = {
            "sequence": str(self.seq),
            "time": self.ms,
            "bids": [["100.4", "1"], ["100.3", "2"]],
            "asks": [["100.6", "1"], ["100.7", "2"]],
        }
        return json.dumps({"code": "200000", "data": data}).encode()

    def l2(self, bids: list[list[Any]], start: Any = None, end: Any = None) -> str:
        self.ms += 1
        if start is None:
            start = end = self.seq + 1
            self.seq += 1
        data = {
            "changes": {"asks": [], "bids": bids},
            "sequenceStart": start,
            "sequenceEnd": end,
            "symbol": self.symbol,
            "time": self.ms,
        }
        return json.dumps(
            {
                "type": "message",
                "topic": f"/market/level2:{self.symbol}",
                "subject": "trade.l2update",
                "data": data,
            },
            separators=(",", ":"),
        )

    def book_update(self) -> str:
        return self.l2([["100.1", str(self.seq % 7 + 1), str(self.seq + 1)]])

    def number_frames(self, field: str, value: str) -> list[str]:
        """KuCoin prints numbers as decimal strings (§2.6)."""
        if field == "book price":
            return [self.l2([[value, "1", str(self.seq + 1)]])]
        if field == "book qty":
            return [self.l2([["100.1", value, str(self.seq + 1)]])]
        if field == "trade price":
            return [self.trade(value, "0.25")]
        return [self.trade("100.5", value)]

    def trade(
        self, price: str = "100.5", qty: str = "0.25", trade_id: Any = None, *, record: bool = True
    ) -> str:
        """A match; ``trade_id`` replaces its ``sequence`` (the venue's trade sequence)."""
        self.trade_id += 1
        self.ms += 1
        data = {
            "makerOrderId": "671b5007389355000701b1d3",
            "price": price,
            "sequence": str(self.trade_id) if trade_id is None else trade_id,
            "side": "buy",
            "size": qty,
            "symbol": self.symbol,
            "takerOrderId": "671b50161777ff00074c168d",
            "time": str(self.ms * 1_000_000),
            "tradeId": str(self.trade_id),
            "type": "match",
        }
        return json.dumps(
            {
                "type": "message",
                "topic": f"/market/match:{self.symbol}",
                "subject": "trade.l3match",
                "data": data,
            }
        )


VENUES: dict[str, Callable[..., Live]] = {
    "kraken": KrakenLive,
    "binance": BinanceLive,
    "kucoin": KucoinLive,
}
