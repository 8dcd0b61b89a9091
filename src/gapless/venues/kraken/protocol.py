"""Kraken Spot WebSocket v2 wire protocol, sans I/O (protocols.md §1).

Encoders build request text; :func:`decode` turns one text frame into one
typed message. No sockets, no clocks, no logging: time only comes in as
arguments, so everything here is deterministic and unit-testable.

Numbers are decoded with ``msgspec.json.Decoder(float_hook=str)``: a price
such as ``0.50930100`` reaches the book as its exact text and is converted to
a scaled integer at the pair's precision. A float round-trip would break the
checksum (protocols.md §1.7, "Wire number format").

Every decode failure, whatever its cause (invalid JSON, wrong types, hostile
nesting, out-of-range numbers), raises :class:`gapless.errors.DecodeError` and
nothing else.
"""

from __future__ import annotations

import calendar
from typing import Any

import msgspec

from gapless.errors import DecodeError
from gapless.venues.limits import DEFAULT_MAX_JSON_DEPTH, check_json_depth
from gapless.venues.numbers import parse_int

__all__ = [
    "VALID_BOOK_DEPTHS",
    "Ack",
    "BookEntry",
    "BookMsg",
    "Heartbeat",
    "InstrumentMsg",
    "Message",
    "PairInfo",
    "Pong",
    "StatusMsg",
    "TickerItem",
    "TickerMsg",
    "TradeItem",
    "TradeMsg",
    "UnknownMsg",
    "classify",
    "decode",
    "decode_json",
    "encode_ping",
    "encode_subscribe",
    "encode_unsubscribe",
    "parse_rfc3339_ns",
]

#: protocols.md §1.7: any other depth is refused, not rounded.
VALID_BOOK_DEPTHS = frozenset({10, 25, 100, 500, 1000})

_DECODER = msgspec.json.Decoder(float_hook=str)
_ENCODER = msgspec.json.Encoder()

# --------------------------------------------------------------------- encoding


def encode_subscribe(
    channel: str,
    symbols: list[str] | None,
    req_id: int,
    **params: Any,
) -> str:
    """``{"method":"subscribe","params":{"channel":...,"symbol":[...],...},"req_id":N}`` (§1.5)."""
    return _encode_request("subscribe", channel, symbols, req_id, params)


def encode_unsubscribe(channel: str, symbols: list[str] | None, req_id: int, **params: Any) -> str:
    """Same shape as subscribe with ``"method":"unsubscribe"`` (§1.5)."""
    return _encode_request("unsubscribe", channel, symbols, req_id, params)


def _encode_request(
    method: str, channel: str, symbols: list[str] | None, req_id: int, params: dict[str, Any]
) -> str:
    p: dict[str, Any] = {"channel": channel}
    if symbols is not None:
        p["symbol"] = symbols
    p.update(params)
    return _ENCODER.encode({"method": method, "params": p, "req_id": req_id}).decode()


def encode_ping(req_id: int) -> str:
    """Application-level ping (§1.3): ``{"method":"ping","req_id":N}``."""
    return f'{{"method":"ping","req_id":{int(req_id)}}}'


# --------------------------------------------------------------------- messages


class StatusMsg(msgspec.Struct, frozen=True):
    """§1.4: first frame on every connection, and on every engine status change."""

    system: str
    api_version: str | None
    connection_id: int | None
    version: str | None


class Heartbeat(msgspec.Struct, frozen=True):
    """§1.3: about 1 Hz while subscribed and idle."""


class Ack(msgspec.Struct, frozen=True):
    """§1.5: response to subscribe / unsubscribe (one per symbol)."""

    method: str
    success: bool
    req_id: int | None
    channel: str | None
    symbol: str | None
    depth: int | None
    error: str | None
    time_in_ns: int | None
    time_out_ns: int | None
    warnings: tuple[str, ...] = ()


class Pong(msgspec.Struct, frozen=True):
    """§1.3: answer to our ``ping``."""

    req_id: int | None
    time_out_ns: int | None
    success: bool = True
    error: str | None = None


class BookEntry(msgspec.Struct, frozen=True):
    """One symbol's part of a book message; levels keep the exact wire text."""

    symbol: str
    bids: list[tuple[object, object]]
    asks: list[tuple[object, object]]
    checksum: int | None
    ts_ns: int


class BookMsg(msgspec.Struct, frozen=True):
    snapshot: bool
    entries: list[BookEntry]


