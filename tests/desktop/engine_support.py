"""Helpers for the sync engine's tests: engines on temp journals, an event recorder, polling waits."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from tuskit.desktop.engine import events as ev
from tuskit.desktop.engine.engine import Engine
from tuskit.desktop.engine.sync_config import SyncConfig

T = TypeVar("T")


class Recorder:
    """Collects engine events (from engine threads) for assertions."""

    def __init__(self) -> None:
        self.events: list[ev.EngineEvent] = []
        self._lock = threading.Lock()

    def __call__(self, event: ev.EngineEvent) -> None:
        with self._lock:
            self.events.append(event)

    def of(self, kind: type[T], path: str | None = None) -> list[T]:
        with self._lock:
            return [e for e in self.events
                    if isinstance(e, kind) and (path is None or getattr(e, "path", None) == path)]


def config(tmp_path: Path, root: Path, server_url: str, **overrides: Any) -> SyncConfig:
    values: dict[str, Any] = {"roots": [root], "server_url": server_url, "journal_path": tmp_path / "journal.db",
                              "quiet_seconds": 0.5, "rescan_seconds": 3600.0, "max_attempts": 4}
    values.update(overrides)
    return SyncConfig(**values)


@contextmanager
def running(cfg: SyncConfig) -> Iterator[tuple[Engine, Recorder]]:
    engine = Engine(cfg)
    recorder = Recorder()
    engine.subscribe(recorder)
    engine.start()
    try:
        yield engine, recorder
    finally:
        engine.stop()


def state_of(engine: Engine, path: Path) -> str | None:
    return next((s.state for s in engine.snapshot() if s.path == str(path)), None)
