"""Property tests: every sync state machine survives hostile frames and heals.

Sync machines under test:

- the pure engines: Binance depth sync (:class:`DepthSync`, protocols.md §3.8)
  and KuCoin level2 calibration (:class:`L2Sync`, §2.5), fed messages decoded
  from mutated frames plus REST snapshots, and the trade-id checks;
- the public adapters (Kraken book + CRC32 checksum, Binance diff depth + REST
  snapshot, KuCoin level2 + REST snapshot), brought live against a small model
  venue, then fed mutated real-shaped frames, arbitrary JSON, bytes, valid
  updates, timer ticks and (mutated) REST answers;
- the private adapters' sequence and reconciliation machines (Kraken
  ``executions`` sequence numbers, Binance and KuCoin REST reconciliation).

The contract checked after every input:

- ``on_frame``/``on_rest``/``on_timer`` never raise; they return events;
- a frame the venue's decoder refuses is reported as a ``BadFrame`` and counted;
- a book the adapter exposes as valid is internally consistent (sorted unique
  levels, positive quantities, at most ``depth`` levels, cached checksum tokens
  in step), equals what a user rebuilds from the adapter's own BookSnapshot and
  BookUpdate events, and (Kraken, where the checksum verifies every level)
  equals the venue's book and is not crossed;
- afterwards the session is not wedged: answering what the adapter asks for
  (acks, snapshots, reconnects), the next valid update is delivered on a valid
  book; after a reconnect the book equals the venue's (the snapshot is
  authoritative, design.md §1.2).

A well-formed sequence venue frame whose final id is pushed far ahead (``u``
or ``sequenceEnd`` of 10**18) is applied (the live rule allows it), and later
real updates then lie "inside" the book: after ``max_stale_updates`` (100) of
them in a row the book is declared wrong, a Gap and a resync
(``test_poisoned_sequence_*``). The fuzz runs a dozen updates in session, fewer
than that bound, so it tells such runs apart (the adapter's book sequence is
ahead of the venue's) and requires them to heal by reconnect.
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from fuzz_kit import blobs, dumps, json_values, mutated
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from gapless.book import Book
from gapless.errors import ConfigError, DecodeError
from gapless.events import BadFrame, BookSnapshot, BookUpdate, Event, Gap, OrderUpdate
from gapless.secrets import Credentials, Secret
from gapless.sim import binance_wire as bw
from gapless.sim import kucoin_wire as kw
from gapless.sim import wire as kr
from gapless.sim.checksum import checksum_scaled
from gapless.sim.market import PairSpec
from gapless.sim.numbers import fmt_fixed, rfc3339_us
from gapless.venues import binance, kraken, kucoin
from gapless.venues.base import Now, Phase, RestCall, RestResult, Step, StreamSpec
from gapless.venues.binance import private_protocol as bpp
from gapless.venues.binance import protocol as bp
from gapless.venues.binance.adapter import BinanceAdapter, BinanceOptions
from gapless.venues.binance.private import BinancePrivateAdapter, BinancePrivateOptions
from gapless.venues.binance.sync import DepthSync, TradeIdCheck
from gapless.venues.kraken import private_protocol as kpp
from gapless.venues.kraken import protocol as kp
from gapless.venues.kraken.adapter import KrakenAdapter, KrakenOptions
from gapless.venues.kraken.private import KrakenPrivateAdapter
from gapless.venues.kucoin import private_protocol as cpp
from gapless.venues.kucoin import protocol as cp
from gapless.venues.kucoin.adapter import KucoinAdapter, KucoinOptions
from gapless.venues.kucoin.private import KucoinPrivateAdapter, KucoinPrivateOptions
from gapless.venues.kucoin.sync import L2Sync, MatchCheck
from gapless.venues.seqsync import DEFAULT_MAX_STALE_RUN, SequenceCheck, SyncState

_SCALE = int(os.environ.get("GAPLESS_FUZZ_SCALE", "1"))
WALL0 = 1_700_000_000_000_000_000


def budget(n: int) -> settings:
    """``n`` examples times ``GAPLESS_FUZZ_SCALE``; derandomized unless scaled up."""
    return settings(
        max_examples=n * _SCALE,
        deadline=None,
        derandomize=_SCALE == 1,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


# ------------------------------------------------------------------ book invariants


def check_book(book: Book) -> None:
    """Internal consistency of a book (whatever its ``valid`` flag)."""
    for side, sign in ((book._bids, -1), (book._asks, 1)):
        keys = side.keys
        assert all(a < b for a, b in itertools.pairwise(keys)), "levels not sorted/unique"
        assert len(keys) == len(side.levels), "sorted keys and level map disagree"
        assert all(sign * k in side.levels for k in keys), "a sorted key has no level"
        assert all(q > 0 for q in side.levels.values()), "a level with quantity <= 0"
        assert all(p >= 0 for p in side.levels), "a negative price"
        assert len(keys) <= book.depth, "more levels than the depth"
        if side.tokens is not None:
            want = [f"{p}{q}" for p, q in side.top(len(keys))]
            assert side.tokens == want, "cached checksum tokens out of step"


Side = dict[Decimal, Decimal]


class Consumer:
    """What a user holds who applies one stream's BookSnapshot/BookUpdate events."""

    def __init__(self, stream: str, depth: int | None) -> None:
        self.stream = stream
        self.depth = depth
        self.bids: Side | None = None
        self.asks: Side | None = None

    def feed(self, events: Iterable[Event]) -> None:
        for e in events:
            if getattr(e, "stream", None) != self.stream:
                continue
            if isinstance(e, BookSnapshot):
                self.bids = {lv.price: lv.qty for lv in e.bids}
                self.asks = {lv.price: lv.qty for lv in e.asks}
            elif isinstance(e, BookUpdate):
                assert self.bids is not None
                assert self.asks is not None, "an update before any snapshot"
                for book, side in ((self.bids, e.bids), (self.asks, e.asks)):
                    for lv in side:
                        if lv.qty:
                            book[lv.price] = lv.qty
                        else:
                            book.pop(lv.price, None)
                if self.depth is not None:
                    self.bids = dict(sorted(self.bids.items(), reverse=True)[: self.depth])
                    self.asks = dict(sorted(self.asks.items())[: self.depth])

    def matches(self, book: Book) -> bool:
        if self.bids is None or self.asks is None:
            return False
        return self.bids == {lv.price: lv.qty for lv in book.bids()} and self.asks == {
            lv.price: lv.qty for lv in book.asks()
        }


# ------------------------------------------------------------------ adapter harness


