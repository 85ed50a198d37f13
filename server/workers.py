"""`tuskit server --workers N`: a parent process that forks N workers and keeps N of them running.

The parent binds the listening sockets and prepares everything once (the embedded redis, stale leases),
then forks; it serves no request itself and never runs an event loop, so every fork happens from a quiet,
single-threaded process. It replaces a worker that dies (after a growing pause if workers keep dying
young, so a worker that cannot start does not spin), forwards SIGTERM and waits until every worker has
drained, and exits non-zero when the app's health check (the embedded redis could not be restarted) fails.

Tornado's fork_processes is close, but it neither logs nor lets its parent do work between forks, and
its parent exits when a worker fails: here the parent owns the embedded redis for the workers' lifetime.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import struct
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType
from typing import Any

from .redis.embedded import die_with_parent, exit_status

log = logging.getLogger("tuskit.server.workers")

STABLE_SECONDS = 10.0  # a worker that dies younger than this died "at start": its replacement waits
FIRST_PAUSE, MAX_PAUSE = 0.5, 30.0  # the wait doubles with each young death in a row, up to MAX_PAUSE
DRAIN_LIMIT = 90.0  # a worker still draining this long after SIGTERM is killed (its own limits are 15s each)
TICK = 0.5  # how often the parent runs its check (the embedded redis) when nothing else wakes it
_PID = struct.Struct("=i")  # a worker's "ready": its pid, written atomically (< PIPE_BUF) on a shared pipe

Work = Callable[[int, Callable[[], None]], int]
"""What a worker runs: (its slot, call when ready) -> exit code. Runs in the forked child."""


def pause_after(young_deaths: int) -> float:
    """How long a slot stays empty after its worker died young this many times in a row."""
    return 0.0 if young_deaths <= 0 else min(MAX_PAUSE, FIRST_PAUSE * 2 ** (young_deaths - 1))


@dataclass
class _Worker:
    slot: int
    pid: int
    started: float
    ready: bool = False


class Supervisor:
    """Run `count` workers until SIGTERM/SIGINT (exit 0 once all drained) or a failed `check` (exit 1)."""

    def __init__(self, count: int, work: Work, *, check: Callable[[], bool], retired: Callable[[int], None],
                 announce: Callable[[], None], stop_listening: Callable[[], None]) -> None:
        self.count = count
        self.work = work
        self.check = check  # False: the server cannot go on (the workers are stopped, the exit is 1)
        self.retired = retired  # a slot's worker is gone (before a replacement takes the slot)
        self.announce = announce  # every worker is ready, once
        self.stop_listening = stop_listening  # at the stop: the parent's copies of the listening sockets
        self.workers: dict[int, _Worker] = {}  # by pid
        self.due: dict[int, float] = {}  # empty slot -> when its next worker starts
        self.young_deaths = [0] * count
        self.stopping = False
        self._ready_r, self._ready_w = os.pipe()
        self._wake_r, self._wake_w = os.pipe()
        for fd in (self._ready_r, self._wake_r, self._wake_w):
            os.set_blocking(fd, False)
        self._handlers: dict[int, Any] = {}
        self._parent = os.getpid()

    def run(self) -> int:
        previous_wakeup = signal.set_wakeup_fd(self._wake_w)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
            self._handlers[sig] = signal.signal(sig, self._on_signal)
        try:
            for slot in range(self.count):
                self._start(slot)
            return self._supervise()
        finally:
            for sig, handler in self._handlers.items():
                signal.signal(sig, handler)
            signal.set_wakeup_fd(previous_wakeup)
            for fd in (self._ready_r, self._ready_w, self._wake_r, self._wake_w):
                os.close(fd)

    def _on_signal(self, sig: int, _frame: FrameType | None) -> None:
        """The wakeup fd has already woken the loop; SIGCHLD needs nothing more."""
        if sig != signal.SIGCHLD:
            self.stopping = True

    # ---- the loop -----------------------------------------------------------------------------------

    def _supervise(self) -> int:
        announced = False
        while True:
            self._wait(min([TICK, *(at - time.monotonic() for at in self.due.values())]))
            if self.stopping:
                log.info("shutting down: %d workers save their in-flight uploads", len(self.workers))
                return self._stop_all(0)
            self._read_ready()
            for worker, status in self._reap():
                if not announced:
                    log.error("worker %d (pid %d) did not start (%s)", worker.slot, worker.pid, exit_status(status))
                    return self._stop_all(1)
                self._replace(worker, status)
            if not self.check():
                return self._stop_all(1)
            if not announced and len(self.workers) == self.count and all(w.ready for w in self.workers.values()):
                self.announce()
                announced = True
            now = time.monotonic()
            for slot, at in list(self.due.items()):
                if at <= now:
                    del self.due[slot]
                    self._start(slot)

    def _wait(self, timeout: float) -> None:
        select.select([self._wake_r, self._ready_r], [], [], max(0.0, timeout))
        with contextlib.suppress(BlockingIOError):
            while os.read(self._wake_r, 512):
                pass

    def _read_ready(self) -> None:
        with contextlib.suppress(BlockingIOError):
            data = os.read(self._ready_r, 4096)
            for (pid,) in _PID.iter_unpack(data):
                if pid in self.workers:
                    self.workers[pid].ready = True

    def _reap(self) -> list[tuple[_Worker, int]]:
        """The workers that ended since the last call, with their exit codes (-N: killed by signal N)."""
        gone = []
        for pid in list(self.workers):
            with contextlib.suppress(ChildProcessError):
                done, status = os.waitpid(pid, os.WNOHANG)
                if done == 0:
                    continue
                gone.append((self.workers.pop(pid), os.waitstatus_to_exitcode(status)))
        return gone

    def _replace(self, worker: _Worker, status: int) -> None:
        self.retired(worker.slot)
        age = time.monotonic() - worker.started
        young = age < STABLE_SECONDS or not worker.ready
        self.young_deaths[worker.slot] = self.young_deaths[worker.slot] + 1 if young else 0
        pause = pause_after(self.young_deaths[worker.slot])
        log.warning("worker %d (pid %d) ended after %.1fs (%s); a new one starts %s", worker.slot, worker.pid,
                    age, exit_status(status), f"in {pause:g}s" if pause else "now")
        self.due[worker.slot] = time.monotonic() + pause

    def _stop_all(self, code: int) -> int:
        """SIGTERM every worker and wait until all have drained (the embedded redis stays up meanwhile)."""
        self.due.clear()
        for pid in self.workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        self.stop_listening()  # once the workers have closed theirs, new connections are refused
        deadline = time.monotonic() + DRAIN_LIMIT
        healthy = code == 0  # after a failed check there is nothing left to keep alive
        while self.workers:
            if time.monotonic() > deadline:
                for worker in self.workers.values():
                    log.error("worker %d (pid %d) still draining after %gs; killed", worker.slot, worker.pid,
                              DRAIN_LIMIT)
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(worker.pid, signal.SIGKILL)
                deadline = float("inf")
            self._wait(TICK)
            for worker, status in self._reap():
                if status not in (0, -signal.SIGTERM):  # SIGTERM ends a worker that had nothing to drain yet
                    log.error("worker %d (pid %d) ended with %s", worker.slot, worker.pid, exit_status(status))
                    code = 1
            healthy = healthy and self.check()  # a redis that dies now comes back: workers save their offsets
        return code

    # ---- a worker -----------------------------------------------------------------------------------

    def _start(self, slot: int) -> None:
        pid = os.fork()
        if pid:
            self.workers[pid] = _Worker(slot, pid, time.monotonic())
            return
        code = 1

        def ready() -> None:
            os.write(self._ready_w, _PID.pack(os.getpid()))

        try:
            self._become_worker()
            code = self.work(slot, ready)
        except KeyboardInterrupt:  # a Ctrl-C before the worker took SIGINT over: nothing to drain yet
            code = 0
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)  # never back into the parent's stack (its finally blocks would stop the redis)

    def _become_worker(self) -> None:
        for sig, handler in self._handlers.items():
            signal.signal(sig, handler)
        signal.set_wakeup_fd(-1)
        for fd in (self._ready_r, self._wake_r, self._wake_w):
            os.close(fd)
        die_with_parent()  # a parent killed with -9 takes its workers along (they drain: SIGTERM)
        if os.getppid() != self._parent:  # it died before we asked
            os._exit(0)
