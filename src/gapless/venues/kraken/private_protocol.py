"""Kraken Spot WS v2 private channels and order methods, sans I/O (protocols.md §1.6, §1.10-1.13).

Encoders build the authenticated requests (the token goes inside ``params``,
§1.6); :func:`decode` classifies one frame of the ``ws-auth`` connection:

- ``executions`` / ``balances`` data (:class:`ExecutionsMsg`,
  :class:`BalancesMsg`) with their top-level ``sequence`` (§1.10);
- responses to ``add_order``, ``cancel_order``, ``cancel_all`` and
  ``cancel_all_orders_after`` (:class:`MethodResponse`; the last one answers
  in camelCase, §1.11);
- everything the public decoder knows (``status``, ``heartbeat``, ``pong``,
  subscribe acks) is delegated to :mod:`gapless.venues.kraken.protocol`.

The REST side (:func:`decode_rest`) unwraps Kraken's ``{"error":[...],
"result":{...}}`` envelope and turns ``OpenOrders``/``ClosedOrders``/
``QueryOrders`` order dicts into :class:`RestOrder`.

Amounts stay exact: numbers are decoded with ``float_hook=str`` and become
:class:`~decimal.Decimal` equal to the wire text. Every failure raises
:class:`~gapless.errors.DecodeError` and nothing else; error texts from the
venue are cut to 300 characters.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import msgspec

from gapless.errors import DecodeError
from gapless.venues.kraken import protocol as pub
from gapless.venues.limits import DEFAULT_MAX_JSON_DEPTH, check_json_depth
from gapless.venues.numbers import parse_decimal, parse_int

__all__ = [
    "PRIVATE_CHANNELS",
    "BalanceLine",
    "BalancesMsg",
    "ExecReport",
    "ExecutionsMsg",
    "LedgerEntry",
    "MethodResponse",
    "RestOrder",
    "decode",
    "decode_rest",
    "encode_add_order",
    "encode_cancel_after",
    "encode_cancel_all",
    "encode_cancel_order",
    "encode_private_subscribe",
    "encode_private_unsubscribe",
    "rest_orders",
]

PRIVATE_CHANNELS = ("executions", "balances")
ORDER_METHODS = frozenset({"add_order", "cancel_order", "cancel_all", "cancel_all_orders_after"})
#: §1.10 ``order_status`` values; REST statuses are mapped onto them.
ORDER_STATUSES = frozenset(
    {"pending_new", "new", "partially_filled", "filled", "canceled", "expired"}
)

_DECODER = msgspec.json.Decoder(float_hook=str)
_ENCODER = msgspec.json.Encoder()
_MAX_ITEMS = 10_000  # hostile-input bound on one message's data list

# --------------------------------------------------------------------- encoding


def _req(method: str, params: dict[str, Any], req_id: int) -> str:
    return _ENCODER.encode({"method": method, "params": params, "req_id": req_id}).decode()


def encode_private_subscribe(channel: str, token: str, req_id: int, **params: Any) -> str:
    """``{"method":"subscribe","params":{"channel":"executions","token":...}}`` (§1.6, §1.10)."""
    return _req("subscribe", {"channel": channel, "token": token, **params}, req_id)


def encode_private_unsubscribe(channel: str, token: str, req_id: int) -> str:
    return _req("unsubscribe", {"channel": channel, "token": token}, req_id)


def _num(value: Decimal) -> msgspec.Raw:
    """A Decimal as a plain JSON number (never an exponent): the exact text."""
    text = format(value, "f")
    return msgspec.Raw(text.encode())


def encode_add_order(
    *,
    token: str,
    req_id: int,
    symbol: str,
    side: str,
    order_type: str,
    qty: Decimal,
    limit_price: Decimal | None = None,
    time_in_force: str | None = None,
    post_only: bool = False,
    cl_ord_id: str | None = None,
) -> str:
    """``add_order`` (protocols.md §1.10 field names); quantities as exact numbers."""
    params: dict[str, Any] = {
        "order_type": order_type,
        "side": side,
        "order_qty": _num(qty),
        "symbol": symbol,
    }
    if limit_price is not None:
        params["limit_price"] = _num(limit_price)
    if time_in_force is not None:
        params["time_in_force"] = time_in_force
    if post_only:
        params["post_only"] = True
    if cl_ord_id is not None:
        params["cl_ord_id"] = cl_ord_id
    params["token"] = token
    return _req("add_order", params, req_id)


def encode_cancel_order(
    *,
    token: str,
    req_id: int,
    order_ids: list[str] | None = None,
    cl_ord_ids: list[str] | None = None,
) -> str:
    params: dict[str, Any] = {}
    if order_ids:
        params["order_id"] = order_ids
    if cl_ord_ids:
        params["cl_ord_id"] = cl_ord_ids
    params["token"] = token
    return _req("cancel_order", params, req_id)


def encode_cancel_all(*, token: str, req_id: int) -> str:
    return _req("cancel_all", {"token": token}, req_id)


def encode_cancel_after(*, token: str, req_id: int, timeout_s: int) -> str:
    """§1.11: ``timeout`` in seconds, 0 switches the switch off, must be < 86400."""
    if not 0 <= timeout_s < 86_400:
        raise ValueError("cancel_all_orders_after timeout must be in [0, 86400)")
    return _req("cancel_all_orders_after", {"timeout": timeout_s, "token": token}, req_id)


# --------------------------------------------------------------------- messages


@dataclass(frozen=True, slots=True)
class ExecReport:
    """One ``executions`` item (§1.10). Fields absent on the wire are None."""

    order_id: str
    exec_type: str | None
    order_status: str | None
    symbol: str | None
    side: str | None
    order_type: str | None
    order_qty: Decimal | None
    limit_price: Decimal | None
    cum_qty: Decimal | None
    cum_cost: Decimal | None
    avg_price: Decimal | None
    cl_ord_id: str | None
    timestamp_ns: int | None
    exec_id: str | None = None
    trade_id: int | None = None
    last_qty: Decimal | None = None
    last_price: Decimal | None = None
    liquidity_ind: str | None = None
    fee: Decimal | None = None
    fee_asset: str | None = None
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class ExecutionsMsg:
    snapshot: bool
    sequence: int | None
    reports: tuple[ExecReport, ...]


@dataclass(frozen=True, slots=True)
class BalanceLine:
    """A ``balances`` snapshot item: the asset's total balance."""

    asset: str
    balance: Decimal


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """A ``balances`` update item: one ledger transaction (§1.10)."""

    asset: str
    amount: Decimal
    balance: Decimal
    fee: Decimal | None
    ledger_id: str | None
    ref_id: str | None
    kind: str | None
    timestamp_ns: int | None


