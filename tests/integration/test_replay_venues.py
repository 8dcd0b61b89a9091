"""``gapless replay`` of Binance and KuCoin captures (passive adapters).

Real captures are produced by ``gapless.connect(..., capture=path)`` against the
simulators over loopback, in virtual time, with faults that cause sequence
gaps (Binance ``depth_gap``, KuCoin ``level2_gap``), stale snapshots that must
be refetched, an abort and a close. The replay of the capture must recompute
what the live client saw: the same sequence-gap count, the same Gap events,
the same final books; two replays are identical; a garbled line is a bad
record, not a crash. A hand-made capture with two dials of one logical
connection open at once (make-before-break) must replay without crashing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from harness import run_faults
from test_binance_faults import BINANCE
from test_kucoin_faults import KUCOIN

from gapless.events import Event, Gap, GapCause, event_to_dict
from gapless.replay import ReplayResult, ResultBuilder, replay
from gapless.sim import Fault
from gapless.venues.binance.adapter import BinanceAdapter

BookText = tuple[tuple[tuple[str, str], ...], tuple[tuple[str, str], ...]]

SYMBOLS = {"binance": ("BTCUSDT", "ETHUSDT"), "kucoin": ("BTC-USDT", "ETH-USDT")}


def _faults(venue: str) -> list[Fault]:
    a, b = SYMBOLS[venue]
    gap = "depth_gap" if venue == "binance" else "level2_gap"
    return [
        Fault.make(gap, 2.0, symbol=a),
        Fault.make("stale_snapshot", 3.0, symbol=b, count=2),
        Fault.make("abort", 3.5),
        Fault.make(gap, 5.5, symbol=b),
        Fault.make("close", 7.0, code=1001 if venue == "binance" else 1000),
        Fault.make(gap, 9.0, symbol=a),
    ]


class Live(NamedTuple):
    events: list[Event]
    books: dict[str, BookText]


def _text(book: Any) -> BookText:
    return (
        tuple((str(lv.price), str(lv.qty)) for lv in book.bids()),
        tuple((str(lv.price), str(lv.qty)) for lv in book.asks()),
    )


async def _run_live(venue: str, capture: Path, faults: list[Fault], run_s: float = 11.0) -> Live:
    """The fault-matrix run (``harness.run_faults``) with a capture: the market
    runs, quiesces, the client converges and the feed is closed."""
    if venue == "binance":
        run = await run_faults(BINANCE, faults, run_s, capture=str(capture))
    else:
        run = await run_faults(KUCOIN, faults, run_s, capture=str(capture))
    books: dict[str, BookText] = {}
    for s in SYMBOLS[venue]:
        view = run.books[s]
        assert view is not None
        assert view.valid
        books[s] = _text(view)
    return Live(run.events, books)


def _gaps(events: list[Event]) -> Counter[tuple[str, str, int | None, int | None]]:
    return Counter(
        (e.stream, e.cause.value, e.first_seq, e.last_seq) for e in events if isinstance(e, Gap)
    )


def _seq_gaps(events: list[Event]) -> int:
    return sum(1 for e in events if isinstance(e, Gap) and e.cause is GapCause.SEQUENCE_GAP)


def _digest(result: ReplayResult) -> list[str]:
    return [json.dumps(event_to_dict(e), default=str, sort_keys=True) for e in result.events]


def _replayed_book(result: ReplayResult, venue: str, symbol: str) -> BookText | None:
    found = None
    for key, adapter in result.adapters.items():
        if adapter.venue != venue or key in result.retired:
            continue
        book = adapter.book(symbol)
        if book is not None:
            found = _text(book)
    return found


@pytest.mark.looptime
@pytest.mark.timeout(180)
@pytest.mark.parametrize("venue", ["binance", "kucoin"])
async def test_replay_recomputes_the_live_gaps_and_books(venue: str, tmp_path: Path) -> None:
    capture = tmp_path / f"{venue}.jsonl"
    live = await _run_live(venue, capture, _faults(venue))
    live_seq = _seq_gaps(live.events)
    assert live_seq >= 2  # the injected gaps were seen live

    first = replay(capture)
    summary = first.summary()
    assert summary["venues"] == [venue]
    assert summary["bad_records"] == 0
    assert summary["sequence_gaps"] == live_seq
    assert summary["gaps"] == sum(1 for e in live.events if isinstance(e, Gap))
    # not only the counts: the same streams, causes and update-id ranges
    assert _gaps(first.events) == _gaps(live.events)
    # the stale snapshots were refetched in replay too
    counters = [c for a in first.adapters.values() for c in a.counters().values()]
    refetched = sum(getattr(c, "refetches", 0) + getattr(c, "stale_snapshots", 0) for c in counters)
    assert refetched >= 1
    for symbol, want in live.books.items():
        assert _replayed_book(first, venue, symbol) == want, symbol
        entry = summary["books"][f"{venue}:{symbol}"]
        assert entry["valid"] is True
        assert entry["depth"] is None
        assert (entry["checksum_ok"], entry["checksum_mismatch"]) == (0, 0)
        assert entry["best_bid"] == want[0][0][0]
        assert entry["best_ask"] == want[1][0][0]

    # deterministic: a second replay of the same file gives the same result
    second = replay(capture)
    assert second.summary() == summary
    assert _digest(second) == _digest(first)

    # a truncated line and a garbled one are bad records, not a crash
    lines = capture.read_text().splitlines()
    cut = len(lines) // 2
    damaged = tmp_path / "damaged.jsonl"
    damaged.write_text(
        "\n".join([*lines[:cut], lines[cut][: len(lines[cut]) // 2], "\x00{not json", *lines[cut:]])
        + "\n"
    )
    hurt = replay(damaged).summary()
    assert hurt["bad_records"] == 2
    assert hurt["records"] == summary["records"] + 2
    assert hurt["venues"] == [venue]


@pytest.mark.looptime
@pytest.mark.timeout(180)
async def test_cli_replay_summary_json_of_a_binance_capture(tmp_path: Path) -> None:
    capture = tmp_path / "binance.jsonl"
    a, _ = SYMBOLS["binance"]
    live = await _run_live("binance", capture, [Fault.make("depth_gap", 2.0, symbol=a)], run_s=5.0)
    proc = subprocess.run(  # noqa: ASYNC221 - the live run is over; nothing else is on the loop
        [sys.executable, "-m", "gapless.cli", "replay", str(capture), "--summary-json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary == replay(capture).summary()
    assert summary["venues"] == ["binance"]
    assert summary["sequence_gaps"] == _seq_gaps(live.events) >= 1
    assert set(summary["books"]) == {f"binance:{s}" for s in SYMBOLS["binance"]}
    for symbol, want in live.books.items():
        book = summary["books"][f"binance:{symbol}"]
        assert book["depth"] is None
        assert book["checksum_ok"] == book["checksum_mismatch"] == 0
        assert book["best_bid"] == want[0][0][0]
    # the human table mentions both books
    table = subprocess.run(  # noqa: ASYNC221
        [sys.executable, "-m", "gapless.cli", "replay", str(capture)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert "binance:BTCUSDT" in table.stdout
    assert f"sequence gaps {summary['sequence_gaps']}" in table.stdout


# ------------------------------------------------------------------ two dials at once

T0 = 1_800_000_000.0


def _rec(t: float, conn: str, kind: str, **fields: Any) -> dict[str, Any]:
    return {"t": T0 + t, "venue": "binance", "conn": conn, "kind": kind, **fields}


def _depth(first: int, last: int, bid: str, sym: str = "BTCUSDT") -> str:
    data = {
        "e": "depthUpdate",
        "E": 1_700_000_000_000 + last,
        "s": sym,
        "U": first,
        "u": last,
        "b": [[bid, "1.0"]],
        "a": [],
    }
    return json.dumps({"stream": f"{sym.lower()}@depth@100ms", "data": data})


def _snapshot(last_update_id: int) -> str:
    return json.dumps(
        {"lastUpdateId": last_update_id, "bids": [["99.0", "2.0"]], "asks": [["101.0", "3.0"]]}
    )


def _subscribe(rid: int) -> str:
    return json.dumps({"method": "SUBSCRIBE", "params": ["btcusdt@depth@100ms"], "id": rid})


def _dial(t: float, conn: str, rid: int, first: int) -> list[dict[str, Any]]:
    """Open, subscribe, ack, one event, the snapshot that syncs it, one more event."""
    depth_url = "http://127.0.0.1:1/api/v3/depth"
    return [
        _rec(t, conn, "ws_open", url="ws://127.0.0.1:1/stream"),
        _rec(t + 0.01, conn, "ws_out", data=_subscribe(rid)),
        _rec(t + 0.02, conn, "ws_in", data=json.dumps({"result": None, "id": rid})),
        _rec(t + 0.03, conn, "ws_in", data=_depth(first, first + 1, "99.5")),
        _rec(
            t + 0.04, conn, "rest", method="GET", url=depth_url, status=200, data=_snapshot(first)
        ),
        _rec(t + 0.05, conn, "ws_in", data=_depth(first + 2, first + 3, "99.6")),
    ]


def test_two_dials_of_one_connection_open_at_once() -> None:
    """Make-before-break: binance#1.5 opens while binance#1.4 still delivers; the old
    one then closes as a handover. Each dial has its own passive adapter; the old
    one is retired without disconnect gaps and the summary shows the successor's book."""
    old, new = "binance#1.4", "binance#1.5"
    records = _dial(0.0, old, 7, 100)
    records += _dial(1.0, new, 8, 104)  # the successor syncs while the old dial is open
    records += [
        _rec(1.1, old, "ws_in", data=_depth(104, 106, "99.7")),  # interleaved on both dials
        _rec(1.2, new, "ws_in", data=_depth(108, 108, "99.8")),
        _rec(1.3, old, "ws_close", code=1000, data="make-before-break handover"),
        _rec(1.4, new, "ws_in", data=_depth(109, 109, "99.9")),
        _rec(2.0, new, "ws_close", data="feed closed"),
    ]
    builder = ResultBuilder()
    for rec in records:
        builder.feed(rec)
    result = builder.finish()
    summary = result.summary()
    assert summary["bad_records"] == 0
    assert summary["gaps"] == summary["sequence_gaps"] == 0
    assert list(result.adapters) == [old, new]
    assert result.retired == {old}
    book = summary["books"]["binance:BTCUSDT"]
    assert book["valid"] is True
    assert book["best_bid"] == "99.9"
    adapter = result.adapters[new]
    assert isinstance(adapter, BinanceAdapter)
    assert adapter.conn == new


