"""Kraken private channels end to end over loopback against the simulator:
orders fill while the client is disconnected, private sequence jumps, token
expiry, the order gate, and the dead man's switch (clean close vs killed client).

Virtual time (``looptime``) except the kill test, which runs a real client
process and kills it with SIGKILL.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

import gapless
from gapless import kraken
from gapless.demo import demo_client_options, demo_private_options
from gapless.demo_private import compare_balances, compare_orders
from gapless.errors import OrderRefused
from gapless.events import (
    DeadMansSwitch,
    Event,
    Gap,
    GapCause,
    OrderResponse,
    OrderUpdate,
    Reconciled,
)
from gapless.runtime.clock import loop_anchored_wall_clock
from gapless.runtime.feed import Feed
from gapless.secrets import Credentials, Secret
from gapless.sim import Fault, KrakenSim, SimConfig
from gapless.sim.accounts import DEMO_KRAKEN_ACCOUNT

SYMBOL = "BTC/USD"
CREDS = Credentials(
    "kraken", Secret(DEMO_KRAKEN_ACCOUNT.api_key), Secret(DEMO_KRAKEN_ACCOUNT.api_secret)
)


@asynccontextmanager
async def running(sim: KrakenSim, events: list[Event], **private: Any) -> AsyncIterator[Feed]:
    kopts, ropts = demo_client_options(sim.url)
    ropts = dataclasses.replace(ropts, wall_clock=loop_anchored_wall_clock())
    popts = dataclasses.replace(demo_private_options(), **private)
    feed = gapless.connect(
        kraken.book(SYMBOL),
        kraken.executions(),
        kraken.balances(),
        urls={"kraken": sim.url, "kraken_auth": sim.auth_url, "kraken_rest": sim.rest_url},
        kraken=kopts,
        runtime=ropts,
        kraken_private=popts,
        credentials={"kraken": CREDS},
    )
    async with feed:
        task = asyncio.create_task(_consume(feed, events))
        try:
            yield feed
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def _consume(feed: Feed, sink: list[Event]) -> None:
    async for ev in feed:
        sink.append(ev)


async def wait_for(pred: Any, limit_s: float = 20.0) -> None:
    """Poll ``pred`` (state lives in the feed and the simulator, no event to await)."""
    async with asyncio.timeout(limit_s):
        while not pred():  # noqa: ASYNC110
            await asyncio.sleep(0.05)


def reconciled(events: list[Event], reason: str | None = None) -> int:
    return sum(
        1 for e in events if isinstance(e, Reconciled) and (reason is None or e.reason == reason)
    )


async def place_resting(feed: Feed, n: int) -> list[OrderResponse]:
    """``n`` post-only limit orders at and near the touch (the market fills them)."""
    view = feed.book(SYMBOL)
    assert view is not None
    assert view.valid
    bid, ask = view.best_bid(), view.best_ask()
    assert bid is not None
    assert ask is not None
    out = []
    for i in range(n):
        side = "buy" if i % 2 == 0 else "sell"
        price = bid.price if side == "buy" else ask.price
        out.append(
            await feed.add_order(
                "kraken",
                symbol=SYMBOL,
                side=side,
                qty=Decimal("0.01"),
                limit_price=price,
                post_only=True,
                cl_ord_id=f"t-{i}",
            )
        )
    return out


async def converged(feed: Feed, sim: KrakenSim) -> tuple[list[str], list[str]]:
    diffs: tuple[list[str], list[str]] = ([], [])

    def equal() -> bool:
        nonlocal diffs
        diffs = (
            compare_orders(feed.orders("kraken"), sim.final_orders()),
            compare_balances(feed.balances("kraken"), sim.final_balances()),
        )
        return not diffs[0] and not diffs[1]

    with contextlib.suppress(TimeoutError):
        await wait_for(equal, 15.0)
    return diffs


@pytest.mark.looptime
@pytest.mark.timeout(120)
async def test_orders_fill_while_disconnected_and_the_view_is_reconciled() -> None:
    events: list[Event] = []
    async with (
        KrakenSim(SimConfig(seed=5, symbols=(SYMBOL,), tick_rate_hz=30)) as sim,
        running(sim, events) as feed,
    ):
        await wait_for(lambda: reconciled(events, "initial snapshot") >= 1)
        await wait_for(lambda: (v := feed.book(SYMBOL)) is not None and v.valid)
        answers = await place_resting(feed, 6)
        assert all(a.outcome == "accepted" for a in answers), answers
        assert (
            len(feed.open_orders("kraken"))
            + sum(1 for o in feed.orders("kraken").values() if not o.is_open)
            >= 6
        )
        await sim.inject(Fault("fill_while_disconnected", params={"fraction": 1.0}))
        await wait_for(lambda: reconciled(events, "reconnect") >= 1)
        gaps = [e for e in events if isinstance(e, Gap) and e.stream.startswith("kraken:exec")]
        assert gaps
        assert gaps[0].cause is GapCause.DISCONNECT
        rec = [e for e in events if isinstance(e, OrderUpdate) and e.source == "reconciled"]
        assert rec, "the fills made while disconnected were delivered as reconciled changes"
        await sim.quiesce()
        order_diffs, balance_diffs = await converged(feed, sim)
        assert order_diffs == []
        assert balance_diffs == []


@pytest.mark.looptime
@pytest.mark.timeout(120)
@pytest.mark.parametrize("channel", ["executions", "balances"])
async def test_private_sequence_jump_is_a_gap_and_heals(channel: str) -> None:
    events: list[Event] = []
    async with (
        KrakenSim(SimConfig(seed=6, symbols=(SYMBOL,), tick_rate_hz=30)) as sim,
        running(sim, events) as feed,
    ):
        await wait_for(lambda: reconciled(events) >= 1)
        await wait_for(lambda: (v := feed.book(SYMBOL)) is not None and v.valid)
        await sim.inject(Fault("private_sequence_jump", params={"channel": channel}))
        # a marketable order: executions (new, trade, filled) and ledger entries; the
        # first message of ``channel`` is withheld by the simulator
        view = feed.book(SYMBOL)
        assert view is not None
        ask = view.best_ask()
        assert ask is not None
        resp = await feed.add_order(
            "kraken",
            symbol=SYMBOL,
            side="buy",
            qty=Decimal("0.01"),
            limit_price=ask.price,
            time_in_force="ioc",
        )
        assert resp.outcome == "accepted"
        await wait_for(lambda: reconciled(events, "sequence gap") >= 1)
        gaps = [e for e in events if isinstance(e, Gap) and e.stream == f"kraken:{channel}:*"]
        assert [g.cause for g in gaps] == [GapCause.SEQUENCE_GAP]
        assert gaps[0].first_seq is not None
        assert gaps[0].last_seq is not None
        assert gaps[0].first_seq <= gaps[0].last_seq
        await sim.quiesce()
        order_diffs, balance_diffs = await converged(feed, sim)
        assert order_diffs == []
        assert balance_diffs == []


@pytest.mark.looptime
@pytest.mark.timeout(120)
async def test_token_expiry_fetches_a_fresh_token() -> None:
    events: list[Event] = []
    async with (
        KrakenSim(SimConfig(seed=8, symbols=(SYMBOL,), tick_rate_hz=30)) as sim,
        running(sim, events) as feed,
    ):
        await wait_for(lambda: reconciled(events) >= 1)
        adapter = feed._private["kraken"]
        tokens_before = adapter.stats.tokens
        await sim.inject(Fault("token_expiry", params={"then_close": True}))
        await wait_for(lambda: reconciled(events) >= 2)
        assert adapter.stats.tokens > tokens_before


@pytest.mark.looptime
@pytest.mark.timeout(120)
async def test_order_gate_follows_the_system_status() -> None:
    events: list[Event] = []
    async with (
        KrakenSim(SimConfig(seed=9, symbols=(SYMBOL,), tick_rate_hz=30)) as sim,
        running(sim, events) as feed,
    ):
        await wait_for(lambda: reconciled(events) >= 1)
        await wait_for(lambda: (v := feed.book(SYMBOL)) is not None and v.valid)
        await place_resting(feed, 2)
        await sim.inject(Fault("status", params={"system": "cancel_only"}))
        await wait_for(lambda: getattr(feed._private["kraken"], "system", None) == "cancel_only")
        with pytest.raises(OrderRefused) as info:
            await place_resting(feed, 1)
        assert info.value.reason == "cancel_only"
        resp = await feed.cancel_all("kraken")
        assert resp.outcome == "accepted"
        await sim.inject(Fault("status", params={"system": "online"}))
        await wait_for(lambda: getattr(feed._private["kraken"], "system", None) == "online")
        assert (await place_resting(feed, 1))[0].outcome == "accepted"


@pytest.mark.looptime
@pytest.mark.timeout(120)
async def test_clean_close_disarms_the_switch_and_orders_stay() -> None:
    events: list[Event] = []
    async with KrakenSim(SimConfig(seed=10, symbols=(SYMBOL,), tick_rate_hz=5)) as sim:
        async with running(sim, events, dms_timeout_s=4, dms_refresh_s=1.0) as feed:
            await wait_for(lambda: reconciled(events) >= 1)
            await wait_for(lambda: (v := feed.book(SYMBOL)) is not None and v.valid)
            view = feed.book(SYMBOL)
            assert view is not None
            bid = view.best_bid()
            assert bid is not None
            far = (bid.price / 2).quantize(bid.price)
            for i in range(3):
                r = await feed.add_order(
                    "kraken",
                    symbol=SYMBOL,
                    side="buy",
                    qty=Decimal("0.01"),
                    limit_price=far,
                    cl_ord_id=f"far-{i}",
                )
                assert r.outcome == "accepted"
            await wait_for(
                lambda: any(isinstance(e, DeadMansSwitch) and e.state == "armed" for e in events)
            )
        # the block ended: a clean close disarmed the switch before closing
        assert any(
            isinstance(e, DeadMansSwitch) and e.state == "disarmed" for e in events + feed.drain()
        )
        await asyncio.sleep(10)  # well past the 4 s timeout
        open_in_sim = [o for o in sim.final_orders().values() if o["status"] == "new"]
        assert len(open_in_sim) == 3
        assert not [r for r in sim.truth if r.get("k") == "dms_fired"]


CLIENT = textwrap.dedent(
    """
    import asyncio, sys
    from decimal import Decimal
    import gapless
    from gapless import kraken
    from gapless.secrets import Credentials, Secret
    from gapless.venues.kraken.private import KrakenPrivateOptions

    async def main(url, auth, rest, key, secret):
        creds = Credentials("kraken", Secret(key), Secret(secret))
        opts = KrakenPrivateOptions(dms_timeout_s=3, dms_refresh_s=1.0)
        async with gapless.connect(
            kraken.executions(), kraken.balances(),
            urls={"kraken": url, "kraken_auth": auth, "kraken_rest": rest},
            kraken_private=opts, credentials={"kraken": creds},
        ) as feed:
            placed = armed = False
            async for ev in feed:
                if isinstance(ev, gapless.DeadMansSwitch) and ev.state == "armed":
                    armed = True
                if isinstance(ev, gapless.Reconciled) and not placed:
                    for i in range(3):
                        r = await feed.add_order("kraken", symbol="BTC/USD", side="buy",
                                                 qty=Decimal("0.01"), limit_price=Decimal("1000.0"))
                        assert r.outcome == "accepted", r
                    placed = True
                if placed and armed:
                    print("READY", flush=True)
                    await asyncio.sleep(3600)

    asyncio.run(main(*sys.argv[1:]))
    """
)


@pytest.mark.timeout(120)
async def test_killed_client_leaves_the_switch_to_cancel_its_orders(tmp_path: Path) -> None:
    script = tmp_path / "client.py"
    script.write_text(CLIENT)
    async with KrakenSim(SimConfig(seed=11, symbols=(SYMBOL,), tick_rate_hz=5)) as sim:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(script),
            sim.url,
            sim.auth_url,
            sim.rest_url,
            DEMO_KRAKEN_ACCOUNT.api_key,
            DEMO_KRAKEN_ACCOUNT.api_secret,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": str(Path(gapless.__file__).parents[1])},
        )
        try:
            assert proc.stdout is not None
            async with asyncio.timeout(60):
                line = await proc.stdout.readline()
            assert line.strip() == b"READY", line
            assert sum(1 for o in sim.final_orders().values() if o["status"] == "new") == 3
            proc.send_signal(signal.SIGKILL)
            await proc.wait()
            killed_at = asyncio.get_running_loop().time()
            # nobody refreshes the switch now: the venue cancels everything after 3 s
            await wait_for(
                lambda: all(o["status"] != "new" for o in sim.final_orders().values()), 15
            )
            waited = asyncio.get_running_loop().time() - killed_at
            assert waited <= 3.0 + 1.5
            assert [r for r in sim.truth if r.get("k") == "dms_fired"]
            assert {o["status"] for o in sim.final_orders().values()} == {"canceled"}
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
