"""Unit tests for gapless.venues.binance.adapter, driven purely by Now(), frames and RestResults.

No sockets and no sleeping: every call gets ``Now(mono, wall_ns)`` from a
hand-advanced clock; frames and REST bodies are built from the wire shapes of
protocols.md §3.4-§3.7 (combined-stream envelopes, nested errors, depth bodies).
The hypothesis runs drive a small model venue (a book changed one level per
update id, diff events with absolute quantities, snapshots at any past id)
through random interleavings of events, REST answers, faults and reconnects.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from gapless.errors import ConfigError
from gapless.events import (
    BadFrame,
    BookSnapshot,
    BookTicker,
    BookUpdate,
    Event,
    Gap,
    GapCause,
    Level,
    Subscribed,
    SubscriptionRejected,
    Trade,
    WatchdogFired,
)
from gapless.venues import binance
from gapless.venues.base import Now, Phase, RestCall, RestResult, Step, StreamSpec, VenueAdapter
from gapless.venues.binance.adapter import (
    DEFAULT_REST_BUDGET,
    BinanceAdapter,
    BinanceOptions,
)

WALL0 = 1_700_000_000_000_000_000
E0 = 1_672_515_782_000  # exchange ms
SYM = "BNBBTC"
SYM2 = "ETHBTC"
BOOK = f"binance:book:{SYM}"
TRADES = f"binance:trade:{SYM}"
TICKER = f"binance:book_ticker:{SYM}"
Ev = TypeVar("Ev", bound=Event)


def of(events: Iterable[Event], cls: type[Ev]) -> list[Ev]:
    return [e for e in events if isinstance(e, cls)]


def ns(ms: int) -> int:
    return ms * 1_000_000


# ------------------------------------------------------------------ wire shapes (§3.4-§3.7)


def combined(stream: str, data: dict[str, Any]) -> str:
    return json.dumps({"stream": stream, "data": data})


def depth(
    first: int,
    last: int,
    e: int,
    bids: Sequence[tuple[str, str]] = (),
    asks: Sequence[tuple[str, str]] = (),
    sym: str = SYM,
) -> str:
    payload = {
        "e": "depthUpdate",
        "E": e,
        "s": sym,
        "U": first,
        "u": last,
        "b": [list(b) for b in bids],
        "a": [list(a) for a in asks],
    }
    return combined(f"{sym.lower()}@depth@100ms", payload)


def trade(
    tid: int,
    t_ms: int,
    price: str = "0.00100000",
    qty: str = "100.00000000",
    *,
    m: bool = True,
    sym: str = SYM,
) -> str:
    payload = {
        "e": "trade",
        "E": t_ms + 1,
        "s": sym,
        "t": tid,
        "p": price,
        "q": qty,
        "T": t_ms,
        "m": m,
        "M": True,
    }
    return combined(f"{sym.lower()}@trade", payload)


def ticker(u: int, sym: str = SYM, bid: str = "25.35190000", ask: str = "25.36520000") -> str:
    payload = {"u": u, "s": sym, "b": bid, "B": "31.21000000", "a": ask, "A": "40.66000000"}
    return combined(f"{sym.lower()}@bookTicker", payload)


def ack(rid: object) -> str:
    return json.dumps({"result": None, "id": rid})


def error(rid: object, code: int, msg: str) -> str:
    return json.dumps({"error": {"code": code, "msg": msg}, "id": rid})


def snap_body(last: int, bids: Sequence[tuple[str, str]], asks: Sequence[tuple[str, str]]) -> bytes:
    body = {"lastUpdateId": last, "bids": [list(b) for b in bids], "asks": [list(a) for a in asks]}
    return json.dumps(body).encode()


def snap(
    last: int,
    bids: Sequence[tuple[str, str]] = (("4.00000000", "431.00000000"),),
    asks: Sequence[tuple[str, str]] = (("4.00000200", "12.00000000"),),
    sym: str = SYM,
) -> RestResult:
    return RestResult(f"depth:{sym}", 200, snap_body(last, bids, asks))


def sent(step: Step) -> list[dict[str, Any]]:
    return [json.loads(s) for s in step.sends]


def lv(price: str, qty: str) -> Level:
    return Level(Decimal(price), Decimal(qty))


def scanned_phase(a: BinanceAdapter) -> Phase:
    """The phase by definition: any stream waiting for an ack is SUBSCRIBING; else any
    acknowledged book not synced is SYNCING; else LIVE."""
    streams = list(a._streams.values())
    if any(s.state.value in ("idle", "queued", "pending") for s in streams):
        return Phase.SUBSCRIBING
    for s in streams:
        if s.state.value == "live" and s.sync is not None and s.sync.state.value != "synced":
            return Phase.SYNCING
    return Phase.LIVE


class H:
    """A hand-driven adapter with a virtual monotonic clock."""

    def __init__(self, specs: Sequence[StreamSpec] = (), **opts: Any) -> None:
        self.a = BinanceAdapter(list(specs), BinanceOptions(**opts))
        self.t = 0.0

    def now(self, backlog: int = 0) -> Now:
        return Now(self.t, WALL0 + round(self.t * 1e9), backlog)

    def at(self, t: float) -> H:
        assert t >= self.t
        self.t = t
        return self

    def connect(self, conn: str = "c1") -> Step:
        return self.a.on_connected(conn, self.now())

    def disconnect(self, reason: str = "connection lost") -> Step:
        return self.a.on_disconnected(reason, self.now())

    def feed(self, text: str | bytes) -> Step:
        return self.a.on_frame(text, self.now())

    def rest(self, result: RestResult) -> Step:
        return self.a.on_rest(result, self.now())

    def timer(self, backlog: int = 0) -> Step:
        return self.a.on_timer(self.now(backlog))

    def phase(self) -> Phase:
        """Read through a call (mypy would keep a narrowed property), and check the
        adapter's O(1) answer (state counts, sync tally) against a scan of its streams."""
        got = self.a.phase
        assert got is scanned_phase(self.a)
        return got

    def control(self, op: str, spec: StreamSpec) -> Step:
        return self.a.control(op, spec, self.now())

    def ack_all(self, step: Step) -> Step:
        out = Step()
        for req in sent(step):
            out.extend(self.feed(ack(req["id"])))
        return out

    def up(self, conn: str = "c1") -> Step:
        """Connect, release every queued SUBSCRIBE (advancing time) and ack it."""
        out = Step()
        first = self.connect(conn)
        out.extend(first)
        out.extend(self.ack_all(first))
        while self.phase() is Phase.SUBSCRIBING:
            self.at(self.t + 1.0)
            more = self.timer()
            out.extend(more)
            out.extend(self.ack_all(more))
        return out

    def live_book(self, *, last: int = 110, e: int = E0) -> Step:
        """Book synced from snapshot 103 with events 100-105 and 106-``last`` replayed."""
        out = Step()
        out.extend(self.feed(depth(100, 105, e, bids=[("4.00000000", "400.00000000")])))
        out.extend(self.feed(depth(106, last, e + 100, asks=[("4.00000200", "0.00000000")])))
        out.extend(self.rest(snap(103)))
        return out


# ------------------------------------------------------------------ registry, options, seam


def test_is_a_venue_adapter_with_combined_url_and_no_dial_rest() -> None:
    a: VenueAdapter = BinanceAdapter([binance.book(SYM)])
    assert a.url == "wss://stream.binance.com:9443/stream"
    now = Now(0.0, WALL0)
    assert a.prepare_dial(now) is None
    assert a.on_dial_rest(RestResult("x", 200, b""), now) is None
    a.on_dial_failed("refused", now)
    assert a.redactions() == []
    custom = BinanceAdapter(options=BinanceOptions(ws_url="ws://127.0.0.1:9999"))
    assert custom.url == "ws://127.0.0.1:9999/stream"


