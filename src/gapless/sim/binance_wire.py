"""Binance Spot frame and body text for the simulator (protocols.md §3).

Numbers: live Spot frames print every price and quantity as a JSON *string*
with 8 fractional digits whatever the symbol's tick or step size
(``"62000.01000000"``, ``"0.00240000"``; protocols.md §3.6 bookTicker and
§3.7 depth examples). The simulator keeps prices and quantities as scaled
ints on the symbol's own grid (``price_precision`` = decimals of
``tickSize``, ``qty_precision`` = decimals of ``stepSize``) and widens them
to :data:`WIRE_DECIMALS` digits only when printing, so no float is ever
involved and the text round-trips through ``Decimal`` exactly.

Shapes (field order as documented):

* diff depth (§3.6): ``{"e":"depthUpdate","E":..,"s":..,"U":..,"u":..,"b":[[p,q]..],"a":[..]}``
* trade (§3.6): ``{"e":"trade","E":..,"s":..,"t":..,"p":..,"q":..,"T":..,"m":..,"M":true}``
* book ticker (§3.6): ``{"u":..,"s":..,"b":..,"B":..,"a":..,"A":..}`` (no ``e``/``E``)
* ``serverShutdown`` (§3.4): ``{"e":"serverShutdown","E":..}``; combined form
  ``{"stream":"!serverShutdown","data":{..}}``
* combined wrapper (§3.1): ``{"stream":"<name>","data":<payload>}``
* control replies (§3.5): ``{"result":..,"id":..}`` and nested errors
  ``{"error":{"code":..,"msg":..},"id":..}``
* REST depth (§3.7): ``{"lastUpdateId":..,"bids":[[p,q]..],"asks":[..]}``
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from gapless.sim.market import PairSpec
from gapless.sim.numbers import fmt_fixed, parse_fixed

__all__ = [
    "DEFAULT_BINANCE_PAIRS",
    "SPEEDS",
    "STREAM_KINDS",
    "WIRE_DECIMALS",
    "BinancePair",
    "book_ticker_event",
    "combined",
    "depth_event",
    "dumps",
    "error_frame",
    "exchange_info",
    "levels_json",
    "num",
    "parse_stream",
    "result_frame",
    "server_shutdown_event",
    "snapshot_body",
    "trade_event",
]

WIRE_DECIMALS = 8
"""Fractional digits of every price/quantity string on the wire (protocols.md §3.6/§3.7)."""

Speed = Literal["100ms", "1000ms"]

SPEEDS: tuple[tuple[Speed, float, str], ...] = (
    ("100ms", 0.1, "@depth@100ms"),
    ("1000ms", 1.0, "@depth"),
)
"""(speed label, interval in seconds, stream-name suffix) of the diff depth streams (§3.6)."""

STREAM_KINDS: dict[str, str] = {
    "depth@100ms": "depth@100ms",
    "depth": "depth",
    "trade": "trade",
    "bookTicker": "bookTicker",
}
"""Stream types the simulator serves, by the text after ``<symbol>@``."""


@dataclass(frozen=True)
class BinancePair:
    """One Spot symbol: ``price_precision`` = decimals of ``tickSize``, ``qty_precision``
    = decimals of ``stepSize`` (exchangeInfo ``PRICE_FILTER`` / ``LOT_SIZE``).

    ``base_price`` is decimal text at ``price_precision``; the market generator
    needs it to be at least 3 ticks per book level (see
    :class:`gapless.sim.market.PairSpec`).
    """

    symbol: str
    base_asset: str
    quote_asset: str
    base_price: str
    price_precision: int = 2
    qty_precision: int = 5
    min_qty: str = "0.00001"
    typical_notional: float = 3000.0

    @property
    def stream_symbol(self) -> str:
        """The lower-case form used in stream names (protocols.md §3.1)."""
        return self.symbol.lower()

    def market_spec(self) -> PairSpec:
        """The :class:`PairSpec` that drives :class:`gapless.sim.market.SymbolMarket`."""
        return PairSpec(
            self.symbol,
            self.base_price,
            self.price_precision,
            self.qty_precision,
            qty_min=self.min_qty,
            typical_notional=self.typical_notional,
        )


DEFAULT_BINANCE_PAIRS: tuple[BinancePair, ...] = (
    BinancePair("BTCUSDT", "BTC", "USDT", "62000.00", 2, 5, "0.00001"),
    BinancePair("ETHUSDT", "ETH", "USDT", "3000.00", 2, 4, "0.0001"),
    BinancePair("BNBUSDT", "BNB", "USDT", "600.00", 2, 3, "0.001"),
    BinancePair("DOGEUSDT", "DOGE", "USDT", "0.15000", 5, 0, "1"),
)
"""Tick and step sizes as the live exchangeInfo lists them (BTC 0.01/0.00001,
ETH 0.01/0.0001, BNB 0.01/0.001, DOGE 0.00001/1)."""


def dumps(obj: Any) -> str:
    """Compact JSON, key order kept."""
    return json.dumps(obj, separators=(",", ":"))


def num(value: int, prec: int) -> str:
    """A scaled int at ``prec`` printed with :data:`WIRE_DECIMALS` digits.

    >>> num(6200001, 2)
    '62000.01000000'
    >>> num(240, 5)
    '0.00240000'
    >>> num(0, 3)
    '0.00000000'
    """
    return fmt_fixed(value * 10 ** (WIRE_DECIMALS - prec), WIRE_DECIMALS)


def levels_json(levels: Iterable[tuple[int, int]], pp: int, qp: int) -> str:
    """``["p","q"],["p","q"]`` (without the outer brackets)."""
    return ",".join(f'["{num(p, pp)}","{num(q, qp)}"]' for p, q in levels)


def depth_event(
    e_ms: int,
    symbol: str,
    first_id: int,
    final_id: int,
    bids: Iterable[tuple[int, int]],
    asks: Iterable[tuple[int, int]],
    pp: int,
    qp: int,
) -> str:
    """A ``depthUpdate`` (protocols.md §3.6): ``U`` first, ``u`` final update id."""
    return (
        f'{{"e":"depthUpdate","E":{e_ms},"s":"{symbol}","U":{first_id},"u":{final_id},'
        f'"b":[{levels_json(bids, pp, qp)}],"a":[{levels_json(asks, pp, qp)}]}}'
    )


def trade_event(
    e_ms: int,
    symbol: str,
    trade_id: int,
    price: int,
    qty: int,
    t_ms: int,
    buyer_maker: bool,
    pp: int,
    qp: int,
) -> str:
    """A ``trade`` (protocols.md §3.6); ``m`` = the buyer is the maker, ``M`` always true."""
    m = "true" if buyer_maker else "false"
    return (
        f'{{"e":"trade","E":{e_ms},"s":"{symbol}","t":{trade_id},"p":"{num(price, pp)}",'
        f'"q":"{num(qty, qp)}","T":{t_ms},"m":{m},"M":true}}'
    )


def book_ticker_event(
    update_id: int, symbol: str, bbo: tuple[int, int, int, int], pp: int, qp: int
) -> str:
    """A ``bookTicker`` (protocols.md §3.6): no ``e``/``E``, ``u`` = the book update id."""
    bp, bq, ap, aq = bbo
    return (
        f'{{"u":{update_id},"s":"{symbol}","b":"{num(bp, pp)}","B":"{num(bq, qp)}",'
        f'"a":"{num(ap, pp)}","A":"{num(aq, qp)}"}}'
    )


def server_shutdown_event(e_ms: int, is_combined: bool) -> str:
    """protocols.md §3.4: raw ``{"e":"serverShutdown","E":..}`` or its combined form."""
    raw = f'{{"e":"serverShutdown","E":{e_ms}}}'
    return combined("!serverShutdown", raw) if is_combined else raw


def combined(stream: str, payload: str) -> str:
    """protocols.md §3.1: ``{"stream":"<name>","data":<payload>}``."""
    return f'{{"stream":{json.dumps(stream)},"data":{payload}}}'


def result_frame(result: Any, req_id: Any) -> str:
    """protocols.md §3.5 success reply: ``{"result":..,"id":..}``."""
    return dumps({"result": result, "id": req_id})


def error_frame(code: int, msg: str, req_id: Any) -> str:
    """protocols.md §3.5 error reply, nested as seen live: ``{"error":{"code","msg"},"id"}``."""
    return dumps({"error": {"code": code, "msg": msg}, "id": req_id})


def snapshot_body(
    last_update_id: int,
    bids: Iterable[tuple[int, int]],
    asks: Iterable[tuple[int, int]],
    pp: int,
    qp: int,
) -> str:
    """protocols.md §3.7 REST depth body: bids high->low, asks low->high."""
    return (
        f'{{"lastUpdateId":{last_update_id},"bids":[{levels_json(bids, pp, qp)}],'
        f'"asks":[{levels_json(asks, pp, qp)}]}}'
    )


def _unit(prec: int) -> str:
    """``10**-prec`` as an 8-decimal string (``tickSize``/``stepSize`` form)."""
    return num(1, prec)


def exchange_info(
    pairs: Sequence[BinancePair], server_time_ms: int, weight_limit: int
) -> dict[str, Any]:
    """``GET /api/v3/exchangeInfo`` body: rate limits and each symbol's filters.

    Only what a market-data client needs is filled in: status, assets,
    precisions and the ``PRICE_FILTER`` (``tickSize``) and ``LOT_SIZE``
    (``stepSize``) filters, all numbers as 8-decimal strings.
    """
    symbols = []
    for p in pairs:
        symbols.append(
            {
                "symbol": p.symbol,
                "status": "TRADING",
                "baseAsset": p.base_asset,
                "baseAssetPrecision": WIRE_DECIMALS,
                "quoteAsset": p.quote_asset,
                "quotePrecision": WIRE_DECIMALS,
                "quoteAssetPrecision": WIRE_DECIMALS,
                "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET"],
                "isSpotTradingAllowed": True,
                "filters": [
                    {
                        "filterType": "PRICE_FILTER",
                        "minPrice": _unit(p.price_precision),
                        "maxPrice": "1000000.00000000",
                        "tickSize": _unit(p.price_precision),
                    },
                    {
                        "filterType": "LOT_SIZE",
                        "minQty": num(parse_fixed(p.min_qty, p.qty_precision), p.qty_precision),
                        "maxQty": "9000000.00000000",
                        "stepSize": _unit(p.qty_precision),
                    },
                ],
                "permissions": [],
                "permissionSets": [["SPOT"]],
            }
        )
    return {
        "timezone": "UTC",
        "serverTime": server_time_ms,
        "rateLimits": [
            {
                "rateLimitType": "REQUEST_WEIGHT",
                "interval": "MINUTE",
                "intervalNum": 1,
                "limit": weight_limit,
            },
            {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 100},
            {
                "rateLimitType": "RAW_REQUESTS",
                "interval": "MINUTE",
                "intervalNum": 5,
                "limit": 61000,
            },
        ],
        "exchangeFilters": [],
        "symbols": symbols,
    }


def parse_stream(name: str, symbols: dict[str, str]) -> tuple[str, str] | None:
    """``"btcusdt@depth@100ms"`` -> (``"BTCUSDT"``, ``"depth@100ms"``), or None if not served.

    ``symbols`` maps lower-case stream symbols to exchange symbols. The symbol
    part must be lower case (protocols.md §3.1); the type must be one of
    :data:`STREAM_KINDS`.
    """
    sym, sep, kind = name.partition("@")
    if not sep or sym not in symbols or kind not in STREAM_KINDS:
        return None
    return symbols[sym], kind
