"""One running engine per journal: two (an overlapping cron `tuskit sync --once`, a `desk` left open)
would upload the same files twice and fight over the same upload leases on the server.

An advisory `flock` on a file beside the journal: the kernel releases it when the process dies, so a
crash never leaves a stale lock behind.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path


class JournalBusy(RuntimeError):
    pass


class RunLock:
    def __init__(self, journal_path: Path) -> None:
        self.path = journal_path.with_name(journal_path.name + ".lock")
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise JournalBusy(f"another tuskit sync/desk is running on the journal {self.path.with_suffix('')}; "
                              "stop it first or pass a different --journal") from None
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None
