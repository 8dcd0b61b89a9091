"""Make-before-break over loopback: planned closes produce no Gap (issue 3 item 7).

The Binance simulator announces closes with ``serverShutdown`` and closes
every connection at its (compressed) 24 h lifetime, and so does the KuCoin
simulator (§2.1); the client replaces the connection make-before-break
(:mod:`gapless.runtime.handover`). The checker must find nothing lost or
duplicated, the final books equal, and not a single ``Gap`` (planned closes
are not outages). When the venue closes too early for
the successor to catch up, the handover is forced and whatever could not be
covered is declared, precisely, with the planned-close detail.
"""

from __future__ import annotations

import dataclasses

import pytest
from harness import assert_no_silent_loss, run_faults
from test_binance_faults import BINANCE
from test_kucoin_faults import KUCOIN

from gapless.events import ConnectionState, Event, Gap
from gapless.runtime.handover import PLANNED_DETAIL
from gapless.sim import Fault

pytestmark = [pytest.mark.looptime, pytest.mark.timeout(120)]


def handovers(events: list[Event]) -> list[ConnectionState]:
    return [
        e
        for e in events
        if isinstance(e, ConnectionState) and e.reason.startswith("make-before-break handover")
    ]


def gaps(events: list[Event]) -> list[Gap]:
    return [e for e in events if isinstance(e, Gap)]


async def test_server_shutdown_is_handed_over_without_a_gap() -> None:
    run = await run_faults(BINANCE, [Fault.make("server_shutdown", 3.0, delay_s=5.0)])
    assert_no_silent_loss(run)
    assert gaps(run.events) == []
    (ho,) = handovers(run.events)
    assert "forced" not in ho.reason
    # the client retired the old connection itself, before the venue's 1001
    closes = [t for t in run.truth if t.get("k") == "conn_close"]
    assert any(t["how"] == "client" for t in closes)
    assert not any(t["how"] == "close:1001" for t in closes), closes


async def test_lifetime_is_handed_over_before_the_venue_closes() -> None:
    venue = dataclasses.replace(
        BINANCE,
        options=dataclasses.replace(BINANCE.options, lifetime_s=6.0, lifetime_margin_s=2.0),
    )
    run = await run_faults(venue, [], run_s=14.0, lifetime_s=6.0)
    assert_no_silent_loss(run)
    assert gaps(run.events) == []
    assert len(handovers(run.events)) >= 2
    closes = [t for t in run.truth if t.get("k") == "conn_close"]
    assert not any(t["how"].startswith("close:") for t in closes), closes


async def test_a_close_too_early_for_the_successor_is_forced_and_declared() -> None:
    # serverShutdown, then the 1001 almost at once: the successor is still syncing
    run = await run_faults(BINANCE, [Fault.make("server_shutdown", 3.0, delay_s=0.05)])
    assert_no_silent_loss(run)
    (ho,) = handovers(run.events)
    assert "forced" in ho.reason
    for gap in gaps(run.events):
        assert gap.detail.startswith(PLANNED_DETAIL), gap


async def test_kucoin_lifetime_is_handed_over_before_the_venue_closes() -> None:
    venue = dataclasses.replace(
        KUCOIN,
        options=dataclasses.replace(KUCOIN.options, lifetime_s=6.0, lifetime_margin_s=2.0),
    )
    run = await run_faults(venue, [], run_s=14.0, lifetime_s=6.0)
    assert_no_silent_loss(run)
    assert len(handovers(run.events)) >= 2
    assert gaps(run.events) == []
    closes = [t for t in run.truth if t.get("k") == "conn_close"]
    assert not any(t.get("cause") == "lifetime" for t in closes), closes