class Harness:
    """A public adapter against a model venue; subclasses speak one venue.

    ``feed`` and ``serve`` never let an exception through unnoticed: the
    adapter's answers (sends, REST calls, reconnects) are answered as the venue
    would, through a work queue; during the hostile phase ``rest_mangler`` may
    replace a REST body by a mutated one."""

    symbol: str
    stream: str
    depth: int | None
    checksummed = False
    decode: Callable[[str | bytes], object]

    def __init__(self) -> None:
        self.t = 0.0
        self.events: list[Event] = []
        self.consumer = Consumer(self.stream, self.depth)
        self.rest_mangler: Callable[[bytes], tuple[int, bytes]] | None = None
        self.reconnects = 0

    # -- venue side (subclasses)
    def adapter_book(self) -> Book | None:
        raise NotImplementedError

    def adapter_seq(self) -> int | None:
        return None

    @property
    def bad_frames(self) -> int:
        raise NotImplementedError

    def connect(self) -> Step:
        raise NotImplementedError

    def disconnect(self) -> Step:
        raise NotImplementedError

    def on_send(self, text: str) -> list[str]:
        """Frames the venue answers ``text`` with."""
        raise NotImplementedError

    def on_call(self, call: RestCall) -> bytes | None:
        """The venue's answer to a REST call (None: not ours)."""
        raise NotImplementedError

    def valid_update(self) -> str:
        """The next update of the model venue (advances it)."""
        raise NotImplementedError

    def templates(self) -> list[str]:
        """Real-shaped frames of the current state (not applied to the model)."""
        raise NotImplementedError

    def truth(self) -> tuple[Side, Side]:
        raise NotImplementedError

    def model_seq(self) -> int | None:
        return None

    def poison_outlives_reconnect(self) -> bool:
        """A delivered id above the venue's that no snapshot can get past (fixed: Binance
        refused every later snapshot as older than it)."""
        return False

    # -- plumbing
    def now(self) -> Now:
        return Now(self.t, WALL0 + round(self.t * 1e9))

    def absorb(self, step: Step) -> None:
        for e in step.events:
            assert isinstance(e, Event), e
        self.events.extend(step.events)
        self.consumer.feed(step.events)

    def serve(self, step: Step) -> None:
        todo = [step]
        rounds = 0
        while todo:
            rounds += 1
            assert rounds < 500, "the adapter and the venue talk forever"
            s = todo.pop(0)
            self.absorb(s)
            if s.reconnect:
                self.reconnects += 1
                self.absorb(self.disconnect())
                self.t += 1.0
                todo.append(self.connect())
                continue
            for text in s.sends:
                for answer in self.on_send(text):
                    todo.append(self.adapter.on_frame(answer, self.now()))
            for call in s.rest:
                body = self.on_call(call)
                if body is None:
                    continue
                status = 200
                if self.rest_mangler is not None:
                    status, body = self.rest_mangler(body)
                todo.append(self.adapter.on_rest(RestResult(call.key, status, body), self.now()))

    adapter: Any

    def up(self) -> None:
        self.serve(self.connect())
        self.serve(self.adapter.on_frame(self.valid_update(), self.now()))
        self.tick(1.0)
        assert self.live(), "bring-up failed"

    def tick(self, dt: float) -> None:
        self.t += dt
        self.serve(self.adapter.on_timer(self.now()))

    def feed(self, frame: str | bytes) -> Step:
        """Feed one frame; check the BadFrame rule and the book invariants."""
        before = self.bad_frames
        step: Step = self.adapter.on_frame(frame, self.now())
        try:
            self.decode(frame)
            refused = False
        except DecodeError:
            refused = True
        if refused:
            assert any(isinstance(e, BadFrame) for e in step.events), "refused, not reported"
            assert self.bad_frames > before, "refused, not counted"
        self.serve(step)
        self.check()
        return step

    def live(self) -> bool:
        b = self.adapter_book()
        return b is not None and b.valid

    def check(self) -> None:
        b = self.adapter_book()
        if b is None:
            return
        check_book(b)
        if not b.valid:
            return
        assert self.consumer.matches(b), "the book differs from what its events rebuild"
        if self.checksummed:
            # every level is verified by the venue's CRC32: the book is the venue's
            assert not b.crossed(), "a verified book is crossed"
            sides = self.as_sides(b)
            if sides != self.truth():
                assert self.adopt(sides), "a verified book differs from the venue's"

    def adopt(self, sides: tuple[Side, Side]) -> bool:
        """A mutated template that still means the venue's next update (a dropped empty
        side, a changed timestamp) was applied: the venue moved on. True if ``sides``
        is the book that update leads to (the model adopts it)."""
        return False

    @staticmethod
    def as_sides(b: Book) -> tuple[Side, Side]:
        return {lv.price: lv.qty for lv in b.bids()}, {lv.price: lv.qty for lv in b.asks()}

    def poisoned(self) -> bool:
        """The adapter's book sequence is ahead of the venue's (see the module docstring)."""
        seq, truth = self.adapter_seq(), self.model_seq()
        return seq is not None and truth is not None and seq > truth

    def heal_in_session(self, rounds: int = 12) -> bool:
        """Answer what the adapter asks, tick, feed valid updates: True once a valid
        update is delivered on a valid book."""
        for _ in range(rounds):
            self.tick(7.0)
            step = self.feed(self.valid_update())
            delivered = any(
                isinstance(e, BookUpdate | BookSnapshot) and e.stream == self.stream
                for e in step.events
            )
            if delivered and self.live():
                return True
        return False

    def heal_by_reconnect(self) -> None:
        self.absorb(self.disconnect())
        assert not self.live(), "a book stays valid across a disconnect"
        self.t += 1.0
        self.serve(self.connect())
        for _ in range(6):
            step = self.feed(self.valid_update())
            self.tick(7.0)
            if self.live() and any(isinstance(e, BookUpdate | BookSnapshot) for e in step.events):
                break
        assert self.live(), "no valid book after a reconnect"
        b = self.adapter_book()
        assert b is not None
        assert self.as_sides(b) == self.truth(), "the book after a reconnect is not the venue's"


# ------------------------------------------------------------------ Kraken


