"""Offline replay of a raw capture (issue 2 item 8): deterministic, no network, no clock.

The capture's records are fed, in file order, through the same pure venue
adapter the live client uses (Kraken, Binance or KuCoin), in *passive* mode:
it does not originate requests but learns subscriptions (and request ids)
from the captured ``ws_out`` frames, precisions from the captured Kraken
``instrument`` messages, and REST snapshot bodies (Binance depth, KuCoin
level2) from the captured ``rest`` records, which were written in the order
the answers reached the adapter live. Every book is rebuilt, every checksum
re-verified and every sequence check re-run, so gaps (sequence gaps, stale
snapshots refetched, disconnects) are recomputed. Time comes from the
records' ``t`` field only (``Now(mono=t, wall_ns=t)``), so two replays of one
file give identical results. Adapter timers are not run: what they decided
live (reconnects, re-subscriptions) is in the capture and is followed there.

**Connections and dials.** A record's ``conn`` is ``<logical>.<dial>``
(``binance#1.3`` is dial 3 of ``binance#1``). Records are routed by the full
dial id to a passive adapter. A dial that opens while no other dial of its
logical connection is open reuses that connection's adapter, so per-stream
history (last delivered ids, open gaps) carries across re-dials and disconnect
gaps are declared as live. A dial that opens while another dial of the same
logical connection is still open (make-before-break handover) gets a fresh
adapter, like the live ``successor()``; it becomes the connection's current
adapter. When a dial closes while another dial of its logical connection is
still open (the handover's ``make-before-break handover`` close, or a failed
successor), its adapter is *retired*: disconnected without reporting gaps and
not shut down at the end; its books give way to the current adapter's in the
summary. Handovers are not merged event by event (the live runtime
de-duplicates the two dials; replay reports each dial's own events), so the
gaps a *forced* handover declares live (the old dial ended before the
successor caught up) are not recomputed. Records of a dial that never opened
in the capture (a failed dial, KuCoin's bullet call before the open) are
skipped.

Adapters run with their default options: a capture does not say which were
used live (the KuCoin snapshot depth is read from the snapshot path).

A line that is not a JSON object with a finite numeric ``t``, a string
``venue`` and a known ``kind`` (truncated, garbled) counts as a bad record and
is skipped.

:meth:`ReplayResult.summary` (``gapless replay --summary-json``): ``records``,
``frames`` (``ws_in``), ``events``, ``checksum_ok``/``checksum_mismatch``
(Kraken; 0 elsewhere), ``gaps`` (Gap events), ``sequence_gaps`` (those with
cause ``sequence_gap``), ``bad_frames``, ``bad_records``, ``venues`` (sorted)
and ``books`` keyed ``"venue:symbol"``: ``depth`` (None for Binance and
KuCoin full books), the checksum counts, ``gaps``, ``valid``, ``best_bid``,
``best_ask``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import msgspec

from gapless.events import Event, Gap, GapCause
from gapless.venues.base import Now, Step
from gapless.venues.binance.adapter import BinanceAdapter
from gapless.venues.kraken.adapter import KrakenAdapter
from gapless.venues.kucoin.adapter import KucoinAdapter

__all__ = ["ReplayAdapter", "ReplayResult", "ResultBuilder", "iter_capture", "replay"]

FEED_CLOSED = "feed closed"  # ws_close data written when the feed itself shuts down

ReplayAdapter = KrakenAdapter | BinanceAdapter | KucoinAdapter


def _new_adapter(venue: str) -> ReplayAdapter | None:
    if venue == "kraken":
        return KrakenAdapter(passive=True)
    if venue == "binance":
        return BinanceAdapter(passive=True)
    if venue == "kucoin":
        return KucoinAdapter(passive=True)
    return None


@dataclass(slots=True)
class ReplayResult:
    frames: int = 0
    records: int = 0
    bad_records: int = 0
    events: list[Event] = field(default_factory=list)
    #: passive adapters by the dial that created them (``binance#1.1``), in creation order
    adapters: dict[str, ReplayAdapter] = field(default_factory=dict)
    #: keys of :attr:`adapters` retired by a handover (see the module docstring)
    retired: set[str] = field(default_factory=set)
    venues: set[str] = field(default_factory=set)

    def summary(self) -> dict[str, Any]:
        books: dict[str, dict[str, Any]] = {}
        ok = mismatch = 0
        # creation order: a successor's books replace the retired adapter's
        for adapter in self.adapters.values():
            venue = adapter.venue
            for key, c in adapter.counters().items():
                parts = key.split(":")
                if len(parts) < 3 or parts[1] != "book":
                    continue
                symbol = parts[2]
                c_ok: int = getattr(c, "checksum_ok", 0)  # Kraken only: others have none
                c_bad: int = getattr(c, "checksum_mismatch", 0)
                ok += c_ok
                mismatch += c_bad
                book = adapter.book(symbol)
                valid = bool(book is not None and book.valid)
                bb = book.bids(1) if book is not None and valid else ()
                ba = book.asks(1) if book is not None and valid else ()
                books[f"{venue}:{symbol}"] = {
                    "depth": int(parts[3]) if len(parts) > 3 else None,
                    "checksum_ok": c_ok,
                    "checksum_mismatch": c_bad,
                    "gaps": c.gaps,
                    "valid": valid,
                    "best_bid": str(bb[0].price) if bb else None,
                    "best_ask": str(ba[0].price) if ba else None,
                }
        gaps = [e for e in self.events if isinstance(e, Gap)]
        return {
            "records": self.records,
            "frames": self.frames,
            "events": len(self.events),
            "checksum_ok": ok,
            "checksum_mismatch": mismatch,
            "gaps": len(gaps),
            "sequence_gaps": sum(1 for g in gaps if g.cause is GapCause.SEQUENCE_GAP),
            "bad_frames": sum(a.bad_frames for a in self.adapters.values()),
            "bad_records": self.bad_records,
            "venues": sorted(self.venues),
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


def _seconds(t: object) -> float | None:
    """A record's ``t`` as finite epoch seconds, or None."""
    if not isinstance(t, (int, float)) or isinstance(t, bool):
        return None
    try:
        value = float(t)
    except OverflowError:
        return None
    return value if math.isfinite(value) and abs(value) < 1e12 else None


