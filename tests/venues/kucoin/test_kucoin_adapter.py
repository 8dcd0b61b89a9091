"""Unit tests for gapless.venues.kucoin.adapter, driven purely by Now() and text frames.

No sockets and no sleeping: every call gets ``Now(mono, wall_ns, backlog)`` from
a hand-advanced clock; frames and REST bodies follow the wire shapes of
protocols.md §2.1-§2.6.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from gapless.errors import ConfigError, LocalProtocolError
from gapless.events import (
    BadFrame,
    BookSnapshot,
    BookTicker,
    BookUpdate,
    Event,
    Gap,
    GapCause,
    Subscribed,
    SubscriptionRejected,
    Trade,
    WatchdogFired,
    event_to_dict,
)
from gapless.venues import kucoin
from gapless.venues.base import Now, Phase, RestCall, RestResult, Step, StreamSpec
from gapless.venues.kucoin import KucoinAdapter, KucoinOptions
from gapless.venues.kucoin.adapter import RestBudgetSpec

WALL0 = 1_700_000_000_000_000_000
MS0 = WALL0 // 1_000_000
BTC = "BTC-USDT"
ETH = "ETH-USDT"
# '+' and '/' make the URL-encoded form differ from the raw token
TOKEN = "2neAiuYvAU61ZDXANAGAsiL4-iAExhsBXZ+ftpOeh/55i3Ysy2q2LE=.ymP9jIr6v-vucrZr8761yA=="
TOKEN2 = "Zz9tokenNumberTwo-abc+def/ghi=="
SERVERS = ("wss://a.example/", "wss://b.example/")
E = TypeVar("E", bound=Event)


def of(events: Iterable[Event], cls: type[E]) -> list[E]:
    return [e for e in events if isinstance(e, cls)]


def sent(step: Step, kind: str = "subscribe") -> list[dict[str, Any]]:
    out = [json.loads(t) for t in step.sends]
    return [m for m in out if m["type"] == kind]


def bullet_body(token: str = TOKEN, servers: Sequence[str] = SERVERS) -> bytes:
    return json.dumps(
        {
            "code": "200000",
            "data": {
                "token": token,
                "instanceServers": [
                    {
                        "endpoint": ep,
                        "encrypt": True,
                        "protocol": "websocket",
                        "pingInterval": 18000,
                        "pingTimeout": 10000,
                    }
                    for ep in servers
                ],
            },
        }
    ).encode()


def l2_frame(
    symbol: str,
    start: int,
    end: int,
    bids: Sequence[tuple[str, str, int]] = (),
    asks: Sequence[tuple[str, str, int]] = (),
    time_ms: int = MS0,
) -> str:
    return json.dumps(
        {
            "type": "message",
            "topic": f"/market/level2:{symbol}",
            "subject": "trade.l2update",
            "data": {
                "changes": {
                    "asks": [[p, s, str(q)] for p, s, q in asks],
                    "bids": [[p, s, str(q)] for p, s, q in bids],
                },
                "sequenceStart": start,
                "sequenceEnd": end,
                "symbol": symbol,
                "time": time_ms,
            },
        }
    )


def snap_body(
    seq: int,
    bids: Sequence[tuple[str, str]],
    asks: Sequence[tuple[str, str]],
    time_ms: int | None = MS0,
) -> bytes:
    data: dict[str, Any] = {
        "sequence": str(seq),
        "bids": [list(b) for b in bids],
        "asks": [list(a) for a in asks],
    }
    if time_ms is not None:
        data["time"] = time_ms
    return json.dumps({"code": "200000", "data": data}).encode()


def match_frame(
    symbol: str, seq: int, time_ns: int, *, trade_id: str | None = None, side: str = "buy"
) -> str:
    return json.dumps(
        {
            "type": "message",
            "topic": f"/market/match:{symbol}",
            "subject": "trade.l3match",
            "data": {
                "makerOrderId": "671b5007389355000701b1d3",
                "price": "67523.5",
                "sequence": str(seq),
                "side": side,
                "size": "0.003",
                "symbol": symbol,
                "takerOrderId": "671b50161777ff00074c168d",
                "time": str(time_ns),
                "tradeId": trade_id if trade_id is not None else str(seq),
                "type": "match",
            },
        }
    )


def ticker_frame(symbol: str, seq: int, time_ms: int) -> str:
    return json.dumps(
        {
            "type": "message",
            "topic": f"/market/ticker:{symbol}",
            "subject": "trade.ticker",
            "data": {
                "sequence": str(seq),
                "price": "100.5",
                "size": "0.1",
                "bestAsk": "100.6",
                "bestAskSize": "2",
                "bestBid": "100.4",
                "bestBidSize": "3.5",
                "time": time_ms,
            },
        }
    )


def phase(h: H) -> Phase:
    """A call (mypy must not narrow the property between asserts) that also checks the
    adapter's O(1) answer (per-state counts) against a scan of its streams."""
    got = h.a.phase
    assert got is scanned_phase(h.a)
    return got


def scanned_phase(a: KucoinAdapter) -> Phase:
    """The phase by definition: not welcomed, or a stream waiting for its ack, is
    SUBSCRIBING; else a book calibrating while we can act (not a quiet wait for the
    venue's first message) is SYNCING; else LIVE."""
    if not a.connected or not a.welcomed or a._deferred:
        return Phase.SUBSCRIBING
    streams = list(a._streams.values())
    if any(s.state.value in ("idle", "pending") for s in streams):
        return Phase.SUBSCRIBING
    for s in streams:
        if s.state.value == "syncing" and not (s.l2 is not None and s.l2.quiet_wait):
            return Phase.SYNCING
    return Phase.LIVE


class H:
    """A hand-driven adapter with a virtual monotonic clock."""

    def __init__(self, specs: Sequence[StreamSpec] = (), **opts: Any) -> None:
        self.a = KucoinAdapter(list(specs), KucoinOptions(**opts))
        self.t = 0.0
        self.events: list[Event] = []
        self.rest: list[RestCall] = []
        self.conns = 0

    def now(self, backlog: int = 0) -> Now:
        return Now(self.t, WALL0 + int(self.t * 1e9), backlog)

    def adv(self, dt: float) -> None:
        self.t += dt

    def take(self, step: Step) -> Step:
        self.events.extend(step.events)
        self.rest.extend(step.rest)
        return step

    def dial(self, token: str = TOKEN, servers: Sequence[str] = SERVERS) -> str:
        call = self.a.prepare_dial(self.now())
        assert call is not None
        res = RestResult(call.key, 200, bullet_body(token, servers))
        assert self.a.on_dial_rest(res, self.now()) is None
        return self.a.url

    def connect(self, latency: float = 0.01) -> Step:
        self.adv(latency)
        self.conns += 1
        return self.take(self.a.on_connected(f"kucoin#1.{self.conns}", self.now()))

    def connect_id(self) -> str:
        return parse_qs(urlsplit(self.a.url).query)["connectId"][0]

    def welcome(self) -> Step:
        return self.frame({"id": self.connect_id(), "type": "welcome"})

    def frame(self, obj: Any) -> Step:
        text = obj if isinstance(obj, str) else json.dumps(obj)
        return self.take(self.a.on_frame(text, self.now()))

    def ack(self, step: Step) -> Step:
        out = Step()
        for m in sent(step):
            out.extend(self.frame({"id": m["id"], "type": "ack"}))
        return out

    def up(self, token: str = TOKEN) -> Step:
        """Dial, connect, welcome and acknowledge every subscription."""
        self.dial(token)
        self.connect()
        return self.ack(self.welcome())

    def timer(self, backlog: int = 0) -> Step:
        return self.take(self.a.on_timer(self.now(backlog)))

    def answer(self, body: bytes, status: int = 200, **kw: Any) -> Step:
        call = self.rest.pop(0)
        return self.take(self.a.on_rest(RestResult(call.key, status, body, **kw), self.now()))

    def disconnect(self, reason: str = "connection closed (code 1000)") -> Step:
        self.rest.clear()  # in-flight REST answers die with the session
        return self.take(self.a.on_disconnected(reason, self.now()))


BIDS = [("100.4", "1"), ("100.3", "2"), ("100.2", "3")]
ASKS = [("100.6", "1"), ("100.7", "2"), ("100.8", "3")]


Side = dict[Decimal, Decimal]


def levels(side: Iterable[tuple[Decimal, Decimal]]) -> Side:
    return dict(side)


def book_of(h: H, symbol: str = BTC) -> tuple[Side, Side]:
    """The adapter's book of ``symbol``: (bids, asks) as price -> quantity."""
    book = h.a.book(symbol)
    assert book is not None
    return levels(book.bids()), levels(book.asks())


class Consumer:
    """What a user holds who keeps only the events of one book stream: the last
    BookSnapshot with every later BookUpdate applied on top (quantity 0 removes)."""

    def __init__(self, stream: str = f"kucoin:book:{BTC}") -> None:
        self.stream = stream
        self.bids: Side | None = None
        self.asks: Side | None = None
        self.seq: int | None = None

    def feed(self, events: Iterable[Event]) -> Consumer:
        for e in events:
            if getattr(e, "stream", None) != self.stream:
                continue
            if isinstance(e, BookSnapshot):
                self.bids, self.asks = levels(e.bids), levels(e.asks)
                self.seq = e.seq
            elif isinstance(e, BookUpdate):
                assert self.bids is not None
                assert self.asks is not None, "an update before any snapshot"
                for book, side in ((self.bids, e.bids), (self.asks, e.asks)):
                    for price, qty in side:
                        if qty:
                            book[price] = qty
                        else:
                            book.pop(price, None)
                assert e.seq is not None
                assert self.seq is not None
                assert e.seq > self.seq, "updates after a snapshot go forward"
                self.seq = e.seq
        return self

    @property
    def book(self) -> tuple[Side, Side]:
        assert self.bids is not None
        assert self.asks is not None
        return self.bids, self.asks


