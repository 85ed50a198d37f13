"""Change notifications for one root: inotify/FSEvents through watchdog, or polling.

Polling (`--poll`) is for network mounts, where kernel notifications do not see other machines' writes.
When the kernel refuses more inotify watches (a big tree under the default `fs.inotify.max_user_watches`),
the watcher says so, with the sysctl that raises the limit, and falls back to polling rather than
silently missing files (watchdog itself skips subfolders it cannot watch without a word, so the tree is
probed first: see inotify_probe). Whatever a watcher misses, the engine's periodic rescan still finds.
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Callable
from pathlib import Path

from watchdog.events import (
    DirCreatedEvent,
    DirMovedEvent,
    FileAttribEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver
from watchdog.observers.polling import PollingObserver

from .inotify_probe import inotify_refusal

log = logging.getLogger("tuskit.desktop.watcher")

OnFile = Callable[[str, bool], None]  # (path, writer_finished)
OnFolder = Callable[[str], None]
OnNotice = Callable[[str, str], None]  # (message, level)

WATCH_LIMIT_HELP = ("the kernel's inotify limit is reached ({detail}); watching {root} by polling instead. "
                    "Raise the limit with: sudo sysctl fs.inotify.max_user_watches=524288 "
                    "(persist it in /etc/sysctl.d/)")


def _text(path: bytes | str) -> str:
    return path.decode() if isinstance(path, bytes) else path


class _Handler(FileSystemEventHandler):
    """watchdog events reduced to what the stabiliser needs: "this file changed" and "writer finished"."""

    def __init__(self, on_file: OnFile, on_folder: OnFolder) -> None:
        self.on_file, self.on_folder = on_file, on_folder

    def on_any_event(self, event: FileSystemEvent) -> None:
        match event:
            case FileMovedEvent():  # an atomic save (temp + rename) is complete at its destination
                self.on_file(_text(event.dest_path), True)
            case FileClosedEvent():
                self.on_file(_text(event.src_path), True)
            case FileCreatedEvent() | FileModifiedEvent() | FileAttribEvent():  # attrib: a touch moves mtime
                self.on_file(_text(event.src_path), False)
            case DirMovedEvent():  # a folder moved in brings files no event will mention
                self.on_folder(_text(event.dest_path))
            case DirCreatedEvent():
                self.on_folder(_text(event.src_path))


class FolderWatcher:
    def __init__(self, root: Path, on_file: OnFile, on_folder: OnFolder, on_notice: OnNotice,
                 poll: bool = False, poll_interval: float = 1.0) -> None:
        self.root = root
        self._handler = _Handler(on_file, on_folder)
        self._on_notice = on_notice
        self._poll_interval = poll_interval
        self.polling = poll
        self._observer: BaseObserver | None = None

    def start(self) -> None:
        if not self.polling:
            try:
                refusal = inotify_refusal(self.root)
                if refusal is not None:
                    raise refusal
                self._observer = self._start(Observer())
                return
            except OSError as exc:
                if exc.errno not in (errno.ENOSPC, errno.EMFILE, errno.ENOMEM):
                    raise
                self._on_notice(WATCH_LIMIT_HELP.format(detail=exc.strerror, root=self.root), "warning")
                self.polling = True
        self._observer = self._start(PollingObserver(timeout=self._poll_interval))

    def _start(self, observer: BaseObserver) -> BaseObserver:
        observer.schedule(self._handler, str(self.root), recursive=True)
        observer.daemon = True
        try:
            observer.start()
        except BaseException:
            observer.stop()
            raise
        return observer

    def stop(self) -> None:
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=5)
            self._observer = None
