"""KucoinAdapter(passive=True): the replay side of the adapter (gapless.replay).

A passive adapter needs no bullet, accepts the welcome whatever its id, sends
nothing, learns subscriptions from captured ``ws_out`` frames (by their ids)
and takes captured level2 snapshot answers, attributing an answer whose URL
lost its query to the right book.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Sequence
from typing import TypeVar

from gapless.events import BookSnapshot, BookUpdate, Event, Gap, GapCause, Subscribed
from gapless.venues import kucoin
from gapless.venues.base import Now, RestCall, RestResult, Step
from gapless.venues.kucoin.adapter import KucoinAdapter, KucoinOptions

WALL0 = 1_700_000_000_000_000_000
MS0 = WALL0 // 1_000_000
REST = "https://api.kucoin.com"
L2_100 = f"{REST}/api/v1/market/orderbook/level2_100"
Ev = TypeVar("Ev", bound=Event)


def of(events: Iterable[Event], cls: type[Ev]) -> list[Ev]:
    return [e for e in events if isinstance(e, cls)]


def l2(symbol: str, start: int, end: int, bids: Sequence[tuple[str, str]] = ()) -> str:
    return json.dumps(
        {
            "type": "message",
            "topic": f"/market/level2:{symbol}",
            "subject": "trade.l2update",
            "data": {
                "changes": {"asks": [], "bids": [[p, s, str(end)] for p, s in bids]},
                "sequenceStart": start,
                "sequenceEnd": end,
                "symbol": symbol,
                "time": MS0 + end,
            },
        }
    )


def snap(seq: int) -> bytes:
    data = {"sequence": str(seq), "time": MS0, "bids": [["1.0", "2"]], "asks": [["9.0", "3"]]}
    return json.dumps({"code": "200000", "data": data}).encode()


def request(kind: str, topic: str, rid: str) -> str:
    return json.dumps(
        {"id": rid, "type": kind, "topic": topic, "privateChannel": False, "response": True}
    )


class P:
    def __init__(self) -> None:
        self.a = KucoinAdapter(passive=True)
        self.t = 0.0
        self.events: list[Event] = []

    def now(self) -> Now:
        self.t += 0.01
        return Now(self.t, WALL0 + int(self.t * 1e9))

    def take(self, step: Step) -> Step:
        assert step.sends == []
        self.events.extend(step.events)
        return step

    def frame(self, obj: object) -> Step:
        text = obj if isinstance(obj, str) else json.dumps(obj)
        return self.take(self.a.on_frame(text, self.now()))

    def sent(self, text: str) -> Step:
        return self.take(self.a.observe_sent(text, self.now()))

    def rest(self, body: bytes, url: str = L2_100, status: int | None = 200) -> Step:
        return self.take(self.a.observe_rest("GET", url, status, body, self.now()))

    def up(self, *symbols: str) -> None:
        self.take(self.a.on_connected("kucoin#1.1", self.now()))
        self.frame({"id": "anything", "type": "welcome"})
        self.sent(request("subscribe", f"/market/level2:{','.join(symbols)}", "3"))
        self.frame({"id": "3", "type": "ack"})


def test_passive_needs_no_bullet_accepts_any_welcome_and_sends_nothing() -> None:
    h = P()
    assert h.a.observe_rest("POST", f"{REST}/api/v1/bullet-public", 200, b"<x>", h.now()) == Step()
    h.take(h.a.on_connected("kucoin#1.1", h.now()))
    h.frame({"id": "someone-elses-connect-id", "type": "welcome"})
    assert h.a.welcomed
    h.sent(request("subscribe", "/market/level2:BTC-USDT", "7"))
    h.sent(request("subscribe", "/market/match:BTC-USDT", "8"))
    h.sent(json.dumps({"id": "9", "type": "ping"}))
    assert sorted(h.a.streams()) == ["kucoin:book:BTC-USDT", "kucoin:trade:BTC-USDT"]
    ev = h.frame({"id": "7", "type": "ack"}).events + h.frame({"id": "8", "type": "ack"}).events
    assert len(of(ev, Subscribed)) == 2
    h.frame(l2("BTC-USDT", 101, 101, [("1.5", "1")]))
    h.rest(snap(100))
    (bs,) = of(h.events, BookSnapshot)
    assert bs.seq == 100  # the snapshot's sequence; 101 follows as an update
    assert [u.seq for u in of(h.events, BookUpdate)] == [101]
    assert h.a.stream_state("kucoin:book:BTC-USDT") == "live"
    # a timer in passive mode sends nothing either (its requests are in the capture)
    h.t += 60.0
    assert h.a.on_timer(h.now()).sends == []


def test_passive_snapshot_depth_comes_from_the_path() -> None:
    h = P()
    h.up("BTC-USDT")
    h.rest(snap(100), url=f"{REST}/api/v1/market/orderbook/level2_20")
    assert h.a.options.snapshot_depth == 20


def test_passive_level2_gap_is_recomputed() -> None:
    h = P()
    h.up("BTC-USDT", "ETH-USDT")
    # both asked at the ack, BTC first: unnamed answers go in that order
    h.rest(snap(100))
    h.rest(snap(9000))
    h.frame(l2("BTC-USDT", 101, 101))
    h.frame(l2("ETH-USDT", 9001, 9001))
    assert [h.a.book_seq("BTC-USDT"), h.a.book_seq("ETH-USDT")] == [101, 9001]
    h.frame(l2("BTC-USDT", 105, 105))  # 102..104 missing
    h.rest(snap(104))
    h.frame(l2("BTC-USDT", 105, 106))
    (gap,) = of(h.events, Gap)
    assert gap.cause is GapCause.SEQUENCE_GAP
    assert (gap.stream, gap.first_seq) == ("kucoin:book:BTC-USDT", 102)


def test_passive_stale_resubscription_keeps_history_a_user_unsubscribe_does_not() -> None:
    h = P()
    h.up("BTC-USDT")
    h.rest(snap(100))
    h.frame(l2("BTC-USDT", 101, 101))
    # the live timer found the book stale: unsubscribe + subscribe, back to back
    h.sent(request("unsubscribe", "/market/level2:BTC-USDT", "4"))
    h.sent(request("subscribe", "/market/level2:BTC-USDT", "5"))
    assert h.a.stream_state("kucoin:book:BTC-USDT") == "pending"
    h.frame({"id": "5", "type": "ack"})
    h.rest(snap(200))
    h.frame(l2("BTC-USDT", 201, 201))
    (gap,) = of(h.events, Gap)
    assert gap.cause is GapCause.STALE
    assert (gap.first_seq, gap.last_seq) == (102, 200)
    # a user's unsubscribe (nothing follows) removes the stream
    h.sent(request("unsubscribe", "/market/level2:BTC-USDT", "6"))
    h.sent(request("subscribe", "/market/match:BTC-USDT", "7"))
    assert h.a.streams() == ["kucoin:trade:BTC-USDT"]


def test_passive_ignores_garbage_and_unknown_topics() -> None:
    h = P()
    h.up("BTC-USDT")
    for text in ("nope", "[]", '{"type":"subscribe"}', request("subscribe", "/spot/x:A-B", "1")):
        assert h.a.observe_sent(text, h.now()) == Step()
    assert h.a.streams() == ["kucoin:book:BTC-USDT"]
    h.take(h.a.observe_rest("GET", L2_100, None, b"", h.now(), error="timeout"))
    assert h.a.counters()["kucoin:book:BTC-USDT"].snapshot_errors == 1


# ------------------------------------------------------------------ live vs passive


class _Venue:
    """A one-symbol level2 venue: 40 bid and 40 ask levels, one change per sequence."""

    def __init__(self) -> None:
        self.seq = 1000
        self.bids = {60 + i: 1 for i in range(40)}  # 60..99
        self.asks = {101 + i: 1 for i in range(40)}  # 101..140

    def remove_best_bid(self) -> str:
        self.seq += 1
        price = max(self.bids)
        del self.bids[price]
        return l2("BTC-USDT", self.seq, self.seq, [(f"{price}.0", "0")])

    def snapshot(self, depth: int) -> bytes:
        bids = [[f"{p}.0", str(q)] for p, q in sorted(self.bids.items(), reverse=True)[:depth]]
        asks = [[f"{p}.0", str(q)] for p, q in sorted(self.asks.items())[:depth]]
        data = {"sequence": str(self.seq), "time": MS0 + self.seq, "bids": bids, "asks": asks}
        return json.dumps({"code": "200000", "data": data}).encode()


def _digest(events: list[Event]) -> list[tuple[object, ...]]:
    out: list[tuple[object, ...]] = []
    for e in events:
        if isinstance(e, BookSnapshot):
            out.append(("snapshot", e.seq, e.bids, e.asks))
        elif isinstance(e, Gap):
            out.append(("gap", e.cause, e.first_seq, e.last_seq))
        elif isinstance(e, Subscribed):
            out.append(("subscribed", e.stream))
    return out


def test_passive_replays_a_window_refresh_like_the_live_adapter() -> None:
    """Drive a live adapter (timers; a REST answer arrives after one more message) and
    record what a capture holds; the passive replay of that record gives the same
    snapshots and book, also through the refresh the live timer starts when the
    verified window thins (the refresh calibration must see the message that came
    between the call and its answer)."""
    opts = KucoinOptions(snapshot_depth=20, book_refresh_min_interval_s=0.5)
    live = KucoinAdapter([kucoin.book("BTC-USDT")], opts)
    venue = _Venue()
    t = 0.0
    records: list[tuple[float, str, str | bytes]] = []  # (t, kind, data) as a capture
    live_events: list[Event] = []

    def now() -> Now:
        return Now(t, WALL0 + int(t * 1e9))

    calls: list[tuple[RestCall, bytes]] = []  # answered after the next frame (latency)

    def apply(step: Step) -> None:
        live_events.extend(step.events)
        records.extend((t, "out", text) for text in step.sends)
        calls.extend((call, venue.snapshot(20)) for call in step.rest)

    def answer() -> None:
        while calls:
            call, body = calls.pop(0)
            records.append((t, "rest:" + call.url.split("?")[0], body))
            apply(live.on_rest(RestResult(call.key, 200, body), now()))

    def frame(text: str) -> None:
        records.append((t, "in", text))
        apply(live.on_frame(text, now()))

    call = live.prepare_dial(now())
    assert call is not None
    bullet = {
        "code": "200000",
        "data": {
            "token": "tok-0123456789abcdef",
            "instanceServers": [
                {
                    "endpoint": "wss://ws.example/",
                    "encrypt": True,
                    "protocol": "websocket",
                    "pingInterval": 18000,
                    "pingTimeout": 10000,
                }
            ],
        },
    }
    assert live.on_dial_rest(RestResult("bullet", 200, json.dumps(bullet).encode()), now()) is None
    connect_id = live.url.rsplit("connectId=", 1)[1]
    records.append((t, "open", ""))
    apply(live.on_connected("kucoin#1.1", now()))
    frame(json.dumps({"id": connect_id, "type": "welcome"}))
    (sub,) = [json.loads(text) for _, kind, text in records if kind == "out"]
    frame(json.dumps({"id": sub["id"], "type": "ack"}))
    answer()
    for _ in range(30):  # the window's bids thin out: the live timer refreshes the book
        t += 0.05
        pending = bool(calls)
        frame(venue.remove_best_bid())  # one message between a call and its answer
        if pending:
            answer()
        t += 0.05
        apply(live.on_timer(now()))
    assert live.counters()["kucoin:book:BTC-USDT"].refreshes >= 2

    passive = KucoinAdapter(passive=True)
    replayed: list[Event] = []
    for at, kind, data in records:
        n = Now(at, WALL0 + int(at * 1e9))
        if kind == "open":
            replayed.extend(passive.on_connected("kucoin#1.1", n).events)
        elif kind == "in":
            replayed.extend(passive.on_frame(data, n).events)
        elif kind == "out":
            assert isinstance(data, str)
            replayed.extend(passive.observe_sent(data, n).events)
        else:
            assert isinstance(data, bytes)
            replayed.extend(passive.observe_rest("GET", kind[5:], 200, data, n).events)
    assert _digest(replayed) == _digest(live_events)
    # the same counters, except the calls: the refresh calls came from the live timer
    (got,) = passive.counters().values()
    (want_c,) = live.counters().values()
    assert dataclasses.replace(got, snapshots_requested=0) == dataclasses.replace(
        want_c, snapshots_requested=0
    )
    assert got.refreshes == want_c.refreshes >= 2
    book, want = passive.book("BTC-USDT"), live.book("BTC-USDT")
    assert book is not None
    assert want is not None
    assert (book.bids(), book.asks()) == (want.bids(), want.asks())