def book_events(events: Iterable[Event]) -> list[tuple[str, int | None, int]]:
    """(kind, seq, exchange time) of the book events."""
    return [
        (type(e).__name__, e.seq, e.exchange_ts_ns)
        for e in events
        if isinstance(e, BookSnapshot | BookUpdate)
    ]


def rebuild(events: Iterable[Event], stream: str = f"kucoin:book:{BTC}") -> tuple[Side, Side]:
    return Consumer(stream).feed(events).book


def live_book(h: H, symbol: str = BTC, seq: int = 100) -> None:
    """Bring ``symbol``'s book live at ``seq`` (requires the adapter to be up)."""
    assert h.rest
    assert h.rest[0].key == f"l2:{symbol}"
    h.frame(l2_frame(symbol, seq + 1, seq + 1, bids=[("100.1", "4", seq + 1)]))
    h.answer(snap_body(seq, BIDS, ASKS))
    assert h.a.book_seq(symbol) == seq + 1


# ---------------------------------------------------------------- dial and token


def test_prepare_dial_asks_for_a_fresh_bullet_every_dial() -> None:
    h = H([kucoin.trades(BTC)])
    calls = [h.a.prepare_dial(h.now()) for _ in range(3)]
    for c in calls:
        assert c == RestCall(
            key="bullet",
            method="POST",
            url="https://api.kucoin.com/api/v1/bullet-public",
            weight=10,
        )
    assert h.a.bullets == 3
    with pytest.raises(LocalProtocolError):
        _ = h.a.url  # no bullet answered yet
    # a refused bullet is not cached, and a good one is never reused
    assert h.a.on_dial_rest(RestResult("bullet", 500, b"oops"), h.now()) is not None
    with pytest.raises(LocalProtocolError):
        _ = h.a.url
    h.dial()
    h.connect()
    h.disconnect()
    with pytest.raises(LocalProtocolError):
        _ = h.a.url  # the token died with the connection
    assert h.a.prepare_dial(h.now()) is not None


def test_bullet_gives_url_with_token_and_fresh_connect_id() -> None:
    h = H([kucoin.trades(BTC)], rest_url="http://127.0.0.1:9")
    call = h.a.prepare_dial(h.now())
    assert call is not None
    assert call.url == "http://127.0.0.1:9/api/v1/bullet-public"
    url1 = h.dial()
    parts = urlsplit(url1)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == SERVERS[0]
    q = parse_qs(parts.query)
    assert q["token"] == [TOKEN]  # parse_qs decodes the percent-encoding
    assert "%2B" in url1
    assert "%2F" in url1
    cid1 = q["connectId"][0]
    h.adv(0.001)
    url2 = h.dial(TOKEN2)
    cid2 = parse_qs(urlsplit(url2).query)["connectId"][0]
    assert cid1 != cid2
    assert TOKEN2 in parse_qs(urlsplit(url2).query)["token"]
    assert set(h.a.redactions()) >= {TOKEN, TOKEN2, TOKEN.replace("+", "%2B").replace("/", "%2F")}


@pytest.mark.parametrize(
    ("result", "why"),
    [
        (RestResult("bullet", None, b"", error="timeout"), "bullet request failed"),
        (
            RestResult("bullet", 429, b'{"code":"429000","msg":"Too Many Requests"}'),
            "rate limited",
        ),
        (RestResult("bullet", 200, b'{"code":"400001","msg":"nope"}'), "code 400001"),
        (RestResult("bullet", 200, b"<html>"), "bad bullet response"),
        (RestResult("bullet", 200, b'{"code":"200000","data":{"token":"x"}}'), "bad bullet"),
    ],
)
def test_bullet_failures_are_reasons(result: RestResult, why: str) -> None:
    h = H([kucoin.trades(BTC)])
    h.a.prepare_dial(h.now())
    reason = h.a.on_dial_rest(result, h.now())
    assert reason is not None
    assert why in reason


def test_instance_preference_follows_smoothed_connect_latency() -> None:
    h = H([kucoin.trades(BTC)], endpoint_penalty_s=60.0)
    a, b = SERVERS
    h.dial()
    assert h.a.endpoint == a  # nothing known: the bullet's order
    h.connect(latency=0.3)
    h.welcome()
    h.disconnect()
    h.dial()
    assert h.a.endpoint == a  # b has no measurement yet
    h.a.on_dial_failed("connect to wss://a.example/?token=... failed", h.now())
    h.dial()
    assert h.a.endpoint == b  # rotated after the failure
    h.connect(latency=0.05)
    h.welcome()
    h.disconnect()
    h.adv(61.0)  # a's penalty expired
    h.dial()
    assert h.a.endpoint == b  # 0.05 < 0.3
    assert h.a.endpoint_latency_s == {a: pytest.approx(0.3), b: pytest.approx(0.05)}
    h.connect(latency=0.1)  # smoothed: 0.05 + 0.3 * (0.1 - 0.05)
    assert h.a.endpoint_latency_s[b] == pytest.approx(0.065)
    h.welcome()
    h.disconnect()
    h.dial()
    assert h.a.endpoint == b
    h.connect(latency=1.0)  # b gets slow: 0.065 + 0.3 * 0.935 > 0.3
    h.welcome()
    h.disconnect()
    h.dial()
    assert h.a.endpoint_latency_s[b] > 0.3
    assert h.a.endpoint == a


def test_rotation_on_failure_and_on_missing_welcome() -> None:
    h = H([kucoin.trades(BTC)])
    a, b = SERVERS
    h.dial()
    assert h.a.endpoint == a
    h.a.on_dial_failed("HTTP 502", h.now())
    h.adv(1)
    h.dial()
    assert h.a.endpoint == b
    h.connect()
    h.adv(5.1)
    step = h.timer()  # no welcome within 5 s
    assert step.reconnect is not None
    h.disconnect(step.reconnect)
    h.dial()
    assert h.a.endpoint == a  # both penalised: the least recently failed first
    h.connect()
    h.disconnect("connection closed (code 1006)")  # closed before the welcome
    h.dial()
    assert h.a.endpoint == b


# ---------------------------------------------------------------- welcome and keepalive


def test_welcome_gates_subscriptions_and_must_match_connect_id() -> None:
    h = H([kucoin.trades(BTC), kucoin.book(ETH)])
    h.dial()
    step = h.connect()
    assert step.sends == []
    assert step.rest == []
    assert phase(h) is Phase.SUBSCRIBING
    early = h.frame(match_frame(BTC, 5, WALL0))
    assert early.events == []
    assert h.a.early_frames == 1
    bad = h.frame({"id": "someone-else", "type": "welcome"})
    assert bad.reconnect is not None
    assert "connectId" in bad.reconnect
    h.disconnect()
    h.dial()
    h.connect()
    step = h.welcome()
    subs = sent(step)
    assert sorted(m["topic"] for m in subs) == ["/market/level2:ETH-USDT", "/market/match:BTC-USDT"]
    assert all(m["response"] is True and isinstance(m["id"], str) for m in subs)
    assert phase(h) is Phase.SUBSCRIBING


def test_welcome_deadline_waits_for_the_backlog() -> None:
    h = H([kucoin.trades(BTC)])
    h.dial()
    h.connect()
    h.adv(4.9)
    assert h.timer().reconnect is None
    h.adv(0.2)
    assert h.timer(backlog=3).reconnect is None  # the welcome may be queued
    step = h.timer()
    assert step.reconnect is not None
    assert "welcome" in step.reconnect
    (w,) = of(step.events, WatchdogFired)
    assert w.kind == "welcome"
    assert w.silent_for_s > 5.0
    assert h.a.welcome_timeouts == 1


def test_ping_every_interval_pong_rtt_and_pong_deadline() -> None:
    h = H([kucoin.trades(BTC)])
    h.up()
    h.adv(17.9)
    assert sent(h.timer(), "ping") == []
    h.adv(0.2)
    (ping,) = sent(h.timer(), "ping")
    h.adv(0.25)
    h.frame({"id": ping["id"], "type": "pong"})
    assert h.a.pong_rtt_s == pytest.approx(0.25)
    assert h.a.pong_rtt_avg_s == pytest.approx(0.25)
    h.adv(18.0)
    (ping2,) = sent(h.timer(), "ping")
    assert ping2["id"] != ping["id"]
    h.adv(0.05)
    h.frame({"id": ping2["id"], "type": "pong"})
    assert h.a.pong_rtt_s == pytest.approx(0.05)
    assert 0.05 < (h.a.pong_rtt_avg_s or 0) < 0.25
    h.adv(18.0)
    assert len(sent(h.timer(), "ping")) == 1
    h.frame({"id": "not-ours", "type": "pong"})  # an unrelated pong does not count
    h.adv(10.5)
    assert h.timer(backlog=1).reconnect is None
    step = h.timer()
    assert step.reconnect is not None
    assert "pong" in step.reconnect
    assert [w.kind for w in of(step.events, WatchdogFired)] == ["pong"]


def test_ping_interval_comes_from_the_bullet_unless_overridden() -> None:
    h = H([kucoin.trades(BTC)], ping_interval_s=5.0)
    h.up()
    h.adv(5.0)
    assert len(sent(h.timer(), "ping")) == 1


# ---------------------------------------------------------------- subscriptions


def test_250_symbols_are_three_subscribe_messages() -> None:
    symbols = [f"C{i:03d}-USDT" for i in range(250)]
    h = H([kucoin.trades(s) for s in symbols])
    h.dial()
    h.connect()
    subs = sent(h.welcome())
    assert len(subs) == 3
    topics = [m["topic"].split(":", 1)[1].split(",") for m in subs]
    assert [len(t) for t in topics] == [100, 100, 50]
    assert [s for t in topics for s in t] == symbols
    assert len({m["id"] for m in subs}) == 3
    acks = h.ack(Step(sends=[json.dumps(m) for m in subs]))
    assert len(of(acks.events, Subscribed)) == 250
    assert phase(h) is Phase.LIVE