class TradeItem(msgspec.Struct, frozen=True):
    symbol: str
    side: str
    price: object
    qty: object
    ord_type: str | None
    trade_id: int
    ts_ns: int


class TradeMsg(msgspec.Struct, frozen=True):
    snapshot: bool
    trades: list[TradeItem]


class TickerItem(msgspec.Struct, frozen=True):
    symbol: str
    values: dict[str, object]
    ts_ns: int


class TickerMsg(msgspec.Struct, frozen=True):
    snapshot: bool
    items: list[TickerItem]


class PairInfo(msgspec.Struct, frozen=True):
    symbol: str
    price_precision: int
    qty_precision: int
    status: str


class InstrumentMsg(msgspec.Struct, frozen=True):
    """§1.9: ``data`` is an object with ``pairs`` (updates carry changed pairs only)."""

    snapshot: bool
    pairs: list[PairInfo] = msgspec.field(default_factory=list)


class UnknownMsg(msgspec.Struct, frozen=True):
    """A well-formed frame of a channel or method we do not handle."""

    channel: str | None
    method: str | None


Message = (
    StatusMsg | Heartbeat | Ack | Pong | BookMsg | TradeMsg | TickerMsg | InstrumentMsg | UnknownMsg
)

_TICKER_FIELDS = (
    "bid",
    "bid_qty",
    "ask",
    "ask_qty",
    "last",
    "volume",
    "vwap",
    "low",
    "high",
    "change",
    "change_pct",
)

# --------------------------------------------------------------------- decoding


def decode(frame: str | bytes) -> Message:
    """Decode one frame. Raises only :class:`DecodeError`."""
    return classify(decode_json(frame))


def decode_json(frame: str | bytes, max_depth: int | None = DEFAULT_MAX_JSON_DEPTH) -> Any:
    """The frame's JSON, numbers with a fraction kept as their exact text; a frame
    nested deeper than ``max_depth`` is refused before decoding (None: no check;
    :mod:`gapless.venues.limits`). Raises only :class:`DecodeError`."""
    if max_depth is not None and len(frame) >= 2 * max_depth + 2:
        check_json_depth(frame, max_depth)
    try:
        return _DECODER.decode(frame)
    except (msgspec.DecodeError, RecursionError, UnicodeError) as exc:
        raise DecodeError(f"invalid JSON: {exc}") from None


def classify(raw: Any) -> Message:
    """The typed message of a decoded frame. Raises only :class:`DecodeError`."""
    try:
        return _classify(raw)
    except DecodeError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, RecursionError) as exc:
        raise DecodeError(f"unexpected message shape: {type(exc).__name__}: {exc}") from None


def _classify(raw: Any) -> Message:
    if type(raw) is not dict:
        raise DecodeError(f"expected a JSON object, got {type(raw).__name__}")
    channel = raw.get("channel")
    if channel is not None:
        if channel == "book":
            return _decode_book(raw)
        if channel == "heartbeat":
            return Heartbeat()
        if channel == "trade":
            return _decode_trade(raw)
        if channel == "ticker":
            return _decode_ticker(raw)
        if channel == "status":
            return _decode_status(raw)
        if channel == "instrument":
            return _decode_instrument(raw)
        if type(channel) is not str:
            raise DecodeError("channel is not a string")
        return UnknownMsg(channel=channel, method=None)
    method = raw.get("method")
    if method == "pong":
        return Pong(
            req_id=_opt_int(raw.get("req_id")),
            time_out_ns=_opt_time(raw.get("time_out")),
            success=raw.get("success", True) is not False,
            error=_opt_str(raw.get("error")),
        )
    if method in ("subscribe", "unsubscribe"):
        return _decode_ack(raw, method)
    if type(method) is str:
        return UnknownMsg(channel=None, method=method)
    if "error" in raw or "Error" in raw:
        # protocols.md §1.2: rate errors may come without a method
        err = raw.get("error", raw.get("Error"))
        return Ack(
            method="",
            success=False,
            req_id=_opt_int(raw.get("req_id")),
            channel=None,
            symbol=None,
            depth=None,
            error=str(err)[:500],
            time_in_ns=None,
            time_out_ns=None,
        )
    raise DecodeError("frame has neither channel nor method")


