"""Deterministic benchmark traffic, generated once from the simulator's market model.

Every workload's market is :class:`gapless.sim.market.SymbolMarket` (seeded), so every
message is what the faithful simulators would publish:

* **Kraken** (W1, W2, W6, W7): a :class:`~gapless.sim.market.DepthView` per symbol turns
  each market tick into the minimal book update at the subscribed depth (protocols.md
  §1.7 rules 2-4); the checksum of the top 10 after the tick goes with it. Kraken v2 and
  v1 carry the *same* updates, each with its own checksum field (v2 ``checksum`` int,
  v1 ``"c"`` string in the last side object; both CRC-32s are equal because both print
  prices and quantities at exactly the pair's precisions).
* **Binance** (W3): full-book diffs. Every tick that changed the book consumes one
  update id; 1-5 ticks of a symbol are aggregated into one ``depthUpdate`` (``U`` =
  first id, ``u`` = last id, each touched price once with its final quantity, like the
  100 ms stream), and fills become ``@trade`` events interleaved in market order.
* **KuCoin** (W4): :class:`gapless.sim.kucoin_feed.SymbolFeed` sequences: one sequence
  per level change, messages of 1-3 ticks, per-entry sequences, the odd no-op entry
  ``["0","0",seq]`` (protocols.md §2.5).

The initial snapshot of each symbol is the state *before* its first update: a Binance
snapshot's ``lastUpdateId`` is the first ``U`` - 1, a KuCoin snapshot's ``sequence`` the
first ``sequenceStart`` - 1. Prices and quantities are scaled ints
(:mod:`gapless.sim.numbers`) until they are printed by the protocol encoders
(:func:`encode`, :func:`kraken_v2_snapshot` and friends), which the bench server calls
once at start-up so that sending is only writing bytes.

``python -m bench.traffic W1 [--scale S] [--seed N]`` builds (or loads from
``bench/.cache/``) a workload and prints its counts and generation time.
"""

from __future__ import annotations

import argparse
import bisect
import json
import math
import pickle
import random
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from bench import kraken_v1
from gapless.sim import binance_wire as bw
from gapless.sim import kucoin_wire as kw
from gapless.sim import wire as kraken_wire
from gapless.sim.checksum import checksum_scaled
from gapless.sim.kucoin_feed import SymbolFeed
from gapless.sim.market import DEFAULT_PAIRS, DepthView, PairSpec, SymbolMarket
from gapless.sim.numbers import fmt_fixed, parse_fixed

__all__ = [
    "BOOK",
    "DEFAULT_SEED",
    "PROTOCOLS",
    "TRADE",
    "WORKLOADS",
    "BookState",
    "Snapshot",
    "TradeEvent",
    "Traffic",
    "Update",
    "WorkloadSpec",
    "binance_depth_body",
    "binance_stream_name",
    "build",
    "cache_path",
    "encode",
    "kraken_v1_channel_id",
    "kraken_v1_snapshot",
    "kraken_v2_snapshot",
    "kucoin_level2_data",
    "level_text",
    "load",
    "load_or_build",
    "save",
]

DEFAULT_SEED = 20261122
FORMAT_VERSION = 1
PROTOCOLS = ("kraken-v2", "kraken-v1", "binance", "kucoin")
BOOK = 0
"""Message kind of a book update (``Traffic.order``)."""
TRADE = 1
"""Message kind of a trade."""

CACHE_DIR = Path(__file__).resolve().parent / ".cache"
T0_US = 1_795_305_600_000_000
"""2026-11-23T00:00:00Z, where every workload's exchange clock starts."""


@dataclass(frozen=True)
class WorkloadSpec:
    """Shape of one workload at scale 1.0."""

    name: str
    venue: str  # "kraken" | "binance" | "kucoin"
    symbols: int
    depth: int  # Kraken: the subscribed depth; Binance/KuCoin: levels reported in books
    updates: int
    trades: int = 0
    levels: int = 1200  # SymbolMarket(levels=...)
    min_levels: int = 1100