class KrakenH(Harness):
    symbol = "BTC/USD"
    stream = "kraken:book:BTC/USD:10"
    depth = 10
    checksummed = True
    decode = staticmethod(kp.decode)
    PP, QP = 1, 8

    def __init__(self) -> None:
        super().__init__()
        self.adapter = KrakenAdapter(
            [kraken.book(self.symbol, 10), kraken.trades(self.symbol)],
            KrakenOptions(ping_interval_s=1e9, book_stale_after_s=None),
        )
        self.bids = {450000 - i: (i + 1) * 10**8 for i in range(12)}
        self.asks = {450001 + i: (i + 2) * 10**8 for i in range(12)}
        self._truncate()
        self.ts_us = 1_696_613_755_000_000
        self.trade_id = 100
        self.step_no = 0
        self._next: tuple[dict[int, int], dict[int, int], int] | None = None

    @property
    def bad_frames(self) -> int:
        return int(self.adapter.bad_frames)

    def adapter_book(self) -> Book | None:
        b: Book | None = self.adapter.book(self.symbol)
        return b

    def connect(self) -> Step:
        step: Step = self.adapter.on_connected(f"c{self.reconnects}", self.now())
        self.absorb(self.adapter.on_frame(kr.status_message(1, "online"), self.now()))
        return step

    def disconnect(self) -> Step:
        step: Step = self.adapter.on_disconnected("connection lost", self.now())
        return step

    def _truncate(self) -> None:
        self.bids = dict(sorted(self.bids.items(), reverse=True)[: self.depth])
        self.asks = dict(sorted(self.asks.items())[: self.depth])

    def _ts(self) -> int:
        self.ts_us += 1000
        return self.ts_us

    def checksum(self) -> int:
        return checksum_scaled(sorted(self.asks.items()), sorted(self.bids.items(), reverse=True))

    def snapshot(self) -> str:
        return kr.book_message(
            "snapshot",
            json.dumps(self.symbol),
            sorted(self.bids.items(), reverse=True),
            sorted(self.asks.items()),
            self.checksum(),
            self._ts(),
            self.PP,
            self.QP,
        )

    def _ack(self, channel: str, symbol: str | None, req_id: Any, method: str) -> str:
        result: dict[str, Any] = {"channel": channel}
        if symbol is not None:
            result["symbol"] = symbol
        ts = rfc3339_us(self._ts())
        return json.dumps(
            {
                "method": method,
                "result": result,
                "success": True,
                "time_in": ts,
                "time_out": ts,
                "req_id": req_id,
            }
        )

    def on_send(self, text: str) -> list[str]:
        msg = json.loads(text)
        method, params, rid = msg.get("method"), msg.get("params", {}), msg.get("req_id")
        if method == "ping":
            ts = rfc3339_us(self._ts())
            return [json.dumps({"method": "pong", "req_id": rid, "time_in": ts, "time_out": ts})]
        channel = params.get("channel")
        if method == "unsubscribe":
            return [self._ack(channel, s, rid, method) for s in params.get("symbol", [])]
        if method != "subscribe":
            return []
        if channel == "instrument":
            data = kr.instrument_data([PairSpec(self.symbol, "45000.0", self.PP, self.QP)])
            inst = kr.dumps({"channel": "instrument", "type": "snapshot", "data": data})
            return [self._ack(channel, None, rid, method), inst]
        out = []
        for sym in params.get("symbol", []):
            out.append(self._ack(channel, sym, rid, method))
            if channel == "book" and sym == self.symbol:
                out.append(self.snapshot())
        return out

    def on_call(self, call: RestCall) -> bytes | None:
        return None

    def _change(self) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        self.step_no += 1
        n = self.step_no
        bid = n % 2 == 0
        side = self.bids if bid else self.asks
        price = (450000 - n % 14) if bid else (450001 + n % 14)
        if price in side and len(side) > 3 and n % 3 == 0:
            side.pop(price)
            change = (price, 0)
        else:
            change = (price, (n % 7 + 1) * 10**7)
            side[price] = change[1]
        self._truncate()
        return ([change], []) if bid else ([], [change])

    def valid_update(self) -> str:
        bids, asks = self._change()
        return kr.book_message(
            "update",
            json.dumps(self.symbol),
            bids,
            asks,
            self.checksum(),
            self._ts(),
            self.PP,
            self.QP,
        )

    def trade(self, trade_id: int) -> str:
        ts = rfc3339_us(self._ts())
        return kr.trade_message(
            "update",
            [
                f'{{"symbol":"{self.symbol}","side":"buy","price":45000.1,"qty":0.5,'
                f'"ord_type":"limit","trade_id":{trade_id},"timestamp":"{ts}"}}'
            ],
        )

    def adopt(self, sides: tuple[Side, Side]) -> bool:
        if self._next is None:
            return False
        saved = (self.bids, self.asks, self.step_no)
        self.bids, self.asks, self.step_no = self._next
        if self.truth() == sides:
            self._next = None
            return True
        self.bids, self.asks, self.step_no = saved
        return False

    def templates(self) -> list[str]:
        saved = (dict(self.bids), dict(self.asks), self.step_no)
        update = self.valid_update()
        self._next = (self.bids, self.asks, self.step_no)
        self.bids, self.asks, self.step_no = saved
        return [
            update,
            self.snapshot(),
            self.trade(self.trade_id + 1),
            kr.status_message(7, "maintenance"),
            self._ack("book", self.symbol, 3, "subscribe"),
            '{"error":"Currency pair not supported BTC/USD","method":"subscribe","req_id":3,'
            '"success":false,"symbol":"BTC/USD"}',
            '{"Error":"Exceeded msg rate"}',
            kr.HEARTBEAT,
        ]

    def truth(self) -> tuple[Side, Side]:
        def dec(side: dict[int, int]) -> Side:
            return {
                Decimal(fmt_fixed(p, self.PP)): Decimal(fmt_fixed(q, self.QP))
                for p, q in side.items()
            }

        return dec(self.bids), dec(self.asks)


# ------------------------------------------------------------------ Binance


