"""Venue-neutral simulated accounts and a small matching engine (pure: no I/O, no clock).

Used by the venue simulators' private sides (Kraken first, protocols.md §1.10,
§1.11, §5 item 4). Each venue turns the records produced here into its own
wire format; nothing in this module knows a venue's message shapes, id
formats or error *transport* (errors are Kraken-style texts such as
``EOrder:Insufficient funds``, which other venues map to their own codes).

Money
=====

Every amount is an exact :class:`~decimal.Decimal`. Each asset has a
precision (decimal places) given by the venue; balances and ledger amounts
are always exact multiples of it. Quantities are at the instrument's
``qty_precision`` (which must not exceed the base asset's precision), prices
at its ``price_precision``. A fill's ``cost`` (price x qty) is exact.

Ledger rounding is cumulative per order, so it never drifts: after fills
with exact cumulative cost ``C`` and exact cumulative fee ``F`` the order has
posted exactly ``round(C)`` and ``round(F)`` to the quote asset (half-up at
the quote precision); each fill posts the difference. Fees are charged in the
quote asset: ``maker_fee`` (0.16 %) for resting orders, ``taker_fee``
(0.26 %) for orders that take liquidity. Every ledger entry changes its
asset's total by exactly ``amount - fee`` (``amount`` is signed, ``fee`` >=
0; a buy's quote entry has a negative ``amount``, a sell's a positive one).

Holds
=====

Balances have a ``total`` and a ``hold`` (``available = total - hold``). A
limit buy holds ``ceil(qty x limit) + ceil(qty x limit x taker_fee)`` of the
quote asset (the most it can ever consume); a market buy holds the same for
the cost of its planned fills; a sell holds ``qty`` of the base asset. Fills
consume the hold, and whatever is left is released when the order closes.
An order whose hold exceeds the available balance is rejected with
``EOrder:Insufficient funds``.

Matching
========

The other side of every private order is the venue's *public* market, read
through a :data:`BookSource` callback (levels best first). Private fills do
**not** modify the public book or print public trades: the public ground
truth (books, checksums, trade ids) stays exactly what the seeded market
generates, whatever a client trades. The price of that choice: the same
visible liquidity can be taken again by the next private order.

* A marketable order (a limit crossing the opposite best, or a market order)
  fills at once as taker, level by level at each level's price, up to each
  level's visible qty (and, for a limit, only at prices at or better than the
  limit). A ``post_only`` order that would cross is rejected
  (``EOrder:Post only order``). The unfilled remainder of a market or IOC
  order is canceled (status ``canceled``, reason ``Immediate or cancel``;
  ``expired`` is never produced: there is no GTD).
* A resting limit order fills as maker when the venue reports a public trade
  at or through its price (:meth:`MatchingEngine.on_public_trade`): fill qty
  = min(the trade's qty left, remaining), at the order's limit price. Resting
  orders share one public trade in price-time priority.
* :meth:`MatchingEngine.force_fill` fills resting orders at their limit
  price on demand (a fault hook), deterministically.

Records
=======

Every state change returns records, in order: :class:`ExecutionReport`
(``new`` on acceptance; ``trade`` per fill, with :class:`ExecFill`;
``filled`` after the fill that completes the order; ``canceled``),
:class:`LedgerEntry` (two per fill, base then quote, sharing ``ref_id`` =
the fill's ``exec_id``) and :class:`DmsFired`.

Dead man's switch (protocols.md §1.11)
======================================

:meth:`MatchingEngine.arm` sets ``deadline = now + timeout`` per account (0
disarms); :meth:`MatchingEngine.check_dms` cancels every open order of each
account whose deadline passed and disarms it until the next non-zero call.
Times are integer microseconds supplied by the caller.
"""

from __future__ import annotations

import base64
import hashlib
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, ROUND_DOWN, ROUND_HALF_EVEN, ROUND_HALF_UP, Context, Decimal
from typing import Literal

from gapless.sim.market import DEFAULT_PAIRS, PairSpec