def test_add_rejects_other_venues_unknown_channels_and_too_many_streams() -> None:
    a = BinanceAdapter(options=BinanceOptions(max_streams=2))
    with pytest.raises(ConfigError):
        a.add(StreamSpec("kraken", "book", "BTC/USD", 10))
    with pytest.raises(ConfigError):
        a.add(StreamSpec("binance", "ticker", SYM))
    with pytest.raises(ConfigError, match="upper case"):
        a.add(StreamSpec("binance", "trade", "bnbbtc"))
    a.add(binance.book(SYM))
    a.add(binance.book(SYM))  # idempotent
    a.add(binance.trades(SYM))
    with pytest.raises(ConfigError, match="more than 2 streams"):
        a.add(binance.book_ticker(SYM))
    assert a.streams() == [BOOK, TRADES]
    assert a.has_book(SYM)
    assert not a.has_book(SYM2)
    # through the runtime's outbox it is an event, not an exception
    s = a.control("subscribe", binance.book_ticker(SYM), Now(0.0, WALL0))
    (rej,) = of(s.events, SubscriptionRejected)
    assert rej.stream == TICKER
    assert rej.retry_in_s is None


@pytest.mark.parametrize(
    "opts",
    [
        {"max_outbound_per_s": 6},
        {"max_outbound_per_s": 0},
        {"max_streams": 1025},
        {"snapshot_limit": 5001},
        {"snapshot_limit": 0},
        {"max_params_per_request": 0},
        {"lifetime_s": 10.0, "lifetime_margin_s": 10.0},
        {"ws_url": "https://x"},
        {"ws_url": "wss://x/"},
        {"rest_url": "wss://x"},
        {"max_resyncs_per_minute": 0},
    ],
)
def test_bad_options_are_config_errors(opts: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        BinanceOptions(**opts)


def test_default_rest_budget_paces_a_mass_resync_below_the_venue_limit() -> None:
    b = BinanceOptions().rest_budget
    assert b == DEFAULT_REST_BUDGET
    assert b.per_second == pytest.approx(6000 * 0.5 / 60)
    # the most any 60 s window can spend: the burst plus a minute of refill
    assert b.capacity + 60 * b.per_second < 6000
    # 50 books at weight 50: the burst covers some, the rest are paced, not refused
    total = 50 * 50
    assert total > b.capacity
    assert (total - b.capacity) / b.per_second < 30


# ------------------------------------------------------------------ connect, subscribe, acks


def test_connect_subscribes_every_stream_then_acks_are_subscribed_events() -> None:
    h = H([binance.book(SYM), binance.trades(SYM), binance.book_ticker(SYM)])
    assert h.phase() is Phase.SUBSCRIBING
    s = h.connect()
    (req,) = sent(s)
    assert req["method"] == "SUBSCRIBE"
    assert req["params"] == ["bnbbtc@depth@100ms", "bnbbtc@trade", "bnbbtc@bookTicker"]
    assert isinstance(req["id"], int)
    assert not s.rest
    assert not s.events
    assert h.a.stream_state(BOOK) == "pending"
    # an ack for an unknown id changes nothing
    assert not h.feed(ack(req["id"] + 1000)).events
    a = h.feed(ack(req["id"]))
    subs = of(a.events, Subscribed)
    assert [e.stream for e in subs] == [BOOK, TRADES, TICKER]
    assert all(e.conn == "c1" and e.exchange_ts_ns is None for e in subs)
    assert h.phase() is Phase.SYNCING  # the book waits for events and a snapshot
    assert h.a.stream_state(BOOK) == "syncing"
    assert h.a.stream_state(TRADES) == "live"


def test_subscribe_is_chunked_and_paced_on_connect() -> None:
    syms = [f"S{i}BTC" for i in range(5)]
    specs = [binance.trades(s) for s in syms] + [binance.book_ticker(s) for s in syms]
    h = H(specs, max_params_per_request=2)
    s = h.connect()
    reqs = sent(s)
    assert len(reqs) == 4  # 10 names in 5 chunks of 2; only 4 may go in the first second
    assert all(len(r["params"]) == 2 for r in reqs)
    assert len({r["id"] for r in reqs}) == 4
    assert not h.at(0.5).timer().sends
    more = sent(h.at(1.0).timer())
    assert len(more) == 1
    names = [n for r in reqs + more for n in r["params"]]
    assert sorted(names) == sorted(
        [f"{s.lower()}@trade" for s in syms] + [f"{s.lower()}@bookTicker" for s in syms]
    )


def test_ack_deadline_counts_from_release_and_waits_for_the_backlog() -> None:
    h = H([binance.trades(f"S{i}BTC") for i in range(5)], max_params_per_request=1)
    first = h.connect()
    h.ack_all(first)  # four acked at once
    h.at(1.0)
    (late,) = sent(h.timer())  # the fifth leaves at t=1
    assert not h.at(10.5).timer().reconnect  # 9.5 s after it left
    assert not h.at(11.5).timer(backlog=3).reconnect  # the ack may be queued
    s = h.timer()
    assert s.reconnect
    assert str(late["id"]) in s.reconnect
    (rej,) = of(s.events, SubscriptionRejected)
    assert rej.stream == "binance:trade:S4BTC"
    assert rej.retry_in_s == 0.0


def test_invalid_stream_error_splits_the_request_then_rejects_only_the_bad_one() -> None:
    h = H([binance.trades(s) for s in ("AAABTC", "BBBBTC", "CCCBTC", "DDDBTC")])
    (req,) = sent(h.connect())
    s = h.feed(error(req["id"], 2, "Invalid request: invalid stream"))
    assert not s.events
    halves = sent(s)
    assert [r["params"] for r in halves] == [
        ["aaabtc@trade", "bbbbtc@trade"],
        ["cccbtc@trade", "dddbtc@trade"],
    ]
    assert h.a.stats.split_requests == 1
    s = h.feed(ack(halves[0]["id"]))
    assert len(of(s.events, Subscribed)) == 2
    quarters = sent(h.feed(error(halves[1]["id"], 2, "Invalid request: invalid stream")))
    assert len(quarters) == 1  # the fifth message within a second waits for the pacer
    quarters += sent(h.at(1.0).timer())
    assert [r["params"] for r in quarters] == [["cccbtc@trade"], ["dddbtc@trade"]]
    h.feed(ack(quarters[0]["id"]))
    s = h.feed(error(quarters[1]["id"], 2, "Invalid request: invalid stream"))
    (rej,) = of(s.events, SubscriptionRejected)
    assert rej.stream == "binance:trade:DDDBTC"
    assert rej.retry_in_s is None
    assert "invalid stream" in rej.error
    assert h.a.stream_state("binance:trade:DDDBTC") == "rejected"
    assert h.phase() is Phase.LIVE
    # a permanent rejection is not retried, not even after a reconnect
    h.disconnect()
    (again,) = sent(h.connect())
    assert "dddbtc@trade" not in again["params"]


def test_other_errors_retry_with_backoff_and_null_id_errors_hit_what_waits() -> None:
    h = H([binance.trades(SYM)], reject_retry_base_s=2.0)
    (req,) = sent(h.connect())
    s = h.feed(error(req["id"], 3, "Invalid JSON: expected value at line 1 column 1"))
    (rej,) = of(s.events, SubscriptionRejected)
    assert rej.retry_in_s == 2.0
    assert h.a.stream_state(TRADES) == "retry"
    assert not h.at(1.9).timer().sends
    (req2,) = sent(h.at(2.0).timer())
    assert req2["params"] == ["bnbbtc@trade"]
    s = h.feed(error(None, 2, "Invalid request: request ID must be an unsigned integer"))
    (rej,) = of(s.events, SubscriptionRejected)
    assert rej.retry_in_s == 4.0  # doubled
    (req3,) = sent(h.at(6.0).timer())
    assert of(h.feed(ack(req3["id"])).events, Subscribed)


# ------------------------------------------------------------------ books (§3.8)


def test_book_buffers_fetches_snapshot_then_delivers_snapshot_and_updates() -> None:
    h = H([binance.book(SYM)])
    h.up()
    s1 = h.feed(depth(100, 105, E0, bids=[("4.00000000", "400.00000000")]))
    (call,) = s1.rest
    assert call == RestCall(
        key=f"depth:{SYM}",
        method="GET",
        url="https://api.binance.com/api/v3/depth",
        params=(("symbol", SYM), ("limit", "1000")),
        weight=50.0,
    )
    s2 = h.feed(depth(106, 110, E0 + 100, asks=[("4.00000200", "0.00000000")]))
    assert not s2.rest
    assert not s2.events
    assert h.phase() is Phase.SYNCING
    b = h.a.book(SYM)
    assert b is not None
    assert not b.valid
    s3 = h.rest(
        snap(
            103,
            bids=[("4.00000000", "431.00000000"), ("3.99000000", "10.00000000")],
            asks=[("4.00000200", "12.00000000"), ("4.10000000", "1.00000000")],
        )
    )
    snap_ev, u1, u2 = s3.events
    assert isinstance(snap_ev, BookSnapshot)
    assert snap_ev.stream == BOOK
    assert snap_ev.symbol == SYM
    assert snap_ev.seq == 103
    assert snap_ev.checksum is None
    assert snap_ev.exchange_ts_ns == 0
    # the snapshot itself, exactly as the venue sent it
    assert snap_ev.bids == (lv("4.00000000", "431.00000000"), lv("3.99000000", "10.00000000"))
    assert snap_ev.asks == (lv("4.00000200", "12.00000000"), lv("4.10000000", "1.00000000"))
    assert str(snap_ev.bids[0].price) == "4.00000000"  # exact wire text, trailing zeros kept
    # then the buffered events that continue it, levels as sent
    assert isinstance(u1, BookUpdate)
    assert isinstance(u2, BookUpdate)
    assert (u1.seq, u1.exchange_ts_ns) == (105, ns(E0))
    assert u1.bids == (lv("4.00000000", "400.00000000"),)
    assert u1.asks == ()
    assert (u2.seq, u2.exchange_ts_ns) == (110, ns(E0 + 100))
    assert u2.asks == (lv("4.00000200", "0.00000000"),)
    assert u2.checksum is None
    b = h.a.book(SYM)
    assert b is not None
    assert b.valid
    assert snap_ev.book is b.view
    assert b.bids() == (lv("4.00000000", "400.00000000"), lv("3.99000000", "10.00000000"))
    assert b.asks() == (lv("4.10000000", "1.00000000"),)
    assert h.phase() is Phase.LIVE
    # live events: one BookUpdate each; an old one is dropped and counted
    s4 = h.feed(depth(111, 112, E0 + 200, bids=[("3.98000000", "1.50000000")]))
    (u3,) = s4.events
    assert isinstance(u3, BookUpdate)
    assert u3.seq == 112
    assert u3.book is b.view
    assert not h.feed(depth(108, 112, E0 + 200)).events
    c = h.a.counters()[BOOK]
    assert (c.snapshots_requested, c.snapshots_fetched, c.duplicates_dropped) == (1, 1, 1)
    assert c.delivered == 4
    assert c.gaps == 0


def test_snapshot_weight_follows_the_limit() -> None:
    h = H([binance.book(SYM)], snapshot_limit=5000, rest_url="http://127.0.0.1:8080")
    h.up()
    (call,) = h.feed(depth(1, 2, E0)).rest
    assert call.weight == 250.0
    assert call.url == "http://127.0.0.1:8080/api/v3/depth"
    assert call.params == (("symbol", SYM), ("limit", "5000"))


def test_stale_snapshot_is_refetched_after_the_minimum_interval() -> None:
    h = H([binance.book(SYM)], resync_min_interval_s=1.0)
    h.up()
    h.feed(depth(100, 105, E0))
    s = h.rest(snap(98))  # lastUpdateId + 1 < first U: §3.8 step 3
    assert not s.events
    assert not s.rest
    assert h.a.counters()[BOOK].refetches == 1
    t0 = h.t
    assert not h.at(t0 + 0.5).timer().rest
    (call,) = h.at(t0 + 1.0).timer().rest
    assert call.key == f"depth:{SYM}"
    s = h.rest(snap(99))  # ends exactly where the first event starts: usable
    assert [type(e) for e in s.events] == [BookSnapshot, BookUpdate]


def test_gap_while_live_resyncs_with_exact_sequence_bounds() -> None:
    h = H([binance.book(SYM)])
    h.up()
    h.live_book(last=110)
    h.at(h.t + 2.0)
    s = h.feed(depth(115, 116, E0 + 500, bids=[("3.90000000", "1.00000000")]))
    assert not of(s.events, BookUpdate)
    assert len(s.rest) == 1  # resync: new snapshot
    b = h.a.book(SYM)
    assert b is not None
    assert not b.valid
    assert h.phase() is Phase.SYNCING
    assert h.a.stream_state(BOOK) == "syncing"
    h.feed(depth(117, 118, E0 + 600))
    s = h.rest(snap(117))
    gap, bs, upd = s.events
    assert isinstance(gap, Gap)
    assert isinstance(bs, BookSnapshot)
    assert isinstance(upd, BookUpdate)
    assert gap.cause is GapCause.SEQUENCE_GAP
    assert (gap.first_seq, gap.last_seq) == (111, 117)
    assert gap.start_ts_ns == ns(E0 + 100)  # E of the last delivered event (106-110)
    assert gap.end_ts_ns == ns(E0 + 600)  # E of the first event applied after the snapshot
    assert gap.stream == BOOK
    assert gap.symbol == SYM
    assert bs.seq == 117
    assert upd.seq == 118
    c = h.a.counters()[BOOK]
    assert c.gaps == 1
    assert c.resyncs == 1


def test_gap_whose_snapshot_covers_every_buffered_event_has_no_end_time() -> None:
    h = H([binance.book(SYM)])
    h.up()
    h.live_book(last=110)
    h.at(h.t + 2.0)
    h.feed(depth(115, 116, E0 + 500))
    gap, bs = h.rest(snap(120)).events
    assert isinstance(gap, Gap)
    assert isinstance(bs, BookSnapshot)
    assert (gap.first_seq, gap.last_seq, gap.end_ts_ns) == (111, 120, None)
    # the next event may overlap the snapshot (absolute quantities): it is applied
    (upd,) = h.feed(depth(117, 125, E0 + 700)).events
    assert isinstance(upd, BookUpdate)
    assert upd.seq == 125


def test_reconnect_rebuilds_from_a_fresh_snapshot_and_declares_the_outage() -> None:
    h = H([binance.book(SYM)])
    h.up()
    h.live_book(last=110)
    assert not h.disconnect().events  # the gap is emitted when its extent is known
    b = h.a.book(SYM)
    assert b is not None
    assert not b.valid
    assert h.phase() is Phase.SUBSCRIBING
    h.at(h.t + 2.0)
    s = h.connect("c2")
    (req,) = sent(s)
    assert req["params"] == ["bnbbtc@depth@100ms"]
    assert not h.feed(depth(140, 141, E0 + 3000)).rest  # before the ack: not ours yet
    h.feed(ack(req["id"]))
    (call,) = h.feed(depth(150, 152, E0 + 4000)).rest
    assert call.key == f"depth:{SYM}"
    gap, bs, upd = h.rest(snap(151)).events
    assert isinstance(gap, Gap)
    assert isinstance(bs, BookSnapshot)
    assert isinstance(upd, BookUpdate)
    assert gap.cause is GapCause.DISCONNECT
    assert gap.detail == "connection lost"
    assert (gap.first_seq, gap.last_seq) == (111, 151)
    assert (gap.start_ts_ns, gap.end_ts_ns) == (ns(E0 + 100), ns(E0 + 4000))
    assert upd.seq == 152


def test_reconnect_that_missed_nothing_is_healed_without_a_gap() -> None:
    h = H([binance.book(SYM)])
    h.up()
    h.live_book(last=110)
    h.disconnect()
    h.at(h.t + 2.0)
    h.up("c2")
    h.feed(depth(111, 113, E0 + 900))
    s = h.rest(snap(110))
    assert [type(e) for e in s.events] == [BookSnapshot, BookUpdate]
    assert h.a.counters()[BOOK].healed == 1


def test_snapshot_older_than_what_was_delivered_is_refetched() -> None:
    h = H([binance.book(SYM)])
    h.up()
    h.live_book(last=110)
    h.disconnect()
    h.at(h.t + 2.0)
    h.up("c2")
    h.feed(depth(108, 112, E0 + 900))
    s = h.rest(snap(109))  # DepthSync would accept it, but 109 < 110 already delivered
    assert not s.events
    assert h.a.counters()[BOOK].refetches == 1
    (_call,) = h.at(h.t + 1.0).timer().rest
    gap, bs, _upd = h.rest(snap(111)).events
    assert isinstance(gap, Gap)
    assert isinstance(bs, BookSnapshot)
    assert (gap.first_seq, gap.last_seq) == (111, 111)


def test_snapshot_before_any_event_is_held_until_the_first_event_decides() -> None:
    h = H([binance.book(SYM)])
    h.up()
    h.feed(depth(100, 105, E0))
    h.a.on_overflow(3, h.now())  # restart: the answer in flight arrives to an empty cycle
    s = h.rest(snap(107))
    assert not s.events
    assert not s.rest
    s = h.feed(depth(106, 109, E0 + 100, bids=[("4.00000000", "1.00000000")]))
    bs, upd = s.events
    assert isinstance(bs, BookSnapshot)
    assert bs.seq == 107
    assert bs.bids == (lv("4.00000000", "431.00000000"),)  # the snapshot, not the update
    assert isinstance(upd, BookUpdate)
    assert upd.seq == 109
    # a held snapshot the stream has moved past is refetched
    h2 = H([binance.book(SYM)])
    h2.up()
    h2.feed(depth(100, 105, E0))
    h2.a.on_overflow(1, h2.now())
    h2.rest(snap(90))
    h2.at(h2.t + 1.0)
    s = h2.feed(depth(106, 109, E0 + 100))
    assert len(s.rest) == 1
    assert not s.events
    assert h2.a.counters()[BOOK].refetches == 1


def test_rest_429_blocks_snapshots_until_retry_after() -> None:
    h = H([binance.book(SYM), binance.book(SYM2)])
    h.up()
    h.feed(depth(100, 105, E0))
    s = h.rest(RestResult(f"depth:{SYM}", 429, b'{"code":-1003,"msg":"Too many requests."}', 5.0))
    assert not s.rest
    assert not s.events
    t0 = h.t
    # the other symbol's first request waits for the block as well
    assert not h.feed(depth(200, 201, E0, sym=SYM2)).rest
    assert not h.at(t0 + 4.9).timer().rest
    calls = h.at(t0 + 5.0).timer().rest
    assert sorted(c.key for c in calls) == sorted([f"depth:{SYM2}", f"depth:{SYM}"])
    assert h.a.counters()[BOOK].rate_limited == 1
    assert h.a.stats.rest_blocks == 1


def test_rest_418_without_retry_after_waits_a_minute() -> None:
    h = H([binance.book(SYM)])
    h.up()
    h.feed(depth(100, 105, E0))
    h.rest(RestResult(f"depth:{SYM}", 418, b"", None))
    t0 = h.t
    assert not h.at(t0 + 59.0).timer().rest
    assert h.at(t0 + 60.0).timer().rest


def test_rest_errors_retry_with_backoff_and_bad_bodies_are_bad_frames() -> None:
    h = H([binance.book(SYM)], rest_retry_base_s=1.0, resync_min_interval_s=0.0)
    h.up()
    h.feed(depth(100, 105, E0))
    t0 = h.t
    assert not h.rest(RestResult(f"depth:{SYM}", 503, b"busy")).rest
    assert not h.at(t0 + 0.9).timer().rest
    assert h.at(t0 + 1.0).timer().rest
    s = h.rest(RestResult(f"depth:{SYM}", None, b"", error="timed out"))
    assert not s.rest
    assert not h.at(t0 + 2.9).timer().rest  # doubled: 2 s
    assert h.at(t0 + 3.0).timer().rest
    s = h.rest(RestResult(f"depth:{SYM}", 200, b'{"lastUpdateId":"x"'))
    (bad,) = of(s.events, BadFrame)
    assert "depth snapshot" in bad.reason
    assert bad.excerpt.startswith('{"lastUpdateId"')
    assert h.a.bad_frames == 1
    assert not h.at(t0 + 6.9).timer().rest  # 4 s
    assert h.at(t0 + 7.0).timer().rest
    s = h.rest(RestResult(f"depth:{SYM}", 200, b'{"code":-1121,"msg":"Invalid symbol."}'))
    assert not s.events
    assert h.a.counters()[BOOK].snapshot_errors == 4
    assert h.at(t0 + 15.0).timer().rest
    assert [type(e) for e in h.rest(snap(104)).events] == [BookSnapshot, BookUpdate]
    # a good answer resets the backoff; answers for unknown keys are ignored
    assert not h.rest(RestResult("token", 200, b"{}")).events
    assert not h.rest(snap(104, sym=SYM2)).events


def test_unanswered_snapshot_is_asked_again_after_its_deadline() -> None:
    h = H([binance.book(SYM)], snapshot_timeout_s=30.0)
    h.up()
    h.feed(depth(100, 105, E0))
    t0 = h.t
    assert not h.at(t0 + 30.5).timer(backlog=2).rest  # the answer may be queued
    (call,) = h.timer().rest
    assert call.key == f"depth:{SYM}"
    assert h.a.counters()[BOOK].snapshot_timeouts == 1
    # both answers arrive: the first syncs, the second is ignored
    assert of(h.rest(snap(104)).events, BookSnapshot)
    assert not h.rest(snap(105)).events


def test_lost_answer_is_asked_again_even_when_a_new_cycle_waits_for_it() -> None:
    h = H([binance.book(SYM)], snapshot_timeout_s=30.0)
    h.up()
    assert h.feed(depth(100, 105, E0)).rest
    h.a.on_overflow(1, h.now())
    assert not h.feed(depth(106, 107, E0 + 100)).rest  # the call in flight will be judged
    t0 = h.t
    assert not h.at(t0 + 29.0).timer().rest
    (call,) = h.at(t0 + 31.0).timer().rest
    assert call.key == f"depth:{SYM}"
    assert of(h.rest(snap(106)).events, BookSnapshot)


def test_rate_limit_pushes_back_the_deadline_of_other_calls_in_flight() -> None:
    h = H([binance.book(SYM), binance.book(SYM2)], snapshot_timeout_s=30.0)
    h.up()
    h.feed(depth(100, 105, E0))
    h.feed(depth(200, 201, E0, sym=SYM2))
    t0 = h.t
    h.rest(RestResult(f"depth:{SYM}", 429, b"{}", 100.0))
    # ETHBTC's call is held by the runtime's blocked budget: not lost
    assert not h.at(t0 + 60.0).timer().rest
    calls = h.at(t0 + 100.0).timer().rest
    assert [c.key for c in calls] == [f"depth:{SYM}"]
    assert of(h.rest(snap(104)).events, BookSnapshot)
    (again,) = h.at(t0 + 130.5).timer().rest
    assert again.key == f"depth:{SYM2}"
    assert h.a.counters()[f"binance:book:{SYM2}"].snapshot_timeouts == 1


def test_many_resyncs_escalate_to_a_reconnect() -> None:
    h = H([binance.book(SYM)], max_resyncs_per_minute=2, resync_min_interval_s=0.0)
    h.up()
    h.live_book(last=110)
    u = 110
    reconnects = []
    for i in range(3):
        h.at(h.t + 1.0)
        s = h.feed(depth(u + 5, u + 6, E0 + 1000 * (i + 1)))
        reconnects.append(s.reconnect)
        s = h.rest(snap(u + 5))
        u += 6
    assert reconnects[:2] == [None, None]
    assert reconnects[2] is not None
    assert "resyncs within a minute" in reconnects[2]


def test_stale_book_watchdog_resyncs_when_configured() -> None:
    h = H([binance.book(SYM)], book_stale_after_s=30.0)
    h.up()
    h.live_book(last=110)
    t0 = h.t
    assert not h.at(t0 + 29.0).timer().events
    s = h.at(t0 + 31.0).timer()
    (wd,) = of(s.events, WatchdogFired)
    assert wd.kind == "stale"
    assert wd.stream == BOOK
    b = h.a.book(SYM)
    assert b is not None
    assert not b.valid
    h.feed(depth(111, 112, E0 + 40_000))
    gap, _bs = h.rest(snap(112)).events
    assert isinstance(gap, Gap)
    assert gap.cause is GapCause.STALE
    assert (gap.first_seq, gap.last_seq) == (111, 112)


# ------------------------------------------------------------------ trades (§3.6)


def test_trades_exact_decimals_taker_side_and_duplicates() -> None:
    h = H([binance.trades(SYM)])
    h.up()
    (t1,) = h.feed(trade(12345, E0, "0.00100000", "100.00000000", m=True)).events
    assert isinstance(t1, Trade)
    assert t1.trade_id == 12345
    assert t1.stream == TRADES
    assert t1.symbol == SYM
    assert t1.price == Decimal("0.00100000")
    assert str(t1.qty) == "100.00000000"
    assert t1.side == "sell"  # buyer is the maker: the taker sold
    assert t1.exchange_ts_ns == ns(E0)
    (t2,) = h.feed(trade(12346, E0 + 1, m=False)).events
    assert isinstance(t2, Trade)
    assert t2.side == "buy"
    assert not h.feed(trade(12346, E0 + 1)).events
    assert not h.feed(trade(12000, E0 + 1)).events
    c = h.a.counters()[TRADES]
    assert c.duplicates_dropped == 2
    assert c.delivered == 2


def test_trade_id_jump_is_a_gap_with_the_missing_ids() -> None:
    h = H([binance.trades(SYM)])
    h.up()
    h.feed(trade(10, E0))
    gap, tr = h.feed(trade(14, E0 + 50)).events
    assert isinstance(gap, Gap)
    assert isinstance(tr, Trade)
    assert gap.cause is GapCause.SEQUENCE_GAP
    assert (gap.first_seq, gap.last_seq) == (11, 13)
    assert (gap.start_ts_ns, gap.end_ts_ns) == (ns(E0), ns(E0 + 50))
    assert tr.trade_id == 14


def test_trades_before_the_ack_are_not_delivered() -> None:
    h = H([binance.trades(SYM)])
    (req,) = sent(h.connect())
    assert not h.feed(trade(10, E0)).events
    assert h.a.stats.before_ack == 1
    h.feed(ack(req["id"]))
    assert of(h.feed(trade(11, E0)).events, Trade)


def test_reconnect_trade_gap_is_revealed_by_the_first_trade() -> None:
    h = H([binance.trades(SYM)])
    h.up()
    h.feed(trade(10, E0))
    h.disconnect("code 1006")
    h.at(5.0)
    h.up("c2")
    gap, tr = h.feed(trade(20, E0 + 5000)).events
    assert isinstance(gap, Gap)
    assert isinstance(tr, Trade)
    assert gap.cause is GapCause.DISCONNECT
    assert gap.detail == "code 1006"
    assert (gap.first_seq, gap.last_seq) == (11, 19)
    assert (gap.start_ts_ns, gap.end_ts_ns) == (ns(E0), ns(E0 + 5000))
    # an outage in which no trade happened needs no gap
    h.disconnect()
    h.at(10.0)
    h.up("c3")
    assert [type(e) for e in h.feed(trade(21, E0 + 9000)).events] == [Trade]
    assert h.a.counters()[TRADES].healed == 1


def test_no_gap_check_across_an_unsubscribe_the_user_asked_for() -> None:
    h = H([binance.trades(SYM)])
    h.up()
    h.feed(trade(10, E0))
    s = h.control("unsubscribe", binance.trades(SYM))
    assert sent(s)[0]["method"] == "UNSUBSCRIBE"
    assert not s.events
    assert not h.feed(trade(11, E0)).events  # in flight before the unsubscribe: dropped
    h.at(2.0)
    s = h.control("subscribe", binance.trades(SYM))
    (req,) = sent(s)
    h.feed(ack(req["id"]))
    assert [type(e) for e in h.feed(trade(500, E0 + 2000)).events] == [Trade]


# ------------------------------------------------------------------ bookTicker


def test_book_ticker_delivered_and_outage_declared_by_update_id() -> None:
    h = H([binance.book_ticker(SYM)])
    h.up()
    (bt,) = h.feed(ticker(400900217)).events
    assert isinstance(bt, BookTicker)
    assert bt.update_id == 400900217
    assert bt.exchange_ts_ns == 0
    assert bt.stream == TICKER
    assert (bt.bid, bt.bid_qty) == (Decimal("25.35190000"), Decimal("31.21000000"))
    assert (bt.ask, bt.ask_qty) == (Decimal("25.36520000"), Decimal("40.66000000"))
    # sampled: skipping ids is normal, repeats are dropped
    assert [type(e) for e in h.feed(ticker(400900300)).events] == [BookTicker]
    assert not h.feed(ticker(400900300)).events
    h.disconnect()
    h.at(3.0)
    h.up("c2")
    gap, bt2 = h.feed(ticker(400901000)).events
    assert isinstance(gap, Gap)
    assert isinstance(bt2, BookTicker)
    assert gap.cause is GapCause.DISCONNECT
    assert (gap.first_seq, gap.last_seq) == (400900301, 400900999)
    assert (gap.start_ts_ns, gap.end_ts_ns) == (0, 0)


# ------------------------------------------------------------------ outbound pacing (§3.2)


def _max_in_any_second(times: list[float]) -> int:
    return max((sum(1 for u in times if t <= u < t + 1.0) for t in times), default=0)


def test_outbound_pacing_never_exceeds_the_limit_across_a_burst_of_control_requests() -> None:
    h = H([binance.trades(SYM)], max_params_per_request=1)
    h.up()
    sends: list[float] = []
    syms = [f"X{i}BTC" for i in range(13)]
    for i, s in enumerate(syms):
        step = h.control("subscribe", binance.trades(s))
        sends += [h.t] * len(step.sends)
        h.ack_all(step)
        if i % 3 == 2:
            h.at(h.t + 0.1)
    while h.phase() is Phase.SUBSCRIBING:
        h.at(h.t + 0.1)
        step = h.timer()
        sends += [h.t] * len(step.sends)
        h.ack_all(step)
    for s in syms[:6]:
        step = h.control("unsubscribe", binance.trades(s))
        sends += [h.t] * len(step.sends)
    for _ in range(30):
        h.at(h.t + 0.1)
        sends += [h.t] * len(h.timer().sends)
    assert len(sends) == 13 + 6
    assert _max_in_any_second(sends) == 4
    assert h.a.stats.sends_deferred > 0


def test_queued_subscribes_coalesce_and_an_unsubscribe_before_sending_cancels() -> None:
    h = H([binance.trades(SYM)])
    first = h.connect()
    h.ack_all(first)
    # use up the window, then ask for more while it is full
    for i in range(3):
        h.ack_all(h.control("subscribe", binance.trades(f"A{i}BTC")))
    assert h.control("subscribe", binance.trades("B0BTC")).sends == []
    h.control("subscribe", binance.trades("B1BTC"))
    h.control("subscribe", binance.book_ticker("B2BTC"))
    h.control("unsubscribe", binance.trades("B1BTC"))
    assert h.a.stream_state("binance:trade:B0BTC") == "queued"
    (req,) = sent(h.at(1.0).timer())
    assert req["method"] == "SUBSCRIBE"
    assert req["params"] == ["b0btc@trade", "b2btc@bookTicker"]


def test_control_while_disconnected_is_replayed_on_connect() -> None:
    h = H([binance.trades(SYM)])
    s = h.control("subscribe", binance.book(SYM2))
    assert not s.sends
    h.control("unsubscribe", binance.trades(SYM))
    h.control("unsubscribe", binance.trades("NOPE"))  # unknown: nothing
    (req,) = sent(h.connect())
    assert req["params"] == ["ethbtc@depth@100ms"]
    with pytest.raises(ConfigError):
        h.control("resubscribe", binance.book(SYM2))


def test_unsubscribe_sends_only_for_streams_the_venue_knows() -> None:
    h = H([binance.trades(SYM), binance.book(SYM2)], reject_retry_base_s=5.0)
    (req,) = sent(h.connect())
    h.feed(error(req["id"], 3, "Invalid JSON"))  # both retrying, nothing subscribed
    assert not h.control("unsubscribe", binance.trades(SYM)).sends


# ------------------------------------------------------------------ planned reconnects


def test_server_shutdown_signals_a_planned_reconnect() -> None:
    h = H([binance.trades(SYM)], make_before_break=False)
    h.up()
    s = h.feed(combined("!serverShutdown", {"e": "serverShutdown", "E": 1770123456789}))
    assert s.reconnect is not None
    assert s.reconnect.startswith("planned: ")
    assert h.a.planned_reconnect is not None
    assert "serverShutdown" in h.a.planned_reconnect
    assert h.a.stats.planned_reconnects == 1
    assert not h.feed('{"e":"serverShutdown","E":1770123456790}').reconnect  # once
    h.disconnect("planned")
    h.connect("c2")
    assert h.a.planned_reconnect is None


def test_make_before_break_leaves_the_planned_switch_to_the_runtime() -> None:
    h = H([binance.trades(SYM)])  # make_before_break is the default
    h.up()
    s = h.feed('{"event":{"e":"serverShutdown","E":1770123456789}}')
    assert s.reconnect is None
    assert h.a.planned_reconnect is not None
    nxt = h.a.successor()
    assert nxt is not h.a
    assert nxt.specs() == h.a.specs()
    assert nxt.options == h.a.options


def test_connection_lifetime_signals_a_planned_reconnect_before_the_24h_mark() -> None:
    h = H([binance.trades(SYM)], lifetime_s=3600.0, lifetime_margin_s=60.0, make_before_break=False)
    h.at(100.0)
    h.up()
    t0 = h.a.connected_at
    assert not h.at(t0 + 3539.0).timer().reconnect
    assert h.a.planned_reconnect is None
    s = h.at(t0 + 3540.0).timer()
    assert s.reconnect is not None
    assert "lifetime" in s.reconnect
    assert h.a.planned_reconnect is not None
    assert BinanceOptions().lifetime_s == 86400.0


# ------------------------------------------------------------------ bad frames, overflow, shutdown


def test_invalid_frame_resyncs_books_and_marks_trades() -> None:
    h = H([binance.book(SYM), binance.trades(SYM)])
    h.up()
    h.live_book(last=110)
    h.feed(trade(10, E0))
    s = h.feed("{not json")
    (bad,) = of(s.events, BadFrame)
    assert bad.excerpt == "{not json"
    assert bad.conn == "c1"
    b = h.a.book(SYM)
    assert b is not None
    assert not b.valid
    # the next trade shows whether trades were lost
    gap, _tr = h.feed(trade(13, E0 + 10)).events
    assert isinstance(gap, Gap)
    assert gap.cause is GapCause.BAD_FRAME
    assert (gap.first_seq, gap.last_seq) == (11, 12)
    h.at(h.t + 1.0)
    h.feed(depth(111, 112, E0 + 300))
    gap, _bs, _u = h.rest(snap(111)).events
    assert isinstance(gap, Gap)
    assert gap.cause is GapCause.BAD_FRAME
    assert (gap.first_seq, gap.last_seq) == (111, 111)


def test_bad_frame_naming_a_stream_resyncs_only_that_stream() -> None:
    h = H([binance.book(SYM), binance.book(SYM2)])
    h.up()
    h.live_book(last=110)
    h.feed(depth(5, 6, E0, sym=SYM2))
    h.rest(snap(5, sym=SYM2))
    bad = combined("ethbtc@depth@100ms", {"e": "depthUpdate", "E": 1, "s": SYM2, "U": 9, "u": 8})
    s = h.feed(bad)
    assert of(s.events, BadFrame)
    b1, b2 = h.a.book(SYM), h.a.book(SYM2)
    assert b1 is not None
    assert b1.valid
    assert b2 is not None
    assert not b2.valid
    # a payload that does not belong to the stream it arrives on is a bad frame too
    s = h.feed(
        combined(
            "bnbbtc@depth@100ms",
            {"e": "depthUpdate", "E": 1, "s": SYM2, "U": 111, "u": 112, "b": [], "a": []},
        )
    )
    assert of(s.events, BadFrame)
    b1 = h.a.book(SYM)
    assert b1 is not None
    assert not b1.valid
    # a bad frame for a stream we do not have touches nothing of ours
    h2 = H([binance.book(SYM)])
    h2.up()
    h2.live_book(last=110)
    s = h2.feed(combined("xrpbtc@trade", {"e": "trade", "s": "XRPBTC", "t": "x"}))
    assert of(s.events, BadFrame)
    b = h2.a.book(SYM)
    assert b is not None
    assert b.valid


def test_unknown_frames_and_foreign_streams_are_ignored() -> None:
    h = H([binance.trades(SYM)])
    h.up()
    agg = {"e": "aggTrade", "E": 1, "s": SYM, "a": 1, "p": "1", "q": "1", "f": 1, "l": 1}
    assert not h.feed(combined("bnbbtc@aggTrade", agg)).events
    assert not h.feed(trade(1, E0, sym="XRPBTC")).events
    assert h.a.stats.unrouted == 1
    assert not h.feed('{"result":["bnbbtc@trade"],"id":999}').events
    s = h.a.on_bad_transport_frame("frame larger than 1 bytes", 1, h.now())
    (bad,) = of(s.events, BadFrame)
    assert bad.size == 1


def test_overflow_resyncs_books_and_marks_trades_and_tickers() -> None:
    h = H([binance.book(SYM), binance.trades(SYM), binance.book_ticker(SYM)])
    h.up()
    h.live_book(last=110)
    h.feed(trade(10, E0))
    h.feed(ticker(500))
    s = h.a.on_overflow(42, h.now())
    assert not s.events
    assert not s.reconnect
    b = h.a.book(SYM)
    assert b is not None
    assert not b.valid
    assert [type(e) for e in h.feed(trade(11, E0 + 1)).events] == [Trade]  # nothing lost
    gap, _bt = h.feed(ticker(600)).events
    assert isinstance(gap, Gap)
    assert gap.cause is GapCause.QUEUE_OVERFLOW
    assert gap.detail == "42 frames dropped"
    h.at(h.t + 1.0)
    assert h.feed(depth(111, 115, E0 + 300)).rest


def test_shutdown_reports_open_gaps_with_no_end_once() -> None:
    h = H([binance.book(SYM), binance.trades(SYM), binance.book_ticker(SYM2)])
    h.up()
    h.live_book(last=110)
    h.feed(trade(10, E0))
    h.disconnect("reset by peer")
    s = h.a.shutdown(h.now())
    gaps = {g.stream: g for g in of(s.events, Gap)}
    assert set(gaps) == {BOOK, TRADES}  # the ticker never delivered: nothing promised
    assert (gaps[BOOK].first_seq, gaps[BOOK].last_seq, gaps[BOOK].end_ts_ns) == (111, None, None)
    assert (gaps[TRADES].first_seq, gaps[TRADES].last_seq) == (11, None)
    assert gaps[TRADES].start_ts_ns == ns(E0)
    assert all(g.cause is GapCause.DISCONNECT for g in gaps.values())
    assert "reset by peer" in gaps[BOOK].detail
    assert not h.a.shutdown(h.now()).events


def test_shutdown_while_live_reports_nothing_and_unsubscribe_reports_an_open_gap() -> None:
    h = H([binance.book(SYM), binance.trades(SYM)])
    h.up()
    h.live_book(last=110)
    h.feed(trade(10, E0))
    h.feed(depth(120, 121, E0 + 900))  # gap opened, resync pending
    s = h.control("unsubscribe", binance.book(SYM))
    (gap,) = of(s.events, Gap)
    assert gap.cause is GapCause.SEQUENCE_GAP
    assert gap.last_seq is None
    assert gap.end_ts_ns is None
    assert [r["method"] for r in sent(s)] == ["UNSUBSCRIBE"]
    assert not h.rest(snap(121)).events  # the answer to a stream that is gone
    assert not h.a.shutdown(h.now()).events


# ------------------------------------------------------------------ hypothesis: model venue

PRICES_B = [f"1.0{i}000000" for i in range(6)]
PRICES_A = [f"1.1{i}000000" for i in range(6)]
Side = dict[str, str]


class ModelVenue:
    """One symbol; every update id changes one level; events carry final quantities."""

    def __init__(self) -> None:
        self.vid = 1000
        self.bids: Side = {"1.00000000": "1.00000000"}
        self.asks: Side = {"1.10000000": "1.00000000"}
        self.states: dict[int, tuple[Side, Side]] = {self.vid: (dict(self.bids), dict(self.asks))}
        self.first_of: dict[int, int] = {}  # event u -> U
        self.e = E0

    def tick(self, changes: list[tuple[bool, int, int]]) -> str:
        first = self.vid + 1
        touched_b: dict[str, str] = {}
        touched_a: dict[str, str] = {}
        for is_bid, idx, qty in changes:
            side, touched = (self.bids, touched_b) if is_bid else (self.asks, touched_a)
            price = (PRICES_B if is_bid else PRICES_A)[idx]
            q = f"{qty}.00000000"
            if qty == 0:
                side.pop(price, None)
            else:
                side[price] = q
            touched[price] = q
            self.vid += 1
            self.states[self.vid] = (dict(self.bids), dict(self.asks))
        self.first_of[self.vid] = first
        self.e += 100
        return depth(first, self.vid, self.e, list(touched_b.items()), list(touched_a.items()))

    def levels(self, seq: int) -> tuple[tuple[Level, ...], tuple[Level, ...]]:
        bids, asks = self.states[seq]
        b = sorted(((Decimal(p), Decimal(q)) for p, q in bids.items()), reverse=True)
        a = sorted((Decimal(p), Decimal(q)) for p, q in asks.items())
        return tuple(Level(*x) for x in b), tuple(Level(*x) for x in a)

    def body(self, seq: int) -> bytes:
        bids, asks = self.states[seq]
        return snap_body(seq, sorted(bids.items(), reverse=True), sorted(asks.items()))


class Consumer:
    """What a user rebuilds from BookSnapshot + BookUpdate, checked against the venue."""

    def __init__(self, venue: ModelVenue) -> None:
        self.venue = venue
        self.bids: dict[Decimal, Decimal] = {}
        self.asks: dict[Decimal, Decimal] = {}
        self.seq: int | None = None
        self.first_snapshot: int | None = None
        self.update_ids: set[int] = set()
        self.ranges: list[tuple[int, int]] = []
        self.gaps: list[Gap] = []
        self.max_seq = 0

    def levels(self) -> tuple[tuple[Level, ...], tuple[Level, ...]]:
        b = tuple(Level(p, q) for p, q in sorted(self.bids.items(), reverse=True))
        a = tuple(Level(p, q) for p, q in sorted(self.asks.items()))
        return b, a

    def take(self, events: Iterable[Event]) -> None:
        for ev in events:
            if isinstance(ev, BookSnapshot):
                assert ev.seq is not None
                assert ev.checksum is None
                assert (ev.bids, ev.asks) == self.venue.levels(ev.seq)
                # never older than what was delivered (no update id twice)
                assert self.seq is None or ev.seq >= self.max_seq
                self.bids = {lv.price: lv.qty for lv in ev.bids}
                self.asks = {lv.price: lv.qty for lv in ev.asks}
                self.seq = ev.seq
                self.max_seq = max(self.max_seq, ev.seq)
                if self.first_snapshot is None:
                    self.first_snapshot = ev.seq
            elif isinstance(ev, BookUpdate):
                assert ev.seq is not None
                assert self.seq is not None
                assert ev.seq > self.seq
                assert ev.seq not in self.update_ids, "update id delivered twice"
                self.update_ids.add(ev.seq)
                first = self.venue.first_of[ev.seq]
                assert first <= self.seq + 1  # continues what the user has
                self.ranges.append((first, ev.seq))
                for side, levels in ((self.bids, ev.bids), (self.asks, ev.asks)):
                    for lev in levels:
                        if lev.qty == 0:
                            side.pop(lev.price, None)
                        else:
                            side[lev.price] = lev.qty
                self.seq = ev.seq
                self.max_seq = ev.seq
                assert self.levels() == self.venue.levels(ev.seq)
            elif isinstance(ev, Gap):
                assert ev.stream == BOOK
                assert ev.first_seq is not None
                assert ev.last_seq is None or ev.first_seq <= ev.last_seq
                self.gaps.append(ev)

    def covered(self, i: int) -> bool:
        if any(lo <= i <= hi for lo, hi in self.ranges):
            return True
        return any(
            g.first_seq is not None and g.first_seq <= i and (g.last_seq is None or i <= g.last_seq)
            for g in self.gaps
        )


ACTIONS = st.sampled_from(
    [
        "tick",
        "tick",
        "tick",
        "tick_lost",
        "answer",
        "answer",
        "timer",
        "reconnect",
        "overflow",
        "bad_frame",
        "duplicate",
    ]
)
ANSWERS = st.sampled_from(["current", "current", "older", "at_request", "429", "500", "garbage"])


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_random_interleavings_never_expose_a_wrong_book_or_repeat_an_update(
    data: st.DataObject,
) -> None:
    venue = ModelVenue()
    user = Consumer(venue)
    h = H([binance.book(SYM)], resync_min_interval_s=0.5, max_resyncs_per_minute=1000)
    calls: list[int] = []  # venue id when each pending REST call was made
    acked = False
    last_frame: str | None = None

    def run(step: Step) -> None:
        nonlocal acked
        work = [step]
        while work:
            s = work.pop(0)
            user.take(s.events)
            calls.extend(venue.vid for _ in s.rest)
            for req in sent(s):
                if req["method"] == "SUBSCRIBE":
                    acked = True
                work.append(h.feed(ack(req["id"])))
            if s.reconnect:
                reconnect()
        check_book()

    def reconnect() -> None:
        nonlocal acked
        user.take(h.disconnect().events)
        calls.clear()  # the runtime's REST queue is per session
        acked = False
        h.at(h.t + 0.5)
        run(h.connect())

    def check_book() -> None:
        h.phase()  # the O(1) phase agrees with a scan at every step
        b = h.a.book(SYM)
        assert b is not None
        if b.valid:
            assert user.seq is not None
            assert (b.bids(), b.asks()) == venue.levels(user.seq)
            assert (b.bids(), b.asks()) == user.levels()

    run(h.connect())
    for _ in range(data.draw(st.integers(5, 60))):
        action = data.draw(ACTIONS)
        if action in ("tick", "tick_lost"):
            changes = data.draw(
                st.lists(
                    st.tuples(st.booleans(), st.integers(0, 5), st.integers(0, 3)),
                    min_size=1,
                    max_size=3,
                )
            )
            frame = venue.tick(changes)
            if action == "tick" and acked:
                last_frame = frame
                run(h.feed(frame))
        elif action == "answer" and calls:
            made_at = calls.pop(0)
            kind = data.draw(ANSWERS)
            key = f"depth:{SYM}"
            if kind in ("current", "older", "at_request"):
                seq = {
                    "current": venue.vid,
                    "at_request": made_at,
                    "older": max(1000, made_at - data.draw(st.integers(1, 10))),
                }[kind]
                res = RestResult(key, 200, venue.body(seq))
            elif kind == "429":
                res = RestResult(key, 429, b"{}", data.draw(st.floats(0.0, 3.0)))
            elif kind == "500":
                res = RestResult(key, 500, b"oops")
            else:
                res = RestResult(key, 200, b'{"lastUpdateId":')
            run(h.rest(res))
        elif action == "timer":
            h.at(h.t + data.draw(st.sampled_from([0.1, 0.5, 1.0, 5.0, 40.0])))
            run(h.timer())
        elif action == "reconnect":
            reconnect()
        elif action == "overflow":
            run(h.a.on_overflow(1, h.now()))
        elif action == "bad_frame":
            run(h.feed('{"stream":"bnbbtc@depth@100ms","data":{"e":"depthUpdate"}}'))
        elif action == "duplicate" and last_frame is not None:
            run(h.feed(last_frame))
    user.take(h.a.shutdown(h.now()).events)
    c = h.a.counters()[BOOK]
    event(f"snapshots fetched: {min(c.snapshots_fetched, 3)}+")
    event(f"updates delivered: {'>=10' if len(user.update_ids) >= 10 else '<10'}")
    event(f"gaps: {min(len(user.gaps), 2)}+")
    event(f"refetches: {min(c.refetches, 1)}+")
    event(f"healed: {min(c.healed, 1)}+")
    # every update id after the first snapshot, up to the last one delivered, was
    # delivered once or lies inside a declared gap
    if user.first_snapshot is not None:
        for i in range(user.first_snapshot + 1, user.max_seq + 1):
            assert user.covered(i), f"update id {i} lost silently"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    plan=st.lists(
        st.one_of(
            st.tuples(st.just("trade"), st.integers(1, 4)),  # id step (>1: venue skipped ids)
            st.tuples(st.just("dup"), st.integers(0, 3)),
            st.tuples(st.just("reconnect"), st.integers(0, 5)),  # trades during the outage
            st.tuples(st.just("overflow"), st.just(0)),
            st.tuples(st.just("bad"), st.just(0)),
        ),
        max_size=40,
    )
)
def test_random_trade_streams_deliver_each_id_once_or_declare_it(
    plan: list[tuple[str, int]],
) -> None:
    h = H([binance.trades(SYM)])
    h.up()
    tid, t_ms = 100, E0
    delivered: list[int] = []
    gaps: list[Gap] = []

    def take(step: Step) -> None:
        for ev in step.events:
            if isinstance(ev, Trade):
                assert not delivered or ev.trade_id > delivered[-1]
                delivered.append(ev.trade_id)
            elif isinstance(ev, Gap):
                assert ev.first_seq is not None
                assert ev.last_seq is None or ev.first_seq <= ev.last_seq
                gaps.append(ev)

    for kind, n in plan:
        if kind == "trade":
            tid += n
            t_ms += 7
            take(h.feed(trade(tid, t_ms)))
        elif kind == "dup":
            take(h.feed(trade(max(1, tid - n), t_ms)))
        elif kind == "reconnect":
            take(h.disconnect())
            tid += n  # trades nobody received
            h.at(h.t + 1.0)
            take(h.up())
        elif kind == "overflow":
            take(h.a.on_overflow(1, h.now()))
        else:
            take(h.feed("\x00garbage"))
    take(h.a.shutdown(h.now()))
    if delivered:
        for i in range(delivered[0], delivered[-1] + 1):
            ok = i in delivered or any(
                g.first_seq is not None
                and g.first_seq <= i
                and (g.last_seq is None or i <= g.last_seq)
                for g in gaps
            )
            assert ok, f"trade {i} lost silently"


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=6,
)
TEMPLATES = [
    json.loads(depth(111, 112, E0, bids=[("4.00000000", "1.00000000")])),
    json.loads(trade(11, E0)),
    json.loads(ticker(900)),
    {"result": None, "id": 1},
    {"error": {"code": 2, "msg": "Invalid request: invalid stream"}, "id": 1},
    {"stream": "!serverShutdown", "data": {"e": "serverShutdown", "E": 1}},
]


