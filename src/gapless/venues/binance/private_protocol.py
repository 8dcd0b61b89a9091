"""Binance WS API user data stream and signed REST answers, decoded (pure).

Wire shapes (protocols.md §3.9, §3.11):

- WS API response: ``{"id":ID,"status":S,"result":{..}|"error":{"code":C,"msg":M,
  "data":{"retryAfter":MS,"serverTime":MS}?},"rateLimits":[..]?}`` ->
  :class:`WsResponse`.
- User data event: ``{"subscriptionId":N,"event":{"e":TYPE,..}}`` ->
  :class:`UserEvent` whose ``event`` is :class:`ExecReport`
  (``executionReport``), :class:`AccountPosition` (``outboundAccountPosition``),
  :class:`BalanceDelta` (``balanceUpdate``), :class:`StreamTerminated`
  (``eventStreamTerminated``) or :class:`OtherEvent` (anything else, e.g.
  ``listStatus``, ``externalLockUpdate``: counted, not used).
- ``{"event":{"e":"serverShutdown","E":MS}}`` (§3.4, no subscription) ->
  :class:`ServerShutdown`.
- REST order objects (``GET /api/v3/openOrders``, ``GET /api/v3/order``) ->
  :class:`RestOrder`; ``GET /api/v3/account`` -> :class:`RestAccount`;
  error bodies ``{"code":C,"msg":M}`` (§3.11) -> :func:`rest_error`.

Every decoder raises :class:`~gapless.errors.DecodeError` for anything
malformed (wrong types, missing fields, non-finite numbers), never another
exception. Numbers are exact :class:`~decimal.Decimal` values.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import msgspec

from gapless.errors import DecodeError
from gapless.venues.limits import DEFAULT_MAX_JSON_DEPTH, check_json_depth
from gapless.venues.numbers import parse_decimal, parse_int

__all__ = [
    "STATUS_MAP",
    "AccountPosition",
    "BalanceDelta",
    "BalanceLine",
    "ExecReport",
    "OtherEvent",
    "RestAccount",
    "RestOrder",
    "ServerShutdown",
    "StreamTerminated",
    "UserEvent",
    "WsResponse",
    "decode",
    "decode_account",
    "decode_order",
    "decode_orders",
    "encode_request",
    "rest_error",
]

STATUS_MAP: dict[str, str] = {
    "NEW": "new",
    "PENDING_NEW": "pending_new",
    "PARTIALLY_FILLED": "partially_filled",
    "PENDING_CANCEL": "partially_filled",  # still open; refined by cum qty below
    "FILLED": "filled",
    "CANCELED": "canceled",
    "REJECTED": "canceled",  # gapless statuses have no "rejected": a closed, unfilled order
    "EXPIRED": "expired",
    "EXPIRED_IN_MATCH": "expired",
}
"""Binance order status ``X`` -> gapless :class:`~gapless.events.OrderUpdate` status."""

EXEC_MAP: dict[str, str] = {
    "NEW": "new",
    "TRADE": "trade",
    "CANCELED": "canceled",
    "EXPIRED": "expired",
    "REJECTED": "canceled",
    "REPLACED": "amended",
    "TRADE_PREVENTION": "expired",
    "AMENDMENT": "amended",
}

_MAX_MS = 2**53
_DECODER = msgspec.json.Decoder()


@dataclass(frozen=True, slots=True)
class WsResponse:
    req_id: int | str | None
    status: int
    result: Any
    error_code: int | None = None
    error_msg: str | None = None
    retry_after_ms: int | None = None


@dataclass(frozen=True, slots=True)
class ExecReport:
    symbol: str
    order_id: str
    cl_ord_id: str | None
    orig_cl_ord_id: str | None
    side: str
    order_type: str
    time_in_force: str | None
    qty: Decimal | None
    price: Decimal | None
    exec_type: str
    status: str
    reason: str | None
    last_qty: Decimal
    last_price: Decimal
    cum_qty: Decimal
    cum_quote: Decimal | None
    fee: Decimal
    fee_asset: str | None
    trade_id: int | None
    maker: bool
    event_ms: int
    trans_ms: int


@dataclass(frozen=True, slots=True)
class BalanceLine:
    asset: str
    free: Decimal
    locked: Decimal


@dataclass(frozen=True, slots=True)
class AccountPosition:
    event_ms: int
    update_ms: int
    lines: tuple[BalanceLine, ...]


@dataclass(frozen=True, slots=True)
class BalanceDelta:
    asset: str
    delta: Decimal
    event_ms: int
    clear_ms: int


@dataclass(frozen=True, slots=True)
class StreamTerminated:
    event_ms: int


@dataclass(frozen=True, slots=True)
class OtherEvent:
    kind: str


@dataclass(frozen=True, slots=True)
class UserEvent:
    subscription_id: int
    event: ExecReport | AccountPosition | BalanceDelta | StreamTerminated | OtherEvent


@dataclass(frozen=True, slots=True)
class ServerShutdown:
    event_ms: int


@dataclass(frozen=True, slots=True)
class RestOrder:
    symbol: str
    order_id: str
    cl_ord_id: str | None
    side: str
    order_type: str
    qty: Decimal | None
    price: Decimal | None
    cum_qty: Decimal
    cum_quote: Decimal | None
    status: str  # gapless status
    update_ms: int | None


@dataclass(frozen=True, slots=True)
class RestAccount:
    update_ms: int | None
    lines: tuple[BalanceLine, ...]


def encode_request(method: str, req_id: int, params: dict[str, Any] | None = None) -> str:
    """A WS API request (§3.9): ``{"id":..,"method":..,"params":{..}}``."""
    body: dict[str, Any] = {"id": req_id, "method": method}
    if params is not None:
        body["params"] = params
    return msgspec.json.encode(body).decode()


def _load(data: str | bytes) -> Any:
    check_json_depth(data, DEFAULT_MAX_JSON_DEPTH)  # gapless.venues.limits
    try:
        return _DECODER.decode(data)
    except (msgspec.DecodeError, RecursionError, ValueError) as exc:
        raise DecodeError(f"invalid JSON: {str(exc)[:120]}") from None


def _str(obj: dict[str, Any], key: str, *, required: bool = True, limit: int = 200) -> str | None:
    v = obj.get(key)
    if v is None and not required:
        return None
    if type(v) is not str or len(v) > limit:
        raise DecodeError(f"field {key!r} must be a string")
    return v


def _req_str(obj: dict[str, Any], key: str) -> str:
    v = _str(obj, key)
    assert v is not None
    return v


def _ms(obj: dict[str, Any], key: str) -> int:
    return parse_int(obj.get(key), lo=0, hi=_MAX_MS)


def _dec(obj: dict[str, Any], key: str) -> Decimal:
    v = obj.get(key)
    if type(v) is not str:
        raise DecodeError(f"field {key!r} must be a decimal string")
    return parse_decimal(v)


def _opt_dec(obj: dict[str, Any], key: str) -> Decimal | None:
    if obj.get(key) is None:
        return None
    return _dec(obj, key)


def _status(raw: str) -> str:
    status = STATUS_MAP.get(raw)
    if status is None:
        raise DecodeError(f"unknown order status {raw[:40]!r}")
    return status


def _order_id(obj: dict[str, Any], key: str) -> str:
    return str(parse_int(obj.get(key), lo=0, hi=2**63 - 1))


def _exec_report(ev: dict[str, Any]) -> ExecReport:
    status_raw = _req_str(ev, "X")
    status = _status(status_raw)
    exec_raw = _req_str(ev, "x")
    cum = _dec(ev, "z")
    if status_raw == "PENDING_CANCEL" and cum == 0:
        status = "new"
    side = _req_str(ev, "S").lower()
    if side not in ("buy", "sell"):
        raise DecodeError(f"unknown side {side[:20]!r}")
    price = _opt_dec(ev, "p")
    otype = _req_str(ev, "o")
    tid_raw = ev.get("t")
    trade_id = None
    if tid_raw is not None:
        tid = parse_int(tid_raw, lo=-1, hi=2**63 - 1)
        trade_id = tid if tid >= 0 else None
    maker = ev.get("m", False)
    if type(maker) is not bool:
        raise DecodeError("field 'm' must be a boolean")
    event_ms = _ms(ev, "E")
    trans_ms = _ms(ev, "T") if ev.get("T") is not None else event_ms
    reason = _str(ev, "r", required=False)
    return ExecReport(
        symbol=_req_str(ev, "s"),
        order_id=_order_id(ev, "i"),
        cl_ord_id=_str(ev, "c", required=False) or None,
        orig_cl_ord_id=_str(ev, "C", required=False) or None,
        side=side,
        order_type=otype.lower() if otype != "LIMIT_MAKER" else "limit",
        time_in_force=_str(ev, "f", required=False),
        qty=_opt_dec(ev, "q"),
        price=price if price else None,
        exec_type=EXEC_MAP.get(exec_raw, exec_raw.lower()[:40]),
        status=status,
        reason=None if reason in (None, "NONE") else reason,
        last_qty=_dec(ev, "l") if ev.get("l") is not None else Decimal(0),
        last_price=_dec(ev, "L") if ev.get("L") is not None else Decimal(0),
        cum_qty=cum,
        cum_quote=_opt_dec(ev, "Z"),
        fee=_dec(ev, "n") if ev.get("n") is not None else Decimal(0),
        fee_asset=_str(ev, "N", required=False),
        trade_id=trade_id,
        maker=maker,
        event_ms=event_ms,
        trans_ms=trans_ms,
    )


def _lines(raw: Any, asset_key: str, free_key: str, locked_key: str) -> tuple[BalanceLine, ...]:
    if type(raw) is not list or len(raw) > 100_000:
        raise DecodeError("balances must be a list")
    out: list[BalanceLine] = []
    for item in raw:
        if type(item) is not dict:
            raise DecodeError("a balance line must be an object")
        out.append(
            BalanceLine(
                asset=_req_str(item, asset_key),
                free=_dec(item, free_key),
                locked=_dec(item, locked_key),
            )
        )
    return tuple(out)


def _user_event(
    ev: dict[str, Any],
) -> ExecReport | AccountPosition | BalanceDelta | StreamTerminated | OtherEvent:
    kind = ev.get("e")
    if type(kind) is not str:
        raise DecodeError("event without a type 'e'")
    if kind == "executionReport":
        return _exec_report(ev)
    if kind == "outboundAccountPosition":
        return AccountPosition(
            event_ms=_ms(ev, "E"),
            update_ms=_ms(ev, "u") if ev.get("u") is not None else _ms(ev, "E"),
            lines=_lines(ev.get("B"), "a", "f", "l"),
        )
    if kind == "balanceUpdate":
        event_ms = _ms(ev, "E")
        return BalanceDelta(
            asset=_req_str(ev, "a"),
            delta=_dec(ev, "d"),
            event_ms=event_ms,
            clear_ms=_ms(ev, "T") if ev.get("T") is not None else event_ms,
        )
    if kind == "eventStreamTerminated":
        return StreamTerminated(event_ms=_ms(ev, "E") if ev.get("E") is not None else 0)
    return OtherEvent(kind[:40])


def decode(data: str | bytes) -> WsResponse | UserEvent | ServerShutdown:
    """One WS API frame (see the module docstring)."""
    obj = _load(data)
    if type(obj) is not dict:
        raise DecodeError("expected a JSON object")
    if "status" in obj:
        status = parse_int(obj.get("status"), lo=0, hi=999)
        req_id = obj.get("id")
        if req_id is not None and type(req_id) not in (int, str):
            raise DecodeError("bad response id")
        err = obj.get("error")
        if err is not None:
            if type(err) is not dict:
                raise DecodeError("error must be an object")
            code = parse_int(err.get("code"), lo=-(2**31), hi=2**31)
            msg = err.get("msg")
            retry: int | None = None
            data_obj = err.get("data")
            if type(data_obj) is dict and data_obj.get("retryAfter") is not None:
                retry = parse_int(data_obj.get("retryAfter"), lo=0, hi=_MAX_MS)
            return WsResponse(
                req_id, status, None, code, msg[:300] if type(msg) is str else None, retry
            )
        return WsResponse(req_id, status, obj.get("result"))
    ev = obj.get("event")
    if type(ev) is not dict:
        raise DecodeError("neither a response nor an event")
    sub = obj.get("subscriptionId")
    if sub is None:
        if ev.get("e") == "serverShutdown":
            return ServerShutdown(_ms(ev, "E"))
        raise DecodeError("event without subscriptionId")
    return UserEvent(parse_int(sub, lo=0, hi=2**31), _user_event(ev))


def rest_error(body: bytes) -> tuple[int, str] | None:
    """The §3.11 error body ``{"code":C,"msg":M}``, or None."""
    try:
        obj = _load(body)
    except DecodeError:
        return None
    if type(obj) is not dict or type(obj.get("code")) is not int:
        return None
    msg = obj.get("msg")
    return obj["code"], msg[:300] if type(msg) is str else ""


def _rest_order(obj: Any) -> RestOrder:
    if type(obj) is not dict:
        raise DecodeError("an order must be an object")
    side = _req_str(obj, "side").lower()
    if side not in ("buy", "sell"):
        raise DecodeError("unknown side")
    otype = _req_str(obj, "type")
    status_raw = _req_str(obj, "status")
    cum = _dec(obj, "executedQty")
    status = _status(status_raw)
    if status_raw == "PENDING_CANCEL" and cum == 0:
        status = "new"
    price = _opt_dec(obj, "price")
    upd = obj.get("updateTime")
    return RestOrder(
        symbol=_req_str(obj, "symbol"),
        order_id=_order_id(obj, "orderId"),
        cl_ord_id=_str(obj, "clientOrderId", required=False) or None,
        side=side,
        order_type=otype.lower() if otype != "LIMIT_MAKER" else "limit",
        qty=_opt_dec(obj, "origQty"),
        price=price if price else None,
        cum_qty=cum,
        cum_quote=_opt_dec(obj, "cummulativeQuoteQty"),
        status=status,
        update_ms=None if upd is None else parse_int(upd, lo=0, hi=_MAX_MS),
    )


def decode_orders(body: bytes) -> list[RestOrder]:
    """``GET /api/v3/openOrders``: a list of order objects."""
    obj = _load(body)
    if type(obj) is not list:
        raise DecodeError("openOrders must answer a list")
    return [_rest_order(o) for o in obj]


def decode_order(body: bytes) -> RestOrder:
    """``GET /api/v3/order``: one order object."""
    return _rest_order(_load(body))


def decode_account(body: bytes) -> RestAccount:
    """``GET /api/v3/account``: ``updateTime`` and ``balances[{asset,free,locked}]``."""
    obj = _load(body)
    if type(obj) is not dict:
        raise DecodeError("account must be an object")
    upd = obj.get("updateTime")
    return RestAccount(
        update_ms=None if upd is None else parse_int(upd, lo=0, hi=_MAX_MS),
        lines=_lines(obj.get("balances"), "asset", "free", "locked"),
    )
