"""Supervisor states as data: an enum, a transition table and one guard (design.md §3).

Every transition goes through :meth:`StateMachine.transition`, which refuses
moves the table does not allow (that would be a bug in gapless, so it raises
:class:`~gapless.errors.LocalProtocolError`) and returns the event to emit.
"""

from __future__ import annotations

import enum

from gapless.errors import LocalProtocolError

__all__ = ["TRANSITIONS", "ConnState", "StateMachine"]


class ConnState(enum.StrEnum):
    IDLE = "IDLE"
    CONNECTING = "CONNECTING"
    AUTHENTICATING = "AUTHENTICATING"
    SUBSCRIBING = "SUBSCRIBING"
    SYNCING = "SYNCING"
    LIVE = "LIVE"
    RECONNECTING = "RECONNECTING"
    BACKOFF = "BACKOFF"
    CIRCUIT_OPEN = "CIRCUIT_OPEN"
    MAINTENANCE = "MAINTENANCE"
    CLOSED = "CLOSED"


S = ConnState
_CONNECTED = {S.SUBSCRIBING, S.SYNCING, S.LIVE}

TRANSITIONS: dict[ConnState, frozenset[ConnState]] = {
    S.IDLE: frozenset({S.CONNECTING, S.BACKOFF, S.CLOSED}),
    S.CONNECTING: frozenset(
        {S.AUTHENTICATING, S.SUBSCRIBING, S.BACKOFF, S.CIRCUIT_OPEN, S.MAINTENANCE, S.CLOSED}
    ),
    S.AUTHENTICATING: frozenset({S.SUBSCRIBING, S.RECONNECTING, S.MAINTENANCE, S.CLOSED}),
    S.SUBSCRIBING: frozenset(_CONNECTED | {S.RECONNECTING, S.MAINTENANCE, S.CLOSED}),
    S.SYNCING: frozenset(_CONNECTED | {S.RECONNECTING, S.MAINTENANCE, S.CLOSED}),
    S.LIVE: frozenset(_CONNECTED | {S.RECONNECTING, S.MAINTENANCE, S.CLOSED}),
    S.RECONNECTING: frozenset({S.CONNECTING, S.BACKOFF, S.CIRCUIT_OPEN, S.MAINTENANCE, S.CLOSED}),
    S.BACKOFF: frozenset({S.CONNECTING, S.CLOSED}),
    S.CIRCUIT_OPEN: frozenset({S.CONNECTING, S.CLOSED}),
    S.MAINTENANCE: frozenset({S.CONNECTING, S.CLOSED}),
    S.CLOSED: frozenset(),
}


class StateMachine:
    """Holds the current state; :meth:`transition` enforces the table."""

    def __init__(self) -> None:
        self.state = ConnState.IDLE
        self.history: list[tuple[ConnState, ConnState, str]] = []

    def can(self, to: ConnState) -> bool:
        return to in TRANSITIONS[self.state]

    def transition(self, to: ConnState, reason: str) -> ConnState:
        """Move to ``to``; returns the previous state. Same-state moves are no-ops
        for connected states (they are re-entered as phases change)."""
        prev = self.state
        if to not in TRANSITIONS[prev]:
            raise LocalProtocolError(f"illegal supervisor transition {prev} -> {to} ({reason})")
        self.state = to
        if len(self.history) >= 256:
            del self.history[:128]
        self.history.append((prev, to, reason))
        return prev
