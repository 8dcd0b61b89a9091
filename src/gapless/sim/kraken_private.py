"""Kraken Spot private side of the simulator: REST, WS v2 private channels and order methods.

Owned by :class:`gapless.sim.kraken.KrakenSim` (one :class:`KrakenPrivate`
per simulator); accounts and matching live in :mod:`gapless.sim.accounts`.
An independent implementation of protocols.md §1.5, §1.6, §1.10, §1.11,
§1.13 and §5 item 4; it imports nothing from the gapless client.

Endpoints
=========

* ``ws://host:port/v2-auth`` (:attr:`KrakenSim.auth_url`): the private
  endpoint. Private channels and order methods are accepted only on
  connections opened on this path; on any other path they are answered
  ``EGeneral:Permission denied``. Public channels work on both paths.
* ``http://host:port`` (:attr:`KrakenSim.rest_url`): plain HTTP/1.1 on the
  same port (the websockets ``process_request`` hook answers every request
  without ``Upgrade: websocket``; :func:`install_body_parser` lets it read a
  ``Content-Length`` body of up to 64 KiB). Every response
  is ``Content-Type: application/json`` with ``Connection: close`` and the
  envelope ``{"error":[...],"result":{...}}`` (``result`` absent on error).

REST (protocols.md §1.6)
=======================

Private calls are ``POST /0/private/<Method>`` with a form-encoded body that
contains ``nonce``, headers ``API-Key`` and ``API-Sign``. Checks, in order:
unknown key -> ``EAPI:Invalid key``; missing or non-integer nonce ->
``EAPI:Invalid nonce``; signature (``HMAC-SHA512(b64decode(secret), path +
SHA256(nonce + body))``, :func:`kraken_signature`) -> ``EAPI:Invalid
signature``; nonce not strictly greater than the last accepted one of that
key -> ``EAPI:Invalid nonce``; system status ``maintenance`` ->
``EService:Unavailable``. Errors are HTTP 200 with the envelope (as Kraken
does); an unknown path is HTTP 404 ``EGeneral:Unknown method``, a non-POST
private call HTTP 405 ``EGeneral:Invalid arguments:method``.

==============================  ==========================================================
``GetWebSocketsToken``          ``{"token": <43 url-safe chars>, "expires": 900}``
``Balance``                     ``{"USD": "1000000.0000", "BTC": "10.0000000000", ..}``
``BalanceEx``                   ``{"USD": {"balance": "..", "hold_trade": ".."}, ..}``
``OpenOrders``                  ``{"open": {txid: order}}``
``ClosedOrders``                ``start`` (epoch s, float ok), ``end`` optional:
                                ``{"closed": {txid: order}, "count": n}``, newest first,
                                no paging (every match is returned)
``QueryOrders``                 ``txid`` (comma separated, <= 50): ``{txid: order}``;
                                an unknown id -> ``EOrder:Unknown order``
``GET /0/public/SystemStatus``  ``{"status": <system>, "timestamp": RFC3339}`` (no auth)
==============================  ==========================================================

REST order shape: ``status`` (open | closed | canceled | expired; ``pending``
is never produced), ``opentm`` (epoch seconds, JSON number with 6 decimals),
``closetm`` (only once closed), ``vol``, ``vol_exec``, ``cost``, ``fee``,
``price`` (average fill price), ``descr`` {``pair``, ``type``, ``ordertype``,
``price``, ``order``}, ``cl_ord_id`` (null if none), ``reason`` (null if
none), ``oflags`` ("post" for post-only, else ""). **Deviations**:
``descr.pair`` is the WS v2 symbol (``BTC/USD``), not Kraken's REST altname,
and asset names (``Balance``) are WS v2 names (``BTC``, ``USD``), not
``XXBT``/``ZUSD``. Amounts are decimal strings: ``vol``/``vol_exec`` at the
pair's qty precision, ``price``/``descr.price`` at its price precision,
``cost``/``fee`` at its ``cost_precision`` (half-even), balances at the
asset precision (4 for USD/EUR/GBP, 10 otherwise, as the ``instrument``
channel says).

Tokens (protocols.md §1.6, §5 item 4)
=====================================

A token can be used for a private subscribe or an order method if it was
created less than ``token_ttl_s`` (900 s) ago on the simulator's exchange
clock, **or** it already made a successful private subscribe on this
connection (then it stays valid for the life of that connection). Otherwise
the request fails with ``ESession:Invalid session``. The token's account is
the account the order methods act on.

WS private channels (protocols.md §1.5, §1.10)
==============================================

``subscribe`` ``executions`` (``token``, ``snap_orders`` [true],
``snap_trades`` [false], ``order_status`` [true, accepted, no effect: no
intermediate status transitions are produced]) and ``balances`` (``token``,
``snapshot`` [true]). ``unsubscribe`` takes the same ``channel`` + ``token``.
Acks have the public-channel shape::

    {"method":"subscribe","result":{"channel":"executions","maxratecount":125,
     "snap_orders":true,"snap_trades":false},"success":true,"time_in":"..","time_out":"..",
     "req_id":1}
    {"method":"subscribe","result":{"channel":"balances","snapshot":true},"success":true,..}

Errors: ``EGeneral:Permission denied`` (not on /v2-auth), ``ESession:Invalid
session``, ``Already subscribed``, ``Subscription Not Found``,
``EGeneral:Invalid arguments:<param>``.

Every private message carries a top-level ``sequence``: a per-subscription
counter, 1 for the snapshot, +1 per message. A snapshot is sent only when
asked for (``snap_orders`` or ``snap_trades`` for executions; then ``data``
lists open orders oldest first as ``exec_type`` "new" with their current
``order_status``, then the last 50 fills); without one the first update is
sequence 1. Every execution report and every ledger entry is its own message
(one ``data`` item), so the sequence counts records. Execution report (all
order fields in every report; the live venue sends sparser updates)::

    {"channel":"executions","type":"update","data":[{"order_id":"OABCDE-FGHIJ-KLMNOP",
     "cl_ord_id":"my-1","symbol":"BTC/USD","side":"buy","order_type":"limit",
     "order_qty":0.01000000,"limit_price":62100.0,"time_in_force":"GTC","post_only":false,
     "exec_type":"trade","order_status":"filled","cum_qty":0.01000000,"cum_cost":620.001,
     "avg_price":62000.1,"timestamp":"2024-05-01T12:00:00.123456Z","exec_id":"TABCDE-..",
     "trade_id":1012345678,"last_qty":0.01000000,"last_price":62000.1,"cost":620.001,
     "liquidity_ind":"t","fees":[{"asset":"USD","qty":1.6120}],"fee_usd_equiv":1.6120}],
     "sequence":3}

``exec_type``: ``new`` (accepted), ``trade`` (one per fill; ``order_status``
is the state after the fill), ``filled`` (after the completing fill, no fill
fields), ``canceled`` (with ``reason``: "User requested", "Immediate or
cancel", "Dead man's switch"). ``pending_new``/``expired`` are not produced.
``cl_ord_id`` appears only when the order has one, ``limit_price`` only on
limit orders, ``fee_usd_equiv`` only when the quote is USD. Numbers are JSON
numbers, plain decimal, never an exponent: quantities at the qty precision,
prices at the price precision, ``cost``/``cum_cost`` exact (trailing zeros
stripped), fees at the quote asset precision.

Balances::

    {"channel":"balances","type":"snapshot","data":[{"asset":"USD","asset_class":"currency",
     "balance":1000000.0000,"wallets":[{"type":"spot","id":"main","balance":1000000.0000}]},
     ..],"sequence":1}
    {"channel":"balances","type":"update","data":[{"ledger_id":"LABCDE-..",
     "ref_id":"TABCDE-..","timestamp":"..","type":"trade","subtype":"","category":"trade",
     "asset":"BTC","asset_class":"currency","wallet_type":"spot","wallet_id":"main",
     "amount":0.0100000000,"fee":0.0000000000,"balance":10.0100000000}],"sequence":2}

``balance`` is the total (held funds included). A fill yields two ledger
updates, base then quote, sharing ``ref_id`` = the fill's ``exec_id``
(Kraken's trade txid); each changes its asset's balance by ``amount - fee``.

WS order methods (protocols.md §1.11, §1.13)
============================================

Each needs a valid ``token`` in ``params``; ``req_id`` is echoed. Success:
``{"method":M,"req_id":R,"result":{..},"success":true,"time_in":..,"time_out":..}``;
failure: ``{"error":E,"method":M,"req_id":R,"success":false,"time_in":..,"time_out":..}``.

* ``add_order``: ``order_type`` limit|market, ``side``, ``order_qty``,
  ``symbol``, ``limit_price`` (limit), ``time_in_force`` gtc|ioc [gtc],
  ``post_only`` [false], ``cl_ord_id`` (<= 36 chars). Result
  ``{"order_id", "cl_ord_id"?}``; the ``executions`` updates follow the
  response. Rejections: see :mod:`gapless.sim.accounts` (``EOrder:Insufficient
  funds``, ``EOrder:Post only order``, ``EOrder:Order minimum not met``,
  ``EOrder:Cost minimum not met``, ``EQuery:Unknown asset pair``,
  ``EGeneral:Invalid arguments:<param>``, ``EOrder:Duplicate cl_ord_id``).
* ``cancel_order``: ``order_id`` or ``cl_ord_id`` (a list of strings, or one
  string): one response per id, ``{"order_id": ..}`` (plus ``cl_ord_id``
  when canceled by it), or ``EOrder:Unknown order`` for an id that is not open.
* ``cancel_all``: ``{"count": n}``.
* ``cancel_all_orders_after``: ``timeout`` int seconds, 0 disarms, must be <
  ``dms_max_timeout_s`` (86400). Result ``{"currentTime": "2024-05-01T12:00:00Z",
  "triggerTime": "2024-05-01T12:01:00Z" | "0"}`` (camelCase, whole seconds).

System status gate (§1.13): ``maintenance`` -> every order method fails
``EService:Unavailable``; ``cancel_only`` -> ``add_order`` fails
``EService:Market in cancel_only mode``; ``post_only`` -> only post-only limit
orders (``EService:Market in post_only mode``); ``limit_only`` -> market orders
fail ``EService:Market in limit_only mode``. In ``maintenance``,
``cancel_only`` and ``post_only`` public trades fill no resting order (no
matching, §1.4).

Dead man's switch (§1.11): checked every ``dms_check_interval_s`` by a task
of the simulator's TaskGroup, connected clients or not. When it fires the
account's open orders are canceled (updates to every subscribed connection,
truth records) and it stays off until armed again. While the system is in
``maintenance`` it does not fire; an expired switch fires when the engine
comes back (§1.11).

Matching: every public trade the market generates is offered to the engine
(maker fills of resting orders at their limit price); marketable orders take
the public book's visible levels. The public book is never modified (see
:mod:`gapless.sim.accounts`).

Faults (parameters in :mod:`gapless.sim.faults`)
================================================

``token_expiry``: every token issued so far becomes invalid for new
subscribes and order methods on connections where it has not subscribed yet
(existing subscriptions keep working); with ``then_close`` [True] every
/v2-auth connection is closed (1000, "token expired"), so a client has to
fetch a new token. ``private_sequence_jump``: the next update of ``channel``
on every connection subscribed to it (or, when none is, on the next
subscription made) consumes a sequence number but is not sent: a real hole,
the state change happened. ``fill_while_disconnected``: every /v2-auth
connection is aborted, then (at once, while they are down) for every
account the ``cancel_some`` oldest open orders are canceled and ``fraction``
of every remaining resting order's remaining qty is filled at its limit
price (rounded down to the qty precision; 1.0 fills completely).

Ground truth (added to the records listed in :mod:`gapless.sim.kraken`)
=======================================================================

::

    {"k":"token","account":K,"ts_ns":N,"issued":I}      # no token text
    {"k":"order","account":K,"ts_ns":N,"order_id":O,"cl_ord_id":C|None,"exec_type":E,
     "status":S,"symbol":S,"side":D,"order_type":T,"qty":"..","limit_price":".."|None,
     "cum_qty":"..", + on fills "exec_id","trade_id","last_qty","last_price","liquidity",
     "fee"; + on cancels "reason"}
    {"k":"ledger","account":K,"ts_ns":N,"ledger_id":L,"ref_id":T,"asset":A,"amount":"..",
     "fee":"..","balance":".."}
    {"k":"dms_armed","account":K,"ts_ns":N,"timeout_s":T,"trigger_ns":N|None}
    {"k":"dms_fired","account":K,"ts_ns":N,"canceled":n}
    {"k":"private_skip","conn":CID,"channel":C,"sequence":n,"ts_ns":N}
    {"k":"final_order","account":K,"order_id":O,"status":..,"cum_qty":..,"symbol":..,
     "side":..,"qty":..,"limit_price":..}            # at quiesce, accounts with orders
    {"k":"final_balance","account":K,"balances":{asset: text}}
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import email.utils
import hashlib
import hmac
import json
import random
import string
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import parse_qs, urlsplit

from websockets.datastructures import MultipleValuesError
from websockets.exceptions import InvalidMessage
from websockets.http11 import Request, Response, parse_headers, parse_line
from websockets.protocol import CONNECTING, Protocol, State
from websockets.server import ServerProtocol

from gapless.sim.accounts import (
    DmsFired,
    ExecutionReport,
    Instrument,
    LedgerEntry,
    MatchingEngine,
    OrderRejected,
    OrderView,
    Record,
)
from gapless.sim.numbers import rfc3339_us

if TYPE_CHECKING:
    from gapless.sim.kraken import KrakenSim, _Conn

__all__ = [
    "ORDER_METHODS",
    "PRIVATE_CHANNELS",
    "HttpRequest",
    "KrakenPrivate",
    "PrivConn",
    "install_body_parser",
    "kraken_asset_precision",
    "kraken_signature",
    "verify_signature",
]

PRIVATE_CHANNELS = ("executions", "balances")
ORDER_METHODS = ("add_order", "cancel_order", "cancel_all", "cancel_all_orders_after")
AUTH_PATH = "/v2-auth"
MAX_RATE_COUNT = 125
"""§1.10: the executions ack's ``maxratecount`` (intermediate tier, as in the docs)."""