WORKLOADS: dict[str, WorkloadSpec] = {
    "W1": WorkloadSpec("W1", "kraken", 1, 10, 200_000),
    "W2": WorkloadSpec("W2", "kraken", 20, 1000, 100_000),
    # a book of 60-90 levels per side: REST snapshots (limit 100 and up) hold all of it
    "W3": WorkloadSpec("W3", "binance", 50, 100, 150_000, 100_000, levels=72, min_levels=60),
    "W4": WorkloadSpec("W4", "kucoin", 50, 100, 200_000, levels=72, min_levels=60),
    "W6": WorkloadSpec("W6", "kraken", 1, 10, 200_000),
    # depth + 50 levels keep the window full (rule 4 always has a deeper level to show)
    "W7": WorkloadSpec("W7", "kraken", 1000, 100, 200_000, levels=150, min_levels=120),
}
"""W5 has no traffic of its own (it reuses W1 and W3); W6 is W1's traffic."""

_TRAFFIC_OF = {"W6": "W1"}


class Update(NamedTuple):
    """One book update message. Levels are flat ``(price, qty, price, qty, ...)`` scaled
    ints in wire order; qty 0 removes the level; a KuCoin no-op entry has price 0."""

    sym: int
    bids: tuple[int, ...]
    asks: tuple[int, ...]
    ts_us: int
    first_id: int = 0  # Binance U / KuCoin sequenceStart
    last_id: int = 0  # Binance u / KuCoin sequenceEnd
    checksum: int = 0  # Kraken: CRC-32 of the top 10 after this update
    bid_seqs: tuple[int, ...] = ()  # KuCoin: per-entry sequence, parallel to the levels
    ask_seqs: tuple[int, ...] = ()


class TradeEvent(NamedTuple):
    """One trade (one fill): taker side, price and qty as scaled ints."""

    sym: int
    price: int
    qty: int
    taker_buy: bool
    trade_id: int
    ts_us: int
    market_order: bool


class Snapshot(NamedTuple):
    """A symbol's initial book (best first) and its sequence (Binance ``lastUpdateId``,
    KuCoin ``sequence``; 0 for Kraken), checksum (Kraken) and time."""

    bids: tuple[tuple[int, int], ...]
    asks: tuple[tuple[int, int], ...]
    ts_us: int
    seq: int = 0
    checksum: int = 0


