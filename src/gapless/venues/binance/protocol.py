"""Binance Spot market-data WebSocket protocol, sans I/O (protocols.md §3).

Encoders build request text and URLs; :func:`decode` turns one text frame of a
stream connection into one typed message; :func:`decode_depth_snapshot` and
:func:`decode_rest_error` read REST bodies. No sockets, no clocks, no logging.

Decisions, with their sources:

- Numbers (§3.6, §3.7): Binance sends every price and quantity as a JSON
  *string* (``"0.00240000"``) and ids/times as integers. Frames are therefore
  decoded with the plain ``msgspec.json.Decoder()`` (not Kraken's
  ``float_hook=str``): a JSON number where a decimal string belongs is a
  protocol violation and is refused, so no float ever reaches a book. Decimal
  strings are checked here (plain, non-negative, at most 36 characters and 18
  decimals) and kept as text; the sync machine scales them.
- Combined streams (§3.1): ``{"stream": name, "data": payload}`` becomes
  :class:`Combined` around the decoded payload; an envelope inside an
  envelope is refused.
- Acks and errors (§3.5): ``{"result": null, "id": N}`` is success;
  ``LIST_SUBSCRIPTIONS`` answers a list and ``GET_PROPERTY`` a bool. Errors
  come nested, ``{"error": {"code", "msg"}, "id"}``, with ``id`` null when the
  request could not be parsed; the WS-API form adds ``status``.
- ``serverShutdown`` (§3.4) is recognised raw, inside a combined envelope
  (stream ``!serverShutdown``) and in the WS-API ``{"event": {...}}`` form.
- Depth updates must satisfy ``U <= u``; anything else is malformed
  (:class:`DecodeError`), never handed to the sync machine.
- Times ``E``/``T`` are passed through as integers: milliseconds, or
  microseconds when the URL asked for ``timeUnit=MICROSECOND`` (§3.1);
  :func:`to_ns` converts.

Every decode failure, whatever its cause (invalid JSON, wrong types, hostile
nesting, out-of-range numbers), raises :class:`gapless.errors.DecodeError` and
nothing else.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

import msgspec

from gapless.errors import ConfigError, DecodeError, LocalProtocolError
from gapless.venues.base import StreamSpec
from gapless.venues.limits import DEFAULT_MAX_JSON_DEPTH, check_json_depth
from gapless.venues.numbers import parse_int
from gapless.venues.seqsync import check_decimal

__all__ = [
    "CONNECTION_LIFETIME_S",
    "DATA_STREAM_URL",
    "DEFAULT_DEPTH_LIMIT",
    "MAX_CONNECTS_PER_WINDOW",
    "MAX_DEPTH_LIMIT",
    "MAX_OUTBOUND_MSGS_PER_S",
    "MAX_STREAMS_PER_CONNECTION",
    "PONG_DEADLINE_S",
    "REST_URL",
    "SERVER_PING_INTERVAL_S",
    "STREAM_URL",
    "VENUE",
    "Ack",
    "BookTicker",
    "Combined",
    "DepthSnapshot",
    "DepthUpdate",
    "ErrorMsg",
    "Message",
    "Payload",
    "RequestId",
    "RestError",
    "ServerShutdown",
    "TradeMsg",
    "UnknownMsg",
    "book_ticker_stream",
    "classify",
    "combined_url",
    "decode",
    "decode_depth_snapshot",
    "decode_rest_error",
    "depth_snapshot_path",
    "depth_snapshot_weight",
    "depth_stream",
    "encode_list_subscriptions",
    "encode_subscribe",
    "encode_unsubscribe",
    "load",
    "raw_url",
    "stream_name",
    "to_ns",
    "trade_stream",
]

VENUE = "binance"

# ------------------------------------------------------------------ limits (§3.1-§3.3, §3.7)

#: §3.1 market streams (port 443 also works); data-only host carries no user data.
STREAM_URL = "wss://stream.binance.com:9443"
DATA_STREAM_URL = "wss://data-stream.binance.vision"
REST_URL = "https://api.binance.com"

#: §3.2: streams per connection.
MAX_STREAMS_PER_CONNECTION = 1024
#: §3.2: messages per second *to* the server, pings, pongs and JSON control included.
MAX_OUTBOUND_MSGS_PER_S = 5
#: §3.2: connection attempts per IP per window.
MAX_CONNECTS_PER_WINDOW = 300
CONNECT_WINDOW_S = 300.0
#: §3.2: expect a disconnect at the 24 h mark.
CONNECTION_LIFETIME_S = 24 * 3600.0
#: §3.3: the server pings every 20 s and disconnects after 60 s without a pong.
SERVER_PING_INTERVAL_S = 20.0
PONG_DEADLINE_S = 60.0
#: §3.7: REST ``/api/v3/depth`` limits and request weights.
DEFAULT_DEPTH_LIMIT = 100
MAX_DEPTH_LIMIT = 5000
DEPTH_WEIGHTS: tuple[tuple[int, int], ...] = ((100, 5), (500, 25), (1000, 50), (5000, 250))
#: §3.5: an alphanumeric request id is at most 36 characters.
MAX_ID_LEN = 36

_DECODER = msgspec.json.Decoder()
_ENCODER = msgspec.json.Encoder()
_I64 = 2**63 - 1
_MAX_TEXT = 256
_ID_RE = re.compile(r"[A-Za-z0-9-]{1,36}")
# a stream name: lower-case symbol, '@', stream type (bookTicker has a capital);
# nothing that would need escaping in a URL path or JSON
_STREAM_RE = re.compile(r"[^\s/?&#%\"\\,]{1,200}")

RequestId = int | str | None


def depth_snapshot_weight(limit: int) -> int:
    """§3.7 request weight of ``/api/v3/depth`` (limits above 5000 count as 5000)."""
    if type(limit) is not int or limit < 1:
        raise ConfigError(f"depth limit must be a positive int, got {limit!r}")
    for upper, weight in DEPTH_WEIGHTS:
        if limit <= upper:
            return weight
    return DEPTH_WEIGHTS[-1][1]


def to_ns(value: int, *, micros: bool = False) -> int:
    """``E``/``T`` in integer ns: ms by default, µs with ``timeUnit=MICROSECOND`` (§3.1)."""
    return value * (1_000 if micros else 1_000_000)


# ------------------------------------------------------------------ names and URLs


def _sym(symbol: str) -> str:
    if not isinstance(symbol, str) or not 0 < len(symbol) <= 32 or not _STREAM_RE.fullmatch(symbol):
        raise ConfigError(f"bad Binance symbol {symbol!r}")
    if "@" in symbol or ":" in symbol or "-" in symbol:
        raise ConfigError(f"Binance symbols look like 'BTCUSDT', got {symbol!r}")
    return symbol.lower()


def depth_stream(symbol: str, *, speed_ms: int = 100) -> str:
    """§3.6 diff depth: ``btcusdt@depth@100ms`` (default) or ``btcusdt@depth`` (1000 ms)."""
    if speed_ms == 100:
        return f"{_sym(symbol)}@depth@100ms"
    if speed_ms == 1000:
        return f"{_sym(symbol)}@depth"
    raise ConfigError(f"diff depth speed must be 100 or 1000 ms, got {speed_ms!r}")


def trade_stream(symbol: str) -> str:
    """§3.6: ``btcusdt@trade``."""
    return f"{_sym(symbol)}@trade"


def book_ticker_stream(symbol: str) -> str:
    """§3.6: ``btcusdt@bookTicker``."""
    return f"{_sym(symbol)}@bookTicker"


def stream_name(spec: StreamSpec) -> str:
    """The stream name of a :mod:`gapless.venues.binance` spec (book = 100 ms diff depth)."""
    if spec.venue != VENUE:
        raise ConfigError(f"not a Binance stream: {spec.key}")
    if spec.channel == "book":
        return depth_stream(spec.symbol)
    if spec.channel == "trade":
        return trade_stream(spec.symbol)
    if spec.channel == "book_ticker":
        return book_ticker_stream(spec.symbol)
    raise ConfigError(f"unknown Binance channel {spec.channel!r}")


def _check_streams(streams: Sequence[str]) -> list[str]:
    if isinstance(streams, str):
        raise LocalProtocolError("streams must be a sequence of names, not one string")
    names = list(streams)
    if len(names) > MAX_STREAMS_PER_CONNECTION:
        raise LocalProtocolError(
            f"{len(names)} streams exceed {MAX_STREAMS_PER_CONNECTION} per connection (§3.2)"
        )
    for name in names:
        if not isinstance(name, str) or not _STREAM_RE.fullmatch(name):
            raise LocalProtocolError(f"bad stream name {name!r}")
    return names


def combined_url(streams: Sequence[str], base: str = STREAM_URL, *, micros: bool = False) -> str:
    """§3.1 combined-stream URL: ``<base>/stream?streams=a/b/c``.

    With no streams the URL is ``<base>/stream`` (subscribe later, §3.5).
    ``micros`` adds ``timeUnit=MICROSECOND``."""
    names = _check_streams(streams)
    base = base.rstrip("/")
    params = []
    if names:
        params.append("streams=" + "/".join(names))
    if micros:
        params.append("timeUnit=MICROSECOND")
    return f"{base}/stream" + ("?" + "&".join(params) if params else "")


def raw_url(stream: str, base: str = STREAM_URL) -> str:
    """§3.1 raw stream URL: ``<base>/ws/<stream>``."""
    (name,) = _check_streams([stream])
    return f"{base.rstrip('/')}/ws/{name}"


def depth_snapshot_path(symbol: str, limit: int = MAX_DEPTH_LIMIT) -> str:
    """§3.7 ``/api/v3/depth?symbol=BNBBTC&limit=5000`` (symbol upper-case, as listed)."""
    _sym(symbol)
    if type(limit) is not int or not 1 <= limit <= MAX_DEPTH_LIMIT:
        raise ConfigError(f"depth limit must be within 1..{MAX_DEPTH_LIMIT}, got {limit!r}")
    return f"/api/v3/depth?symbol={quote(symbol.upper(), safe='')}&limit={limit}"


# ------------------------------------------------------------------ encoders (§3.5)


def _check_id(req_id: RequestId) -> RequestId:
    if req_id is None:
        return None
    if type(req_id) is int:
        if not -(2**63) <= req_id <= _I64:
            raise LocalProtocolError("request id must fit a signed 64-bit integer")
        return req_id
    if type(req_id) is str and _ID_RE.fullmatch(req_id):
        return req_id
    raise LocalProtocolError(
        f"request id must be an int64, an alphanumeric string of <= {MAX_ID_LEN} chars or None"
    )


def encode_subscribe(streams: Sequence[str], req_id: RequestId) -> str:
    """``{"method":"SUBSCRIBE","params":[...],"id":N}`` (§3.5)."""
    return _encode("SUBSCRIBE", streams, req_id)


def encode_unsubscribe(streams: Sequence[str], req_id: RequestId) -> str:
    """``{"method":"UNSUBSCRIBE","params":[...],"id":N}`` (§3.5)."""
    return _encode("UNSUBSCRIBE", streams, req_id)


def encode_list_subscriptions(req_id: RequestId) -> str:
    """``{"method":"LIST_SUBSCRIPTIONS","id":N}`` (§3.5)."""
    rid = _check_id(req_id)
    return _ENCODER.encode({"method": "LIST_SUBSCRIPTIONS", "id": rid}).decode()


def _encode(method: str, streams: Sequence[str], req_id: RequestId) -> str:
    names = _check_streams(streams)
    if not names:
        raise LocalProtocolError(f"{method} needs at least one stream")
    rid = _check_id(req_id)
    return _ENCODER.encode({"method": method, "params": names, "id": rid}).decode()


# ------------------------------------------------------------------ messages

Level = tuple[str, str]


class DepthUpdate(msgspec.Struct, frozen=True):
    """§3.6 ``depthUpdate``: levels ``(price, qty)`` as exact strings; qty "0" removes."""

    symbol: str
    event_time: int
    first_update_id: int  # U
    final_update_id: int  # u
    bids: tuple[Level, ...]
    asks: tuple[Level, ...]


class TradeMsg(msgspec.Struct, frozen=True):
    """§3.6 ``trade``: ``t`` is the per-symbol trade id; ``m`` = buyer is the maker."""

    symbol: str
    event_time: int
    trade_id: int
    price: str
    qty: str
    trade_time: int
    buyer_is_maker: bool

    @property
    def side(self) -> str:
        """Taker side: the buyer is the maker, so the taker sold."""
        return "sell" if self.buyer_is_maker else "buy"


class BookTicker(msgspec.Struct, frozen=True):
    """§3.6 ``<symbol>@bookTicker`` (no ``e``/``E``): best bid/ask with update id ``u``."""

    symbol: str
    update_id: int
    bid: str
    bid_qty: str
    ask: str
    ask_qty: str


class DepthSnapshot(msgspec.Struct, frozen=True):
    """§3.7 REST ``/api/v3/depth`` body, also the partial-depth stream payload (§3.6)."""

    last_update_id: int
    bids: tuple[Level, ...]
    asks: tuple[Level, ...]


class Ack(msgspec.Struct, frozen=True):
    """§3.5: ``result`` is None (success), a list of streams or a property value."""

    id: RequestId
    result: tuple[str, ...] | bool | None


class ErrorMsg(msgspec.Struct, frozen=True):
    """§3.5 nested error (``status`` only in the WS-API form, §3.11)."""

    id: RequestId
    code: int
    msg: str
    status: int | None = None


class ServerShutdown(msgspec.Struct, frozen=True):
    """§3.4: the server is about to disconnect: reconnect at once (make-before-break)."""

    event_time: int


class UnknownMsg(msgspec.Struct, frozen=True):
    """A well-formed payload of an event type we do not handle (``aggTrade``, arrays...)."""

    event: str | None


class RestError(msgspec.Struct, frozen=True):
    """§3.11 REST error body ``{"code":-1121,"msg":"Invalid symbol."}``."""

    code: int
    msg: str


Payload = (
    DepthUpdate
    | TradeMsg
    | BookTicker
    | DepthSnapshot
    | Ack
    | ErrorMsg
    | ServerShutdown
    | UnknownMsg
)


class Combined(msgspec.Struct, frozen=True):
    """§3.1 combined-stream envelope."""

    stream: str
    data: Payload


Message = Payload | Combined

# ------------------------------------------------------------------ decoding


def _load(frame: str | bytes, max_depth: int | None = DEFAULT_MAX_JSON_DEPTH) -> Any:
    if max_depth is not None and len(frame) >= 2 * max_depth + 2:
        check_json_depth(frame, max_depth)  # gapless.venues.limits
    try:
        return _DECODER.decode(frame)
    except (ValueError, RecursionError, TypeError) as exc:  # msgspec/Unicode errors are ValueErrors
        raise DecodeError(f"invalid JSON: {exc}") from None


def _guard(fn: Any, raw: Any) -> Any:
    try:
        return fn(raw)
    except DecodeError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, RecursionError) as exc:
        raise DecodeError(f"unexpected message shape: {type(exc).__name__}: {exc}") from None


def decode(frame: str | bytes) -> Message:
    """Decode one stream-connection frame. Raises only :class:`DecodeError`."""
    return classify(load(frame))


def load(frame: str | bytes, max_depth: int | None = DEFAULT_MAX_JSON_DEPTH) -> Any:
    """The JSON value of one frame, whatever its shape (an adapter's hot path reads
    the common messages from it directly); a frame nested deeper than ``max_depth``
    is refused before decoding (None: no check). Raises only :class:`DecodeError`."""
    return _load(frame, max_depth)


def classify(raw: Any) -> Message:
    """:func:`decode` of a frame already loaded with :func:`load`. Raises only
    :class:`DecodeError`."""
    result: Message = _guard(_classify, raw)
    return result


def decode_depth_snapshot(body: str | bytes) -> DepthSnapshot | RestError:
    """§3.7 REST depth body (or the §3.11 error body). Raises only :class:`DecodeError`."""
    raw = _load(body)
    if type(raw) is dict and "lastUpdateId" not in raw and "code" in raw:
        err: RestError = _guard(_rest_error, raw)
        return err
    snap: DepthSnapshot = _guard(_depth_snapshot, raw)
    return snap


def decode_rest_error(body: str | bytes) -> RestError:
    """§3.11 ``{"code":-1121,"msg":"..."}``. Raises only :class:`DecodeError`."""
    err: RestError = _guard(_rest_error, _load(body))
    return err


def _classify(raw: Any) -> Message:
    if type(raw) is not dict:
        raise DecodeError(f"expected a JSON object, got {type(raw).__name__}")
    if "stream" in raw:
        stream = _text(raw["stream"], "stream")
        data = raw["data"]
        if type(data) is dict and "stream" in data:
            raise DecodeError("combined envelope inside a combined envelope")
        return Combined(stream, _payload(data))
    return _payload(raw)


def _payload(raw: Any) -> Payload:
    if type(raw) is list:
        return UnknownMsg(None)  # e.g. !miniTicker@arr
    if type(raw) is not dict:
        raise DecodeError(f"expected a JSON object, got {type(raw).__name__}")
    event = raw.get("e")
    if event is not None:
        if event == "depthUpdate":
            return _depth_update(raw)
        if event == "trade":
            return _trade(raw)
        if event == "serverShutdown":
            return ServerShutdown(_uint(raw["E"]))
        if event == "bookTicker":
            return _book_ticker(raw)
        return UnknownMsg(_text(event, "e"))
    if "event" in raw:  # WS-API event wrapper (§3.4)
        inner = raw["event"]
        if type(inner) is not dict:
            raise DecodeError("event is not an object")
        if inner.get("e") == "serverShutdown":
            return ServerShutdown(_uint(inner["E"]))
        e = inner.get("e")
        return UnknownMsg(None if e is None else _text(e, "e"))
    if "error" in raw:
        return _error(raw)
    if "result" in raw:
        return _ack(raw)
    if "lastUpdateId" in raw:
        return _depth_snapshot(raw)
    if "u" in raw and "B" in raw and "A" in raw:
        return _book_ticker(raw)
    raise DecodeError("frame is not a known Binance message")


def _depth_update(raw: dict[str, Any]) -> DepthUpdate:
    first = _uint(raw["U"])
    final = _uint(raw["u"])
    if first > final:
        raise DecodeError(f"depthUpdate with U {first} > u {final}")
    return DepthUpdate(
        symbol=_symbol(raw["s"]),
        event_time=_uint(raw["E"]),
        first_update_id=first,
        final_update_id=final,
        bids=_levels(raw["b"], "b"),
        asks=_levels(raw["a"], "a"),
    )


def _trade(raw: dict[str, Any]) -> TradeMsg:
    m = raw["m"]
    if type(m) is not bool:
        raise DecodeError("trade m is not a boolean")
    return TradeMsg(
        symbol=_symbol(raw["s"]),
        event_time=_uint(raw["E"]),
        trade_id=_uint(raw["t"]),
        price=check_decimal(raw["p"], "p"),
        qty=check_decimal(raw["q"], "q"),
        trade_time=_uint(raw["T"]),
        buyer_is_maker=m,
    )


def _book_ticker(raw: dict[str, Any]) -> BookTicker:
    return BookTicker(
        symbol=_symbol(raw["s"]),
        update_id=_uint(raw["u"]),
        bid=check_decimal(raw["b"], "b"),
        bid_qty=check_decimal(raw["B"], "B"),
        ask=check_decimal(raw["a"], "a"),
        ask_qty=check_decimal(raw["A"], "A"),
    )


def _depth_snapshot(raw: Any) -> DepthSnapshot:
    if type(raw) is not dict:
        raise DecodeError(f"expected a JSON object, got {type(raw).__name__}")
    return DepthSnapshot(
        last_update_id=_uint(raw["lastUpdateId"]),
        bids=_levels(raw["bids"], "bids"),
        asks=_levels(raw["asks"], "asks"),
    )


def _ack(raw: dict[str, Any]) -> Ack:
    if "id" not in raw:
        raise DecodeError("result without id")
    result = raw["result"]
    value: tuple[str, ...] | bool | None
    if result is None or type(result) is bool:
        value = result
    elif type(result) is list:
        value = tuple(_text(s, "result item") for s in result)
    else:
        raise DecodeError(f"unexpected result type {type(result).__name__}")
    return Ack(_req_id(raw["id"]), value)


def _error(raw: dict[str, Any]) -> ErrorMsg:
    err = raw["error"]
    if type(err) is not dict:
        raise DecodeError("error is not an object")
    status = raw.get("status")
    return ErrorMsg(
        id=_req_id(raw.get("id")),
        code=parse_int(err["code"], lo=-(2**31), hi=2**31),
        msg=_text(err.get("msg", ""), "msg"),
        status=None if status is None else parse_int(status, hi=999),
    )


def _rest_error(raw: Any) -> RestError:
    if type(raw) is not dict:
        raise DecodeError(f"expected a JSON object, got {type(raw).__name__}")
    return RestError(
        code=parse_int(raw["code"], lo=-(2**31), hi=2**31),
        msg=_text(raw.get("msg", ""), "msg"),
    )


def _levels(side: Any, what: str) -> tuple[Level, ...]:
    if type(side) is not list:
        raise DecodeError(f"{what} is not a list")
    out = []
    for lv in side:
        if type(lv) is not list or len(lv) != 2:
            raise DecodeError(f"{what}: a level must be [price, qty]")
        out.append((check_decimal(lv[0], what), check_decimal(lv[1], what)))
    return tuple(out)


def _uint(v: Any) -> int:
    return parse_int(v, lo=0, hi=_I64)


def _text(v: Any, what: str) -> str:
    if type(v) is not str:
        raise DecodeError(f"{what}: expected a string, got {type(v).__name__}")
    text: str = v
    return text[:_MAX_TEXT]


def _symbol(v: Any) -> str:
    if type(v) is not str or not 0 < len(v) <= 32:
        raise DecodeError(f"bad symbol {v!r:.40}")
    sym: str = v
    return sym


def _req_id(v: Any) -> RequestId:
    if v is None:
        return None
    if type(v) is int:
        return parse_int(v, lo=-(2**63), hi=_I64)
    if type(v) is str and len(v) <= MAX_ID_LEN:
        rid: str = v
        return rid
    raise DecodeError(f"bad request id {v!r:.40}")