class BinanceH(Harness):
    symbol = "BNBBTC"
    stream = "binance:book:BNBBTC"
    depth = None
    decode = staticmethod(bp.decode)
    P = 8

    def __init__(self) -> None:
        super().__init__()
        self.adapter = BinanceAdapter(
            [binance.book(self.symbol), binance.trades(self.symbol)], BinanceOptions()
        )
        self.seq = 1000
        self.bids = {4000000 - i: (i + 1) * 10**8 for i in range(8)}
        self.asks = {4000002 + i: (i + 2) * 10**8 for i in range(8)}
        self.e_ms = 1_672_515_782_000
        self.trade_id = 500

    @property
    def bad_frames(self) -> int:
        return int(self.adapter.bad_frames)

    def adapter_book(self) -> Book | None:
        b: Book | None = self.adapter.book(self.symbol)
        return b

    def adapter_seq(self) -> int | None:
        stream = self.adapter._streams.get(self.stream)
        seq: int | None = None if stream is None or stream.sync is None else stream.sync.seq
        return seq

    def model_seq(self) -> int | None:
        return self.seq

    def poison_outlives_reconnect(self) -> bool:
        st = self.adapter._streams[self.stream]
        return st.last_seq is not None and st.last_seq > self.seq

    def connect(self) -> Step:
        step: Step = self.adapter.on_connected(f"c{self.reconnects}", self.now())
        return step

    def disconnect(self) -> Step:
        step: Step = self.adapter.on_disconnected("connection lost", self.now())
        return step

    def on_send(self, text: str) -> list[str]:
        msg = json.loads(text)
        return [bw.result_frame(None, msg.get("id"))]

    def snapshot_body(self) -> bytes:
        return bw.snapshot_body(
            self.seq,
            sorted(self.bids.items(), reverse=True),
            sorted(self.asks.items()),
            self.P,
            self.P,
        ).encode()

    def on_call(self, call: RestCall) -> bytes | None:
        if call.key == f"depth:{self.symbol}":
            return self.snapshot_body()
        return None

    def _depth(self, first: int, last: int, bids: Any, asks: Any) -> str:
        self.e_ms += 100
        return bw.combined(
            f"{self.symbol.lower()}@depth@100ms",
            bw.depth_event(self.e_ms, self.symbol, first, last, bids, asks, self.P, self.P),
        )

    def valid_update(self) -> str:
        n = self.seq
        span = 1 + n % 3
        bid = n % 2 == 0
        side = self.bids if bid else self.asks
        price = (4000000 - n % 10) if bid else (4000002 + n % 10)
        if price in side and len(side) > 3 and n % 3 == 0:
            side.pop(price)
            change = (price, 0)
        else:
            change = (price, (n % 5 + 1) * 10**7)
            side[price] = change[1]
        first, self.seq = n + 1, n + span
        return self._depth(first, self.seq, [change] if bid else [], [] if bid else [change])

    def templates(self) -> list[str]:
        saved = (dict(self.bids), dict(self.asks), self.seq, self.e_ms)
        update = self.valid_update()
        self.bids, self.asks, self.seq, self.e_ms = saved
        return [
            update,
            bw.combined(
                "bnbbtc@trade",
                bw.trade_event(self.e_ms, self.symbol, self.trade_id, 1, 2, self.e_ms, True, 8, 8),
            ),
            bw.server_shutdown_event(self.e_ms, True),
            bw.result_frame(None, 1),
            bw.error_frame(2, "Invalid request: invalid stream", 1),
            self.snapshot_body().decode(),
        ]

    def truth(self) -> tuple[Side, Side]:
        def dec(side: dict[int, int]) -> Side:
            return {
                Decimal(fmt_fixed(p, self.P)): Decimal(fmt_fixed(q, self.P))
                for p, q in side.items()
            }

        return dec(self.bids), dec(self.asks)


# ------------------------------------------------------------------ KuCoin


def _bullet(endpoint: str = "wss://a.example/") -> bytes:
    return kw.dumps(
        kw.rest_ok(
            {
                "token": "2neAiuYvAU61ZDXANAGAsiL4",
                "instanceServers": [
                    {
                        "endpoint": endpoint,
                        "encrypt": True,
                        "protocol": "websocket",
                        "pingInterval": 18000,
                        "pingTimeout": 10000,
                    }
                ],
            }
        )
    ).encode()


class KucoinH(Harness):
    symbol = "BTC-USDT"
    stream = "kucoin:book:BTC-USDT"
    depth = None
    decode = staticmethod(cp.decode)
    PP, QP = 1, 8

    def __init__(self) -> None:
        super().__init__()
        self.adapter = KucoinAdapter(
            [kucoin.book(self.symbol), kucoin.trades(self.symbol)], KucoinOptions()
        )
        self.seq = 100
        self.bids = {189000 - i: (i + 1) * 10**8 for i in range(8)}
        self.asks = {189002 + i: (i + 2) * 10**8 for i in range(8)}
        self.ms = 1_700_000_000_000
        self.trade_seq = 10_000

    @property
    def bad_frames(self) -> int:
        return int(self.adapter.bad_frames)

    def adapter_book(self) -> Book | None:
        b: Book | None = self.adapter.book(self.symbol)
        return b

    def adapter_seq(self) -> int | None:
        seq: int | None = self.adapter.book_seq(self.symbol)
        return seq

    def model_seq(self) -> int | None:
        return self.seq

    def connect(self) -> Step:
        call = self.adapter.prepare_dial(self.now())
        assert call is not None
        why = self.adapter.on_dial_rest(RestResult(call.key, 200, _bullet()), self.now())
        assert why is None, why
        step: Step = self.adapter.on_connected(f"c{self.reconnects}", self.now())
        self.absorb(step)
        cid = parse_qs(urlsplit(self.adapter.url).query)["connectId"][0]
        welcome: Step = self.adapter.on_frame(
            json.dumps({"id": cid, "type": "welcome"}), self.now()
        )
        welcome.rest.extend(step.rest)
        return welcome

    def disconnect(self) -> Step:
        step: Step = self.adapter.on_disconnected("connection closed (code 1000)", self.now())
        return step

    def on_send(self, text: str) -> list[str]:
        msg = json.loads(text)
        kind, rid = msg.get("type"), msg.get("id")
        if kind in ("subscribe", "unsubscribe"):
            return [json.dumps({"id": rid, "type": "ack"})]
        if kind == "ping":
            return [json.dumps({"id": rid, "type": "pong"})]
        return []

    def snapshot_body(self) -> bytes:
        def lv(side: Iterable[tuple[int, int]]) -> list[list[str]]:
            return [[kw.fmt_plain(p, self.PP), kw.fmt_plain(q, self.QP)] for p, q in side]

        data = {
            "sequence": str(self.seq),
            "time": self.ms,
            "bids": lv(sorted(self.bids.items(), reverse=True)),
            "asks": lv(sorted(self.asks.items())),
        }
        return kw.dumps(kw.rest_ok(data)).encode()

    def on_call(self, call: RestCall) -> bytes | None:
        if call.key == f"l2:{self.symbol}":
            return self.snapshot_body()
        return None

    def valid_update(self) -> str:
        n = self.seq
        bid = n % 2 == 0
        side = self.bids if bid else self.asks
        price = (189000 - n % 10) if bid else (189002 + n % 10)
        if price in side and len(side) > 3 and n % 3 == 0:
            side.pop(price)
            size = 0
        else:
            size = (n % 5 + 1) * 10**7
            side[price] = size
        self.seq = n + 1
        self.ms += 100
        entry = [(price, size, self.seq)]
        return kw.l2update(
            self.symbol,
            [] if bid else entry,
            entry if bid else [],
            self.seq,
            self.seq,
            self.ms,
            self.PP,
            self.QP,
        )

    def templates(self) -> list[str]:
        saved = (dict(self.bids), dict(self.asks), self.seq, self.ms)
        update = self.valid_update()
        self.bids, self.asks, self.seq, self.ms = saved
        return [
            update,
            kw.match(
                self.symbol,
                maker_order_id="m1",
                taker_order_id="t1",
                price="18900.1",
                size="0.5",
                side="buy",
                sequence=self.trade_seq,
                trade_id=str(self.trade_seq),
                time_ns=self.ms * 1_000_000,
            ),
            kw.error("1", 404, "topic /market/level2:BTC-USDT is not found"),
            json.dumps({"id": "1", "type": "ack"}),
        ]

    def truth(self) -> tuple[Side, Side]:
        def dec(side: dict[int, int]) -> Side:
            return {
                Decimal(kw.fmt_plain(p, self.PP)): Decimal(kw.fmt_plain(q, self.QP))
                for p, q in side.items()
            }

        return dec(self.bids), dec(self.asks)


