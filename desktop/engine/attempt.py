"""One running upload attempt: the engine's handle on it and the transport's hooks into the engine.

The engine holds it to cancel the attempt and to read how far it got; the transport is given it as its
`client.tus.UploadHooks`. What the engine does when the transport reports (record the URL and offset in
the journal, let the server gate open, check the file did not change) comes in as callbacks at
construction, so neither side reaches into the other's state.

Progress comes every 256 KiB block; a front end needs a few updates a second, so at most one Progress
event per `PROGRESS_INTERVAL` per file goes out, with a smoothed rate.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from tuskit.checksums import ShortFile, hash_file

from ..client.errors import Cancelled, FileChanged
from . import events as ev

PROGRESS_INTERVAL = 0.25


class Attempt:
    def __init__(self, version_id: int, path: str, size: int, emit: Callable[[ev.EngineEvent], None], *,
                 wait_turn: Callable[[threading.Event], bool], on_started: Callable[[str, int], None],
                 on_confirmed: Callable[[int], None]) -> None:
        """`wait_turn(cancelled)` blocks while the server asked everyone to wait (False: cancelled);
        `on_started(url, offset)` and `on_confirmed(offset)` are the engine's side of those reports."""
        self.version_id, self.path, self.size = version_id, path, size
        self.cancelled = threading.Event()
        self.reason: str | None = None  # why it was cancelled: pause, pause-all, remove, stop, superseded
        self.bytes_sent = 0  # confirmed by the server, plus what went onto the socket since
        self._emit = emit
        self._wait_turn, self._on_started, self._on_confirmed = wait_turn, on_started, on_confirmed
        self._mark = (time.monotonic(), 0)
        self._rate = 0.0

    def cancel(self, reason: str) -> None:
        if not self.cancelled.is_set():
            self.reason = reason
            self.cancelled.set()

    def restart_clock(self, offset: int) -> None:
        """The server confirmed `offset`; rates count from here."""
        self.bytes_sent = offset
        self._mark = (time.monotonic(), offset)

    def sha256(self) -> str:
        """SHA-256 of the version's `size` bytes (what is declared and uploaded), stoppable between blocks."""
        try:
            return str(hash_file(self.path, "sha256", self.size, before_block=self._stop_if_cancelled).hexdigest())
        except ShortFile:
            raise FileChanged("the file became shorter while being hashed") from None

    def _stop_if_cancelled(self) -> None:
        if self.cancelled.is_set():
            raise Cancelled

    # client.tus.UploadHooks, called by the transport on the worker thread

    def before_request(self) -> None:
        if not self._wait_turn(self.cancelled):
            raise Cancelled

    def started(self, url: str, offset: int) -> None:
        self.restart_clock(offset)
        self._on_started(url, offset)

    def sent(self, n: int) -> None:
        self.bytes_sent += n
        now = time.monotonic()
        then, sent_then = self._mark
        if now - then >= PROGRESS_INTERVAL:
            instant = (self.bytes_sent - sent_then) / (now - then)
            self._rate = instant if self._rate == 0 else 0.5 * self._rate + 0.5 * instant
            self._mark = (now, self.bytes_sent)
            self._emit(ev.Progress(self.path, self.bytes_sent, self.size, self._rate))

    def confirmed(self, offset: int) -> None:
        self.bytes_sent = offset
        self._on_confirmed(offset)
