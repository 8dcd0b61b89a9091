"""The short soak CI runs: ``gapless soak`` end to end, as a user runs it (a
subprocess, real loopback sockets, every venue behind a fault proxy, venue,
transport and consumer faults, the Kraken private feed and its bot).

The 10-minute soak of issue 6 (``gapless soak --duration 600 --seed 3 --json``)
is the same command with a longer duration; its figures are in RELIABILITY.md.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from gapless.sim import TRANSPORT_FAULT_KINDS

pytestmark = pytest.mark.timeout(300)

DURATION_S = 45


def test_a_short_soak_loses_nothing_leaks_nothing_and_stays_flat(tmp_path: Path) -> None:
    keep = tmp_path / "soak"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "gapless",
            "soak",
            "--duration",
            str(DURATION_S),
            "--seed",
            "3",
            "--json",
            "--keep",
            str(keep),
        ],
        capture_output=True,
        text=True,
        timeout=280,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        check=False,
    )
    assert proc.stdout.strip(), proc.stderr[-3000:]
    s = json.loads(proc.stdout.strip().splitlines()[-1])
    detail = {k: s.get(k) for k in ("lost_examples", "book_diffs", "unrecovered", "half_open")}
    assert proc.returncode == 0, (detail, s.get("resources"), proc.stderr[-3000:])
    assert s["ok"] is True
    assert (s["lost"], s["duplicated"], s["unexpected"]) == (0, 0, 0)
    assert s["published"] > 10_000
    assert (s["books_equal"], s["orders_equal"], s["balances_equal"]) == (True, True, True)
    # faults of all three families were injected
    kinds = s["fault_kinds_total"]
    assert s["faults"] >= 20
    assert len(set(kinds) & set(TRANSPORT_FAULT_KINDS)) >= 3
    assert s["consumer_faults"]["slow_consumer"] + s["consumer_faults"]["loop_block"] >= 2
    assert {"abort", "token_expiry"} & set(kinds)
    # the checked run is real: reconnects happened and gaps were declared
    assert sum(s["reconnects_by_connection"].values()) >= 5
    assert s["gaps_by_cause"]
    # resources were sampled through the run
    res = s["resources"]
    assert len(res["samples"]) >= DURATION_S / 5
    assert res["flat"] is True
    # the canary looked at megabytes of DEBUG log and capture and found nothing
    assert s["secrets"]["needles"] >= 4
    assert s["secrets"]["bytes_scanned"] > 1_000_000
    assert s["secrets"]["leaks"] == []
    searched = set(s["secrets"]["searched"])
    assert {"debug.log", "capture.jsonl", "events.pickle", "feed stats", "report"} <= searched
    # what the soak wrote is owner-only
    assert stat.S_IMODE(keep.stat().st_mode) == 0o700
    names = {p.name for p in keep.iterdir()}
    assert {"debug.log", "capture.jsonl", "events.pickle", "truth.kraken.jsonl"} <= names
    for p in keep.iterdir():
        assert stat.S_IMODE(p.stat().st_mode) == 0o600, p