__all__ = [
    "DEMO_KRAKEN_ACCOUNT",
    "Account",
    "AccountSpec",
    "BookSource",
    "DmsFired",
    "ExecFill",
    "ExecType",
    "ExecutionReport",
    "Instrument",
    "LedgerEntry",
    "MatchingEngine",
    "OrderRejected",
    "OrderStatus",
    "OrderView",
    "Record",
]

Side = Literal["buy", "sell"]
OrderType = Literal["limit", "market"]
TimeInForce = Literal["GTC", "IOC"]
OrderStatus = Literal["new", "partially_filled", "filled", "canceled", "expired"]
ExecType = Literal["new", "trade", "filled", "canceled", "expired"]
Liquidity = Literal["t", "m"]

BookSource = Callable[[str, Literal["bids", "asks"]], Iterable[tuple[Decimal, Decimal]]]
"""``(symbol, "bids" | "asks")`` -> the public book's visible levels, best first."""

_CTX = Context(prec=80)
"""Exact arithmetic for every product/sum here (inputs have far fewer digits)."""

_ZERO = Decimal(0)


class OrderRejected(Exception):
    """An order request refused; ``error`` is the Kraken-style error text."""

    def __init__(self, error: str) -> None:
        super().__init__(error)
        self.error = error


@dataclass(frozen=True)
class AccountSpec:
    """One simulated account: credentials and initial balances (``{asset: decimal text}``)."""

    api_key: str
    api_secret: str = field(repr=False)
    balances: Mapping[str, str] = field(default_factory=dict, hash=False)
    passphrase: str | None = field(default=None, repr=False)


_DEMO_SECRET = base64.b64encode(hashlib.sha512(b"gapless-sim-demo-secret").digest()).decode()

DEMO_KRAKEN_ACCOUNT = AccountSpec(
    api_key="gapless-sim-demo-key",
    api_secret=_DEMO_SECRET,
    balances={
        "USD": "1000000",
        "BTC": "10",
        "ETH": "100",
        **{p.base: "1000000" for p in DEFAULT_PAIRS if p.base not in ("BTC", "ETH")},
    },
)
"""The default account of the Kraken simulator.

The key and secret (base64 of 64 fixed bytes) are public and work **only on
the simulator**; they are not, and never were, credentials for any real
venue. Balances: USD 1,000,000, BTC 10, ETH 100 and 1,000,000 of every other
base asset of :data:`gapless.sim.market.DEFAULT_PAIRS`.
"""


@dataclass(frozen=True)
class Instrument:
    """What the engine needs to know about a pair (venue-neutral)."""

    symbol: str
    base: str
    quote: str
    price_precision: int
    qty_precision: int
    qty_min: Decimal = _ZERO
    cost_min: Decimal = _ZERO

    @classmethod
    def from_pair(cls, pair: PairSpec) -> Instrument:
        return cls(
            pair.symbol,
            pair.base,
            pair.quote,
            pair.price_precision,
            pair.qty_precision,
            Decimal(pair.qty_min),
            Decimal(pair.cost_min),
        )


def _unit(prec: int) -> Decimal:
    return Decimal(1).scaleb(-prec)


def _round(value: Decimal, prec: int, rounding: str = ROUND_HALF_UP) -> Decimal:
    return value.quantize(_unit(prec), rounding=rounding, context=_CTX)


def _on_grid(value: Decimal, prec: int) -> bool:
    return value == value.quantize(_unit(prec), rounding=ROUND_DOWN, context=_CTX)


@dataclass(frozen=True)
class OrderView:
    """An immutable snapshot of an order (what reports and queries carry).

    ``cum_cost`` is exact; ``avg_price`` is ``cum_cost / cum_qty`` at the
    price precision (half-even; 0 before the first fill); ``fee`` is what was
    posted to the ledger so far (quote asset). Times are microseconds;
    ``last_ts`` is the time of the order's latest change.
    """

    order_id: str
    account: str
    cl_ord_id: str | None
    instrument: Instrument
    side: Side
    order_type: OrderType
    qty: Decimal
    limit_price: Decimal | None
    time_in_force: TimeInForce
    post_only: bool
    status: OrderStatus
    cum_qty: Decimal
    cum_cost: Decimal
    avg_price: Decimal
    fee: Decimal
    open_ts: int
    last_ts: int
    close_ts: int | None
    reason: str | None

    @property
    def symbol(self) -> str:
        return self.instrument.symbol

    @property
    def is_open(self) -> bool:
        return self.status in ("new", "partially_filled")


