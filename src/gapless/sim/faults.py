"""Fault descriptions and scenarios for the simulator (design.md §4 fault catalogue).

A :class:`Fault` is data: a ``kind`` (string, the public API), an offset
``at_s`` in seconds from when its :class:`Scenario` is scheduled, and
``params``. Unknown kinds or parameter names are rejected when the fault is
built, so a typo in a scenario file fails loudly instead of being ignored.

Kinds and parameters (defaults in brackets); what each does on the wire is
documented in :mod:`gapless.sim.kraken`:

==========================  ==========================================================
``close``                   ``code`` [1000], ``reason`` [""]
``abort``                   (none): TCP abort, no close frame
``silent_stall``            ``duration_s`` [None = until the client closes]
``data_stall``              ``duration_s`` [10.0], ``symbols`` [None = all]
``maintenance``             ``duration_s`` [10.0], ``after_status`` ["online"],
                            ``cancel_only_s`` [0.0]
``status``                  ``system`` ["online"]: online|cancel_only|post_only|
                            limit_only|maintenance
``reject_subscriptions``    ``count`` [1], ``error`` ["EService:Unavailable"],
                            ``symbol`` [None = any], ``then_close`` [True]
``ban``                     ``duration_s`` [10.0], ``retry_after_s`` [None = remaining]
``drop_update``             ``symbol`` [None = random], ``detectable`` [True]
``corrupt_checksum``        ``symbol`` [None = random]
``burst``                   ``duration_s`` [5.0], ``factor`` [10.0]
``malformed``               ``variant`` ["invalid_json"]: invalid_json|wrong_types|
                            huge|deep; ``size_bytes`` [10 MiB] (huge only)
==========================  ==========================================================

Kraken private-side kinds (:data:`KRAKEN_PRIVATE_FAULT_KINDS`; only the Kraken
simulator implements them, see :mod:`gapless.sim.kraken_private`; they are
not in :data:`DEFAULT_CHAOS_KINDS`, pass them in ``kinds`` to get them):

============================  ========================================================
``token_expiry``              ``then_close`` [True; optional, left out of
                              ``resolved()``]: every token issued so far is refused
                              for new subscribes; close /v2-auth connections (the
                              kind is shared with KuCoin, which ignores it)
``private_sequence_jump``     ``channel`` ["executions"]: executions|balances; the
                              next update's ``sequence`` is consumed but not sent
``fill_while_disconnected``   ``fraction`` [1.0] (0..1), ``cancel_some`` [0]: abort
                              /v2-auth connections, then cancel the ``cancel_some``
                              oldest open orders and fill ``fraction`` of the rest
============================  ========================================================

Scenario files are JSON: a list of objects with ``at`` (or ``at_s``), ``kind``
and the parameters flattened next to them::

    [{"at": 5.0, "kind": "abort"}, {"at": 9, "kind": "maintenance", "duration_s": 6}]

:meth:`Scenario.chaos` generates a seeded random scenario: every fault gets a
recovery allowance before the next one starts (a maintenance needs at least
5 s after it ends, as protocols.md §1.2 tells clients to wait >= 5 s between
attempts after maintenance; a ban needs its duration), and nothing happens in
the last ``quiet_tail_s`` seconds so a client can converge before the checker
compares final books. Chaos data stalls last 4-6 s: a shorter one can hide
below a staleness watchdog, and then the withheld ``ticker`` updates (which
carry no sequence, protocols.md §1.8) are lost without any way to notice;
inject shorter ones explicitly when that is what you want to test.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "CONSUMER_FAULT_KINDS",
    "DEFAULT_CHAOS_KINDS",
    "FAULT_KINDS",
    "KRAKEN_PRIVATE_FAULT_KINDS",
    "MALFORMED_VARIANTS",
    "SYSTEM_STATUSES",
    "TRANSPORT_FAULT_KINDS",
    "Fault",
    "Scenario",
    "known_fault_kinds",
    "register_fault_kinds",
]

SYSTEM_STATUSES = ("online", "cancel_only", "post_only", "limit_only", "maintenance")
"""protocols.md §1.4 ``system`` values (``limit_only`` is [UNCERTAIN] as a system value)."""

_SENDABLE_CLOSE_CODES = frozenset(
    {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014}
)
"""RFC 6455 §7.4: codes an endpoint may put in a close frame (plus 3000-4999)."""

MALFORMED_VARIANTS = ("invalid_json", "wrong_types", "huge", "deep")

_DEFAULTS: dict[str, dict[str, Any]] = {
    "close": {"code": 1000, "reason": ""},
    "abort": {},
    "silent_stall": {"duration_s": None},
    "data_stall": {"duration_s": 10.0, "symbols": None},
    "maintenance": {"duration_s": 10.0, "after_status": "online", "cancel_only_s": 0.0},
    "status": {"system": "online"},
    "reject_subscriptions": {
        "count": 1,
        "error": "EService:Unavailable",
        "symbol": None,
        "then_close": True,
    },
    "ban": {"duration_s": 10.0, "retry_after_s": None},
    "drop_update": {"symbol": None, "detectable": True},
    "corrupt_checksum": {"symbol": None},
    "burst": {"duration_s": 5.0, "factor": 10.0},
    "malformed": {"variant": "invalid_json", "size_bytes": 10 * 1024 * 1024},
}

FAULT_KINDS: tuple[str, ...] = tuple(_DEFAULTS)
"""The kinds every simulator understands (the Kraken simulator implements all of them)."""


def register_fault_kinds(defaults: Mapping[str, Mapping[str, Any]]) -> None:
    """Let a venue simulator add its own fault kinds (e.g. Binance ``server_shutdown``)
    with their parameter defaults.

    Two venues may share a kind (``token_expiry``: KuCoin and the Kraken private
    side): the kind then accepts the union of their parameters, each venue
    ignoring the ones it does not use. A parameter both register must have the
    same default, otherwise this is an error."""
    for kind, params in defaults.items():
        known = _DEFAULTS.get(kind, {})
        clash = [k for k in params if k in known and known[k] != params[k]]
        if clash:
            raise ValueError(
                f"fault kind {kind!r} is already registered with other defaults for {clash}"
            )
        _DEFAULTS[kind] = {**known, **params}


def known_fault_kinds() -> tuple[str, ...]:
    """Every registered kind (the common ones plus those venue simulators added)."""
    return tuple(_DEFAULTS)


DEFAULT_CHAOS_KINDS: tuple[str, ...] = FAULT_KINDS
"""Every kind; chaos always gives ``silent_stall`` a duration."""

PRIVATE_CHANNELS = ("executions", "balances")

_KRAKEN_PRIVATE_DEFAULTS: dict[str, dict[str, Any]] = {
    "token_expiry": {},
    "private_sequence_jump": {"channel": "executions"},
    "fill_while_disconnected": {"fraction": 1.0, "cancel_some": 0},
}
register_fault_kinds(_KRAKEN_PRIVATE_DEFAULTS)

_OPTIONAL: dict[str, dict[str, Any]] = {"token_expiry": {"then_close": True}}
"""Parameters a kind accepts without :meth:`Fault.resolved` filling them in (the
value shown is the default the implementing simulator applies): ``token_expiry``
is shared with KuCoin, whose records keep their parameter-less form."""

KRAKEN_PRIVATE_FAULT_KINDS: tuple[str, ...] = tuple(_KRAKEN_PRIVATE_DEFAULTS)
"""The Kraken private-side kinds (registered after :data:`FAULT_KINDS`, so they are
neither in it nor in :data:`DEFAULT_CHAOS_KINDS`)."""

_TRANSPORT_DEFAULTS: dict[str, dict[str, Any]] = {
    "latency": {"latency_s": 0.2, "jitter_s": 0.02, "duration_s": 5.0},
    "bandwidth": {"bytes_per_s": 65536, "duration_s": 5.0},
    "blackhole": {"duration_s": 6.0},
    "reset": {},
    "slicer": {"slice_bytes": 8, "slice_delay_s": 0.0, "duration_s": 4.0},
    "limit_data": {"bytes": 65536, "duration_s": 2.0},
}
register_fault_kinds(_TRANSPORT_DEFAULTS)

TRANSPORT_FAULT_KINDS: tuple[str, ...] = tuple(_TRANSPORT_DEFAULTS)
"""Faults below the WebSocket layer, applied by :class:`gapless.sim.FaultProxy` (not
by a simulator): ``latency`` (``latency_s`` + ``jitter_s`` per chunk), ``bandwidth``
(``bytes_per_s``), ``blackhole`` (half-open: bytes vanish, no FIN/RST), ``reset``
(RST of every open connection), ``slicer`` (``slice_bytes`` per TCP write, with
``slice_delay_s`` between them) and ``limit_data`` (connections cut with RST
after ``bytes`` from the server); each lasts ``duration_s`` (``reset``: instant)."""

_CONSUMER_DEFAULTS: dict[str, dict[str, Any]] = {
    "slow_consumer": {"duration_s": 4.0},
    "loop_block": {"duration_s": 1.0},
}
register_fault_kinds(_CONSUMER_DEFAULTS)

CONSUMER_FAULT_KINDS: tuple[str, ...] = tuple(_CONSUMER_DEFAULTS)
"""Faults in the user's code, applied by the soak's consumer: ``slow_consumer``
stops reading events for ``duration_s`` (awaiting, the loop runs on) and
``loop_block`` blocks the whole event loop for ``duration_s`` (``time.sleep``)."""


def _num(v: Any, name: str, *, allow_none: bool = False) -> None:
    if v is None and allow_none:
        return
    if isinstance(v, bool) or not isinstance(v, int | float) or v < 0:
        raise ValueError(f"{name} must be a non-negative number, got {v!r}")


@dataclass(frozen=True)
class Fault:
    """One fault: ``kind`` at offset ``at_s`` (seconds) with ``params``."""

    kind: str
    at_s: float = 0.0
    params: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in _DEFAULTS:
            raise ValueError(
                f"unknown fault kind {self.kind!r}; known: {', '.join(known_fault_kinds())}"
            )
        _num(self.at_s, "at_s")
        unknown = set(self.params) - set(_DEFAULTS[self.kind]) - set(_OPTIONAL.get(self.kind, {}))
        if unknown:
            raise ValueError(f"fault {self.kind!r}: unknown params {sorted(unknown)}")
        p = self.resolved()
        for name in ("duration_s", "cancel_only_s", "retry_after_s"):
            if name in p:
                _num(p[name], name, allow_none=True)
        if self.kind in ("data_stall", "maintenance", "ban", "burst") and p["duration_s"] is None:
            raise ValueError(f"fault {self.kind!r} needs duration_s")
        if self.kind == "status" and p["system"] not in SYSTEM_STATUSES:
            raise ValueError(f"status system must be one of {SYSTEM_STATUSES}")
        if self.kind == "maintenance" and p["after_status"] not in SYSTEM_STATUSES:
            raise ValueError(f"after_status must be one of {SYSTEM_STATUSES}")
        if self.kind == "malformed" and p["variant"] not in MALFORMED_VARIANTS:
            raise ValueError(f"malformed variant must be one of {MALFORMED_VARIANTS}")
        if self.kind == "burst":
            _num(p["factor"], "factor")
            if p["factor"] <= 0:
                raise ValueError("burst factor must be > 0")
        if self.kind == "close":
            code = p["code"]
            if not isinstance(code, int) or not (
                code in _SENDABLE_CLOSE_CODES or 3000 <= code < 5000
            ):
                raise ValueError(f"close code {code!r} cannot be sent in a close frame")
        if self.kind == "reject_subscriptions" and (
            not isinstance(p["count"], int) or p["count"] < 1
        ):
            raise ValueError("reject_subscriptions count must be an int >= 1")
        if self.kind == "token_expiry" and not isinstance(p.get("then_close", True), bool):
            raise ValueError("token_expiry then_close must be a bool")
        if self.kind == "private_sequence_jump" and p["channel"] not in PRIVATE_CHANNELS:
            raise ValueError(f"private_sequence_jump channel must be one of {PRIVATE_CHANNELS}")
        if self.kind == "fill_while_disconnected":
            _num(p["fraction"], "fraction")
            if p["fraction"] > 1:
                raise ValueError("fill_while_disconnected fraction must be in [0, 1]")
            if not isinstance(p["cancel_some"], int) or isinstance(p["cancel_some"], bool):
                raise ValueError("fill_while_disconnected cancel_some must be an int >= 0")
            if p["cancel_some"] < 0:
                raise ValueError("fill_while_disconnected cancel_some must be an int >= 0")
        if self.kind == "data_stall" and p["symbols"] is not None:
            syms = p["symbols"]
            if isinstance(syms, str) or not all(isinstance(s, str) for s in syms):
                raise ValueError("data_stall symbols must be a list of strings")

    @classmethod
    def make(cls, kind: str, at_s: float = 0.0, **params: Any) -> Fault:
        """``Fault.make("close", code=4000)`` == ``Fault("close", 0.0, {"code": 4000})``."""
        return cls(kind, at_s, params)

    def resolved(self) -> dict[str, Any]:
        """Params with defaults filled in."""
        p = dict(_DEFAULTS[self.kind])
        p.update(self.params)
        return p

    def to_dict(self) -> dict[str, Any]:
        """The scenario-file form: ``{"at": .., "kind": .., **params}``."""
        return {"at": self.at_s, "kind": self.kind, **dict(self.params)}

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any]) -> Fault:
        d = dict(obj)
        if "kind" not in d:
            raise ValueError(f"fault entry without 'kind': {obj!r}")
        kind = d.pop("kind")
        at = d.pop("at", d.pop("at_s", 0.0))
        params = d.pop("params", None)
        if params is not None:
            if not isinstance(params, Mapping):
                raise ValueError("'params' must be an object")
            d.update(params)
        return cls(str(kind), float(at), d)


class Scenario:
    """An ordered list of faults (sorted by ``at_s``, stable)."""

    __slots__ = ("faults",)

    def __init__(self, faults: Iterable[Fault] = ()) -> None:
        self.faults: tuple[Fault, ...] = tuple(sorted(faults, key=lambda f: f.at_s))

    def __iter__(self) -> Iterator[Fault]:
        return iter(self.faults)

    def __len__(self) -> int:
        return len(self.faults)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Scenario) and self.faults == other.faults

    def __repr__(self) -> str:
        return f"Scenario({list(self.faults)!r})"

    # -------------------------------------------------------------- JSON I/O

    @classmethod
    def from_json(cls, text: str) -> Scenario:
        """Parse a scenario: a JSON list of fault objects, or ``{"faults": [...]}``."""
        data = json.loads(text)
        if isinstance(data, dict):
            data = data.get("faults")
        if not isinstance(data, list):
            raise ValueError("a scenario is a JSON list of fault objects")
        faults: list[Fault] = []
        for item in data:
            if not isinstance(item, dict):
                raise ValueError(f"fault entry must be an object, got {item!r}")
            faults.append(Fault.from_dict(item))
        return cls(faults)

    @classmethod
    def load(cls, path: str | Path) -> Scenario:
        return cls.from_json(Path(path).read_text(encoding="utf-8"))

    def to_json(self) -> str:
        return json.dumps([f.to_dict() for f in self.faults], indent=1)

    def dump(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json() + "\n", encoding="utf-8")

    # ----------------------------------------------------------------- chaos

    @staticmethod
    def recovery_s(fault: Fault) -> float:
        """Seconds after ``fault`` starts before the next fault is fair to the client.

        The fault's own duration plus a settle time: a maintenance needs 5 s more
        (protocols.md §1.2: wait >= 5 s between attempts after maintenance), a
        ban its duration, a reconnect or a resync (loopback, immediate retry)
        about 2 s.
        """
        p = fault.resolved()
        k = fault.kind
        d = p.get("duration_s")
        dur = float(d) if d is not None else 10.0
        if k == "maintenance":
            return 5.0 + dur + float(p["cancel_only_s"]) + 0.5
        if k in ("ban", "burst"):
            return dur + 1.0
        if k in ("silent_stall", "data_stall"):
            return dur + 2.0
        if k == "reject_subscriptions":
            return 3.0
        if k == "status":
            return 1.5
        if k == "server_shutdown":
            return float(p["delay_s"]) + 2.0
        if k in ("rest_429", "rest_418", "topic_limit", "instance_down"):
            return (float(d) if d is not None else 5.0) + 2.0
        if k in ("token_expiry", "fill_while_disconnected"):
            return 3.0  # reconnect, fetch a token over REST, resubscribe, reconcile
        if k == "blackhole":
            return dur + 5.0  # detected during it; then a backoff of up to 3 s and a resync
        if k in ("latency", "bandwidth", "slicer", "limit_data", "slow_consumer", "loop_block"):
            return dur + 3.0  # the lag drains, or the overflow / cut resyncs
        return 2.0

    @classmethod
    def chaos(
        cls,
        duration_s: float,
        seed: int,
        min_faults: int = 12,
        kinds: Sequence[str] = DEFAULT_CHAOS_KINDS,
        *,
        symbols: Sequence[str] | None = None,
        start_s: float = 2.0,
        quiet_tail_s: float = 8.0,
        max_density: float = 0.6,
    ) -> Scenario:
        """A seeded random scenario over ``duration_s`` seconds.

        At least ``min_faults`` faults, every kind in ``kinds`` used once before
        any repeats, each fault followed by its :meth:`recovery_s` before the
        next one starts, and every fault's recovery over before the last
        ``quiet_tail_s`` seconds. More faults are added while their recovery
        time stays below ``max_density`` of the window. When the faults do not
        fit, durations are scaled down (to 1/4 at most) before giving up with
        ``ValueError``. The default 12 faults fit in a 60 s run.
        """
        if not kinds:
            raise ValueError("kinds must not be empty")
        for k in kinds:
            if k not in _DEFAULTS:
                raise ValueError(f"unknown fault kind {k!r}")
        window = duration_s - quiet_tail_s - start_s
        for scale in (1.0, 0.75, 0.5, 0.35, 0.25):
            rng = random.Random(f"gapless-chaos:{seed}:{scale}")
            groups = cls._chaos_groups(rng, kinds, symbols, scale, window, min_faults, max_density)
            if groups is not None:
                break
        else:
            raise ValueError(
                f"chaos: {min_faults} faults do not fit in {duration_s:.0f} s "
                f"({start_s:.0f} s start, {quiet_tail_s:.0f} s quiet tail); use a longer run"
            )
        total = sum(sum(cls._group_span(g)) for g in groups)
        cuts = sorted(rng.uniform(0.0, window - total) for _ in groups)
        faults: list[Fault] = []
        t = start_s
        prev_cut = 0.0
        for group, cut in zip(groups, cuts, strict=True):
            t += cut - prev_cut
            prev_cut = cut
            offset = 0.0
            for f, span in zip(group, cls._group_span(group), strict=True):
                faults.append(Fault(f.kind, round(t + offset, 3), f.params))
                offset += span
            t += offset
        return cls(faults)

    @classmethod
    def _chaos_groups(
        cls,
        rng: random.Random,
        kinds: Sequence[str],
        symbols: Sequence[str] | None,
        scale: float,
        window: float,
        min_faults: int,
        max_density: float,
    ) -> list[list[Fault]] | None:
        groups: list[list[Fault]] = []
        count = 0
        total = 0.0
        bag: list[str] = []
        while True:
            if not bag:
                bag = list(kinds)
                rng.shuffle(bag)
            group = cls._chaos_group(bag.pop(), rng, symbols, scale)
            # round down so that the 3-decimal offsets never eat into a recovery
            need = sum(cls._group_span(group)) + 0.002 * len(group)
            enough = count >= min_faults
            if total + need > window or (enough and total + need > window * max_density):
                return groups if enough else None
            groups.append(group)
            count += len(group)
            total += need

    @classmethod
    def _group_span(cls, group: Sequence[Fault]) -> list[float]:
        # a status change is followed 1.5 s later by its restore; the pair then recovers
        spans = []
        for i, f in enumerate(group):
            spans.append(1.5 if i < len(group) - 1 else cls.recovery_s(f))
        return spans

    @staticmethod
    def _chaos_group(
        kind: str, rng: random.Random, symbols: Sequence[str] | None, scale: float
    ) -> list[Fault]:
        def dur(lo: float, hi: float) -> float:
            return round(max(0.5, rng.uniform(lo, hi) * scale), 2)

        def one_symbol() -> str | None:
            return rng.choice(list(symbols)) if symbols else None

        if kind == "close":
            return [Fault(kind, 0.0, {"code": rng.choice((1000, 1001, 1008, 1011))})]
        if kind == "silent_stall":
            return [Fault(kind, 0.0, {"duration_s": dur(2.0, 6.0)})]
        if kind == "data_stall":
            # not scaled: a stall shorter than a client's staleness watchdog is invisible
            # on streams without sequence numbers (ticker; §1.8), see the module docstring
            p: dict[str, Any] = {"duration_s": round(rng.uniform(4.0, 6.0), 2)}
            if symbols and rng.random() < 0.5:
                p["symbols"] = [rng.choice(list(symbols))]
            return [Fault(kind, 0.0, p)]
        if kind == "maintenance":
            cancel_only = rng.choice((0.0, 0.0, round(1.5 * scale, 2)))
            return [Fault(kind, 0.0, {"duration_s": dur(1.5, 5.0), "cancel_only_s": cancel_only})]
        if kind == "status":
            system = rng.choice(("cancel_only", "post_only", "limit_only"))
            return [Fault(kind, 0.0, {"system": system}), Fault(kind, 0.0, {"system": "online"})]
        if kind == "reject_subscriptions":
            p = {"count": rng.randint(1, 2)}
            sym = one_symbol()
            if sym is not None:
                p["symbol"] = sym
            return [Fault(kind, 0.0, p)]
        if kind == "ban":
            d = dur(2.0, 5.0)
            return [Fault(kind, 0.0, {"duration_s": d, "retry_after_s": math.ceil(d)})]
        if kind in ("drop_update", "corrupt_checksum"):
            sym = one_symbol()
            return [Fault(kind, 0.0, {} if sym is None else {"symbol": sym})]
        if kind == "burst":
            return [Fault(kind, 0.0, {"duration_s": dur(1.5, 4.0), "factor": 10.0})]
        if kind == "malformed":
            return [Fault(kind, 0.0, {"variant": rng.choice(MALFORMED_VARIANTS)})]
        # venue kinds (registered by the Binance and KuCoin simulators)
        if kind == "server_shutdown":
            # notice long enough for a make-before-break replacement (§3.4)
            return [Fault(kind, 0.0, {"delay_s": 3.0})]
        if kind == "stale_snapshot":
            # the next snapshots are stale; a reconnect makes the client fetch them
            p = {"count": 2} if (sym := one_symbol()) is None else {"count": 2, "symbol": sym}
            return [Fault(kind, 0.0, p), Fault("abort", 0.0, {})]
        if kind in ("rest_429", "rest_418"):
            # REST refuses while a reconnect needs snapshots
            return [Fault(kind, 0.0, {"duration_s": dur(3.0, 4.0)}), Fault("abort", 0.0, {})]
        if kind == "topic_limit":
            # re-subscriptions after the close are refused (KuCoin 509) until the limit lifts
            return [
                Fault(kind, 0.0, {"limit": 0, "duration_s": dur(3.0, 4.0)}),
                Fault("close", 0.0, {"code": 1000}),
            ]
        if kind == "instance_down":
            return [Fault(kind, 0.0, {"index": 1, "duration_s": dur(2.0, 4.0)})]
        # Kraken private kinds (only when asked for in ``kinds``)
        if kind == "private_sequence_jump":
            return [Fault(kind, 0.0, {"channel": rng.choice(PRIVATE_CHANNELS)})]
        if kind == "fill_while_disconnected":
            frac = rng.choice((1.0, 0.5))
            return [Fault(kind, 0.0, {"fraction": frac, "cancel_some": rng.randint(0, 1)})]
        # transport kinds (a FaultProxy applies them) and the consumer's own
        if kind == "latency":
            lat = round(rng.uniform(0.05, 0.4), 3)
            jit = round(rng.uniform(0.0, 0.05), 3)
            return [Fault(kind, 0.0, {"latency_s": lat, "jitter_s": jit, "duration_s": dur(2, 6)})]
        if kind == "bandwidth":
            bps = rng.choice((16384, 65536, 262144))
            return [Fault(kind, 0.0, {"bytes_per_s": bps, "duration_s": dur(2.0, 6.0)})]
        if kind == "blackhole":
            # not scaled: it must outlast the liveness timers to be a half-open link
            return [Fault(kind, 0.0, {"duration_s": round(rng.uniform(5.0, 8.0), 2)})]
        if kind == "slicer":
            p = {"slice_bytes": rng.randint(1, 64), "slice_delay_s": rng.choice((0.0, 0.001))}
            return [Fault(kind, 0.0, {**p, "duration_s": dur(2.0, 5.0)})]
        if kind == "limit_data":
            limit = rng.choice((2_000, 20_000, 200_000))
            return [Fault(kind, 0.0, {"bytes": limit, "duration_s": dur(1.0, 3.0)})]
        if kind == "slow_consumer":
            return [Fault(kind, 0.0, {"duration_s": dur(2.0, 6.0)})]
        if kind == "loop_block":
            return [Fault(kind, 0.0, {"duration_s": round(rng.uniform(0.5, 2.0) * scale, 2)})]
        return [Fault(kind, 0.0, {})]
