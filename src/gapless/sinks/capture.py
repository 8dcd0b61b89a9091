"""Raw capture: every frame and REST exchange as JSON Lines (issue 2 item 8).

One object per line::

    {"t": 1732200000.123456, "venue": "kraken", "conn": "kraken#1.3",
     "kind": "ws_open"|"ws_in"|"ws_out"|"ws_close"|"rest", "url": ..., "data": ...,
     "code": ..., "method": ..., "status": ...}

``data`` is the frame text exactly as on the wire (binary frames are decoded as
UTF-8 with replacement and flagged ``"binary": true``). Files are created with
owner-only permissions (0600). Values registered with :meth:`redact` (tokens,
signatures) are replaced by ``"<redacted>"`` before anything is written.
Writing is buffered; a failing disk never raises into the feed: the error is
remembered in ``self.error`` and capture stops.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO, Any

import msgspec

__all__ = ["CaptureWriter"]

_ENC = msgspec.json.Encoder()


class CaptureWriter:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.chmod(self.path, 0o600)
        self._fh: IO[bytes] | None = os.fdopen(fd, "wb", buffering=1 << 16)
        self._secrets: list[str] = []
        self.records = 0
        self.error: str | None = None

    def redact(self, secret: str) -> None:
        if secret and secret not in self._secrets:
            self._secrets.append(secret)

    def write(self, t: float, venue: str, conn: str, kind: str, **fields: Any) -> None:
        fh = self._fh
        if fh is None:
            return
        rec: dict[str, Any] = {"t": t, "venue": venue, "conn": conn, "kind": kind}
        for k, v in fields.items():
            if v is None:
                continue
            if k == "data" and isinstance(v, bytes):
                v = v.decode("utf-8", "replace")
                rec["binary"] = True
            if isinstance(v, str) and self._secrets:
                for s in self._secrets:
                    if s in v:
                        v = v.replace(s, "<redacted>")
            rec[k] = v
        try:
            fh.write(_ENC.encode(rec))
            fh.write(b"\n")
            self.records += 1
        except OSError as exc:
            self.error = f"capture to {self.path} failed: {exc}"
            self.close()

    def flush(self) -> None:
        if self._fh is not None:
            try:
                self._fh.flush()
            except OSError as exc:
                self.error = f"capture to {self.path} failed: {exc}"

    def close(self) -> None:
        fh, self._fh = self._fh, None
        if fh is not None:
            try:
                fh.close()
            except OSError as exc:
                self.error = self.error or f"capture to {self.path} failed: {exc}"