@dataclass
class Traffic:
    """A workload's pre-generated messages (see the module docstring)."""

    workload: str
    venue: str
    depth: int
    seed: int
    scale: float
    pairs: list[PairSpec]  # the markets, in the venue's spelling (Kraken: v2 names)
    snapshots: list[Snapshot]
    book_updates: list[Update]
    trade_events: list[TradeEvent]
    order: bytes  # send order: BOOK takes the next update, TRADE the next trade
    market_levels: tuple[int, int]
    binance_pairs: list[bw.BinancePair] = field(default_factory=list)
    gen_s: float = 0.0
    _final: dict[str, dict[str, dict[str, list[list[str]]]]] = field(
        default_factory=dict, repr=False, compare=False
    )

    @property
    def updates(self) -> int:
        return len(self.book_updates)

    @property
    def trades(self) -> int:
        return len(self.trade_events)

    @property
    def messages(self) -> int:
        return len(self.order)

    @property
    def protocols(self) -> tuple[str, ...]:
        if self.venue == "kraken":
            return ("kraken-v2", "kraken-v1")
        return (self.venue,)

    @property
    def symbols(self) -> dict[str, list[str]]:
        """Symbols per protocol, in that protocol's spelling."""
        names = [p.symbol for p in self.pairs]
        if self.venue == "kraken":
            return {"kraken-v2": names, "kraken-v1": [kraken_v1.v1_symbol(s) for s in names]}
        return {self.venue: names}

    @property
    def price_precision(self) -> list[int]:
        return [p.price_precision for p in self.pairs]

    @property
    def qty_precision(self) -> list[int]:
        return [p.qty_precision for p in self.pairs]

    @property
    def book_depth(self) -> int | None:
        """The depth a client's book is truncated to (None: the whole book)."""
        return self.depth if self.venue == "kraken" else None

    def symbol_index(self, protocol: str) -> dict[str, int]:
        return {s: i for i, s in enumerate(self.symbols[protocol])}

    def message_routes(self) -> tuple[list[int], list[int]]:
        """(symbol, index into book_updates / trade_events) of every message, in send order
        (the kind of message ``k`` is ``order[k]``)."""
        syms: list[int] = []
        idx: list[int] = []
        u = t = 0
        ups, trs = self.book_updates, self.trade_events
        for kind in self.order:
            if kind == BOOK:
                syms.append(ups[u].sym)
                idx.append(u)
                u += 1
            else:
                syms.append(trs[t].sym)
                idx.append(t)
                t += 1
        return syms, idx

    def initial_states(self) -> list[BookState]:
        return [BookState(self.book_depth, s.bids, s.asks) for s in self.snapshots]

    def final_states(self) -> list[BookState]:
        states = self.initial_states()
        for u in self.book_updates:
            states[u.sym].apply(u.bids, u.asks)
        return states

    def final_books(
        self, protocol: str, levels: int | None = None
    ) -> dict[str, dict[str, list[list[str]]]]:
        """Top ``levels`` (default: the workload's depth) levels per side of every symbol's
        book after all updates, as ``[[price_text, qty_text], ...]`` in ``protocol``'s own
        number format, keyed by the protocol's symbol spelling."""
        n = self.depth if levels is None else levels
        key = f"{protocol}:{n}"
        cached = self._final.get(key)
        if cached is not None:
            return cached
        names = self.symbols[protocol]
        out: dict[str, dict[str, list[list[str]]]] = {}
        for i, st in enumerate(self.final_states()):
            bids, asks = st.top(n)
            pp, qp = self.pairs[i].price_precision, self.pairs[i].qty_precision
            out[names[i]] = {
                "bids": [
                    [level_text(protocol, p, pp), level_text(protocol, q, qp)] for p, q in bids
                ],
                "asks": [
                    [level_text(protocol, p, pp), level_text(protocol, q, qp)] for p, q in asks
                ],
            }
        self._final[key] = out
        return out

    def summary(self) -> dict[str, object]:
        return {
            "workload": self.workload,
            "venue": self.venue,
            "symbols": len(self.pairs),
            "depth": self.depth,
            "updates": self.updates,
            "trades": self.trades,
            "seed": self.seed,
            "scale": self.scale,
            "market_levels": list(self.market_levels),
            "gen_s": round(self.gen_s, 3),
        }


# --------------------------------------------------------------------------- book state


class BookState:
    """One symbol's book as a client holds it: levels applied in order (qty 0 deletes,
    price 0 is a KuCoin no-op), then truncated to ``depth`` (None: the whole book)."""

    __slots__ = ("ask_keys", "asks", "bid_keys", "bids", "depth")

    def __init__(
        self,
        depth: int | None,
        bids: Iterable[tuple[int, int]] = (),
        asks: Iterable[tuple[int, int]] = (),
    ) -> None:
        self.depth = depth
        self.bids: dict[int, int] = dict(bids)
        self.asks: dict[int, int] = dict(asks)
        self.bid_keys = sorted(-p for p in self.bids)
        self.ask_keys = sorted(self.asks)

    @staticmethod
    def _apply_side(
        levels: Sequence[int], book: dict[int, int], keys: list[int], sign: int
    ) -> None:
        for j in range(0, len(levels), 2):
            price = levels[j]
            if price == 0:
                continue
            qty = levels[j + 1]
            if qty == 0:
                if book.pop(price, None) is not None:
                    k = sign * price
                    del keys[bisect.bisect_left(keys, k)]
            else:
                if price not in book:
                    bisect.insort(keys, sign * price)
                book[price] = qty

    @staticmethod
    def _truncate(book: dict[int, int], keys: list[int], sign: int, depth: int) -> None:
        if len(keys) > depth:
            for k in keys[depth:]:
                del book[sign * k]
            del keys[depth:]

    def apply(self, bids: Sequence[int], asks: Sequence[int]) -> None:
        self._apply_side(bids, self.bids, self.bid_keys, -1)
        self._apply_side(asks, self.asks, self.ask_keys, 1)
        if self.depth is not None:
            self._truncate(self.bids, self.bid_keys, -1, self.depth)
            self._truncate(self.asks, self.ask_keys, 1, self.depth)

    def top(self, n: int | None = None) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        """(bids high->low, asks low->high), at most ``n`` per side."""
        bk = self.bid_keys if n is None else self.bid_keys[:n]
        ak = self.ask_keys if n is None else self.ask_keys[:n]
        return [(-k, self.bids[-k]) for k in bk], [(k, self.asks[k]) for k in ak]

    def checksum(self) -> int:
        """Kraken CRC-32 of the top 10 levels (protocols.md §1.7)."""
        bids, asks = self.top(10)
        return checksum_scaled(asks, bids)


