"""Runtime behaviour over real loopback sockets against the simulator.

Slow consumers, the control outbox, TLS verification, proxies, secrets,
capture + replay. Waiting happens in virtual time (``looptime``) except where a
real TLS handshake or subprocess is involved.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import ssl
import stat
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trustme
import websockets
from websockets.asyncio.server import ServerConnection, serve

import gapless
from gapless import kraken
from gapless.checker import check
from gapless.demo import demo_client_options, run_demo
from gapless.errors import ConfigError, OutboxFull
from gapless.events import (
    BookSnapshot,
    ConnectionState,
    Event,
    Gap,
    GapCause,
    Subscribed,
    Trade,
)
from gapless.replay import replay
from gapless.runtime.clock import loop_anchored_wall_clock
from gapless.runtime.feed import Feed, VenueLimits
from gapless.runtime.supervisor import RuntimeOptions
from gapless.runtime.transport import TransportOptions
from gapless.secrets import Credentials, Secret
from gapless.sim import Fault, KrakenSim, Scenario, SimConfig


async def _collect(feed: Feed, sink: list[Event]) -> None:
    async for ev in feed:
        sink.append(ev)


async def _wait_for(pred: Any, limit_s: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + limit_s
    while not pred():
        if loop.time() > end:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def _sim(**kw: Any) -> AsyncIterator[KrakenSim]:
    cfg = SimConfig(seed=5, symbols=("BTC/USD", "ETH/USD"), tick_rate_hz=40.0, **kw)
    async with KrakenSim(cfg) as sim:
        yield sim


def _opts(url: str, **runtime: Any) -> tuple[Any, RuntimeOptions]:
    kopts, ropts = demo_client_options(url)
    ropts = dataclasses.replace(ropts, wall_clock=loop_anchored_wall_clock(), **runtime)
    return kopts, ropts


@pytest.mark.looptime
async def test_slow_consumer_declares_overflow_gap_and_resyncs() -> None:
    """A consumer that blocks for seconds: the socket keeps being read, the
    bounded queue overflows, the overflow is a declared gap and a resync, and
    the checker still finds nothing lost."""
    async with _sim() as sim:
        kopts, ropts = _opts(sim.url, queue_size=20)
        events: list[Event] = []
        async with gapless.connect(
            kraken.book("BTC/USD"),
            kraken.trades("BTC/USD"),
            kraken=kopts,
            runtime=ropts,
            queue_size=5,
        ) as feed:
            # do not consume at all for 4 s of (virtual) time: user code is blocked
            await asyncio.sleep(4.0)
            consumer = asyncio.create_task(_collect(feed, events))
            await asyncio.sleep(4.0)
            await sim.quiesce()
            final = sim.final_books()
            view = feed.book("BTC/USD")
            await _wait_for(
                lambda: (
                    view is not None
                    and view.valid
                    and view.checksum() == final[("BTC/USD", 10)]["checksum"]
                )
            )
            stats = feed.stats()
            consumer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await consumer
            frozen = {("BTC/USD", 10): feed.book("BTC/USD")}
            report = check(
                sim.truth, [*events, *feed.drain()], final_books=final, client_books=frozen
            )
    assert stats["kraken#1"]["frames_dropped"] > 0
    causes = {g.cause for g in events if isinstance(g, Gap)}
    assert GapCause.QUEUE_OVERFLOW in causes
    assert report.lost == 0
    assert report.duplicated == 0
    assert report.unexpected == 0
    assert report.in_declared_gaps > 0
    assert report.books_equal, report.book_diffs


@pytest.mark.looptime
async def test_slow_consumer_with_backpressure_loses_nothing_and_declares_no_gap() -> None:
    """``overflow="backpressure"``: the same blocked consumer makes the reader wait
    for room instead of dropping; no frame is dropped, no gap is declared, and
    every trade the simulator published is delivered."""
    async with _sim() as sim:
        kopts, ropts = _opts(sim.url, queue_size=20, overflow="backpressure")
        events: list[Event] = []
        async with gapless.connect(
            kraken.book("BTC/USD"),
            kraken.trades("BTC/USD"),
            kraken=kopts,
            runtime=ropts,
            queue_size=5,
        ) as feed:
            await asyncio.sleep(4.0)
            consumer = asyncio.create_task(_collect(feed, events))
            await asyncio.sleep(4.0)
            await sim.quiesce()
            final = sim.final_books()
            view = feed.book("BTC/USD")
            await _wait_for(
                lambda: (
                    view is not None
                    and view.valid
                    and view.checksum() == final[("BTC/USD", 10)]["checksum"]
                )
            )
            stats = feed.stats()
            consumer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await consumer
            frozen = {("BTC/USD", 10): feed.book("BTC/USD")}
            report = check(
                sim.truth, [*events, *feed.drain()], final_books=final, client_books=frozen
            )
    assert stats["kraken#1"]["frames_dropped"] == 0
    assert not [g for g in events if isinstance(g, Gap)]
    assert report.lost == 0
    assert report.duplicated == 0
    assert report.unexpected == 0
    assert report.in_declared_gaps == 0
    assert report.books_equal, report.book_diffs


def test_runtime_options_refuse_an_unknown_overflow_policy() -> None:
    with pytest.raises(ConfigError, match="overflow"):
        RuntimeOptions(overflow="drop")


@pytest.mark.looptime
async def test_outbox_queues_subscriptions_made_while_disconnected() -> None:
    async with _sim() as sim:
        kopts, ropts = _opts(sim.url)
        events: list[Event] = []
        async with gapless.connect(kraken.trades("BTC/USD"), kraken=kopts, runtime=ropts) as feed:
            consumer = asyncio.create_task(_collect(feed, events))
            await _wait_for(lambda: any(isinstance(e, Subscribed) for e in events))
            await sim.inject(Fault.make("ban", duration_s=5.0, retry_after_s=3.0))
            await _wait_for(
                lambda: any(
                    isinstance(e, ConnectionState) and e.state == "CIRCUIT_OPEN" for e in events
                )
            )
            feed.subscribe(kraken.book("ETH/USD", depth=25))  # while disconnected
            feed.subscribe(kraken.trades("ETH/USD"))
            await _wait_for(
                lambda: any(isinstance(e, BookSnapshot) and e.symbol == "ETH/USD" for e in events)
            )
            await _wait_for(
                lambda: any(isinstance(e, Trade) and e.symbol == "ETH/USD" for e in events)
            )
            book = feed.book("ETH/USD")
            assert book is not None
            assert book.valid
            assert book.depth == 25
            consumer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await consumer


async def test_outbox_is_bounded() -> None:
    feed = gapless.connect(
        kraken.trades("BTC/USD"),
        urls={"kraken": "ws://127.0.0.1:9/v2"},
        runtime=RuntimeOptions(outbox_size=2),
    )
    async with feed:
        feed.subscribe(kraken.trades("ETH/USD"))
        feed.subscribe(kraken.trades("ALGO/USD"))
        with pytest.raises(OutboxFull):
            feed.subscribe(kraken.ticker("ETH/USD"))


async def _tls_echo_server(ctx: ssl.SSLContext) -> tuple[Any, int]:
    async def handler(ws: ServerConnection) -> None:
        await ws.send('{"channel":"status","type":"update","data":[{"system":"online"}]}')
        with contextlib.suppress(websockets.ConnectionClosed):
            await ws.wait_closed()

    server = await serve(handler, "127.0.0.1", 0, ssl=ctx)
    port = next(iter(server.sockets)).getsockname()[1]
    return server, port


async def test_tls_is_verified_by_default_and_accepts_a_supplied_ca() -> None:
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    server, port = await _tls_echo_server(server_ctx)
    url = f"wss://127.0.0.1:{port}/v2"
    try:
        # default: certificate verification on -> the self-signed server is refused
        events: list[Event] = []
        ropts = RuntimeOptions(give_up_after=2)
        with pytest.raises(BaseExceptionGroup) as info:
            async with gapless.connect(
                kraken.trades("BTC/USD"), urls={"kraken": url}, runtime=ropts
            ) as feed:
                await _collect(feed, events)
        assert "gave up" in str(info.value.exceptions[0])
        refusals = [e for e in events if isinstance(e, ConnectionState) and e.state == "BACKOFF"]
        assert refusals
        assert "CERTIFICATE_VERIFY_FAILED" in refusals[0].reason
        # with the CA supplied, the same server is accepted
        client_ctx = ssl.create_default_context()
        ca.configure_trust(client_ctx)
        ropts = RuntimeOptions(transport=TransportOptions(ssl_context=client_ctx))
        async with gapless.connect(
            kraken.trades("BTC/USD"), urls={"kraken": url}, runtime=ropts
        ) as feed:
            async for ev in feed:
                if isinstance(ev, ConnectionState) and ev.state == "SUBSCRIBING":
                    break
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.looptime
async def test_no_proxy_is_picked_up_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "https_proxy", "all_proxy"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")  # nothing listens there
    async with _sim() as sim:
        kopts, ropts = _opts(sim.url)
        async with gapless.connect(kraken.trades("BTC/USD"), kraken=kopts, runtime=ropts) as feed:
            async for ev in feed:
                if isinstance(ev, Subscribed):
                    break


FAKE_KEY = "CANARYKEY0123456789abcdefDEADBEEF"
FAKE_SECRET = "Q0FOQVJZLXNlY3JldC1zaG91bGQtbmV2ZXItbGVhaw=="


@pytest.mark.looptime
async def test_secrets_canary_never_in_logs_or_captures(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    monkeypatch.setenv("GAPLESS_KRAKEN_API_KEY", FAKE_KEY)
    monkeypatch.setenv("GAPLESS_KRAKEN_API_SECRET", FAKE_SECRET)
    caplog.set_level(logging.DEBUG)
    capture = tmp_path / "cap.jsonl"
    async with _sim() as sim:
        kopts, ropts = _opts(sim.url)
        async with gapless.connect(
            kraken.book("BTC/USD"), kraken=kopts, runtime=ropts, capture=str(capture)
        ) as feed:
            assert feed.credentials["kraken"].api_key == Secret(FAKE_KEY)
            snapshots = 0
            async for ev in feed:
                if isinstance(ev, BookSnapshot):
                    snapshots += 1
                    if snapshots == 1:
                        await sim.inject(Fault.make("abort"))  # reconnect: more traffic
                    else:
                        break
            text = repr(feed.credentials) + str(feed.credentials["kraken"])
    logged = caplog.text + "\n".join(repr(r.args) for r in caplog.records)
    assert "credentials for kraken" in caplog.text  # the DEBUG line exists, masked
    for blob in (logged, capture.read_text(), text):
        assert FAKE_KEY not in blob
        assert FAKE_SECRET not in blob
    assert stat.S_IMODE(os.stat(capture).st_mode) == 0o600


def test_credentials_from_env_need_both_parts() -> None:
    assert Credentials.from_env("kraken", {}) is None
    creds = Credentials.from_env(
        "kraken", {"GAPLESS_KRAKEN_API_KEY": "k", "GAPLESS_KRAKEN_API_SECRET": "zz-secret-zz"}
    )
    assert creds is not None
    assert creds.api_secret.reveal() == "zz-secret-zz"
    assert "zz-secret-zz" not in f"{creds.api_secret}" + repr(creds) + str(creds)
    with pytest.raises(gapless.errors.ConfigError):
        Credentials.from_env("kraken", {"GAPLESS_KRAKEN_API_KEY": "k"})


@pytest.mark.looptime
async def test_capture_replays_deterministically_to_the_live_result(tmp_path: Path) -> None:
    capture = tmp_path / "cap.jsonl"
    scenario = Scenario(
        [
            Fault.make("corrupt_checksum", 2.0, symbol="BTC/USD"),
            Fault.make("abort", 4.0),
            Fault.make("drop_update", 6.0, symbol="ETH/USD"),
        ]
    )
    result = await run_demo(
        9.0,
        seed=4,
        venues=("kraken",),
        symbols=("BTC/USD", "ETH/USD"),
        scenario=scenario,
        tick_rate_hz=20.0,
        capture=str(capture),
    )
    live = result.summary
    assert live["lost"] == 0
    first = replay(capture).summary()
    second = replay(capture).summary()
    assert first == second
    assert first["checksum_ok"] == live["checksum_ok"]
    assert first["checksum_mismatch"] == live["checksum_mismatch"] >= 2
    assert first["gaps"] == live["gaps"]
    assert set(first["books"]) == {"kraken:BTC/USD", "kraken:ETH/USD"}
    for b in first["books"].values():
        assert b["valid"]
        assert b["best_bid"] is not None
        assert float(b["best_bid"]) < float(b["best_ask"])
    # the CLI prints the same summary as its last line
    proc = subprocess.run(  # noqa: ASYNC221 - a finished run; nothing else is on the loop
        [sys.executable, "-m", "gapless.cli", "replay", str(capture), "--summary-json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == first


@pytest.mark.looptime
async def test_connection_attempts_are_paced_by_the_venue_budget() -> None:
    """A link that keeps dropping: the per-venue token bucket spaces the dials, and
    the simulator's connection-rate rule (5 per 20 s: just above the bucket's 2 + 0.1 x 20)
    is never tripped."""
    async with _sim(connect_limit=5, connect_window_s=20.0, ban_s=60.0) as sim:
        kopts, ropts = _opts(sim.url)
        events: list[Event] = []
        limits = {"kraken": VenueLimits(burst=2, per_second=0.1)}
        async with gapless.connect(
            kraken.trades("BTC/USD"), kraken=kopts, runtime=ropts, limits=limits
        ) as feed:
            consumer = asyncio.create_task(_collect(feed, events))
            loop = asyncio.get_running_loop()
            end = loop.time() + 16.0
            while loop.time() < end:
                await _wait_for(lambda: feed.supervisors[0].state.value == "LIVE")
                await sim.inject(Fault.make("abort"))
                await asyncio.sleep(0.05)
            consumer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await consumer
            dials = feed.supervisors[0].stats.dials
            budget_waits = feed.supervisors[0].stats.budget_waits
    assert budget_waits > 0, "the bucket never had to wait"
    assert dials <= 2 + 0.1 * 17 + 1
    assert not [r for r in sim.truth if r.get("k") == "violation"]
    assert not [r for r in sim.truth if r.get("k") == "refused"]


@pytest.mark.looptime
@pytest.mark.parametrize("steps", range(0, 40, 2))
async def test_closing_as_a_session_ends_on_its_own_still_stops_the_feed(steps: int) -> None:
    """The venue drops the connection and the feed is closed in the same moment.

    A cancellation that lands just as the session's own end ripples through its
    TaskGroup is absorbed there (the children's error takes priority over the
    parent's CancelledError). The supervisor must still stop, not dial again and
    wait in a new session forever. ``steps`` sweeps the close across the loop
    iterations that follow the drop."""
    async with _sim() as sim:
        kopts, ropts = _opts(sim.url)
        async with gapless.connect(kraken.trades("BTC/USD"), kraken=kopts, runtime=ropts) as feed:
            await _wait_for(lambda: feed.supervisors[0].state.value == "LIVE")
            await sim.inject(Fault.make("abort"))
            for _ in range(steps):
                await asyncio.sleep(0)
            async with asyncio.timeout(10.0):
                await feed.aclose()
    assert feed.supervisors[0].state.value == "CLOSED"
