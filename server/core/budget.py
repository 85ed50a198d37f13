"""One memory budget for every request body in this process (--buffer-budget).

A body's bytes count (`held`) from the moment they are read off the socket until storage has them. A
body reads one piece at a time, each after `admit`: while the budget has room for another piece that is
at once; when it has not, the body waits its turn (first come, first served, but a body already under
way goes before one that has not started: finishing it frees what it holds, S3's unfilled part among
it), its socket is left alone and TCP slows its client. An upload is slowed, never refused. Bodies that
only start waiting take no lease on their upload yet, so a burst of a thousand uploads is served a few
dozen at a time instead of holding a thousand leases that each must be renewed.

Nothing a client does can pin the budget: a body let in counts against the room (one piece) only until
its piece arrives or for GRANT_SECONDS, and a read in progress (`reading`) only shrinks the next reads
(`start_read`), so a client that stalls holds nothing it never sent.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Hashable

MIN_PIECE = 64 * 1024  # the smallest read a body is given (tornado's socket reads come in 64 KiB anyway)
GRANT_SECONDS = 1.0  # a body let in that sends nothing for this long no longer counts against the room


class BodyBudget:
    def __init__(self, limit: int | None = None, piece: int = 1024 * 1024) -> None:
        """`limit`: bytes (None: unbounded, for tests of the core); `piece`: the room a body is let in for
        (the server's read size, so a body let in can read a whole piece)."""
        self.limit = limit
        self.piece = piece if limit is None else min(piece, limit)
        self.held = 0
        self.reading = 0
        self._waiters: deque[tuple[Hashable, asyncio.Future[None]]] = deque()  # bodies not started yet
        self._under_way: deque[tuple[Hashable, asyncio.Future[None]]] = deque()  # served first
        self._granted: dict[Hashable, float] = {}  # bodies let in whose piece has not come yet, oldest first
        self._timer: asyncio.TimerHandle | None = None

    @property
    def waiting(self) -> int:
        """Bodies waiting for room right now."""
        return len(self._waiters) + len(self._under_way)

    def start_read(self, want: int) -> int:
        """The size of the next read of a body: all it wants while there is room, less as the budget fills.
        Pair it with `end_read`."""
        size = want if self.limit is None else min(want, max(MIN_PIECE, self.limit - self.held - self.reading))
        self.reading += size
        return size

    def end_read(self, size: int) -> None:
        """A read that `start_read` sized is over (what it brought is held by whoever keeps it)."""
        self.reading -= size

    def hold(self, count: int) -> None:
        """`count` bytes of a body are in memory (until `release`)."""
        self.held += count

    def release(self, count: int) -> None:
        """`count` held bytes reached storage or were dropped."""
        self.held -= count
        self._wake()

    def would_wait(self) -> bool:
        """Whether `admit` would have to wait now."""
        return bool(self._waiters or self._under_way) or not self._room_for_one()

    def try_admit(self, body: Hashable) -> bool:
        """Let `body` read its next piece if that needs no wait (there is room and nobody waits): the common
        case, without the task and loop iteration a wait costs on every piece."""
        self._granted.pop(body, None)  # its last grant was used, or it is done with it
        if self.would_wait():
            return False
        self._granted[body] = time.monotonic()
        return True

    async def admit(self, body: Hashable, under_way: bool = False) -> None:
        """Return when `body` may read its next piece: at once while there is room and nobody waits.
        `under_way`: the body has begun (it holds a lease and maybe memory): it goes before new ones."""
        if self.try_admit(body):
            return
        waiter = asyncio.get_running_loop().create_future()
        queue = self._under_way if under_way else self._waiters
        queue.append((body, waiter))
        self._wake_when_grants_expire()
        try:
            await waiter
        finally:
            if not waiter.done() or waiter.cancelled():  # the request went away while waiting
                for i, (_, queued) in enumerate(queue):
                    if queued is waiter:
                        del queue[i]
                        break

    def used(self, body: Hashable) -> None:
        """`body`'s piece arrived, or it ended: its grant no longer counts against the room."""
        if self._granted.pop(body, None) is not None:
            self._wake()

    def _room_for_one(self) -> bool:
        if self.limit is None:
            return True
        now = time.monotonic()
        while self._granted:  # the oldest first: a body that sent nothing for a while stops counting
            body, since = next(iter(self._granted.items()))
            if now - since < GRANT_SECONDS:
                break
            del self._granted[body]
        return self.limit - self.held - len(self._granted) * self.piece >= self.piece

    def _wake(self) -> None:
        while (self._under_way or self._waiters) and self._room_for_one():
            body, waiter = (self._under_way or self._waiters).popleft()
            if not waiter.done():
                waiter.set_result(None)
                self._granted[body] = time.monotonic()
        self._wake_when_grants_expire()

    def _wake_when_grants_expire(self) -> None:
        """Waiters kept out only by grants must not wait for a release that may never come."""
        if (self._waiters or self._under_way) and self._granted and self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(GRANT_SECONDS, self._expired)

    def _expired(self) -> None:
        self._timer = None
        self._wake()