_FIAT = frozenset({"USD", "EUR", "GBP"})
_TOKEN_ALPHABET = string.ascii_letters + string.digits
_ID_ALPHABET = string.ascii_uppercase + string.digits
_REST_STATUS = {
    "new": "open",
    "partially_filled": "open",
    "filled": "closed",
    "canceled": "canceled",
    "expired": "expired",
}


def kraken_asset_precision(asset: str) -> int:
    """Decimals of an asset's balance: 4 for fiat, 10 otherwise (as ``instrument`` says)."""
    return 4 if asset in _FIAT else 10


# ------------------------------------------------------------------ signing


def kraken_signature(secret_b64: str, uri_path: str, nonce: str, postdata: str) -> str:
    """protocols.md §1.6 ``API-Sign``: base64(HMAC-SHA512(b64decode(secret),
    uri_path + SHA256(nonce + postdata)))."""
    inner = hashlib.sha256((nonce + postdata).encode("utf-8")).digest()
    mac = hmac.new(base64.b64decode(secret_b64), uri_path.encode("utf-8") + inner, hashlib.sha512)
    return base64.b64encode(mac.digest()).decode("ascii")


def verify_signature(secret_b64: str, uri_path: str, nonce: str, postdata: str, sign: str) -> bool:
    """Constant-time check of an ``API-Sign`` header against :func:`kraken_signature`."""
    try:
        expected = kraken_signature(secret_b64, uri_path, nonce, postdata)
    except (binascii.Error, ValueError):
        return False
    return hmac.compare_digest(expected.encode("ascii"), sign.encode("utf-8", "replace"))


