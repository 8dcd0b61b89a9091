"""Run gapless and its peers on the same pre-generated traffic, one after another.

``python -m bench.run`` (from the repository root, gapless's virtual environment) builds the
traffic of each workload (cached in ``bench/.cache/``), starts the bench server in its own
process for every measurement, runs each client in its own process and virtual environment,
prints a table and writes a JSON result file. How the pieces fit: ``bench/HARNESS.md``.
What each workload is and how to read the numbers: ``bench/README.md``.

Each (workload, client) pair gets:

- a **throughput** run: the server writes every message as fast as the socket takes it;
  messages/s = messages sent / (client's last callback - server's first send), CPU seconds
  per million messages from the client's process CPU time, peak RSS;
- a **latency** run on a smaller slice of the same workload, paced at ``--rate`` messages
  per second: p50/p99 of (client callback time - server send time), paired in order
  (``time.monotonic_ns()``, the machine-wide ``CLOCK_MONOTONIC``);
- for W6, a **recovery** run: paced, the server aborts the connection mid-stream, keeps the
  market moving, and serves a fresh snapshot to the next connection: ``recovery_ms`` from
  the moment the server accepts again to the client's first verified book, and ``lost``, the
  updates the client never received (declared or not).

Every client must end with the server's final books (top 10 levels per side); a run whose
books differ is reported as failed, whatever its speed.

``--repeat N`` runs every throughput measurement N times and reports the median messages/s
and CPU seconds per million (every run's own figures are kept under ``runs``). At the end,
the result is also drawn as a PNG next to the JSON file (``bench/chart.py``) when matplotlib
is installed.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import functools
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from bench import peers as peer_envs
from bench import traffic as T
from bench.transport_json import machine_info, package_versions

__all__ = ["CLIENTS", "combine_runs", "format_report", "main", "parse_args", "run", "targets"]

ROOT = Path(__file__).resolve().parent.parent
CLIENTS_DIR = ROOT / "bench" / "clients"
RESULTS_DIR = ROOT / "bench" / "results"

ALL_WORKLOADS = ("W1", "W2", "W3", "W4", "W5", "W6", "W7")
ALL_CLIENTS = ("gapless", "floor", "cryptofeed", "ccxt", "python-kraken-sdk")


@dataclass(frozen=True)
class Client:
    name: str
    script: str
    env: str | None  # peer environment name, None = gapless's own interpreter
    # workload -> protocol it speaks for that workload
    supports: dict[str, str] = field(default_factory=dict)


_KRAKEN_V2 = {"W1": "kraken-v2", "W2": "kraken-v2", "W6": "kraken-v2", "W7": "kraken-v2"}
CLIENTS: dict[str, Client] = {
    "gapless": Client(
        "gapless",
        "gapless_client.py",
        None,
        {**_KRAKEN_V2, "W3": "binance", "W4": "kucoin"},
    ),
    # W5 is the floor: picows + orjson on W1's and W3's traffic
    "floor": Client("floor", "floor_client.py", None, {"W5": "kraken-v2"}),
    "cryptofeed": Client(
        "cryptofeed",
        "cryptofeed_client.py",
        "cryptofeed",
        {
            "W1": "kraken-v1",
            "W2": "kraken-v1",
            "W3": "binance",
            "W4": "kucoin",
            "W6": "kraken-v1",
            "W7": "kraken-v1",
        },
    ),
    "ccxt": Client(
        "ccxt",
        "ccxt_client.py",
        "ccxt",
        {**_KRAKEN_V2, "W3": "binance", "W4": "kucoin"},
    ),
    "python-kraken-sdk": Client(
        "python-kraken-sdk", "kraken_sdk_client.py", "python-kraken-sdk", dict(_KRAKEN_V2)
    ),
}

#: the traffic a workload is measured on (W5 and W6 reuse others)
TRAFFIC_OF = {"W5": "W1", "W6": "W1"}
#: W5 (the floor) is also measured on W3's traffic: the target compares gapless with it
FLOOR_TRAFFICS = (("W1", "kraken-v2"), ("W3", "binance"))


def _pctl(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(q * (len(ordered) - 1))))
    return ordered[k]


def _books_equal(got: dict[str, Any], want: dict[str, Any], levels: int) -> tuple[bool, str]:
    def norm(side: list[list[str]]) -> list[tuple[Decimal, Decimal]]:
        return [(Decimal(p), Decimal(q)) for p, q in side[:levels]]

    for symbol, book in want.items():
        mine = got.get(symbol)
        if mine is None:
            return False, f"no final book for {symbol}"
        for side in ("bids", "asks"):
            if norm(mine[side]) != norm(book[side]):
                return False, f"{symbol} {side} differ"
    return True, ""


class Run:
    """One measurement: a server process plus one client process."""

    def __init__(self, args: argparse.Namespace, work: Path, cert: tuple[str, str] | None) -> None:
        self.args = args
        self.work = work
        self.cert = cert
        self.counter = 0

    def _python(self, client: Client) -> str | None:
        if client.env is None:
            return sys.executable
        python = peer_envs.peer_python(client.env)
        if python is None and self.args.install_peers:
            python = peer_envs.ensure(client.env)
        return str(python) if python is not None else None

    def measure(
        self,
        client: Client,
        loaded: tuple[T.Traffic, Path],
        protocol: str,
        mode: str,
        *,
        workload: str,
        drop_after: int | None = None,
    ) -> dict[str, Any]:
        traffic, traffic_path = loaded
        python = self._python(client)
        if python is None:
            return {"error": f"peer environment {client.env!r} missing: python -m bench.peers"}
        self.counter += 1
        tag = f"{workload}-{client.name}-{mode}-{self.counter}"
        report_path = self.work / f"{tag}-server.json"
        result_path = self.work / f"{tag}-client.json"
        latency_path = self.work / f"{tag}-latency.json" if mode != "throughput" else None
        cmd = [
            sys.executable,
            "-m",
            "bench.server",
            "--traffic",
            str(traffic_path),
            "--mode",
            mode,
            "--report",
            str(report_path),
            "--protocols",
            protocol,
        ]
        if mode == "latency":
            cmd += ["--rate", str(self.args.rate)]
        if mode == "recovery":
            cmd += ["--rate", str(self.args.recovery_rate)]
        if mode == "recovery":
            cmd += ["--drop-after", str(drop_after), "--outage-s", str(self.args.outage_s)]
        if protocol in ("binance", "kucoin") and client.name != "floor" and mode != "recovery":
            # every book fetches a REST snapshot (paced by its library's rate limiter)
            # before the measured run starts: start-up is not processing speed
            cmd += ["--await-snapshots"]
        tls = self.cert is not None
        if self.cert is not None:
            cmd += ["--tls", "--cert", self.cert[0], "--key", self.cert[1]]
        server = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True)
        try:
            assert server.stdout is not None
            line = server.stdout.readline().strip()
            if not line.startswith("READY "):
                return {"error": f"bench server did not start: {line!r}"}
            port = int(line.split()[1])
            ws, http = ("wss", "https") if tls else ("ws", "http")
            base = {"kraken-v2": "kraken/v2", "kraken-v1": "kraken/v1"}.get(
                protocol, protocol.split("-")[0]
            )
            venue = protocol.split("-")[0]
            spec = {
                "workload": workload,
                "mode": mode,
                "protocol": protocol,
                "ws_url": f"{ws}://127.0.0.1:{port}/{base}",
                "rest_url": f"{http}://127.0.0.1:{port}/{venue}",
                "symbols": traffic.symbols[protocol],
                "depth": traffic.depth,
                "expected_updates": traffic.updates,
                "expected_trades": traffic.trades,
                "result_path": str(result_path),
                "ca_file": self.cert[0] if self.cert else None,
                "latency_path": str(latency_path) if latency_path else None,
                "idle_timeout_s": self.args.idle_timeout_s,
                "deadline_s": self.args.deadline_s,
                "book_levels": 10,
            }
            spec_path = self.work / f"{tag}-spec.json"
            spec_path.write_text(json.dumps(spec))
            env = dict(os.environ)
            if self.cert is not None:
                env["SSL_CERT_FILE"] = self.cert[0]  # peers that only use default contexts
            env["PYTHONPATH"] = str(ROOT / "src")
            try:
                # BENCH_CLIENT_PREFIX (e.g. "py-spy record -o prof.svg --") wraps the client
                prefix = shlex.split(os.environ.get("BENCH_CLIENT_PREFIX", ""))
                subprocess.run(
                    [*prefix, python, str(CLIENTS_DIR / client.script), str(spec_path)],
                    cwd=ROOT,
                    env=env,
                    timeout=self.args.deadline_s + 60,
                    check=False,
                )
            except subprocess.TimeoutExpired:
                return {"error": "client timed out"}
        finally:
            with contextlib.suppress(ProcessLookupError):
                if server.poll() is None:
                    time.sleep(0.2)
                    server.terminate()
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                server.kill()
        if not result_path.exists():
            return {"error": "client wrote no result"}
        result: dict[str, Any] = json.loads(result_path.read_text())
        report: dict[str, Any] = json.loads(report_path.read_text())
        return self._metrics(result, report, traffic, protocol, mode, latency_path)

    def _metrics(
        self,
        result: dict[str, Any],
        report: dict[str, Any],
        traffic: T.Traffic,
        protocol: str,
        mode: str,
        latency_path: Path | None,
    ) -> dict[str, Any]:
        msgs = int(report["updates_sent"]) + int(report["trades_sent"])
        out: dict[str, Any] = {
            "ok": bool(result["ok"]),
            "version": result["version"],
            "checksum": result["checksum"],
            "messages": msgs,
            "callbacks": result["updates"] + result["trades"],
            "notes": list(result.get("notes", [])),
        }
        if result.get("error"):
            out["error"] = result["error"]
        if report.get("errors_total"):
            out["server_errors"] = report["errors"][:5]
        if report.get("warmup_messages"):
            out["warmup"] = {"messages": report["warmup_messages"], "s": report.get("warmup_s")}
        if mode == "throughput":
            start, last = report.get("start_mono_ns"), result.get("last_mono_ns")
            if start and last and last > start:
                out["msgs_per_s"] = round(msgs / ((last - start) / 1e9))
            if result.get("cpu_s") is not None and msgs:
                out["cpu_s_per_million"] = round(result["cpu_s"] / msgs * 1e6, 2)
            out["rss_mb"] = round(result["rss_mb"], 1) if result.get("rss_mb") else None
        if mode != "latency" and result.get("books") is not None and result["client"] != "floor":
            equal, why = _books_equal(result["books"], traffic.final_books(protocol, 10), 10)
            out["books_equal"] = equal
            if not equal:
                out["ok"] = False
                out.setdefault("error", why)
        if mode == "latency" and latency_path is not None and latency_path.exists():
            sent: list[int] = report.get("send_mono_ns") or []
            got: list[int] = json.loads(latency_path.read_text())
            got = got[int(report.get("warmup_messages") or 0) :]  # sent before the clock
            if sent and len(sent) == len(got):
                lat = [(g - s) / 1e6 for s, g in zip(sent, got, strict=True)]
                out["p50_ms"] = round(statistics.median(lat), 3)
                out["p99_ms"] = round(_pctl(lat, 0.99), 3)
                out["latency_samples"] = len(lat)
            else:
                out["latency_note"] = (
                    f"{len(got)} callbacks for {len(sent)} messages: not paired one to one"
                )
        if mode == "recovery":
            drop = report.get("drop") or {}
            rec = result.get("recovery") or {}
            recovered = rec.get("recovered_mono_ns")
            back = drop.get("reaccept_mono_ns") or drop.get("drop_mono_ns")
            out["recovery_ms"] = round((recovered - back) / 1e6, 1) if recovered and back else None
            if recovered and drop.get("drop_mono_ns"):
                out["drop_to_book_ms"] = round((recovered - drop["drop_mono_ns"]) / 1e6, 1)
            out["lost"] = int(drop.get("missed", 0)) + int(drop.get("missed_trades", 0))
            out["gap_declared"] = bool(rec.get("gap_declared"))
            out["reconnected"] = bool(rec.get("reconnected", recovered is not None))
        return out


def _traffic(source: str, scale: float) -> tuple[T.Traffic, Path]:
    """A workload's traffic at ``scale`` (built once, then cached) and its cache file."""
    return T.load_or_build(source, scale), T.cache_path(source, scale)