def test_topic_limit_per_connection() -> None:
    with pytest.raises(ConfigError, match="300 topics"):
        KucoinAdapter([kucoin.trades(f"C{i:03d}-USDT") for i in range(301)])
    big = KucoinAdapter(
        [kucoin.trades(f"C{i:03d}-USDT") for i in range(400)],
        KucoinOptions(max_topics_per_connection=400),
    )
    assert big.topics == 400
    assert not big.can_add(kucoin.book("BTC-USDT"))
    with pytest.raises(ConfigError):
        KucoinOptions(max_topics_per_connection=401)
    with pytest.raises(ConfigError):
        KucoinOptions(snapshot_depth=50)
    with pytest.raises(ConfigError):
        KucoinAdapter([StreamSpec("kucoin", "book", BTC, 10)])
    with pytest.raises(ConfigError):
        KucoinAdapter([StreamSpec("kraken", "book", "BTC/USD", 10)])
    # at runtime an over-limit request is a rejection, not a crash
    h = H([kucoin.trades(BTC)], max_topics_per_connection=1)
    h.up()
    step = h.take(h.a.control("subscribe", kucoin.trades(ETH), h.now()))
    (rej,) = of(step.events, SubscriptionRejected)
    assert rej.retry_in_s is None
    assert "topics" in rej.error


def test_ack_and_error_mapping() -> None:
    specs = [kucoin.trades(BTC), kucoin.ticker(BTC), kucoin.trades(ETH)]
    h = H(specs)
    h.dial()
    h.connect()
    subs = {m["topic"]: m for m in sent(h.welcome())}
    match_req = subs["/market/match:BTC-USDT,ETH-USDT"]
    ticker_req = subs["/market/ticker:BTC-USDT"]
    # 509: retried later with backoff
    step = h.frame(
        {
            "id": match_req["id"],
            "type": "error",
            "code": 509,
            "data": "exceed max subscription count limitation of 100 per time",
        }
    )
    rej = of(step.events, SubscriptionRejected)
    assert [r.retry_in_s for r in rej] == [2.0, 2.0]
    assert h.a.stream_state("kucoin:trade:BTC-USDT") == "retry"
    step = h.frame({"id": ticker_req["id"], "type": "ack"})
    (sub,) = of(step.events, Subscribed)
    assert sub.stream == "kucoin:ticker:BTC-USDT"
    h.adv(1.0)
    assert sent(h.timer()) == []
    h.adv(1.1)
    (again,) = sent(h.timer())
    assert again["topic"] == "/market/match:BTC-USDT,ETH-USDT"
    step = h.frame({"id": again["id"], "type": "error", "code": 509, "data": "per session"})
    assert [r.retry_in_s for r in of(step.events, SubscriptionRejected)] == [4.0, 4.0]
    h.adv(4.1)
    (third,) = sent(h.timer())
    # 404 on two symbols: bisected, then permanent for the unknown one only
    step = h.frame(
        {
            "id": third["id"],
            "type": "error",
            "code": 404,
            "data": f"topic {third['topic']} is not found",
        }
    )
    assert of(step.events, SubscriptionRejected) == []
    halves = sent(step)
    assert sorted(m["topic"] for m in halves) == [
        "/market/match:BTC-USDT",
        "/market/match:ETH-USDT",
    ]
    eth = next(m for m in halves if m["topic"].endswith("ETH-USDT"))
    btc = next(m for m in halves if m["topic"].endswith("BTC-USDT"))
    step = h.frame({"id": eth["id"], "type": "error", "code": 404, "data": "topic not found"})
    (perm,) = of(step.events, SubscriptionRejected)
    assert perm.stream == "kucoin:trade:ETH-USDT"
    assert perm.retry_in_s is None
    assert h.a.stream_state("kucoin:trade:ETH-USDT") == "rejected"
    h.frame({"id": btc["id"], "type": "ack"})
    assert phase(h) is Phase.LIVE
    # 401: new bullet, new connection
    step = h.frame({"type": "error", "code": 401, "data": "token is expired"})
    assert step.reconnect is not None
    assert "token is expired" in step.reconnect
    h.disconnect(step.reconnect)
    subs2 = sent(h.up())
    assert "/market/match:ETH-USDT" not in {m["topic"] for m in subs2}  # permanent stays


def test_unacknowledged_subscription_reconnects_after_deadline() -> None:
    h = H([kucoin.trades(BTC)], subscribe_ack_timeout_s=10.0)
    h.dial()
    h.connect()
    h.welcome()
    h.adv(10.5)
    assert h.timer(backlog=2).reconnect is None
    step = h.timer()
    assert step.reconnect is not None
    assert of(step.events, SubscriptionRejected)[0].retry_in_s == 0.0


def test_uplink_limit_defers_requests_but_never_pings() -> None:
    h = H([kucoin.trades(BTC), kucoin.ticker(BTC), kucoin.book(BTC)], uplink_max_per_10s=2)
    h.dial()
    h.connect()
    step = h.welcome()
    assert len(sent(step)) == 2
    assert phase(h) is Phase.SUBSCRIBING
    h.adv(5.0)
    assert sent(h.timer()) == []
    h.adv(5.1)
    step = h.timer()
    assert len(sent(step)) == 1
    assert h.a.deferred_sends == 1


def test_control_subscribe_and_unsubscribe() -> None:
    h = H([kucoin.trades(BTC)])
    h.take(h.a.control("subscribe", kucoin.ticker(ETH), h.now()))  # before connecting
    h.dial()
    h.connect()
    step = h.welcome()
    h.ack(step)
    assert {m["topic"] for m in sent(step)} == {
        "/market/match:BTC-USDT",
        "/market/ticker:ETH-USDT",
    }
    step = h.take(h.a.control("subscribe", kucoin.book(ETH), h.now()))
    (m,) = sent(step)
    assert m["topic"] == "/market/level2:ETH-USDT"
    step = h.take(h.a.control("unsubscribe", kucoin.trades(BTC), h.now()))
    (u,) = sent(step, "unsubscribe")
    assert u["topic"] == "/market/match:BTC-USDT"
    assert "kucoin:trade:BTC-USDT" not in h.a.streams()
    h.frame({"id": u["id"], "type": "ack"})
    with pytest.raises(ValueError, match="unknown control op"):
        h.a.control("resubscribe", kucoin.trades(BTC), h.now())


def test_phase_follows_unsubscribing_a_book_that_was_still_syncing() -> None:
    h = H([kucoin.book(BTC), kucoin.book(ETH)])
    h.up()
    live_book(h)
    h.frame(l2_frame(ETH, 51, 51, bids=[("10.1", "4", 51)]))  # ETH calibrating: asks REST
    assert phase(h) is Phase.SYNCING
    h.take(h.a.control("unsubscribe", kucoin.book(ETH), h.now()))
    assert phase(h) is Phase.LIVE
    h.take(h.a.control("subscribe", kucoin.book(ETH), h.now()))
    assert phase(h) is Phase.SUBSCRIBING


# ---------------------------------------------------------------- level2


TV_C2_ASKS = [("3988.62", "8"), ("3988.61", "32"), ("3988.60", "47"), ("3988.59", "3")]
TV_C2_BIDS = [("3988.51", "56"), ("3988.50", "15"), ("3988.49", "100"), ("3988.48", "10")]


def test_level2_calibration_through_rest_tv_c2() -> None:
    h = H([kucoin.book(BTC)])
    h.up()
    (call,) = h.rest
    assert call == RestCall(
        key="l2:BTC-USDT",
        method="GET",
        url="https://api.kucoin.com/api/v1/market/orderbook/level2_100?symbol=BTC-USDT",
        weight=2,
    )
    assert phase(h) is Phase.SYNCING
    # §2.5 worked example (sequenceStart/End read as 15/19, the documented erratum)
    step = h.frame(
        l2_frame(
            BTC,
            15,
            19,
            bids=[("3988.50", "44", 18)],
            asks=[("3988.59", "3", 16), ("3988.61", "0", 19), ("3988.62", "8", 15)],
            time_ms=MS0 + 5,
        )
    )
    assert step.events == []
    assert h.rest == [call]
    step = h.answer(snap_body(16, TV_C2_BIDS, TV_C2_ASKS, time_ms=MS0))
    assert of(step.events, Gap) == []
    # the snapshot as loaded, at its own sequence, then the buffered message on top
    snap, upd0 = step.events
    assert isinstance(snap, BookSnapshot)
    assert isinstance(upd0, BookUpdate)
    assert snap.seq == 16
    assert levels(snap.asks) == {Decimal(p): Decimal(q) for p, q in TV_C2_ASKS}
    assert levels(snap.bids) == {Decimal(p): Decimal(q) for p, q in TV_C2_BIDS}
    assert [lv.price for lv in snap.asks] == sorted(Decimal(p) for p, _ in TV_C2_ASKS)
    assert snap.checksum is None
    assert snap.depth == 100
    assert snap.exchange_ts_ns == MS0 * 1_000_000  # the snapshot's time
    assert snap.book is not None
    assert snap.book.valid
    # entries 15 and 16 are in the snapshot already (step 3): only 18 and 19 are applied
    assert upd0.seq == 19
    assert upd0.exchange_ts_ns == (MS0 + 5) * 1_000_000
    assert list(upd0.bids) == [(Decimal("3988.50"), Decimal("44"))]
    assert list(upd0.asks) == [(Decimal("3988.61"), Decimal("0"))]
    bids, asks = book_of(h)
    assert asks == {
        Decimal("3988.62"): 8,
        Decimal("3988.60"): 47,
        Decimal("3988.59"): 3,
    }
    assert bids == {
        Decimal("3988.51"): 56,
        Decimal("3988.50"): 44,
        Decimal("3988.49"): 100,
        Decimal("3988.48"): 10,
    }
    assert rebuild(step.events) == book_of(h)
    assert h.a.book_seq(BTC) == 19
    assert h.a.counters()["kucoin:book:BTC-USDT"].delivered == 2
    assert phase(h) is Phase.LIVE
    step = h.frame(l2_frame(BTC, 20, 21, asks=[("3988.63", "1.5", 21)], time_ms=MS0 + 9))
    (upd,) = of(step.events, BookUpdate)
    assert upd.asks[0].price == Decimal("3988.63")
    assert upd.asks[0].qty == Decimal("1.5")
    assert upd.exchange_ts_ns == (MS0 + 9) * 1_000_000
    assert h.a.book_seq(BTC) == 21


