"""The ``gapless`` command line, run as a user would (subprocesses, real sockets)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gapless.cli import parse_spec
from gapless.errors import ConfigError

GAPLESS = [sys.executable, "-m", "gapless.cli"]


def _run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*GAPLESS, *args], capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("command", ["demo", "stream", "sim", "replay"])
def test_every_command_has_help(command: str) -> None:
    proc = _run(command, "--help")
    assert proc.returncode == 0
    assert "Usage" in proc.stdout
    assert len(proc.stdout) > 200


def test_top_level_help_lists_commands() -> None:
    proc = _run("--help")
    assert proc.returncode == 0
    for command in ("demo", "stream", "sim", "replay"):
        assert command in proc.stdout


def test_parse_spec() -> None:
    assert parse_spec("kraken:book:BTC/USD:25").key == "kraken:book:BTC/USD:25"
    assert parse_spec("kraken:trade:ETH/USD").key == "kraken:trade:ETH/USD"
    assert parse_spec("kraken:ticker:ETH/USD").channel == "ticker"
    for bad in ("kraken:book:BTC/USD:27", "binance:book:BTC/USD", "kraken:foo:BTC/USD", "x"):
        with pytest.raises(ConfigError):
            parse_spec(bad)


def test_bad_stream_spec_is_a_clear_error() -> None:
    proc = _run("stream", "kraken:book:BTC/USD:27")
    assert proc.returncode == 2
    assert "depth must be one of" in proc.stderr


def test_replay_of_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    proc = _run("replay", str(tmp_path / "nope.jsonl"))
    assert proc.returncode == 2
    assert "no such file" in proc.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_sim_and_stream_jsonl_with_capture_then_replay(tmp_path: Path) -> None:
    port = _free_port()
    truth = tmp_path / "truth.jsonl"
    sim = subprocess.Popen(
        [*GAPLESS, "sim", "--port", str(port), "--seed", "3", "--truth", str(truth)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        cap = tmp_path / "cap.jsonl"
        proc = _run(
            "stream",
            "kraken:book:BTC/USD:10",
            "kraken:trade:BTC/USD",
            "--url",
            f"kraken=ws://127.0.0.1:{port}/v2",
            "--jsonl",
            "--duration",
            "3",
            "--capture",
            str(cap),
            timeout=60,
        )
        assert proc.returncode == 0, proc.stderr
        lines = [json.loads(x) for x in proc.stdout.splitlines() if x.strip()]
        types = {x["type"] for x in lines}
        assert {"ConnectionState", "VenueStatus", "BookSnapshot", "BookUpdate"} <= types
        updates = [x for x in lines if x["type"] == "BookUpdate"]
        assert all(isinstance(x["checksum"], int) for x in updates)
        assert isinstance(updates[0]["bids"], list)
        assert (os.stat(cap).st_mode & 0o777) == 0o600
        rep = _run("replay", str(cap), "--summary-json")
        assert rep.returncode == 0, rep.stderr
        summary = json.loads(rep.stdout.strip().splitlines()[-1])
        book = summary["books"]["kraken:BTC/USD"]
        assert book["checksum_ok"] == len(updates) + 1  # every update + the snapshot
        assert book["checksum_mismatch"] == 0
        assert summary["frames"] > len(updates)
    finally:
        sim.send_signal(signal.SIGINT)
        try:
            sim.wait(timeout=20)
        except subprocess.TimeoutExpired:
            sim.kill()
    assert truth.exists()
    assert any(json.loads(x)["k"] == "book" for x in truth.read_text().splitlines() if x)


def test_demo_json_report_with_a_scenario_file(tmp_path: Path) -> None:
    scenario = tmp_path / "scenario.json"
    scenario.write_text(
        json.dumps(
            [
                {"at": 1.5, "kind": "abort"},
                {"at": 3.0, "kind": "corrupt_checksum", "symbol": "BTC/USD"},
                {"at": 4.5, "kind": "close", "code": 1001},
            ]
        )
    )
    proc = _run(
        "demo",
        "--duration",
        "8",
        "--seed",
        "2",
        "--json",
        "--scenario",
        str(scenario),
        "--symbols",
        "BTC/USD,ETH/USD",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    for key in (
        "published",
        "delivered",
        "in_declared_gaps",
        "lost",
        "duplicated",
        "unexpected",
        "reconnects",
        "checksum_ok",
        "checksum_mismatch",
        "books_equal",
    ):
        assert key in report
    assert report["venues"] == ["kraken", "binance", "kucoin"]
    # abort and close go to every venue; corrupt_checksum only to Kraken's simulator
    assert report["faults"] == 7
    assert report["fault_kinds"]["kraken:corrupt_checksum"] == 1
    assert report["fault_kinds"]["binance:abort"] == report["fault_kinds"]["kucoin:close"] == 1
    assert report["planned_disconnect_gaps"] == 0
    assert report["lost"] == report["duplicated"] == report["unexpected"] == 0
    assert report["books_equal"] is True
    assert report["reconnects"] >= 2
    assert report["checksum_mismatch"] >= 1
