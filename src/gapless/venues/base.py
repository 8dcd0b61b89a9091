"""The seam between the venue-agnostic runtime and a venue (pure, no I/O).

The runtime (``gapless.runtime``) owns sockets, clocks, backoff and
watchdogs; it knows no venue by name. A venue adapter owns the protocol state
of one logical connection: subscriptions, books, sequence checks and gap
bookkeeping. The runtime calls it with what happened (``on_connected``,
``on_frame``, ``on_disconnected``, ``on_timer``, ``on_overflow``) and the adapter
answers with a :class:`Step`: events to deliver, frames to send, and requests
to the runtime (reconnect, system status). Time always comes in as an argument
(:class:`Now`), so adapters are deterministic and replayable.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

import msgspec

from gapless.events import Event

__all__ = [
    "CountedState",
    "Now",
    "Phase",
    "RestCall",
    "RestResult",
    "Step",
    "StreamSpec",
    "VenueAdapter",
]

S = TypeVar("S", bound=enum.Enum)


@dataclass(frozen=True, slots=True)
class StreamSpec:
    """What a user asks for: ``kraken.book("BTC/USD", depth=10)`` builds one."""

    venue: str
    channel: str
    symbol: str
    depth: int | None = None

    @property
    def key(self) -> str:
        if self.depth is None:
            return f"{self.venue}:{self.channel}:{self.symbol}"
        return f"{self.venue}:{self.channel}:{self.symbol}:{self.depth}"


class Now(msgspec.Struct, frozen=True):
    """``mono``: runtime clock seconds (event loop time); ``wall_ns``: local epoch ns;
    ``backlog``: frames received but not processed yet. Deadlines about what the
    venue sent (acks, snapshots, pongs, staleness) are only judged when the
    backlog is empty: the answer may be waiting in the queue."""

    mono: float
    wall_ns: int
    backlog: int = 0


class Phase(enum.Enum):
    """How far the adapter got on the current connection (drives the supervisor)."""

    __hash__ = object.__hash__  # identity: members are singletons (C-speed dict keys)

    SUBSCRIBING = "subscribing"  # waiting for acks
    SYNCING = "syncing"  # acks in, waiting for verified snapshots
    LIVE = "live"  # nothing awaits an ack or snapshot (streams may wait to retry)


class CountedState(Generic[S]):
    """Base of an adapter's per-stream record whose ``state`` is counted: every
    change updates the adapter's per-state tally (shared ``counts``), so the
    adapter's ``phase`` is O(1) per frame instead of a scan of every stream
    (1,000 books on one connection). The state enum needs identity hashing
    (``__hash__ = object.__hash__``) to keep the tally cheap."""

    __slots__ = ("_counts", "_state")

    def __init__(self, counts: dict[S, int], initial: S) -> None:
        self._counts = counts
        self._state = initial
        counts[initial] += 1

    @property
    def state(self) -> S:
        return self._state

    @state.setter
    def state(self, new: S) -> None:
        counts = self._counts
        counts[self._state] -= 1
        counts[new] += 1
        self._state = new

    def forget(self) -> None:
        """The stream leaves the adapter: it no longer counts, even if a late answer
        (an ack still in flight) changes its state afterwards."""
        state = self._state
        self._counts[state] -= 1
        self._counts = dict.fromkeys(type(state), 0)
        self._counts[state] = 1


@dataclass(frozen=True, slots=True)
class RestCall:
    """A REST request the adapter needs (snapshot, token, reconciliation). ``key``
    correlates the answer; ``weight`` is what the venue's rate limit charges.

    ``private`` calls are signed: their params, headers, body and answer are
    never written to captures or logs (only the method, URL and status)."""

    key: str
    method: str
    url: str
    params: tuple[tuple[str, str], ...] = ()
    weight: float = 1.0
    headers: tuple[tuple[str, str], ...] = ()
    body: str | None = None
    private: bool = False

    def __repr__(self) -> str:
        shown = "<private>" if self.private else repr(self.params)
        return (
            f"RestCall(key={self.key!r}, method={self.method!r}, url={self.url!r}, params={shown})"
        )


@dataclass(frozen=True, slots=True)
class RestResult:
    """The answer to a :class:`RestCall`: a status and body, or ``error`` (no answer)."""

    key: str
    status: int | None
    body: bytes
    retry_after_s: float | None = None
    error: str | None = None


@dataclass(slots=True)
class Step:
    """What the adapter wants done. The runtime applies it in order:
    send ``sends``, deliver ``events``, then act on ``reconnect``."""

    events: list[Event] = field(default_factory=list)
    sends: list[str] = field(default_factory=list)
    reconnect: str | None = None
    system_status: str | None = None
    rest: list[RestCall] = field(default_factory=list)

    def extend(self, other: Step) -> None:
        self.events.extend(other.events)
        self.sends.extend(other.sends)
        self.rest.extend(other.rest)
        if other.reconnect and not self.reconnect:
            self.reconnect = other.reconnect
        if other.system_status:
            self.system_status = other.system_status


class VenueAdapter(Protocol):
    """What the runtime needs from a venue (one instance per logical connection)."""

    venue: str

    @property
    def url(self) -> str: ...

    @property
    def phase(self) -> Phase: ...

    def on_connected(self, conn: str, now: Now) -> Step: ...

    def on_frame(self, data: str | bytes, now: Now) -> Step: ...

    def on_disconnected(self, reason: str, now: Now) -> Step: ...

    def on_timer(self, now: Now) -> Step: ...

    def on_overflow(self, dropped: int, now: Now) -> Step: ...

    def on_bad_transport_frame(self, reason: str, size: int, now: Now) -> Step: ...

    def control(self, op: str, spec: StreamSpec, now: Now) -> Step: ...

    def on_rest(self, result: RestResult, now: Now) -> Step: ...

    def prepare_dial(self, now: Now) -> RestCall | None:
        """A REST call needed before each dial (KuCoin's bullet token), or None."""
        ...

    def on_dial_rest(self, result: RestResult, now: Now) -> str | None:
        """The pre-dial answer; returns None when usable (``url`` is then set),
        else the reason the dial cannot happen."""
        ...

    def on_dial_failed(self, reason: str, now: Now) -> None:
        """The dial to ``url`` failed (e.g. rotate to the next instance server)."""
        ...

    @property
    def min_dead_after_s(self) -> float:
        """The shortest silence that may mean a dead link for this venue."""
        ...

    def redactions(self) -> list[str]:
        """Secret strings the adapter put into URLs or frames (tokens), to be
        redacted from captures and logs."""
        ...

    def shutdown(self, now: Now) -> Step: ...
