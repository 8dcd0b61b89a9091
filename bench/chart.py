"""A PNG chart of a ``python -m bench.run`` result file.

``python -m bench.chart bench/results/<date>.json [--out bench/results/<date>.png]`` draws one
panel per throughput workload (W1, W2, W3, W4, W7: messages/s per client as horizontal bars,
gapless highlighted, the floor, picows + orjson, as a dashed line where W5 measured it on the
same traffic) and a W6 panel (recovery time per client, with the updates lost and whether the
client declared the gap). A client that failed or was not run gets a line of text instead of
a bar: a failed run's speed is not a result. ``python -m bench.run`` calls :func:`render_file`
at the end when matplotlib is installed (``pip install 'gapless[bench]'``).

The rows are worked out without matplotlib (:func:`throughput_rows`, :func:`recovery_rows`);
only :func:`render` needs it, and it draws on the non-interactive Agg canvas (no pyplot, no
display).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.run import CLIENTS

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = [
    "DPI",
    "FIGSIZE",
    "THROUGHPUT_WORKLOADS",
    "Row",
    "available",
    "floor_rate",
    "main",
    "recovery_rows",
    "render",
    "render_file",
    "throughput_rows",
]

#: figure size in inches; the PNG is FIGSIZE * DPI pixels
FIGSIZE = (15.0, 12.0)
DPI = 100

THROUGHPUT_WORKLOADS = ("W1", "W2", "W3", "W4", "W7")
TITLES = {
    "W1": "W1 Kraken, 1 book of depth 10",
    "W2": "W2 Kraken, 20 books of depth 1000",
    "W3": "W3 Binance, 50 diff-depth books + trades",
    "W4": "W4 KuCoin, 50 level2 books",
    "W6": "W6 recovery from an abrupt drop",
    "W7": "W7 Kraken, 1,000 books of depth 100 in one process",
}
#: the floor (W5) is measured on W1's and W3's traffic (``by_traffic`` in the result file)
FLOOR_ON = ("W1", "W3")

GAPLESS = "#1f5fa8"
PEER = "#a3a3a3"
FAILED = "#b22222"
MUTED = "#6b6b6b"
FLOOR = "#333333"


@dataclass(frozen=True)
class Row:
    """One client in one panel: a bar (``value``) or, when it has none, only ``text``."""

    client: str
    label: str  # the y tick label
    value: float | None  # None: no bar (failed or not run)
    text: str  # written after the bar, or in place of it
    status: str  # "ok", "failed" or "not run"
    low: float | None = None  # lowest and highest of repeated runs (``--repeat``)
    high: float | None = None
    alert: bool = False  # W6: updates were lost and the client did not say so


def available() -> bool:
    """Whether matplotlib is installed (the chart is optional)."""
    return importlib.util.find_spec("matplotlib") is not None


def _short(text: str, limit: int = 60) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _failure(r: dict[str, Any]) -> tuple[str, str] | None:
    """``(status, text)`` for an entry without a usable result, None for a usable one."""
    error = r.get("error") or "; ".join(r.get("errors", []))
    if "ok" not in r:  # the harness could not measure (no peer environment, timeout, ...)
        if "peer environment" in str(error):
            return "not run", "not run: " + _short(error)
        return "failed", "failed: " + _short(error or "no result")
    if not r["ok"]:
        return "failed", "failed: " + _short(error or "not ok")
    return None


def _clients(report: dict[str, Any], workload: str) -> list[str]:
    """Every client that speaks ``workload`` (gapless first), then any other the file has."""
    have = list(report.get("workloads", {}).get(workload, {}))
    names = [n for n, c in CLIENTS.items() if workload in c.supports and n != "floor"]
    names += [n for n in have if n not in names and n != "floor"]
    return sorted(names, key=lambda n: n != "gapless")


def _label(name: str, workload: str) -> str:
    client = CLIENTS.get(name)
    gapless = CLIENTS.get("gapless")
    protocol = client.supports.get(workload) if client else None
    usual = gapless.supports.get(workload) if gapless else None
    return f"{name}\n({protocol})" if protocol and usual and protocol != usual else name


def _runs(r: dict[str, Any], key: str) -> list[float]:
    return [float(x[key]) for x in r.get("runs", []) if x.get(key) is not None]


def floor_rate(report: dict[str, Any], workload: str) -> float | None:
    """The floor's messages/s on ``workload``'s traffic, None if W5 did not measure it."""
    floor = report.get("workloads", {}).get("W5", {}).get("floor")
    if not floor or workload not in FLOOR_ON:
        return None
    by = floor.get("by_traffic")
    entry = by.get(workload) if by else (floor if workload == "W1" else None)
    if not entry or _failure(entry) or not entry.get("msgs_per_s"):
        return None
    return float(entry["msgs_per_s"])


def throughput_rows(report: dict[str, Any], workload: str) -> list[Row]:
    """The bars of one throughput panel, gapless first."""
    results = report.get("workloads", {}).get(workload, {})
    floor = floor_rate(report, workload)
    rows: list[Row] = []
    for name in _clients(report, workload):
        label = _label(name, workload)
        r = results.get(name)
        if r is None:
            rows.append(Row(name, label, None, "not run", "not run"))
            continue
        failure = _failure(r)
        if failure is None and not r.get("msgs_per_s"):
            failure = ("failed", "failed: no msgs/s figure")
        if failure is not None:
            rows.append(Row(name, label, None, failure[1], failure[0]))
            continue
        value = float(r["msgs_per_s"])
        parts = [f"{value:,.0f}/s"]
        rates = _runs(r, "msgs_per_s")
        if len(rates) > 1:
            parts[0] += f" ({len(rates)} runs: {min(rates):,.0f}–{max(rates):,.0f})"
        if r.get("cpu_s_per_million") is not None:
            parts.append(f"{r['cpu_s_per_million']:,.1f} CPU s/M")
        if name == "gapless" and floor:
            parts.append(f"{value / floor:.0%} of floor")
        messages, callbacks = r.get("messages"), r.get("callbacks")
        if messages and callbacks is not None and callbacks < messages:
            parts.append(f"{callbacks:,} callbacks")
        low, high = (min(rates), max(rates)) if len(rates) > 1 else (None, None)
        rows.append(Row(name, label, value, " · ".join(parts), "ok", low, high))
    return rows


def recovery_rows(report: dict[str, Any]) -> list[Row]:
    """The bars of the W6 panel: recovery_ms, annotated with lost and gap declared."""
    results = report.get("workloads", {}).get("W6", {})
    rows: list[Row] = []
    for name in _clients(report, "W6"):
        label = _label(name, "W6")
        r = results.get(name)
        if r is None:
            rows.append(Row(name, label, None, "not run", "not run"))
            continue
        failure = _failure(r)
        if failure is None and r.get("recovery_ms") is None:
            failure = ("failed", "failed: did not recover a verified book")
        if failure is not None:
            rows.append(Row(name, label, None, failure[1], failure[0]))
            continue
        value = float(r["recovery_ms"])
        lost = int(r.get("lost") or 0)
        declared = bool(r.get("gap_declared"))
        parts = [f"{value:,.1f} ms"]
        second: list[str] = []
        if r.get("drop_to_book_ms") is not None:
            parts.append(f"drop→book {r['drop_to_book_ms']:,.0f} ms")
        if lost == 0:
            second.append("nothing lost")
        elif declared:
            second.append(f"lost {lost:,}, gap declared")
        else:
            second.append(f"lost {lost:,}, gap NOT declared")
        alert = lost > 0 and not declared
        text = " · ".join(parts) + "\n" + " · ".join(second)
        rows.append(Row(name, label, value, text, "ok", alert=alert))
    return rows


def _title(report: dict[str, Any]) -> str:
    m = report.get("machine", {})
    cfg = report.get("config", {})
    platform = str(m.get("platform", "")).split("-with-")[0]
    machine = ", ".join(
        x
        for x in (
            str(m.get("cpu_model", "")),
            f"{m['cores']} cores" if m.get("cores") else "",
            f"{m.get('python_implementation', 'Python')} {m.get('python', '')}".strip(),
            platform,
        )
        if x
    )
    run = [f"TLS {'on' if cfg.get('tls', True) else 'off'}", f"scale {cfg.get('scale', 1.0):g}"]
    if int(cfg.get("repeat", 1)) > 1:
        run.append(f"median of {cfg['repeat']} runs")
    versions = " · ".join(f"{k} {v}" for k, v in report.get("versions", {}).items() if v)
    return (
        f"gapless benchmark, {report.get('date', '?')}: {machine}\n{', '.join(run)}  |  {versions}"
    )


#: a white box behind the bar labels, so the floor's line does not run through them
_BEHIND = {"facecolor": "white", "edgecolor": "none", "pad": 1.0, "alpha": 0.85}


def _panel(ax: Axes, title: str, rows: list[Row], unit: str, floor: float | None) -> None:
    ax.set_title(title, loc="left", fontsize=11, fontweight="bold")
    if not rows or all(r.status == "not run" for r in rows):
        ax.text(
            0.5,
            0.5,
            "not run",
            ha="center",
            va="center",
            color=MUTED,
            fontsize=14,
            style="italic",
            transform=ax.transAxes,
        )
        ax.set_axis_off()
        return
    ys = list(range(len(rows)))[::-1]  # the first row on top
    bars = max([r.value or 0.0 for r in rows] + [r.high or 0.0 for r in rows])
    # room for the labels right of the bars; the floor's label goes left of its line
    top = max(bars * 1.75, (floor or 0.0) * 1.06) or 1.0
    ax.set_xlim(0, top)
    top /= 1.75
    ax.set_ylim(-0.7, len(rows) - 0.3)
    for y, r in zip(ys, rows, strict=True):
        if r.value is None:
            color = FAILED if r.status == "failed" else MUTED
            ax.text(
                top * 0.01,
                y,
                r.text,
                va="center",
                ha="left",
                color=color,
                fontsize=9,
                style="italic",
                zorder=5,
                bbox=_BEHIND,
            )
            continue
        gapless = r.client == "gapless"
        ax.barh(y, r.value, height=0.62, color=GAPLESS if gapless else PEER, zorder=2)
        if r.low is not None and r.high is not None:
            ax.plot([r.low, r.high], [y, y], color="black", linewidth=1.2, zorder=3)
            for end in (r.low, r.high):
                ax.plot([end, end], [y - 0.12, y + 0.12], color="black", linewidth=1.2, zorder=3)
        ax.text(
            max(r.value, r.high or 0.0) + top * 0.015,
            y,
            r.text,
            va="center",
            ha="left",
            fontsize=9,
            color=FAILED if r.alert else "black",
            fontweight="bold" if gapless or r.alert else "normal",
            zorder=5,
            bbox=_BEHIND,
        )
    ax.set_yticks(ys)
    ax.set_yticklabels([r.label for r in rows], fontsize=9)
    for tick, r in zip(ax.get_yticklabels(), rows, strict=True):
        if r.client == "gapless":
            tick.set_fontweight("bold")
            tick.set_color(GAPLESS)
    if floor is not None:
        ax.axvline(floor, color=FLOOR, linestyle="--", linewidth=1.2, zorder=4)
        ax.text(
            floor,
            len(rows) - 0.35,
            f"floor (picows + orjson) {floor:,.0f}/s ",
            va="top",
            ha="right",
            fontsize=8.5,
            color=FLOOR,
        )
    ax.set_xlabel(unit, fontsize=9)
    if not bars and floor is None:
        ax.set_xticks([])
    ax.xaxis.set_major_formatter(_thousands)
    ax.tick_params(axis="x", labelsize=8)
    ax.grid(axis="x", color="#e4e4e4", zorder=0)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def _thousands(x: float, _pos: float | None = None) -> str:
    if x >= 1_000_000:
        return f"{x / 1e6:g}M"
    if x >= 1000:
        return f"{x / 1e3:g}k"
    return f"{x:g}"


def render(report: dict[str, Any], out: Path, *, dpi: int = DPI) -> Path:
    """Draw ``report`` (a parsed result file) to the PNG ``out``; returns ``out``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=FIGSIZE, dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(3, 2).flatten()
    for ax, workload in zip(axes, (*THROUGHPUT_WORKLOADS, "W6"), strict=True):
        if workload == "W6":
            _panel(
                ax,
                TITLES[workload],
                recovery_rows(report),
                "ms from the server's re-accept to the client's first verified book "
                "(lower is better)",
                None,
            )
        else:
            _panel(
                ax,
                TITLES[workload],
                throughput_rows(report, workload),
                "messages/s (higher is better)",
                floor_rate(report, workload),
            )
    fig.suptitle(_title(report), fontsize=12)
    fig.supxlabel(
        "msgs/s = messages the server sent / (client's last callback − server's first send); "
        "every client must end with the server's books, or its run counts as failed and "
        "gets no bar",
        fontsize=8.5,
        color=MUTED,
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png", dpi=dpi)
    return out


def render_file(result: Path, out: Path | None = None) -> Path:
    """Chart the result file ``result`` to ``out`` (default: the same name, ``.png``)."""
    report: dict[str, Any] = json.loads(result.read_text())
    return render(report, out or result.with_suffix(".png"))


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.chart", description=__doc__.splitlines()[0])
    p.add_argument("result", type=Path, help="a bench/results/<date>.json file")
    p.add_argument("--out", type=Path, default=None, help="PNG path (default: next to result)")
    args = p.parse_args(argv)
    if not available():
        print(
            "matplotlib is not installed: pip install 'gapless[bench]' (or pip install matplotlib)"
        )
        return 2
    print(f"written: {render_file(args.result, args.out)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
