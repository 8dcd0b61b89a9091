"""The Binance simulator's private side: WS API user data stream and signed REST.

An independent implementation (it imports nothing from the gapless client)
of protocols.md §3.9-§3.11, plugged into :class:`gapless.sim.binance.BinanceSim`
through a few hooks; the accounts and matching are
:class:`gapless.sim.accounts.MatchingEngine`'s.

Accounts
========

``BinanceSimConfig.accounts`` (default: :data:`DEMO_BINANCE_ACCOUNT`) are HMAC
accounts: an API key and a secret. Balances are kept at 8 decimals.
Commission: 0.1 % maker and taker, charged in the quote asset.

WS API (``ws://host:port/ws-api/v3``; §3.9, §3.11)
==================================================

Responses use the envelope ``{"id":ID,"status":S,"result":{..}|"error":{"code","msg"},
"rateLimits":[..]}``.

* ``userDataStream.subscribe.signature`` ``params {apiKey, timestamp, signature
  [, recvWindow]}``: the signature is verified exactly per §3.10 WS-API rules
  (:func:`ws_api_payload`: every param but ``signature``, sorted, ``k=v`` joined
  by ``&``, UTF-8, not percent-encoded; HMAC-SHA256 hex, case-insensitive).
  Errors: unknown key -> 401 ``-2015``; bad signature -> 400 ``-1022``;
  ``timestamp >= serverTime + 1000`` or ``serverTime - timestamp > recvWindow``
  (default 5000, at most 60000) -> 400 ``-1021``; missing/ill-typed params ->
  400 ``-1102``. Success: ``{"subscriptionId":N}`` (N counts from 0 per
  connection). Several subscriptions (accounts) may share a connection.
* ``userDataStream.unsubscribe`` ``[params {subscriptionId}]``: each removed
  subscription first gets ``{"subscriptionId":N,"event":{"e":"eventStreamTerminated",
  "E":ms}}``, then the response ``{}``.
* ``session.subscriptions`` -> ``[{"subscriptionId":N}, ..]``; ``ping`` -> ``{}``.
* Unknown methods -> 400 ``-1100``; unparsable frames -> 400 ``-1102`` with ``id`` null.

Events go to every subscription of the account as
``{"subscriptionId":N,"event":{..}}``: ``executionReport`` (``x``
NEW/TRADE/CANCELED/EXPIRED, ``X`` NEW/PARTIALLY_FILLED/FILLED/CANCELED/EXPIRED;
an IOC or MARKET remainder ends EXPIRED like on the venue) and, after every
change of free/locked funds, one ``outboundAccountPosition`` with the
changed assets (``u`` = the account's update time, also ``updateTime`` of
``GET /api/v3/account``).

Signed REST (§3.10: query-string signature, ``X-MBX-APIKEY`` header)
=====================================================================

``GET /api/v3/openOrders [symbol]`` (weight 6, 80 without symbol),
``GET /api/v3/order symbol + orderId|origClientOrderId`` (4; unknown: 400
``-2013``), ``GET /api/v3/account`` (20), ``POST /api/v3/order`` (1: ``symbol,
side BUY|SELL, type LIMIT|MARKET|LIMIT_MAKER, timeInForce GTC|IOC, quantity,
price, newClientOrderId``; LIMIT_MAKER is post-only: crossing -> 400 ``-2010``
"Order would immediately match and take.") and ``DELETE /api/v3/order`` (1;
unknown: 400 ``-2011``). Parameters come in the query string (the simulator's
HTTP parser reads no bodies). The signature covers the raw query text with the
``signature`` pair removed. Auth errors: no key header 401 ``-2014``, unknown
key 401 ``-2015``, missing signature 400 ``-1102``, bad signature 400
``-1022``, timestamp 400 ``-1021``.

Faults (registered in ``BinanceSim``'s kind table)
==================================================

``user_stream_terminated``
    ``eventStreamTerminated`` to every subscription, which is dropped (the
    connection stays open): the client must resubscribe and reconcile.
``private_fill_while_disconnected`` (``fraction`` [1.0])
    Aborts every WS API connection, then (before any client can reconnect,
    in the same loop step) force-fills ``fraction`` of every resting order of
    every account as maker. No event of those fills reaches anyone: only a
    REST reconciliation reveals them.
``private_drop`` (``events`` [1])
    The next ``events`` user events (each counted once, whatever the number
    of subscriptions) are withheld. Undetectable while connected: the stream
    has no sequence numbers. A later reconnect's reconciliation heals it.

Ground truth
============

:meth:`BinancePrivate.final_orders` / :meth:`final_balances` (exposed as
``BinanceSim.final_orders()`` / ``final_balances()``). Truth records:
``{"k":"private_event","venue":"binance","event":E,"order_id":..|"assets":[..],
"ts_ns":N[,"withheld":true]}`` and ``{"k":"user_stream","venue":"binance",
"op":"subscribe"|"terminated","conn":CID,"subscription_id":N,"ts_ns":N}``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import unquote_plus

from gapless.sim.accounts import (
    AccountSpec,
    BookSource,
    ExecutionReport,
    Instrument,
    MatchingEngine,
    OrderRejected,
    OrderView,
    Record,
)

__all__ = [
    "DEMO_BINANCE_ACCOUNT",
    "PRIVATE_FAULT_DEFAULTS",
    "PRIVATE_PATHS",
    "WS_API_PATH",
    "BinancePrivate",
    "rest_payload",
    "verify",
    "ws_api_payload",
]

WS_API_PATH = "/ws-api/v3"
PRIVATE_PATHS = frozenset({"/api/v3/openOrders", "/api/v3/order", "/api/v3/account"})
PRIVATE_FAULT_DEFAULTS: dict[str, dict[str, Any]] = {
    "user_stream_terminated": {},
    "private_fill_while_disconnected": {"fraction": 1.0},
    "private_drop": {"events": 1},
}

DEMO_BINANCE_ACCOUNT = AccountSpec(
    api_key="gaplessSimBinanceDemoKey0000000000000000000000000000000000000000",
    api_secret="gaplessSimBinanceDemoSecret000000000000000000000000000000000000",
    balances={"USDT": "1000000", "BTC": "10", "ETH": "100", "BNB": "1000", "DOGE": "100000"},
)
"""The Binance simulator's default HMAC account. The key and secret are public and
work **only on the simulator**; they are not, and never were, credentials for
Binance. Balances: USDT 1,000,000, BTC 10, ETH 100, BNB 1,000, DOGE 100,000."""

_ASSET_PRECISION = 8
_Q8 = Decimal("0.00000001")
_RECV_WINDOW_MAX = 60_000
_E_AUTH = (-2015, "Invalid API-key, IP, or permissions for action.")
_E_SIG = (-1022, "Signature for this request is not valid.")

SendFn = Callable[[Any, str], None]


def ws_api_payload(params: Mapping[str, Any]) -> str:
    """§3.10 WS API payload: params but ``signature``, sorted, ``k=v`` by ``&``."""
    return "&".join(f"{k}={_param_text(params[k])}" for k in sorted(params) if k != "signature")


def rest_payload(raw_query: str) -> tuple[str, str | None]:
    """§3.10 REST: (the raw query text without the ``signature`` pair, the signature)."""
    kept: list[str] = []
    signature: str | None = None
    for pair in raw_query.split("&") if raw_query else []:
        name, _, value = pair.partition("=")
        if name == "signature":
            signature = value
        else:
            kept.append(pair)
    return "&".join(kept), signature


def verify(secret: str, payload: str, signature: str) -> bool:
    """HMAC-SHA256 hex of ``payload`` (UTF-8) equals ``signature`` (case-insensitive)."""
    expected = hmac.new(secret.encode(), payload.encode("utf-8"), hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, signature.lower())


def _param_text(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def _n(d: Decimal) -> str:
    return format(d.quantize(_Q8), "f")


class _Fail(Exception):
    def __init__(self, status: int, code: int, msg: str) -> None:
        super().__init__(msg)
        self.status = status
        self.code = code
        self.msg = msg


class BinancePrivate:
    """Accounts, the WS API user data stream and signed REST (see the module docstring).

    ``send(conn, text)`` queues a frame, ``abort(conn)`` drops a connection,
    ``clock_ms()`` is the simulator's event time, ``truth(record)`` logs ground
    truth, ``book`` reads the public book (levels best first)."""

    def __init__(
        self,
        *,
        accounts: Sequence[AccountSpec],
        instruments: Sequence[Instrument],
        seed: int,
        send: SendFn,
        abort: Callable[[Any], None],
        clock_ms: Callable[[], int],
        book: BookSource,
        truth: Callable[[dict[str, Any]], None],
    ) -> None:
        self._send = send
        self._abort = abort
        self._ms = clock_ms
        self._truth = truth
        self._ids = {"order": 10_000_000 + seed * 1000, "exec": 0, "ledger": 0}
        assets = {a for i in instruments for a in (i.base, i.quote)}
        assets |= {a for spec in accounts for a in spec.balances}
        self.engine = MatchingEngine(
            instruments,
            dict.fromkeys(assets, _ASSET_PRECISION),
            self._new_id,
            book,
            accounts=accounts,
            maker_fee="0.001",
            taker_fee="0.001",
        )
        self._secrets = {a.api_key: a.api_secret for a in accounts}
        self._update_ms = dict.fromkeys(self._secrets, 0)
        self._conns: dict[Any, dict[int, str]] = {}  # ws-api conn -> {sub id: api key}
        self._next_sub: dict[Any, int] = {}
        self._cids: dict[Any, int] = {}
        self._drop = 0
        self.withheld = 0
        self._cl_seq = 0

    def _new_id(self, kind: str) -> str:
        self._ids[kind] += 1
        return str(self._ids[kind])

    # ------------------------------------------------------------------ truth
    def final_orders(self) -> dict[str, dict[str, str]]:
        """Every order accepted: ``{order_id: {"status","cum_qty","cum_quote","symbol",
        "side","qty","cl_ord_id"}}`` (gapless status names; IOC remainders ``expired``)."""
        out: dict[str, dict[str, str]] = {}
        for oid, v in self.engine.final_orders().items():
            out[oid] = {
                "status": _status(v),
                "cum_qty": _n(v.cum_qty),
                "cum_quote": _n(v.cum_cost),
                "symbol": v.symbol,
                "side": v.side,
                "qty": _n(v.qty),
                "cl_ord_id": v.cl_ord_id or "",
            }
        return out

    def final_balances(self, api_key: str | None = None) -> dict[str, str]:
        """``{asset: total}`` (free + locked) of one account (default: the first)."""
        key = api_key if api_key is not None else next(iter(self._secrets))
        return {a: _n(t) for a, t in self.engine.balances(key).items()}

    # ------------------------------------------------------------------ connections
    def opened(self, conn: Any, cid: int) -> None:
        self._conns[conn] = {}
        self._next_sub[conn] = 0
        self._cids[conn] = cid

    def closed(self, conn: Any) -> None:
        self._conns.pop(conn, None)
        self._next_sub.pop(conn, None)
        self._cids.pop(conn, None)

    def _reply(self, conn: Any, req_id: Any, result: Any) -> None:
        self._send(
            conn,
            _dumps({"id": req_id, "status": 200, "result": result, "rateLimits": _RATE_LIMITS}),
        )

    def _error(self, conn: Any, req_id: Any, status: int, code: int, msg: str) -> None:
        body = {"id": req_id, "status": status, "error": {"code": code, "msg": msg}}
        self._send(conn, _dumps({**body, "rateLimits": _RATE_LIMITS}))

    def on_message(self, conn: Any, msg: str | bytes) -> None:
        """One WS API request (§3.9, §3.11)."""
        try:
            obj = json.loads(msg)
        except (ValueError, RecursionError):
            self._error(conn, None, 400, -1102, "Malformed request: invalid JSON.")
            return
        if not isinstance(obj, dict) or not isinstance(obj.get("method"), str):
            self._error(conn, None, 400, -1102, "Malformed request: missing 'method'.")
            return
        req_id = obj.get("id")
        if req_id is not None and (isinstance(req_id, bool) or not isinstance(req_id, int | str)):
            self._error(conn, None, 400, -1102, "Malformed request: bad 'id'.")
            return
        method: str = obj["method"]
        params = obj.get("params", {})
        if not isinstance(params, dict):
            self._error(conn, req_id, 400, -1102, "Malformed request: 'params' must be an object.")
            return
        if method == "userDataStream.subscribe.signature":
            self._subscribe(conn, req_id, params)
        elif method == "userDataStream.unsubscribe":
            sid = params.get("subscriptionId")
            subs = self._conns.get(conn, {})
            if sid is not None and (type(sid) is not int or sid not in subs):
                self._error(conn, req_id, 400, -1102, "Unknown subscriptionId.")
                return
            for n in [sid] if sid is not None else sorted(subs):
                self._terminate(conn, n)
            self._reply(conn, req_id, {})
        elif method == "session.subscriptions":
            subs = self._conns.get(conn, {})
            self._reply(conn, req_id, [{"subscriptionId": n} for n in sorted(subs)])
        elif method == "ping":
            self._reply(conn, req_id, {})
        else:
            self._error(conn, req_id, 400, -1100, f"Unknown method '{method[:40]}'.")

    def _check_time(self, params: Mapping[str, Any]) -> None:
        """§3.10: ``timestamp < serverTime + 1000`` and ``serverTime - timestamp <= recvWindow``."""
        ts = _int_param(params.get("timestamp"), "timestamp")
        rw_raw = params.get("recvWindow")
        rw = 5000 if rw_raw is None else _int_param(rw_raw, "recvWindow")
        if not 0 < rw <= _RECV_WINDOW_MAX:
            raise _Fail(400, -1131, "recvWindow must be less than 60000")
        server = self._ms()
        if ts >= server + 1000:
            raise _Fail(
                400, -1021, "Timestamp for this request was 1000ms ahead of the server's time."
            )
        if server - ts > rw:
            raise _Fail(400, -1021, "Timestamp for this request is outside of the recvWindow.")

    def _subscribe(self, conn: Any, req_id: Any, params: dict[str, Any]) -> None:
        try:
            key = params.get("apiKey")
            sig = params.get("signature")
            if not isinstance(key, str) or not isinstance(sig, str):
                raise _Fail(400, -1102, "Mandatory parameter 'apiKey'/'signature' was not sent.")
            secret = self._secrets.get(key)
            if secret is None:
                raise _Fail(401, *_E_AUTH)
            self._check_time(params)
            if not verify(secret, ws_api_payload(params), sig):
                raise _Fail(400, *_E_SIG)
        except _Fail as f:
            self._error(conn, req_id, f.status, f.code, f.msg)
            return
        if conn not in self._conns:
            return  # closing
        n = self._next_sub[conn]
        self._next_sub[conn] = n + 1
        self._conns[conn][n] = key
        self._truth(
            {
                "k": "user_stream",
                "venue": "binance",
                "op": "subscribe",
                "conn": self._cids.get(conn, 0),
                "subscription_id": n,
                "ts_ns": self._ms() * 1_000_000,
            }
        )
        self._reply(conn, req_id, {"subscriptionId": n})

    def _terminate(self, conn: Any, n: int) -> None:
        subs = self._conns.get(conn)
        if subs is None or n not in subs:
            return
        del subs[n]
        ms = self._ms()
        self._truth(
            {
                "k": "user_stream",
                "venue": "binance",
                "op": "terminated",
                "conn": self._cids.get(conn, 0),
                "subscription_id": n,
                "ts_ns": ms * 1_000_000,
            }
        )
        self._send(
            conn, _dumps({"subscriptionId": n, "event": {"e": "eventStreamTerminated", "E": ms}})
        )

    # ------------------------------------------------------------------ events
    def _push(self, api_key: str, event: dict[str, Any], note: dict[str, Any]) -> None:
        rec = {"k": "private_event", "venue": "binance", **note, "ts_ns": event["E"] * 1_000_000}
        if self._drop > 0:
            self._drop -= 1
            self.withheld += 1
            rec["withheld"] = True
            self._truth(rec)
            return
        self._truth(rec)
        for conn, subs in self._conns.items():
            for n, key in subs.items():
                if key == api_key:
                    self._send(conn, _dumps({"subscriptionId": n, "event": event}))

    def _publish(
        self, api_key: str, records: Iterable[Record], before: dict[str, tuple[Decimal, Decimal]]
    ) -> None:
        ms = self._ms()
        for rec in records:
            if isinstance(rec, ExecutionReport) and rec.exec_type != "filled":
                ev = _execution_report(rec, ms)
                self._push(rec.account, ev, {"event": "executionReport", "order_id": ev["i"]})
        after = self._funds(api_key)
        changed = [a for a in sorted(after) if after[a] != before.get(a)]
        if changed:
            self._update_ms[api_key] = ms
            lines = [
                {"a": a, "f": _n(after[a][0] - after[a][1]), "l": _n(after[a][1])} for a in changed
            ]
            ev = {"e": "outboundAccountPosition", "E": ms, "u": ms, "B": lines}
            self._push(api_key, ev, {"event": "outboundAccountPosition", "assets": changed})

    def _funds(self, api_key: str) -> dict[str, tuple[Decimal, Decimal]]:
        acct = self.engine.account(api_key)
        holds = acct.holds()
        return {a: (t, holds.get(a, Decimal(0))) for a, t in acct.balances().items()}

    def on_public_trade(self, symbol: str, price: Decimal, qty: Decimal, side: str) -> None:
        """A public trade printed: resting orders at or through it fill as maker."""
        if not self.engine.has_open_orders():
            return
        befores = {k: self._funds(k) for k in self._secrets}
        records = self.engine.on_public_trade(symbol, price, qty, side, self._ms() * 1000)
        for key in self._secrets:
            mine = [r for r in records if getattr(r, "account", None) == key]
            if mine:
                self._publish(key, mine, befores[key])

    # ------------------------------------------------------------------ faults
    def validate_fault(self, kind: str, p: dict[str, Any]) -> None:
        if kind == "private_fill_while_disconnected":
            f = p["fraction"]
            if isinstance(f, bool) or not isinstance(f, int | float) or not 0 < f <= 1:
                raise ValueError("private_fill_while_disconnected fraction must be in (0, 1]")
        elif kind == "private_drop":
            e = p["events"]
            if isinstance(e, bool) or not isinstance(e, int) or e < 1:
                raise ValueError("private_drop events must be an int >= 1")

    def inject(self, kind: str, p: dict[str, Any]) -> None:
        if kind == "user_stream_terminated":
            for conn, subs in list(self._conns.items()):
                for n in sorted(subs):
                    self._terminate(conn, n)
        elif kind == "private_fill_while_disconnected":
            for conn in list(self._conns):
                self._conns[conn] = {}  # nothing more is sent to it
                self._abort(conn)
            ts = self._ms() * 1000
            for key in self._secrets:
                before = self._funds(key)
                records = self.engine.force_fill(key, None, Decimal(repr(p["fraction"])), ts)
                self._publish(key, records, before)
        elif kind == "private_drop":
            self._drop += int(p["events"])

    # ------------------------------------------------------------------ REST
    def rest(self, method: str, path: str, raw_query: str, api_key: str | None) -> tuple[int, Any]:
        """One signed REST request: (HTTP status, JSON body)."""
        try:
            params = self._auth(raw_query, api_key)
            assert api_key is not None
            if path == "/api/v3/account" and method == "GET":
                return 200, self._account(api_key)
            if path == "/api/v3/openOrders" and method == "GET":
                sym = params.get("symbol")
                views = [v for v in self.engine.snapshot_orders(api_key) if sym in (None, v.symbol)]
                return 200, [_order_json(v) for v in views]
            if path == "/api/v3/order":
                if method == "GET":
                    return 200, _order_json(self._find(api_key, params, -2013))
                if method == "POST":
                    return 200, self._place(api_key, params)
                if method == "DELETE":
                    view = self._find(api_key, params, -2011)
                    if not view.is_open:
                        raise _Fail(400, -2011, "Unknown order sent.")
                    before = self._funds(api_key)
                    records = self.engine.cancel(api_key, view.order_id, self._ms() * 1000)
                    self._publish(api_key, records, before)
                    return 200, _order_json(self.engine.order(api_key, view.order_id) or view)
            raise _Fail(405, -1000, "Method not simulated.")
        except _Fail as f:
            return f.status, {"code": f.code, "msg": f.msg}

    def rest_weight(self, method: str, path: str, raw_query: str) -> int:
        if path == "/api/v3/openOrders":
            return 6 if "symbol=" in raw_query else 80
        if path == "/api/v3/account":
            return 20
        return 4 if method == "GET" else 1

    def _auth(self, raw_query: str, api_key: str | None) -> dict[str, str]:
        if not api_key:
            raise _Fail(401, -2014, "API-key format invalid.")
        secret = self._secrets.get(api_key)
        if secret is None:
            raise _Fail(401, *_E_AUTH)
        payload, signature = rest_payload(raw_query)
        params = {}
        for pair in payload.split("&") if payload else []:
            name, _, value = pair.partition("=")
            params[unquote_plus(name)] = unquote_plus(value)
        if signature is None:
            raise _Fail(
                400,
                -1102,
                "Mandatory parameter 'signature' was not sent, was empty/null, or malformed.",
            )
        self._check_time(params)
        if not verify(secret, payload, signature):
            raise _Fail(400, *_E_SIG)
        return params

    def _account(self, api_key: str) -> dict[str, Any]:
        funds = self._funds(api_key)
        return {
            "makerCommission": 10,
            "takerCommission": 10,
            "buyerCommission": 0,
            "sellerCommission": 0,
            "canTrade": True,
            "canWithdraw": True,
            "canDeposit": True,
            "brokered": False,
            "requireSelfTradePrevention": False,
            "preventSor": False,
            "updateTime": self._update_ms.get(api_key, 0),
            "accountType": "SPOT",
            "balances": [
                {"asset": a, "free": _n(t - h), "locked": _n(h)}
                for a, (t, h) in sorted(funds.items())
            ],
            "permissions": ["SPOT"],
        }

    def _find(self, api_key: str, params: Mapping[str, str], code: int) -> OrderView:
        missing = "Order does not exist." if code == -2013 else "Unknown order sent."
        if "symbol" not in params:
            raise _Fail(400, -1102, "Mandatory parameter 'symbol' was not sent.")
        oid = params.get("orderId")
        cl = params.get("origClientOrderId")
        view: OrderView | None = None
        if oid is not None:
            view = self.engine.order(api_key, oid)
        elif cl is not None:
            for v in self.engine.final_orders(api_key).values():
                if v.cl_ord_id == cl and (view is None or v.is_open):
                    view = v
        else:
            raise _Fail(400, -1102, "Param 'origClientOrderId' or 'orderId' must be sent.")
        if view is None or view.symbol != params["symbol"]:
            raise _Fail(400, code, missing)
        return view

    def _place(self, api_key: str, params: Mapping[str, str]) -> dict[str, Any]:
        otype = params.get("type", "")
        side = params.get("side", "")
        if otype not in ("LIMIT", "MARKET", "LIMIT_MAKER") or side not in ("BUY", "SELL"):
            raise _Fail(400, -1102, "Mandatory parameter 'type'/'side' was not sent or is invalid.")
        tif = params.get("timeInForce", "GTC" if otype != "MARKET" else "IOC")
        if otype == "LIMIT" and "timeInForce" not in params:
            raise _Fail(400, -1102, "Mandatory parameter 'timeInForce' was not sent.")
        try:
            qty = Decimal(params.get("quantity", ""))
            price = Decimal(params["price"]) if "price" in params else None
        except InvalidOperation:
            raise _Fail(400, -1100, "Illegal characters found in a parameter.") from None
        cl = params.get("newClientOrderId")
        if cl is None:
            self._cl_seq += 1
            cl = f"sim{self._cl_seq:020d}"
        before = self._funds(api_key)
        try:
            view, records = self.engine.add_order(
                api_key,
                symbol=params.get("symbol", ""),
                side=side.lower(),
                order_type="market" if otype == "MARKET" else "limit",
                qty=qty,
                limit_price=price,
                time_in_force=tif,
                post_only=otype == "LIMIT_MAKER",
                cl_ord_id=cl,
                ts=self._ms() * 1000,
            )
        except OrderRejected as exc:
            raise _Fail(400, *_rejection(exc.error)) from None
        self._publish(api_key, records, before)
        final = self.engine.order(api_key, view.order_id) or view
        return {**_order_json(final), "transactTime": final.open_ts // 1000}


_RATE_LIMITS = [
    {
        "rateLimitType": "REQUEST_WEIGHT",
        "interval": "MINUTE",
        "intervalNum": 1,
        "limit": 6000,
        "count": 2,
    }
]


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"))


def _int_param(v: Any, name: str) -> int:
    if isinstance(v, bool):
        raise _Fail(
            400, -1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed."
        )
    if isinstance(v, int):
        return v
    if isinstance(v, str) and v.isdigit() and len(v) < 19:
        return int(v)
    raise _Fail(
        400, -1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed."
    )


def _rejection(error: str) -> tuple[int, str]:
    if "Insufficient funds" in error:
        return -2010, "Account has insufficient balance for requested action."
    if "Post only" in error:
        return -2010, "Order would immediately match and take."
    if "Unknown asset pair" in error:
        return -1121, "Invalid symbol."
    if "Duplicate" in error:
        return -2010, "Duplicate order sent."
    return -1013, f"Filter failure: {error.rpartition(':')[2]}"


def _status(v: OrderView) -> str:
    """gapless status; an IOC/MARKET remainder canceled by the engine is EXPIRED on Binance."""
    if v.status == "canceled" and v.reason == "Immediate or cancel":
        return "expired"
    return v.status


def _wire_status(v: OrderView) -> str:
    return _status(v).upper()


def _wire_type(v: OrderView) -> str:
    if v.order_type == "market":
        return "MARKET"
    return "LIMIT_MAKER" if v.post_only else "LIMIT"


def _order_json(v: OrderView) -> dict[str, Any]:
    return {
        "symbol": v.symbol,
        "orderId": int(v.order_id),
        "orderListId": -1,
        "clientOrderId": v.cl_ord_id or "",
        "price": _n(v.limit_price or Decimal(0)),
        "origQty": _n(v.qty),
        "executedQty": _n(v.cum_qty),
        "cummulativeQuoteQty": _n(v.cum_cost),
        "status": _wire_status(v),
        "timeInForce": v.time_in_force,
        "type": _wire_type(v),
        "side": v.side.upper(),
        "stopPrice": "0.00000000",
        "icebergQty": "0.00000000",
        "time": v.open_ts // 1000,
        "updateTime": v.last_ts // 1000,
        "isWorking": True,
        "workingTime": v.open_ts // 1000,
        "origQuoteOrderQty": "0.00000000",
        "selfTradePreventionMode": "NONE",
    }


def _execution_report(rec: ExecutionReport, ms: int) -> dict[str, Any]:
    v = rec.order
    status = _wire_status(v)
    if rec.exec_type == "trade":
        x = "TRADE"
    elif rec.exec_type == "new":
        x = "NEW"
        status = "NEW"
    elif status == "EXPIRED":
        x = "EXPIRED"
    else:
        x = "CANCELED"
    f = rec.fill
    if f is not None:
        status = "FILLED" if v.cum_qty >= v.qty else "PARTIALLY_FILLED"
    if rec.exec_type == "new":
        cum_qty, cum_cost = Decimal(0), Decimal(0)
    else:
        cum_qty, cum_cost = v.cum_qty, v.cum_cost
    return {
        "e": "executionReport",
        "E": ms,
        "s": v.symbol,
        "c": v.cl_ord_id or "",
        "S": v.side.upper(),
        "o": _wire_type(v),
        "f": v.time_in_force,
        "q": _n(v.qty),
        "p": _n(v.limit_price or Decimal(0)),
        "P": "0.00000000",
        "F": "0.00000000",
        "g": -1,
        "C": "",
        "x": x,
        "X": status,
        "r": "NONE",
        "i": int(v.order_id),
        "l": _n(f.qty) if f else "0.00000000",
        "z": _n(cum_qty),
        "L": _n(f.price) if f else "0.00000000",
        "n": _n(f.fee) if f else "0",
        "N": f.fee_asset if f else None,
        "T": rec.ts // 1000,
        "t": f.trade_id if f else -1,
        "I": 0,
        "w": status in ("NEW", "PARTIALLY_FILLED"),
        "m": bool(f and f.liquidity == "m"),
        "M": False,
        "O": v.open_ts // 1000,
        "Z": _n(cum_cost),
        "Y": _n(f.cost) if f else "0.00000000",
        "Q": "0.00000000",
        "W": v.open_ts // 1000,
        "V": "NONE",
    }