def _logical(venue: str, conn: str) -> str:
    """``kraken#2.7`` is dial 7 of ``kraken#2``; a conn without ``#`` is the venue's."""
    return conn.rsplit(".", 1)[0] if "#" in conn else venue


class ResultBuilder:
    """Incremental replay (used by :func:`replay` and by tests)."""

    def __init__(self) -> None:
        self.result = ReplayResult()
        self._last_t = 0.0
        self._dials: dict[str, tuple[str, ReplayAdapter]] = {}  # dial -> (adapter key, adapter)
        self._current: dict[str, str] = {}  # logical connection -> key of its current adapter
        self._logical_of: dict[str, str] = {}  # adapter key -> logical connection

    def _open(self, venue: str, conn: str) -> ReplayAdapter | None:
        """The adapter for a dial that opens now (see the module docstring)."""
        logical = _logical(venue, conn)
        res = self.result
        key = self._current.get(logical)
        adapter = res.adapters.get(key) if key is not None else None
        if adapter is None or adapter.connected:
            adapter = _new_adapter(venue)
            if adapter is None:
                return None
            key = conn if conn not in res.adapters else f"{conn}#{len(res.adapters)}"
            res.adapters[key] = adapter
            self._logical_of[key] = logical
            self._current[logical] = key
        assert key is not None
        self._dials[conn] = (key, adapter)
        return adapter

    def _close(self, key: str, adapter: ReplayAdapter, reason: str, now: Now) -> None:
        logical = self._logical_of[key]
        others = [
            k
            for k, a in self.result.adapters.items()
            if k != key and a.connected and self._logical_of[k] == logical
        ]
        if others or self._current.get(logical) != key:
            # a handover: the other dial carries on; this one goes without gaps
            adapter.on_disconnected(reason, now)
            self.result.retired.add(key)
            if self._current.get(logical) == key:
                self._current[logical] = others[-1]  # a failed successor: back to the old dial
            return
        if adapter.connected:
            self.result.events.extend(adapter.on_disconnected(reason, now).events)

    def feed(self, rec: dict[str, Any] | None) -> None:
        res = self.result
        res.records += 1
        if rec is None:
            res.bad_records += 1
            return
        kind = rec.get("kind")
        t = rec.get("t")
        venue = rec.get("venue")
        tf = _seconds(t)
        if tf is None or not isinstance(venue, str):
            res.bad_records += 1
            return
        if kind not in ("ws_open", "ws_in", "ws_out", "ws_close", "rest"):
            res.bad_records += 1
            return
        res.venues.add(venue)
        conn = str(rec.get("conn", ""))
        self._last_t = max(self._last_t, tf)
        now = Now(mono=tf, wall_ns=int(tf * 1e9))
        data = rec.get("data")
        if kind == "ws_open":
            adapter = self._open(venue, conn)
            if adapter is not None:
                res.events.extend(adapter.on_connected(conn, now).events)
            return
        dial = self._dials.get(conn)
        if dial is None:
            return  # a dial that never opened here: failed, or its bullet call
        key, adapter = dial
        if kind == "ws_out" and isinstance(data, str):
            step = adapter.observe_sent(data, now)
            if step is not None:
                res.events.extend(step.events)
        elif kind == "ws_in" and isinstance(data, str):
            res.frames += 1
            res.events.extend(adapter.on_frame(data, now).events)
        elif kind == "rest":
            if isinstance(adapter, KrakenAdapter):
                return  # Kraken public data uses no REST
            res.events.extend(self._rest(adapter, rec, now).events)
        elif kind == "ws_close":
            if data == FEED_CLOSED:
                return  # the client shut down: the capture ends here, no outage
            self._close(key, adapter, str(data) if data else "closed", now)

    @staticmethod
    def _rest(adapter: BinanceAdapter | KucoinAdapter, rec: dict[str, Any], now: Now) -> Step:
        method, url = rec.get("method"), rec.get("url")
        status, data = rec.get("status"), rec.get("data")
        if not isinstance(method, str) or not isinstance(url, str):
            return Step()
        params = rec.get("params")
        if isinstance(params, dict) and isinstance(params.get("symbol"), str) and "?" not in url:
            url = f"{url}?{urlencode({'symbol': params['symbol']})}"  # a capture that keeps it
        text = data if isinstance(data, str) else ""
        if not isinstance(status, int) or isinstance(status, bool):
            # no answer: the record holds the transport error
            return adapter.observe_rest(method, url, None, b"", now, error=text or "no answer")
        return adapter.observe_rest(method, url, status, text.encode(), now)

    def finish(self) -> ReplayResult:
        now = Now(mono=self._last_t, wall_ns=int(self._last_t * 1e9))
        for key, adapter in self.result.adapters.items():
            if key not in self.result.retired:
                self.result.events.extend(adapter.shutdown(now).events)
        return self.result