def test_sequence_gap_resyncs_only_that_symbol_with_exact_bounds() -> None:
    h = H([kucoin.book(BTC), kucoin.book(ETH)])
    h.up()
    assert [c.key for c in h.rest] == ["l2:BTC-USDT", "l2:ETH-USDT"]
    live_book(h, BTC, 100)
    live_book(h, ETH, 500)
    h.adv(2.0)
    h.frame(l2_frame(BTC, 102, 103, bids=[("100.0", "1", 103)], time_ms=MS0 + 10))
    assert h.a.book_seq(BTC) == 103
    # 104..105 never arrive
    step = h.frame(l2_frame(BTC, 106, 107, asks=[("101", "1", 107)], time_ms=MS0 + 20))
    assert of(step.events, BookUpdate) == []
    assert of(step.events, Gap) == []
    btc_book = h.a.book(BTC)
    assert btc_book is not None
    assert not btc_book.valid
    assert [c.key for c in step.rest] == ["l2:BTC-USDT"]  # that symbol only
    eth = h.frame(l2_frame(ETH, 502, 502, bids=[("100.0", "9", 502)]))
    assert len(of(eth.events, BookUpdate)) == 1  # ETH unaffected
    eth_book = h.a.book(ETH)
    assert eth_book is not None
    assert eth_book.valid
    h.frame(l2_frame(BTC, 108, 108, asks=[("101", "2", 108)], time_ms=MS0 + 30))
    step = h.answer(snap_body(106, BIDS, ASKS, time_ms=MS0 + 25))
    (gap,) = of(step.events, Gap)
    assert gap.cause is GapCause.SEQUENCE_GAP
    assert gap.stream == "kucoin:book:BTC-USDT"
    assert (gap.first_seq, gap.last_seq) == (104, 106)  # up to the snapshot
    assert gap.start_ts_ns == (MS0 + 10) * 1_000_000
    assert gap.end_ts_ns == (MS0 + 25) * 1_000_000  # the snapshot's time
    (snap,) = of(step.events, BookSnapshot)
    assert snap.seq == 106
    # then the buffered messages, one update each: [106, 107] straddles the snapshot
    assert [kind_seq[:2] for kind_seq in book_events(step.events)] == [
        ("BookSnapshot", 106),
        ("BookUpdate", 107),
        ("BookUpdate", 108),
    ]
    assert step.events.index(gap) < step.events.index(snap)
    assert rebuild(h.events) == book_of(h)
    assert h.a.book_seq(BTC) == 108
    assert h.a.counters()["kucoin:book:BTC-USDT"].resyncs == 1
    assert h.a.counters()["kucoin:book:ETH-USDT"].resyncs == 0


def test_book_gap_declares_time_gaps_on_the_symbols_trades_and_ticker() -> None:
    h = H([kucoin.book(BTC), kucoin.trades(BTC), kucoin.ticker(BTC), kucoin.trades(ETH)])
    h.up()
    live_book(h, BTC, 100)
    h.frame(l2_frame(BTC, 102, 102, time_ms=MS0 + 10))
    h.frame(match_frame(BTC, 50, (MS0 + 12) * 1_000_000))
    h.frame(ticker_frame(BTC, 102, MS0 + 11))
    h.frame(match_frame(ETH, 70, (MS0 + 12) * 1_000_000))
    # the venue withheld BTC data (e.g. a stall): the book sees it, the others cannot
    step = h.frame(l2_frame(BTC, 110, 110, time_ms=MS0 + 500))
    gaps = {g.stream: g for g in of(step.events, Gap)}
    assert set(gaps) == {"kucoin:trade:BTC-USDT", "kucoin:ticker:BTC-USDT"}
    for g in gaps.values():
        assert g.cause is GapCause.SEQUENCE_GAP
        assert g.start_ts_ns == (MS0 + 10) * 1_000_000  # the book's last delivered, earlier
        assert g.end_ts_ns == (MS0 + 500) * 1_000_000
        assert "kucoin:book:BTC-USDT" in g.detail
    # the trade stream's next id jump is that same interval: no second gap
    nxt = h.frame(match_frame(BTC, 90, (MS0 + 501) * 1_000_000))
    assert of(nxt.events, Gap) == []


def test_stale_snapshot_is_refetched_after_the_min_interval() -> None:
    h = H([kucoin.book(BTC)], resync_min_interval_s=1.0)
    h.up()
    h.frame(l2_frame(BTC, 50, 51, bids=[("100.1", "4", 51)]))
    step = h.answer(snap_body(40, BIDS, ASKS))  # older than the stream we joined
    assert step.rest == []
    assert of(step.events, BookSnapshot) == []
    assert h.a.counters()["kucoin:book:BTC-USDT"].stale_snapshots == 1
    h.adv(0.5)
    assert h.timer().rest == []
    h.adv(0.6)
    assert [c.key for c in h.timer().rest] == ["l2:BTC-USDT"]
    step = h.answer(snap_body(50, BIDS, ASKS))
    assert len(of(step.events, BookSnapshot)) == 1
    assert h.a.book_seq(BTC) == 51


def test_snapshot_before_any_update_is_held_and_judged_by_the_first_one() -> None:
    h = H([kucoin.book(BTC)])
    h.up()
    step = h.answer(snap_body(70, BIDS, ASKS))
    assert step.events == []
    assert phase(h) is Phase.LIVE  # quiet symbol: the book waits for the venue, not us
    # the message straddles the held snapshot: the snapshot, then the message on top
    step = h.frame(
        l2_frame(BTC, 70, 72, asks=[("100.7", "5", 70), ("100.9", "1", 72)], time_ms=MS0 + 3)
    )
    snap, upd = step.events
    assert isinstance(snap, BookSnapshot)
    assert isinstance(upd, BookUpdate)
    assert (snap.seq, snap.exchange_ts_ns) == (70, MS0 * 1_000_000)  # the snapshot's own
    assert levels(snap.bids) == {Decimal(p): Decimal(q) for p, q in BIDS}
    assert levels(snap.asks) == {Decimal(p): Decimal(q) for p, q in ASKS}
    assert (upd.seq, upd.exchange_ts_ns) == (72, (MS0 + 3) * 1_000_000)
    assert list(upd.bids) == []
    assert list(upd.asks) == [(Decimal("100.9"), Decimal("1"))]  # entry 70 is in the snapshot
    assert rebuild(step.events) == book_of(h)
    assert book_of(h)[1][Decimal("100.7")] == 2
    assert h.a.book_seq(BTC) == 72
    assert h.a.counters()["kucoin:book:BTC-USDT"].delivered == 2


def test_message_inside_a_held_snapshot_makes_it_live_at_its_own_sequence() -> None:
    h = H([kucoin.book(BTC)])
    h.up()
    h.answer(snap_body(70, BIDS, ASKS, time_ms=MS0 + 1))
    step = h.frame(l2_frame(BTC, 69, 70, asks=[("100.7", "5", 70)], time_ms=MS0))
    (snap,) = step.events  # the message was in the snapshot already: nothing else
    assert isinstance(snap, BookSnapshot)
    assert snap.seq == 70
    assert levels(snap.asks) == {Decimal(p): Decimal(q) for p, q in ASKS}
    assert h.a.book_seq(BTC) == 70
    step = h.frame(l2_frame(BTC, 71, 71, bids=[("100.5", "1", 71)], time_ms=MS0 + 2))
    (upd,) = step.events
    assert isinstance(upd, BookUpdate)
    assert upd.seq == 71
    assert rebuild(h.events) == book_of(h)


def test_calibration_without_buffered_messages_is_one_snapshot() -> None:
    """Every buffered message inside the snapshot (dropped): the snapshot alone."""
    h = H([kucoin.book(BTC)])
    h.up()
    h.frame(l2_frame(BTC, 99, 100, bids=[("100.4", "9", 100)], time_ms=MS0 - 5))
    step = h.answer(snap_body(100, BIDS, ASKS, time_ms=MS0))
    (snap,) = step.events
    assert isinstance(snap, BookSnapshot)
    assert (snap.seq, snap.exchange_ts_ns) == (100, MS0 * 1_000_000)
    assert levels(snap.bids) == {Decimal(p): Decimal(q) for p, q in BIDS}
    assert h.a.book_seq(BTC) == 100
    c = h.a.counters()["kucoin:book:BTC-USDT"]
    assert (c.delivered, c.snapshots_used) == (1, 1)