@dataclass(frozen=True)
class ExecFill:
    """The fill part of a ``trade`` report. ``fee`` is in ``fee_asset`` (the quote)."""

    exec_id: str
    trade_id: int
    qty: Decimal
    price: Decimal
    cost: Decimal
    liquidity: Liquidity
    fee: Decimal
    fee_asset: str


@dataclass(frozen=True)
class ExecutionReport:
    account: str
    exec_type: ExecType
    order: OrderView
    ts: int
    fill: ExecFill | None = None


@dataclass(frozen=True)
class LedgerEntry:
    """One balance change: the asset's total changes by ``amount - fee``;
    ``balance`` is the new total."""

    account: str
    ledger_id: str
    ref_id: str
    ts: int
    asset: str
    amount: Decimal
    fee: Decimal
    balance: Decimal
    type: str = "trade"


@dataclass(frozen=True)
class DmsFired:
    """The dead man's switch of ``account`` fired at ``ts`` and canceled ``canceled`` orders."""

    account: str
    ts: int
    canceled: int


Record = ExecutionReport | LedgerEntry | DmsFired


@dataclass
class _Balance:
    total: Decimal
    hold: Decimal = _ZERO


@dataclass
class _Order:
    order_id: str
    account: str
    cl_ord_id: str | None
    inst: Instrument
    side: Side
    order_type: OrderType
    qty: Decimal
    limit_price: Decimal | None
    tif: TimeInForce
    post_only: bool
    open_ts: int
    seq: int
    hold_asset: str
    hold: Decimal = _ZERO
    status: OrderStatus = "new"
    cum_qty: Decimal = _ZERO
    cum_cost: Decimal = _ZERO
    fee_exact: Decimal = _ZERO
    quote_posted: Decimal = _ZERO
    fee_posted: Decimal = _ZERO
    last_ts: int = 0
    close_ts: int | None = None
    reason: str | None = None

    @property
    def remaining(self) -> Decimal:
        return self.qty - self.cum_qty

    def view(self) -> OrderView:
        pp = self.inst.price_precision
        if self.cum_qty > 0:
            avg = _round(_CTX.divide(self.cum_cost, self.cum_qty), pp, ROUND_HALF_EVEN)
        else:
            avg = _round(_ZERO, pp)
        return OrderView(
            order_id=self.order_id,
            account=self.account,
            cl_ord_id=self.cl_ord_id,
            instrument=self.inst,
            side=self.side,
            order_type=self.order_type,
            qty=self.qty,
            limit_price=self.limit_price,
            time_in_force=self.tif,
            post_only=self.post_only,
            status=self.status,
            cum_qty=self.cum_qty,
            cum_cost=self.cum_cost,
            avg_price=avg,
            fee=self.fee_posted,
            open_ts=self.open_ts,
            last_ts=self.last_ts,
            close_ts=self.close_ts,
            reason=self.reason,
        )


class Account:
    """Balances, orders and the dead man's switch of one account."""

    def __init__(self, spec: AccountSpec, precisions: Mapping[str, int], recent: int) -> None:
        self.spec = spec
        self._prec = precisions
        self._bal: dict[str, _Balance] = {}
        for asset, text in spec.balances.items():
            amount = Decimal(text)
            if asset not in precisions:
                raise ValueError(f"account {spec.api_key!r}: no precision for asset {asset!r}")
            if amount < 0 or not _on_grid(amount, precisions[asset]):
                raise ValueError(f"account {spec.api_key!r}: bad balance {asset}={text!r}")
            self._bal[asset] = _Balance(_round(amount, precisions[asset]))
        self.orders: dict[str, _Order] = {}
        self.open: dict[str, _Order] = {}
        self.closed: deque[str] = deque()  # ids of closed orders, oldest first
        self.forgotten = 0  # closed orders dropped beyond the engine's keep_closed
        self.dms_deadline: int | None = None
        self.fills: deque[ExecutionReport] = deque(maxlen=max(1, recent))

    @property
    def api_key(self) -> str:
        return self.spec.api_key

    def _b(self, asset: str) -> _Balance:
        b = self._bal.get(asset)
        if b is None:
            b = self._bal[asset] = _Balance(_round(_ZERO, self._prec[asset]))
        return b

    def total(self, asset: str) -> Decimal:
        return self._b(asset).total

    def hold(self, asset: str) -> Decimal:
        return self._b(asset).hold

    def available(self, asset: str) -> Decimal:
        b = self._b(asset)
        return b.total - b.hold

    def balances(self) -> dict[str, Decimal]:
        """Totals (held funds included) of every asset the account has touched."""
        return {a: b.total for a, b in self._bal.items()}

    def holds(self) -> dict[str, Decimal]:
        return {a: b.hold for a, b in self._bal.items()}


