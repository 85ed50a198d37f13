"""Resident memory of each server's process tree, sampled in a thread, so phases can ask for their peak."""

from __future__ import annotations

import bisect
import contextlib
import threading
import time
from collections.abc import Callable

import psutil

Tree = Callable[[], list[psutil.Process]]


def tree_rss(processes: list[psutil.Process]) -> int:
    total = 0
    for process in processes:
        with contextlib.suppress(psutil.Error):  # a child that just exited
            total += process.memory_info().rss
    return total


class RssSampler:
    """Samples every `interval` seconds; the process list is refreshed once a second (children may change)."""

    def __init__(self, trees: dict[str, Tree], interval: float = 0.02) -> None:
        self.trees = trees
        self.interval = interval
        self.times: dict[str, list[float]] = {name: [] for name in trees}
        self.values: dict[str, list[int]] = {name: [] for name in trees}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        processes = {name: tree() for name, tree in self.trees.items()}
        refreshed = time.monotonic()
        while not self._stop.wait(self.interval):
            now = time.monotonic()
            if now - refreshed > 1.0:
                processes = {name: tree() for name, tree in self.trees.items()}
                refreshed = now
            for name, tree in processes.items():
                self.values[name].append(tree_rss(tree))  # value first: a reader never finds a time alone
                self.times[name].append(now)

    def peak(self, name: str, start: float = 0.0, end: float = float("inf")) -> int:
        """Largest sample in [start, end] (monotonic clock); the whole run by default."""
        times = self.times[name]
        window = self.values[name][bisect.bisect_left(times, start):bisect.bisect_right(times, end)]
        return max(window, default=0)

    def before(self, name: str, moment: float) -> int:
        """The last sample taken before `moment`: a phase's baseline."""
        index = bisect.bisect_left(self.times[name], moment)
        return self.values[name][index - 1] if index else 0