def test_calibration_delivers_each_replayed_message_as_an_update() -> None:
    """Snapshot at its own sequence, then one update per buffered message applied on
    top of it, in order, with its levels, sequenceEnd and time; messages inside the
    snapshot give nothing. The events rebuild the adapter's book."""
    h = H([kucoin.book(BTC)])
    h.up()
    frames = [
        l2_frame(BTC, 98, 99, bids=[("100.4", "7", 99)], time_ms=MS0 - 2),  # inside
        l2_frame(  # straddles: entry 100 is in the snapshot, 101 is not
            BTC, 100, 101, bids=[("100.3", "5", 100), ("100.1", "1", 101)], time_ms=MS0 + 1
        ),
        l2_frame(BTC, 102, 102, asks=[("100.6", "0", 102)], time_ms=MS0 + 2),
        l2_frame(BTC, 103, 105, time_ms=MS0 + 3),  # nothing but sequence numbers
        l2_frame(  # more decimals than the book had: precision grows during the replay
            BTC,
            106,
            107,
            bids=[("100.25", "0.125", 106)],
            asks=[("100.7", "0", 107)],
            time_ms=MS0 + 4,
        ),
    ]
    for f in frames:
        assert h.frame(f).events == []
    step = h.answer(snap_body(100, BIDS, ASKS, time_ms=MS0))
    assert book_events(step.events) == [
        ("BookSnapshot", 100, MS0 * 1_000_000),
        ("BookUpdate", 101, (MS0 + 1) * 1_000_000),
        ("BookUpdate", 102, (MS0 + 2) * 1_000_000),
        ("BookUpdate", 105, (MS0 + 3) * 1_000_000),
        ("BookUpdate", 107, (MS0 + 4) * 1_000_000),
    ]
    snap = step.events[0]
    assert isinstance(snap, BookSnapshot)
    assert levels(snap.bids) == {Decimal(p): Decimal(q) for p, q in BIDS}
    assert levels(snap.asks) == {Decimal(p): Decimal(q) for p, q in ASKS}
    upd = of(step.events, BookUpdate)
    assert [(list(u.bids), list(u.asks)) for u in upd] == [
        ([(Decimal("100.1"), Decimal("1"))], []),
        ([], [(Decimal("100.6"), Decimal("0"))]),
        ([], []),
        ([(Decimal("100.25"), Decimal("0.125"))], [(Decimal("100.7"), Decimal("0"))]),
    ]
    assert rebuild(step.events) == book_of(h)
    bids, asks = book_of(h)
    assert bids == {
        Decimal("100.4"): 1,
        Decimal("100.3"): 2,
        Decimal("100.25"): Decimal("0.125"),
        Decimal("100.2"): 3,
        Decimal("100.1"): 1,
    }
    assert asks == {Decimal("100.8"): 3}
    assert h.a.book_seq(BTC) == 107
    c = h.a.counters()["kucoin:book:BTC-USDT"]
    assert (c.delivered, c.snapshots_used) == (5, 1)
    # live from there on, continuing the same numbering
    step = h.frame(l2_frame(BTC, 108, 108, asks=[("100.9", "1", 108)], time_ms=MS0 + 5))
    assert [e.seq for e in of(step.events, BookUpdate)] == [108]
    assert rebuild(h.events) == book_of(h)


def test_replayed_levels_are_trimmed_to_the_snapshot_window() -> None:
    """Replayed messages show only their levels inside the window of the snapshot
    they continue, as live ones do; the book never holds a level outside it."""
    h = H([kucoin.book(BTC)], snapshot_depth=20)
    h.up()
    asks = ladder(Decimal("101"), Decimal("1"), 20)  # 101..120: ceiling 120
    bids = ladder(Decimal("81"), Decimal("1"), 20)  # 81..100: floor 81
    h.frame(
        l2_frame(
            BTC,
            11,
            11,
            bids=[("50", "1", 11), ("90", "4", 11)],
            asks=[("125", "5", 11), ("110", "3", 11)],
            time_ms=MS0 + 1,
        )
    )
    h.frame(l2_frame(BTC, 12, 12, bids=[("80.5", "0", 12)], asks=[("120", "0", 12)]))
    step = h.answer(snap_body(10, bids, asks))
    assert h.a.book_window(BTC) == (Decimal("81"), Decimal("120"))
    snap, u1, u2 = step.events
    assert isinstance(snap, BookSnapshot)
    assert isinstance(u1, BookUpdate)
    assert isinstance(u2, BookUpdate)
    assert (snap.seq, u1.seq, u2.seq) == (10, 11, 12)
    assert len(snap.bids) == len(snap.asks) == 20
    assert list(u1.bids) == [(Decimal("90"), Decimal("4"))]
    assert list(u1.asks) == [(Decimal("110"), Decimal("3"))]
    assert list(u2.bids) == []  # a removal outside the window is not shown either
    assert list(u2.asks) == [(Decimal("120"), Decimal("0"))]
    b, a = book_of(h)
    assert min(b) == Decimal("81")
    assert max(a) == Decimal("119")
    assert rebuild(step.events) == (b, a)


def test_replay_of_sequences_already_delivered_is_folded_not_repeated() -> None:
    """A venue that re-sends, after a resync, messages the user already has: the
    calibration does not deliver them again. Replayed messages that end inside what
    was delivered fold into one snapshot at the final sequence (as before); when
    the first replayed message goes past it, snapshot and updates as usual."""
    h = H([kucoin.book(BTC)], resync_min_interval_s=0.0)
    h.up()
    live_book(h, BTC, 100)  # live at 101
    h.frame(l2_frame(BTC, 102, 103, asks=[("100.9", "1", 103)], time_ms=MS0 + 3))
    h.take(h.a.on_overflow(1, h.now()))  # resync without a sequence gap
    h.frame(l2_frame(BTC, 102, 103, asks=[("100.9", "1", 103)], time_ms=MS0 + 3))  # again
    h.frame(l2_frame(BTC, 104, 104, asks=[("101", "1", 104)], time_ms=MS0 + 4))
    step = h.answer(snap_body(101, BIDS, ASKS, time_ms=MS0 + 2))
    assert book_events(step.events) == [("BookSnapshot", 104, (MS0 + 4) * 1_000_000)]
    (g,) = of(step.events, Gap)  # 104 was not delivered as an update
    assert (g.first_seq, g.last_seq) == (104, 104)
    assert rebuild(h.events) == book_of(h)
    # the first replayed message goes past what was delivered: it is an update
    h.take(h.a.on_overflow(1, h.now()))
    h.frame(l2_frame(BTC, 103, 105, asks=[("101", "2", 105)], time_ms=MS0 + 5))
    step = h.answer(snap_body(102, BIDS, ASKS, time_ms=MS0 + 2))
    assert book_events(step.events) == [
        ("BookSnapshot", 102, (MS0 + 2) * 1_000_000),
        ("BookUpdate", 105, (MS0 + 5) * 1_000_000),
    ]
    assert of(step.events, Gap) == []  # the snapshot is where the user left off
    assert h.a.counters()["kucoin:book:BTC-USDT"].healed == 1
    assert rebuild(h.events) == book_of(h)
    assert h.a.book_seq(BTC) == 105


def test_rest_429000_overload_backs_off_and_a_quota_reset_is_waited_for() -> None:
    """§2.4: 429000 without gw-ratelimit-* headers is server overload (retry with the
    usual backoff); with a reset hint it is our quota (wait for the reset)."""
    h = H([kucoin.book(BTC), kucoin.book(ETH)])
    h.up()
    step = h.answer(b'{"code":"429000","msg":"Too Many Requests"}', status=429)
    assert step.rest == []
    assert step.events == []
    assert h.a.counters()["kucoin:book:BTC-USDT"].rate_limited == 1
    step = h.answer(b'{"code":"429000","msg":"Too Many Requests"}', status=200)
    assert step.rest == []  # 429000 in a 200 body (overload) is the same
    h.adv(0.5)
    assert h.timer().rest == []
    h.adv(0.6)
    assert sorted(c.key for c in h.timer().rest) == ["l2:BTC-USDT", "l2:ETH-USDT"]
    h.answer(snap_body(10, BIDS, ASKS))
    step = h.answer(b"", status=429, retry_after_s=3.0)  # Retry-After wins
    h.adv(3.1)
    assert [c.key for c in h.timer().rest] == ["l2:ETH-USDT"]
    # transport errors and other statuses back off too (ETH's second failure: 2 s)
    h.answer(b"", status=None, error="timeout")  # type: ignore[arg-type]
    h.adv(1.05)
    assert h.timer().rest == []
    h.adv(1.0)
    assert [c.key for c in h.timer().rest] == ["l2:ETH-USDT"]
    h.answer(b"garbage", status=200)
    assert h.a.bad_frames == 1


def test_reconnect_takes_a_fresh_snapshot_and_declares_disconnect_gaps() -> None:
    h = H([kucoin.book(BTC), kucoin.trades(BTC), kucoin.ticker(BTC)], time_gap_margin_s=0.25)
    h.up()
    live_book(h, BTC, 100)
    h.frame(match_frame(BTC, 900, WALL0 + 1_000))
    h.frame(ticker_frame(BTC, 101, MS0 + 2))
    old_book = h.a.book(BTC)
    assert old_book is not None
    assert old_book.valid
    h.adv(3.0)
    step = h.disconnect("connection closed (code 1000)")  # e.g. the 24 h lifetime close
    assert step.events == []
    assert not old_book.valid
    h.adv(1.0)
    h.dial(TOKEN2)
    h.connect()
    step = h.ack(h.welcome())
    gaps = {g.stream: g for g in of(step.events, Gap)}
    tg = gaps["kucoin:trade:BTC-USDT"]
    assert tg.cause is GapCause.DISCONNECT
    assert tg.start_ts_ns == WALL0 + 1_000
    assert tg.end_ts_ns == h.now().wall_ns + 250_000_000
    assert tg.first_seq is None  # match sequences are not contiguous (§2.6)
    assert gaps["kucoin:ticker:BTC-USDT"].start_ts_ns == (MS0 + 2) * 1_000_000
    assert "kucoin:book:BTC-USDT" not in gaps  # closes at the new snapshot
    assert [c.key for c in h.rest] == ["l2:BTC-USDT"]
    h.frame(l2_frame(BTC, 151, 152, bids=[("99", "1", 152)], time_ms=MS0 + 50))
    step = h.answer(snap_body(150, BIDS, ASKS, time_ms=MS0 + 40))
    (g,) = of(step.events, Gap)
    assert g.cause is GapCause.DISCONNECT
    assert (g.first_seq, g.last_seq) == (102, 150)
    assert g.end_ts_ns == (MS0 + 40) * 1_000_000
    (snap,) = of(step.events, BookSnapshot)
    assert {lv.price for lv in snap.bids} == {Decimal(b) for b, _ in BIDS}
    (upd,) = of(step.events, BookUpdate)
    assert (upd.seq, list(upd.bids)) == (152, [(Decimal("99"), Decimal("1"))])
    assert rebuild(h.events) == book_of(h)
    assert h.a.book(BTC) is old_book
    assert old_book.valid
    # matches after the reconnect: the id jump is the declared outage, not a new gap
    step = h.frame(match_frame(BTC, 950, WALL0 + 9_000_000_000))
    assert of(step.events, Gap) == []
    assert len(of(step.events, Trade)) == 1


