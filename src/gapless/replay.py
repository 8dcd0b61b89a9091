"""Offline replay of a raw capture (issue 2 item 8): deterministic, no network, no clock.

The capture's records are fed, in file order, through the same pure venue
adapter the live client uses, in *passive* mode: it does not originate
requests but learns subscriptions, depths and req_ids from the captured
``ws_out`` frames, and precisions from the captured ``instrument`` messages.
Every book is rebuilt and every checksum re-verified; gaps are recomputed.
Time comes from the records' ``t`` field only, so two replays of one file
give identical results.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from gapless.events import Event, Gap
from gapless.venues.base import Now
from gapless.venues.kraken.adapter import KrakenAdapter

__all__ = ["ReplayResult", "iter_capture", "replay"]

FEED_CLOSED = "feed closed"  # ws_close data written when the feed itself shuts down


@dataclass(slots=True)
class ReplayResult:
    frames: int = 0
    records: int = 0
    bad_records: int = 0
    events: list[Event] = field(default_factory=list)
    adapters: dict[str, KrakenAdapter] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        books: dict[str, dict[str, Any]] = {}
        ok = mismatch = 0
        for adapter in self.adapters.values():
            venue = adapter.venue
            for key, c in adapter.counters().items():
                parts = key.split(":")
                if parts[1] != "book":
                    continue
                symbol = parts[2]
                ok += c.checksum_ok
                mismatch += c.checksum_mismatch
                book = adapter.book(symbol)
                bb = book.bids(1) if book is not None and book.valid else ()
                ba = book.asks(1) if book is not None and book.valid else ()
                books[f"{venue}:{symbol}"] = {
                    "depth": int(parts[3]),
                    "checksum_ok": c.checksum_ok,
                    "checksum_mismatch": c.checksum_mismatch,
                    "gaps": c.gaps,
                    "valid": bool(book is not None and book.valid),
                    "best_bid": str(bb[0].price) if bb else None,
                    "best_ask": str(ba[0].price) if ba else None,
                }
        return {
            "records": self.records,
            "frames": self.frames,
            "events": len(self.events),
            "checksum_ok": ok,
            "checksum_mismatch": mismatch,
            "gaps": sum(1 for e in self.events if isinstance(e, Gap)),
            "bad_frames": sum(a.bad_frames for a in self.adapters.values()),
            "bad_records": self.bad_records,
            "books": books,
        }


def iter_capture(path: str | Path) -> Iterator[dict[str, Any] | None]:
    """Yield capture records; ``None`` for a line that is not a valid record."""
    dec = msgspec.json.Decoder()
    with open(path, "rb") as fh:
        for line in fh:
            if not line.strip():
                continue
            try:
                rec = dec.decode(line)
            except (msgspec.DecodeError, RecursionError):
                yield None
                continue
            yield rec if isinstance(rec, dict) else None


def replay(path: str | Path) -> ReplayResult:
    result = ResultBuilder()
    for rec in iter_capture(path):
        result.feed(rec)
    return result.finish()


class ResultBuilder:
    """Incremental replay (used by :func:`replay` and by tests)."""

    def __init__(self) -> None:
        self.result = ReplayResult()
        self._last_t = 0.0

    def _adapter(self, venue: str, conn: str) -> KrakenAdapter | None:
        """One adapter per logical connection: ``kraken#2.7`` is dial 7 of ``kraken#2``."""
        if venue != "kraken":
            return None
        key = conn.rsplit(".", 1)[0] if "#" in conn else venue
        adapter = self.result.adapters.get(key)
        if adapter is None:
            adapter = KrakenAdapter(passive=True)
            self.result.adapters[key] = adapter
        return adapter

    def feed(self, rec: dict[str, Any] | None) -> None:
        res = self.result
        res.records += 1
        if rec is None:
            res.bad_records += 1
            return
        kind = rec.get("kind")
        t = rec.get("t")
        venue = rec.get("venue")
        if not isinstance(t, (int, float)) or not isinstance(venue, str):
            res.bad_records += 1
            return
        adapter = self._adapter(venue, str(rec.get("conn", "")))
        if adapter is None:
            return
        self._last_t = float(t)
        now = Now(mono=float(t), wall_ns=int(float(t) * 1e9))
        data = rec.get("data")
        if kind == "ws_open":
            res.events.extend(adapter.on_connected(str(rec.get("conn", "")), now).events)
        elif kind == "ws_out" and isinstance(data, str):
            adapter.observe_sent(data, now)
        elif kind == "ws_in" and isinstance(data, str):
            res.frames += 1
            res.events.extend(adapter.on_frame(data, now).events)
        elif kind == "ws_close":
            if data == FEED_CLOSED:
                return  # the client shut down: the capture ends here, no outage
            if adapter.connected:
                reason = str(data) if data else "closed"
                res.events.extend(adapter.on_disconnected(reason, now).events)
        elif kind not in ("rest",):
            res.bad_records += 1

    def finish(self) -> ReplayResult:
        now = Now(mono=self._last_t, wall_ns=int(self._last_t * 1e9))
        for adapter in self.result.adapters.values():
            self.result.events.extend(adapter.shutdown(now).events)
        return self.result
