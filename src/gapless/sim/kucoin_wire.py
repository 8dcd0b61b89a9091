"""KuCoin Spot (classic API) frame and REST body text for the simulator.

Numbers follow the venue's habits (protocols.md §2.5, §2.6): prices and sizes
are JSON *strings* without forced trailing zeros (``"18906"``, ``"0.00331"``,
a removed level ``"0"``), built from scaled ints with no float on the way.
``sequenceStart``/``sequenceEnd`` of ``trade.l2update`` are JSON integers; the
per-entry sequences, the REST snapshot ``sequence`` and every ``trade.l3match``
field are strings; ``trade.l3match`` ``time`` is nanoseconds (string),
``trade.l2update`` and ``trade.ticker`` ``time`` are milliseconds (int).

Envelopes: welcome/pong/ack/error (§2.3), data messages
``{"type":"message","topic":..,"subject":..,"data":{..}}`` (§2.3), REST
``{"code":"200000","data":..}`` (§2.1, §2.5).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from gapless.sim.market import PairSpec
from gapless.sim.numbers import fmt_fixed

__all__ = [
    "KUCOIN_PAIRS",
    "dumps",
    "error",
    "fmt_plain",
    "l2update",
    "match",
    "rest_ok",
    "symbol_info",
    "ticker",
]

KUCOIN_PAIRS: tuple[PairSpec, ...] = (
    PairSpec("BTC-USDT", "62000.0", 1, 8, qty_min="0.00001", cost_min="0.1"),
    PairSpec("ETH-USDT", "3000.00", 2, 7, qty_min="0.0001", cost_min="0.1"),
    PairSpec("KCS-USDT", "9.500", 3, 4, qty_min="0.01", cost_min="0.1"),
)
"""Default KuCoin pairs: ``priceIncrement`` 0.1 / 0.01 / 0.001 and ``baseIncrement``
1e-8 / 1e-7 / 1e-4, the live venue's increments for these symbols (``/api/v2/symbols``)."""


def dumps(obj: Any) -> str:
    """Compact JSON (ASCII, so ``len(text)`` is the byte count)."""
    return json.dumps(obj, separators=(",", ":"))


def fmt_plain(value: int, prec: int) -> str:
    """KuCoin number text: the scaled int ``value`` without trailing zeros.

    >>> fmt_plain(189060, 1), fmt_plain(331000, 8), fmt_plain(0, 8), fmt_plain(105, 1)
    ('18906', '0.00331', '0', '10.5')
    """
    text = fmt_fixed(value, prec)
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def error(req_id: str | None, code: int, data: str) -> str:
    """protocols.md §2.3 error frame; ``id`` omitted when None (the 401 frame has none)."""
    obj: dict[str, Any] = {}
    if req_id is not None:
        obj["id"] = req_id
    obj["type"] = "error"
    obj["code"] = code
    obj["data"] = data
    return dumps(obj)


def _entries(entries: Iterable[tuple[int, int, int]], pp: int, qp: int) -> list[list[str]]:
    out: list[list[str]] = []
    for price, size, seq in entries:
        if price == 0:  # a sequence that changed no level: price "0" (§2.5 rule 5)
            out.append(["0", "0", str(seq)])
        else:
            out.append([fmt_plain(price, pp), fmt_plain(size, qp), str(seq)])
    return out


def l2update(
    symbol: str,
    asks: Sequence[tuple[int, int, int]],
    bids: Sequence[tuple[int, int, int]],
    seq_start: int,
    seq_end: int,
    time_ms: int,
    pp: int,
    qp: int,
) -> str:
    """protocols.md §2.5 ``trade.l2update`` (key order as in the documented example)."""
    return dumps(
        {
            "type": "message",
            "topic": f"/market/level2:{symbol}",
            "subject": "trade.l2update",
            "data": {
                "changes": {"asks": _entries(asks, pp, qp), "bids": _entries(bids, pp, qp)},
                "sequenceEnd": seq_end,
                "sequenceStart": seq_start,
                "symbol": symbol,
                "time": time_ms,
            },
        }
    )


def match(
    symbol: str,
    *,
    maker_order_id: str,
    taker_order_id: str,
    price: str,
    size: str,
    side: str,
    sequence: int,
    trade_id: str,
    time_ns: int,
) -> str:
    """protocols.md §2.6 ``trade.l3match``: every field a string, ``time`` in ns."""
    return dumps(
        {
            "topic": f"/market/match:{symbol}",
            "type": "message",
            "subject": "trade.l3match",
            "data": {
                "makerOrderId": maker_order_id,
                "price": price,
                "sequence": str(sequence),
                "side": side,
                "size": size,
                "symbol": symbol,
                "takerOrderId": taker_order_id,
                "time": str(time_ns),
                "tradeId": trade_id,
                "type": "match",
            },
        }
    )


def ticker(
    symbol: str,
    *,
    sequence: int,
    price: str,
    size: str,
    best_ask: str,
    best_ask_size: str,
    best_bid: str,
    best_bid_size: str,
    time_ms: int,
) -> str:
    """protocols.md §2.6 ``trade.ticker``: strings except ``time`` (ms)."""
    return dumps(
        {
            "type": "message",
            "topic": f"/market/ticker:{symbol}",
            "subject": "trade.ticker",
            "data": {
                "sequence": str(sequence),
                "price": price,
                "size": size,
                "bestAsk": best_ask,
                "bestAskSize": best_ask_size,
                "bestBid": best_bid,
                "bestBidSize": best_bid_size,
                "time": time_ms,
            },
        }
    )


def rest_ok(data: Any) -> dict[str, Any]:
    """The REST success envelope (§2.1): ``{"code":"200000","data":..}``."""
    return {"code": "200000", "data": data}


def symbol_info(pair: PairSpec) -> dict[str, Any]:
    """One ``GET /api/v2/symbols`` entry with the pair's increments."""
    base, _, quote = pair.symbol.partition("-")
    return {
        "symbol": pair.symbol,
        "name": pair.symbol,
        "baseCurrency": base,
        "quoteCurrency": quote,
        "feeCurrency": quote,
        "market": "USDS",
        "baseMinSize": pair.qty_min,
        "quoteMinSize": pair.cost_min,
        "baseMaxSize": "10000000000",
        "quoteMaxSize": "99999999",
        "baseIncrement": fmt_fixed(1, pair.qty_precision),
        "quoteIncrement": "0.000001",
        "priceIncrement": fmt_fixed(1, pair.price_precision),
        "priceLimitRate": "0.1",
        "minFunds": pair.cost_min,
        "isMarginEnabled": pair.marginable,
        "enableTrading": True,
    }
