"""What every private (account) adapter shares, pure (design.md §1.2, §3 order safety).

:class:`AccountView` answers the feed's registry questions for private
streams (``<venue>:<channel>:*``; no books) and keeps the user's order view:
the latest :class:`~gapless.events.OrderUpdate` per order, oldest first, with
at most ``keep_closed`` orders remembered once the closed ones are counted
(open orders are never forgotten). :func:`private_gap` builds the ``Gap`` of a
private stream. The venue adapters (Kraken, KuCoin, Binance ``private.py``)
own their channels, snapshots and reconciliation.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from gapless.events import Gap, GapCause, OrderUpdate

__all__ = ["AccountView", "private_gap", "private_stream"]


def private_stream(venue: str, channel: str) -> str:
    """``kraken:executions:*``: private streams cover every symbol."""
    return f"{venue}:{channel}:*"


def private_gap(
    venue: str,
    channel: str,
    cause: GapCause,
    detail: str,
    start_ns: int | None,
    end_ns: int | None,
    wall_ns: int,
    first_seq: int | None = None,
    last_seq: int | None = None,
) -> Gap:
    return Gap(
        venue=venue,
        local_ts_ns=wall_ns,
        stream=private_stream(venue, channel),
        symbol="*",
        cause=cause,
        start_ts_ns=start_ns,
        end_ts_ns=end_ns,
        first_seq=first_seq,
        last_seq=last_seq,
        detail=detail,
    )


class AccountView:
    """Base of the private adapters. Subclasses set ``venue``, ``stats`` (a
    dataclass of counters) and ``_channels`` (name -> an object with a
    ``state`` enum), and call ``super().__init__(keep_closed)``."""

    venue: str
    stats: Any
    _channels: dict[str, Any]

    def __init__(self, keep_closed: int) -> None:
        self._orders: dict[str, OrderUpdate] = {}
        self._keep_closed = keep_closed

    # ------------------------------------------------------------------ registry
    def streams(self) -> list[str]:
        return [private_stream(self.venue, name) for name in self._channels]

    def has_book(self, symbol: str) -> bool:
        return False

    def book(self, symbol: str) -> None:
        return None

    def stream_state(self, key: str) -> str:
        for name, ch in self._channels.items():
            if key == private_stream(self.venue, name):
                return str(ch.state.value)
        return "unknown"

    def counters(self) -> dict[str, int]:
        return dataclasses.asdict(self.stats)

    # ------------------------------------------------------------------ the view
    def orders(self) -> dict[str, OrderUpdate]:
        """Every order seen (latest state), open and recently closed."""
        return dict(self._orders)

    def open_orders(self) -> dict[str, OrderUpdate]:
        return {oid: o for oid, o in self._orders.items() if o.is_open}

    def _remember(self, ev: OrderUpdate) -> None:
        """Record ``ev`` as the order's latest state (most recent last); forget
        the oldest closed orders beyond ``keep_closed``."""
        self._orders.pop(ev.order_id, None)
        self._orders[ev.order_id] = ev
        excess = len(self._orders) - self._keep_closed
        if excess > 0:
            for oid in [o for o, v in self._orders.items() if not v.is_open][:excess]:
                del self._orders[oid]
