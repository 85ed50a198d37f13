"""How long to wait before trying again: exponential backoff with full jitter, floored by Retry-After,
and the gate that holds every worker while the server asked for a wait.

Full jitter (a uniform draw between 0 and the exponential ceiling) spreads many clients that failed at the
same moment, so a recovering server is not hit by a synchronised wave. A server that says when to come
back (`Retry-After` on 429/503) knows better than our schedule: its value is the floor.
"""

from __future__ import annotations

import random
import threading
import time


def backoff_delay(attempt: int, base: float = 1.0, cap: float = 300.0, floor: float = 0.0,
                  rng: random.Random | None = None) -> float:
    """Seconds to wait before attempt `attempt + 1` (attempt counts from 1): U(0, min(cap, base*2^(n-1)))."""
    ceiling = min(cap, base * 2 ** max(attempt - 1, 0))
    draw = (rng or random).uniform(0.0, ceiling)
    return max(floor, draw)


class ServerGate:
    """Holds every worker back while the server asked us to wait (429/503): one gate per server.

    `close_for` only ever extends the wait, so two workers reporting the same 429 do not shorten it. When
    the wait is over, one worker goes first (the probe) and the others wait for its answer: a server that
    is still overloaded then sees one request, not a burst from every worker at the same instant.
    """

    def __init__(self) -> None:
        self._until = 0.0
        self._probe_needed = False
        self._prober: int | None = None
        self._cond = threading.Condition()

    def close_for(self, seconds: float) -> bool:
        """Extend the wait to at least `seconds` from now; True if that extended it (worth announcing)."""
        with self._cond:
            self._probe_needed = True
            until = time.monotonic() + seconds
            if until <= self._until:
                return False
            self._until = until
            return True

    def remaining(self) -> float:
        with self._cond:
            return max(0.0, self._until - time.monotonic())

    def wait_open(self, cancelled: threading.Event, poll: float = 0.1) -> bool:
        """Block until this thread may send a request; False if `cancelled` was set first."""
        me = threading.get_ident()
        while True:
            with self._cond:
                left = self._until - time.monotonic()
                if left <= 0:
                    if not self._probe_needed or self._prober == me:
                        return True
                    if self._prober is None:
                        self._prober = me
                        return True
                    left = poll
            if cancelled.wait(min(left, poll)):
                return False

    def succeeded(self) -> None:
        """The server answered this thread normally: if it was the probe, everyone may go."""
        with self._cond:
            if self._prober == threading.get_ident():
                self._prober = None
                self._probe_needed = False

    def release(self) -> None:
        """This thread's attempt is over (whatever happened): another worker may probe."""
        with self._cond:
            if self._prober == threading.get_ident():
                self._prober = None
