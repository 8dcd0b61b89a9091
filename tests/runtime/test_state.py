"""Unit tests for gapless.runtime.state: the supervisor's transition table (design.md §3)."""

from __future__ import annotations

import itertools

import pytest

from gapless.errors import LocalProtocolError
from gapless.runtime.state import TRANSITIONS, ConnState, StateMachine

S = ConnState
ALLOWED = [(a, b) for a, targets in TRANSITIONS.items() for b in sorted(targets)]
ILLEGAL = [(a, b) for a, b in itertools.product(S, S) if b not in TRANSITIONS[a]]


def _machine_in(state: ConnState) -> StateMachine:
    """Walk legal transitions from IDLE to ``state`` (the table is the only way in)."""
    paths: dict[ConnState, list[ConnState]] = {
        S.IDLE: [],
        S.CONNECTING: [S.CONNECTING],
        S.AUTHENTICATING: [S.CONNECTING, S.AUTHENTICATING],
        S.SUBSCRIBING: [S.CONNECTING, S.SUBSCRIBING],
        S.SYNCING: [S.CONNECTING, S.SUBSCRIBING, S.SYNCING],
        S.LIVE: [S.CONNECTING, S.SUBSCRIBING, S.SYNCING, S.LIVE],
        S.RECONNECTING: [S.CONNECTING, S.SUBSCRIBING, S.RECONNECTING],
        S.BACKOFF: [S.BACKOFF],
        S.CIRCUIT_OPEN: [S.CONNECTING, S.CIRCUIT_OPEN],
        S.MAINTENANCE: [S.CONNECTING, S.MAINTENANCE],
        S.CLOSED: [S.CLOSED],
    }
    m = StateMachine()
    for step in paths[state]:
        m.transition(step, "setup")
    assert m.state is state
    return m


def test_every_state_has_a_row() -> None:
    assert set(TRANSITIONS) == set(S)


def test_states_are_strings() -> None:
    assert S.LIVE == "LIVE"
    assert str(S.CIRCUIT_OPEN) == "CIRCUIT_OPEN"


def test_starts_idle_with_empty_history() -> None:
    m = StateMachine()
    assert m.state is S.IDLE
    assert m.history == []


@pytest.mark.parametrize(("src", "dst"), ALLOWED, ids=[f"{a}->{b}" for a, b in ALLOWED])
def test_every_allowed_transition_works(src: ConnState, dst: ConnState) -> None:
    m = _machine_in(src)
    assert m.can(dst)
    n = len(m.history)
    assert m.transition(dst, "because") is src
    assert m.state is dst
    assert m.history[-1] == (src, dst, "because")
    assert len(m.history) == n + 1


# every illegal move out of a sample of states, plus a few that matter most
ILLEGAL_SAMPLE = [
    (S.IDLE, S.LIVE),
    (S.IDLE, S.IDLE),
    (S.CONNECTING, S.LIVE),  # LIVE only after subscribing/syncing
    (S.CONNECTING, S.CONNECTING),
    (S.BACKOFF, S.LIVE),
    (S.BACKOFF, S.BACKOFF),
    (S.MAINTENANCE, S.SUBSCRIBING),
    (S.LIVE, S.CONNECTING),  # must go through RECONNECTING
    (S.LIVE, S.BACKOFF),
    (S.LIVE, S.IDLE),
    (S.RECONNECTING, S.LIVE),
    (S.AUTHENTICATING, S.LIVE),
    *[(S.CLOSED, b) for b in S],  # CLOSED is terminal
]


@pytest.mark.parametrize(
    ("src", "dst"), ILLEGAL_SAMPLE, ids=[f"{a}->{b}" for a, b in ILLEGAL_SAMPLE]
)
def test_illegal_transitions_raise(src: ConnState, dst: ConnState) -> None:
    assert (src, dst) in ILLEGAL
    m = _machine_in(src)
    assert not m.can(dst)
    n = len(m.history)
    with pytest.raises(LocalProtocolError, match=f"{src} -> {dst}"):
        m.transition(dst, "oops")
    assert m.state is src  # unchanged
    assert len(m.history) == n


def test_all_illegal_transitions_raise() -> None:
    for src, dst in ILLEGAL:
        m = _machine_in(src)
        with pytest.raises(LocalProtocolError):
            m.transition(dst, "x")


def test_connected_states_can_be_reentered() -> None:
    for s in (S.SUBSCRIBING, S.SYNCING, S.LIVE):
        m = _machine_in(s)
        assert m.transition(s, "phase changed") is s


def test_history_is_bounded() -> None:
    m = _machine_in(S.LIVE)
    for i in range(1000):
        m.transition(S.SYNCING if i % 2 else S.LIVE, "flap")
    assert 128 <= len(m.history) <= 256
    assert m.history[-1][2] == "flap"