def test_a_successor_that_fails_hands_back_to_the_open_dial() -> None:
    """The successor closes first (failed handover): the old dial stays current and
    its later outage is a disconnect gap as usual."""
    old, new = "binance#1.4", "binance#1.5"
    records = _dial(0.0, old, 7, 100)
    records += _dial(1.0, new, 8, 104)
    records += [
        _rec(1.1, new, "ws_close", code=1006, data="connection closed (code 1006)"),
        _rec(1.2, old, "ws_in", data=_depth(104, 106, "99.7")),
        _rec(1.3, old, "ws_close", code=1006, data="connection closed (code 1006)"),
        _rec(1.4, "binance#1.6", "ws_open", url="ws://127.0.0.1:1/stream"),
    ]
    builder = ResultBuilder()
    for rec in records:
        builder.feed(rec)
    result = builder.finish()
    assert result.retired == {new}
    gaps = [e for e in result.events if isinstance(e, Gap)]
    # the old dial's outage, never closed (the capture ends before a resync)
    assert [(g.cause, g.first_seq) for g in gaps] == [(GapCause.DISCONNECT, 107)]
    # dial 6 reused the old dial's adapter (history carried across the re-dial)
    assert list(result.adapters) == [old, new]


def test_records_of_unknown_kinds_and_dials_are_handled() -> None:
    builder = ResultBuilder()
    builder.feed(None)
    builder.feed({"t": "x", "venue": "binance"})
    builder.feed({"t": float("inf"), "venue": "binance", "kind": "ws_open"})
    builder.feed({"t": 10**400, "venue": "binance", "kind": "ws_open"})
    builder.feed({"t": True, "venue": "binance", "kind": "ws_open"})
    builder.feed(_rec(0.0, "binance#1.1", "weird"))
    builder.feed(_rec(0.0, "binance#1.1", "ws_in", data=_depth(1, 2, "1.0")))  # never opened
    builder.feed({"t": T0, "venue": "okx", "conn": "okx#1.1", "kind": "ws_open", "url": "wss://x/"})
    summary = builder.finish().summary()
    assert summary["bad_records"] == 6
    assert summary["records"] == 8
    assert summary["venues"] == ["binance", "okx"]
    assert summary["frames"] == 0


