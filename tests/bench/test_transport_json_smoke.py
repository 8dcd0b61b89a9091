"""Smoke test of bench/transport_json.py: a --quick run over real loopback sockets."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

SCRIPT = Path(__file__).parents[2] / "bench" / "transport_json.py"

DECODERS = (
    "json_str",
    "json_float",
    "orjson",
    "msgspec",
    "msgspec_str",
    "msgspec_struct_decimal",
    "msgspec_struct_float",
)
EXACT = {
    "json_str": True,
    "json_float": False,
    "orjson": False,
    "msgspec": False,
    "msgspec_str": True,
    "msgspec_struct_decimal": True,
    "msgspec_struct_float": False,
}


def _positive_socket_result(entry: dict[str, Any]) -> None:
    assert entry["frames_per_s"] > 0
    assert entry["mb_per_s"] > 0
    assert entry["cpu_s"] >= 0
    assert entry["wall_s"] > 0
    assert all(run["frames"] == 2000 for run in entry["runs"])


def test_quick_run_reports_throughput_and_exactness(tmp_path: Path) -> None:
    out = tmp_path / "result.json"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert "1. transport" in proc.stdout
    report = json.loads(out.read_text())

    assert set(report) >= {"machine", "versions", "config", "results"}
    assert report["machine"]["cores"] >= 1
    assert report["machine"]["cpu_model"]
    assert report["versions"]["websockets"]
    assert report["versions"]["msgspec"]
    assert report["config"]["frames"] == 2000
    results = report["results"]

    _positive_socket_result(results["transport"]["websockets"])
    _positive_socket_result(results["transport"]["websockets_bytes"])
    _positive_socket_result(results["combined"]["websockets+msgspec_str"])
    _positive_socket_result(results["combined"]["websockets_bytes+msgspec_str"])
    have_picows = importlib.util.find_spec("picows") is not None
    for section, key in (("transport", "picows"), ("combined", "picows+msgspec_str")):
        if have_picows:
            _positive_socket_result(results[section][key])
        else:
            assert "skipped" in results[section][key]

    have_orjson = importlib.util.find_spec("orjson") is not None
    for key in DECODERS:
        if key == "orjson" and not have_orjson:
            assert key in results["json_skipped"]
            continue
        entry = results["json"][key]
        assert entry["us_per_frame"] > 0, key
        assert entry["frames_per_s"] > 0, key
        assert entry["numbers_checked"] > 0, key
        assert entry["exact"] is EXACT[key], key

    assert results["json"]["msgspec_str"]["example_0.50930100"] == "0.50930100"
    assert results["json"]["msgspec_str"]["example_0.00000000"] == "0.00000000"
    if have_orjson:
        assert results["json"]["orjson"]["example_0.50930100"] == "0.509301"