def _mutate(obj: Any, path: list[Any], value: Any) -> Any:
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(obj, dict):
        out = dict(obj)
        out[head] = _mutate(obj.get(head), rest, value)
        return out
    if isinstance(obj, list) and isinstance(head, int) and head < len(obj):
        out_l = list(obj)
        out_l[head] = _mutate(obj[head], rest, value)
        return out_l
    return value


def _paths(obj: Any, prefix: list[Any] | None = None) -> list[list[Any]]:
    prefix = prefix or []
    found = [prefix]
    if isinstance(obj, dict):
        for k, v in obj.items():
            found += _paths(v, [*prefix, k])
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            found += _paths(v, [*prefix, i])
    return found


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_fuzzed_frames_and_bodies_never_raise_nor_expose_unverified_books(
    data: st.DataObject,
) -> None:
    h = H([binance.book(SYM), binance.trades(SYM), binance.book_ticker(SYM)])
    h.up()
    h.live_book(last=110)
    h.feed(trade(10, E0))
    for _ in range(data.draw(st.integers(1, 4))):
        template = data.draw(st.sampled_from(TEMPLATES))
        path = data.draw(st.sampled_from(_paths(template)))
        frame = json.dumps(_mutate(template, path, data.draw(JSON_VALUES)))
        h.at(h.t + data.draw(st.sampled_from([0.0, 0.5, 20.0])))
        step = h.feed(frame)
        step.extend(h.timer())
        if data.draw(st.booleans()):
            body = data.draw(st.binary(max_size=40) | st.just(snap_body(112, [], [])))
            status = data.draw(st.sampled_from([200, 200, 404, 429, 418, 500]))
            step.extend(h.rest(RestResult(f"depth:{SYM}", status, body, 1.0)))
        assert all(isinstance(e, Event) for e in step.events)
        b = h.a.book(SYM)
        assert b is not None
        if b.valid:
            assert h.a.stream_state(BOOK) == "live"


