"""Secrets canary (design.md §1.6): the whole private demo at DEBUG level, with a
raw capture. The API key and secret, every WebSocket token and every request
signature must appear nowhere in the logs, the capture, stdout or stderr.

The demo account's key and secret are known; tokens and signatures are random,
so they are caught by shape: a captured private request must show
``"token":"<redacted>"``, and private REST calls are recorded without their
body (no ``nonce=`` form, no ``API-Sign``).
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from gapless.sim.accounts import DEMO_KRAKEN_ACCOUNT

pytestmark = pytest.mark.timeout(240)


def test_private_demo_at_debug_leaks_nothing(tmp_path: Path) -> None:
    capture = tmp_path / "capture.jsonl"
    log = tmp_path / "stderr.log"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with log.open("wb") as err:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "gapless",
                "demo",
                "--private",
                "--venues",
                "kraken",
                "--duration",
                "30",
                "--min-faults",
                "4",
                "--seed",
                "5",
                "--json",
                "--log-level",
                "DEBUG",
                "--capture",
                str(capture),
            ],
            stdout=subprocess.PIPE,
            stderr=err,
            env=env,
            timeout=220,
            check=False,
        )
    stdout = proc.stdout.decode()
    logs = log.read_text()
    cap = capture.read_text()
    assert proc.returncode == 0, logs[-3000:]
    summary = json.loads(stdout.strip().splitlines()[-1])
    assert summary["orders_equal"] is True
    assert summary["balances_equal"] is True
    assert len(logs) > 10_000, "DEBUG logging was on (the canary must see a lot of text)"
    assert "executions" in cap  # the private connection was captured
    # no frame dumps in the logs at all (websockets' DEBUG dumps are pinned off on both
    # sides): a dump truncates long frames, and the kept tail can hold part of a token
    assert " TEXT '" not in logs

    secret_raw = base64.b64decode(DEMO_KRAKEN_ACCOUNT.api_secret)
    needles = {
        "api key": DEMO_KRAKEN_ACCOUNT.api_key,
        "api secret": DEMO_KRAKEN_ACCOUNT.api_secret,
        "api secret (hex)": secret_raw.hex(),
    }
    for where, text in (("logs", logs), ("capture", cap), ("stdout", stdout)):
        for what, value in needles.items():
            assert value not in text, f"{what} found in {where}"
        # every token the client sent is redacted, wherever a token field shows up
        tokens = re.findall(r'\\?"token\\?"\s*:\s*\\?"([^"\\]*)', text)
        assert all(t == "<redacted>" for t in tokens), f"a token in {where}: {set(tokens)}"
        assert "API-Sign" not in text, f"a signature header in {where}"
        assert "nonce=" not in text, f"a signed REST body in {where}"
    # frames are JSON text inside the capture's JSON lines: quotes are escaped there
    assert re.findall(r'\\"token\\":\\"<redacted>', cap), "the redacted tokens are captured"
