"""Kraken v2 wire frames for unit tests, built from protocols.md §1.4-1.9.

Numbers are inserted into the JSON text verbatim (never through a float), so
a test controls exactly what the decoder sees, e.g. ``"qty":0.00000000``.

Also a tiny *venue-side* book (:class:`VenueBook`) that computes the checksum
the naive way of the protocols.md §1.7 reference sketch (Decimal formatting,
sort every time), used to produce correct ``checksum`` fields independently
of :mod:`gapless.book`.

Named ``kraken_frames`` (not ``frames``) because test directories have no
``__init__.py`` and basenames must be unique across the tree.
"""

from __future__ import annotations

import datetime as dt
import json
import zlib
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any

from hypothesis import strategies as st

__all__ = [
    "BASE_NS",
    "VenueBook",
    "ack",
    "ack_error",
    "book_frame",
    "heartbeat",
    "instrument_snapshot",
    "instrument_update",
    "iso",
    "json_paths",
    "json_set",
    "json_values",
    "naive_checksum",
    "pong",
    "sent",
    "status",
    "ticker_frame",
    "tok",
    "trade_frame",
]

#: 2023-10-06T17:35:55Z, the date of the protocols.md §1.5/§1.7 doc examples.
BASE_NS = 1_696_613_755_000_000_000


