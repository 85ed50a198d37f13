"""What the dashboard knows about the upload queue, folded from engine events; pure, so it is testable alone.

The app drains engine events in batches and applies them here; `take_changes()` then says which rows to
redraw and what to log or announce, once per batch however many progress events arrived.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..engine.events import (
    BackingOff,
    Connection,
    Done,
    Failed,
    Notice,
    Paused,
    Progress,
    Queued,
    Removed,
    Resumed,
    Started,
)
from ..engine.states import ACTIVE, BACKING_OFF, DONE, FAILED, PAUSED, QUEUED, UPLOADING, FileStatus

PAUSABLE = frozenset(ACTIVE)
"""States a pause applies to (the engine's active ones); done and failed files have nothing left to pause."""

STALE_SPEED_SECONDS = 5.0
"""A file that reported no progress for this long counts as not moving, whatever its last speed was."""

HISTORY_LENGTH = 120

NOT_CONTACTED = "not contacted yet"
"""The engine talks to the server only to upload: until then nobody knows whether it answers."""


@dataclass
class FileRow:
    path: str
    size: int
    sent: int = 0
    state: str = QUEUED
    bytes_per_second: float = 0.0
    error: str | None = None
    url: str | None = None
    attempts: int = 0
    sha256: str | None = None
    retry_at: float | None = None
    """Monotonic time of the next attempt while backing off."""
    progress_at: float = 0.0
    """Monotonic time of the last progress report, so a stalled upload stops showing its old speed."""

    @property
    def fraction(self) -> float:
        if self.size <= 0:
            return 1.0 if self.state == DONE else 0.0
        return min(self.sent / self.size, 1.0)

    def speed(self, now: float) -> float:
        if self.state != UPLOADING or now - self.progress_at > STALE_SPEED_SECONDS:
            return 0.0
        return self.bytes_per_second

    def eta(self, now: float) -> float | None:
        speed = self.speed(now)
        return (self.size - self.sent) / speed if speed > 0 else None


@dataclass(frozen=True)
class Alert:
    """Something worth a notification (a toast), not only a log line."""

    message: str
    severity: str  # information | warning | error
    title: str = ""


class AlertGate:
    """At most `limit` toasts per `window` seconds; the rest are counted and summed up in one toast later.

    A server refusing everything fails every file within seconds: one toast each would bury the screen,
    and the log panel already has every line.
    """

    def __init__(self, limit: int = 3, window: float = 10.0) -> None:
        self.limit, self.window = limit, window
        self._shown: deque[float] = deque()
        self._held: list[Alert] = []

    def admit(self, alerts: Iterable[Alert], now: float) -> list[Alert]:
        """The alerts to show now; the others wait for `flush`."""
        shown = []
        for alert in alerts:
            if self._room(now):
                self._shown.append(now)
                shown.append(alert)
            else:
                self._held.append(alert)
        return shown

    def flush(self, now: float) -> Alert | None:
        """Once there is room again: one alert that stands for everything held back."""
        if not self._held or not self._room(now):
            return None
        held, self._held = self._held, []
        self._shown.append(now)
        if len(held) == 1:
            return held[0]
        severity = "error" if any(a.severity == "error" for a in held) else "warning"
        return Alert(f"{len(held)} more problems; the log (l) lists them", severity, "More problems")

    def _room(self, now: float) -> bool:
        while self._shown and now - self._shown[0] >= self.window:
            self._shown.popleft()
        return len(self._shown) < self.limit


@dataclass
class Changes:
    """What one batch of events changed, for the app to draw."""

    rows: set[str] = field(default_factory=set)
    removed: set[str] = field(default_factory=set)
    log: list[tuple[str, str]] = field(default_factory=list)
    """(level, text); level is info, warning or error."""
    alerts: list[Alert] = field(default_factory=list)
    backoff_started: bool = False
    """A server-wide wait began or was extended (the app shows a countdown)."""
    status: bool = False
    """The header's fields (connection, pause) changed."""


@dataclass(frozen=True)
class Totals:
    files: int
    by_state: dict[str, int]
    size: int
    sent: int
    bytes_per_second: float


class DashboardModel:
    """Rows keyed by path, plus the server-wide state (connection, pause, rate-limit wait)."""

    def __init__(self, roots: Sequence[Path] = ()) -> None:
        self.rows: dict[str, FileRow] = {}
        self.roots: list[Path] = list(roots)
        self.connection = NOT_CONTACTED
        self.connection_detail = ""
        self._connection_reported = False
        """Once the engine reports its connection itself, the model stops guessing it from other events."""
        self.paused_all = False
        self.backoff_until: float | None = None
        self.backoff_reason = ""
        self.history: deque[float] = deque([0.0] * HISTORY_LENGTH, maxlen=HISTORY_LENGTH)
        self._changes = Changes()

    def take_changes(self) -> Changes:
        changes, self._changes = self._changes, Changes()
        return changes

    def display_name(self, path: str) -> str:
        """The path below the watched root that holds it (folders matter when names repeat)."""
        target = Path(path)
        for root in self.roots:
            if target.is_relative_to(root):
                return str(target.relative_to(root))
        return target.name

    def load(self, statuses: Iterable[FileStatus], now: float) -> None:
        """Rows from the engine's snapshot, for a dashboard that starts after the engine learned things."""
        for status in statuses:
            row = self._row(status.path, status.size)
            row.sent, row.state, row.error = status.sent, status.state, status.error
            row.url, row.attempts, row.progress_at = status.url, status.attempts, now
            self._changes.rows.add(status.path)

    def apply(self, event: object, now: float) -> None:
        """Fold one engine event in; an event type this dashboard does not know is logged, never fatal."""
        changes = self._changes
        match event:
            case Queued(path=path, size=size):
                row = self._row(path, size)
                row.size, row.sent, row.error, row.retry_at, row.attempts = size, 0, None, None, 0
                row.state = PAUSED if self.paused_all else QUEUED  # the engine holds its queue meanwhile
                changes.rows.add(path)
            case Started(path=path, size=size, offset=offset, url=url):
                row = self._row(path, size)
                row.size, row.sent, row.url, row.state, row.retry_at = size, offset, url, UPLOADING, None
                row.bytes_per_second, row.progress_at = 0.0, now
                row.attempts += 1  # the engine counts an attempt each time a worker takes the file
                changes.rows.add(path)
                if offset:  # a fresh start is plain from the table; a resume is worth a line
                    changes.log.append(("info", f"resuming {self.display_name(path)} at {offset * 100 // size}%"))
                self._set_connection("online")
            case Progress(path=path, sent=sent, size=size, bytes_per_second=speed):
                row = self._row(path, size)
                row.sent, row.size, row.bytes_per_second, row.progress_at = sent, size, speed, now
                if row.state in (QUEUED, BACKING_OFF):
                    row.state = UPLOADING
                changes.rows.add(path)
                self._set_connection("online")
            case Done(path=path, size=size, url=url, sha256=sha256):
                row = self._row(path, size)
                row.size, row.sent, row.url, row.sha256, row.state = size, size, url, sha256, DONE
                row.bytes_per_second, row.error, row.retry_at = 0.0, None, None
                changes.rows.add(path)
                changes.log.append(("info", f"done {self.display_name(path)}"))
                self._set_connection("online")
            case Failed(path=path, error=error, attempts=attempts, final=final):
                row = self._row(path, 0)
                row.error, row.attempts, row.bytes_per_second = error, attempts, 0.0
                name = self.display_name(path)
                if final:
                    row.state = FAILED
                    changes.log.append(("error", f"failed {name}: {error}"))
                    changes.alerts.append(Alert(f"{name}: {error}", "error", "Upload failed"))
                else:
                    row.state = QUEUED  # until a BackingOff says when, or a worker takes it again
                    changes.log.append(("warning", f"attempt {attempts} of {name} failed: {error}"))
                changes.rows.add(path)
            case BackingOff(path=None, seconds=seconds, reason=reason):
                until = now + seconds
                if self.backoff_until is None or until > self.backoff_until:
                    self.backoff_until = until
                    changes.backoff_started = True
                self.backoff_reason = reason
                changes.log.append(("warning", f"server asked to wait {seconds:.0f} s: {reason}"))
                self._set_connection("rate-limited")
            case BackingOff(path=str(path), seconds=seconds, reason=reason):
                row = self._row(path, 0)
                row.state, row.retry_at, row.bytes_per_second = BACKING_OFF, now + seconds, 0.0
                changes.rows.add(path)
                changes.log.append(("warning", f"retrying {self.display_name(path)} in {seconds:.0f} s: {reason}"))
            case Paused(path=path):
                self._set_paused(path, paused=True)
            case Resumed(path=path):
                self._set_paused(path, paused=False)
            case Removed(path=path):
                if self.rows.pop(path, None) is not None:
                    changes.removed.add(path)
                    changes.rows.discard(path)
                    changes.log.append(("info", f"removed {self.display_name(path)} from the queue"))
            case Connection(state=state, detail=detail):
                self._connection_reported = True
                if (state, detail) != (self.connection, self.connection_detail):
                    self.connection, self.connection_detail = state, detail
                    changes.status = True
                    text = f"server {state}{f': {detail}' if detail else ''}"
                    changes.log.append(("warning" if state != "online" else "info", text))
                    if state == "offline":  # uploads stall until it answers again: worth more than a log line
                        changes.alerts.append(Alert(detail or "no answer", "warning", "Server offline"))
            case Notice(message=message, level=level):
                changes.log.append((level, message))
                if level in ("warning", "error"):
                    changes.alerts.append(Alert(message, level))
            case _:
                changes.log.append(("info", f"unhandled engine event {event!r}"))

    def tick(self, now: float) -> None:
        """Once a second: record throughput for the sparkline and end a server-wide wait that ran out."""
        self.history.append(self.totals(now).bytes_per_second)
        if self.backoff_until is not None and now >= self.backoff_until:
            self.backoff_until = None
            self._set_connection("online")

    def backoff_left(self, now: float) -> float | None:
        return None if self.backoff_until is None else max(self.backoff_until - now, 0.0)

    def totals(self, now: float) -> Totals:
        by_state: dict[str, int] = {}
        size = sent = 0
        speed = 0.0
        for row in self.rows.values():
            by_state[row.state] = by_state.get(row.state, 0) + 1
            size += row.size
            sent += min(row.sent, row.size)
            speed += row.speed(now)
        return Totals(len(self.rows), by_state, size, sent, speed)

    def _row(self, path: str, size: int) -> FileRow:
        row = self.rows.get(path)
        if row is None:
            row = self.rows[path] = FileRow(path, size)
        return row

    def _set_connection(self, state: str) -> None:
        """A guess from transfers, used until the engine reports `Connection` events itself."""
        if self._connection_reported:
            return
        if state == "online" and self.backoff_until is not None:
            return  # a transfer that was already under way does not end the server's wait
        if state != self.connection:
            self.connection = state
            self._changes.status = True

    def _set_paused(self, path: str | None, *, paused: bool) -> None:
        """Pause marks what can wait; resume puts paused files back in the queue until a worker takes them."""
        if path is None:
            self.paused_all = paused
            self._changes.status = True
            targets = list(self.rows.values())
            self._changes.log.append(("info", "paused everything" if paused else "resumed everything"))
        else:
            targets = [self.rows[path]] if path in self.rows else []
            verb = "paused" if paused else "resumed"
            self._changes.log.append(("info", f"{verb} {self.display_name(path)}"))
        for row in targets:
            if paused and row.state in PAUSABLE:
                row.state, row.bytes_per_second = PAUSED, 0.0
            elif not paused and row.state == PAUSED:
                row.state = QUEUED
            else:
                continue
            self._changes.rows.add(row.path)
