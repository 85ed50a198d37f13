"""One running upload attempt as the engine sees it: its cancel switch and its coalesced progress.

Progress comes every 256 KiB block; a front end needs a few updates a second, so at most one Progress
event per `PROGRESS_INTERVAL` per file goes out, with a smoothed rate.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from . import events as ev

PROGRESS_INTERVAL = 0.25


class Attempt:
    def __init__(self, version_id: int, path: str, size: int, emit: Callable[[ev.EngineEvent], None]) -> None:
        self.version_id, self.path, self.size = version_id, path, size
        self.cancelled = threading.Event()
        self.reason: str | None = None  # why it was cancelled: pause, pause-all, remove, stop, superseded
        self.sent = 0
        self._emit = emit
        self._mark = (time.monotonic(), 0)
        self._rate = 0.0

    def cancel(self, reason: str) -> None:
        if not self.cancelled.is_set():
            self.reason = reason
            self.cancelled.set()

    def restart_clock(self, offset: int) -> None:
        """The server confirmed `offset`; rates count from here."""
        self.sent = offset
        self._mark = (time.monotonic(), offset)

    def add(self, n: int) -> None:
        self.sent += n
        now = time.monotonic()
        then, sent_then = self._mark
        if now - then >= PROGRESS_INTERVAL:
            instant = (self.sent - sent_then) / (now - then)
            self._rate = instant if self._rate == 0 else 0.5 * self._rate + 0.5 * instant
            self._mark = (now, self.sent)
            self._emit(ev.Progress(self.path, self.sent, self.size, self._rate))