def _slice(source: str, traffic: T.Traffic, scale: float, messages: int) -> tuple[T.Traffic, Path]:
    """About ``messages`` messages of ``traffic``'s workload (paced runs)."""
    return _traffic(source, max(1e-4, scale * messages / max(1, traffic.messages)))


def _merge(through: dict[str, Any], latency: dict[str, Any] | None) -> dict[str, Any]:
    """The throughput result plus the latency run's percentiles."""
    out = dict(through)
    if latency is not None:
        for k in ("p50_ms", "p99_ms", "latency_samples", "latency_note"):
            if k in latency:
                out[k] = latency[k]
        if latency.get("error"):
            out.setdefault("errors", []).append(latency["error"])
    return out


#: the figures of each run kept under ``runs`` when a measurement is repeated
RUN_FIGURES = ("ok", "msgs_per_s", "cpu_s_per_million", "rss_mb", "callbacks", "error")


def combine_runs(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Repeated throughput runs of one (workload, client) as one result (``--repeat``).

    If every run is ok: the run with the median messages/s (the lower middle one for an even
    count) with ``msgs_per_s`` and ``cpu_s_per_million`` replaced by the medians over all
    runs, each taken on its own, and ``rss_mb`` by the highest peak. If a run failed, the
    result is the first failed run (a run that fails once is not a result), its error
    prefixed with which run it was. Either way ``runs`` lists every run's own figures.
    """
    if not runs:
        raise ValueError("no runs to combine")
    raw = [{k: r[k] for k in RUN_FIGURES if k in r} for r in runs]
    failed = [i for i, r in enumerate(runs) if not r.get("ok", False)]
    if failed:
        out = dict(runs[failed[0]])
        out["ok"] = False
        error = out.get("error") or "not ok"
        out["error"] = f"run {failed[0] + 1} of {len(runs)}: {error}"
        out["runs"] = raw
        return out

    def values(key: str) -> list[float]:
        return [r[key] for r in runs if r.get(key) is not None]

    rated = sorted(
        (r["msgs_per_s"], i) for i, r in enumerate(runs) if r.get("msgs_per_s") is not None
    )
    out = dict(runs[rated[(len(rated) - 1) // 2][1]] if rated else runs[0])
    rates = values("msgs_per_s")
    if rates:
        out["msgs_per_s"] = round(statistics.median(rates))
    cpu = values("cpu_s_per_million")
    if cpu:
        out["cpu_s_per_million"] = round(statistics.median(cpu), 2)
    rss = values("rss_mb")
    if rss:
        out["rss_mb"] = max(rss)
    out["runs"] = raw
    return out


def _repeated(measure: Callable[[], dict[str, Any]], repeat: int) -> dict[str, Any]:
    """``measure()`` ``repeat`` times (stopping at a failed run), combined by the median."""
    if repeat <= 1:
        return measure()
    runs: list[dict[str, Any]] = []
    for i in range(repeat):
        r = measure()
        runs.append(r)
        figures = (
            f"{r['msgs_per_s']:,} msgs/s, {r.get('cpu_s_per_million')} CPU s/M"
            if r.get("msgs_per_s")
            else "no msgs/s"
        )
        state = "" if r.get("ok", False) else f" (failed: {r.get('error', 'not ok')})"
        print(f"   run {i + 1}/{repeat}: {figures}{state}", flush=True)
        if not r.get("ok", False):
            break
    return combine_runs(runs)


def run(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="gapless-bench-"))
    cert: tuple[str, str] | None = None
    if args.tls:
        from bench.server import make_self_signed

        cert = make_self_signed(work / "tls")
    runner = Run(args, work, cert)
    results: dict[str, dict[str, Any]] = {}
    versions: dict[str, Any] = {"gapless": None, **package_versions()}
    t0 = time.monotonic()
    try:
        for workload in args.workloads:
            results[workload] = {}
            if workload == "W5":
                results["W5"]["floor"] = _floor(runner, args)
                continue
            source = TRAFFIC_OF.get(workload, workload)
            scale = args.scale * args.scales.get(workload, 1.0)
            full = _traffic(source, scale)
            paced = args.recovery_n if workload == "W6" else args.latency_n
            small = _slice(source, full[0], scale, paced) if paced > 0 else None
            for name in args.clients:
                client = CLIENTS[name]
                protocol = client.supports.get(workload)
                if protocol is None:
                    continue
                print(f"== {workload} {name} ({protocol})", flush=True)
                if workload == "W6":
                    assert small is not None
                    rec = runner.measure(
                        client,
                        small,
                        protocol,
                        "recovery",
                        workload=workload,
                        drop_after=small[0].messages // 4,
                    )
                    results[workload][name] = rec
                    _version(versions, name, rec)
                    continue
                through = _repeated(
                    functools.partial(
                        runner.measure, client, full, protocol, "throughput", workload=workload
                    ),
                    args.repeat,
                )
                latency = None
                if small is not None:
                    latency = runner.measure(client, small, protocol, "latency", workload=workload)
                results[workload][name] = _merge(through, latency)
                _version(versions, name, through)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return {
        "date": dt.date.today().isoformat(),
        "machine": machine_info(),
        "versions": versions,
        "command": "python -m bench.run " + " ".join(args.argv),
        "config": {
            "scale": args.scale,
            "tls": args.tls,
            "rate": args.rate,
            "latency_messages": args.latency_n,
            "recovery_messages": args.recovery_n,
            "recovery_rate": args.recovery_rate,
            "outage_s": args.outage_s,
            "repeat": args.repeat,
        },
        "wall_s": round(time.monotonic() - t0, 1),
        "workloads": results,
        "targets": targets(results),
    }


def _version(versions: dict[str, Any], name: str, res: dict[str, Any]) -> None:
    if res.get("version") and name != "floor":
        versions[name] = res["version"]


def _floor(runner: Run, args: argparse.Namespace) -> dict[str, Any]:
    """W5: picows + orjson on W1's traffic (headline) and on W3's."""
    by: dict[str, Any] = {}
    for source, protocol in FLOOR_TRAFFICS:
        print(f"== W5 floor on {source} traffic ({protocol})", flush=True)
        by[source] = _repeated(
            functools.partial(
                runner.measure,
                CLIENTS["floor"],
                _traffic(source, args.scale * args.scales.get(source, 1.0)),
                protocol,
                "throughput",
                workload="W5",
            ),
            args.repeat,
        )
    head = dict(by["W1"])
    head["by_traffic"] = by
    return head


def targets(results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The issue's targets as ratios measured in this run (None when a side is missing)."""

    def rate(w: str, c: str) -> float | None:
        r = results.get(w, {}).get(c, {})
        v = r.get("msgs_per_s") if r.get("ok", True) else None
        return float(v) if v else None

    def ratio(a: float | None, b: float | None) -> float | None:
        return round(a / b, 2) if a and b else None

    floor = results.get("W5", {}).get("floor", {}).get("by_traffic", {})
    floor_w1 = floor.get("W1", {}).get("msgs_per_s")
    floor_w3 = floor.get("W3", {}).get("msgs_per_s")
    out: dict[str, Any] = {
        "W1_vs_python_kraken_sdk": {
            "ratio": ratio(rate("W1", "gapless"), rate("W1", "python-kraken-sdk")),
            "target": 3.0,
        },
        "W1_vs_ccxt": {"ratio": ratio(rate("W1", "gapless"), rate("W1", "ccxt")), "target": 2.0},
        "W3_vs_cryptofeed": {
            "ratio": ratio(rate("W3", "gapless"), rate("W3", "cryptofeed")),
            "target": 2.0,
        },
        "W4_vs_ccxt": {"ratio": ratio(rate("W4", "gapless"), rate("W4", "ccxt")), "target": 2.0},
        "W1_share_of_floor": {"ratio": ratio(rate("W1", "gapless"), floor_w1), "target": 0.5},
        "W3_share_of_floor": {"ratio": ratio(rate("W3", "gapless"), floor_w3), "target": 0.5},
    }
    w6 = results.get("W6", {}).get("gapless", {})
    out["W6_recovery_ms"] = {"value": w6.get("recovery_ms"), "target_below": 100.0}
    w7 = results.get("W7", {}).get("gapless", {})
    out["W7_rss_mb"] = {"value": w7.get("rss_mb"), "target_below": 150.0}
    for item in out.values():
        if "ratio" in item:
            item["met"] = None if item["ratio"] is None else item["ratio"] >= item["target"]
        else:
            v = item["value"]
            item["met"] = None if v is None else v < item["target_below"]
    return out


# ------------------------------------------------------------------------------ report
def _fmt(v: Any, digits: int = 0) -> str:
    if v is None:
        return "—"
    if isinstance(v, bool):
        return "yes" if v else "NO"
    if isinstance(v, float | int):
        return f"{v:,.{digits}f}"
    return str(v)


def _rate(r: dict[str, Any]) -> str:
    """msgs/s, with the lowest and highest of repeated runs."""
    rates = [x["msgs_per_s"] for x in r.get("runs", []) if x.get("msgs_per_s") is not None]
    text = _fmt(r.get("msgs_per_s"))
    if len(rates) > 1:
        text += f" ({_fmt(min(rates))}–{_fmt(max(rates))})"
    return text


def format_report(report: dict[str, Any]) -> str:
    repeat = int(report["config"].get("repeat", 1))
    lines = [
        f"gapless benchmark, {report['date']}: {report['machine']['cpu_model']}, "
        f"{report['machine']['cores']} cores, Python {report['machine']['python']}, "
        f"TLS {'on' if report['config']['tls'] else 'off'}"
        + (
            f"; msgs/s and CPU: median of {repeat} runs (lowest–highest in brackets)"
            if repeat > 1
            else ""
        ),
        "",
        "| workload | client | msgs/s | CPU s / M msgs | peak RSS MB | p50 ms | p99 ms "
        "| books equal | checksum | notes |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for workload, clients in report["workloads"].items():
        for name, r in clients.items():
            note = r.get("error") or "; ".join(r.get("notes", [])[:1])
            if workload == "W6":
                note = (
                    f"recovery {_fmt(r.get('recovery_ms'), 1)} ms after re-accept, "
                    f"{_fmt(r.get('lost'))} missed, gap declared: {_fmt(r.get('gap_declared'))}"
                    + (f"; {r['error']}" if r.get("error") else "")
                )
            lines.append(
                f"| {workload} | {name} | {_rate(r)} "
                f"| {_fmt(r.get('cpu_s_per_million'), 2)} | {_fmt(r.get('rss_mb'), 1)} "
                f"| {_fmt(r.get('p50_ms'), 3)} | {_fmt(r.get('p99_ms'), 3)} "
                f"| {_fmt(r.get('books_equal'))} | {r.get('checksum', '—')} | {note} |"
            )
            if workload == "W5":
                for src, fr in r.get("by_traffic", {}).items():
                    lines.append(
                        f"| W5 ({src} traffic) | floor | {_rate(fr)} "
                        f"| {_fmt(fr.get('cpu_s_per_million'), 2)} | {_fmt(fr.get('rss_mb'), 1)} "
                        f"| — | — | — | off | picows + orjson |"
                    )
    lines += ["", "| target | measured | wanted | met |", "|---|---|---|---|"]
    for name, t in report["targets"].items():
        measured = t.get("ratio", t.get("value"))
        wanted = f">= {t['target']}" if "target" in t else f"< {t['target_below']}"
        lines.append(f"| {name} | {_fmt(measured, 2)} | {wanted} | {_fmt(t['met'])} |")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench.run",
        description="gapless vs cryptofeed, ccxt and python-kraken-sdk on the same traffic.",
    )
    p.add_argument("--workloads", default=",".join(ALL_WORKLOADS), help="comma list (W1..W7)")
    p.add_argument("--clients", default=",".join(ALL_CLIENTS), help="comma list")
    p.add_argument("--scale", type=float, default=1.0, help="multiplies every message count")
    p.add_argument("--no-tls", dest="tls", action="store_false", help="ws:// instead of wss://")
    p.add_argument("--rate", type=float, default=1000.0, help="latency runs: messages/s")
    p.add_argument("--latency-messages", dest="latency_n", type=int, default=5000)
    p.add_argument("--recovery-messages", dest="recovery_n", type=int, default=3000)
    p.add_argument(
        "--recovery-rate",
        type=float,
        default=500.0,
        help="W6: messages/s (the drop comes after a quarter of them)",
    )
    p.add_argument(
        "--outage-s", type=float, default=0.0, help="W6: reconnects refused (503) this long"
    )
    p.add_argument("--idle-timeout-s", type=float, default=3.0)
    p.add_argument("--deadline-s", type=float, default=300.0)
    p.add_argument("--install-peers", action="store_true", help="build missing peer venvs")
    p.add_argument("--quick", action="store_true", help="tiny sizes, gapless and floor only")
    p.add_argument("--json", type=Path, default=None, help="result file (default: results/)")
    p.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="run each throughput measurement N times and report the medians",
    )
    p.add_argument(
        "--no-chart", dest="chart", action="store_false", help="no PNG next to the JSON file"
    )
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    args = p.parse_args(argv)
    args.argv = list(argv if argv is not None else sys.argv[1:])
    args.workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
    args.clients = [c.strip() for c in args.clients.split(",") if c.strip()]
    for w in args.workloads:
        if w not in ALL_WORKLOADS:
            p.error(f"unknown workload {w!r}")
    if args.repeat < 1:
        p.error("--repeat must be at least 1")
    for c in args.clients:
        if c not in CLIENTS:
            p.error(f"unknown client {c!r} (known: {', '.join(CLIENTS)})")
    args.scales = {}
    if args.quick:
        args.scale = min(args.scale, 0.01)
        args.clients = [c for c in args.clients if c in ("gapless", "floor")]
        args.latency_n = min(args.latency_n, 300)
        args.recovery_n = min(args.recovery_n, 1500)
        args.scales = {"W7": 0.1}  # W7 at 0.01 still has 1,000 symbols
        args.rate = max(args.rate, 2000.0)
    return args


def _chart(result: Path) -> None:
    """The result file as a PNG next to it (bench/chart.py), if matplotlib is installed."""
    from bench import chart

    if not chart.available():
        print(
            "chart skipped: matplotlib is not installed "
            "(pip install 'gapless[bench]', or .venv/bin/pip install matplotlib)"
        )
        return
    try:
        print(f"chart: {chart.render_file(result)}")
    except Exception as exc:  # the measurements are written; a chart bug must not lose them
        print(f"chart failed ({type(exc).__name__}: {exc}); the JSON file is complete")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    report = run(args)
    text = format_report(report)
    print(text)
    out = args.json or RESULTS_DIR / f"{report['date']}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1, sort_keys=False) + "\n")
    print(f"\nwritten: {out}")
    if args.chart:
        _chart(out)
    failed = [
        f"{w}:{c}"
        for w, cs in report["workloads"].items()
        for c, r in cs.items()
        if c in ("gapless", "floor") and not r.get("ok", False)
    ]
    if failed:
        print(f"FAILED runs: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
