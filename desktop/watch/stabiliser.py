"""When is a file finished? When it has been quiet for a while and two stats agree.

A camera import or a browser download writes for seconds or hours; uploading too early publishes half a
file and uploads it again later. Per path we remember the stat taken at the last change event; once the
path has been quiet for `quiet` seconds we stat again, and if size and mtime still agree the file is
ready. A close-after-write event (or a rename onto the path: an editor's atomic save) means the writer is
probably done, so the wait shrinks to `close_grace`. A file that keeps changing for `max_wait` seconds
(a log, a stream recording) is released anyway as a *snapshot*: its first `size` bytes, which the server
verifies by SHA-256.

The class is pure bookkeeping over explicit `now` values; the engine runs it on a thread.
"""

from __future__ import annotations

import os
import stat as stat_mod
from collections.abc import Callable
from dataclasses import dataclass

Stat = tuple[int, int]  # (size, mtime_ns)


def stat_file(path: str) -> Stat | None:
    """Size and mtime of a regular file (not following symlinks); None if it is gone or not a file."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    if not stat_mod.S_ISREG(st.st_mode):
        return None
    return st.st_size, st.st_mtime_ns


@dataclass(frozen=True)
class Ready:
    path: str
    size: int
    mtime_ns: int
    snapshot: bool  # released by the max_wait cap while still changing


@dataclass
class _Pending:
    first_seen: float
    last_event: float
    due: float
    stat: Stat | None
    closed: bool


class Stabiliser:
    def __init__(self, quiet: float = 2.0, max_wait: float = 600.0, close_grace: float = 0.3,
                 stat: Callable[[str], Stat | None] = stat_file) -> None:
        self.quiet = quiet
        self.max_wait = max(max_wait, quiet)
        self.close_grace = min(close_grace, quiet)
        self._stat = stat
        self._pending: dict[str, _Pending] = {}

    def __len__(self) -> int:
        return len(self._pending)

    def note(self, path: str, now: float, closed: bool = False) -> None:
        """The file changed (created, written, closed after writing, or renamed onto `path`)."""
        entry = self._pending.get(path)
        if entry is None:
            entry = self._pending[path] = _Pending(first_seen=now, last_event=now, due=now, stat=None, closed=closed)
        entry.stat = self._stat(path)
        entry.closed = closed
        entry.last_event = now
        self._schedule(entry, now)

    def _wait(self, entry: _Pending) -> float:
        return self.close_grace if entry.closed else self.quiet

    def _schedule(self, entry: _Pending, now: float) -> None:
        """Next check: after the quiet period, but never later than the cap (events keep pushing it)."""
        entry.due = min(now + self._wait(entry), entry.first_seen + self.max_wait)

    def forget(self, path: str) -> None:
        self._pending.pop(path, None)

    def next_due(self) -> float | None:
        return min((e.due for e in self._pending.values()), default=None)

    def poll(self, now: float) -> list[Ready]:
        """Check every path whose quiet period is over; return the ready ones (and stop tracking them)."""
        ready: list[Ready] = []
        for path, entry in list(self._pending.items()):
            if entry.due > now:
                continue
            current = self._stat(path)
            quiet = now >= entry.last_event + self._wait(entry)  # same arithmetic as `due`
            if current is None:  # deleted, or replaced by a folder: nothing to upload
                del self._pending[path]
            elif quiet and current == entry.stat:
                del self._pending[path]
                ready.append(Ready(path, current[0], current[1], snapshot=False))
            elif now - entry.first_seen >= self.max_wait:
                del self._pending[path]
                ready.append(Ready(path, current[0], current[1], snapshot=True))
            else:  # changed without telling us (no event, or a coarse poller): start the quiet period again
                entry.stat = current
                entry.last_event = now
                self._schedule(entry, now)
        return ready
