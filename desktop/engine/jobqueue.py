"""Versions waiting for a worker: ready now or after a backoff delay, in one place.

The queue also counts jobs a worker has taken but not finished, so "nothing left to do" (`idle`) is one
question asked under one lock, without a window between taking a job and starting it. `hold` stops
hand-outs (pause all) without forgetting anything.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time


class JobQueue:
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._due: dict[int, float] = {}  # job -> monotonic time it may start
        self._heap: list[tuple[float, int, int]] = []
        self._seq = itertools.count()
        self._active = 0
        self._held = False
        self._closed = False

    def put(self, job: int, delay: float = 0.0) -> None:
        """Queue `job` (again) to start after `delay` seconds; a job already queued takes the new time."""
        with self._cond:
            due = time.monotonic() + delay
            self._due[job] = due
            heapq.heappush(self._heap, (due, next(self._seq), job))
            self._cond.notify_all()

    def discard(self, job: int) -> bool:
        with self._cond:
            return self._due.pop(job, None) is not None

    def take(self, timeout: float) -> int | None:
        """The next due job (counted active until `finished`), or None after `timeout`/when closed."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not self._closed:
                now = time.monotonic()
                self._drop_stale()
                if not self._held and self._heap and self._heap[0][0] <= now:
                    _, _, job = heapq.heappop(self._heap)
                    del self._due[job]
                    self._active += 1
                    return job
                wake = deadline
                if not self._held and self._heap:
                    wake = min(wake, self._heap[0][0])
                if now >= deadline:
                    return None
                self._cond.wait(wake - now)
            return None

    def _drop_stale(self) -> None:
        """Heap entries superseded by a later put or a discard are skipped lazily."""
        while self._heap and self._due.get(self._heap[0][2]) != self._heap[0][0]:
            heapq.heappop(self._heap)

    def finished(self) -> None:
        with self._cond:
            self._active -= 1
            self._cond.notify_all()

    def hold(self, held: bool) -> None:
        with self._cond:
            self._held = held
            self._cond.notify_all()

    def idle(self) -> bool:
        with self._cond:
            return not self._due and self._active == 0

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