# --------------------------------------------------------------------------- generation


def _flat(levels: Iterable[tuple[int, int]]) -> tuple[int, ...]:
    out: list[int] = []
    for p, q in levels:
        out.append(p)
        out.append(q)
    return tuple(out)


def _pairs_of(flat: Sequence[int]) -> list[tuple[int, int]]:
    return [(flat[j], flat[j + 1]) for j in range(0, len(flat), 2)]


def _names(n: int) -> list[str]:
    """Generated asset codes ``QAAA``, ``QAAB``, ...: four letters, no X/Z prefix (which
    Kraken's REST reserves for legacy assets)."""
    out: list[str] = []
    for k in range(n):
        a, rest = divmod(k, 26 * 26)
        b, c = divmod(rest, 26)
        out.append("Q" + chr(65 + a % 26) + chr(65 + b) + chr(65 + c))
    return out


def _gen_price(rng: random.Random, pp: int, levels: int) -> str:
    """A base price on the ``pp`` grid with room for 3 ticks per book level."""
    low = max(3 * levels * 3, 5_000)
    ticks = int(math.exp(rng.uniform(math.log(low), math.log(low * 200))))
    return fmt_fixed(ticks, pp)


def _kraken_pairs(n: int, rng: random.Random, levels: int) -> list[PairSpec]:
    pairs = [p for p in DEFAULT_PAIRS if parse_fixed(p.base_price, p.price_precision) >= 3 * levels]
    pairs = pairs[:n]
    for base in _names(n - len(pairs)):
        pp = rng.choice((1, 2, 3, 4, 5))
        qp = rng.choice((8, 8, 8, 6, 4))
        pairs.append(
            PairSpec(
                f"{base}/USD",
                _gen_price(rng, pp, levels),
                pp,
                qp,
                qty_min=fmt_fixed(1, min(qp, 4)),
                typical_notional=rng.uniform(500.0, 20_000.0),
            )
        )
    return pairs


def _binance_pairs(n: int, rng: random.Random, levels: int) -> list[bw.BinancePair]:
    pairs = list(bw.DEFAULT_BINANCE_PAIRS[:n])
    for base in _names(n - len(pairs)):
        pp = rng.choice((2, 3, 4, 5, 6))
        qp = rng.choice((0, 1, 2, 3, 4, 5, 6))
        pairs.append(
            bw.BinancePair(
                f"{base}USDT",
                base,
                "USDT",
                _gen_price(rng, pp, levels),
                pp,
                qp,
                fmt_fixed(1, qp),
                typical_notional=rng.uniform(500.0, 20_000.0),
            )
        )
    return pairs


def _kucoin_pairs(n: int, rng: random.Random, levels: int) -> list[PairSpec]:
    pairs = list(kw.KUCOIN_PAIRS[:n])
    for base in _names(n - len(pairs)):
        pp = rng.choice((1, 2, 3, 4, 5, 6))
        qp = rng.choice((2, 4, 6, 8))
        pairs.append(
            PairSpec(
                f"{base}-USDT",
                _gen_price(rng, pp, levels),
                pp,
                qp,
                qty_min=fmt_fixed(1, min(qp, 4)),
                cost_min="0.1",
                typical_notional=rng.uniform(500.0, 20_000.0),
            )
        )
    return pairs


