"""The ground-truth log: everything the simulator published, as JSON Lines.

Records are plain dicts, kept in memory (``KrakenSim.truth``) and, when a path
is configured, appended to a JSONL file (one ``json.dumps`` per line, flushed
on :meth:`TruthLog.flush` and on close). With a path, ``keep=False`` keeps
nothing in memory (long soaks: the file is the only copy). ``ts_ns`` is always the exchange
timestamp in nanoseconds: the microsecond wire timestamp times 1000.

Record shapes (exact keys) are listed in :mod:`gapless.sim.kraken`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import IO, Any

from gapless._owner_only import make_owner_only_dirs, open_owner_only

__all__ = ["TruthLog"]


class TruthLog:
    """Append-only record list with an optional JSONL mirror."""

    def __init__(self, path: str | Path | None = None, *, keep: bool = True) -> None:
        if not keep and path is None:
            raise ValueError("a truth log that keeps nothing in memory needs a path")
        self.records: list[dict[str, Any]] = []
        self.path = Path(path) if path is not None else None
        self.keep = keep
        self._fh: IO[str] | None = None

    def open(self) -> None:
        if self.path is not None and self._fh is None:
            # owner-only: the truth carries the simulated accounts' orders and balances
            make_owner_only_dirs(self.path.parent)
            self._fh = os.fdopen(open_owner_only(self.path), "w", encoding="utf-8")

    def add(self, record: dict[str, Any]) -> None:
        if self.keep:
            self.records.append(record)
        if self._fh is not None:
            self._fh.write(json.dumps(record, separators=(",", ":")))
            self._fh.write("\n")

    def flush(self) -> None:
        if self._fh is not None:
            self._fh.flush()

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
