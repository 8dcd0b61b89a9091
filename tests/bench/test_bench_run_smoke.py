"""Smoke run of the benchmark harness (tiny sizes, gapless and the floor only), so it never
rots: real server process, real loopback sockets, real client processes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_quick_harness_run_writes_the_result_shape(tmp_path: Path) -> None:
    out = tmp_path / "result.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.run",
            "--quick",
            "--workloads",
            "W1,W5,W6",
            "--json",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    report = json.loads(out.read_text())
    assert set(report) >= {"machine", "versions", "workloads", "targets", "command"}
    assert report["config"]["tls"] is True  # wss:// with the self-signed certificate
    w1 = report["workloads"]["W1"]["gapless"]
    assert w1["ok"] is True
    assert w1["books_equal"] is True
    assert w1["checksum"] == "verified"
    for key in ("msgs_per_s", "cpu_s_per_million", "rss_mb", "p50_ms", "p99_ms"):
        assert isinstance(w1[key], int | float), key
        assert w1[key] > 0, key
    # the loop each run used is reported (uvloop comes with the bench extra)
    assert any(n.startswith("event loop: ") for n in w1["notes"]), w1["notes"]
    floor = report["workloads"]["W5"]["floor"]
    assert floor["ok"] is True
    assert floor["msgs_per_s"] > 0
    assert set(floor["by_traffic"]) == {"W1", "W3"}
    w6 = report["workloads"]["W6"]["gapless"]
    assert w6["lost"] > 0  # the server kept the market moving while the client was away
    assert w6["gap_declared"] is True  # ... and gapless said so
    assert w6["recovery_ms"] is not None
    assert report["targets"]["W1_share_of_floor"]["ratio"] is not None
    assert "| W1 | gapless |" in proc.stdout