def _decode_status(raw: dict[str, Any]) -> StatusMsg:
    data = raw["data"]
    if type(data) is not list or not data:
        raise DecodeError("status data must be a non-empty list")
    item = data[0]
    system = item["system"]
    if type(system) is not str:
        raise DecodeError("status.system is not a string")
    conn_id = item.get("connection_id")
    return StatusMsg(
        system=system,
        api_version=_opt_str(item.get("api_version")),
        connection_id=conn_id if type(conn_id) is int else None,
        version=_opt_str(item.get("version")),
    )


def _decode_ack(raw: dict[str, Any], method: str) -> Ack:
    success = raw.get("success")
    if type(success) is not bool:
        raise DecodeError("ack without boolean success")
    result = raw.get("result")
    channel = symbol = None
    depth = None
    warnings: tuple[str, ...] = ()
    if success:
        if type(result) is not dict:
            raise DecodeError("successful ack without result object")
        channel = _opt_str(result.get("channel"))
        symbol = _opt_str(result.get("symbol"))
        depth = _opt_int(result.get("depth"))
        w = result.get("warnings")
        if type(w) is list:
            warnings = tuple(str(x)[:200] for x in w[:10])
    else:
        symbol = _opt_str(raw.get("symbol"))
    error = raw.get("error")
    return Ack(
        method=method,
        success=success,
        req_id=_opt_int(raw.get("req_id")),
        channel=channel,
        symbol=symbol,
        depth=depth,
        error=str(error)[:500] if error is not None else None,
        time_in_ns=_opt_time(raw.get("time_in")),
        time_out_ns=_opt_time(raw.get("time_out")),
        warnings=warnings,
    )


def _levels(side: Any) -> list[tuple[object, object]]:
    if type(side) is not list:
        raise DecodeError("book side is not a list")
    return [(lv["price"], lv["qty"]) for lv in side]


def _decode_book(raw: dict[str, Any]) -> BookMsg:
    typ = raw["type"]
    if typ not in ("snapshot", "update"):
        raise DecodeError(f"unknown book type {typ!r}")
    data = raw["data"]
    if type(data) is not list:
        raise DecodeError("book data is not a list")
    entries = []
    for item in data:
        symbol = item["symbol"]
        if type(symbol) is not str:
            raise DecodeError("book symbol is not a string")
        checksum = item.get("checksum")
        entries.append(
            BookEntry(
                symbol=symbol,
                bids=_levels(item.get("bids", [])),
                asks=_levels(item.get("asks", [])),
                checksum=None if checksum is None else parse_int(checksum, hi=0xFFFFFFFF),
                ts_ns=parse_rfc3339_ns(item["timestamp"]),
            )
        )
    return BookMsg(snapshot=typ == "snapshot", entries=entries)


def _decode_trade(raw: dict[str, Any]) -> TradeMsg:
    typ = raw["type"]
    data = raw["data"]
    if type(data) is not list:
        raise DecodeError("trade data is not a list")
    trades = []
    for item in data:
        symbol = item["symbol"]
        side = item["side"]
        if type(symbol) is not str or side not in ("buy", "sell"):
            raise DecodeError("bad trade symbol/side")
        trades.append(
            TradeItem(
                symbol=symbol,
                side=side,
                price=item["price"],
                qty=item["qty"],
                ord_type=_opt_str(item.get("ord_type")),
                trade_id=parse_int(item["trade_id"], hi=2**63 - 1),  # a signed 64-bit id
                ts_ns=parse_rfc3339_ns(item["timestamp"]),
            )
        )
    return TradeMsg(snapshot=typ == "snapshot", trades=trades)


def _decode_ticker(raw: dict[str, Any]) -> TickerMsg:
    typ = raw["type"]
    data = raw["data"]
    if type(data) is not list:
        raise DecodeError("ticker data is not a list")
    items = []
    for item in data:
        symbol = item["symbol"]
        if type(symbol) is not str:
            raise DecodeError("ticker symbol is not a string")
        values = {name: item[name] for name in _TICKER_FIELDS}
        ts = item.get("timestamp")
        items.append(
            TickerItem(symbol=symbol, values=values, ts_ns=parse_rfc3339_ns(ts) if ts else 0)
        )
    return TickerMsg(snapshot=typ == "snapshot", items=items)


