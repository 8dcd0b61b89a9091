"""The atheris harness ``fuzz/decoders.py`` runs, for a bounded time, without a crash.

The run is short (a few seconds of libFuzzer after the real-shaped seeds), so it
only catches regressions that are easy to reach; longer runs are for humans:
``python fuzz/decoders.py -max_total_time=600 fuzz/corpus``.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

pytest.importorskip("atheris", reason="atheris is not installed (pip install -e '.[dev]')")

ROOT = Path(__file__).resolve().parents[1]
HARNESS = ROOT / "fuzz" / "decoders.py"
FUZZ_SECONDS = 8
MIN_RUNS = 10_000  # libFuzzer does ~100k runs/s here; a tenth of a second's worth at least


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gapless_fuzz_decoders", HARNESS)
    assert spec is not None
    assert spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_harness_routes_every_decoder_and_enforces_the_contract(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fuzz = _load()
    n = len(fuzz.DECODERS)
    for i, (name, _fn, seeds) in enumerate(fuzz.DECODERS):
        for seed in seeds:
            for mode in (i, i + n):  # bytes, then str
                got_name, _, frame = fuzz.route(bytes([mode]) + seed.encode())
                assert got_name == name
                assert isinstance(frame, str if mode >= n else bytes)
                fuzz.TestOneInput(bytes([mode]) + seed.encode())
    fuzz.TestOneInput(b"")
    fuzz.TestOneInput(b"\x00not json")

    # a decoder that breaks the contract is a crash for the fuzzer
    def broken(frame: str | bytes) -> object:
        raise KeyError("boom")

    monkeypatch.setattr(fuzz, "DECODERS", [("broken", broken, []), *fuzz.DECODERS[1:]])
    with pytest.raises(KeyError):
        fuzz.TestOneInput(b"\x00{}")


def test_atheris_run_is_clean(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    seeds = subprocess.run(
        [sys.executable, str(HARNESS), "--write-seeds", str(corpus)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert seeds.returncode == 0, seeds.stderr[-2000:]
    assert len(list(corpus.iterdir())) >= 20
    run = subprocess.run(
        [
            sys.executable,
            str(HARNESS),
            f"-max_total_time={FUZZ_SECONDS}",
            "-timeout=10",
            "-rss_limit_mb=2048",
            f"-artifact_prefix={tmp_path}/",
            str(corpus),
        ],
        capture_output=True,
        text=True,
        timeout=FUZZ_SECONDS + 60,
        cwd=ROOT,
    )
    out = run.stdout + run.stderr
    tail = "\n".join(line for line in out.splitlines() if "Instrumenting" not in line)[-3000:]
    assert run.returncode == 0, f"the fuzzer found a crash:\n{tail}"
    assert not list(tmp_path.glob("crash-*")), tail
    m = re.search(r"^Done (\d+) runs in \d+ second", out, re.MULTILINE)
    assert m is not None, tail
    assert int(m.group(1)) >= MIN_RUNS, tail
