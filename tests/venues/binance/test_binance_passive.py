"""BinanceAdapter(passive=True): the replay side of the adapter (gapless.replay).

A passive adapter sends nothing that matters, learns its subscriptions from
captured ``ws_out`` frames (by their ids) and takes captured REST depth answers,
attributing an answer whose URL lost its query to the right book.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any, TypeVar

from gapless.events import BookSnapshot, BookUpdate, Event, Gap, GapCause, Subscribed
from gapless.venues.base import Now, Step
from gapless.venues.binance.adapter import BinanceAdapter

WALL0 = 1_700_000_000_000_000_000
E0 = 1_672_515_782_000
DEPTH_URL = "https://api.binance.com/api/v3/depth"
Ev = TypeVar("Ev", bound=Event)


def of(events: Iterable[Event], cls: type[Ev]) -> list[Ev]:
    return [e for e in events if isinstance(e, cls)]


def depth(sym: str, first: int, last: int, bids: Sequence[tuple[str, str]] = ()) -> str:
    data = {
        "e": "depthUpdate",
        "E": E0 + last,
        "s": sym,
        "U": first,
        "u": last,
        "b": [list(b) for b in bids],
        "a": [],
    }
    return json.dumps({"stream": f"{sym.lower()}@depth@100ms", "data": data})


def snapshot(last_update_id: int, bid: str = "1.00") -> bytes:
    body = {"lastUpdateId": last_update_id, "bids": [[bid, "2"]], "asks": [["9.00", "3"]]}
    return json.dumps(body).encode()


def subscribe(names: list[str], rid: Any, method: str = "SUBSCRIBE") -> str:
    return json.dumps({"method": method, "params": names, "id": rid})


class P:
    """A passive adapter on a hand-advanced clock."""

    def __init__(self) -> None:
        self.a = BinanceAdapter(passive=True)
        self.t = 0.0
        self.events: list[Event] = []

    def now(self) -> Now:
        self.t += 0.01
        return Now(self.t, WALL0 + int(self.t * 1e9))

    def take(self, step: Step) -> Step:
        assert step.sends == []
        self.events.extend(step.events)
        return step

    def frame(self, text: str) -> Step:
        return self.take(self.a.on_frame(text, self.now()))

    def sent(self, text: str) -> Step:
        return self.take(self.a.observe_sent(text, self.now()))

    def rest(self, body: bytes, url: str = DEPTH_URL, status: int | None = 200) -> Step:
        return self.take(self.a.observe_rest("GET", url, status, body, self.now()))

    def up(self, *symbols: str, rid: int = 5) -> None:
        self.take(self.a.on_connected("binance#1.1", self.now()))
        names = [f"{s.lower()}@depth@100ms" for s in symbols]
        self.sent(subscribe(names, rid))
        self.frame(json.dumps({"result": None, "id": rid}))


def test_passive_sends_nothing_and_follows_the_captured_subscribe() -> None:
    h = P()
    step = h.a.on_connected("binance#1.1", h.now())
    assert step.sends == []
    assert h.a.streams() == []
    h.sent(subscribe(["bnbbtc@depth@100ms", "bnbbtc@trade", "bnbbtc@bookTicker", "x@kline"], 42))
    assert sorted(h.a.streams()) == [
        "binance:book:BNBBTC",
        "binance:book_ticker:BNBBTC",
        "binance:trade:BNBBTC",
    ]
    assert {h.a.stream_state(k) for k in h.a.streams()} == {"pending"}
    ev = h.frame(json.dumps({"result": None, "id": 41})).events  # not ours: ignored
    assert ev == []
    ev = h.frame(json.dumps({"result": None, "id": 42})).events
    assert len(of(ev, Subscribed)) == 3
    # the first diff event asks for a snapshot (ignored by replay); the captured
    # answer, its URL named or not, makes the book live
    h.frame(depth("BNBBTC", 100, 101, [("1.50", "1")]))
    ev = h.rest(snapshot(100)).events
    assert [type(e) for e in ev] == [BookSnapshot, BookUpdate]
    book = h.a.book("BNBBTC")
    assert book is not None
    assert book.valid
    assert str(book.bids(1)[0].price) == "1.50"


def test_passive_sequence_gap_is_recomputed_and_the_named_symbol_wins() -> None:
    h = P()
    h.up("AAA", "BBB")
    h.frame(depth("AAA", 10, 11))
    h.frame(depth("BBB", 5000, 5001))
    # named in the URL: goes to BBB although AAA asked first
    h.rest(snapshot(5000), url=f"{DEPTH_URL}?symbol=BBB&limit=1000")
    h.rest(snapshot(10))
    assert [h.a.stream_state(k) for k in h.a.streams()] == ["live", "live"]
    h.frame(depth("AAA", 15, 16))  # 12..14 missing: AAA resyncs (BBB stays live)
    assert h.a.stream_state("binance:book:AAA") == "syncing"
    ev = h.rest(snapshot(15)).events  # only AAA waits: the unnamed answer is AAA's
    assert [type(e) for e in ev] == [Gap, BookSnapshot, BookUpdate]
    (gap,) = of(ev, Gap)
    assert gap.cause is GapCause.SEQUENCE_GAP
    assert (gap.stream, gap.first_seq, gap.last_seq) == ("binance:book:AAA", 12, 15)


def test_passive_unnamed_answers_go_in_request_order_unless_ids_clearly_disagree() -> None:
    h = P()
    h.up("AAA", "BBB")
    h.frame(depth("BBB", 5000, 5001))  # BBB asks first
    h.frame(depth("AAA", 10, 11))
    h.rest(snapshot(5000))  # the oldest request: BBB
    assert h.a.stream_state("binance:book:BBB") == "live"
    assert h.a.stream_state("binance:book:AAA") == "syncing"
    h.rest(snapshot(10))
    assert h.a.stream_state("binance:book:AAA") == "live"


def test_passive_unsubscribe_is_the_users_and_garbage_is_ignored() -> None:
    h = P()
    h.up("AAA")
    for text in ("not json", "[1]", '{"method":"SUBSCRIBE","params":"x","id":1}', "{}"):
        assert h.a.observe_sent(text, h.now()).events == []
    h.sent(subscribe(["bogus name"], 9))  # not a stream name we know
    assert h.a.streams() == ["binance:book:AAA"]
    h.sent(subscribe(["aaa@depth@100ms"], 11, method="UNSUBSCRIBE"))
    assert h.a.streams() == []
    # a REST answer nobody waits for, and calls that are not depth snapshots
    assert h.rest(snapshot(1)).events == []
    assert h.rest(b"{}", url="https://api.binance.com/api/v3/exchangeInfo").events == []


def test_passive_failed_snapshot_call_counts_as_an_error() -> None:
    h = P()
    h.up("AAA")
    h.frame(depth("AAA", 10, 11))
    h.take(h.a.observe_rest("GET", DEPTH_URL, None, b"", h.now(), error="timeout"))
    assert h.a.counters()["binance:book:AAA"].snapshot_errors == 1
    h.rest(b'{"code":-1003,"msg":"Too many requests"}', status=429)
    assert h.a.counters()["binance:book:AAA"].rate_limited == 1
    h.rest(snapshot(10))
    assert h.a.stream_state("binance:book:AAA") == "live"