# ------------------------------------------------------------------ the adapter fuzz

HARNESSES: list[type[Harness]] = [KrakenH, BinanceH, KucoinH]


def _mangle(data: st.DataObject, templates: list[str]) -> Callable[[bytes], tuple[int, bytes]]:
    def mangler(body: bytes) -> tuple[int, bytes]:
        how = data.draw(st.sampled_from(["ok", "ok", "mutated", "blob", "status"]), label="rest")
        if how == "ok":
            return 200, body
        if how == "status":
            return data.draw(st.sampled_from([400, 429, 418, 500, 503])), body
        if how == "blob":
            blob = data.draw(blobs)
            return 200, blob if isinstance(blob, bytes) else blob.encode("utf-8", "surrogatepass")
        frame = data.draw(mutated([body.decode(), *templates]), label="rest body")
        return 200, frame if isinstance(frame, bytes) else frame.encode("utf-8", "surrogatepass")

    return mangler


@pytest.mark.parametrize("harness", HARNESSES, ids=lambda h: h.__name__)
@budget(120)
@given(data=st.data())
def test_adapter_survives_hostile_frames_and_heals(
    harness: type[Harness], data: st.DataObject
) -> None:
    h = harness()
    h.up()
    h.rest_mangler = _mangle(data, h.templates())
    for _ in range(data.draw(st.integers(1, 6), label="inputs")):
        kind = data.draw(
            st.sampled_from(["mutated", "mutated", "mutated", "json", "blob", "valid", "tick"]),
            label="kind",
        )
        if kind == "tick":
            h.tick(data.draw(st.sampled_from([0.5, 5.0, 61.0])))
            h.check()
            continue
        frame: str | bytes
        if kind == "mutated":
            frame = data.draw(mutated(h.templates()), label="frame")
        elif kind == "json":
            frame = dumps(data.draw(json_values, label="json"))
        elif kind == "blob":
            frame = data.draw(blobs, label="blob")
        else:
            frame = h.valid_update()
        h.feed(frame)
    h.rest_mangler = None
    event(f"bad frames reported: {min(h.bad_frames, 3)}")
    event(f"book valid after the hostile inputs: {h.live()}")
    event(f"reconnects asked: {min(h.reconnects, 2)}")
    if not h.heal_in_session():
        # a poisoned sequence needs max_stale_updates updates (test_poisoned_sequence_*),
        # more than heal_in_session feeds: anything else is a wedge
        assert h.poisoned(), "the adapter is wedged: no valid update delivered"
        event("sequence poisoned: no update delivered in session")
    h.heal_by_reconnect()


@pytest.mark.parametrize("side", ["", {}])
def test_kraken_hot_path_refuses_what_the_decoder_refuses(side: object) -> None:
    """Regression: the live-update hot path iterated ``"asks": ""`` (or ``{}``) as no
    levels and delivered the update, while the decoder refuses the frame."""
    h = KrakenH()
    h.up()
    frame = json.loads(h.templates()[0])
    key = "asks" if frame["data"][0]["asks"] == [] else "bids"
    frame["data"][0][key] = side
    step = h.feed(json.dumps(frame))  # checks: refused -> BadFrame, counted
    assert not any(isinstance(e, BookUpdate) for e in step.events)
    assert h.heal_in_session()


def _poison(h: BinanceH | KucoinH) -> str:
    """A well-formed update that continues the book and ends at sequence 10**18."""
    if isinstance(h, BinanceH):
        return h._depth(h.seq + 1, 10**18, [], [])
    entry = [(189000, 10**8, h.seq + 1)]
    return kw.l2update(h.symbol, [], entry, h.seq + 1, 10**18, h.ms, h.PP, h.QP)


def _stream_events(h: BinanceH | KucoinH, since: int) -> list[Event]:
    return [e for e in h.events[since:] if getattr(e, "stream", None) == h.stream]


@pytest.mark.parametrize("harness", [BinanceH, KucoinH], ids=lambda h: h.__name__)
def test_poisoned_sequence_is_declared_and_heals_in_session(
    harness: type[BinanceH | KucoinH],
) -> None:
    """A well-formed update whose final id is far ahead (10**18) is applied, as
    the live rule allows; the venue's real updates then all lie "inside" the
    book. After ``max_stale_updates`` of them in a row the book is declared
    wrong: a sequence Gap by time (no ``first_seq``: the ids are the bad ones),
    a resync, and the venue's book again, in the same session."""
    h = harness()
    h.up()
    h.feed(_poison(h))
    mark = len(h.events)
    for _ in range(DEFAULT_MAX_STALE_RUN):
        h.feed(h.valid_update())
    assert not _stream_events(h, mark), "within the bound the updates are dropped as repeats"
    h.feed(h.valid_update())
    for _ in range(6):
        if any(isinstance(e, BookSnapshot) for e in _stream_events(h, mark)):
            break
        h.tick(7.0)
        h.feed(h.valid_update())
    events = _stream_events(h, mark)
    gaps = [e for e in events if isinstance(e, Gap)]
    assert len(gaps) == 1, events
    gap = gaps[0]
    assert gap.cause == "sequence_gap"
    assert gap.first_seq is None
    assert "went back" in (gap.detail or "")
    assert gap.start_ts_ns is not None
    snaps = [i for i, e in enumerate(events) if isinstance(e, BookSnapshot)]
    assert snaps, "no new snapshot"
    assert events.index(gap) < snaps[0], "the Gap precedes the new snapshot"
    assert h.live()
    b = h.adapter_book()
    assert b is not None
    assert h.as_sides(b) == h.truth(), "not the venue's book"
    assert h.heal_in_session()


@pytest.mark.parametrize("harness", [BinanceH, KucoinH], ids=lambda h: h.__name__)
def test_poisoned_sequence_heals_by_reconnect(harness: type[BinanceH | KucoinH]) -> None:
    """The poisoned id was delivered, then the connection went: the new
    snapshots are all older than it. Binance refused them for ever (endless
    weight-50 refetches); now, after ``MAX_SNAPSHOTS_BEHIND`` refusals, the id is
    judged bad and the snapshot used, with the gap declared by time."""
    h = harness()
    h.up()
    h.feed(_poison(h))
    h.heal_by_reconnect()
    assert not h.poison_outlives_reconnect()


@pytest.mark.parametrize("harness", HARNESSES, ids=lambda h: h.__name__)
def test_harness_templates_are_real_shaped(harness: type[Harness]) -> None:
    """The mutation seeds decode (else the fuzz would only exercise the first check)."""
    h = harness()
    h.up()
    for t in h.templates():
        h.decode(t)


