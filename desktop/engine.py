"""The sync engine: watches folders, stabilises files, journals them and uploads them over tus.

SKELETON: the API front ends build on (see the desktop contract); the behaviour lands next.
No Textual import anywhere under the engine: `tuskit sync` must run on a server without it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from tuskit.desktop.config import SyncConfig
from tuskit.desktop.events import EngineEvent
from tuskit.desktop.status import FileStatus

__all__ = ["Engine", "FileStatus"]

Listener = Callable[[EngineEvent], None]


class Engine:
    def __init__(self, config: SyncConfig) -> None:
        self.config = config
        self._listeners: list[Listener] = []
        self._lock = threading.Lock()

    def subscribe(self, callback: Listener) -> Callable[[], None]:
        with self._lock:
            self._listeners.append(callback)

        def unsubscribe() -> None:
            with self._lock:
                if callback in self._listeners:
                    self._listeners.remove(callback)

        return unsubscribe

    def start(self) -> None:
        pass

    def stop(self, timeout: float = 10.0) -> None:
        pass

    def pause(self, path: str | None = None) -> None:
        pass

    def resume(self, path: str | None = None) -> None:
        pass

    def retry_failed(self) -> int:
        return 0

    def remove(self, path: str) -> None:
        pass

    def add_root(self, root: Path) -> None:
        self.config.roots.append(root)

    def snapshot(self) -> list[FileStatus]:
        return []

    def wait_idle(self, timeout: float | None = None) -> bool:
        return True