@dataclass(frozen=True, slots=True)
class BalancesMsg:
    snapshot: bool
    sequence: int | None
    lines: tuple[BalanceLine, ...] = ()
    entries: tuple[LedgerEntry, ...] = ()


@dataclass(frozen=True, slots=True)
class MethodResponse:
    """Answer to an order method. ``result`` keeps only the fields we use."""

    method: str
    req_id: int | None
    success: bool
    error: str | None
    order_id: str | None = None
    cl_ord_id: str | None = None
    count: int | None = None
    trigger_ts_ns: int | None = None  # cancel_all_orders_after; None for "0" (off)
    time_out_ns: int | None = None


Message = pub.Message | ExecutionsMsg | BalancesMsg | MethodResponse

# --------------------------------------------------------------------- decoding


def decode(frame: str | bytes) -> Message:
    """Decode one frame of the auth connection. Raises only :class:`DecodeError`."""
    check_json_depth(frame, DEFAULT_MAX_JSON_DEPTH)
    try:
        raw = _DECODER.decode(frame)
    except (msgspec.DecodeError, RecursionError, UnicodeError) as exc:
        raise DecodeError(f"invalid JSON: {exc}") from None
    try:
        if type(raw) is dict:
            channel = raw.get("channel")
            if channel == "executions":
                return _decode_executions(raw)
            if channel == "balances":
                return _decode_balances(raw)
            method = raw.get("method")
            if method in ORDER_METHODS:
                return _decode_method(raw, method)
        return pub._classify(raw)
    except DecodeError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, RecursionError) as exc:
        raise DecodeError(f"unexpected message shape: {type(exc).__name__}: {exc}") from None


def _type(raw: dict[str, Any]) -> bool:
    typ = raw.get("type")
    if typ not in ("snapshot", "update"):
        raise DecodeError(f"type must be snapshot or update, got {typ!r:.40}")
    return bool(typ == "snapshot")


def _data(raw: dict[str, Any]) -> list[Any]:
    data = raw.get("data")
    if type(data) is not list:
        raise DecodeError("data must be a list")
    if len(data) > _MAX_ITEMS:
        raise DecodeError(f"data has {len(data)} items (limit {_MAX_ITEMS})")
    return data


def _seq(raw: dict[str, Any]) -> int | None:
    v = raw.get("sequence")
    return None if v is None else parse_int(v, hi=2**63 - 1)  # a signed 64-bit sequence


def _str(v: Any, what: str) -> str:
    if type(v) is not str or not v or len(v) > 200:
        raise DecodeError(f"{what} must be a non-empty string")
    return v


def _opt_dec(v: Any) -> Decimal | None:
    if v is None:
        return None
    if type(v) is str or type(v) is int:
        return parse_decimal(v)
    raise DecodeError(f"expected a number, got {type(v).__name__}")


