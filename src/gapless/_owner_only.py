"""Owner-only files and directories for everything gapless writes to disk.

Captures (every frame, including private account traffic) and the simulator's
truth log (its accounts' orders and balances) are created ``0600``, and
directories gapless creates for them ``0700``, whatever the umask. A regular
file that already exists with wider permissions is tightened *before* it is
truncated, so a file that cannot be made owner-only is refused untouched.
Other kinds of files (``/dev/full``, a FIFO, ``/dev/stdout``) are written as
they are: changing a device node's mode would change it for the whole system.
Existing directories are never changed.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

__all__ = ["DIR_MODE", "FILE_MODE", "make_owner_only_dirs", "open_owner_only"]

FILE_MODE = 0o600
DIR_MODE = 0o700


def open_owner_only(path: str | Path) -> int:
    """Open ``path`` for writing from its start (created ``0600``) and return the fd.

    Raises :class:`OSError` when the file cannot be opened, or is an existing
    regular file whose permissions cannot be tightened (e.g. owned by someone
    else): then it is left as it was, not truncated."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
    try:
        st = os.fstat(fd)
        if stat.S_ISREG(st.st_mode):
            if stat.S_IMODE(st.st_mode) & 0o077:
                os.fchmod(fd, FILE_MODE)
            os.ftruncate(fd, 0)
    except BaseException:
        os.close(fd)
        raise
    return fd


def make_owner_only_dirs(directory: str | Path) -> None:
    """Create ``directory`` and its missing parents, each ``0700``; existing ones are left alone."""
    missing: list[Path] = []
    d = Path(directory)
    while not d.exists():
        missing.append(d)
        if d.parent == d:
            break
        d = d.parent
    for d in reversed(missing):
        try:
            os.mkdir(d, DIR_MODE)
        except FileExistsError:
            continue  # made meanwhile by someone else: not ours to change
        os.chmod(d, DIR_MODE)  # ours: exactly 0700 whatever the umask
