"""``run_demo`` itself: its bounded shutdown."""

from __future__ import annotations

import re

import pytest

from gapless.demo import DemoStuck, run_demo


@pytest.mark.looptime
async def test_a_shutdown_past_its_deadline_is_reported_with_the_pending_tasks(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # quiesce, converge and the closes take (virtual) time: a 1 ms budget cannot hold them
    with pytest.raises(DemoStuck, match=r"did not shut down within 0\.001 s"):
        await run_demo(
            2.0,
            seed=3,
            venues=("kraken",),
            symbols=("BTC/USD",),
            min_faults=0,
            shutdown_timeout_s=0.001,
        )
    err = capsys.readouterr().err
    assert "asyncio tasks ---" in err
    # the run's own task, down to the frame it was parked in when the deadline passed
    assert "in run_demo" in err
    # ... into the shutdown step it was in (one of the demo's helpers, e.g. _converge)
    assert re.search(r"in run_demo\n\s+\S+demo\.py:\d+ in _\w+\n", err), err
