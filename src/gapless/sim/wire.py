"""Kraken Spot WS v2 frame text, built by hand where number formatting matters.

Book, trade and ticker frames are assembled with f-strings from scaled ints
so every price and quantity is a JSON *number* printed at exactly the pair's
precision, trailing zeros kept, no exponent (protocols.md §1.7 "Wire number
format", §5 item 1). Envelopes without such numbers (status, acks, errors,
pong, instrument) go through ``json.dumps``; the ``instrument`` channel uses
Python floats on purpose, which print like the live venue (``1e-08``,
protocols.md §1.9).

Shapes follow protocols.md §1.4 (status), §1.5 (ack / error envelope),
§1.7 (book), §1.8 (trade, ticker), §1.9 (instrument), §1.3 (heartbeat, pong).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any

from gapless.sim.market import Fill, PairSpec, SymbolMarket, TickerStats
from gapless.sim.numbers import fmt_fixed, rfc3339_us

__all__ = [
    "HEARTBEAT",
    "book_message",
    "dumps",
    "instrument_data",
    "status_message",
    "ticker_message",
    "trade_item",
    "trade_message",
]

HEARTBEAT = '{"channel":"heartbeat"}'
"""protocols.md §1.3: ``{"channel":"heartbeat"}``, no other fields."""


def dumps(obj: Any) -> str:
    """Compact JSON (arbitrary-size ints such as ``connection_id`` stay exact)."""
    return json.dumps(obj, separators=(",", ":"))


def status_message(connection_id: int, system: str) -> str:
    """protocols.md §1.4: the first frame of every connection, and every status change."""
    return dumps(
        {
            "channel": "status",
            "type": "update",
            "data": [
                {
                    "api_version": "v2",
                    "connection_id": connection_id,
                    "system": system,
                    "version": "2.0.0",
                }
            ],
        }
    )


def _levels(levels: Iterable[tuple[int, int]], pp: int, qp: int) -> str:
    return ",".join(f'{{"price":{fmt_fixed(p, pp)},"qty":{fmt_fixed(q, qp)}}}' for p, q in levels)


def book_message(
    kind: str,
    symbol_json: str,
    bids: Iterable[tuple[int, int]],
    asks: Iterable[tuple[int, int]],
    checksum: int,
    ts_us: int,
    pp: int,
    qp: int,
) -> str:
    """A ``book`` snapshot or update; ``symbol_json`` is the already-quoted symbol."""
    return (
        f'{{"channel":"book","type":"{kind}","data":[{{"symbol":{symbol_json},'
        f'"bids":[{_levels(bids, pp, qp)}],"asks":[{_levels(asks, pp, qp)}],'
        f'"checksum":{checksum},"timestamp":"{rfc3339_us(ts_us)}"}}]}}'
    )


def trade_item(symbol_json: str, fill: Fill, trade_id: int, ts_us: int, pp: int, qp: int) -> str:
    """One element of a ``trade`` message's ``data`` (protocols.md §1.8)."""
    return (
        f'{{"symbol":{symbol_json},"side":"{fill.side}","price":{fmt_fixed(fill.price, pp)},'
        f'"qty":{fmt_fixed(fill.qty, qp)},"ord_type":"{fill.ord_type}",'
        f'"trade_id":{trade_id},"timestamp":"{rfc3339_us(ts_us)}"}}'
    )


def trade_message(kind: str, items: Sequence[str]) -> str:
    return f'{{"channel":"trade","type":"{kind}","data":[{",".join(items)}]}}'


def ticker_message(
    kind: str, symbol_json: str, market: SymbolMarket, stats: TickerStats, ts_us: int
) -> str:
    """A ``ticker`` snapshot or update (protocols.md §1.8)."""
    pp, qp = market.pp, market.qp
    bid, bid_qty = next(market.bids.iter_top(1))
    ask, ask_qty = next(market.asks.iter_top(1))
    change = stats.last - stats.open
    change_pct = round(change * 10_000 / stats.open) if stats.open else 0
    return (
        f'{{"channel":"ticker","type":"{kind}","data":[{{"symbol":{symbol_json},'
        f'"bid":{fmt_fixed(bid, pp)},"bid_qty":{fmt_fixed(bid_qty, qp)},'
        f'"ask":{fmt_fixed(ask, pp)},"ask_qty":{fmt_fixed(ask_qty, qp)},'
        f'"last":{fmt_fixed(stats.last, pp)},"volume":{fmt_fixed(stats.volume, qp)},'
        f'"vwap":{fmt_fixed(stats.vwap, pp)},"low":{fmt_fixed(stats.low, pp)},'
        f'"high":{fmt_fixed(stats.high, pp)},"change":{fmt_fixed(change, pp)},'
        f'"change_pct":{fmt_fixed(change_pct, 2)},"timestamp":"{rfc3339_us(ts_us)}"}}]}}'
    )


def _f(text: str) -> float:
    return float(Decimal(text))


def instrument_data(pairs: Sequence[PairSpec]) -> dict[str, Any]:
    """``data`` object of the ``instrument`` snapshot: ``assets`` and ``pairs`` (§1.9)."""
    assets: dict[str, dict[str, Any]] = {}
    for p in pairs:
        for asset, fiat in ((p.base, False), (p.quote, p.quote in ("USD", "EUR", "GBP"))):
            if asset not in assets:
                assets[asset] = {
                    "id": asset,
                    "status": "enabled",
                    "precision": 4 if fiat else 10,
                    "precision_display": 2 if fiat else 5,
                    "borrowable": fiat or p.marginable,
                    "collateral_value": 1.0,
                    "margin_rate": 0.0 if fiat else 0.02,
                    "multiplier": 1.0,
                }
    pair_objs: list[dict[str, Any]] = []
    for p in pairs:
        inc = float(Decimal(1).scaleb(-p.price_precision))
        obj: dict[str, Any] = {
            "symbol": p.symbol,
            "base": p.base,
            "quote": p.quote,
            "status": "online",
            "qty_precision": p.qty_precision,
            "qty_increment": float(Decimal(1).scaleb(-p.qty_precision)),
            "price_precision": p.price_precision,
            "cost_precision": p.cost_precision,
            "marginable": p.marginable,
            "has_index": p.has_index,
            "cost_min": _f(p.cost_min),
            "tick_size": inc,
            "price_increment": inc,
            "qty_min": _f(p.qty_min),
            "ws_display_price_precision": p.price_precision,
        }
        if p.marginable:
            obj.update(margin_initial=0.2, position_limit_long=250, position_limit_short=200)
        pair_objs.append(obj)
    return {"assets": list(assets.values()), "pairs": pair_objs}