# ------------------------------------------------------- HTTP with a body


@dataclass
class HttpRequest(Request):
    """A websockets :class:`Request` that also carries the request body."""

    body: bytes = b""


def _parse_request(
    read_line: Callable[[int, type[Exception]], Generator[None, None, bytes | bytearray]],
    read_exact: Callable[[int], Generator[None, None, bytearray]],
    max_body: int,
) -> Generator[None, None, HttpRequest]:
    """websockets' request parser, except that a ``Content-Length`` body is read."""
    request_line = yield from parse_line(read_line)
    raw_method, raw_path, raw_protocol = request_line.split(b" ", 2)
    if raw_protocol not in (b"HTTP/1.1", b"HTTP/1.0"):
        raise ValueError("unsupported protocol")
    headers = yield from parse_headers(read_line)
    if "Transfer-Encoding" in headers:
        raise NotImplementedError("transfer codings aren't supported")
    lengths = set(headers.get_all("Content-Length"))
    if len(lengths) > 1:
        raise ValueError("conflicting Content-Length")
    size = int(lengths.pop()) if lengths else 0
    if size < 0 or size > max_body:
        raise ValueError("request body too large")
    body = bytes((yield from read_exact(size))) if size else b""
    return HttpRequest(
        raw_path.decode("ascii"),
        headers,
        raw_method.decode("ascii"),
        raw_protocol.decode("ascii"),
        body=body,
    )


class _BodyServerProtocol(ServerProtocol):
    max_body: int = 65536

    def parse(self) -> Generator[None]:
        if self.state is CONNECTING:
            try:
                request = yield from _parse_request(
                    self.reader.read_line, self.reader.read_exact, self.max_body
                )
            except Exception as exc:
                self.handshake_exc = InvalidMessage("did not receive a valid HTTP request")
                self.handshake_exc.__cause__ = exc
                self.send_eof()
                self.parser = self.discard()
                next(self.parser)
                yield
                return
            self.events.append(request)
        yield from Protocol.parse(self)


def install_body_parser(protocol: ServerProtocol, max_body: int) -> None:
    """Make a fresh (no data received yet) websockets server protocol read request bodies,
    so REST ``POST`` calls with a form body can be served from ``process_request``."""
    protocol.__class__ = _BodyServerProtocol
    assert isinstance(protocol, _BodyServerProtocol)
    protocol.max_body = max_body
    old = protocol.parser
    protocol.parser = protocol.parse()
    next(protocol.parser)
    old.close()


# ---------------------------------------------------------------- numbers


def _n(d: Decimal) -> str:
    """A Decimal as JSON number text: plain notation, never an exponent, no ``-0``."""
    if d == 0:
        d = abs(d)
    return format(d, "f")


def _q(d: Decimal, prec: int) -> str:
    return _n(d.quantize(Decimal(1).scaleb(-prec), rounding=ROUND_HALF_EVEN))