def test_trades_and_tickers() -> None:
    h = H([kucoin.trades(BTC), kucoin.ticker(BTC)])
    h.up()
    step = h.frame(match_frame(BTC, 11067996711960577, 1729843222921000000, side="sell"))
    (t,) = of(step.events, Trade)
    assert t.price == Decimal("67523.5")
    assert t.qty == Decimal("0.003")
    assert t.side == "sell"
    assert t.exchange_ts_ns == 1729843222921000000
    assert t.trade_id == 11067996711960577
    assert t.stream == "kucoin:trade:BTC-USDT"
    dup = h.frame(match_frame(BTC, 11067996711960577, 1729843222921000000))
    old = h.frame(match_frame(BTC, 11067996711960500, 1729843222920000000))
    assert of(dup.events, Trade) == []
    assert of(old.events, Trade) == []
    assert h.a.counters()["kucoin:trade:BTC-USDT"].duplicates_dropped == 2
    # non-contiguous sequence jumps are normal (§2.6)
    jump = h.frame(match_frame(BTC, 11067996711969999, 1729843222930000000))
    assert of(jump.events, Gap) == []
    assert len(of(jump.events, Trade)) == 1
    # a non-numeric tradeId falls back to the sequence
    step = h.frame(match_frame(BTC, 11067996711970000, 1729843222931000000, trade_id="abc"))
    assert of(step.events, Trade)[0].trade_id == 11067996711970000
    step = h.frame(ticker_frame(BTC, 7, MS0 + 1))
    (bt,) = of(step.events, BookTicker)
    assert (bt.bid, bt.bid_qty, bt.ask, bt.ask_qty) == (
        Decimal("100.4"),
        Decimal("3.5"),
        Decimal("100.6"),
        Decimal("2"),
    )
    assert bt.update_id == 7
    assert bt.exchange_ts_ns == (MS0 + 1) * 1_000_000
    assert of(h.frame(ticker_frame(BTC, 7, MS0 + 1)).events, BookTicker) == []
    assert of(h.frame(ticker_frame(BTC, 6, MS0 + 2)).events, BookTicker) == []


def test_contiguous_trade_ids_report_jumps() -> None:
    h = H([kucoin.trades(BTC)], trade_ids_contiguous=True)
    h.up()
    h.frame(match_frame(BTC, 10, WALL0 + 100))
    h.frame(match_frame(BTC, 11, WALL0 + 200))
    step = h.frame(match_frame(BTC, 15, WALL0 + 600))
    (g,) = of(step.events, Gap)
    assert g.cause is GapCause.SEQUENCE_GAP
    assert (g.first_seq, g.last_seq) == (12, 14)
    assert (g.start_ts_ns, g.end_ts_ns) == (WALL0 + 200, WALL0 + 600)
    assert len(of(step.events, Trade)) == 1
    h.disconnect()
    step = h.up()
    (dg,) = of(step.events, Gap)
    assert dg.cause is GapCause.DISCONNECT
    assert dg.first_seq == 16
    assert dg.last_seq is None
    step = h.frame(match_frame(BTC, 40, WALL0 + 9_000))
    assert of(step.events, Gap) == []  # the jump is the declared outage


# ---------------------------------------------------------------- failures


def test_overflow_resyncs_books_and_declares_time_gaps() -> None:
    h = H([kucoin.book(BTC), kucoin.trades(BTC), kucoin.trades(ETH)])
    h.dial()
    h.connect()
    subs = sent(h.welcome())
    book_req = next(m for m in subs if "level2" in m["topic"])
    h.frame({"id": book_req["id"], "type": "ack"})
    live_book(h, BTC, 100)
    h.frame(match_frame(BTC, 5, WALL0 + 10))
    h.adv(1.0)
    step = h.take(h.a.on_overflow(7, h.now()))
    assert of(step.events, Gap) == []  # the trades were never acknowledged: nothing promised
    book = h.a.book(BTC)
    assert book is not None
    assert not book.valid
    resent = sent(step)
    assert [m["topic"] for m in resent] == ["/market/match:BTC-USDT,ETH-USDT"]
    assert [c.key for c in step.rest] == ["l2:BTC-USDT"]


def test_overflow_time_gap_for_live_trades() -> None:
    h = H([kucoin.trades(BTC)], time_gap_margin_s=0.0)
    h.up()
    h.frame(match_frame(BTC, 5, WALL0 + 10))
    h.adv(1.0)
    step = h.take(h.a.on_overflow(3, h.now()))
    (g,) = of(step.events, Gap)
    assert (g.start_ts_ns, g.end_ts_ns) == (WALL0 + 10, h.now().wall_ns)
    assert g.cause is GapCause.QUEUE_OVERFLOW
    assert "3 frames" in g.detail


def test_bad_frames_resync_what_they_may_have_touched() -> None:
    h = H([kucoin.book(BTC), kucoin.book(ETH), kucoin.trades(BTC)])
    h.up()
    live_book(h, BTC, 100)
    live_book(h, ETH, 300)
    h.adv(2.0)
    # readable topic, wrong types: only that symbol's book
    bad = l2_frame(ETH, 302, 302).replace('"sequenceEnd": 302', '"sequenceEnd": "x"')
    step = h.frame(bad)
    (bf,) = of(step.events, BadFrame)
    assert bf.excerpt
    assert bf.size == len(bad)
    assert [c.key for c in step.rest] == ["l2:ETH-USDT"]
    btc = h.a.book(BTC)
    assert btc is not None
    assert btc.valid
    # unreadable: everything
    h.adv(2.0)
    h.frame(match_frame(BTC, 1, WALL0 + 5))
    step = h.frame("{not json")
    assert len(of(step.events, BadFrame)) == 1
    assert [c.key for c in step.rest] == ["l2:BTC-USDT"]  # ETH's fetch is still in flight
    assert [g.stream for g in of(step.events, Gap)] == ["kucoin:trade:BTC-USDT"]
    assert not btc.valid
    # a price with more than 18 decimals is refused: that book is resynced
    h.answer(snap_body(300, BIDS, ASKS))
    h.frame(l2_frame(ETH, 301, 301))
    assert h.a.book_seq(ETH) == 301
    h.adv(2.0)
    step = h.frame(l2_frame(ETH, 302, 302, bids=[("1." + "1" * 19, "1", 302)]))
    assert len(of(step.events, BadFrame)) == 1
    eth = h.a.book(ETH)
    assert eth is not None
    assert not eth.valid


def test_too_many_resyncs_escalate_to_a_reconnect() -> None:
    h = H([kucoin.book(BTC)], max_resyncs_per_minute=2, resync_min_interval_s=0.0)
    h.up()
    seq = 100
    live_book(h, BTC, seq)
    reconnect = None
    for i in range(3):
        seq += 10
        step = h.frame(l2_frame(BTC, seq, seq))  # a gap each time
        reconnect = step.reconnect
        if reconnect:
            break
        h.answer(snap_body(seq, BIDS, ASKS))
        h.frame(l2_frame(BTC, seq + 1, seq + 1))
        assert h.a.book_seq(BTC) == seq + 1, i
    assert reconnect is not None
    assert "resyncs" in reconnect


def test_stale_book_watchdog_resubscribes() -> None:
    h = H([kucoin.book(BTC)], book_stale_after_s=30.0)
    h.up()
    live_book(h, BTC, 100)
    h.adv(31.0)
    assert h.timer(backlog=1).events == []
    step = h.timer()
    assert [w.kind for w in of(step.events, WatchdogFired)] == ["stale"]
    assert sent(step, "unsubscribe")
    assert sent(step)
    assert phase(h) is Phase.SUBSCRIBING
    step = h.ack(step)
    h.frame(l2_frame(BTC, 120, 120))
    step = h.answer(snap_body(119, BIDS, ASKS))
    (g,) = of(step.events, Gap)
    assert g.cause is GapCause.STALE
    assert (g.first_seq, g.last_seq) == (102, 119)  # up to the snapshot; 120 is delivered
    assert book_events(step.events)[1:] == [("BookUpdate", 120, MS0 * 1_000_000)]


# ---------------------------------------------------------------- verified window


def ladder(start: Decimal, step: Decimal, n: int) -> list[tuple[str, str]]:
    return [(str(start + step * i), "1") for i in range(n)]