def test_phase_follows_unsubscribing_a_book_that_was_still_syncing() -> None:
    h = H([binance.book(SYM), binance.book(SYM2)])
    h.up()
    h.live_book()
    assert h.phase() is Phase.SYNCING  # SYM2 has no snapshot yet
    h.control("unsubscribe", binance.book(SYM2))
    assert h.phase() is Phase.LIVE  # the syncing book left: it no longer holds the phase
    h.control("subscribe", binance.book(SYM2))
    assert h.phase() is Phase.SUBSCRIBING


# ------------------------------------------------------------------ hot path


def _norm(events: Sequence[Event]) -> list[tuple[Any, ...]]:
    out: list[tuple[Any, ...]] = []
    for e in events:
        if isinstance(e, BookUpdate):
            out.append(("update", e.symbol, e.seq, e.exchange_ts_ns, tuple(e.bids), tuple(e.asks)))
        elif isinstance(e, BadFrame):
            out.append(("bad", e.reason))
        else:
            out.append((type(e).__name__, getattr(e, "stream", None), getattr(e, "cause", None)))
    return out


PRICE_TEXT = st.sampled_from(
    [
        "4.00000000",
        "4.00000100",
        "3.99999900",
        "4.0000010",
        "4.000001000",
        "4",
        "-4.00000000",
        "4.0000000x",
        "",
        "4e-8",
        "４.00000000",
    ]
)
QTY_TEXT = st.sampled_from(
    ["1.00000000", "0.00000000", "12.50000000", "1.5", "0", "1.000000000", "-1.00000000", "1e2"]
)
ODD: st.SearchStrategy[Any] = st.sampled_from([None, 1, 1.5, True, [], {}, "x", 2**70, -1])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_fast_path_gives_exactly_what_the_general_decoder_gives(data: st.DataObject) -> None:
    """Live depth updates take a hot path; any frame, good or hostile, must give the
    same events and the same book as the general decoder."""
    fast, slow = H([binance.book(SYM)]), H([binance.book(SYM)])
    slow.a.fast_path = False
    for h in (fast, slow):
        h.up()
        h.live_book()
    seq = 110
    good = st.lists(
        st.tuples(
            st.sampled_from(["4.00000000", "4.00000100", "3.99999900", "4.00000200"]),
            st.sampled_from(["1.00000000", "0.00000000", "12.50000000"]),
        ).map(list),
        max_size=4,
    )
    hostile = st.lists(
        st.one_of(
            st.tuples(PRICE_TEXT, QTY_TEXT).map(list),
            st.lists(st.one_of(PRICE_TEXT, ODD), max_size=3),
            ODD,
        ),
        max_size=4,
    )
    for _ in range(data.draw(st.integers(1, 25))):
        clean = data.draw(st.integers(0, 3)) > 0  # mostly what a venue sends
        first = seq + 1 + (0 if clean else data.draw(st.sampled_from([0, -1, -3, 1, 5])))
        last = max(first, seq + 1) + data.draw(st.integers(0, 3))
        levels = good if clean else hostile
        payload: dict[str, Any] = {
            "e": "depthUpdate",
            "E": E0 + seq,
            "s": SYM,
            "U": first,
            "u": last,
            "b": data.draw(levels),
            "a": data.draw(levels),
        }
        stream = f"{SYM.lower()}@depth@100ms"
        if not clean:
            for key in data.draw(st.lists(st.sampled_from(list(payload)), max_size=2)):
                payload[key] = data.draw(ODD)
            stream = data.draw(st.sampled_from([stream, stream, "ethbtc@depth@100ms"]))
        frame = combined(stream, payload)
        got, want = fast.feed(frame), slow.feed(frame)
        assert _norm(got.events) == _norm(want.events)
        assert got.rest == want.rest
        fb, sb = fast.a.book(SYM), slow.a.book(SYM)
        assert fb is not None
        assert sb is not None
        assert (fb.valid, fb.bids(), fb.asks()) == (sb.valid, sb.bids(), sb.asks())
        if want.events and isinstance(want.events[-1], BookUpdate):
            seq = want.events[-1].seq or seq
    event(f"hot path taken: {fast.a.stats.fast_frames > 0}")
    assert slow.a.stats.fast_frames == 0


def test_a_live_update_takes_the_hot_path_and_delivers_exact_levels() -> None:
    h = H([binance.book(SYM)])
    h.up()
    h.live_book()
    before = h.a.stats.fast_frames
    s = h.feed(depth(111, 112, E0 + 200, bids=[("4.00000100", "2.50000000")]))
    assert h.a.stats.fast_frames == before + 1
    (u,) = of(s.events, BookUpdate)
    assert (u.seq, u.exchange_ts_ns) == (112, ns(E0 + 200))
    assert tuple(u.bids) == (lv("4.00000100", "2.50000000"),)
    assert u.bids.fixed() == [(400000100, 250000000)]  # type: ignore[attr-defined]
