"""The private side of the KuCoin simulator: signed REST, private topics, faults.

An independent implementation (stdlib + aiohttp + :mod:`gapless.sim`; nothing
from the client). :class:`KucoinPrivate` is owned by
:class:`gapless.sim.kucoin.KucoinSim`, which calls its hooks; accounts and
matching are :class:`gapless.sim.accounts.MatchingEngine`, with the sim's
public KuCoin market as book source and its public trades as maker fills.

Signed REST (protocols.md §2.2)
===============================

Every private call needs ``KC-API-KEY``, ``KC-API-SIGN``,
``KC-API-TIMESTAMP`` (ms), ``KC-API-PASSPHRASE`` and ``KC-API-KEY-VERSION``:

* a missing header → HTTP 401 ``400001``; a timestamp more than 5 s from the
  simulator's clock → ``400002``; an unknown key → ``400003``; key version
  ``"2"`` with a passphrase that is not ``base64(HMAC-SHA256(secret,
  passphrase))`` (version ``"1"``: not the plain passphrase) → ``400004``;
  ``KC-API-SIGN`` not ``base64(HMAC-SHA256(secret, timestamp + METHOD +
  path?query + body))`` → ``400005``. :func:`sign` reproduces TV-C1.
* Success is ``{"code":"200000","data":...}``; an order-entry refusal is
  HTTP 200 with code ``400100`` (bad parameters), ``200004`` (insufficient
  balance) or ``400100`` "order not exist" for an unknown order id.

Routes (on every listener of the sim, through websockets' ``process_request``;
that hook cannot read request bodies, so ``POST /api/v1/orders``, which has a
JSON body, is served by a second plain-HTTP listener, :attr:`KucoinSim.orders_url`,
which serves every route of this module):

* ``POST /api/v1/bullet-private`` → a token (valid ``token_ttl_s``, listed in the
  sim's token table, so ``token_expiry`` applies to it) marked private, and
  the instance servers. Only a private token may subscribe private topics;
  a public one gets ``{"type":"error","code":403,...}`` [sim choice: KuCoin
  does not document the code].
* ``GET /api/v1/orders?status=active&currentPage=&pageSize=`` (pageSize 10..500,
  default 50): ``{currentPage, pageSize, totalNum, totalPage, items}``, oldest
  first; ``status=done`` lists closed orders.
* ``GET /api/v1/orders/{orderId}``: one order (``isActive``, ``cancelExist``,
  ``dealSize``, ``dealFunds``, ``fee``, ``size``, ``price``, ``createdAt`` ms...).
* ``GET /api/v1/accounts?type=trade``: ``[{id, currency, type, balance,
  available, holds}]``.
* ``POST /api/v1/orders`` ``{clientOid, side, symbol, type, price, size,
  postOnly, timeInForce}`` → ``{"orderId"}`` (GTC and IOC).
* ``DELETE /api/v1/orders/{orderId}`` → ``{"cancelledOrderIds": [id]}``.

Private topics (protocols.md §2.7)
==================================

``/spotMarket/tradeOrdersV2`` (subject ``orderChange``) and
``/account/balance`` (subject ``account.balance``) on a private token; every
frame is ``{"type":"message","topic","subject","channelType":"private",
"userId","data"}`` and goes to every private subscription of the account.

* ``orderChange``: ``received``/``new`` on acceptance, ``match``/``match`` per
  fill (``matchPrice``, ``matchSize``, ``tradeId``, ``liquidity``
  maker|taker), ``open``/``open`` when the order rests, ``filled``/``done``
  and ``canceled``/``done``. ``ts`` is in nanoseconds; ``filledSize`` and
  ``remainSize`` are cumulative.
* ``account.balance``: after each operation, one message per currency whose
  total or hold changed: ``total, available, hold, availableChange,
  holdChange, relationEvent`` (``trade.hold``, ``trade.setted``,
  ``trade.hold_release``), ``relationEventId`` (the order id),
  ``relationContext``, ``time`` (ms, a string).

Faults
======

``private_fill_while_disconnected`` (``fraction`` 1.0, ``cancel`` False):
abort every private connection, then fill ``fraction`` of every resting
order as maker (and, with ``cancel``, cancel what remains), so the client
must learn it from the reconnect's REST reconciliation.
``private_drop`` (``count`` 1): withhold the next ``count`` private messages
from every current private connection. KuCoin numbers nothing on these
topics, so the loss is undetectable while connected: only the next
reconnect's reconciliation repairs the client's view. ``token_expiry`` (the
sim's) also expires private tokens.

Ground truth: :meth:`KucoinPrivate.final_orders` (``{order_id: {"status",
"cum_qty", "qty", "symbol", "side"}}``) and :meth:`final_balances`
(``{currency: total}``), plus ``"k": "private"`` truth records per frame.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import math
from collections.abc import Iterable, Mapping
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import parse_qs, urlsplit

from aiohttp import web

from gapless.sim import kucoin_wire as kw
from gapless.sim.accounts import (
    AccountSpec,
    ExecutionReport,
    Instrument,
    MatchingEngine,
    OrderRejected,
    OrderView,
    Record,
)

if TYPE_CHECKING:
    from gapless.sim.kucoin import KucoinSim, _Conn

__all__ = [
    "DEMO_KUCOIN_ACCOUNT",
    "PRIVATE_FAULT_DEFAULTS",
    "KucoinPrivate",
    "sign",
    "sign_passphrase",
]

_log = logging.getLogger("gapless.sim.kucoin")

TOPIC_ORDERS = "/spotMarket/tradeOrdersV2"
TOPIC_BALANCE = "/account/balance"
_PRIVATE_TOPICS = {TOPIC_ORDERS: "orderChange", TOPIC_BALANCE: "account.balance"}
TIMESTAMP_WINDOW_MS = 5000
"""protocols.md §2.2: KC-API-TIMESTAMP must be within 5 s of server time."""

PRIVATE_FAULT_DEFAULTS: dict[str, dict[str, Any]] = {
    "private_fill_while_disconnected": {"fraction": 1.0, "cancel": False},
    "private_drop": {"count": 1},
}
"""The private fault kinds and their parameter defaults (registered by sim/kucoin.py)."""

_DEMO_SECRET = "5c2d1e0f-9a8b-4c7d-8e6f-gapless-sim-kc"

DEMO_KUCOIN_ACCOUNT = AccountSpec(
    api_key="gapless-sim-kucoin-key",
    api_secret=_DEMO_SECRET,
    passphrase="gapless-sim-passphrase",
    balances={"USDT": "1000000", "BTC": "10", "ETH": "100", "KCS": "100000"},
)
"""The default account of the KuCoin simulator. Key, secret and passphrase are
public and work **only on the simulator**; they are not, and never were,
credentials for any real venue."""

_ASSET_PRECISION = 8


def sign(secret: str, timestamp_ms: str, method: str, path: str, body: str) -> str:
    """``KC-API-SIGN``: base64(HMAC-SHA256(secret, ts + METHOD + path + body)) (§2.2, TV-C1)."""
    text = f"{timestamp_ms}{method.upper()}{path}{body}"
    mac = hmac.new(secret.encode(), text.encode(), hashlib.sha256).digest()
    return base64.b64encode(mac).decode()


def sign_passphrase(secret: str, passphrase: str) -> str:
    """Key version 2 ``KC-API-PASSPHRASE``: base64(HMAC-SHA256(secret, passphrase))."""
    mac = hmac.new(secret.encode(), passphrase.encode(), hashlib.sha256).digest()
    return base64.b64encode(mac).decode()


class _Refusal(Exception):
    def __init__(self, http: int, code: str, msg: str) -> None:
        super().__init__(msg)
        self.http = http
        self.code = code
        self.msg = msg


def _fmt(value: Decimal) -> str:
    """Plain decimal text without exponent or trailing zeros."""
    text = format(value.normalize(), "f")
    return text if text != "-0" else "0"


class KucoinPrivate:
    """Accounts, signed REST and private subscriptions of one :class:`KucoinSim`."""

    def __init__(self, sim: KucoinSim, accounts: Iterable[AccountSpec]) -> None:
        self.sim = sim
        specs = list(accounts)
        for spec in specs:
            if not spec.passphrase:
                raise ValueError(f"KuCoin account {spec.api_key!r} needs a passphrase")
        self._specs = {s.api_key: s for s in specs}
        self._ids = 0
        instruments = []
        precisions: dict[str, int] = {}
        for pair in sim._pairs:
            base, _, quote = pair.symbol.partition("-")
            instruments.append(
                Instrument(
                    pair.symbol,
                    base,
                    quote,
                    pair.price_precision,
                    pair.qty_precision,
                    Decimal(pair.qty_min),
                    Decimal(pair.cost_min),
                )
            )
            precisions[base] = max(precisions.get(base, 0), _ASSET_PRECISION, pair.qty_precision)
            precisions[quote] = max(precisions.get(quote, 0), _ASSET_PRECISION)
        for spec in specs:
            for asset in spec.balances:
                precisions.setdefault(asset, _ASSET_PRECISION)
        self.engine = MatchingEngine(
            instruments,
            precisions,
            self._new_id,
            self._book,
            accounts=specs,
            maker_fee="0.001",
            taker_fee="0.001",
        )
        self.tokens: dict[str, str] = {}  # private token -> api key
        self._subs: dict[str, dict[_Conn, set[str]]] = {}  # api key -> conn -> topics
        self._withhold: dict[_Conn, int] = {}
        self._runner: web.AppRunner | None = None
        self.orders_port = 0
        self.frames = 0
        self.withheld = 0

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Start the plain-HTTP listener that also reads request bodies."""
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._aiohttp)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.sim.config.host, 0)
        await site.start()
        server = site._server
        assert server is not None
        sockets = getattr(server, "sockets", None) or []
        self.orders_port = sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def _aiohttp(self, request: web.Request) -> web.Response:
        body = await request.text() if request.can_read_body else ""
        status, obj = self.handle(request.method, request.raw_path, request.headers, body)
        return web.json_response(obj, status=status, dumps=_dumps)

    # ------------------------------------------------------------ engine glue

    def _new_id(self, kind: str) -> str:
        self._ids += 1
        if kind == "order":
            return f"{0x6700000000000000000000 + self._ids:024x}"
        return f"{self._ids}"

    def _book(self, symbol: str, side: Literal["bids", "asks"]) -> list[tuple[Decimal, Decimal]]:
        st = self.sim._syms[symbol]
        _, bids, asks = st.feed.snapshot(50)
        levels = bids if side == "bids" else asks
        return [(Decimal(p).scaleb(-st.pp), Decimal(q).scaleb(-st.qp)) for p, q in levels]

    def _us(self) -> int:
        return self.sim._ts()

    # ------------------------------------------------------------ truth

    def final_orders(self) -> dict[str, dict[str, str]]:
        out: dict[str, dict[str, str]] = {}
        for oid, v in self.engine.final_orders().items():
            out[oid] = {
                "status": "canceled" if v.status == "expired" else v.status,
                "cum_qty": _fmt(v.cum_qty),
                "qty": _fmt(v.qty),
                "symbol": v.symbol,
                "side": v.side,
                "account": v.account,
            }
        return out

    def final_balances(self, api_key: str | None = None) -> dict[str, str]:
        key = api_key or next(iter(self._specs))
        return {a: _fmt(t) for a, t in self.engine.balances(key).items()}

    # ------------------------------------------------------------ REST

    PATHS = ("/api/v1/bullet-private", "/api/v1/orders", "/api/v1/accounts")

    def handles(self, method: str, path: str) -> bool:
        route = urlsplit(path).path
        return route == self.PATHS[0] or route.startswith(self.PATHS[1:])

    def handle(
        self, method: str, raw_path: str, headers: Mapping[str, str], body: str
    ) -> tuple[int, Any]:
        """One private REST call → (HTTP status, JSON body)."""
        method = method.upper()
        try:
            key = self._verify(method, raw_path, headers, body)
            data = self._route(key, method, raw_path, body)
        except _Refusal as exc:
            return exc.http, {"code": exc.code, "msg": exc.msg}
        return 200, {"code": "200000", "data": data}

    def _verify(self, method: str, path: str, headers: Mapping[str, str], body: str) -> str:
        """§2.2, exactly: returns the account's API key or raises :class:`_Refusal`."""
        names = ("KC-API-KEY", "KC-API-SIGN", "KC-API-TIMESTAMP", "KC-API-PASSPHRASE")
        values = [headers.get(n) for n in names]
        if any(not v for v in values):
            raise _Refusal(401, "400001", "Please check the header of your request for KC-API-*")
        api_key, signature, ts, phrase = (str(v) for v in values)
        version = headers.get("KC-API-KEY-VERSION", "1")
        if not (ts.isascii() and ts.isdigit() and len(ts) <= 16):
            raise _Refusal(401, "400002", "Invalid KC-API-TIMESTAMP")
        now_ms = self._us() // 1000
        if abs(int(ts) - now_ms) > TIMESTAMP_WINDOW_MS:
            raise _Refusal(401, "400002", "Invalid KC-API-TIMESTAMP")
        spec = self._specs.get(api_key)
        if spec is None:
            raise _Refusal(401, "400003", "KC-API-KEY not exists")
        assert spec.passphrase is not None
        if version == "2":
            expected_phrase = sign_passphrase(spec.api_secret, spec.passphrase)
        elif version == "1":
            expected_phrase = spec.passphrase
        else:
            raise _Refusal(401, "400004", "Invalid KC-API-KEY-VERSION")
        if not hmac.compare_digest(phrase.encode(), expected_phrase.encode()):
            raise _Refusal(401, "400004", "Invalid KC-API-PASSPHRASE")
        expected = sign(spec.api_secret, ts, method, path, body)
        if not hmac.compare_digest(signature.encode(), expected.encode()):
            raise _Refusal(401, "400005", "Invalid KC-API-SIGN")
        return api_key

    def _route(self, key: str, method: str, raw_path: str, body: str) -> Any:
        url = urlsplit(raw_path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        path = url.path
        if method == "POST" and path == "/api/v1/bullet-private":
            return self._bullet(key)
        if method == "GET" and path == "/api/v1/accounts":
            return self._accounts(key, query.get("type"), query.get("currency"))
        if method == "GET" and path == "/api/v1/orders":
            return self._list(key, query)
        if method == "POST" and path == "/api/v1/orders":
            return self._place(key, body)
        if path.startswith("/api/v1/orders/"):
            oid = path.rpartition("/")[2]
            if method == "GET":
                v = self.engine.final_orders(key).get(oid)
                if v is None:
                    raise _Refusal(404, "400100", "order not exist.")
                return self._order_json(v)
            if method == "DELETE":
                return self._cancel(key, oid)
        raise _Refusal(404, "404000", "Not Found")

    def _bullet(self, key: str) -> dict[str, Any]:
        data = self.sim._bullet()
        self.tokens[data["token"]] = key
        return dict(data)

    def _accounts(self, key: str, typ: str | None, currency: str | None) -> list[dict[str, str]]:
        if typ not in (None, "trade"):
            return []
        acct = self.engine.account(key)
        out = []
        for n, (asset, total) in enumerate(sorted(acct.balances().items())):
            if currency is not None and asset != currency:
                continue
            hold = acct.hold(asset)
            out.append(
                {
                    "id": f"{n + 1:024x}",
                    "currency": asset,
                    "type": "trade",
                    "balance": _fmt(total),
                    "available": _fmt(total - hold),
                    "holds": _fmt(hold),
                }
            )
        return out

    def _list(self, key: str, query: dict[str, str]) -> dict[str, Any]:
        status = query.get("status", "active")
        try:
            page = int(query.get("currentPage", "1"))
            size = int(query.get("pageSize", "50"))
        except ValueError:
            raise _Refusal(400, "400100", "Parameter error") from None
        if page < 1 or not 10 <= size <= 500:
            raise _Refusal(400, "400100", "Parameter error")
        views = sorted(self.engine.final_orders(key).values(), key=lambda v: v.open_ts)
        if status == "active":
            views = [v for v in views if v.is_open]
        elif status == "done":
            views = [v for v in views if not v.is_open]
        else:
            raise _Refusal(400, "400100", "Parameter error")
        if sym := query.get("symbol"):
            views = [v for v in views if v.symbol == sym]
        total_page = max(1, math.ceil(len(views) / size))
        items = views[(page - 1) * size : page * size]
        return {
            "currentPage": page,
            "pageSize": size,
            "totalNum": len(views),
            "totalPage": total_page,
            "items": [self._order_json(v) for v in items],
        }

    def _order_json(self, v: OrderView) -> dict[str, Any]:
        return {
            "id": v.order_id,
            "symbol": v.symbol,
            "opType": "DEAL",
            "type": v.order_type,
            "side": v.side,
            "price": _fmt(v.limit_price) if v.limit_price is not None else "0",
            "size": _fmt(v.qty),
            "funds": "0",
            "dealFunds": _fmt(v.cum_cost),
            "dealSize": _fmt(v.cum_qty),
            "fee": _fmt(v.fee),
            "feeCurrency": v.instrument.quote,
            "stp": "",
            "timeInForce": v.time_in_force,
            "postOnly": v.post_only,
            "hidden": False,
            "iceberg": False,
            "clientOid": v.cl_ord_id or "",
            "remark": None,
            "tags": None,
            "isActive": v.is_open,
            "cancelExist": v.status in ("canceled", "expired"),
            "createdAt": v.open_ts // 1000,
            "tradeType": "TRADE",
        }

    def _place(self, key: str, body: str) -> dict[str, str]:
        try:
            req = json.loads(body) if body else {}
        except ValueError:
            raise _Refusal(400, "400100", "Invalid JSON body") from None
        if not isinstance(req, dict):
            raise _Refusal(400, "400100", "Invalid JSON body")
        try:
            size = Decimal(str(req.get("size", "")))
            price = Decimal(str(req["price"])) if req.get("price") not in (None, "") else None
        except InvalidOperation:
            raise _Refusal(200, "400100", "Parameter error: size/price") from None
        otype = str(req.get("type", "limit"))
        cl = req.get("clientOid")
        if cl is not None and (not isinstance(cl, str) or not 0 < len(cl) <= 40):
            raise _Refusal(200, "400100", "clientOid must be 1-40 characters")
        ts = self._us()
        before = self._balances(key)
        try:
            view, records = self.engine.add_order(
                key,
                symbol=str(req.get("symbol", "")),
                side=str(req.get("side", "")),
                order_type=otype,
                qty=size,
                limit_price=price,
                time_in_force=str(req.get("timeInForce", "GTC")),
                post_only=bool(req.get("postOnly", False)),
                cl_ord_id=cl,
                ts=ts,
            )
        except OrderRejected as exc:
            code = "200004" if "Insufficient" in exc.error else "400100"
            raise _Refusal(200, code, exc.error) from None
        self._publish(key, records, before, ts)
        return {"orderId": view.order_id}

    def _cancel(self, key: str, oid: str) -> dict[str, list[str]]:
        ts = self._us()
        before = self._balances(key)
        try:
            records = self.engine.cancel(key, oid, ts)
        except OrderRejected:
            raise _Refusal(200, "400100", "order not exist or not allow to be cancelled") from None
        self._publish(key, records, before, ts)
        return {"cancelledOrderIds": [oid]}

    # ------------------------------------------------------------ WebSocket

    def on_subscription(self, conn: _Conn, kind: str, obj: dict[str, Any], req_id: str) -> bool:
        """A private topic: handle it (True) or let the public code (False)."""
        topic = obj.get("topic")
        if topic not in _PRIVATE_TOPICS:
            return False
        key = self.tokens.get(conn.token)
        if key is None or obj.get("privateChannel") is not True:
            why = "a private topic needs a bullet-private token and privateChannel:true"
            self.sim._send(conn, kw.error(req_id, 403, why))
            return True
        topics = self._subs.setdefault(key, {}).setdefault(conn, set())
        if kind == "subscribe":
            topics.add(str(topic))
        else:
            topics.discard(str(topic))
        if obj.get("response") is True:
            self.sim._send(conn, kw.dumps({"id": req_id, "type": "ack"}))
        return True

    def drop(self, conn: _Conn) -> None:
        for subs in self._subs.values():
            subs.pop(conn, None)
        self._withhold.pop(conn, None)

    def _push(self, key: str, topic: str, data: dict[str, Any], ts: int) -> None:
        subs = self._subs.get(key)
        self.sim._record(
            {
                "k": "private",
                "venue": "kucoin",
                "topic": topic,
                "ts_ns": ts * 1000,
                "id": data.get("orderId") or data.get("currency"),
            }
        )
        if not subs:
            return
        text = _dumps(
            {
                "type": "message",
                "topic": topic,
                "subject": _PRIVATE_TOPICS[topic],
                "channelType": "private",
                "userId": self._user_id(key),
                "data": data,
            }
        )
        for conn, topics in list(subs.items()):
            if topic not in topics:
                continue
            left = self._withhold.get(conn, 0)
            if left > 0:
                self._withhold[conn] = left - 1
                self.withheld += 1
                continue
            self.frames += 1
            self.sim._send(conn, text)

    def _user_id(self, key: str) -> str:
        return hashlib.sha256(key.encode()).hexdigest()[:24]

    def _balances(self, key: str) -> dict[str, tuple[Decimal, Decimal]]:
        acct = self.engine.account(key)
        return {a: (t, acct.hold(a)) for a, t in acct.balances().items()}

    def _publish(
        self,
        key: str,
        records: list[Record],
        before: dict[str, tuple[Decimal, Decimal]],
        ts: int,
    ) -> None:
        """orderChange per report, then account.balance per changed currency."""
        opened: dict[str, OrderView] = {}
        cause: dict[str, str] = {}
        for rec in records:
            if not isinstance(rec, ExecutionReport) or rec.account != key:
                continue
            v = rec.order
            opened.pop(v.order_id, None)
            if rec.exec_type == "new":
                self._push(key, TOPIC_ORDERS, self._change(v, "received", "new", rec.ts), rec.ts)
                opened[v.order_id] = v
                cause.setdefault(v.order_id, "trade.hold")
            elif rec.exec_type == "trade":
                assert rec.fill is not None
                f = rec.fill
                data = self._change(v, "match", "match", rec.ts)
                data.update(
                    matchPrice=_fmt(f.price),
                    matchSize=_fmt(f.qty),
                    tradeId=str(f.trade_id),
                    liquidity="maker" if f.liquidity == "m" else "taker",
                )
                self._push(key, TOPIC_ORDERS, data, rec.ts)
                if v.is_open:
                    opened[v.order_id] = v
                cause[v.order_id] = "trade.setted"
            elif rec.exec_type == "filled":
                self._push(key, TOPIC_ORDERS, self._change(v, "filled", "done", rec.ts), rec.ts)
                cause[v.order_id] = "trade.setted"
            else:
                data = self._change(v, "canceled", "done", rec.ts)
                data["canceledSize"] = _fmt(v.qty - v.cum_qty)
                self._push(key, TOPIC_ORDERS, data, rec.ts)
                cause.setdefault(v.order_id, "trade.hold_release")
                if cause[v.order_id] == "trade.hold":
                    cause[v.order_id] = "trade.hold_release"
        for v in opened.values():
            if v.is_open and v.order_type == "limit":
                self._push(key, TOPIC_ORDERS, self._change(v, "open", "open", ts), ts)
        after = self._balances(key)
        ref = next(iter(cause), None)
        event = cause.get(ref, "trade.setted") if ref is not None else "trade.setted"
        symbol = None
        if ref is not None:
            view = self.engine.final_orders(key).get(ref)
            symbol = view.symbol if view is not None else None
        for asset in sorted(set(before) | set(after)):
            b_total, b_hold = before.get(asset, (Decimal(0), Decimal(0)))
            a_total, a_hold = after.get(asset, (Decimal(0), Decimal(0)))
            if (b_total, b_hold) == (a_total, a_hold):
                continue
            data = {
                "accountId": hashlib.sha256(f"{key}:{asset}".encode()).hexdigest()[:24],
                "currency": asset,
                "total": _fmt(a_total),
                "available": _fmt(a_total - a_hold),
                "hold": _fmt(a_hold),
                "availableChange": _fmt((a_total - a_hold) - (b_total - b_hold)),
                "holdChange": _fmt(a_hold - b_hold),
                "relationEvent": event,
                "relationEventId": ref or "",
                "relationContext": {"symbol": symbol or "", "orderId": ref or ""},
                "time": str(ts // 1000),
            }
            self._push(key, TOPIC_BALANCE, data, ts)

    @staticmethod
    def _change(v: OrderView, typ: str, status: str, ts: int) -> dict[str, Any]:
        data: dict[str, Any] = {
            "orderId": v.order_id,
            "clientOid": v.cl_ord_id or "",
            "symbol": v.symbol,
            "side": v.side,
            "orderType": v.order_type,
            "type": typ,
            "status": status,
            "size": _fmt(v.qty),
            "originSize": _fmt(v.qty),
            "filledSize": _fmt(v.cum_qty),
            "remainSize": _fmt(v.qty - v.cum_qty) if v.is_open else "0",
            "orderTime": v.open_ts * 1000,
            "ts": ts * 1000,
        }
        if v.limit_price is not None:
            data["price"] = _fmt(v.limit_price)
        return data

    # ------------------------------------------------------------ market hook

    def on_public_trade(self, symbol: str, price: Decimal, size: Decimal, side: str) -> None:
        """A public trade printed: resting orders at or through it fill as maker."""
        if not self.engine.has_open_orders():
            return
        ts = self._us()
        befores = {key: self._balances(key) for key in self.engine.accounts}
        records = self.engine.on_public_trade(symbol, price, size, side, ts)
        if not records:
            return
        for key, before in befores.items():
            self._publish(key, records, before, ts)

    # ------------------------------------------------------------ faults

    def fill_while_disconnected(self, fraction: float = 1.0, cancel: bool = False) -> int:
        """Abort every private connection, then fill (and optionally cancel) resting orders."""
        for subs in self._subs.values():
            for conn in list(subs):
                self.sim._abort(conn, "fault")
        filled = 0
        for key in list(self.engine.accounts):
            ts = self._us()
            before = self._balances(key)
            records = self.engine.force_fill(key, None, Decimal(repr(fraction)), ts)
            if cancel:
                records.extend(self.engine.cancel_all(key, ts)[1])
            filled += sum(
                1 for r in records if isinstance(r, ExecutionReport) and r.exec_type == "trade"
            )
            self._publish(key, records, before, ts)
        return filled

    def drop_next(self, count: int) -> None:
        """Withhold the next ``count`` private messages from every private connection."""
        for subs in self._subs.values():
            for conn in subs:
                self._withhold[conn] = self._withhold.get(conn, 0) + count

    def inject(self, kind: str, p: Mapping[str, Any]) -> None:
        if kind == "private_fill_while_disconnected":
            frac = p["fraction"]
            if not isinstance(frac, int | float) or isinstance(frac, bool) or not 0 < frac <= 1:
                raise ValueError("private_fill_while_disconnected fraction must be in (0, 1]")
            self.fill_while_disconnected(float(frac), bool(p["cancel"]))
        elif kind == "private_drop":
            count = p["count"]
            if not isinstance(count, int) or isinstance(count, bool) or count < 1:
                raise ValueError("private_drop count must be an int >= 1")
            self.drop_next(count)


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"))
