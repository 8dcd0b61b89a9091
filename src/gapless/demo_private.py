"""The private part of ``gapless demo --private``: a small trading bot, private
faults, and the comparison of the client's account view with the simulator's.

The bot trades the simulator's demo account through gapless's order API
(``feed.add_order`` / ``cancel_order``) while the chaos schedule runs: it keeps
a few resting limit orders near the touch (they fill as the public market
trades through them, also while the client is disconnected), sends an
occasional marketable order, cancels old ones, and sometimes asks for
something the venue refuses (post-only that would cross, too large). Every
:class:`~gapless.errors.OrderRefused` (the order gate) and every answer is
counted.

At the end the client's view (``feed.orders()``, ``feed.balances()``) must
equal the simulator's ledger exactly: same status and filled quantity for
every order the account ever had, same balance for every asset.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from gapless.errors import ConfigError, OrderRefused
from gapless.events import OrderUpdate
from gapless.runtime.feed import Feed
from gapless.sim import Fault

__all__ = ["BotStats", "compare_balances", "compare_orders", "private_faults", "run_bot"]


@dataclass(slots=True)
class BotStats:
    sent: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    refused: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)

    def summary(self) -> dict[str, Any]:
        return {
            "requests": self.sent,
            "outcomes": dict(self.outcomes),
            "refused_by_gate": dict(self.refused),
            "venue_errors": dict(self.errors),
        }


def private_faults(duration_s: float, seed: int) -> list[Fault]:
    """Private faults at seeded times inside the run (the public chaos runs too):
    fills while disconnected (twice), a sequence jump on each private channel,
    and token expiry with a close."""
    rng = random.Random(f"{seed}:private-faults")
    usable = max(10.0, duration_s - 15.0)
    plan: list[tuple[str, dict[str, Any]]] = [
        ("fill_while_disconnected", {"fraction": 1.0}),
        ("private_sequence_jump", {"channel": "executions"}),
        ("fill_while_disconnected", {"fraction": 0.5, "cancel_some": 1}),
        ("private_sequence_jump", {"channel": "balances"}),
        ("token_expiry", {}),
    ]
    slots = sorted(rng.uniform(0.15, 0.95) * usable for _ in plan)
    return [Fault(kind, at, params) for (kind, params), at in zip(plan, slots, strict=True)]


def _tick(price: Decimal) -> Decimal:
    exp = price.as_tuple().exponent
    return Decimal(1).scaleb(exp if isinstance(exp, int) else 0)


async def run_bot(
    feed: Feed,
    symbols: tuple[str, ...],
    seed: int,
    stop: asyncio.Event,
    stats: BotStats,
    *,
    interval_s: float = 0.4,
    max_open: int = 8,
) -> None:
    """Trade until ``stop`` is set (see the module docstring)."""
    rng = random.Random(f"{seed}:bot")
    n = 0
    while not stop.is_set():
        try:
            async with asyncio.timeout(interval_s * rng.uniform(0.5, 1.5)):
                await stop.wait()
            return
        except TimeoutError:
            pass
        sym = rng.choice(symbols)
        view = feed.book(sym, venue="kraken")
        if view is None or not view.valid:
            continue
        bid, ask = view.best_bid(), view.best_ask()
        if bid is None or ask is None:
            continue
        tick = _tick(bid.price)
        mine = [o for o in feed.open_orders("kraken").values() if o.symbol == sym]
        roll = rng.random()
        n += 1
        try:
            if len(mine) >= max_open or roll < 0.15:
                if mine:
                    oldest = min(mine, key=lambda o: o.local_ts_ns)
                    await _send(stats, feed.cancel_order("kraken", order_ids=[oldest.order_id]))
                continue
            side = rng.choice(("buy", "sell"))
            # a notional of 20-100 quote units (above every pair's cost minimum)
            qty = (Decimal(20 * rng.randint(1, 5)) / bid.price).quantize(Decimal("0.0001"))
            if roll < 0.25:  # marketable: fills at once as taker
                price = ask.price + tick if side == "buy" else bid.price - tick
                await _send(
                    stats,
                    feed.add_order(
                        "kraken",
                        symbol=sym,
                        side=side,
                        qty=qty,
                        limit_price=price,
                        time_in_force="ioc",
                        cl_ord_id=f"bot-{n}",
                    ),
                )
            elif roll < 0.30:  # post-only that would cross: the venue rejects it
                price = ask.price if side == "buy" else bid.price
                await _send(
                    stats,
                    feed.add_order(
                        "kraken",
                        symbol=sym,
                        side=side,
                        qty=qty,
                        limit_price=price,
                        post_only=True,
                        cl_ord_id=f"bot-{n}",
                    ),
                )
            else:  # resting near the touch: fills when the market trades through it
                steps = rng.randint(0, 3)
                price = bid.price - tick * steps if side == "buy" else ask.price + tick * steps
                await _send(
                    stats,
                    feed.add_order(
                        "kraken",
                        symbol=sym,
                        side=side,
                        qty=qty,
                        limit_price=price,
                        post_only=rng.random() < 0.5,
                        cl_ord_id=f"bot-{n}",
                    ),
                )
        except OrderRefused as exc:
            stats.refused[exc.reason] += 1
        except ConfigError:
            stats.refused["invalid"] += 1


async def _send(stats: BotStats, call: Any) -> None:
    stats.sent += 1
    resp = await call
    stats.outcomes[resp.outcome] += 1
    if resp.outcome == "rejected" and resp.error:
        stats.errors[resp.error.split(":")[0] + ":" + resp.error.split(":")[-1][:40]] += 1


_SIM_CLOSED = ("filled", "canceled", "expired")


def compare_orders(
    client: Mapping[str, OrderUpdate],
    sim: Mapping[str, Mapping[str, Any]],
    *,
    client_keep: int | None = None,
    sim_forgot: int = 0,
) -> list[str]:
    """Differences between the client's orders and the simulator's (empty: equal).
    Every order the account had must be known with the same status and filled
    quantity; the client must not believe in an order the venue never had.

    With bounded histories (long soaks), a closed order may be missing on one
    side only because that side forgot it: on the client's when it holds
    ``client_keep`` orders or more (its ``max_closed_orders``), on the
    simulator's when it forgot some (``sim_forgot``). Open orders are never
    forgotten, so they are always compared."""
    diffs: list[str] = []
    client_full = client_keep is not None and len(client) >= client_keep
    for oid, want in sim.items():
        got = client.get(oid)
        if got is None:
            if client_full and want.get("status") in _SIM_CLOSED:
                continue  # closed, beyond the client's retention
            diffs.append(f"{oid}: missing (sim: {want.get('status')})")
            continue
        want_cum = Decimal(str(want.get("cum_qty", "0")))
        if got.status != want.get("status") or (got.cum_qty or Decimal(0)) != want_cum:
            diffs.append(
                f"{oid}: client {got.status} {got.cum_qty} != sim {want.get('status')} {want_cum}"
            )
    for oid, got in client.items():
        if oid not in sim and not (sim_forgot and not got.is_open):
            diffs.append(f"{oid}: unknown to the simulator")
    return diffs


def compare_balances(client: Mapping[str, Decimal], sim: Mapping[str, Any]) -> list[str]:
    diffs = []
    for asset in sorted(set(client) | set(sim)):
        got = client.get(asset, Decimal(0))
        want = Decimal(str(sim.get(asset, "0")))
        if got != want:
            diffs.append(f"{asset}: client {got} != sim {want}")
    return diffs
