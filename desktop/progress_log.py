"""Engine events as one line each, for `tuskit sync` logs (journald, cron mail, CI output).

Progress is already coalesced by the engine; a log needs far less, so each file prints a progress line at
most every `every` seconds.
"""

from __future__ import annotations

import threading
import time
from typing import TextIO

from .engine import events as ev
from .ui.formatting import human_bytes


class ProgressLog:
    """A subscriber that writes lines to a text stream; safe to call from several engine threads."""

    def __init__(self, out: TextIO, every: float = 2.0) -> None:
        self.out = out
        self.every = every
        self._last: dict[str, float] = {}
        self._lock = threading.Lock()

    def __call__(self, event: ev.EngineEvent) -> None:
        line = self._line(event)
        if line is not None:
            with self._lock:
                self.out.write(f"{time.strftime('%H:%M:%S')} {line}\n")
                self.out.flush()

    def _line(self, e: ev.EngineEvent) -> str | None:
        match e:
            case ev.Queued():
                return f"queued {e.path} ({human_bytes(e.size)})"
            case ev.Started():
                resumed = f" resuming at {human_bytes(e.offset)}" if e.offset else ""
                return f"started {e.path} ({human_bytes(e.size)}){resumed} url={e.url}"
            case ev.Progress():
                now = time.monotonic()
                if now - self._last.get(e.path, 0.0) < self.every:
                    return None
                self._last[e.path] = now
                pct = 100.0 * e.sent / e.size if e.size else 100.0
                return f"progress {e.path} {pct:.0f}% {human_bytes(e.bytes_per_second)}/s"
            case ev.Done():
                self._last.pop(e.path, None)
                return f"done {e.path} ({human_bytes(e.size)}) sha256={e.sha256} url={e.url}"
            case ev.Failed():
                self._last.pop(e.path, None)
                final = "giving up" if e.final else "will retry"
                return f"failed {e.path}: {e.error} (attempt {e.attempts}, {final})"
            case ev.BackingOff():
                who = e.path or "all uploads"
                return f"waiting {e.seconds:.1f}s before retrying {who}: {e.reason}"
            case ev.Paused() | ev.Resumed() | ev.Removed():
                return f"{type(e).__name__.lower()} {getattr(e, 'path', None) or 'everything'}"
            case ev.Notice():
                return f"{e.level} {e.message}"
            case ev.Connection():
                return f"server {e.state}{': ' + e.detail if e.detail else ''}"
        return None