def _markets(
    pairs: Sequence[PairSpec], rng: random.Random, spec: WorkloadSpec
) -> list[SymbolMarket]:
    return [
        SymbolMarket(
            p,
            random.Random(rng.getrandbits(64)),
            levels=spec.levels,
            min_levels=spec.min_levels,
        )
        for p in pairs
    ]


def _count(n: int, scale: float) -> int:
    return max(1, round(n * scale)) if n > 0 else 0


def _gen_kraken(spec: WorkloadSpec, scale: float, rng: random.Random) -> Traffic:
    pairs = _kraken_pairs(spec.symbols, rng, spec.levels)
    markets = _markets(pairs, rng, spec)
    views = [DepthView(m, spec.depth) for m in markets]
    ts = T0_US
    snapshots = [
        Snapshot(tuple(m.bids.top(spec.depth)), tuple(m.asks.top(spec.depth)), ts, 0, m.checksum())
        for m in markets
    ]
    target = _count(spec.updates, scale)
    updates: list[Update] = []
    n = len(markets)
    while len(updates) < target:
        i = rng.randrange(n) if n > 1 else 0
        m = markets[i]
        change = m.tick()
        ts += rng.randint(20, 2_000)
        bids, asks = views[i].diff(m, change)
        if bids or asks:
            updates.append(Update(i, _flat(bids), _flat(asks), ts, checksum=m.checksum()))
    return Traffic(
        spec.name,
        "kraken",
        spec.depth,
        0,
        scale,
        pairs,
        snapshots,
        updates,
        [],
        bytes(len(updates)),
        (spec.levels, spec.min_levels),
    )


class _BinanceSym:
    __slots__ = ("asks", "bids", "first", "market", "target", "ticks", "uid")

    def __init__(self, market: SymbolMarket, uid: int) -> None:
        self.market = market
        self.uid = uid
        self.first = 0
        self.ticks = 0
        self.target = 1
        self.bids: dict[int, None] = {}
        self.asks: dict[int, None] = {}