def _opt_text(v: Any) -> str | None:
    if v is None:
        return None
    if type(v) is str:
        return v[:300]
    if type(v) is int:
        return str(v)
    raise DecodeError(f"expected a string, got {type(v).__name__}")


def _decode_report(item: Any) -> ExecReport:
    if type(item) is not dict:
        raise DecodeError("execution report must be an object")
    status = _opt_text(item.get("order_status"))
    if status is not None and status not in ORDER_STATUSES:
        raise DecodeError(f"unknown order_status {status!r:.40}")
    ts = item.get("timestamp")
    fee = fee_asset = None
    fees = item.get("fees")
    if type(fees) is list and fees:
        first = fees[0]
        if type(first) is not dict:
            raise DecodeError("fees items must be objects")
        fee = _opt_dec(first.get("qty"))
        fee_asset = _opt_text(first.get("asset"))
        for extra in fees[1:8]:
            if type(extra) is dict and fee is not None and extra.get("asset") == fee_asset:
                more = _opt_dec(extra.get("qty"))
                fee = fee + more if more is not None else fee
    trade_id = item.get("trade_id")
    return ExecReport(
        order_id=_str(item.get("order_id"), "order_id"),
        exec_type=_opt_text(item.get("exec_type")),
        order_status=status,
        symbol=_opt_text(item.get("symbol")),
        side=_opt_text(item.get("side")),
        order_type=_opt_text(item.get("order_type")),
        order_qty=_opt_dec(item.get("order_qty")),
        limit_price=_opt_dec(item.get("limit_price")),
        cum_qty=_opt_dec(item.get("cum_qty")),
        cum_cost=_opt_dec(item.get("cum_cost")),
        avg_price=_opt_dec(item.get("avg_price")),
        cl_ord_id=_opt_text(item.get("cl_ord_id")),
        timestamp_ns=None if ts is None else pub.parse_rfc3339_ns(ts),
        exec_id=_opt_text(item.get("exec_id")),
        trade_id=None if trade_id is None else parse_int(trade_id, hi=2**63 - 1),
        last_qty=_opt_dec(item.get("last_qty")),
        last_price=_opt_dec(item.get("last_price")),
        liquidity_ind=_opt_text(item.get("liquidity_ind")),
        fee=fee,
        fee_asset=fee_asset,
        reason=_opt_text(item.get("reason")),
    )


def _decode_executions(raw: dict[str, Any]) -> ExecutionsMsg:
    snapshot = _type(raw)
    reports = tuple(_decode_report(item) for item in _data(raw))
    return ExecutionsMsg(snapshot=snapshot, sequence=_seq(raw), reports=reports)


def _decode_balances(raw: dict[str, Any]) -> BalancesMsg:
    snapshot = _type(raw)
    data = _data(raw)
    if snapshot:
        lines = []
        for item in data:
            if type(item) is not dict:
                raise DecodeError("balance item must be an object")
            bal = _opt_dec(item.get("balance"))
            if bal is None:
                raise DecodeError("balance snapshot item without balance")
            lines.append(BalanceLine(_str(item.get("asset"), "asset"), bal))
        return BalancesMsg(snapshot=True, sequence=_seq(raw), lines=tuple(lines))
    entries = []
    for item in data:
        if type(item) is not dict:
            raise DecodeError("ledger entry must be an object")
        amount = _opt_dec(item.get("amount"))
        bal = _opt_dec(item.get("balance"))
        if amount is None or bal is None:
            raise DecodeError("ledger entry without amount or balance")
        ts = item.get("timestamp")
        entries.append(
            LedgerEntry(
                asset=_str(item.get("asset"), "asset"),
                amount=amount,
                balance=bal,
                fee=_opt_dec(item.get("fee")),
                ledger_id=_opt_text(item.get("ledger_id")),
                ref_id=_opt_text(item.get("ref_id")),
                kind=_opt_text(item.get("type")),
                timestamp_ns=None if ts is None else pub.parse_rfc3339_ns(ts),
            )
        )
    return BalancesMsg(snapshot=False, sequence=_seq(raw), entries=tuple(entries))