# ------------------------------------------------------------------ the pure sync engines


def _binance_msgs(frames: Iterable[str | bytes]) -> list[bp.DepthUpdate]:
    out = []
    for f in frames:
        try:
            msg = bp.decode(f)
        except DecodeError:
            continue
        if isinstance(msg, bp.Combined):
            msg = msg.data
        if isinstance(msg, bp.DepthUpdate):
            out.append(msg)
    return out


@budget(150)
@given(data=st.data())
def test_depth_sync_machines_raise_only_decode_errors(data: st.DataObject) -> None:
    """DepthSync and L2Sync fed decoded (mutated) messages and snapshots: only
    DecodeError; a SYNCED machine has a valid, consistent book and a sequence that
    never goes back; reset + snapshot + the next update always syncs again."""
    venues: list[type[BinanceH] | type[KucoinH]] = [BinanceH, KucoinH]
    h = data.draw(st.sampled_from(venues))()
    sync: DepthSync | L2Sync = DepthSync(h.symbol) if isinstance(h, BinanceH) else L2Sync(h.symbol)
    last_seq: int | None = None
    for _ in range(data.draw(st.integers(1, 12))):
        kind = data.draw(st.sampled_from(["valid", "valid", "mutated", "snapshot", "bad-snap"]))
        try:
            if kind in ("valid", "mutated"):
                frame = h.valid_update() if kind == "valid" else data.draw(mutated(h.templates()))
                msg = h.decode(frame)  # a DecodeError never reaches the machine
                if isinstance(msg, bp.Combined):
                    msg = msg.data
                if isinstance(sync, DepthSync) and isinstance(msg, bp.DepthUpdate):
                    sync.on_event(msg)
                elif isinstance(sync, L2Sync) and isinstance(msg, cp.L2Update):
                    sync.on_update(msg)
            else:
                body: str | bytes = h.snapshot_body()
                if kind == "bad-snap":
                    body = data.draw(mutated([h.snapshot_body().decode()]))
                if isinstance(sync, DepthSync):
                    snap = bp.decode_depth_snapshot(body)
                    if isinstance(snap, bp.DepthSnapshot):
                        sync.on_depth_snapshot(snap)
                else:
                    l2 = cp.decode_l2_snapshot(body)
                    if isinstance(l2, cp.L2Snapshot):
                        sync.on_l2_snapshot(l2)
        except DecodeError:
            pass
        check_book(sync.book)
        synced = sync.state is SyncState.SYNCED
        assert sync.book.valid == synced
        if synced:
            assert sync.seq is not None
            if last_seq is not None:
                assert sync.seq >= last_seq, "a live book went back in sequence"
            last_seq = sync.seq
        else:
            last_seq = None
    # not wedged: a restart with a fresh snapshot and the next update is live again
    sync.reset()
    update = h.valid_update()
    msgs: list[Any] = (
        _binance_msgs([update]) if isinstance(sync, DepthSync) else [cp.decode(update)]
    )
    if isinstance(sync, DepthSync):
        sync.on_event(msgs[0])
        snap = bp.decode_depth_snapshot(h.snapshot_body())
        assert isinstance(snap, bp.DepthSnapshot)
        sync.on_depth_snapshot(snap)
    else:
        sync.on_update(msgs[0])
        l2 = cp.decode_l2_snapshot(h.snapshot_body())
        assert isinstance(l2, cp.L2Snapshot)
        sync.on_l2_snapshot(l2)
    assert sync.state is SyncState.SYNCED
    assert Harness.as_sides(sync.book) == h.truth()


@budget(200)
@given(ids=st.lists(st.integers(min_value=0, max_value=2**63 - 1), max_size=30))
def test_trade_id_checks_never_raise(ids: list[int]) -> None:
    checks: list[SequenceCheck] = [TradeIdCheck(), MatchCheck(), MatchCheck(contiguous=True)]
    for check in checks:
        last = None
        for i in ids:
            check.check(i)
            assert check.last is not None
            last = check.last if last is None else max(last, check.last)
            assert check.last == last, "the check's high-water mark went back"


# ------------------------------------------------------------------ private adapters

T0 = WALL0


def _now(t: float) -> Now:
    return Now(t, T0 + int(t * 1e9))


class PrivateH:
    """A private adapter with a model venue that answers its requests."""

    adapter: Any
    decode: Callable[[str | bytes], object]

    def __init__(self) -> None:
        self.t = 0.0
        self.rest_mangler: Callable[[bytes], tuple[int, bytes]] | None = None
        self.events: list[Event] = []
        self.next_order = 1

    def now(self) -> Now:
        return _now(self.t)

    def connect(self) -> Step:
        raise NotImplementedError

    def on_send(self, text: str) -> list[str]:
        raise NotImplementedError

    def on_call(self, call: RestCall) -> bytes:
        raise NotImplementedError

    def order_frame(self) -> str:
        raise NotImplementedError

    def templates(self) -> list[str]:
        raise NotImplementedError

    def serve(self, step: Step) -> None:
        todo = [step]
        n = 0
        while todo:
            n += 1
            assert n < 500, "the adapter and the venue talk forever"
            s = todo.pop(0)
            for e in s.events:
                assert isinstance(e, Event), e
            self.events.extend(s.events)
            if s.reconnect:
                todo.append(self.adapter.on_disconnected("closed", self.now()))
                self.t += 1.0
                todo.append(self.connect())
                continue
            for text in s.sends:
                for answer in self.on_send(text):
                    todo.append(self.adapter.on_frame(answer, self.now()))
            for call in s.rest:
                body, status = self.on_call(call), 200
                if self.rest_mangler is not None:
                    status, body = self.rest_mangler(body)
                todo.append(self.adapter.on_rest(RestResult(call.key, status, body), self.now()))

    def tick(self, dt: float) -> None:
        self.t += dt
        self.serve(self.adapter.on_timer(self.now()))

    def feed(self, frame: str | bytes) -> Step:
        before = self.adapter.bad_frames
        step: Step = self.adapter.on_frame(frame, self.now())
        try:
            self.decode(frame)
        except DecodeError:
            assert any(isinstance(e, BadFrame) for e in step.events), "refused, not reported"
            assert self.adapter.bad_frames > before, "refused, not counted"
        self.serve(step)
        return step

    def up(self) -> None:
        self.serve(self.connect())
        self.tick(1.0)
        assert self.adapter.phase is Phase.LIVE, "bring-up failed"

    def heal(self) -> None:
        for _ in range(12):
            self.tick(31.0)
            step = self.feed(self.order_frame())
            if self.adapter.phase is Phase.LIVE and any(
                isinstance(e, OrderUpdate) for e in step.events
            ):
                return
        raise AssertionError(f"wedged: phase {self.adapter.phase}, no order update delivered")


def _kr_ts(t: float) -> str:
    return kp.format_rfc3339_ns(T0 + int(t * 1e9))