def _gen_binance(spec: WorkloadSpec, scale: float, rng: random.Random) -> Traffic:
    bpairs = _binance_pairs(spec.symbols, rng, spec.levels)
    pairs = [p.market_spec() for p in bpairs]
    markets = _markets(pairs, rng, spec)
    ts = T0_US
    states = [_BinanceSym(m, rng.randrange(1_000_000_000, 50_000_000_000)) for m in markets]
    snapshots = [
        Snapshot(tuple(m.bids.top(len(m.bids))), tuple(m.asks.top(len(m.asks))), ts, st.uid)
        for m, st in zip(markets, states, strict=True)
    ]
    for st in states:
        st.target = rng.randint(1, 5)
    n_updates = _count(spec.updates, scale)
    n_trades = _count(spec.trades, scale)
    lead = max(20, n_trades // 200)
    updates: list[Update] = []
    trades: list[TradeEvent] = []
    order = bytearray()
    n = len(states)
    while len(updates) < n_updates:
        i = rng.randrange(n)
        st = states[i]
        m = st.market
        change = m.tick()
        ts += rng.randint(20, 2_000)
        # trades are throttled evenly (fills outnumber them) and run slightly ahead, so
        # that both counts end exact
        allowed = min(n_trades, n_trades * (len(updates) + 1) // n_updates + lead)
        for fill in change.fills:
            if len(trades) >= allowed:
                break
            trades.append(
                TradeEvent(
                    i,
                    fill.price,
                    fill.qty,
                    fill.side == "buy",
                    m.next_trade_id,
                    ts,
                    fill.ord_type == "market",
                )
            )
            m.next_trade_id += 1
            order.append(TRADE)
        if not change.touched_bids and not change.touched_asks:
            continue
        st.uid += 1
        if st.first == 0:
            st.first = st.uid
        st.bids.update(dict.fromkeys(change.touched_bids))
        st.asks.update(dict.fromkeys(change.touched_asks))
        st.ticks += 1
        if st.ticks < st.target:
            continue
        bq, aq = m.bids.qty, m.asks.qty
        bids = [(p, bq.get(p, 0)) for p in sorted(st.bids, reverse=True)]
        asks = [(p, aq.get(p, 0)) for p in sorted(st.asks)]
        updates.append(Update(i, _flat(bids), _flat(asks), ts, st.first, st.uid))
        order.append(BOOK)
        st.first = 0
        st.ticks = 0
        st.bids = {}
        st.asks = {}
        st.target = rng.randint(1, 5)
    # pending, unpublished changes stay out of every book: final books replay the updates
    return Traffic(
        spec.name,
        "binance",
        spec.depth,
        0,
        scale,
        pairs,
        snapshots,
        updates,
        trades,
        bytes(order),
        (spec.levels, spec.min_levels),
        binance_pairs=bpairs,
    )


def _gen_kucoin(spec: WorkloadSpec, scale: float, rng: random.Random) -> Traffic:
    pairs = _kucoin_pairs(spec.symbols, rng, spec.levels)
    markets = _markets(pairs, rng, spec)
    feeds = [SymbolFeed(m, random.Random(rng.getrandbits(64)), history_s=0.0) for m in markets]
    ts = T0_US
    snapshots: list[Snapshot] = []
    for f in feeds:
        seq, bids, asks = f.snapshot(None)
        snapshots.append(Snapshot(tuple(bids), tuple(asks), ts, seq))
    target = _count(spec.updates, scale)
    updates: list[Update] = []
    n = len(feeds)
    while len(updates) < target:
        i = rng.randrange(n)
        ts += rng.randint(20, 2_000)
        _, msg = feeds[i].tick(ts / 1e6)
        if msg is None:
            continue
        updates.append(
            Update(
                i,
                tuple(x for p, q, _ in msg.bids for x in (p, q)),
                tuple(x for p, q, _ in msg.asks for x in (p, q)),
                ts,
                msg.seq_start,
                msg.seq_end,
                bid_seqs=tuple(s for _, _, s in msg.bids),
                ask_seqs=tuple(s for _, _, s in msg.asks),
            )
        )
    return Traffic(
        spec.name,
        "kucoin",
        spec.depth,
        0,
        scale,
        pairs,
        snapshots,
        updates,
        [],
        bytes(len(updates)),
        (spec.levels, spec.min_levels),
    )


def build(workload: str, scale: float = 1.0, seed: int = DEFAULT_SEED) -> Traffic:
    """Generate ``workload``'s traffic (deterministic for a given seed and scale)."""
    if workload == "W5":
        raise ValueError("W5 has no traffic of its own: it reuses W1 and W3")
    spec = WORKLOADS.get(workload)
    if spec is None:
        raise ValueError(f"unknown workload {workload!r} (known: {', '.join(WORKLOADS)})")
    if not scale > 0:
        raise ValueError("scale must be > 0")
    base = WORKLOADS[_TRAFFIC_OF.get(workload, workload)]
    t0 = time.perf_counter()
    rng = random.Random(f"{base.name}:{seed}")
    if spec.venue == "kraken":
        traffic = _gen_kraken(base, scale, rng)
    elif spec.venue == "binance":
        traffic = _gen_binance(base, scale, rng)
    else:
        traffic = _gen_kucoin(base, scale, rng)
    traffic.workload = workload
    traffic.seed = seed
    traffic.gen_s = time.perf_counter() - t0
    return traffic


# --------------------------------------------------------------------------- persistence


def save(traffic: Traffic, path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "wb") as fh:
        pickle.dump((FORMAT_VERSION, traffic), fh, protocol=pickle.HIGHEST_PROTOCOL)
    tmp.replace(path)


def load(path: str | Path) -> Traffic:
    with open(path, "rb") as fh:
        version, traffic = pickle.load(fh)
    if version != FORMAT_VERSION or not isinstance(traffic, Traffic):
        raise ValueError(f"{path}: not a traffic file of format {FORMAT_VERSION}")
    return traffic


def cache_path(workload: str, scale: float = 1.0, seed: int = DEFAULT_SEED) -> Path:
    return CACHE_DIR / f"traffic-v{FORMAT_VERSION}-{workload}-{scale:g}-{seed}.pkl"


def load_or_build(workload: str, scale: float = 1.0, seed: int = DEFAULT_SEED) -> Traffic:
    """The cached traffic of ``workload`` (built and cached under ``bench/.cache/`` on a miss)."""
    path = cache_path(workload, scale, seed)
    if path.exists():
        try:
            return load(path)
        except (ValueError, EOFError, pickle.UnpicklingError, AttributeError):
            path.unlink(missing_ok=True)
    traffic = build(workload, scale, seed)
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    ignore = CACHE_DIR / ".gitignore"
    if not ignore.exists():
        ignore.write_text("*\n")  # a cache: never committed
    save(traffic, path)
    return traffic


# --------------------------------------------------------------------------- encoding


def level_text(protocol: str, value: int, prec: int) -> str:
    """A scaled int as ``protocol`` prints it: Kraken at the pair's precision, Binance with
    8 decimals, KuCoin without trailing zeros."""
    if protocol == "binance":
        return bw.num(value, prec)
    if protocol == "kucoin":
        return kw.fmt_plain(value, prec)
    return fmt_fixed(value, prec)


def kraken_v1_channel_id(sym: int) -> int:
    """The v1 ``channelID`` of a symbol's book (fixed per symbol so frames are pre-encoded)."""
    return 1000 + sym


def binance_stream_name(
    traffic: Traffic, sym: int, kind: int, depth_suffix: str = "@depth@100ms"
) -> str:
    """``btcusdt@depth@100ms`` / ``btcusdt@trade``."""
    lower = traffic.pairs[sym].symbol.lower()
    return lower + (depth_suffix if kind == BOOK else "@trade")


def _kucoin_entries(flat: Sequence[int], seqs: Sequence[int]) -> list[tuple[int, int, int]]:
    return [(flat[2 * j], flat[2 * j + 1], s) for j, s in enumerate(seqs)]


def _encode_update(traffic: Traffic, protocol: str, u: Update) -> str:
    pair = traffic.pairs[u.sym]
    pp, qp = pair.price_precision, pair.qty_precision
    if protocol == "kraken-v2":
        return kraken_wire.book_message(
            "update",
            json.dumps(pair.symbol),
            _pairs_of(u.bids),
            _pairs_of(u.asks),
            u.checksum,
            u.ts_us,
            pp,
            qp,
        )
    if protocol == "kraken-v1":
        return kraken_v1.book_update(
            kraken_v1_channel_id(u.sym),
            traffic.depth,
            kraken_v1.v1_symbol(pair.symbol),
            _pairs_of(u.bids),
            _pairs_of(u.asks),
            u.checksum,
            u.ts_us,
            pp,
            qp,
        )
    if protocol == "binance":
        return bw.depth_event(
            u.ts_us // 1000,
            pair.symbol,
            u.first_id,
            u.last_id,
            _pairs_of(u.bids),
            _pairs_of(u.asks),
            pp,
            qp,
        )
    if protocol == "kucoin":
        return kw.l2update(
            pair.symbol,
            _kucoin_entries(u.asks, u.ask_seqs),
            _kucoin_entries(u.bids, u.bid_seqs),
            u.first_id,
            u.last_id,
            u.ts_us // 1000,
            pp,
            qp,
        )
    raise ValueError(f"unknown protocol {protocol!r}")


def _encode_trade(traffic: Traffic, protocol: str, t: TradeEvent) -> str:
    pair = traffic.pairs[t.sym]
    pp, qp = pair.price_precision, pair.qty_precision
    if protocol == "binance":
        ms = t.ts_us // 1000
        return bw.trade_event(
            ms, pair.symbol, t.trade_id, t.price, t.qty, ms, not t.taker_buy, pp, qp
        )
    raise ValueError(f"{protocol}: this workload's trades are Binance trades")


def encode(traffic: Traffic, protocol: str) -> list[bytes]:
    """Every message of ``traffic`` (updates and trades, in send order) as ``protocol``'s
    JSON payload. Binance payloads are raw events: the server wraps them for combined
    streams (``{"stream":..,"data":..}``)."""
    if protocol not in traffic.protocols:
        raise ValueError(f"{traffic.workload} is {traffic.venue} traffic, not {protocol}")
    out: list[bytes] = []
    ups = iter(traffic.book_updates)
    trs = iter(traffic.trade_events)
    for kind in traffic.order:
        if kind == BOOK:
            out.append(_encode_update(traffic, protocol, next(ups)).encode())
        else:
            out.append(_encode_trade(traffic, protocol, next(trs)).encode())
    return out


def kraken_v2_snapshot(
    traffic: Traffic,
    sym: int,
    bids: Sequence[tuple[int, int]],
    asks: Sequence[tuple[int, int]],
    ts_us: int,
) -> str:
    """A v2 ``book`` snapshot of the given levels (best first) with its checksum."""
    pair = traffic.pairs[sym]
    return kraken_wire.book_message(
        "snapshot",
        json.dumps(pair.symbol),
        bids,
        asks,
        checksum_scaled(asks, bids),
        ts_us,
        pair.price_precision,
        pair.qty_precision,
    )


def kraken_v1_snapshot(
    traffic: Traffic,
    sym: int,
    bids: Sequence[tuple[int, int]],
    asks: Sequence[tuple[int, int]],
    ts_us: int,
) -> str:
    """A v1 book snapshot (``as``/``bs``, no checksum)."""
    pair = traffic.pairs[sym]
    return kraken_v1.book_snapshot(
        kraken_v1_channel_id(sym),
        traffic.depth,
        kraken_v1.v1_symbol(pair.symbol),
        bids,
        asks,
        ts_us,
        pair.price_precision,
        pair.qty_precision,
    )


def binance_depth_body(
    traffic: Traffic,
    sym: int,
    last_update_id: int,
    bids: Sequence[tuple[int, int]],
    asks: Sequence[tuple[int, int]],
) -> str:
    """``GET /api/v3/depth`` body (protocols.md §3.7)."""
    pair = traffic.pairs[sym]
    return bw.snapshot_body(last_update_id, bids, asks, pair.price_precision, pair.qty_precision)


def kucoin_level2_data(
    traffic: Traffic,
    sym: int,
    sequence: int,
    bids: Sequence[tuple[int, int]],
    asks: Sequence[tuple[int, int]],
    time_ms: int,
) -> dict[str, Any]:
    """``data`` of a KuCoin level2 REST snapshot (protocols.md §2.5: ``sequence`` a string)."""
    pair = traffic.pairs[sym]
    pp, qp = pair.price_precision, pair.qty_precision
    return {
        "time": time_ms,
        "sequence": str(sequence),
        "bids": [[kw.fmt_plain(p, pp), kw.fmt_plain(q, qp)] for p, q in bids],
        "asks": [[kw.fmt_plain(p, pp), kw.fmt_plain(q, qp)] for p, q in asks],
    }


def iter_messages(traffic: Traffic) -> Iterator[tuple[int, Update | TradeEvent]]:
    """(kind, message) in send order."""
    ups = iter(traffic.book_updates)
    trs = iter(traffic.trade_events)
    for kind in traffic.order:
        yield (kind, next(ups)) if kind == BOOK else (kind, next(trs))


# --------------------------------------------------------------------------- CLI


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Build (or load) benchmark traffic.")
    p.add_argument("workloads", nargs="+", help="W1 W2 W3 W4 W6 W7")
    p.add_argument("--scale", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=DEFAULT_SEED)
    p.add_argument("--rebuild", action="store_true", help="ignore the cache")
    p.add_argument("--out", type=Path, default=None, help="also save to this file (one workload)")
    args = p.parse_args(argv)
    for w in args.workloads:
        t0 = time.perf_counter()
        if args.rebuild:
            traffic = build(w, args.scale, args.seed)
            save(traffic, cache_path(w, args.scale, args.seed))
        else:
            traffic = load_or_build(w, args.scale, args.seed)
        if args.out is not None:
            save(traffic, args.out)
        info = traffic.summary()
        info["wall_s"] = round(time.perf_counter() - t0, 3)
        print(json.dumps(info), flush=True)
    return 0


if __name__ == "__main__":
    from bench import traffic as _self  # pickles must name bench.traffic, not __main__

    sys.exit(_self.main())
