"""KuCoin Spot WebSocket (classic) protocol, sans I/O (protocols.md §2).

Encoders build request text and the connect URL; :func:`decode` turns one
text frame into one typed message; :func:`decode_bullet` and
:func:`decode_l2_snapshot` read REST bodies. No sockets, no clocks, no
logging: ids and connect ids come in as arguments.

Decisions, with their sources:

- Numbers (§2.5, §2.6): prices and sizes are JSON *strings*; ``sequenceStart``,
  ``sequenceEnd`` and times are integers, while l2 entry sequences, match and
  ticker ``sequence`` and the REST snapshot ``sequence`` are strings. Frames
  are decoded with the plain ``msgspec.json.Decoder()`` and a JSON number
  where a decimal string belongs is refused (no float ever reaches a book).
  Integer fields documented as strings also accept a JSON integer (the
  value is the same; KuCoin's own examples are not uniform).
- Bullet (§2.1): ``code`` must be ``"200000"``; any other code is a
  :class:`RestError` (``rate_limited`` for ``429000``, and the legacy
  ``1015``/``200002``, §2.4). The token is wrapped in a
  :class:`gapless.secrets.Secret` at once (design.md §1.6).
- Connect URL (§2.1): ``<endpoint>?token=<token>&connectId=<id>``. The token
  is placed verbatim when it only has URL-safe characters (letters, digits,
  ``-._~=``), which is what every client does; anything else (``+``, ``/``,
  ``&``...) is percent-encoded so it cannot change the query's meaning. The
  returned URL contains the token: never log it.
- Acks (§2.3): the ``id`` comes back as a string even when sent as a number;
  every id is normalised to ``str``. We send ids as strings.
- Subscriptions (§2.3/§2.4): one topic message lists at most 100 symbols;
  :func:`encode_subscribe` splits larger lists into several messages with
  consecutive ids and ``response: true`` (so each gets an ack).
- Errors (§2.3, §2.8): 401 "token is expired" needs a new bullet and a new
  connection; 404 "topic ... is not found" is permanent; 509 is a limit
  (retry later with fewer topics). See :class:`ErrorKind`.
- l2update (§2.5): ``sequenceStart > sequenceEnd`` is malformed
  (:class:`DecodeError`); the docs' worked example prints the two swapped
  (the known erratum), and such a frame never reaches the sync machine.

Every decode failure, whatever its cause (invalid JSON, wrong types, hostile
nesting, out-of-range numbers), raises :class:`gapless.errors.DecodeError` and
nothing else.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

import msgspec

from gapless.errors import ConfigError, DecodeError, LocalProtocolError
from gapless.secrets import Secret
from gapless.venues.base import StreamSpec
from gapless.venues.limits import DEFAULT_MAX_JSON_DEPTH, check_json_depth
from gapless.venues.numbers import parse_int
from gapless.venues.seqsync import check_decimal

__all__ = [
    "BULLET_PRIVATE_PATH",
    "BULLET_PUBLIC_PATH",
    "CONNECTION_LIFETIME_S",
    "MAX_CONNECTS_PER_MINUTE",
    "MAX_SYMBOLS_PER_REQUEST",
    "MAX_TOPICS_PER_CONNECTION",
    "MAX_UPLINK_MSGS_PER_10S",
    "RATE_LIMIT_CODES",
    "REST_URL",
    "SUCCESS_CODE",
    "TOPIC_LEVEL2",
    "TOPIC_MATCH",
    "TOPIC_TICKER",
    "VENUE",
    "WELCOME_TIMEOUT_S",
    "Ack",
    "Bullet",
    "ErrorFrame",
    "ErrorKind",
    "InstanceServer",
    "L2Change",
    "L2Snapshot",
    "L2Update",
    "Match",
    "Message",
    "Notice",
    "Ping",
    "Pong",
    "Request",
    "RestError",
    "TickerMsg",
    "UnknownMsg",
    "Welcome",
    "classify",
    "connect_url",
    "decode",
    "decode_bullet",
    "decode_l2_snapshot",
    "decode_rest_error",
    "encode_ping",
    "encode_subscribe",
    "encode_unsubscribe",
    "is_rate_limited",
    "l2_snapshot_path",
    "load",
    "topic",
    "topic_of",
]

VENUE = "kucoin"

# ------------------------------------------------------------------ limits (§2.1-§2.4)

REST_URL = "https://api.kucoin.com"
BULLET_PUBLIC_PATH = "/api/v1/bullet-public"
BULLET_PRIVATE_PATH = "/api/v1/bullet-private"
SUCCESS_CODE = "200000"
#: §2.4: HTTP 429 body code; legacy 1015 (Cloudflare) and 200002 (too many requests).
RATE_LIMIT_CODES = frozenset({"429000", "1015", "200002"})
#: §2.4: symbols (= topics) per subscribe message.
MAX_SYMBOLS_PER_REQUEST = 100
#: §2.4: topics per connection. Legacy docs say 300, newer 400: the lower bound is used.
MAX_TOPICS_PER_CONNECTION = 300
#: §2.4: connection attempts per minute; client->server messages per 10 s.
MAX_CONNECTS_PER_MINUTE = 30
MAX_UPLINK_MSGS_PER_10S = 100
#: §2.3: the SDK gives up when no welcome arrives within 5 s.
WELCOME_TIMEOUT_S = 5.0
#: §2.1: tokens are valid 24 h and connections are expected to close at 24 h.
CONNECTION_LIFETIME_S = 24 * 3600.0

TOPIC_LEVEL2 = "/market/level2"
TOPIC_MATCH = "/market/match"
TOPIC_TICKER = "/market/ticker"
_CHANNEL_TOPICS = {"book": TOPIC_LEVEL2, "trade": TOPIC_MATCH, "ticker": TOPIC_TICKER}

_DECODER = msgspec.json.Decoder()
_ENCODER = msgspec.json.Encoder()
_I64 = 2**63 - 1
_MAX_TEXT = 512
_SYMBOL_RE = re.compile(r"[A-Za-z0-9]{1,20}(?:-[A-Za-z0-9]{1,20}){1,2}")
_TOPIC_PREFIX_RE = re.compile(r"/[A-Za-z0-9/_-]{1,100}")
_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")


def _check_symbol(symbol: str) -> str:
    if not isinstance(symbol, str) or not _SYMBOL_RE.fullmatch(symbol):
        raise ConfigError(f"KuCoin symbols look like 'BTC-USDT', got {symbol!r}")
    return symbol


def topic(prefix: str, symbols: Sequence[str]) -> str:
    """``/market/level2:BTC-USDT,ETH-USDT`` (§2.3: comma-separated symbols)."""
    if not isinstance(prefix, str) or not _TOPIC_PREFIX_RE.fullmatch(prefix):
        raise LocalProtocolError(f"bad topic prefix {prefix!r}")
    return f"{prefix}:{','.join(_check_symbol(s) for s in symbols)}"


def topic_of(spec: StreamSpec) -> tuple[str, str]:
    """``(topic prefix, symbol)`` of a :mod:`gapless.venues.kucoin` spec."""
    if spec.venue != VENUE:
        raise ConfigError(f"not a KuCoin stream: {spec.key}")
    prefix = _CHANNEL_TOPICS.get(spec.channel)
    if prefix is None:
        raise ConfigError(f"unknown KuCoin channel {spec.channel!r}")
    return prefix, _check_symbol(spec.symbol)


def l2_snapshot_path(symbol: str, depth: int | None = None) -> str:
    """§2.5 REST snapshot path: ``depth`` 20 or 100 (public), None = full book (signed)."""
    sym = quote(_check_symbol(symbol), safe="")
    if depth is None:
        return f"/api/v3/market/orderbook/level2?symbol={sym}"
    if depth not in (20, 100):
        raise ConfigError(f"KuCoin partial snapshot depth must be 20 or 100, got {depth!r}")
    return f"/api/v1/market/orderbook/level2_{depth}?symbol={sym}"


def connect_url(endpoint: str, token: Secret | str, connect_id: str) -> str:
    """§2.1 ``<endpoint>?token=<token>&connectId=<connect_id>`` (contains the token)."""
    if not isinstance(endpoint, str) or not endpoint.startswith(("wss://", "ws://")):
        raise ConfigError("KuCoin endpoint must be a ws:// or wss:// URL")
    raw = token.reveal() if isinstance(token, Secret) else token
    if not isinstance(raw, str) or not raw:
        raise ConfigError("KuCoin token must be a non-empty string")
    if not isinstance(connect_id, str) or not _ID_RE.fullmatch(connect_id):
        raise ConfigError("connectId must be 1-64 characters of [A-Za-z0-9_-]")
    sep = "&" if "?" in endpoint else "?"
    return f"{endpoint}{sep}token={quote(raw, safe='=')}&connectId={connect_id}"


# ------------------------------------------------------------------ encoders (§2.3)


class Request(msgspec.Struct, frozen=True):
    """One encoded subscribe/unsubscribe message; its ack carries ``id``."""

    id: str
    text: str
    topic: str
    symbols: tuple[str, ...]


def _check_id(req_id: str) -> str:
    if not isinstance(req_id, str) or not _ID_RE.fullmatch(req_id):
        raise LocalProtocolError("request ids must be 1-64 characters of [A-Za-z0-9_-]")
    return req_id


def encode_subscribe(
    prefix: str,
    symbols: Sequence[str],
    first_id: int,
    *,
    private_channel: bool = False,
    response: bool = True,
) -> list[Request]:
    """Subscribe messages for ``prefix`` and ``symbols``, at most 100 symbols each.

    Ids are ``str(first_id)``, ``str(first_id + 1)``, ...; duplicates in
    ``symbols`` are sent once."""
    return _encode("subscribe", prefix, symbols, first_id, private_channel, response)


def encode_unsubscribe(
    prefix: str,
    symbols: Sequence[str],
    first_id: int,
    *,
    private_channel: bool = False,
    response: bool = True,
) -> list[Request]:
    """Same shape as :func:`encode_subscribe` with ``"type":"unsubscribe"``."""
    return _encode("unsubscribe", prefix, symbols, first_id, private_channel, response)


def _encode(
    kind: str,
    prefix: str,
    symbols: Sequence[str],
    first_id: int,
    private_channel: bool,
    response: bool,
) -> list[Request]:
    if isinstance(symbols, str):
        raise LocalProtocolError("symbols must be a sequence, not one string")
    if type(first_id) is not int or first_id < 0:
        raise LocalProtocolError("first_id must be a non-negative int")
    unique = list(dict.fromkeys(symbols))
    if not unique:
        raise LocalProtocolError(f"{kind} needs at least one symbol")
    out = []
    for n, start in enumerate(range(0, len(unique), MAX_SYMBOLS_PER_REQUEST)):
        chunk = tuple(unique[start : start + MAX_SYMBOLS_PER_REQUEST])
        t = topic(prefix, chunk)
        rid = str(first_id + n)
        text = _ENCODER.encode(
            {
                "id": rid,
                "type": kind,
                "topic": t,
                "privateChannel": bool(private_channel),
                "response": bool(response),
            }
        ).decode()
        out.append(Request(rid, text, t, chunk))
    return out


def encode_ping(req_id: str) -> str:
    """§2.3 ``{"id":"...","type":"ping"}``; the pong echoes the id."""
    return _ENCODER.encode({"id": _check_id(req_id), "type": "ping"}).decode()


# ------------------------------------------------------------------ messages


class InstanceServer(msgspec.Struct, frozen=True):
    """§2.1 one entry of ``instanceServers``."""

    endpoint: str
    encrypt: bool
    protocol: str
    ping_interval_ms: int
    ping_timeout_ms: int

    @property
    def ping_interval_s(self) -> float:
        return self.ping_interval_ms / 1000.0

    @property
    def ping_timeout_s(self) -> float:
        return self.ping_timeout_ms / 1000.0


class Bullet(msgspec.Struct, frozen=True):
    """§2.1 bullet response: a token (kept secret) and the servers to dial."""

    token: Secret
    servers: tuple[InstanceServer, ...]


class RestError(msgspec.Struct, frozen=True):
    """A KuCoin REST body whose ``code`` is not ``"200000"``."""

    code: str
    msg: str

    @property
    def rate_limited(self) -> bool:
        """§2.4: ``429000`` (or legacy ``1015``/``200002``): back off."""
        return self.code in RATE_LIMIT_CODES


L2Change = tuple[str, str, int]  # (price, size, sequence)
Level = tuple[str, str]


class L2Snapshot(msgspec.Struct, frozen=True):
    """§2.5 REST level2 snapshot; asks low->high, bids high->low."""

    sequence: int
    time_ms: int | None
    bids: tuple[Level, ...]
    asks: tuple[Level, ...]


class Welcome(msgspec.Struct, frozen=True):
    """§2.3: first frame; ``id`` equals the connectId. Usable only after it."""

    id: str


class Ping(msgspec.Struct, frozen=True):
    id: str | None


class Pong(msgspec.Struct, frozen=True):
    """§2.3: answer to our ping, same id."""

    id: str | None


class Ack(msgspec.Struct, frozen=True):
    """§2.3: subscribe/unsubscribe acknowledged (only sent when ``response:true``)."""

    id: str


class ErrorKind(enum.Enum):
    """What an error frame means for the client (§2.3, §2.8)."""

    TOKEN_EXPIRED = "token_expired"  # 401: new bullet, new connection
    TOPIC_NOT_FOUND = "topic_not_found"  # 404: permanent rejection
    LIMIT_EXCEEDED = "limit_exceeded"  # 509: subscription limits; retry with fewer
    OTHER = "other"


_ERROR_KINDS = {
    401: ErrorKind.TOKEN_EXPIRED,
    404: ErrorKind.TOPIC_NOT_FOUND,
    509: ErrorKind.LIMIT_EXCEEDED,
}


class ErrorFrame(msgspec.Struct, frozen=True):
    """§2.3 ``{"id":..,"type":"error","code":404,"data":"topic ... is not found"}``."""

    id: str | None
    code: int
    data: str

    @property
    def kind(self) -> ErrorKind:
        return _ERROR_KINDS.get(self.code, ErrorKind.OTHER)

    @property
    def permanent(self) -> bool:
        """True when asking again cannot help (unknown topic)."""
        return self.kind is ErrorKind.TOPIC_NOT_FOUND


class L2Update(msgspec.Struct, frozen=True):
    """§2.5 ``trade.l2update``: changes are ``(price, size, sequence)``."""

    symbol: str
    sequence_start: int
    sequence_end: int
    time_ms: int
    bids: tuple[L2Change, ...]
    asks: tuple[L2Change, ...]


class Match(msgspec.Struct, frozen=True):
    """§2.6 ``trade.l3match``; ``side`` is the taker side, ``time_ns`` in ns."""

    symbol: str
    sequence: int
    trade_id: str
    price: str
    size: str
    side: str
    time_ns: int
    maker_order_id: str | None
    taker_order_id: str | None


class TickerMsg(msgspec.Struct, frozen=True):
    """§2.6 ``trade.ticker`` (symbol from the topic, or the subject for ``ticker:all``)."""

    symbol: str
    sequence: int
    price: str
    size: str
    best_ask: str
    best_ask_size: str
    best_bid: str
    best_bid_size: str
    time_ms: int


class Notice(msgspec.Struct, frozen=True):
    """§2.3 ``notice``/``command`` frames (not documented further)."""

    type: str
    topic: str | None
    subject: str | None


class UnknownMsg(msgspec.Struct, frozen=True):
    """A well-formed frame we do not handle (other topics, private data...)."""

    type: str
    topic: str | None
    subject: str | None


Message = (
    Welcome | Ping | Pong | Ack | ErrorFrame | L2Update | Match | TickerMsg | Notice | UnknownMsg
)

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
    """Decode one WebSocket frame. Raises only :class:`DecodeError`."""
    return classify(load(frame))


def load(frame: str | bytes, max_depth: int | None = DEFAULT_MAX_JSON_DEPTH) -> Any:
    """The JSON value of one frame, whatever its shape (an adapter's hot path reads
    the common messages from it directly); a frame nested deeper than ``max_depth``
    is refused before decoding (None: no check). Raises only :class:`DecodeError`."""
    return _load(frame, max_depth)


def classify(raw: Any) -> Message:
    """:func:`decode` of a frame already loaded with :func:`load`. Raises only
    :class:`DecodeError`."""
    msg: Message = _guard(_classify, raw)
    return msg


def decode_bullet(body: str | bytes) -> Bullet | RestError:
    """§2.1 bullet-public/-private response. Raises only :class:`DecodeError`."""
    out: Bullet | RestError = _guard(_bullet, _load(body))
    return out


def decode_l2_snapshot(body: str | bytes) -> L2Snapshot | RestError:
    """§2.5 REST level2 snapshot (``sequence`` as a string). Raises only :class:`DecodeError`."""
    out: L2Snapshot | RestError = _guard(_l2_snapshot, _load(body))
    return out


def decode_rest_error(body: str | bytes) -> RestError:
    """Any KuCoin REST body as a :class:`RestError` (its ``code`` and ``msg``)."""
    raw = _load(body)
    if type(raw) is not dict:
        raise DecodeError(f"expected a JSON object, got {type(raw).__name__}")
    err: RestError = _guard(_rest_error, raw)
    return err


def is_rate_limited(status: int, body: str | bytes | None) -> bool:
    """§2.4: HTTP 429, or a body with code ``429000`` (also overload, headers missing)."""
    if status == 429:
        return True
    if not body:
        return False
    try:
        return decode_rest_error(body).rate_limited
    except DecodeError:
        return False


def _code(raw: dict[str, Any]) -> str:
    code = raw["code"]
    if type(code) is int:
        return str(parse_int(code, lo=-(2**63), hi=_I64))
    return _text(code, "code", 32)


def _rest_error(raw: dict[str, Any]) -> RestError:
    msg = raw.get("msg", "")
    return RestError(_code(raw), "" if msg is None else _text(msg, "msg"))


def _bullet(raw: Any) -> Bullet | RestError:
    if type(raw) is not dict:
        raise DecodeError(f"expected a JSON object, got {type(raw).__name__}")
    if _code(raw) != SUCCESS_CODE:
        return _rest_error(raw)
    data = raw["data"]
    if type(data) is not dict:
        raise DecodeError("bullet data is not an object")
    token = data["token"]
    if type(token) is not str or not 0 < len(token) <= 4096:
        raise DecodeError("bad bullet token")
    servers = data["instanceServers"]
    if type(servers) is not list or not servers:
        raise DecodeError("bullet without instanceServers")
    out = []
    for s in servers:
        if type(s) is not dict:
            raise DecodeError("instance server is not an object")
        endpoint = _text(s["endpoint"], "endpoint")
        if not endpoint.startswith(("wss://", "ws://")):
            raise DecodeError("instance server endpoint is not a ws(s) URL")
        encrypt = s.get("encrypt", True)
        if type(encrypt) is not bool:
            raise DecodeError("encrypt is not a boolean")
        protocol = s.get("protocol", "websocket")
        out.append(
            InstanceServer(
                endpoint=endpoint,
                encrypt=encrypt,
                protocol=_text(protocol, "protocol", 32),
                ping_interval_ms=parse_int(s["pingInterval"], lo=1, hi=3_600_000),
                ping_timeout_ms=parse_int(s["pingTimeout"], lo=1, hi=3_600_000),
            )
        )
    return Bullet(Secret(token), tuple(out))


def _l2_snapshot(raw: Any) -> L2Snapshot | RestError:
    if type(raw) is not dict:
        raise DecodeError(f"expected a JSON object, got {type(raw).__name__}")
    if _code(raw) != SUCCESS_CODE:
        return _rest_error(raw)
    data = raw["data"]
    if type(data) is not dict:
        raise DecodeError("snapshot data is not an object")
    t = data.get("time")
    return L2Snapshot(
        sequence=_seq(data["sequence"], "sequence"),
        time_ms=None if t is None else parse_int(t, hi=_I64),
        bids=_levels(data["bids"], "bids"),
        asks=_levels(data["asks"], "asks"),
    )


def _classify(raw: Any) -> Message:
    if type(raw) is not dict:
        raise DecodeError(f"expected a JSON object, got {type(raw).__name__}")
    typ = raw["type"]
    if typ == "message":
        return _message(raw)
    if typ == "pong":
        return Pong(_opt_id(raw.get("id")))
    if typ == "ack":
        ack_id = _opt_id(raw.get("id"))
        if ack_id is None:
            raise DecodeError("ack without id")
        return Ack(ack_id)
    if typ == "welcome":
        wid = _opt_id(raw.get("id"))
        if wid is None:
            raise DecodeError("welcome without id")
        return Welcome(wid)
    if typ == "error":
        data = raw.get("data", "")
        return ErrorFrame(
            id=_opt_id(raw.get("id")),
            code=_int_or_digits(raw["code"], "code", hi=2**31),
            data="" if data is None else _text(data, "data"),
        )
    if typ == "ping":
        return Ping(_opt_id(raw.get("id")))
    typ = _text(typ, "type", 32)
    if typ in ("notice", "command"):
        return Notice(typ, _opt_text(raw.get("topic")), _opt_text(raw.get("subject")))
    return UnknownMsg(typ, _opt_text(raw.get("topic")), _opt_text(raw.get("subject")))


def _message(raw: dict[str, Any]) -> Message:
    topic_ = _text(raw["topic"], "topic")
    subject = _opt_text(raw.get("subject"))
    data = raw["data"]
    if subject == "trade.l2update":
        return _l2update(_obj(data))
    if subject == "trade.l3match":
        return _match(_obj(data))
    if subject == "trade.ticker":
        head, _, sym = topic_.partition(":")
        if head != TOPIC_TICKER or not sym or "," in sym or sym == "all":
            # a multi-symbol ticker topic gives no way to tell whose this is
            raise DecodeError(f"ticker on topic {topic_!r} names no single symbol")
        return _ticker(_obj(data), sym)
    if topic_ == TOPIC_TICKER + ":all" and subject is not None:
        return _ticker(_obj(data), subject)  # §2.6: subject = the symbol
    return UnknownMsg("message", topic_, subject)


def _l2update(data: dict[str, Any]) -> L2Update:
    start = _seq(data["sequenceStart"], "sequenceStart")
    end = _seq(data["sequenceEnd"], "sequenceEnd")
    if start > end:
        raise DecodeError(f"l2update with sequenceStart {start} > sequenceEnd {end}")
    changes = _obj(data["changes"])
    return L2Update(
        symbol=_symbol(data["symbol"]),
        sequence_start=start,
        sequence_end=end,
        time_ms=parse_int(data["time"], hi=_I64),
        bids=_changes(changes.get("bids", []), "bids"),
        asks=_changes(changes.get("asks", []), "asks"),
    )


def _match(data: dict[str, Any]) -> Match:
    side = data["side"]
    if side not in ("buy", "sell"):
        raise DecodeError(f"bad match side {side!r:.20}")
    trade_id = _text(data["tradeId"], "tradeId", 64)
    if not trade_id:
        raise DecodeError("empty tradeId")
    return Match(
        symbol=_symbol(data["symbol"]),
        sequence=_seq(data["sequence"], "sequence"),
        trade_id=trade_id,
        price=check_decimal(data["price"], "price"),
        size=check_decimal(data["size"], "size"),
        side=side,
        time_ns=_seq(data["time"], "time"),
        maker_order_id=_opt_text(data.get("makerOrderId"), 64),
        taker_order_id=_opt_text(data.get("takerOrderId"), 64),
    )


def _ticker(data: dict[str, Any], symbol: str) -> TickerMsg:
    t = data["time"] if "time" in data else data["Time"]  # §2.6: one doc example says "Time"
    return TickerMsg(
        symbol=_symbol(symbol),
        sequence=_seq(data["sequence"], "sequence"),
        price=check_decimal(data["price"], "price"),
        size=check_decimal(data["size"], "size"),
        best_ask=check_decimal(data["bestAsk"], "bestAsk"),
        best_ask_size=check_decimal(data["bestAskSize"], "bestAskSize"),
        best_bid=check_decimal(data["bestBid"], "bestBid"),
        best_bid_size=check_decimal(data["bestBidSize"], "bestBidSize"),
        time_ms=parse_int(t, hi=_I64),
    )


def _changes(side: Any, what: str) -> tuple[L2Change, ...]:
    if type(side) is not list:
        raise DecodeError(f"{what} is not a list")
    out = []
    for ch in side:
        if type(ch) is not list or len(ch) != 3:
            raise DecodeError(f"{what}: a change must be [price, size, sequence]")
        out.append((check_decimal(ch[0], what), check_decimal(ch[1], what), _seq(ch[2], what)))
    return tuple(out)


def _levels(side: Any, what: str) -> tuple[Level, ...]:
    if type(side) is not list:
        raise DecodeError(f"{what} is not a list")
    out = []
    for lv in side:
        if type(lv) is not list or len(lv) != 2:
            raise DecodeError(f"{what}: a level must be [price, size]")
        out.append((check_decimal(lv[0], what), check_decimal(lv[1], what)))
    return tuple(out)


def _seq(v: Any, what: str) -> int:
    """A non-negative int64 given as a JSON integer or a string of digits."""
    return _int_or_digits(v, what, hi=_I64)


def _int_or_digits(v: Any, what: str, *, hi: int) -> int:
    if type(v) is int:
        return parse_int(v, lo=0, hi=hi)
    if type(v) is str and 0 < len(v) <= 19 and v.isascii() and v.isdigit():
        n = int(v)
        if n <= hi:
            return n
    raise DecodeError(f"{what}: expected a non-negative integer, got {v!r:.40}")


def _obj(v: Any) -> dict[str, Any]:
    if type(v) is not dict:
        raise DecodeError(f"expected a JSON object, got {type(v).__name__}")
    d: dict[str, Any] = v
    return d


def _text(v: Any, what: str, limit: int = _MAX_TEXT) -> str:
    if type(v) is not str:
        raise DecodeError(f"{what}: expected a string, got {type(v).__name__}")
    text: str = v
    return text[:limit]


def _opt_text(v: Any, limit: int = _MAX_TEXT) -> str | None:
    return None if v is None else _text(v, "field", limit)


def _opt_id(v: Any) -> str | None:
    """Ids are echoed as strings (§2.3); a number is normalised to its decimal text."""
    if v is None:
        return None
    if type(v) is int:
        return str(parse_int(v, lo=-(2**63), hi=2**64 - 1))
    return _text(v, "id", 128)


def _symbol(v: Any) -> str:
    if type(v) is not str or not 0 < len(v) <= 48:
        raise DecodeError(f"bad symbol {v!r:.40}")
    sym: str = v
    return sym