class MatchingEngine:
    """Accounts plus matching against the public market (see the module docstring).

    ``new_id(kind)`` returns a fresh id for ``kind`` in ``order`` | ``exec`` |
    ``ledger`` (each venue has its own format). Trade ids are ints from a
    counter starting at ``first_trade_id``. ``asset_precisions`` must cover
    every asset of ``instruments`` and of the accounts' balances.
    ``keep_closed``: remember at most that many closed orders per account (the
    oldest closed are forgotten, as a venue's history does; counted in
    ``Account.forgotten``); None keeps every order (the default: tests and the
    demo compare them all).
    """

    def __init__(
        self,
        instruments: Sequence[Instrument],
        asset_precisions: Mapping[str, int],
        new_id: Callable[[str], str],
        book: BookSource,
        *,
        accounts: Sequence[AccountSpec] = (),
        maker_fee: Decimal | str = "0.0016",
        taker_fee: Decimal | str = "0.0026",
        first_trade_id: int = 1,
        recent_fills: int = 50,
        keep_closed: int | None = None,
    ) -> None:
        if keep_closed is not None and keep_closed < 0:
            raise ValueError("keep_closed must be >= 0 or None")
        self._keep_closed = keep_closed
        self.instruments = {i.symbol: i for i in instruments}
        self.precisions = dict(asset_precisions)
        for inst in instruments:
            for asset in (inst.base, inst.quote):
                if asset not in self.precisions:
                    raise ValueError(f"no precision for asset {asset!r}")
            if self.precisions[inst.base] < inst.qty_precision:
                raise ValueError(f"{inst.symbol}: base precision below qty precision")
        self._new_id = new_id
        self._book = book
        self.maker_fee = Decimal(maker_fee)
        self.taker_fee = Decimal(taker_fee)
        self._next_trade_id = first_trade_id
        self._recent = recent_fills
        self._seq = 0
        self.accounts: dict[str, Account] = {}
        for spec in accounts:
            self.add_account(spec)

    # ------------------------------------------------------------ accounts

    def add_account(self, spec: AccountSpec) -> Account:
        if spec.api_key in self.accounts:
            raise ValueError(f"duplicate account {spec.api_key!r}")
        acct = Account(spec, self.precisions, self._recent)
        self.accounts[spec.api_key] = acct
        return acct

    def account(self, api_key: str) -> Account:
        return self.accounts[api_key]

    def balances(self, api_key: str) -> dict[str, Decimal]:
        return self.accounts[api_key].balances()

    def snapshot_orders(self, api_key: str) -> list[OrderView]:
        """Open orders, oldest first."""
        return [o.view() for o in self.accounts[api_key].open.values()]

    def final_orders(self, api_key: str | None = None) -> dict[str, OrderView]:
        """Every order ever accepted (one account, or all), with its current state."""
        accts = self.accounts.values() if api_key is None else [self.accounts[api_key]]
        return {oid: o.view() for a in accts for oid, o in a.orders.items()}

    def order(self, api_key: str, order_id: str) -> OrderView | None:
        o = self.accounts[api_key].orders.get(order_id)
        return None if o is None else o.view()

    def recent_fills(self, api_key: str) -> list[ExecutionReport]:
        """The account's latest ``recent_fills`` trade reports, oldest first."""
        return list(self.accounts[api_key].fills)

    def has_open_orders(self) -> bool:
        return any(a.open for a in self.accounts.values())

    # -------------------------------------------------------------- orders

    def add_order(
        self,
        api_key: str,
        *,
        symbol: str,
        side: str,
        order_type: str,
        qty: Decimal,
        limit_price: Decimal | None = None,
        time_in_force: str = "GTC",
        post_only: bool = False,
        cl_ord_id: str | None = None,
        ts: int,
    ) -> tuple[OrderView, list[Record]]:
        """Validate, hold funds, match as taker, rest the remainder (GTC limit only).

        Raises :class:`OrderRejected` (nothing changes then).
        """
        acct = self.accounts[api_key]
        inst = self.instruments.get(symbol)
        if inst is None:
            raise OrderRejected("EQuery:Unknown asset pair")
        if side not in ("buy", "sell"):
            raise OrderRejected("EGeneral:Invalid arguments:side")
        if order_type not in ("limit", "market"):
            raise OrderRejected("EGeneral:Invalid arguments:order_type")
        tif = time_in_force.upper()
        if tif not in ("GTC", "IOC"):
            raise OrderRejected("EGeneral:Invalid arguments:time_in_force")
        if qty <= 0 or not _on_grid(qty, inst.qty_precision):
            raise OrderRejected("EGeneral:Invalid arguments:order_qty")
        if qty < inst.qty_min:
            raise OrderRejected("EOrder:Order minimum not met")
        if order_type == "limit":
            if limit_price is None or limit_price <= 0:
                raise OrderRejected("EGeneral:Invalid arguments:limit_price")
            if not _on_grid(limit_price, inst.price_precision):
                raise OrderRejected("EGeneral:Invalid arguments:limit_price")
            if _CTX.multiply(qty, limit_price) < inst.cost_min:
                raise OrderRejected("EOrder:Cost minimum not met")
            limit = _round(limit_price, inst.price_precision)
        else:
            if post_only:
                raise OrderRejected("EGeneral:Invalid arguments:post_only")
            limit = None
            tif = "IOC"
        if post_only and tif == "IOC":
            raise OrderRejected("EGeneral:Invalid arguments:post_only")
        if cl_ord_id is not None and any(o.cl_ord_id == cl_ord_id for o in acct.open.values()):
            raise OrderRejected("EOrder:Duplicate cl_ord_id")
        qty = _round(qty, inst.qty_precision)

        book_side: Literal["bids", "asks"] = "asks" if side == "buy" else "bids"
        plan: list[tuple[Decimal, Decimal]] = []
        left = qty
        for price, level_qty in self._book(symbol, book_side):
            if limit is not None and (price > limit if side == "buy" else price < limit):
                break
            if post_only:
                raise OrderRejected("EOrder:Post only order")
            take = min(level_qty, left)
            if take > 0:
                plan.append((price, take))
                left -= take
            if left <= 0:
                break

        qprec = self.precisions[inst.quote]
        if side == "buy":
            hold_asset = inst.quote
            if limit is not None:
                notional = _CTX.multiply(qty, limit)
            else:
                notional = _ZERO
                for p, q in plan:
                    notional = _CTX.add(notional, _CTX.multiply(p, q))
            hold = _round(notional, qprec, ROUND_CEILING) + _round(
                _CTX.multiply(notional, self.taker_fee), qprec, ROUND_CEILING
            )
        else:
            hold_asset = inst.base
            hold = qty
        if acct.available(hold_asset) < hold:
            raise OrderRejected("EOrder:Insufficient funds")

        self._seq += 1
        order = _Order(
            order_id=self._new_id("order"),
            account=api_key,
            cl_ord_id=cl_ord_id,
            inst=inst,
            side="buy" if side == "buy" else "sell",
            order_type="limit" if order_type == "limit" else "market",
            qty=qty,
            limit_price=limit,
            tif="IOC" if tif == "IOC" else "GTC",
            post_only=post_only,
            open_ts=ts,
            seq=self._seq,
            hold_asset=hold_asset,
            hold=hold,
            last_ts=ts,
        )
        acct._b(hold_asset).hold += hold
        acct.orders[order.order_id] = order
        acct.open[order.order_id] = order
        records: list[Record] = [ExecutionReport(api_key, "new", order.view(), ts)]
        for price, take in plan:
            records.extend(self._fill(acct, order, price, take, "t", ts))
        if order.status in ("new", "partially_filled") and order.tif == "IOC":
            records.append(self._close(acct, order, "canceled", "Immediate or cancel", ts))
        return order.view(), records

    def cancel(
        self, api_key: str, order_id: str, ts: int, reason: str = "User requested"
    ) -> list[Record]:
        """Cancel one open order; ``EOrder:Unknown order`` if it is not open."""
        acct = self.accounts[api_key]
        order = acct.open.get(order_id)
        if order is None:
            raise OrderRejected("EOrder:Unknown order")
        return [self._close(acct, order, "canceled", reason, ts)]

    def find_open_by_cl(self, api_key: str, cl_ord_id: str) -> str | None:
        for o in self.accounts[api_key].open.values():
            if o.cl_ord_id == cl_ord_id:
                return o.order_id
        return None

    def cancel_all(
        self, api_key: str, ts: int, reason: str = "User requested"
    ) -> tuple[int, list[Record]]:
        """Cancel every open order of the account, oldest first; return (count, records)."""
        acct = self.accounts[api_key]
        records: list[Record] = [
            self._close(acct, o, "canceled", reason, ts) for o in list(acct.open.values())
        ]
        return len(records), records

    # ------------------------------------------------------------- matching

    def on_public_trade(
        self, symbol: str, price: Decimal, qty: Decimal, side: str, ts: int
    ) -> list[Record]:
        """A public trade printed (``side`` = taker side): resting orders at or through
        ``price`` on the other side fill as maker, in price-time priority."""
        cands: list[tuple[Account, _Order]] = []
        for acct in self.accounts.values():
            for o in acct.open.values():
                if o.inst.symbol != symbol or o.limit_price is None:
                    continue
                through = o.limit_price <= price if o.side == "sell" else o.limit_price >= price
                if o.side != side and through:
                    cands.append((acct, o))
        if not cands:
            return []

        def priority(item: tuple[Account, _Order]) -> tuple[Decimal, int]:
            o = item[1]
            assert o.limit_price is not None
            return (o.limit_price if o.side == "sell" else -o.limit_price, o.seq)

        cands.sort(key=priority)
        left = qty
        records: list[Record] = []
        for acct, o in cands:
            if left <= 0:
                break
            take = min(left, o.remaining)
            assert o.limit_price is not None
            records.extend(self._fill(acct, o, o.limit_price, take, "m", ts))
            left -= take
        return records

    def force_fill(
        self, api_key: str, order_id: str | None, fraction: float | Decimal, ts: int
    ) -> list[Record]:
        """Fill ``fraction`` of the remaining qty (rounded down to the qty precision; all
        of it when ``fraction`` >= 1) of one resting order, or of every resting order of
        the account (``order_id`` None, oldest first), as maker at its limit price."""
        acct = self.accounts[api_key]
        frac = Decimal(repr(fraction)) if isinstance(fraction, float) else Decimal(fraction)
        if order_id is not None:
            if order_id not in acct.open:
                raise OrderRejected("EOrder:Unknown order")
            targets = [acct.open[order_id]]
        else:
            targets = list(acct.open.values())
        records: list[Record] = []
        for o in targets:
            if o.limit_price is None or frac <= 0:
                continue
            if frac >= 1:
                take = o.remaining
            else:
                take = _round(_CTX.multiply(o.remaining, frac), o.inst.qty_precision, ROUND_DOWN)
            if take > 0:
                records.extend(self._fill(acct, o, o.limit_price, take, "m", ts))
        return records

    # ------------------------------------------------------ dead man's switch

    def arm(self, api_key: str, timeout_s: int, now: int) -> int | None:
        """Arm (or push back) the account's switch: deadline ``now + timeout_s``
        (microseconds); 0 disarms. Returns the deadline (None when disarmed)."""
        acct = self.accounts[api_key]
        acct.dms_deadline = None if timeout_s <= 0 else now + timeout_s * 1_000_000
        return acct.dms_deadline

    def dms_due(self, now: int) -> bool:
        return any(
            a.dms_deadline is not None and a.dms_deadline <= now for a in self.accounts.values()
        )

    def check_dms(self, now: int) -> list[Record]:
        """Fire every switch whose deadline is <= ``now``: a :class:`DmsFired` record,
        then the cancels; the switch stays off until armed again (§1.11)."""
        records: list[Record] = []
        for acct in self.accounts.values():
            if acct.dms_deadline is None or acct.dms_deadline > now:
                continue
            acct.dms_deadline = None
            count, cancels = self.cancel_all(acct.api_key, now, "Dead man's switch")
            records.append(DmsFired(acct.api_key, now, count))
            records.extend(cancels)
        return records

    # ------------------------------------------------------------ internals

    def _ledger(
        self, acct: Account, ref_id: str, ts: int, asset: str, amount: Decimal, fee: Decimal
    ) -> LedgerEntry:
        b = acct._b(asset)
        b.total += amount - fee
        assert b.total >= 0, f"{acct.api_key} {asset} went negative"
        return LedgerEntry(
            acct.api_key, self._new_id("ledger"), ref_id, ts, asset, amount, fee, b.total
        )

    def _fill(
        self,
        acct: Account,
        o: _Order,
        price: Decimal,
        qty: Decimal,
        liquidity: Liquidity,
        ts: int,
    ) -> list[Record]:
        inst = o.inst
        qprec = self.precisions[inst.quote]
        bprec = self.precisions[inst.base]
        cost = _CTX.multiply(price, qty)
        rate = self.taker_fee if liquidity == "t" else self.maker_fee
        o.cum_qty += qty
        o.cum_cost = _CTX.add(o.cum_cost, cost)
        o.fee_exact = _CTX.add(o.fee_exact, _CTX.multiply(cost, rate))
        posted = _round(o.cum_cost, qprec)
        fee_posted = _round(o.fee_exact, qprec)
        d_quote = posted - o.quote_posted
        d_fee = fee_posted - o.fee_posted
        o.quote_posted = posted
        o.fee_posted = fee_posted
        base_amt = _round(qty, bprec)
        if o.side == "buy":
            consumed = d_quote + d_fee
            assert consumed <= o.hold, "buy hold exhausted"
            o.hold -= consumed
            acct._b(inst.quote).hold -= consumed
            base_signed, quote_signed = base_amt, -d_quote
        else:
            o.hold -= base_amt
            acct._b(inst.base).hold -= base_amt
            base_signed, quote_signed = -base_amt, d_quote
        o.status = "filled" if o.cum_qty >= o.qty else "partially_filled"
        o.last_ts = ts
        exec_id = self._new_id("exec")
        trade_id = self._next_trade_id
        self._next_trade_id += 1
        fill = ExecFill(exec_id, trade_id, qty, price, cost, liquidity, d_fee, inst.quote)
        report = ExecutionReport(acct.api_key, "trade", o.view(), ts, fill)
        acct.fills.append(report)
        records: list[Record] = [
            report,
            self._ledger(acct, exec_id, ts, inst.base, base_signed, _round(_ZERO, bprec)),
            self._ledger(acct, exec_id, ts, inst.quote, quote_signed, d_fee),
        ]
        if o.status == "filled":
            records.append(self._close(acct, o, "filled", None, ts))
        return records

    def _close(
        self, acct: Account, o: _Order, status: OrderStatus, reason: str | None, ts: int
    ) -> ExecutionReport:
        o.status = status
        o.reason = reason
        o.close_ts = ts
        o.last_ts = ts
        acct._b(o.hold_asset).hold -= o.hold
        o.hold = _ZERO
        acct.open.pop(o.order_id, None)
        keep = self._keep_closed
        if keep is not None:
            acct.closed.append(o.order_id)
            while len(acct.closed) > keep:
                del acct.orders[acct.closed.popleft()]
                acct.forgotten += 1
        exec_type: ExecType = "filled" if status == "filled" else "canceled"
        if status == "expired":
            exec_type = "expired"
        return ExecutionReport(acct.api_key, exec_type, o.view(), ts)
