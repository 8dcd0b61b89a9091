"""bench/chart.py: the rows it draws from a result file, and a real PNG (with matplotlib)."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import pytest

from bench import chart

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _report() -> dict[str, Any]:
    """A small hand-written result file: W1, W5 and W6 only, one failure, one missing peer."""
    return {
        "date": "2026-11-23",
        "machine": {
            "cpu_model": "Test CPU",
            "cores": 2,
            "python": "3.11.7",
            "python_implementation": "CPython",
            "platform": "Linux-6.18.44-x86_64-with-glibc2.36",
        },
        "versions": {"gapless": "0.1.0", "ccxt": "4.5.90"},
        "config": {"scale": 0.02, "tls": True, "repeat": 3},
        "workloads": {
            "W1": {
                "gapless": {
                    "ok": True,
                    "messages": 4000,
                    "callbacks": 4000,
                    "msgs_per_s": 60000,
                    "cpu_s_per_million": 14.5,
                    "runs": [
                        {"ok": True, "msgs_per_s": 55000, "cpu_s_per_million": 15.1},
                        {"ok": True, "msgs_per_s": 60000, "cpu_s_per_million": 14.5},
                        {"ok": True, "msgs_per_s": 64000, "cpu_s_per_million": 13.9},
                    ],
                },
                "cryptofeed": {"error": "peer environment 'cryptofeed' missing: python -m ..."},
                "ccxt": {
                    "ok": False,
                    "messages": 4000,
                    "callbacks": 12,
                    "msgs_per_s": 90000,  # a failed run's speed is not a result: no bar
                    "error": "BTC/USD bids differ",
                },
            },
            "W5": {
                "floor": {
                    "ok": True,
                    "msgs_per_s": 400000,
                    "by_traffic": {
                        "W1": {"ok": True, "msgs_per_s": 400000},
                        "W3": {"ok": False, "error": "client wrote no result"},
                    },
                }
            },
            "W6": {
                "gapless": {"ok": True, "recovery_ms": 2.4, "lost": 4, "gap_declared": True},
                "cryptofeed": {
                    "ok": True,
                    "recovery_ms": 0.8,
                    "drop_to_book_ms": 1009.8,
                    "lost": 504,
                    "gap_declared": False,
                },
            },
        },
    }


def test_throughput_rows_bars_only_for_usable_results() -> None:
    rows = {r.client: r for r in chart.throughput_rows(_report(), "W1")}
    assert next(iter(rows)) == "gapless"  # gapless is the first (top) row
    g = rows["gapless"]
    assert (g.status, g.value, g.low, g.high) == ("ok", 60000.0, 55000.0, 64000.0)
    assert "15% of floor" in g.text
    assert "(3 runs: 55,000–64,000)" in g.text
    ccxt = rows["ccxt"]
    assert (ccxt.status, ccxt.value) == ("failed", None)
    assert "bids differ" in ccxt.text
    assert (rows["cryptofeed"].status, rows["cryptofeed"].value) == ("not run", None)
    # a peer the result file has no entry for at all
    assert (rows["python-kraken-sdk"].status, rows["python-kraken-sdk"].text) == (
        "not run",
        "not run",
    )


def test_floor_reference_per_traffic() -> None:
    report = _report()
    assert chart.floor_rate(report, "W1") == 400000.0
    assert chart.floor_rate(report, "W3") is None  # the floor failed on W3's traffic
    assert chart.floor_rate(report, "W2") is None  # never measured on W2
    # an older file without by_traffic: the headline floor figure is W1's traffic
    del report["workloads"]["W5"]["floor"]["by_traffic"]
    assert chart.floor_rate(report, "W1") == 400000.0
    assert chart.floor_rate(report, "W3") is None


def test_recovery_rows_flag_an_undeclared_gap() -> None:
    rows = {r.client: r for r in chart.recovery_rows(_report())}
    assert rows["gapless"].value == 2.4
    assert "gap declared" in rows["gapless"].text
    assert not rows["gapless"].alert
    assert rows["cryptofeed"].alert
    assert "lost 504, gap NOT declared" in rows["cryptofeed"].text
    assert "drop→book 1,010 ms" in rows["cryptofeed"].text
    assert rows["ccxt"].status == "not run"


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == PNG_SIGNATURE
    length, kind = struct.unpack(">I4s", data[8:16])
    assert (length, kind) == (13, b"IHDR")
    width, height = struct.unpack(">II", data[16:24])
    assert data[-12:] == b"\x00\x00\x00\x00IEND\xae\x42\x60\x82"
    return int(width), int(height)


def test_render_writes_a_png_of_the_expected_size(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    out = chart.render(_report(), tmp_path / "sub" / "chart.png", dpi=40)
    assert out == tmp_path / "sub" / "chart.png"
    assert _png_size(out.read_bytes()) == (
        round(chart.FIGSIZE[0] * 40),
        round(chart.FIGSIZE[1] * 40),
    )


def test_cli_renders_next_to_the_result_file(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    result = tmp_path / "2026-11-23.json"
    result.write_text(json.dumps({**_report(), "workloads": {}}))  # nothing run at all
    assert chart.main([str(result)]) == 0
    width, height = _png_size((tmp_path / "2026-11-23.png").read_bytes())
    assert (width, height) == (
        round(chart.FIGSIZE[0] * chart.DPI),
        round(chart.FIGSIZE[1] * chart.DPI),
    )


def test_harness_skips_the_chart_without_matplotlib(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from bench import run

    result = tmp_path / "r.json"
    result.write_text(json.dumps(_report()))
    monkeypatch.setattr(chart, "available", lambda: False)
    run._chart(result)
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    assert out.startswith("chart skipped: matplotlib is not installed")
    assert "pip install" in out
    assert not (tmp_path / "r.png").exists()