def _decode_method(raw: dict[str, Any], method: str) -> MethodResponse:
    success = raw.get("success")
    if type(success) is not bool:
        raise DecodeError(f"{method} response without boolean success")
    req = raw.get("req_id")
    error = raw.get("error")
    out = MethodResponse(
        method=method,
        req_id=None if req is None else parse_int(req),
        success=success,
        error=None if error is None else str(error)[:300],
        time_out_ns=None if raw.get("time_out") is None else pub.parse_rfc3339_ns(raw["time_out"]),
    )
    result = raw.get("result")
    if not success or type(result) is not dict:
        return out
    order_id = result.get("order_id")
    if type(order_id) is list:  # cancel_order may echo a list
        order_id = order_id[0] if order_id else None
    trigger = result.get("triggerTime")
    trigger_ns = None
    if type(trigger) is str and trigger not in ("0", ""):
        trigger_ns = pub.parse_rfc3339_ns(trigger)
    count = result.get("count")
    return MethodResponse(
        method=method,
        req_id=out.req_id,
        success=True,
        error=None,
        order_id=_opt_text(order_id),
        cl_ord_id=_opt_text(result.get("cl_ord_id")),
        count=None if count is None else parse_int(count),
        trigger_ts_ns=trigger_ns,
        time_out_ns=out.time_out_ns,
    )


# --------------------------------------------------------------------- REST


@dataclass(frozen=True, slots=True)
class RestOrder:
    """An order as ``QueryOrders``/``ClosedOrders``/``OpenOrders`` describe it,
    mapped onto the WebSocket vocabulary (``status`` is an §1.10 order_status)."""

    order_id: str
    status: str
    symbol: str | None
    side: str | None
    order_type: str | None
    qty: Decimal | None
    cum_qty: Decimal
    cum_cost: Decimal | None
    avg_price: Decimal | None
    limit_price: Decimal | None
    fee: Decimal | None
    cl_ord_id: str | None
    close_ts_ns: int | None
    open_ts_ns: int | None
    reason: str | None


def decode_rest(body: bytes) -> dict[str, Any]:
    """The ``result`` object of a REST answer; raises :class:`DecodeError` with the
    venue's error text (``EAPI:Invalid nonce``...) when ``error`` is not empty."""
    check_json_depth(body, DEFAULT_MAX_JSON_DEPTH)
    try:
        raw = _DECODER.decode(body)
    except (msgspec.DecodeError, RecursionError, UnicodeError) as exc:
        raise DecodeError(f"invalid JSON: {exc}") from None
    if type(raw) is not dict:
        raise DecodeError("REST answer is not an object")
    errors = raw.get("error")
    if type(errors) is list and errors:
        raise DecodeError("; ".join(str(e)[:120] for e in errors[:5]))
    result = raw.get("result")
    if type(result) is not dict:
        raise DecodeError("REST answer without a result object")
    return result


_REST_STATUS = {
    "pending": "pending_new",
    "closed": "filled",
    "canceled": "canceled",
    "expired": "expired",
}


def _epoch_ns(v: Any) -> int | None:
    if v is None or v == 0 or v == "0":
        return None
    dec = _opt_dec(v)
    return None if dec is None else int(dec * 1_000_000_000)


def rest_order(order_id: str, item: Any) -> RestOrder:
    if type(item) is not dict:
        raise DecodeError("REST order must be an object")
    status_raw = _opt_text(item.get("status"))
    vol = _opt_dec(item.get("vol"))
    vol_exec = _opt_dec(item.get("vol_exec")) or Decimal(0)
    if status_raw == "open":
        status = "partially_filled" if vol_exec > 0 else "new"
    elif status_raw in _REST_STATUS:
        status = _REST_STATUS[status_raw]
    else:
        raise DecodeError(f"unknown REST order status {status_raw!r:.40}")
    descr = item.get("descr")
    descr = descr if type(descr) is dict else {}
    price = _opt_dec(item.get("price"))
    return RestOrder(
        order_id=_str(order_id, "txid"),
        status=status,
        symbol=_opt_text(descr.get("pair")),
        side=_opt_text(descr.get("type")),
        order_type=_opt_text(descr.get("ordertype")),
        qty=vol,
        cum_qty=vol_exec,
        cum_cost=_opt_dec(item.get("cost")),
        avg_price=price if price else None,
        limit_price=_opt_dec(descr.get("price")) or None,
        fee=_opt_dec(item.get("fee")),
        cl_ord_id=_opt_text(item.get("cl_ord_id")),
        close_ts_ns=_epoch_ns(item.get("closetm")),
        open_ts_ns=_epoch_ns(item.get("opentm")),
        reason=_opt_text(item.get("reason")),
    )


def rest_orders(result: dict[str, Any], key: str | None) -> list[RestOrder]:
    """Orders of a REST result: ``result[key]`` (``open``/``closed``) or, for
    ``QueryOrders`` (``key`` None), the result itself."""
    table = result.get(key) if key is not None else result
    if type(table) is not dict:
        raise DecodeError(f"REST result has no {key or 'orders'} object")
    if len(table) > _MAX_ITEMS:
        raise DecodeError(f"REST result has {len(table)} orders (limit {_MAX_ITEMS})")
    return [rest_order(txid, item) for txid, item in table.items()]