def _exact(d: Decimal) -> str:
    text = _n(d)
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def _dump(obj: Any) -> str:
    """Compact JSON where Decimals become plain number text."""
    if isinstance(obj, Decimal):
        return _n(obj)
    if isinstance(obj, dict):
        return "{" + ",".join(f"{json.dumps(k)}:{_dump(v)}" for k, v in obj.items()) + "}"
    if isinstance(obj, list | tuple):
        return "[" + ",".join(_dump(v) for v in obj) + "]"
    return json.dumps(obj)


def _rfc3339_s(us: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(us // 1_000_000))


def _epoch_s(us: int) -> Decimal:
    return Decimal(us).scaleb(-6)


# ------------------------------------------------------------- wire items


def exec_item(r: ExecutionReport, precisions: dict[str, int]) -> str:
    """One ``executions`` data item (protocols.md §1.10)."""
    o = r.order
    inst = o.instrument
    pp, qp = inst.price_precision, inst.qty_precision
    parts = [f'"order_id":{json.dumps(o.order_id)}']
    if o.cl_ord_id is not None:
        parts.append(f'"cl_ord_id":{json.dumps(o.cl_ord_id)}')
    parts.append(f'"symbol":{json.dumps(inst.symbol)}')
    parts.append(f'"side":"{o.side}","order_type":"{o.order_type}"')
    parts.append(f'"order_qty":{_q(o.qty, qp)}')
    if o.limit_price is not None:
        parts.append(f'"limit_price":{_q(o.limit_price, pp)}')
    parts.append(
        f'"time_in_force":"{o.time_in_force}","post_only":{"true" if o.post_only else "false"}'
    )
    parts.append(f'"exec_type":"{r.exec_type}","order_status":"{o.status}"')
    parts.append(
        f'"cum_qty":{_q(o.cum_qty, qp)},"cum_cost":{_exact(o.cum_cost)},'
        f'"avg_price":{_q(o.avg_price, pp)},"timestamp":"{rfc3339_us(r.ts)}"'
    )
    f = r.fill
    if f is not None:
        fee = _q(f.fee, precisions[f.fee_asset])
        parts.append(
            f'"exec_id":{json.dumps(f.exec_id)},"trade_id":{f.trade_id},'
            f'"last_qty":{_q(f.qty, qp)},"last_price":{_q(f.price, pp)},'
            f'"cost":{_exact(f.cost)},"liquidity_ind":"{f.liquidity}",'
            f'"fees":[{{"asset":{json.dumps(f.fee_asset)},"qty":{fee}}}]'
        )
        if f.fee_asset == "USD":
            parts.append(f'"fee_usd_equiv":{fee}')
    if r.exec_type in ("canceled", "expired") and o.reason is not None:
        parts.append(f'"reason":{json.dumps(o.reason)}')
    return "{" + ",".join(parts) + "}"


def ledger_item(e: LedgerEntry, prec: int) -> str:
    """One ``balances`` update item: a ledger entry (protocols.md §1.10)."""
    return (
        f'{{"ledger_id":{json.dumps(e.ledger_id)},"ref_id":{json.dumps(e.ref_id)},'
        f'"timestamp":"{rfc3339_us(e.ts)}","type":{json.dumps(e.type)},"subtype":"",'
        f'"category":{json.dumps(e.type)},"asset":{json.dumps(e.asset)},'
        f'"asset_class":"currency","wallet_type":"spot","wallet_id":"main",'
        f'"amount":{_q(e.amount, prec)},"fee":{_q(e.fee, prec)},"balance":{_q(e.balance, prec)}}}'
    )


def balance_item(asset: str, total: Decimal, prec: int) -> str:
    b = _q(total, prec)
    return (
        f'{{"asset":{json.dumps(asset)},"asset_class":"currency","balance":{b},'
        f'"wallets":[{{"type":"spot","id":"main","balance":{b}}}]}}'
    )


def rest_order(o: OrderView, cost_precision: int) -> dict[str, Any]:
    """An order in Kraken REST shape (see the module docstring for the deviations)."""
    inst = o.instrument
    pp, qp = inst.price_precision, inst.qty_precision
    price = _q(o.limit_price, pp) if o.limit_price is not None else "0"
    qty = _q(o.qty, qp)
    how = f"limit {price}" if o.order_type == "limit" else "market"
    out: dict[str, Any] = {
        "refid": None,
        "cl_ord_id": o.cl_ord_id,
        "status": _REST_STATUS[o.status],
        "reason": o.reason,
        "opentm": _epoch_s(o.open_ts),
    }
    if o.close_ts is not None:
        out["closetm"] = _epoch_s(o.close_ts)
    out.update(
        {
            "starttm": 0,
            "expiretm": 0,
            "descr": {
                "pair": inst.symbol,
                "type": o.side,
                "ordertype": o.order_type,
                "price": price,
                "price2": "0",
                "leverage": "none",
                "order": f"{o.side} {qty} {inst.symbol} @ {how}",
                "close": "",
            },
            "vol": qty,
            "vol_exec": _q(o.cum_qty, qp),
            "cost": _q(o.cum_cost, cost_precision),
            "fee": _q(o.fee, cost_precision),
            "price": _q(o.avg_price, pp),
            "misc": "",
            "oflags": "post" if o.post_only else "",
        }
    )
    return out


# ----------------------------------------------------------- private side


@dataclass
class _Token:
    account: str
    created_us: int
    revoked: bool = False


@dataclass
class PrivSub:
    """One private subscription on one connection."""

    channel: str
    account: str
    seq: int = 0
    skip: int = 0


@dataclass
class PrivConn:
    """The private state of one connection (``_Conn.priv``)."""

    auth: bool = False
    subs: dict[str, PrivSub] = field(default_factory=dict)
    tokens: set[str] = field(default_factory=set)


def _decimal(v: Any) -> Decimal | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, Decimal | int):
        d = Decimal(v)
    elif isinstance(v, float):
        d = Decimal(repr(v))
    elif isinstance(v, str):
        try:
            d = Decimal(v)
        except InvalidOperation:
            return None
    else:
        return None
    return d if d.is_finite() else None


class KrakenPrivate:
    """Accounts, tokens, REST, private channels and order methods of one :class:`KrakenSim`."""

    def __init__(self, sim: KrakenSim) -> None:
        self.sim = sim
        cfg = sim.config
        pairs = sim._pairs
        assets = {a for p in pairs for a in (p.base, p.quote)}
        assets |= {a for spec in cfg.accounts for a in spec.balances}
        self.cost_precision = {p.symbol: p.cost_precision for p in pairs}
        self._id_rng = random.Random(f"{cfg.seed}:private:ids")
        self._token_rng = random.Random(f"{cfg.seed}:private:tokens")
        first_trade = random.Random(f"{cfg.seed}:private:trades").randrange(10**8)
        self.engine = MatchingEngine(
            [Instrument.from_pair(p) for p in pairs],
            {a: kraken_asset_precision(a) for a in sorted(assets)},
            self._new_id,
            self._book,
            accounts=cfg.accounts,
            maker_fee=cfg.maker_fee,
            taker_fee=cfg.taker_fee,
            first_trade_id=1_000_000_000 + first_trade,
            keep_closed=cfg.keep_closed_orders,
        )
        self.tokens: dict[str, _Token] = {}
        self.nonces: dict[str, int] = {}
        self.subscribers: dict[str, set[_Conn]] = {}
        self.pending_jumps: dict[str, int] = {}
        self.default_account: str | None = cfg.accounts[0].api_key if cfg.accounts else None

    # ------------------------------------------------------------ helpers

    def _new_id(self, kind: str) -> str:
        prefix = {"order": "O", "exec": "T", "ledger": "L"}.get(kind, "X")
        rng = self._id_rng
        chars = [rng.choice(_ID_ALPHABET) for _ in range(16)]
        return f"{prefix}{''.join(chars[:5])}-{''.join(chars[5:10])}-{''.join(chars[10:])}"

    def _book(
        self, symbol: str, side: Literal["bids", "asks"]
    ) -> Iterator[tuple[Decimal, Decimal]]:
        m = self.sim._syms[symbol].market
        book = m.bids if side == "bids" else m.asks
        pp, qp = -m.pp, -m.qp
        for p, q in book.iter_top(len(book)):
            yield Decimal(p).scaleb(pp), Decimal(q).scaleb(qp)

    def _now_us(self) -> int:
        return self.sim._peek_us()

    def _prec(self, asset: str) -> int:
        return self.engine.precisions[asset]

    def account_key(self, api_key: str | None) -> str:
        key = api_key if api_key is not None else self.default_account
        if key is None or key not in self.engine.accounts:
            raise KeyError(f"no simulated account {api_key!r}")
        return key

    def auth_conns(self) -> list[_Conn]:
        return [c for c in self.sim._conns if c.priv.auth]

    def token_valid(self, conn: _Conn, token: Any) -> _Token | None:
        """The §1.6 rule: fresh (< ``token_ttl_s``), or already subscribed on ``conn``."""
        if not isinstance(token, str):
            return None
        t = self.tokens.get(token)
        if t is None:
            return None
        if token in conn.priv.tokens:
            return t
        if t.revoked:
            return None
        if self._now_us() - t.created_us >= int(self.sim.config.token_ttl_s * 1_000_000):
            return None
        return t

    # --------------------------------------------------------------- REST

    def rest(self, connection: Any, request: Request) -> Response:
        """Answer one plain HTTP request (see the module docstring)."""
        sim = self.sim
        sim._stats.rest_requests += 1
        url = urlsplit(request.path)
        path = url.path
        if path == "/0/public/SystemStatus":
            ts = sim._ts()
            return self._json(
                connection, 200, {"status": sim._system, "timestamp": _rfc3339_s(ts)}, None
            )
        if path == "/0/public/Time":
            secs = sim._ts() // 1_000_000
            result = {"unixtime": secs, "rfc1123": email.utils.formatdate(secs, usegmt=True)}
            return self._json(connection, 200, result, None)
        route = _ROUTES.get(path)
        if route is None:
            return self._json(connection, 404, None, "EGeneral:Unknown method")
        if request.method.upper() != "POST":
            return self._json(connection, 405, None, "EGeneral:Invalid arguments:method")
        body = request.body if isinstance(request, HttpRequest) else b""
        try:
            postdata = body.decode("ascii")
            form = {k: v[-1] for k, v in parse_qs(postdata, keep_blank_values=True).items()}
            key = request.headers.get("API-Key", "")
            sign = request.headers.get("API-Sign", "")
        except (UnicodeDecodeError, MultipleValuesError, ValueError):
            return self._json(connection, 200, None, "EGeneral:Invalid arguments")
        acct = self.engine.accounts.get(key)
        if acct is None:
            return self._json(connection, 200, None, "EAPI:Invalid key")
        nonce_text = form.get("nonce", "")
        if not nonce_text.isdigit() or int(nonce_text) >= 2**64:
            return self._json(connection, 200, None, "EAPI:Invalid nonce")
        if not verify_signature(acct.spec.api_secret, path, nonce_text, postdata, sign):
            return self._json(connection, 200, None, "EAPI:Invalid signature")
        nonce = int(nonce_text)
        last = self.nonces.get(key)
        if last is not None and nonce <= last:
            return self._json(connection, 200, None, "EAPI:Invalid nonce")
        self.nonces[key] = nonce
        if sim._system == "maintenance":
            return self._json(connection, 200, None, "EService:Unavailable")
        try:
            result = route(self, key, form)
        except OrderRejected as exc:
            return self._json(connection, 200, None, exc.error)
        return self._json(connection, 200, result, None)

    def _json(self, connection: Any, status: int, result: Any, error: str | None) -> Response:
        obj: dict[str, Any] = {"error": [] if error is None else [error]}
        if error is None:
            obj["result"] = result
        response: Response = connection.respond(status, _dump(obj))
        del response.headers["Content-Type"]
        response.headers["Content-Type"] = "application/json"
        return response

    def _r_token(self, key: str, form: dict[str, str]) -> dict[str, Any]:
        sim = self.sim
        token = "".join(self._token_rng.choice(_TOKEN_ALPHABET) for _ in range(43))
        self.tokens[token] = _Token(key, self._now_us())
        sim._stats.tokens_issued += 1
        sim._truth.add(
            {
                "k": "token",
                "account": key,
                "ts_ns": sim._ts() * 1000,
                "issued": sim._stats.tokens_issued,
            }
        )
        return {"token": token, "expires": int(sim.config.token_ttl_s)}

    def _r_balance(self, key: str, form: dict[str, str]) -> dict[str, Any]:
        return {a: _q(v, self._prec(a)) for a, v in self.engine.balances(key).items()}

    def _r_balance_ex(self, key: str, form: dict[str, str]) -> dict[str, Any]:
        acct = self.engine.account(key)
        holds = acct.holds()
        return {
            a: {"balance": _q(v, self._prec(a)), "hold_trade": _q(holds[a], self._prec(a))}
            for a, v in acct.balances().items()
        }

    def _order(self, o: OrderView) -> dict[str, Any]:
        return rest_order(o, self.cost_precision.get(o.symbol, 5))

    def _r_open(self, key: str, form: dict[str, str]) -> dict[str, Any]:
        return {"open": {o.order_id: self._order(o) for o in self.engine.snapshot_orders(key)}}

    def _r_closed(self, key: str, form: dict[str, str]) -> dict[str, Any]:
        start = _decimal(form.get("start", "0"))
        end = _decimal(form["end"]) if "end" in form else None
        if start is None or ("end" in form and end is None):
            raise OrderRejected("EGeneral:Invalid arguments:start")
        start_us = int(start * 1_000_000)
        end_us = None if end is None else int(end * 1_000_000)
        closed = [
            o
            for o in self.engine.final_orders(key).values()
            if o.close_ts is not None
            and o.close_ts >= start_us
            and (end_us is None or o.close_ts <= end_us)
        ]
        closed.sort(key=lambda o: o.close_ts or 0, reverse=True)
        return {"closed": {o.order_id: self._order(o) for o in closed}, "count": len(closed)}

    def _r_query(self, key: str, form: dict[str, str]) -> dict[str, Any]:
        ids = [t for t in form.get("txid", "").split(",") if t]
        if not ids or len(ids) > 50:
            raise OrderRejected("EGeneral:Invalid arguments:txid")
        out: dict[str, Any] = {}
        for oid in ids:
            o = self.engine.order(key, oid)
            if o is None:
                raise OrderRejected("EOrder:Unknown order")
            out[oid] = self._order(o)
        return out

    # ------------------------------------------------------------ WS: subs

    def on_subscription(
        self, conn: _Conn, method: str, params: dict[str, Any], req_id: int | None, time_in: int
    ) -> None:
        sim = self.sim
        channel = str(params.get("channel"))
        if not conn.priv.auth:
            sim._error(conn, method, req_id, "EGeneral:Permission denied", time_in)
            return
        token = params.get("token")
        tok = self.token_valid(conn, token)
        if tok is None:
            sim._error(conn, method, req_id, "ESession:Invalid session", time_in)
            return
        assert isinstance(token, str)
        key = ("executions" if channel == "executions" else "balances", "", 0)
        if method == "unsubscribe":
            sub = conn.priv.subs.get(channel)
            if sub is None:
                sim._error(conn, method, req_id, "Subscription Not Found", time_in)
                return
            self._remove_sub(conn, sub)
            conn.subs.discard(key)
            t = sim._ack(conn, method, {"channel": channel}, req_id, time_in)
            self._truth_ack(conn, channel, t)
            return
        if channel in conn.priv.subs:
            sim._error(conn, method, req_id, "Already subscribed", time_in)
            return
        opts: dict[str, bool] = {}
        names = (
            (("snap_orders", True), ("snap_trades", False), ("order_status", True))
            if channel == "executions"
            else (("snapshot", True),)
        )
        for name, default in names:
            v = params.get(name, default)
            if not isinstance(v, bool):
                sim._error(conn, method, req_id, f"EGeneral:Invalid arguments:{name}", time_in)
                return
            opts[name] = v
        conn.priv.tokens.add(token)
        sub = PrivSub(channel, tok.account)
        if self.pending_jumps.get(channel):
            self.pending_jumps[channel] -= 1
            sub.skip = 1
        conn.priv.subs[channel] = sub
        conn.subs.add(key)  # heartbeats flow while any channel is subscribed (§1.3)
        self.subscribers.setdefault(tok.account, set()).add(conn)
        if channel == "executions":
            result: dict[str, Any] = {
                "channel": channel,
                "maxratecount": MAX_RATE_COUNT,
                "snap_orders": opts["snap_orders"],
                "snap_trades": opts["snap_trades"],
            }
        else:
            result = {"channel": channel, "snapshot": opts["snapshot"]}
        t = sim._ack(conn, method, result, req_id, time_in)
        self._truth_ack(conn, channel, t)
        items: list[str] = []
        if channel == "executions":
            if not (opts["snap_orders"] or opts["snap_trades"]):
                return
            if opts["snap_orders"]:
                for o in self.engine.snapshot_orders(tok.account):
                    rep = ExecutionReport(tok.account, "new", o, o.last_ts)
                    items.append(exec_item(rep, self.engine.precisions))
            if opts["snap_trades"]:
                for rep in self.engine.recent_fills(tok.account):
                    items.append(exec_item(rep, self.engine.precisions))
        else:
            if not opts["snapshot"]:
                return
            for asset, total in self.engine.balances(tok.account).items():
                items.append(balance_item(asset, total, self._prec(asset)))
        sub.seq += 1
        self._send(conn, channel, "snapshot", ",".join(items), sub.seq)

    def _truth_ack(self, conn: _Conn, channel: str, t: int) -> None:
        self.sim._truth.add(
            {
                "k": "ack",
                "conn": conn.cid,
                "channel": channel,
                "symbol": None,
                "depth": None,
                "ts_ns": t * 1000,
            }
        )

    def _remove_sub(self, conn: _Conn, sub: PrivSub) -> None:
        conn.priv.subs.pop(sub.channel, None)
        if not any(s.account == sub.account for s in conn.priv.subs.values()):
            self.subscribers.get(sub.account, set()).discard(conn)

    def drop_conn(self, conn: _Conn) -> None:
        for sub in list(conn.priv.subs.values()):
            self._remove_sub(conn, sub)

    def _send(self, conn: _Conn, channel: str, kind: str, items: str, seq: int) -> None:
        self.sim._stats.private_messages += 1
        self.sim._send(
            conn,
            f'{{"channel":"{channel}","type":"{kind}","data":[{items}],"sequence":{seq}}}',
        )

    # --------------------------------------------------------- WS: methods

    def on_method(
        self, conn: _Conn, method: str, params: Any, req_id: int | None, time_in: int
    ) -> None:
        sim = self.sim
        if not conn.priv.auth:
            sim._error(conn, method, req_id, "EGeneral:Permission denied", time_in)
            return
        if not isinstance(params, dict):
            params = {}
        tok = self.token_valid(conn, params.get("token"))
        if tok is None:
            sim._error(conn, method, req_id, "ESession:Invalid session", time_in)
            return
        gate = self._gate(method, params)
        if gate is not None:
            sim._error(conn, method, req_id, gate, time_in)
            return
        account = tok.account
        if method == "add_order":
            self._add_order(conn, account, params, req_id, time_in)
        elif method == "cancel_order":
            self._cancel_order(conn, account, params, req_id, time_in)
        elif method == "cancel_all":
            count, records = self.engine.cancel_all(account, sim._ts())
            self._result(conn, method, req_id, {"count": count}, time_in)
            self.emit(records)
        else:
            self._cancel_after(conn, account, params, req_id, time_in)

    def _gate(self, method: str, params: dict[str, Any]) -> str | None:
        """protocols.md §1.13: which order methods the system status refuses."""
        system = self.sim._system
        if system == "maintenance":
            return "EService:Unavailable"
        if method != "add_order":
            return None
        if system == "cancel_only":
            return "EService:Market in cancel_only mode"
        if system == "post_only" and not (
            params.get("order_type") == "limit" and params.get("post_only") is True
        ):
            return "EService:Market in post_only mode"
        if system == "limit_only" and params.get("order_type") == "market":
            return "EService:Market in limit_only mode"
        return None

    def _result(
        self, conn: _Conn, method: str, req_id: int | None, result: dict[str, Any], time_in: int
    ) -> None:
        out: dict[str, Any] = {"method": method}
        if req_id is not None:
            out["req_id"] = req_id
        out["result"] = result
        out["success"] = True
        out["time_in"] = rfc3339_us(time_in)
        out["time_out"] = rfc3339_us(self.sim._ts())
        self.sim._send(conn, json.dumps(out, separators=(",", ":")))

    def _add_order(
        self, conn: _Conn, account: str, p: dict[str, Any], req_id: int | None, time_in: int
    ) -> None:
        sim = self.sim
        method = "add_order"

        def bad(name: str) -> None:
            sim._stats.orders_rejected += 1
            sim._error(conn, method, req_id, f"EGeneral:Invalid arguments:{name}", time_in)

        for name in ("symbol", "side", "order_type"):
            if not isinstance(p.get(name), str):
                bad(name)
                return
        qty = _decimal(p.get("order_qty"))
        if qty is None:
            bad("order_qty")
            return
        limit = None
        if "limit_price" in p:
            limit = _decimal(p["limit_price"])
            if limit is None:
                bad("limit_price")
                return
        tif = p.get("time_in_force", "gtc")
        if not isinstance(tif, str):
            bad("time_in_force")
            return
        post_only = p.get("post_only", False)
        if not isinstance(post_only, bool):
            bad("post_only")
            return
        cl = p.get("cl_ord_id")
        if cl is not None and (not isinstance(cl, str) or not 0 < len(cl) <= 36):
            bad("cl_ord_id")
            return
        try:
            view, records = self.engine.add_order(
                account,
                symbol=p["symbol"],
                side=p["side"],
                order_type=p["order_type"],
                qty=qty,
                limit_price=limit if p["order_type"] == "limit" else None,
                time_in_force=tif,
                post_only=post_only,
                cl_ord_id=cl,
                ts=sim._ts(),
            )
        except OrderRejected as exc:
            sim._stats.orders_rejected += 1
            sim._error(conn, method, req_id, exc.error, time_in)
            return
        sim._stats.orders_added += 1
        result: dict[str, Any] = {"order_id": view.order_id}
        if cl is not None:
            result["cl_ord_id"] = cl
        self._result(conn, method, req_id, result, time_in)
        self.emit(records)

    def _cancel_order(
        self, conn: _Conn, account: str, p: dict[str, Any], req_id: int | None, time_in: int
    ) -> None:
        sim = self.sim
        method = "cancel_order"
        by_cl = "order_id" not in p and "cl_ord_id" in p
        raw = p.get("cl_ord_id" if by_cl else "order_id")
        ids = [raw] if isinstance(raw, str) else raw
        if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
            name = "cl_ord_id" if by_cl else "order_id"
            sim._error(conn, method, req_id, f"EGeneral:Invalid arguments:{name}", time_in)
            return
        for ident in ids:
            oid = self.engine.find_open_by_cl(account, ident) if by_cl else ident
            try:
                if oid is None:
                    raise OrderRejected("EOrder:Unknown order")
                records = self.engine.cancel(account, oid, sim._ts())
            except OrderRejected as exc:
                sim._error(conn, method, req_id, exc.error, time_in)
                continue
            result: dict[str, Any] = {"order_id": oid}
            if by_cl:
                result["cl_ord_id"] = ident
            self._result(conn, method, req_id, result, time_in)
            self.emit(records)

    def _cancel_after(
        self, conn: _Conn, account: str, p: dict[str, Any], req_id: int | None, time_in: int
    ) -> None:
        sim = self.sim
        method = "cancel_all_orders_after"
        timeout = p.get("timeout")
        if (
            not isinstance(timeout, int)
            or isinstance(timeout, bool)
            or not 0 <= timeout < sim.config.dms_max_timeout_s
        ):
            sim._error(conn, method, req_id, "EGeneral:Invalid arguments:timeout", time_in)
            return
        now = sim._ts()
        deadline = self.engine.arm(account, timeout, now)
        sim._truth.add(
            {
                "k": "dms_armed",
                "account": account,
                "ts_ns": now * 1000,
                "timeout_s": timeout,
                "trigger_ns": None if deadline is None else deadline * 1000,
            }
        )
        result = {
            "currentTime": _rfc3339_s(now),
            "triggerTime": "0" if deadline is None else _rfc3339_s(deadline),
        }
        self._result(conn, method, req_id, result, time_in)

    # ------------------------------------------------------------- records

    def emit(self, records: list[Record]) -> None:
        """Truth-log ``records`` and send them to every subscribed connection."""
        sim = self.sim
        for r in records:
            if isinstance(r, ExecutionReport):
                sim._truth.add(self._order_truth(r))
                if r.fill is not None:
                    sim._stats.private_fills += 1
                self._broadcast(r.account, "executions", exec_item(r, self.engine.precisions))
            elif isinstance(r, LedgerEntry):
                prec = self._prec(r.asset)
                sim._truth.add(
                    {
                        "k": "ledger",
                        "account": r.account,
                        "ts_ns": r.ts * 1000,
                        "ledger_id": r.ledger_id,
                        "ref_id": r.ref_id,
                        "asset": r.asset,
                        "amount": _q(r.amount, prec),
                        "fee": _q(r.fee, prec),
                        "balance": _q(r.balance, prec),
                    }
                )
                self._broadcast(r.account, "balances", ledger_item(r, prec))
            elif isinstance(r, DmsFired):
                sim._stats.dms_fired += 1
                sim._truth.add(
                    {
                        "k": "dms_fired",
                        "account": r.account,
                        "ts_ns": r.ts * 1000,
                        "canceled": r.canceled,
                    }
                )

    def _order_truth(self, r: ExecutionReport) -> dict[str, Any]:
        o = r.order
        inst = o.instrument
        pp, qp = inst.price_precision, inst.qty_precision
        rec: dict[str, Any] = {
            "k": "order",
            "account": r.account,
            "ts_ns": r.ts * 1000,
            "order_id": o.order_id,
            "cl_ord_id": o.cl_ord_id,
            "exec_type": r.exec_type,
            "status": o.status,
            "symbol": inst.symbol,
            "side": o.side,
            "order_type": o.order_type,
            "qty": _q(o.qty, qp),
            "limit_price": None if o.limit_price is None else _q(o.limit_price, pp),
            "cum_qty": _q(o.cum_qty, qp),
        }
        f = r.fill
        if f is not None:
            rec.update(
                exec_id=f.exec_id,
                trade_id=f.trade_id,
                last_qty=_q(f.qty, qp),
                last_price=_q(f.price, pp),
                liquidity=f.liquidity,
                fee=_q(f.fee, self._prec(f.fee_asset)),
            )
        if r.exec_type == "canceled":
            rec["reason"] = o.reason
        return rec

    def _broadcast(self, account: str, channel: str, item: str) -> None:
        sim = self.sim
        for conn in list(self.subscribers.get(account, ())):
            sub = conn.priv.subs.get(channel)
            if sub is None or sub.account != account:
                continue
            sub.seq += 1
            if sub.skip > 0:
                sub.skip -= 1
                sim._stats.frames_withheld += 1
                sim._truth.add(
                    {
                        "k": "private_skip",
                        "conn": conn.cid,
                        "channel": channel,
                        "sequence": sub.seq,
                        "ts_ns": sim._ts() * 1000,
                    }
                )
                continue
            self._send(conn, channel, "update", item, sub.seq)

    # ------------------------------------------------------ market and DMS

    def on_public_trades(self, symbol: str, fills: list[tuple[str, int, int]]) -> None:
        """``fills``: (taker side, price, qty) as scaled ints, in print order."""
        if not self.engine.has_open_orders():
            return
        if self.sim._system not in ("online", "limit_only"):
            return  # no matching in maintenance / cancel_only / post_only (§1.4)
        m = self.sim._syms[symbol].market
        for side, price, qty in fills:
            records = self.engine.on_public_trade(
                symbol,
                Decimal(price).scaleb(-m.pp),
                Decimal(qty).scaleb(-m.qp),
                side,
                self.sim._ts(),
            )
            self.emit(records)

    def check_dms(self) -> None:
        if self.sim._system == "maintenance":
            return  # fires when the engine is back (§1.11)
        if self.engine.dms_due(self._now_us()):
            self.emit(self.engine.check_dms(self.sim._ts()))

    async def dms_loop(self) -> None:
        interval = self.sim.config.dms_check_interval_s
        while True:
            await asyncio.sleep(interval)
            self.check_dms()

    # -------------------------------------------------------------- faults

    def fault_token_expiry(self, then_close: bool) -> None:
        for t in self.tokens.values():
            t.revoked = True
        if then_close:
            for c in self.auth_conns():
                self.sim._close(c, 1000, "token expired")

    def fault_sequence_jump(self, channel: str) -> None:
        hit = False
        for c in self.auth_conns():
            sub = c.priv.subs.get(channel)
            if sub is not None and not c.closing and c.ws.protocol.state is State.OPEN:
                sub.skip += 1
                hit = True
        if not hit:
            self.pending_jumps[channel] = self.pending_jumps.get(channel, 0) + 1

    def fault_fill_while_disconnected(self, fraction: float, cancel_some: int) -> None:
        sim = self.sim
        for c in self.auth_conns():
            sim._abort(c)
        ts = sim._ts()
        for key in self.engine.accounts:
            records: list[Record] = []
            for o in self.engine.snapshot_orders(key)[:cancel_some]:
                records.extend(self.engine.cancel(key, o.order_id, ts))
            records.extend(self.engine.force_fill(key, None, fraction, ts))
            self.emit(records)

    # ---------------------------------------------------------- finals

    def final_orders(self, api_key: str | None = None) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for oid, o in self.engine.final_orders(self.account_key(api_key)).items():
            inst = o.instrument
            out[oid] = {
                "status": o.status,
                "cum_qty": _q(o.cum_qty, inst.qty_precision),
                "symbol": inst.symbol,
                "side": o.side,
                "qty": _q(o.qty, inst.qty_precision),
                "limit_price": None
                if o.limit_price is None
                else _q(o.limit_price, inst.price_precision),
            }
        return out

    def final_balances(self, api_key: str | None = None) -> dict[str, str]:
        key = self.account_key(api_key)
        return {a: _q(v, self._prec(a)) for a, v in self.engine.balances(key).items()}

    def write_finals(self) -> None:
        """``final_order`` / ``final_balance`` truth records (accounts with orders only)."""
        for key, acct in self.engine.accounts.items():
            if not acct.orders:
                continue
            for oid, rec in self.final_orders(key).items():
                self.sim._truth.add({"k": "final_order", "account": key, "order_id": oid, **rec})
            self.sim._truth.add(
                {"k": "final_balance", "account": key, "balances": self.final_balances(key)}
            )


_Route = Callable[[KrakenPrivate, str, dict[str, str]], dict[str, Any]]

_ROUTES: dict[str, _Route] = {
    "/0/private/GetWebSocketsToken": KrakenPrivate._r_token,
    "/0/private/Balance": KrakenPrivate._r_balance,
    "/0/private/BalanceEx": KrakenPrivate._r_balance_ex,
    "/0/private/OpenOrders": KrakenPrivate._r_open,
    "/0/private/ClosedOrders": KrakenPrivate._r_closed,
    "/0/private/QueryOrders": KrakenPrivate._r_query,
}