def test_book_keeps_only_the_window_the_snapshot_vouches_for_and_refreshes() -> None:
    h = H([kucoin.book(BTC)], snapshot_depth=20, book_refresh_fraction=0.5)
    h.up()
    call = h.rest[0]
    assert call.url.endswith("/level2_20?symbol=BTC-USDT")
    asks = ladder(Decimal("101"), Decimal("1"), 20)  # 101..120: ceiling 120
    bids = [("100", "1")]  # fewer than 20: the bid side is complete
    h.frame(l2_frame(BTC, 11, 11))
    h.answer(snap_body(10, bids, asks))
    assert h.a.book_window(BTC) == (None, Decimal("120"))
    # an ask beyond the ceiling is not shown (nor part of the event)
    step = h.frame(l2_frame(BTC, 12, 12, asks=[("125", "5", 12)], bids=[("50", "1", 12)]))
    (u,) = of(step.events, BookUpdate)
    assert [lv.price for lv in u.asks] == []
    assert [lv.price for lv in u.bids] == [Decimal("50")]
    book = h.a.book(BTC)
    assert book is not None
    assert max(lv.price for lv in book.asks()) == Decimal("120")
    # the market eats asks 101..111: 9 left in the window (< 10): refresh in a shadow
    seq = 12
    for px in range(101, 112):
        seq += 1
        h.frame(l2_frame(BTC, seq, seq, asks=[(str(px), "0", seq)]))
    assert len(book.asks()) == 9
    h.adv(2.0)
    step = h.timer()
    assert [c.key for c in step.rest] == ["l2:BTC-USDT"]
    assert book.valid  # the live book keeps going meanwhile
    seq += 1
    step = h.frame(l2_frame(BTC, seq, seq, asks=[("119", "7", seq)]))
    assert len(of(step.events, BookUpdate)) == 1
    deeper = ladder(Decimal("112"), Decimal("1"), 20)  # 112..131 at seq 24
    deeper = [(p, "7" if p == "119" else s) for p, s in deeper]
    step = h.answer(snap_body(seq, [("100", "1"), ("50", "1")], deeper))
    (snap,) = of(step.events, BookSnapshot)
    assert of(step.events, Gap) == []
    assert not book.valid  # replaced
    new = h.a.book(BTC)
    assert new is not None
    assert new.valid
    assert new is not book
    assert h.a.book_window(BTC) == (None, Decimal("131"))
    assert [lv.price for lv in snap.asks][-1] == Decimal("131")
    assert h.a.counters()["kucoin:book:BTC-USDT"].refreshes == 1
    seq += 1
    step = h.frame(l2_frame(BTC, seq, seq, asks=[("125", "2", seq)]))
    (u,) = of(step.events, BookUpdate)
    assert u.book is not None
    assert u.book.valid
    assert h.a.book_seq(BTC) == seq


# ---------------------------------------------------------------- secrets and shutdown


def test_lifetime_flags_a_planned_reconnect_before_the_24h_close() -> None:
    h = H([kucoin.trades(BTC)], lifetime_s=3600.0, lifetime_margin_s=60.0)
    h.up()
    h.adv(3539.0)
    assert not h.timer().reconnect
    assert h.a.planned_reconnect is None
    h.adv(1.0)
    step = h.timer()
    assert step.reconnect is None  # make-before-break: the runtime replaces the connection
    assert h.a.planned_reconnect is not None
    assert "lifetime" in h.a.planned_reconnect
    assert h.a.planned_reconnects == 1
    h.adv(5.0)
    h.timer()
    assert h.a.planned_reconnects == 1  # once per connection
    nxt = h.a.successor()
    assert nxt is not h.a
    assert nxt.streams() == h.a.streams()
    assert nxt.options is h.a.options
    assert nxt.endpoint_latency_s == h.a.endpoint_latency_s
    h.disconnect()
    h.dial()
    h.connect()
    assert h.a.planned_reconnect is None  # a new connection has its own lifetime
    assert KucoinOptions().lifetime_s == 86400.0


def test_lifetime_without_make_before_break_reconnects() -> None:
    h = H([kucoin.trades(BTC)], lifetime_s=100.0, lifetime_margin_s=10.0, make_before_break=False)
    h.up()
    h.adv(90.0)
    step = h.timer()
    assert step.reconnect is not None
    assert step.reconnect.startswith("planned: ")
    with pytest.raises(ConfigError):
        KucoinOptions(lifetime_s=10.0, lifetime_margin_s=10.0)


def test_token_never_appears_in_events_reasons_or_reprs() -> None:
    h = H([kucoin.book(BTC), kucoin.trades(BTC)])
    url = h.dial()
    assert TOKEN.replace("+", "%2B").replace("/", "%2F") in url
    h.a.on_dial_failed(f"connect to {url} failed: ConnectionRefusedError", h.now())
    h.dial()
    h.connect()
    h.ack(h.welcome())
    live_book(h, BTC, 10)
    h.frame(match_frame(BTC, 1, WALL0))
    h.frame({"id": "x", "type": "error", "code": 400, "data": f"bad request {TOKEN}"})
    h.frame(f'{{"type":"message","topic":"/market/match:BTC-USDT","data":"{TOKEN}"')
    h.frame({"type": "error", "code": 401, "data": f"token {TOKEN} is expired"})
    h.take(h.a.on_bad_transport_frame(f"frame too large on {url}", 10, h.now()))
    h.disconnect(f"connect to {url} failed")
    h.take(h.a.shutdown(h.now()))
    texts = [repr(e) for e in h.events] + [json.dumps(event_to_dict(e)) for e in h.events]
    texts += [repr(h.a), repr(vars(h.a)), str(h.a.last_dial_failure)]
    texts += [repr(vars(s)) if hasattr(s, "__dict__") else repr(s) for s in h.a.counters().values()]
    assert h.events
    assert any(isinstance(e, Gap) for e in h.events)
    forms = [TOKEN, TOKEN.replace("+", "%2B").replace("/", "%2F"), TOKEN[:20]]
    for text in texts:
        for form in forms:
            assert form not in text, text
    assert "<redacted>" in str(h.a.last_dial_failure)
    # for the runtime: its own error texts and records go through the same scrubber
    scrubbed = h.a.redact(f"connect to {url} failed; body {{'token': '{TOKEN}'}}")
    assert all(form not in scrubbed for form in forms)
    assert scrubbed.count("<redacted>") == 2


def test_shutdown_reports_open_gaps_without_end_once() -> None:
    h = H([kucoin.book(BTC), kucoin.trades(BTC), kucoin.book(ETH)])
    h.up()
    live_book(h, BTC, 10)
    h.frame(match_frame(BTC, 1, WALL0 + 7))
    h.disconnect("dead peer")
    step = h.take(h.a.shutdown(h.now()))
    gaps = {g.stream: g for g in of(step.events, Gap)}
    assert set(gaps) == {"kucoin:book:BTC-USDT", "kucoin:trade:BTC-USDT"}  # ETH never live
    assert all(g.end_ts_ns is None and g.cause is GapCause.DISCONNECT for g in gaps.values())
    assert gaps["kucoin:book:BTC-USDT"].first_seq == 12
    assert h.a.shutdown(h.now()).events == []


def test_shutdown_while_resyncing_is_a_shutdown_gap() -> None:
    h = H([kucoin.book(BTC)])
    h.up()
    live_book(h, BTC, 10)
    h.frame(l2_frame(BTC, 20, 20))  # gap: resync in progress
    step = h.take(h.a.shutdown(h.now()))
    (g,) = of(step.events, Gap)
    assert g.cause is GapCause.SEQUENCE_GAP
    assert g.end_ts_ns is None
    assert g.first_seq == 12


def test_rest_budget_spec_keeps_a_margin() -> None:
    spec = KucoinOptions().rest_budget
    assert spec == RestBudgetSpec(500.0, 40.0)
    assert spec.max_in_window(30.0) <= 0.9 * 2000


# ---------------------------------------------------------------- hypothesis


ASK_PRICES = [str(Decimal("101") + i) for i in range(30)]
BID_PRICES = [str(Decimal("100") - i) for i in range(30)]
SIZES = ["0", "1", "2.5", "0.003"]
DEPTH = 20


class RefVenue:
    """One symbol: sequence ``i + 1`` applies op ``i`` (None: a no-op sequence)."""

    def __init__(self, ops: list[tuple[str, str, str] | None]) -> None:
        self.ops = ops
        self.states: list[tuple[dict[str, str], dict[str, str]]] = [({}, {})]
        bids: dict[str, str] = {}
        asks: dict[str, str] = {}
        for op in ops:
            if op is not None:
                side, price, size = op
                book = bids if side == "b" else asks
                if Decimal(size) == 0:
                    book.pop(price, None)
                else:
                    book[price] = size
            self.states.append((dict(bids), dict(asks)))

    @property
    def last(self) -> int:
        return len(self.ops)

    def snapshot(self, seq: int) -> bytes:
        bids, asks = self.states[seq]
        b = sorted(bids.items(), key=lambda kv: -Decimal(kv[0]))[:DEPTH]
        a = sorted(asks.items(), key=lambda kv: Decimal(kv[0]))[:DEPTH]
        return snap_body(seq, b, a, time_ms=MS0 + seq)

    def messages(self, sizes: list[int]) -> list[str]:
        out = []
        start = 1
        for size in sizes:
            if start > self.last:
                break
            end = min(start + size - 1, self.last)
            bids: dict[str, tuple[str, str, int]] = {}
            asks: dict[str, tuple[str, str, int]] = {}
            noop: list[tuple[str, str, int]] = []
            for seq in range(start, end + 1):
                op = self.ops[seq - 1]
                if op is None:
                    noop = [("0", "0", seq)]
                    continue
                side, price, size_ = op
                (bids if side == "b" else asks)[price] = (price, size_, seq)
            b = sorted(bids.values(), key=lambda c: c[2]) + noop
            a = sorted(asks.values(), key=lambda c: c[2])
            out.append(l2_frame(BTC, start, end, b, a, time_ms=MS0 + end))
            start = end + 1
        return out

    def check(self, a: KucoinAdapter) -> None:
        if a.connected:
            assert a.phase is scanned_phase(a)  # the O(1) phase agrees with a scan
        book = a.book(BTC)
        assert book is not None
        if not book.valid:
            return
        seq = a.book_seq(BTC)
        assert seq is not None
        floor, ceiling = a.book_window(BTC)
        bids, asks = self.states[seq]
        want_b = {
            Decimal(p): Decimal(s) for p, s in bids.items() if floor is None or Decimal(p) >= floor
        }
        want_a = {
            Decimal(p): Decimal(s)
            for p, s in asks.items()
            if ceiling is None or Decimal(p) <= ceiling
        }
        assert {lv.price: lv.qty for lv in book.bids()} == want_b
        assert {lv.price: lv.qty for lv in book.asks()} == want_a


