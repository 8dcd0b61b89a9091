"""Kraken Spot WebSocket **v1** frame text for the bench server (pure functions, no I/O).

The bench serves cryptofeed, which speaks Kraken's v1 public API, the same market as
gapless on v2. Shapes (protocols.md §1.12, §1.3, §1.7; Kraken's v1 book guide):

* events are JSON objects with an ``event`` field: ``systemStatus`` first on every
  connection, ``subscriptionStatus`` per pair, ``heartbeat``, ``pong``, ``error``;
* channel data are JSON **arrays** ``[channelID, <payload>..., channelName, pair]``:
  book snapshots ``[id, {"as": [...], "bs": [...]}, "book-10", "XBT/USD"]`` (no
  checksum), book updates ``[id, {"a": [...]}, {"b": [...], "c": "<crc32>"}, "book-10",
  "XBT/USD"]`` (one object per side that changed; the checksum ``c`` is a *string* in the
  last one) and trades ``[id, [[price, volume, time, side, ordType, misc], ...], "trade",
  "XBT/USD"]``;
* a book level is ``[price, volume, timestamp]``, all strings: the price at the pair's
  ``pair_decimals``, the volume at its ``lot_decimals`` (trailing zeros kept, a removal is
  ``"0.00000000"``), the timestamp as seconds with 6 decimals (``"1534614248.123678"``).

v1 spells Bitcoin ``XBT`` and Dogecoin ``XDG`` (protocols.md §1.1): ``BTC/USD`` on v2 is
``XBT/USD`` here. Because prices and volumes are printed at exactly the pair's precisions,
the v1 checksum (strip ``.`` and leading zeros from the strings, protocols.md §1.7 TV-K3)
equals the v2 checksum of the same book.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterable, Sequence
from typing import Any

from gapless.sim.numbers import fmt_fixed

__all__ = [
    "HEARTBEAT",
    "book_snapshot",
    "book_update",
    "channel_name",
    "checksum_strings",
    "error",
    "pong",
    "subscription_error",
    "subscription_status",
    "system_status",
    "trade_message",
    "ts_text",
    "v1_symbol",
    "v2_symbol",
]

HEARTBEAT = '{"event":"heartbeat"}'
"""protocols.md §1.3: sent after about 1 s without subscription traffic."""

_TO_V1 = {"BTC": "XBT", "DOGE": "XDG"}
_TO_V2 = {v: k for k, v in _TO_V1.items()}


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"))


def v1_symbol(symbol: str) -> str:
    """``BTC/USD`` -> ``XBT/USD`` (v2/REST-unified spelling to v1 ``wsname``)."""
    base, _, quote = symbol.partition("/")
    return f"{_TO_V1.get(base, base)}/{_TO_V1.get(quote, quote)}"


def v2_symbol(pair: str) -> str:
    """``XBT/USD`` -> ``BTC/USD``."""
    base, _, quote = pair.partition("/")
    return f"{_TO_V2.get(base, base)}/{_TO_V2.get(quote, quote)}"


def channel_name(depth: int) -> str:
    """``book-10``: the v1 book channel name carries the subscribed depth."""
    return f"book-{depth}"


def ts_text(ts_us: int) -> str:
    """Epoch microseconds as v1's ``"seconds.micros"`` string.

    >>> ts_text(1534614248123678)
    '1534614248.123678'
    """
    sec, frac = divmod(ts_us, 1_000_000)
    return f"{sec}.{frac:06d}"


def _levels(levels: Iterable[tuple[int, int]], ts: str, pp: int, qp: int) -> str:
    return ",".join(f'["{fmt_fixed(p, pp)}","{fmt_fixed(q, qp)}","{ts}"]' for p, q in levels)


def book_snapshot(
    channel_id: int,
    depth: int,
    pair: str,
    bids: Iterable[tuple[int, int]],
    asks: Iterable[tuple[int, int]],
    ts_us: int,
    pp: int,
    qp: int,
) -> str:
    """A v1 book snapshot (``as``/``bs``, best first, no checksum); ``pair`` is v1 spelling."""
    ts = ts_text(ts_us)
    return (
        f'[{channel_id},{{"as":[{_levels(asks, ts, pp, qp)}],"bs":[{_levels(bids, ts, pp, qp)}]}},'
        f'"{channel_name(depth)}","{pair}"]'
    )


def book_update(
    channel_id: int,
    depth: int,
    pair: str,
    bids: Sequence[tuple[int, int]],
    asks: Sequence[tuple[int, int]],
    checksum: int,
    ts_us: int,
    pp: int,
    qp: int,
) -> str:
    """A v1 book update: ``{"a":..}`` and/or ``{"b":..}``, ``"c"`` in the last object.

    At least one side must be non-empty."""
    if not bids and not asks:
        raise ValueError("a v1 book update needs at least one level")
    ts = ts_text(ts_us)
    parts: list[str] = []
    if asks:
        parts.append(f'"a":[{_levels(asks, ts, pp, qp)}]')
    if bids:
        parts.append(f'"b":[{_levels(bids, ts, pp, qp)}]')
    parts[-1] += f',"c":"{checksum}"'
    body = ",".join("{" + p + "}" for p in parts)
    return f'[{channel_id},{body},"{channel_name(depth)}","{pair}"]'


def trade_message(
    channel_id: int,
    pair: str,
    trades: Iterable[tuple[int, int, int, str, str]],
    pp: int,
    qp: int,
) -> str:
    """v1 ``trade``: each trade ``(price, volume, ts_us, side "buy"|"sell", "market"|"limit")``
    becomes ``[price, volume, time, "b"|"s", "m"|"l", ""]``."""
    items = ",".join(
        f'["{fmt_fixed(p, pp)}","{fmt_fixed(q, qp)}","{ts_text(ts)}",'
        f'"{"b" if side == "buy" else "s"}","{"m" if kind == "market" else "l"}",""]'
        for p, q, ts, side, kind in trades
    )
    return f'[{channel_id},[{items}],"trade","{pair}"]'


def checksum_strings(asks: Sequence[tuple[str, str]], bids: Sequence[tuple[str, str]]) -> int:
    """The v1 guide's checksum over the wire strings, best first per side (top 10 each):
    remove ``.`` and every leading ``0`` from price and volume, concatenate asks then bids,
    unsigned CRC-32 (protocols.md §1.7, TV-K3)."""
    parts: list[str] = []
    for side in (asks[:10], bids[:10]):
        for price, volume in side:
            parts.append(price.replace(".", "").lstrip("0"))
            parts.append(volume.replace(".", "").lstrip("0"))
    return zlib.crc32("".join(parts).encode("ascii")) & 0xFFFFFFFF


def system_status(connection_id: int, status: str = "online", version: str = "1.9.5") -> str:
    """The first frame of every v1 connection."""
    return _dumps(
        {
            "connectionID": connection_id,
            "event": "systemStatus",
            "status": status,
            "version": version,
        }
    )


def subscription_status(
    channel_id: int,
    name: str,
    pair: str,
    subscription: dict[str, Any],
    status: str = "subscribed",
    reqid: int | None = None,
) -> str:
    """``subscriptionStatus`` for one pair (v1 answers once per pair)."""
    obj: dict[str, Any] = {
        "channelID": channel_id,
        "channelName": name,
        "event": "subscriptionStatus",
        "pair": pair,
    }
    if reqid is not None:
        obj["reqid"] = reqid
    obj["status"] = status
    obj["subscription"] = subscription
    return _dumps(obj)


def subscription_error(
    message: str,
    pair: str | None,
    subscription: dict[str, Any] | None,
    reqid: int | None = None,
) -> str:
    """``{"errorMessage":..,"event":"subscriptionStatus","status":"error",..}``."""
    obj: dict[str, Any] = {"errorMessage": message, "event": "subscriptionStatus"}
    if pair is not None:
        obj["pair"] = pair
    if reqid is not None:
        obj["reqid"] = reqid
    obj["status"] = "error"
    if subscription is not None:
        obj["subscription"] = subscription
    return _dumps(obj)


def error(message: str, reqid: int | None = None) -> str:
    """protocols.md §1.12: ``{"event":"error","errorMessage":..,"reqid":N}``."""
    obj: dict[str, Any] = {"errorMessage": message, "event": "error"}
    if reqid is not None:
        obj["reqid"] = reqid
    return _dumps(obj)


def pong(reqid: int | None) -> str:
    """``{"event":"pong","reqid":N}`` (protocols.md §1.3)."""
    obj: dict[str, Any] = {"event": "pong"}
    if reqid is not None:
        obj["reqid"] = reqid
    return _dumps(obj)