class KrakenPrivateH(PrivateH):
    decode = staticmethod(kpp.decode)

    def __init__(self) -> None:
        super().__init__()
        self.adapter = KrakenPrivateAdapter(
            Credentials("kraken", Secret("apikey-123"), Secret("a2V5a2V5a2V5a2V5a2V5a2V5"))
        )
        self.adapter.add(StreamSpec("kraken", "executions", "*"))
        self.adapter.add(StreamSpec("kraken", "balances", "*"))
        self.seq = {"executions": 1, "balances": 1}

    def connect(self) -> Step:
        step: Step = self.adapter.on_connected("c1", self.now())
        return step

    def _order(self, oid: str) -> dict[str, Any]:
        return {
            "order_id": oid,
            "symbol": "BTC/USD",
            "side": "buy",
            "order_type": "limit",
            "order_qty": "1.5",
            "limit_price": "100.0",
            "order_status": "new",
            "cum_qty": "0",
            "timestamp": _kr_ts(self.t),
        }

    def _frame(self, channel: str, typ: str, data: list[Any]) -> str:
        if typ == "snapshot":
            self.seq[channel] = 1
        else:
            self.seq[channel] += 1
        return json.dumps(
            {"channel": channel, "type": typ, "data": data, "sequence": self.seq[channel]}
        )

    def on_send(self, text: str) -> list[str]:
        msg = json.loads(text)
        method, params, rid = msg.get("method"), msg.get("params", {}), msg.get("req_id")
        ts = _kr_ts(self.t)
        if method == "ping":
            return [json.dumps({"method": "pong", "req_id": rid, "time_in": ts, "time_out": ts})]
        if method == "cancel_all_orders_after":
            trig = _kr_ts(self.t + 60)
            result = {"currentTime": ts, "triggerTime": trig}
            return [
                json.dumps({"method": method, "req_id": rid, "success": True, "result": result})
            ]
        if method == "subscribe":
            ch = params.get("channel")
            ack = json.dumps(
                {"method": method, "req_id": rid, "success": True, "result": {"channel": ch},
                 "time_in": ts, "time_out": ts}
            )  # fmt: skip
            if ch == "executions":
                return [ack, self._frame(ch, "snapshot", [self._order("O1")])]
            return [ack, self._frame(ch, "snapshot", [{"asset": "USD", "balance": "1000.00"}])]
        return []

    def on_call(self, call: RestCall) -> bytes:
        if call.key == "token":
            result: dict[str, Any] = {"token": "tok-ABCDEF0123456789", "expires": 900}
        elif call.key.startswith("closed:"):
            result = {"closed": {}, "count": 0}
        else:
            result = {}
        return json.dumps({"error": [], "result": result}).encode()

    def order_frame(self) -> str:
        self.next_order += 1
        return self._frame("executions", "update", [self._order(f"N{self.next_order}")])

    def templates(self) -> list[str]:
        saved = dict(self.seq)
        frames = [
            self._frame("executions", "update", [self._order("O1")]),
            self._frame("balances", "update", [{"asset": "USD", "amount": "-1", "balance": "999",
                                                "ledger_id": "L", "timestamp": _kr_ts(self.t)}]),
            self._frame("executions", "snapshot", [self._order("O1")]),
            json.dumps({"method": "cancel_all_orders_after", "req_id": 1, "success": True,
                        "result": {"currentTime": _kr_ts(0), "triggerTime": _kr_ts(60)}}),
            kr.status_message(1, "maintenance"),
        ]  # fmt: skip
        self.seq = saved
        return frames


class BinancePrivateH(PrivateH):
    decode = staticmethod(bpp.decode)

    def __init__(self) -> None:
        super().__init__()
        self.adapter = BinancePrivateAdapter(
            Credentials("binance", Secret("testKey123"), Secret("testSecret456")),
            BinancePrivateOptions(rest_url="http://sim"),
        )
        self.adapter.add(StreamSpec("binance", "orders", "*"))
        self.adapter.add(StreamSpec("binance", "balances", "*"))
        self.sub = 0

    def connect(self) -> Step:
        step: Step = self.adapter.on_connected("c1", self.now())
        return step

    def on_send(self, text: str) -> list[str]:
        msg = json.loads(text)
        if msg.get("method", "").startswith("userDataStream.subscribe"):
            self.sub += 1
            result = {"subscriptionId": self.sub}
        else:
            result = {}
        return [json.dumps({"id": msg.get("id"), "status": 200, "result": result})]

    def _order(self, oid: int, status: str = "NEW") -> dict[str, Any]:
        return {
            "symbol": "BTCUSDT", "orderId": oid, "clientOrderId": f"c{oid}",
            "price": "60000.00000000", "origQty": "1.00000000", "executedQty": "0",
            "cummulativeQuoteQty": "0", "status": status, "timeInForce": "GTC",
            "type": "LIMIT", "side": "BUY", "time": 1_700_000_000_000,
            "updateTime": 1_700_000_000_000,
        }  # fmt: skip

    def on_call(self, call: RestCall) -> bytes:
        if call.url.endswith("/openOrders"):
            return json.dumps([self._order(1)]).encode()
        if call.url.endswith("/account"):
            acct = {"updateTime": 1, "balances": [{"asset": "USDT", "free": "9", "locked": "1"}]}
            return json.dumps(acct).encode()
        oid = int(dict(call.params).get("orderId", "1"))
        return json.dumps(self._order(oid, "CANCELED")).encode()

    def _report(self, oid: int) -> str:
        ms = 1_700_000_000_000 + int(self.t * 1000)
        ev = {
            "e": "executionReport", "E": ms, "s": "BTCUSDT", "c": f"c{oid}", "S": "BUY",
            "o": "LIMIT", "f": "GTC", "q": "1.00000000", "p": "60000.00000000", "x": "NEW",
            "X": "NEW", "r": "NONE", "i": oid, "l": "0", "z": "0", "L": "0", "n": "0",
            "N": None, "T": ms, "t": -1, "m": False, "Z": "0",
        }  # fmt: skip
        return json.dumps({"subscriptionId": self.sub, "event": ev})

    def order_frame(self) -> str:
        self.next_order += 1
        return self._report(self.next_order + 100)

    def templates(self) -> list[str]:
        bal = {"e": "balanceUpdate", "E": 1, "a": "USDT", "d": "-1.5", "T": 2}
        pos = {"e": "outboundAccountPosition", "E": 1, "u": 1,
               "B": [{"a": "USDT", "f": "8", "l": "1"}]}  # fmt: skip
        return [
            self._report(1),
            json.dumps({"subscriptionId": self.sub, "event": bal}),
            json.dumps({"subscriptionId": self.sub, "event": pos}),
            json.dumps({"subscriptionId": self.sub, "event": {"e": "eventStreamTerminated",
                                                              "E": 1}}),
            json.dumps({"id": 1, "status": 200, "result": {"subscriptionId": self.sub}}),
        ]  # fmt: skip


