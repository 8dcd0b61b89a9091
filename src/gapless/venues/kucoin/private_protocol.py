"""KuCoin Spot private topics and account REST, sans I/O (protocols.md §2.2, §2.7).

Decoders for the two private topics the account view needs and for the REST
calls that rebuild it after every (re)connect. Envelope frames (welcome,
pong, ack, error) are decoded by :func:`gapless.venues.kucoin.protocol.decode`.

Decisions, with their sources:

- Topics (§2.7): ``/spotMarket/tradeOrdersV2`` (subject ``orderChange``) and
  ``/account/balance`` (subject ``account.balance``), subscribed with
  ``privateChannel: true`` on a connection made with a bullet-private token.
  A frame on those topics must say ``channelType: "private"`` when it says
  anything (§2.3: private frames add ``userId`` and ``channelType``).
- ``orderChange`` ``ts`` is in **nanoseconds** (KC-SDK spec examples); the
  sizes and prices are decimal strings. ``type`` is one of ``received``,
  ``open``, ``match``, ``update``, ``filled``, ``canceled``; ``status`` one of
  ``new``, ``open``, ``match``, ``done``. :func:`order_status` maps them onto
  gapless statuses (``new | partially_filled | filled | canceled``).
- ``account.balance`` ``time`` is **milliseconds** (a string or an int);
  ``total``/``available``/``hold`` are absolute values after the change.
- REST (§2.2 envelope): ``{"code":"200000","data":...}``; any other code is a
  :class:`~gapless.venues.kucoin.protocol.RestError`. ``GET /api/v1/orders``
  pages with ``currentPage``/``pageSize``/``totalPage``/``items``; an order has
  ``id, symbol, side, type, price, size, dealSize, dealFunds, fee, clientOid,
  isActive, cancelExist, createdAt`` (ms). ``GET /api/v1/accounts`` answers a
  list of ``{currency, type, balance, available, holds}``.

Every decode failure raises :class:`gapless.errors.DecodeError` and nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import msgspec

from gapless.errors import DecodeError
from gapless.venues.kucoin import protocol as p
from gapless.venues.limits import DEFAULT_MAX_JSON_DEPTH, check_json_depth
from gapless.venues.numbers import parse_decimal, parse_int
from gapless.venues.seqsync import check_decimal

__all__ = [
    "ACCOUNTS_PATH",
    "OPEN_ORDERS_PATH",
    "TOPIC_BALANCE",
    "TOPIC_ORDERS",
    "BalanceChange",
    "OrderChange",
    "RestAccount",
    "RestOrder",
    "decode",
    "decode_accounts",
    "decode_order",
    "decode_orders_page",
    "order_path",
    "order_status",
    "rest_order_status",
]

TOPIC_ORDERS = "/spotMarket/tradeOrdersV2"
TOPIC_BALANCE = "/account/balance"
OPEN_ORDERS_PATH = "/api/v1/orders"
ACCOUNTS_PATH = "/api/v1/accounts"
_MAX_TEXT = 128
_I64 = 2**63 - 1
_DECODER = msgspec.json.Decoder()
_ORDER_TYPES = frozenset({"received", "open", "match", "update", "filled", "canceled"})
_ORDER_STATUSES = frozenset({"new", "open", "match", "done"})


def order_path(order_id: str) -> str:
    """``/api/v1/orders/{orderId}`` (the id is checked: letters, digits, ``-_``)."""
    if not (0 < len(order_id) <= 64) or not all(c.isalnum() or c in "-_" for c in order_id):
        raise DecodeError("order id must be 1-64 characters of [A-Za-z0-9_-]")
    return f"{OPEN_ORDERS_PATH}/{order_id}"


@dataclass(frozen=True, slots=True)
class OrderChange:
    """One ``orderChange`` message of ``/spotMarket/tradeOrdersV2`` (§2.7)."""

    order_id: str
    symbol: str
    type: str
    status: str
    ts_ns: int
    client_oid: str | None = None
    side: str | None = None
    order_type: str | None = None
    size: Decimal | None = None
    filled_size: Decimal | None = None
    remain_size: Decimal | None = None
    price: Decimal | None = None
    match_price: Decimal | None = None
    match_size: Decimal | None = None
    trade_id: str | None = None
    liquidity: str | None = None  # "maker" | "taker"


@dataclass(frozen=True, slots=True)
class BalanceChange:
    """One ``account.balance`` message of ``/account/balance`` (§2.7)."""

    currency: str
    total: Decimal
    available: Decimal
    hold: Decimal
    time_ms: int
    available_change: Decimal | None = None
    hold_change: Decimal | None = None
    relation_event: str | None = None
    relation_event_id: str | None = None


@dataclass(frozen=True, slots=True)
class RestOrder:
    """One order of ``GET /api/v1/orders`` or ``GET /api/v1/orders/{id}``."""

    order_id: str
    symbol: str
    side: str | None
    order_type: str | None
    price: Decimal | None
    size: Decimal | None
    deal_size: Decimal
    deal_funds: Decimal | None
    fee: Decimal | None
    client_oid: str | None
    is_active: bool
    cancel_exist: bool
    created_ms: int | None


@dataclass(frozen=True, slots=True)
class RestAccount:
    """One line of ``GET /api/v1/accounts?type=trade``."""

    currency: str
    balance: Decimal
    available: Decimal
    holds: Decimal


# ------------------------------------------------------------------ helpers


def _text(value: Any, what: str, limit: int = _MAX_TEXT) -> str:
    if type(value) is not str or not 0 < len(value) <= limit:
        raise DecodeError(f"{what}: expected a short string")
    return value


def _opt_text(value: Any, what: str) -> str | None:
    return None if value is None or value == "" else _text(value, what)


def _dec(value: Any, what: str) -> Decimal:
    """A non-negative decimal string (a JSON int is accepted too)."""
    if type(value) is int:
        value = str(value)
    return parse_decimal(check_decimal(value, what))


def _opt_dec(value: Any, what: str) -> Decimal | None:
    return None if value is None or value == "" else _dec(value, what)


def _signed_dec(value: Any, what: str) -> Decimal | None:
    if value is None or value == "":
        return None
    if type(value) is not str:
        raise DecodeError(f"{what}: expected a decimal string")
    neg = value.startswith("-")
    d = _dec(value[1:] if neg else value, what)
    return -d if neg else d


def _int(value: Any, what: str) -> int:
    if type(value) is str and value.isascii() and value.isdigit() and len(value) <= 19:
        value = int(value)
    try:
        return parse_int(value, lo=0, hi=_I64)
    except DecodeError as exc:
        raise DecodeError(f"{what}: {exc}") from None


def _obj(value: Any, what: str) -> dict[str, Any]:
    if type(value) is not dict:
        raise DecodeError(f"{what}: expected an object")
    return value


def _load(body: str | bytes) -> Any:
    check_json_depth(body, DEFAULT_MAX_JSON_DEPTH)  # gapless.venues.limits
    try:
        return _DECODER.decode(body)
    except (ValueError, RecursionError, TypeError) as exc:
        raise DecodeError(f"invalid JSON: {exc}") from None


def _guard(fn: Any, raw: Any) -> Any:
    try:
        return fn(raw)
    except DecodeError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, RecursionError) as exc:
        raise DecodeError(f"unexpected message shape: {type(exc).__name__}: {exc}") from None


# ------------------------------------------------------------------ WebSocket


Message = OrderChange | BalanceChange | p.Message


def decode(frame: str | bytes) -> Message:
    """One frame: a private message, or whatever :func:`protocol.decode` makes of it."""
    raw = _load(frame)
    if type(raw) is dict and raw.get("type") == "message":
        topic = raw.get("topic")
        if topic in (TOPIC_ORDERS, TOPIC_BALANCE):
            msg: Message = _guard(_private, raw)
            return msg
    return p.decode(frame)


def _private(raw: dict[str, Any]) -> OrderChange | BalanceChange:
    channel_type = raw.get("channelType")
    if channel_type is not None and channel_type != "private":
        raise DecodeError(f"private topic with channelType {str(channel_type)[:20]!r}")
    subject = raw.get("subject")
    data = _obj(raw["data"], "data")
    if raw["topic"] == TOPIC_ORDERS:
        if subject != "orderChange":
            raise DecodeError(f"unexpected subject {str(subject)[:40]!r} on {TOPIC_ORDERS}")
        return _order_change(data)
    if subject != "account.balance":
        raise DecodeError(f"unexpected subject {str(subject)[:40]!r} on {TOPIC_BALANCE}")
    return _balance(data)


def _order_change(d: dict[str, Any]) -> OrderChange:
    typ = _text(d["type"], "type")
    status = _text(d["status"], "status")
    if typ not in _ORDER_TYPES:
        raise DecodeError(f"unknown orderChange type {typ[:20]!r}")
    if status not in _ORDER_STATUSES:
        raise DecodeError(f"unknown orderChange status {status[:20]!r}")
    side = _opt_text(d.get("side"), "side")
    if side not in (None, "buy", "sell"):
        raise DecodeError("side must be buy or sell")
    liq = _opt_text(d.get("liquidity"), "liquidity")
    if liq not in (None, "maker", "taker"):
        raise DecodeError("liquidity must be maker or taker")
    return OrderChange(
        order_id=_text(d["orderId"], "orderId", 64),
        symbol=_text(d["symbol"], "symbol", 40),
        type=typ,
        status=status,
        ts_ns=_int(d["ts"], "ts"),
        client_oid=_opt_text(d.get("clientOid"), "clientOid"),
        side=side,
        order_type=_opt_text(d.get("orderType"), "orderType"),
        size=_opt_dec(d.get("size"), "size"),
        filled_size=_opt_dec(d.get("filledSize"), "filledSize"),
        remain_size=_opt_dec(d.get("remainSize"), "remainSize"),
        price=_opt_dec(d.get("price"), "price"),
        match_price=_opt_dec(d.get("matchPrice"), "matchPrice"),
        match_size=_opt_dec(d.get("matchSize"), "matchSize"),
        trade_id=_opt_text(d.get("tradeId"), "tradeId"),
        liquidity=liq,
    )


def _balance(d: dict[str, Any]) -> BalanceChange:
    total = _dec(d["total"], "total")
    available = _dec(d["available"], "available")
    hold = _dec(d["hold"], "hold")
    if available + hold != total:
        raise DecodeError("account.balance: available + hold != total")
    return BalanceChange(
        currency=_text(d["currency"], "currency", 20),
        total=total,
        available=available,
        hold=hold,
        time_ms=_int(d["time"], "time"),
        available_change=_signed_dec(d.get("availableChange"), "availableChange"),
        hold_change=_signed_dec(d.get("holdChange"), "holdChange"),
        relation_event=_opt_text(d.get("relationEvent"), "relationEvent"),
        relation_event_id=_opt_text(d.get("relationEventId"), "relationEventId"),
    )


def order_status(m: OrderChange, prev_status: str | None = None) -> str:
    """gapless status of an ``orderChange`` (§2.7).

    ``canceled`` → canceled; ``filled`` → filled; ``status: done`` otherwise
    → filled when nothing remains, else canceled; an open order with a filled
    size → partially_filled; else new."""
    if m.type == "canceled":
        return "canceled"
    if m.type == "filled":
        return "filled"
    if m.status == "done":
        if m.remain_size is not None and m.remain_size == 0 and m.filled_size:
            return "filled"
        return "canceled"
    if m.filled_size:
        return "partially_filled"
    if prev_status == "partially_filled":
        return prev_status
    return "new"


def rest_order_status(o: RestOrder) -> str:
    """gapless status of a REST order: active → new/partially_filled; closed →
    canceled when ``cancelExist`` or when part of the size was never dealt, else filled."""
    if o.is_active:
        return "partially_filled" if o.deal_size > 0 else "new"
    if o.cancel_exist:
        return "canceled"
    if o.size is not None and o.deal_size < o.size:
        return "canceled"
    return "filled"


# ------------------------------------------------------------------ REST


def _envelope(raw: Any) -> Any:
    """The ``data`` of a ``"200000"`` body, else a :class:`protocol.RestError`."""
    body = _obj(raw, "body")
    code = body.get("code")
    if type(code) is int:
        code = str(code)
    if type(code) is not str:
        raise DecodeError("REST body without a code")
    if code != p.SUCCESS_CODE:
        msg = body.get("msg", "")
        return p.RestError(code[:32], msg[:200] if type(msg) is str else "")
    return body.get("data")


def _rest_order(d: Any) -> RestOrder:
    d = _obj(d, "order")
    active = d["isActive"]
    cancel = d.get("cancelExist", False)
    if type(active) is not bool or type(cancel) is not bool:
        raise DecodeError("isActive/cancelExist must be booleans")
    side = _opt_text(d.get("side"), "side")
    if side not in (None, "buy", "sell"):
        raise DecodeError("side must be buy or sell")
    created = d.get("createdAt")
    return RestOrder(
        order_id=_text(d["id"], "id", 64),
        symbol=_text(d["symbol"], "symbol", 40),
        side=side,
        order_type=_opt_text(d.get("type"), "type"),
        price=_opt_dec(d.get("price"), "price"),
        size=_opt_dec(d.get("size"), "size"),
        deal_size=_dec(d.get("dealSize", "0"), "dealSize"),
        deal_funds=_opt_dec(d.get("dealFunds"), "dealFunds"),
        fee=_opt_dec(d.get("fee"), "fee"),
        client_oid=_opt_text(d.get("clientOid"), "clientOid"),
        is_active=active,
        cancel_exist=cancel,
        created_ms=None if created is None else _int(created, "createdAt"),
    )


def _orders_page(raw: Any) -> tuple[list[RestOrder], int, int] | p.RestError:
    data = _envelope(raw)
    if isinstance(data, p.RestError):
        return data
    data = _obj(data, "data")
    items = data["items"]
    if type(items) is not list:
        raise DecodeError("items is not a list")
    page = _int(data.get("currentPage", 1), "currentPage")
    total = _int(data.get("totalPage", 1), "totalPage")
    return [_rest_order(i) for i in items], page, total


def decode_orders_page(body: str | bytes) -> tuple[list[RestOrder], int, int] | p.RestError:
    """``GET /api/v1/orders`` → (orders, currentPage, totalPage)."""
    out: tuple[list[RestOrder], int, int] | p.RestError = _guard(_orders_page, _load(body))
    return out


def _order(raw: Any) -> RestOrder | p.RestError:
    data = _envelope(raw)
    if isinstance(data, p.RestError):
        return data
    return _rest_order(data)


def decode_order(body: str | bytes) -> RestOrder | p.RestError:
    """``GET /api/v1/orders/{orderId}``."""
    out: RestOrder | p.RestError = _guard(_order, _load(body))
    return out


def _accounts(raw: Any) -> list[RestAccount] | p.RestError:
    data = _envelope(raw)
    if isinstance(data, p.RestError):
        return data
    if type(data) is not list:
        raise DecodeError("accounts data is not a list")
    out = []
    for line in data:
        line = _obj(line, "account")
        if line.get("type", "trade") != "trade":
            continue
        out.append(
            RestAccount(
                currency=_text(line["currency"], "currency", 20),
                balance=_dec(line["balance"], "balance"),
                available=_dec(line["available"], "available"),
                holds=_dec(line["holds"], "holds"),
            )
        )
    return out


def decode_accounts(body: str | bytes) -> list[RestAccount] | p.RestError:
    """``GET /api/v1/accounts?type=trade``."""
    out: list[RestAccount] | p.RestError = _guard(_accounts, _load(body))
    return out
