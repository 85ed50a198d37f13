"""An optional total bandwidth limit shared by every upload worker.

Each block reserves its slot on a virtual timeline (`n / rate` seconds long) and waits until that slot
starts, so N workers together send at most `rate` bytes per second, with at most one block of burst.
"""

from __future__ import annotations

import threading
import time


class Throttle:
    def __init__(self, bytes_per_second: int | None) -> None:
        self.rate = bytes_per_second
        self._next = 0.0
        self._lock = threading.Lock()

    def take(self, n: int, cancelled: threading.Event) -> bool:
        """Wait until `n` more bytes may be sent; False if `cancelled` was set meanwhile."""
        if not self.rate:
            return not cancelled.is_set()
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + n / self.rate
        return not cancelled.wait(start - now) if start > now else not cancelled.is_set()