def iso(ns: int) -> str:
    """RFC 3339 with microseconds and ``Z`` (the venue's format, §1.1)."""
    secs, rem = divmod(ns, 1_000_000_000)
    base = dt.datetime.fromtimestamp(secs, tz=dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{base}.{rem // 1000:06d}Z"


def tok(value: str | Decimal, prec: int) -> str:
    """protocols.md §1.7 reference sketch: format at precision, drop '.', strip leading 0s."""
    return f"{Decimal(value):.{prec}f}".replace(".", "").lstrip("0")


def naive_checksum(
    asks: dict[Decimal, Decimal], bids: dict[Decimal, Decimal], pp: int, qp: int
) -> int:
    """protocols.md §1.7 reference sketch, verbatim in spirit."""
    a = sorted(asks.items(), key=lambda x: x[0])[:10]
    b = sorted(bids.items(), key=lambda x: -x[0])[:10]
    s = "".join(tok(p, pp) + tok(q, qp) for p, q in a) + "".join(
        tok(p, pp) + tok(q, qp) for p, q in b
    )
    return zlib.crc32(s.encode()) & 0xFFFFFFFF


def _fmt(value: str | Decimal, prec: int) -> str:
    return f"{Decimal(value):.{prec}f}"


class VenueBook:
    """What the venue holds for one (symbol, depth): exact Decimals, naive algorithms."""

    def __init__(self, symbol: str, depth: int, pp: int, qp: int) -> None:
        self.symbol = symbol
        self.depth = depth
        self.pp = pp
        self.qp = qp
        self.bids: dict[Decimal, Decimal] = {}
        self.asks: dict[Decimal, Decimal] = {}

    def apply(self, bids: Iterable[tuple[str, str]], asks: Iterable[tuple[str, str]]) -> None:
        for side, levels in ((self.bids, bids), (self.asks, asks)):
            for p, q in levels:
                if Decimal(q) == 0:
                    side.pop(Decimal(p), None)
                else:
                    side[Decimal(p)] = Decimal(q)
        self.bids = dict(sorted(self.bids.items(), key=lambda x: -x[0])[: self.depth])
        self.asks = dict(sorted(self.asks.items(), key=lambda x: x[0])[: self.depth])

    def checksum(self) -> int:
        return naive_checksum(self.asks, self.bids, self.pp, self.qp)

    def snapshot(self, ts_ns: int, *, checksum: int | None = None) -> str:
        bids = [(_fmt(p, self.pp), _fmt(q, self.qp)) for p, q in self.bids.items()]
        asks = [(_fmt(p, self.pp), _fmt(q, self.qp)) for p, q in self.asks.items()]
        return book_frame(
            "snapshot",
            self.symbol,
            bids,
            asks,
            self.checksum() if checksum is None else checksum,
            iso(ts_ns),
        )

    def update(
        self,
        ts_ns: int,
        bids: Sequence[tuple[str, str]] = (),
        asks: Sequence[tuple[str, str]] = (),
        *,
        checksum: int | None = None,
    ) -> str:
        """Apply the levels, then print them at full precision with the new checksum."""
        self.apply(bids, asks)
        return book_frame(
            "update",
            self.symbol,
            [(_fmt(p, self.pp), _fmt(q, self.qp)) for p, q in bids],
            [(_fmt(p, self.pp), _fmt(q, self.qp)) for p, q in asks],
            self.checksum() if checksum is None else checksum,
            iso(ts_ns),
        )


def _levels(levels: Iterable[tuple[str, str]]) -> str:
    return "[" + ",".join(f'{{"price":{p},"qty":{q}}}' for p, q in levels) + "]"


def book_frame(
    typ: str,
    symbol: str,
    bids: Iterable[tuple[str, str]],
    asks: Iterable[tuple[str, str]],
    checksum: int | None,
    timestamp: str,
) -> str:
    """§1.7 message; ``bids``/``asks`` are raw JSON number texts."""
    cs = "" if checksum is None else f',"checksum":{checksum}'
    return (
        f'{{"channel":"book","type":"{typ}","data":[{{"symbol":{json.dumps(symbol)},'
        f'"bids":{_levels(bids)},"asks":{_levels(asks)}{cs},"timestamp":"{timestamp}"}}]}}'
    )


def status(system: str = "online", connection_id: int = 13834774380200032777) -> str:
    """§1.4 (connection_id > 2**53 on purpose)."""
    return (
        '{"channel":"status","type":"update","data":[{"api_version":"v2",'
        f'"connection_id":{connection_id},"system":"{system}","version":"2.0.0"}}]}}'
    )


def heartbeat() -> str:
    return '{"channel":"heartbeat"}'


def _pairs_json(pairs: Iterable[tuple[str, int, int]]) -> str:
    items = []
    for sym, pp, qp in pairs:
        base, quote = sym.split("/")
        items.append(
            f'{{"symbol":"{sym}","base":"{base}","quote":"{quote}","status":"online",'
            f'"qty_precision":{qp},"qty_increment":1e-{qp:02d},"price_precision":{pp},'
            f'"cost_precision":5,"marginable":false,"has_index":true,"cost_min":0.5,'
            f'"tick_size":0.1,"price_increment":0.1,"qty_min":0.0001}}'
        )
    return "[" + ",".join(items) + "]"


def instrument_snapshot(pairs: Iterable[tuple[str, int, int]]) -> str:
    """§1.9: ``data`` is an object with ``assets`` and ``pairs``."""
    return (
        '{"channel":"instrument","type":"snapshot","data":{"assets":[{"id":"USD",'
        '"status":"enabled","precision":4,"precision_display":2,"borrowable":true,'
        f'"collateral_value":1.0,"margin_rate":0.0,"multiplier":1}}],"pairs":{_pairs_json(pairs)}}}}}'
    )


def instrument_update(pairs: Iterable[tuple[str, int, int]]) -> str:
    return f'{{"channel":"instrument","type":"update","data":{{"pairs":{_pairs_json(pairs)}}}}}'


def ack(
    channel: str,
    symbol: str | None,
    req_id: int | None,
    time_out_ns: int,
    *,
    method: str = "subscribe",
    depth: int | None = None,
    warnings: list[str] | None = None,
) -> str:
    """§1.5 success ack (one per symbol); no top-level channel/type."""
    result: dict[str, Any] = {"channel": channel}
    if depth is not None:
        result["depth"] = depth
    result["snapshot"] = True
    if symbol is not None:
        result["symbol"] = symbol
    if warnings is not None:
        result["warnings"] = warnings
    obj: dict[str, Any] = {
        "method": method,
        "result": result,
        "success": True,
        "time_in": iso(time_out_ns - 1000),
        "time_out": iso(time_out_ns),
    }
    if req_id is not None:
        obj["req_id"] = req_id
    return json.dumps(obj)


def ack_error(
    error: str,
    req_id: int | None,
    time_out_ns: int,
    *,
    symbol: str | None = None,
    method: str = "subscribe",
) -> str:
    """§1.5 error ack; ``symbol`` only when the venue names one."""
    obj: dict[str, Any] = {"error": error, "method": method}
    if req_id is not None:
        obj["req_id"] = req_id
    obj["success"] = False
    if symbol is not None:
        obj["symbol"] = symbol
    obj["time_in"] = iso(time_out_ns - 1000)
    obj["time_out"] = iso(time_out_ns)
    return json.dumps(obj)


def pong(req_id: int | None, time_out_ns: int = BASE_NS) -> str:
    """§1.3 pong."""
    rid = "" if req_id is None else f'"req_id":{req_id},'
    return (
        f'{{"method":"pong",{rid}"time_in":"{iso(time_out_ns - 1000)}",'
        f'"time_out":"{iso(time_out_ns)}"}}'
    )


def trade_frame(
    symbol: str,
    trades: Iterable[tuple[int, int, str, str]],
    *,
    typ: str = "update",
    side: str = "sell",
) -> str:
    """§1.8 trade message; ``trades`` are (trade_id, ts_ns, price_text, qty_text)."""
    items = ",".join(
        f'{{"symbol":"{symbol}","side":"{side}","price":{p},"qty":{q},"ord_type":"market",'
        f'"trade_id":{tid},"timestamp":"{iso(ts)}"}}'
        for tid, ts, p, q in trades
    )
    return f'{{"channel":"trade","type":"{typ}","data":[{items}]}}'


def ticker_frame(symbol: str, ts_ns: int, *, typ: str = "update", bid: str = "0.10025") -> str:
    """§1.8 ticker message (the doc example's values)."""
    return (
        f'{{"channel":"ticker","type":"{typ}","data":[{{"symbol":"{symbol}","bid":{bid},'
        '"bid_qty":740.0,"ask":0.10035,"ask_qty":740.0,"last":0.10035,'
        '"volume":997038.98383185,"vwap":0.10148,"low":0.09979,"high":0.10285,'
        f'"change":-0.00017,"change_pct":-0.17,"timestamp":"{iso(ts_ns)}"}}]}}'
    )


def sent(texts: Iterable[str]) -> list[dict[str, Any]]:
    """Decode what an adapter asked to send (requests are plain JSON objects)."""
    out = []
    for t in texts:
        obj = json.loads(t)
        assert isinstance(obj, dict)
        out.append(obj)
    return out


# ------------------------------------------------------------------ fuzzing helpers

_FUZZ_WORDS = [
    "book", "trade", "ticker", "status", "instrument", "heartbeat", "snapshot", "update",
    "subscribe", "unsubscribe", "pong", "buy", "sell", "MATIC/USD", "BTC/USD",
    "2023-10-06T17:35:55Z", "Currency pair not supported MATIC/USD",
]  # fmt: skip
_FUZZ_KEYS = [
    "channel", "type", "data", "method", "success", "result", "error", "Error", "req_id",
    "symbol", "bids", "asks", "price", "qty", "checksum", "timestamp", "pairs", "trade_id",
    "side", "system", "time_out", "warnings", "depth", "price_precision", "qty_precision",
]  # fmt: skip

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
    | st.sampled_from(_FUZZ_WORDS)
)
#: Arbitrary JSON-able values, biased towards Kraken's keys and words.
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=5)
        | st.dictionaries(st.sampled_from(_FUZZ_KEYS) | st.text(max_size=5), children, max_size=6)
    ),
    max_leaves=30,
)


def json_paths(obj: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path into a decoded JSON value (the root is ``()``)."""
    out = [prefix]
    if isinstance(obj, dict):
        for k, v in obj.items():
            out.extend(json_paths(v, (*prefix, k)))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out.extend(json_paths(v, (*prefix, i)))
    return out


def json_set(obj: Any, path: tuple[Any, ...], value: Any, delete: bool) -> Any:
    """Replace (or delete) the value at ``path``; returns the new root."""
    if not path:
        return value
    parent = obj
    for k in path[:-1]:
        parent = parent[k]
    if delete:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return obj