OPS = st.lists(
    st.none()
    | st.tuples(st.just("a"), st.sampled_from(ASK_PRICES), st.sampled_from(SIZES))
    | st.tuples(st.just("b"), st.sampled_from(BID_PRICES), st.sampled_from(SIZES)),
    min_size=0,
    max_size=150,
)
ACTIONS = st.sampled_from(
    ["msg"] * 6
    + ["rest"] * 4
    + ["timer"] * 2
    + ["drop", "dup", "swap", "rest_429", "overflow", "reconnect"]
)
# a full book first (more levels per side than the snapshot depth), then random changes
FILL: list[tuple[str, str, str] | None] = [
    *(("a", p, "1") for p in ASK_PRICES),
    *(("b", p, "1") for p in BID_PRICES),
]


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=OPS, data=st.data())
def test_random_interleavings_never_expose_an_invalid_book(
    ops: list[tuple[str, str, str] | None], data: Any
) -> None:
    """The adapter's book is the venue's (inside the verified window) whenever it is
    valid; the events a consumer keeps (BookSnapshot, then BookUpdates) rebuild it
    exactly; every published message is delivered once or inside a Gap."""
    ops = FILL + ops
    venue = RefVenue(ops)
    sizes = data.draw(st.lists(st.integers(1, 6), min_size=len(ops), max_size=len(ops)))
    msgs = venue.messages(sizes)
    h = H(
        [kucoin.book(BTC)],
        snapshot_depth=20,
        resync_min_interval_s=0.0,
        max_resyncs_per_minute=1000,
        book_refresh_fraction=data.draw(st.sampled_from([None, 0.5, 1.0, 1.0])),
        book_refresh_min_interval_s=0.0,
    )
    h.up()
    consumer = Consumer()
    fed = 0

    def follow() -> None:
        """The events so far rebuild the adapter's book whenever it is valid."""
        nonlocal fed
        new = h.events[fed:]
        consumer.feed(new)
        fed = len(h.events)
        kinds = [type(e).__name__ for e in new]
        if "BookSnapshot" in kinds and "BookUpdate" in kinds[kinds.index("BookSnapshot") :]:
            event("a calibration delivered replayed updates")
        book = h.a.book(BTC)
        if book is not None and book.valid:
            assert consumer.book == book_of(h)

    # the last message always arrives: a lost one is only visible from a later one
    msgs, tail = msgs[:-1], msgs[-1]
    i = 0
    published = 0  # sequence the venue has reached
    while i < len(msgs):
        action = data.draw(ACTIONS)
        event(action)
        if action in ("msg", "drop", "dup", "swap"):
            m = msgs[i]
            end = json.loads(m)["data"]["sequenceEnd"]
            if action == "drop":
                i += 1
            elif action == "swap" and i + 1 < len(msgs):
                h.frame(msgs[i + 1])
                h.frame(m)
                end = json.loads(msgs[i + 1])["data"]["sequenceEnd"]
                i += 2
            else:
                h.frame(m)
                if action == "dup":
                    h.frame(m)
                i += 1
            published = max(published, end)
        elif action == "rest" and h.rest:
            lag = data.draw(st.integers(0, 6))
            h.answer(venue.snapshot(max(0, published - lag)))
        elif action == "rest_429" and h.rest:
            h.answer(b'{"code":"429000"}', status=429, retry_after_s=0.5)
        elif action == "timer":
            h.adv(data.draw(st.sampled_from([0.1, 1.0])))
            h.timer()
        elif action == "overflow":
            h.take(h.a.on_overflow(1, h.now()))
        elif action == "reconnect":
            h.disconnect()
            book = h.a.book(BTC)
            assert book is not None
            assert not book.valid
            h.up()
            i += data.draw(st.integers(0, 2))  # published while we were away
        venue.check(h.a)
        follow()
        seq = h.a.book_seq(BTC)
        if seq is not None:
            assert seq <= published
    h.frame(tail)
    published = venue.last
    venue.check(h.a)
    follow()
    # let it settle on the complete stream: snapshot at the end, a final timer
    for _ in range(3):
        h.adv(1.0)
        h.timer()
        while h.rest:
            h.answer(venue.snapshot(published))
            venue.check(h.a)
            follow()
    c = h.a.counters()["kucoin:book:BTC-USDT"]
    event(f"snapshots used: {min(c.snapshots_used, 5)}")
    event(f"stale snapshots: {min(c.stale_snapshots, 2)}")
    event(f"refreshes: {min(c.refreshes, 2)}")
    event(f"gaps: {min(c.gaps, 3)}")
    event(f"window bounded: {h.a.book_window(BTC) != (None, None)}")
    h.take(h.a.shutdown(h.now()))
    check_delivered_once_or_in_a_gap([*msgs[:i], tail], h.events)


def check_delivered_once_or_in_a_gap(published: list[str], events: list[Event]) -> None:
    """Every l2update the venue published after the first snapshot is delivered
    exactly once (``BookUpdate.seq`` = its ``sequenceEnd``) or inside a Gap's
    sequence bounds; nothing is delivered that was not published."""
    ranges = [
        (d["sequenceStart"], d["sequenceEnd"]) for d in (json.loads(m)["data"] for m in published)
    ]
    snaps = of(events, BookSnapshot)
    updates = of(events, BookUpdate)
    gaps = of(events, Gap)
    if not snaps:
        assert updates == []
        return
    first = snaps[0].seq
    assert first is not None
    counts: dict[int | None, int] = {}
    for u in updates:
        counts[u.seq] = counts.get(u.seq, 0) + 1
    ends = {end for _, end in ranges}
    assert set(counts) <= ends  # nothing unexpected
    for g in gaps:
        assert g.first_seq is not None
        assert g.last_seq is None or g.first_seq <= g.last_seq
    for start, end in ranges:
        if end <= first:
            continue  # before the scope
        n = counts.get(end, 0)
        assert n <= 1, f"[{start}, {end}] delivered {n} times"
        if n == 0:
            assert any(
                g.first_seq is not None
                and end >= g.first_seq
                and (g.last_seq is None or start <= g.last_seq)
                for g in gaps
            ), f"[{start}, {end}] lost silently"


# ---------------------------------------------------------------- hot path


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


DEEP_BIDS = [(f"{100 - i * 0.1:.1f}", "1") for i in range(1, 21)]  # 99.9 .. 98.0
DEEP_ASKS = [(f"{100 + i * 0.1:.1f}", "1") for i in range(1, 21)]  # 100.1 .. 102.0
HOT_PRICES = ["99.9", "99.5", "98", "97.9", "100.1", "101.25", "102", "102.1", "0", "99.90"]
ODD_PRICES = ["-1", "1e2", "99.", ".5", "９９", "99.1234567890123456789", ""]
ODD: st.SearchStrategy[Any] = st.sampled_from([None, 1, 1.5, True, [], {}, "x", 2**70, -1])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_fast_path_gives_exactly_what_the_general_decoder_gives(data: st.DataObject) -> None:
    """Live level2 updates take a hot path; any frame, good or hostile, must give the
    same events and the same book as the general decoder (window trims, entries the
    book already has, price 0, trailing zeros dropped)."""
    fast, slow = H([kucoin.book(BTC)], snapshot_depth=20), H([kucoin.book(BTC)], snapshot_depth=20)
    slow.a.fast_path = False
    for h in (fast, slow):
        h.up()
        h.frame(l2_frame(BTC, 101, 101, bids=[("99.9", "4", 101)]))
        h.answer(snap_body(100, DEEP_BIDS, DEEP_ASKS))
    seq = 101
    good_change = st.tuples(
        st.sampled_from(HOT_PRICES), st.sampled_from(["1", "0", "2.5", "0.125"]), st.integers(0, 4)
    )
    for _ in range(data.draw(st.integers(1, 20))):
        clean = data.draw(st.integers(0, 3)) > 0
        start = seq + 1 - data.draw(st.sampled_from([0, 0, 0, 1, 2]))  # overlaps repeat entries
        if not clean:
            start += data.draw(st.sampled_from([0, 3, -5]))
        end = max(start, seq + 1) + data.draw(st.integers(0, 3))
        changes: dict[str, Any] = {}
        for side in ("bids", "asks"):
            picked = data.draw(st.lists(good_change, max_size=4))
            changes[side] = [[p_, s_, str(start + k)] for p_, s_, k in picked]
            if not clean and data.draw(st.booleans()):
                changes[side].append(
                    data.draw(
                        st.one_of(
                            st.tuples(st.sampled_from(ODD_PRICES), st.just("1"), st.just("5")).map(
                                list
                            ),
                            st.lists(ODD, max_size=3),
                            ODD,
                        )
                    )
                )
        msg: dict[str, Any] = {
            "type": "message",
            "topic": f"/market/level2:{BTC}",
            "subject": "trade.l2update",
            "data": {
                "changes": changes,
                "sequenceStart": start,
                "sequenceEnd": end,
                "symbol": BTC,
                "time": MS0 + seq,
            },
        }
        if not clean:
            for key in data.draw(st.lists(st.sampled_from(list(msg["data"])), max_size=2)):
                msg["data"][key] = data.draw(st.one_of(ODD, st.just(str(start))))
        frame = json.dumps(msg)
        got, want = fast.frame(frame), slow.frame(frame)
        assert _norm(got.events) == _norm(want.events)
        assert got.rest == want.rest
        fb, sb = fast.a.book(BTC), slow.a.book(BTC)
        assert fb is not None
        assert sb is not None
        assert (fb.valid, fb.bids(), fb.asks()) == (sb.valid, sb.bids(), sb.asks())
        if fast.a.book_seq(BTC) is not None:
            seq = fast.a.book_seq(BTC) or seq
    event(f"hot path taken: {fast.a.fast_frames > 0}")
    assert slow.a.fast_frames == 0