class KucoinPrivateH(PrivateH):
    decode = staticmethod(cpp.decode)

    def __init__(self) -> None:
        super().__init__()
        self.adapter = KucoinPrivateAdapter(
            Credentials(
                "kucoin",
                Secret("key-1"),
                Secret("f03a5284-5c39-4aaa-9b20-dea10bdcf8e3"),
                Secret("phrase"),
            ),
            KucoinPrivateOptions(rest_url="http://sim"),
        )
        self.adapter.add(StreamSpec("kucoin", "orders", "*"))
        self.adapter.add(StreamSpec("kucoin", "balances", "*"))

    def connect(self) -> Step:
        call = self.adapter.prepare_dial(self.now())
        assert call is not None
        why = self.adapter.on_dial_rest(
            RestResult(call.key, 200, _bullet("ws://127.0.0.1:9/")), self.now()
        )
        assert why is None, why
        first: Step = self.adapter.on_connected("c1", self.now())
        cid = parse_qs(urlsplit(self.adapter.url).query)["connectId"][0]
        step: Step = self.adapter.on_frame(json.dumps({"id": cid, "type": "welcome"}), self.now())
        first.extend(step)
        return first

    def on_send(self, text: str) -> list[str]:
        msg = json.loads(text)
        kind, rid = msg.get("type"), msg.get("id")
        if kind in ("subscribe", "unsubscribe"):
            return [json.dumps({"id": rid, "type": "ack"})]
        if kind == "ping":
            return [json.dumps({"id": rid, "type": "pong"})]
        return []

    def on_call(self, call: RestCall) -> bytes:
        if call.key == "accounts":
            data: Any = [{"currency": "USDT", "type": "trade", "balance": "1000",
                          "available": "1000", "holds": "0"}]  # fmt: skip
        elif call.key.startswith("orders:"):
            data = {"currentPage": 1, "pageSize": 50, "totalPage": 1, "items": []}
        else:
            oid = call.key.partition(":")[2]
            data = {"id": oid, "symbol": "BTC-USDT", "type": "limit", "side": "buy",
                    "price": "100", "size": "1", "dealSize": "0", "isActive": False,
                    "cancelExist": True}  # fmt: skip
        return json.dumps({"code": "200000", "data": data}).encode()

    def _change(self, oid: str) -> str:
        data = {
            "orderId": oid, "clientOid": f"c-{oid}", "symbol": "BTC-USDT", "side": "buy",
            "orderType": "limit", "type": "open", "status": "open", "size": "1",
            "filledSize": "0", "remainSize": "1", "price": "100",
            "ts": T0 + int(self.t * 1e9),
        }  # fmt: skip
        return json.dumps({"type": "message", "topic": cpp.TOPIC_ORDERS, "subject": "orderChange",
                           "channelType": "private", "userId": "u1", "data": data})  # fmt: skip

    def order_frame(self) -> str:
        self.next_order += 1
        return self._change(f"z{self.next_order}")

    def templates(self) -> list[str]:
        bal = {
            "accountId": "a1",
            "currency": "USDT",
            "total": "1000",
            "available": "900",
            "hold": "100",
            "availableChange": "-100",
            "holdChange": "100",
            "relationEvent": "trade.hold",
            "relationEventId": "o1",
            "time": "1700000000000",
        }
        return [
            self._change("z1"),
            json.dumps({"type": "message", "topic": cpp.TOPIC_BALANCE,
                        "subject": "account.balance", "channelType": "private", "data": bal}),
            json.dumps({"id": "1", "type": "ack"}),
            kw.error(None, 401, "token is expired"),
        ]  # fmt: skip


PRIVATE: list[type[PrivateH]] = [KrakenPrivateH, BinancePrivateH, KucoinPrivateH]


@pytest.mark.parametrize("harness", PRIVATE, ids=lambda h: h.__name__)
def test_private_templates_are_real_shaped(harness: type[PrivateH]) -> None:
    h = harness()
    h.up()
    for t in [*h.templates(), h.order_frame()]:
        h.decode(t)


def test_private_adapters_survive_huge_exponents() -> None:
    """Regression: ``"1E+999999999"`` passed parse_decimal, then the adapters' Decimal
    arithmetic (Binance free + locked, Kraken fee sums) raised decimal.Overflow out of
    on_frame. Now a DecodeError: a BadFrame, and the session goes on."""
    b = BinancePrivateH()
    b.up()
    huge = {"a": "USDT", "f": "1E+999999999", "l": "1E+999999999"}
    ev = {"e": "outboundAccountPosition", "E": 1, "u": 1, "B": [huge]}
    step = b.feed(json.dumps({"subscriptionId": b.sub, "event": ev}))
    assert any(isinstance(e, BadFrame) for e in step.events)
    b.heal()
    k = KrakenPrivateH()
    k.up()
    order = k._order("O9")
    order["fees"] = [{"asset": "USD", "qty": "9E+999999"}, {"asset": "USD", "qty": "9E+999999"}]
    step = k.feed(k._frame("executions", "update", [order]))
    assert any(isinstance(e, BadFrame) for e in step.events)
    k.heal()


@pytest.mark.parametrize("harness", PRIVATE, ids=lambda h: h.__name__)
@budget(80)
@given(data=st.data())
def test_private_adapter_survives_hostile_frames_and_heals(
    harness: type[PrivateH], data: st.DataObject
) -> None:
    h = harness()
    h.up()
    h.rest_mangler = _mangle(data, [])
    for _ in range(data.draw(st.integers(1, 6), label="inputs")):
        kind = data.draw(
            st.sampled_from(["mutated", "mutated", "mutated", "json", "blob", "valid", "tick"]),
            label="kind",
        )
        if kind == "tick":
            h.tick(data.draw(st.sampled_from([0.5, 5.0, 61.0])))
            continue
        if kind == "mutated":
            frame: str | bytes = data.draw(mutated(h.templates()), label="frame")
        elif kind == "json":
            frame = dumps(data.draw(json_values, label="json"))
        elif kind == "blob":
            frame = data.draw(blobs, label="blob")
        else:
            frame = h.order_frame()
        h.feed(frame)
    h.rest_mangler = None
    event(f"bad frames reported: {min(h.adapter.bad_frames, 3)}")
    event(f"phase after the hostile inputs: {h.adapter.phase.value}")
    h.heal()


@pytest.mark.parametrize("options", [BinanceOptions, KucoinOptions])
def test_max_stale_updates_is_validated(options: Any) -> None:
    assert options().max_stale_updates == DEFAULT_MAX_STALE_RUN
    for bad in (0, -3, 2.0, True):
        with pytest.raises(ConfigError):
            options(max_stale_updates=bad)
