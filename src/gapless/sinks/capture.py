"""Raw capture: every frame and REST exchange as JSON Lines (issue 2 item 8).

One object per line::

    {"t": 1732200000.123456, "venue": "kraken", "conn": "kraken#1.3",
     "kind": "ws_open"|"ws_in"|"ws_out"|"ws_close"|"rest", "url": ..., "data": ...,
     "code": ..., "method": ..., "status": ...}

``data`` is the frame text exactly as on the wire (binary frames are decoded as
UTF-8 with replacement and flagged ``"binary": true``). Values registered with
:meth:`redact` (tokens, signatures) are replaced by ``"<redacted>"`` before
anything is written.

**Permissions.** The file is created owner-only (``0600``); an existing file
with wider permissions is tightened before it is truncated, and one that cannot
be tightened is refused (a failure, below). Devices and FIFOs are written as
they are (see :mod:`gapless._owner_only`).

**Buffering.** Records are encoded into a 64 KiB buffer that is written with
``os.write`` when full and on :meth:`flush` / :meth:`close`; the file always
ends with whole records (a torn last record is cut off when the file allows).

**Failure (full or read-only disk, I/O error).** Opening, writing, flushing and
closing never raise into the feed. The first ``OSError`` (``ENOSPC``,
``EROFS``, ``EACCES``, ``EIO``, ``EFBIG``, ...) ends the capture for the rest
of the session: the file is closed and keeps every record written before the
failure; the records that did not reach it, and every record offered after, are
counted in :attr:`dropped`; :attr:`error` says what failed; ``on_failure`` is
called once (the feed turns it into one :class:`~gapless.events.SinkFailed`
event and an ERROR log line). The capture is not reopened later: resuming
would leave a hole in the middle of the file that :mod:`gapless.replay` cannot
see (it would replay the hole as if nothing had been missed), while a capture
that stops is a complete record of the session up to a declared point.
"""

from __future__ import annotations

import contextlib
import errno as errno_mod
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from gapless._owner_only import open_owner_only

__all__ = ["CaptureWriter"]

log = logging.getLogger("gapless.capture")

_ENC = msgspec.json.Encoder()
_BUFFER_BYTES = 1 << 16


class CaptureWriter:
    """A capture file. ``on_failure(writer)`` is called once, on the first failure.

    Counters: :attr:`records` (records accepted while the capture worked),
    :attr:`dropped` (records that never reached the file), :attr:`failures`
    (0 or 1), :attr:`error` (the failure, e.g. ``"ENOSPC: No space left on
    device (write)"``) and :attr:`errno`."""

    def __init__(
        self,
        path: str | Path,
        *,
        on_failure: Callable[[CaptureWriter], None] | None = None,
        buffer_bytes: int = _BUFFER_BYTES,
    ) -> None:
        self.path = Path(path)
        self.on_failure = on_failure
        self._secrets: list[str] = []
        self._buf = bytearray()
        self._pending = 0  # records in _buf
        self._limit = buffer_bytes
        self._written = 0  # bytes of whole records in the file
        self.records = 0
        self.dropped = 0
        self.failures = 0
        self.error: str | None = None
        self.errno: int | None = None
        self._fd: int | None = None
        try:
            self._fd = open_owner_only(self.path)
        except OSError as exc:
            self._fail(exc, "open")

    @property
    def active(self) -> bool:
        """True while records are still being written."""
        return self._fd is not None

    def redact(self, secret: str) -> None:
        if secret and secret not in self._secrets:
            self._secrets.append(secret)

    def write(self, t: float, venue: str, conn: str, kind: str, **fields: Any) -> None:
        if self._fd is None:
            self.dropped += 1
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
        buf = self._buf
        _ENC.encode_into(rec, buf, -1)
        buf += b"\n"
        self._pending += 1
        self.records += 1
        if len(buf) >= self._limit:
            self._drain("write")

    def flush(self) -> None:
        """Write out the buffer (the OS's page cache: no fsync)."""
        if self._fd is not None and self._buf:
            self._drain("flush")

    def close(self) -> None:
        if self._fd is None:
            return
        if self._buf:
            self._drain("close")
        fd, self._fd = self._fd, None  # None if the last write failed
        if fd is not None:
            try:
                os.close(fd)
            except OSError as exc:  # e.g. EIO / ENOSPC reported at close (NFS)
                self._fail(exc, "close")

    def _drain(self, op: str) -> None:
        fd = self._fd
        assert fd is not None
        buf = self._buf
        view = memoryview(buf)
        done = 0
        try:
            while done < len(buf):
                done += os.write(fd, view[done:])
        except OSError as exc:
            whole = buf.rfind(b"\n", 0, done) + 1  # bytes of the records that made it
            kept = buf.count(b"\n", 0, whole)
            self._written += whole
            if done > whole:  # cut a torn record off (a regular file on a full disk)
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, self._written)
            self.dropped += self._pending - kept
            self._pending = 0
            view.release()
            buf.clear()
            self._fail(exc, op)
            return
        view.release()
        self._written += done
        self._pending = 0
        buf.clear()

    def _fail(self, exc: OSError, op: str) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)
        self.failures += 1
        self.errno = exc.errno
        name = errno_mod.errorcode.get(exc.errno or 0, "OSError")
        self.error = f"{name}: {exc.strerror or exc} ({op})"
        if self.on_failure is not None:
            try:
                self.on_failure(self)
            except Exception:  # a bug in the callback must not reach the feed either
                log.exception("capture to %s: the failure callback failed", self.path)
