"""``connect(kucoin.orders(), binance.orders(), ...)``: the feed wires KuCoin and
Binance private adapters (their order flows are tested under the supervisor in
tests/sim/test_sim_*_private.py); here the whole feed syncs, survives a private
disconnect with a Gap and a reconciliation, and its view equals the simulator's."""

from __future__ import annotations

import asyncio
import logging
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

import gapless
from gapless.errors import ConfigError, OrderRefused
from gapless.events import Event, Gap, GapCause, Reconciled
from gapless.secrets import Credentials, Secret
from gapless.sim import BinanceSim, BinanceSimConfig, Fault, KucoinSim, KucoinSimConfig
from gapless.sim.binance_private import DEMO_BINANCE_ACCOUNT
from gapless.sim.kucoin_private import DEMO_KUCOIN_ACCOUNT
from gapless.venues import binance, kucoin

pytestmark = [pytest.mark.looptime, pytest.mark.timeout(120)]


async def _wait(pred: Any, limit_s: float = 30.0) -> None:
    async with asyncio.timeout(limit_s):
        while not pred():  # noqa: ASYNC110
            await asyncio.sleep(0.05)


def _assert_no_secrets(creds: Credentials, *texts: str) -> None:
    """The key, secret and passphrase appear nowhere (design.md §1.6)."""
    for value in creds.secrets():
        for text in texts:
            assert value not in text


async def _run(feed: gapless.Feed, sim: Any, venue: str, fault: str) -> list[Event]:
    events: list[Event] = []

    async def consume() -> None:
        async for ev in feed:
            events.append(ev)

    def recs(reason: str) -> int:
        return sum(1 for e in events if isinstance(e, Reconciled) and e.reason == reason)

    async with feed:
        task = asyncio.create_task(consume())
        await _wait(lambda: recs("initial snapshot") == 1)
        want = {k: Decimal(v) for k, v in sim.final_balances().items()}
        assert {k: v for k, v in feed.balances(venue).items() if v or k in want} == want
        with pytest.raises(OrderRefused) as info:
            await feed.cancel_all(venue)
        assert info.value.reason == "unsupported"
        await sim.inject(Fault(fault))
        await _wait(lambda: recs("reconnect") >= 1)
        task.cancel()
    gaps = [e for e in events if isinstance(e, Gap)]
    assert {g.stream for g in gaps} >= {f"{venue}:orders:*", f"{venue}:balances:*"}
    assert all(g.cause is GapCause.DISCONNECT for g in gaps)
    return events


async def test_kucoin_private_feed(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    acct = DEMO_KUCOIN_ACCOUNT
    assert acct.passphrase is not None
    creds = Credentials(
        "kucoin", Secret(acct.api_key), Secret(acct.api_secret), Secret(acct.passphrase)
    )
    async with KucoinSim(KucoinSimConfig(seed=3, symbols=("BTC-USDT",))) as sim:
        feed = gapless.connect(
            kucoin.orders(),
            kucoin.balances(),
            urls={"kucoin_private_rest": sim.rest_url},
            credentials={"kucoin": creds},
            capture=str(tmp_path / "cap.jsonl"),
        )
        events = await _run(feed, sim, "kucoin", "private_fill_while_disconnected")
    cap = (tmp_path / "cap.jsonl").read_text()
    assert "bullet-private" in cap  # the signed calls were captured, without their secrets
    _assert_no_secrets(creds, cap, caplog.text, repr(events))


async def test_binance_private_feed(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    acct = DEMO_BINANCE_ACCOUNT
    creds = Credentials("binance", Secret(acct.api_key), Secret(acct.api_secret))
    async with BinanceSim(BinanceSimConfig(seed=3, symbols=("BTCUSDT",))) as sim:
        feed = gapless.connect(
            binance.orders(),
            binance.balances(),
            urls={"binance_ws_api": sim.ws_api_url, "binance_private_rest": sim.rest_url},
            credentials={"binance": creds},
            capture=str(tmp_path / "cap.jsonl"),
        )
        events = await _run(feed, sim, "binance", "private_fill_while_disconnected")
    cap = (tmp_path / "cap.jsonl").read_text()
    assert "userDataStream.subscribe.signature" in cap
    assert '\\"signature\\":\\"<redacted>' in cap  # the WS API signature is redacted
    _assert_no_secrets(creds, cap, caplog.text, repr(events))


def test_private_streams_need_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("GAPLESS_KUCOIN_API_KEY", "GAPLESS_KUCOIN_API_SECRET", "GAPLESS_CREDENTIALS_FILE"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigError, match="needs kucoin API credentials"):
        gapless.connect(kucoin.orders())