def test_a_rest_record_that_names_its_symbol_is_not_guessed() -> None:
    """Two books wait; the record's ``params`` (or a URL query) names the symbol."""
    conn = "binance#1.1"
    depth_url = "http://127.0.0.1:1/api/v3/depth"
    names = ["aaa@depth@100ms", "bbb@depth@100ms"]
    records = [
        _rec(0.0, conn, "ws_open", url="ws://127.0.0.1:1/stream"),
        _rec(
            0.1, conn, "ws_out", data=json.dumps({"method": "SUBSCRIBE", "params": names, "id": 1})
        ),
        _rec(0.2, conn, "ws_in", data=json.dumps({"result": None, "id": 1})),
        _rec(0.3, conn, "ws_in", data=_depth(10, 11, "99.5", sym="AAA")),
        _rec(0.4, conn, "ws_in", data=_depth(10, 11, "99.5", sym="BBB")),
        # answered in the other order than asked, and with ids that do not tell
        _rec(
            0.5,
            conn,
            "rest",
            method="GET",
            url=depth_url,
            status=200,
            data=_snapshot(10),
            params={"symbol": "BBB", "limit": "1000"},
        ),
    ]
    builder = ResultBuilder()
    for rec in records:
        builder.feed(rec)
    (adapter,) = builder.result.adapters.values()
    assert isinstance(adapter, BinanceAdapter)
    assert adapter.stream_state("binance:book:BBB") == "live"
    assert adapter.stream_state("binance:book:AAA") == "syncing"
