"""Virtual environments for the peer libraries the benchmark compares gapless with.

Each peer runs in its own virtual environment, ``bench/.venvs/<name>``, built from a pinned
requirements file, ``bench/peers/<name>.txt`` (exact ``==`` versions of the peer and of every
package it pulls in). ``python -m bench.peers [--only NAME]`` creates the environments and
installs the pins, idempotently:

- an environment whose marker file holds the hash of its pin file is left alone;
- otherwise its ``pip freeze`` is compared with the pins, and pip runs only if they differ;
- after a successful install the marker is written.

The harness (``bench/run.py``) uses :func:`peer_python` (the interpreter of a ready
environment, or ``None``) and :func:`ensure` (build it if needed, then return it). How each
peer is configured against the bench server is described in ``bench/PEERS.md``.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "PEERS",
    "Peer",
    "client_script",
    "ensure",
    "peer_python",
    "pin_file",
    "venv_dir",
]

BENCH_DIR = Path(__file__).resolve().parent
PINS_DIR = BENCH_DIR / "peers"
VENVS_DIR = BENCH_DIR / ".venvs"
CLIENTS_DIR = BENCH_DIR / "clients"
MARKER = ".bench-pins.sha256"


@dataclass(frozen=True)
class Peer:
    """One peer library: its venv/pin-file name, its client script and its main package."""

    name: str  # bench/peers/<name>.txt and bench/.venvs/<name>
    script: str  # bench/clients/<script>
    package: str  # the distribution the pins are about (for messages)


PEERS: dict[str, Peer] = {
    p.name: p
    for p in (
        Peer("cryptofeed", "cryptofeed_client.py", "cryptofeed"),
        Peer("ccxt", "ccxt_client.py", "ccxt"),
        Peer("python-kraken-sdk", "kraken_sdk_client.py", "python-kraken-sdk"),
    )
}


def _peer(name: str) -> Peer:
    try:
        return PEERS[name]
    except KeyError:
        raise KeyError(f"unknown peer {name!r} (known: {', '.join(PEERS)})") from None


def pin_file(name: str) -> Path:
    return PINS_DIR / f"{_peer(name).name}.txt"


def venv_dir(name: str) -> Path:
    return VENVS_DIR / _peer(name).name


def client_script(name: str) -> Path:
    return CLIENTS_DIR / _peer(name).script


def _venv_python(name: str) -> Path:
    return venv_dir(name) / "bin" / "python"


def _pin_hash(name: str) -> str:
    return hashlib.sha256(pin_file(name).read_bytes()).hexdigest()


def _marker(name: str) -> Path:
    return venv_dir(name) / MARKER


def _canonical(requirement: str) -> str:
    """``Foo_Bar==1.0`` -> ``foo-bar==1.0`` (PEP 503 name normalisation, version kept)."""
    name, sep, version = requirement.partition("==")
    return re.sub(r"[-_.]+", "-", name.strip()).lower() + sep + version.strip()


def _pins(name: str) -> set[str]:
    pins: set[str] = set()
    for raw in pin_file(name).read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            pins.add(_canonical(line))
    return pins


def _freeze(python: Path) -> set[str]:
    out = subprocess.run(
        [str(python), "-m", "pip", "freeze", "--disable-pip-version-check"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return {_canonical(line) for line in out.splitlines() if line.strip() and "==" in line}


def peer_python(name: str) -> Path | None:
    """The interpreter of ``name``'s environment if it is built from the current pins."""
    python = _venv_python(name)
    marker = _marker(name)
    if not python.exists() or not marker.exists():
        return None
    if marker.read_text(encoding="utf-8").strip() != _pin_hash(name):
        return None
    return python


def ensure(name: str, *, log: bool = True) -> Path:
    """Create/refresh ``name``'s environment from its pin file; return its interpreter."""
    peer = _peer(name)

    def say(msg: str) -> None:
        if log:
            print(f"[{peer.name}] {msg}", flush=True)

    ready = peer_python(name)
    if ready is not None:
        say(f"up to date ({ready})")
        return ready
    python = _venv_python(name)
    if not python.exists():
        base = getattr(sys, "_base_executable", sys.executable)
        say(f"creating venv {venv_dir(name)} with {base}")
        subprocess.run([base, "-m", "venv", str(venv_dir(name))], check=True)
    wanted = _pins(name)
    missing = wanted - _freeze(python)
    if missing:
        say(f"installing {len(missing)} pinned package(s) from {pin_file(name)}")
        subprocess.run(
            [
                str(python),
                "-m",
                "pip",
                "install",
                "--disable-pip-version-check",
                "--quiet",
                "-r",
                str(pin_file(name)),
            ],
            check=True,
        )
        still = wanted - _freeze(python)
        if still:
            raise RuntimeError(f"{peer.name}: pins not satisfied after install: {sorted(still)}")
    else:
        say("installed packages already match the pins")
    extra = _freeze(python) - wanted
    if extra:
        say(f"note: packages beyond the pins are installed: {sorted(extra)}")
    _marker(name).write_text(_pin_hash(name) + "\n", encoding="utf-8")
    say(f"ready ({python})")
    return python


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.peers",
        description="Create bench/.venvs/<peer> from the pinned bench/peers/<peer>.txt.",
    )
    parser.add_argument("--only", choices=sorted(PEERS), help="only this peer")
    parser.add_argument(
        "--check",
        action="store_true",
        help="only report which environments are ready (exit 1 if one is not)",
    )
    args = parser.parse_args(argv)
    names = [args.only] if args.only else list(PEERS)
    if args.check:
        ok = True
        for name in names:
            python = peer_python(name)
            print(f"[{name}] {'ready ' + str(python) if python else 'NOT ready'}")
            ok = ok and python is not None
        return 0 if ok else 1
    failed: list[str] = []
    for name in names:
        try:
            ensure(name)
        except (subprocess.CalledProcessError, RuntimeError, OSError) as exc:
            print(f"[{name}] FAILED: {exc}", file=sys.stderr, flush=True)
            failed.append(name)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
