"""compare_orders: the demo's and soak's check of the client's orders against the
simulator's, with bounded histories on either side."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from gapless.demo_private import compare_orders
from gapless.events import OrderUpdate


def _client(oid: str, status: str, cum: str = "0") -> OrderUpdate:
    return OrderUpdate(
        venue="kraken",
        local_ts_ns=1,
        stream="kraken:executions:*",
        order_id=oid,
        symbol="BTC/USD",
        status=status,
        exec_type="trade",
        source="update",
        cum_qty=Decimal(cum),
    )


def _sim(status: str, cum: str = "0") -> dict[str, Any]:
    return {"status": status, "cum_qty": cum}


def test_equal_histories_and_every_kind_of_difference() -> None:
    client = {"a": _client("a", "filled", "1"), "b": _client("b", "new")}
    sim = {"a": _sim("filled", "1"), "b": _sim("new")}
    assert compare_orders(client, sim) == []
    assert compare_orders(client, {**sim, "c": _sim("canceled")}) == ["c: missing (sim: canceled)"]
    assert compare_orders({**client, "x": _client("x", "canceled")}, sim) == [
        "x: unknown to the simulator"
    ]
    diffs = compare_orders(client, {**sim, "a": _sim("filled", "0.5")})
    assert diffs == ["a: client filled 1 != sim filled 0.5"]


def test_bounded_histories_excuse_only_closed_orders_the_holder_forgot() -> None:
    client = {"b": _client("b", "new"), "d": _client("d", "filled", "1")}
    sim = {"b": _sim("new"), "c": _sim("canceled"), "d": _sim("filled", "1")}
    # the client holds 2 (its retention): a closed order it lacks was evicted
    assert compare_orders(client, sim, client_keep=2) == []
    # below its retention it would not have evicted anything
    assert compare_orders(client, sim, client_keep=3) == ["c: missing (sim: canceled)"]
    # an open order is never evicted, so its absence is always a difference
    assert compare_orders(client, {**sim, "o": _sim("new")}, client_keep=2) == [
        "o: missing (sim: new)"
    ]
    # the simulator forgot closed orders: a closed one only the client has is fine,
    # an open one is not
    extra = {**client, "z": _client("z", "canceled"), "y": _client("y", "new")}
    assert compare_orders(extra, sim, client_keep=2, sim_forgot=1) == [
        "y: unknown to the simulator"
    ]
    assert compare_orders(extra, sim, client_keep=2) == [
        "z: unknown to the simulator",
        "y: unknown to the simulator",
    ]