def _decode_instrument(raw: dict[str, Any]) -> InstrumentMsg:
    typ = raw["type"]
    data = raw["data"]
    if type(data) is not dict:
        raise DecodeError("instrument data is not an object")
    pairs = []
    for p in data.get("pairs", []):
        symbol = p["symbol"]
        if type(symbol) is not str:
            raise DecodeError("pair symbol is not a string")
        pairs.append(
            PairInfo(
                symbol=symbol,
                price_precision=parse_int(p["price_precision"], hi=18),
                qty_precision=parse_int(p["qty_precision"], hi=18),
                status=str(p.get("status", "online")),
            )
        )
    return InstrumentMsg(snapshot=typ == "snapshot", pairs=pairs)


def _opt_str(v: Any) -> str | None:
    if v is None:
        return None
    if type(v) is not str:
        raise DecodeError(f"expected a string, got {type(v).__name__}")
    return v[:500]


def _opt_int(v: Any) -> int | None:
    if v is None:
        return None
    return parse_int(v, lo=-(2**63), hi=2**64 - 1)


def _opt_time(v: Any) -> int | None:
    if v is None:
        return None
    return parse_rfc3339_ns(v)


_DAY_CACHE: dict[str, int] = {}
_SECOND_CACHE: dict[str, int] = {}  # "YYYY-MM-DDTHH:MM:SS" -> epoch seconds (hot path)


def parse_rfc3339_ns(value: object) -> int:
    """``2023-10-06T17:35:55.440295Z`` → integer ns since the epoch, exactly (§1.1).

    The venue's own form (microseconds, ``Z``) takes a fast path: the whole-second
    prefix is looked up in a small cache (a stream's timestamps share it for a
    second), so only the six fraction digits are parsed per message."""
    if type(value) is str and len(value) == 27 and value[19] == "." and value[26] == "Z":
        base = _SECOND_CACHE.get(value[:19])
        if base is not None:
            frac = value[20:26]
            if frac.isdigit() and frac.isascii():
                return base + int(frac) * 1000
            raise DecodeError(f"bad timestamp {value!r}")
        ns = _parse_rfc3339_ns(value)
        if len(_SECOND_CACHE) > 256:
            _SECOND_CACHE.clear()
        _SECOND_CACHE[value[:19]] = ns - int(value[20:26]) * 1000
        return ns
    return _parse_rfc3339_ns(value)


def _parse_rfc3339_ns(value: object) -> int:
    if type(value) is not str or len(value) < 20 or len(value) > 40:
        raise DecodeError(f"bad timestamp {value!r:.60}")
    text: str = value
    if text[10] not in "Tt " or text[4] != "-" or text[13] != ":":
        raise DecodeError(f"bad timestamp {text!r}")
    day = text[:10]
    base = _DAY_CACHE.get(day)
    try:
        if base is None:
            y, mo, d = int(day[:4]), int(day[5:7]), int(day[8:10])
            base = calendar.timegm((y, mo, d, 0, 0, 0, 0, 0, 0))
            if len(_DAY_CACHE) > 64:
                _DAY_CACHE.clear()
            _DAY_CACHE[day] = base
        hh, mm, ss = int(text[11:13]), int(text[14:16]), int(text[17:19])
        rest = text[19:]
        frac_ns = 0
        if rest.startswith("."):
            end = 1
            while end < len(rest) and rest[end].isdigit():
                end += 1
            digits = rest[1:end][:9]
            frac_ns = int(digits.ljust(9, "0")) if digits else 0
            rest = rest[end:]
        offset = 0
        if rest in ("Z", "z", ""):
            offset = 0
        elif rest[0] in "+-" and len(rest) == 6 and rest[3] == ":":
            sign = 1 if rest[0] == "+" else -1
            offset = sign * (int(rest[1:3]) * 3600 + int(rest[4:6]) * 60)
        else:
            raise DecodeError(f"bad timestamp offset {text!r}")
    except ValueError as exc:
        raise DecodeError(f"bad timestamp {text!r}") from exc
    if not (0 <= hh < 24 and 0 <= mm < 60 and 0 <= ss <= 60):
        raise DecodeError(f"bad timestamp {text!r}")
    seconds = base + hh * 3600 + mm * 60 + ss - offset
    return seconds * 1_000_000_000 + frac_ns


def format_rfc3339_ns(ns: int) -> str:
    """Inverse of :func:`parse_rfc3339_ns` at microsecond precision (for captures/tests)."""
    import datetime as _dt

    secs, rem = divmod(ns, 1_000_000_000)
    base = _dt.datetime.fromtimestamp(secs, tz=_dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{base}.{rem // 1000:06d}Z"
