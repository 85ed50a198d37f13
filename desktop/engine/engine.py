"""The sync engine: watches folders, stabilises files, journals them and uploads them over tus.

Threads: one watchdog observer per root feeds the stabiliser; a stabiliser thread turns quiet files into
journal versions; a scanner thread runs the startup scan and periodic rescans; N workers take versions
from the job queue and run upload attempts. The journal is the truth; the queue only says what to try
next. Every state change is announced as an event from `tuskit.desktop.engine.events` to subscribers, on the
engine's threads. Front ends have nothing else to talk to: commands (pause, resume, retry, remove, add a
folder), a snapshot for a late subscriber and thumbnails from the server are methods here. No Textual import
anywhere under the engine: `tuskit sync` runs without it.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path

from ..client.errors import CHECKSUM, RATE_LIMITED, UNREACHABLE, Cancelled, FileChanged, UploadError
from ..client.throttle import Throttle
from ..client.thumbnail import Missing, fetch_thumbnail
from ..client.tus import TusSession, upload
from ..watch.ignore import IgnoreRules
from ..watch.scanner import scan
from ..watch.stabiliser import Ready, Stabiliser, stat_file
from ..watch.watcher import FolderWatcher
from . import events as ev
from .attempt import Attempt
from .backoff import ServerGate
from .jobqueue import JobQueue
from .journal import Journal, NewVersion, Version
from .policy import SERVER_WIDE, decide
from .runlock import RunLock
from .states import (
    ACTIVE,
    BACKING_OFF,
    DONE,
    FAILED,
    PAUSED,
    QUEUED,
    REMOVED,
    STATES,
    UPLOADING,
    FileStatus,
)
from .sync_config import SyncConfig

log = logging.getLogger("tuskit.desktop.engine")

Listener = Callable[[ev.EngineEvent], None]
_TICK = 0.5  # how often idle threads look at the stop flag


class Engine:
    def __init__(self, config: SyncConfig) -> None:
        self.config = config
        self.journal = Journal(config.journal_path)
        self._run_lock = RunLock(config.journal_path)
        self._server = config.server_url
        self._rules = IgnoreRules(config.ignore, config.include_hidden)
        self._listeners: list[Listener] = []
        self._lock = threading.RLock()  # state transitions of versions, listeners, attempts
        self._queue = JobQueue()
        self._gate = ServerGate()
        self._throttle = Throttle(config.bandwidth_limit)
        self._stab = Stabiliser(config.quiet_seconds, config.max_wait_seconds)
        self._stab_cond = threading.Condition()  # guards _stab, _handoff, _scans
        self._handoff = 0  # stable files between the stabiliser and the queue
        self._scans = 0  # requested scans not finished yet
        self._scan_requests: queue.Queue[str | None] = queue.Queue()
        self._attempts: dict[int, Attempt] = {}
        self._exact_offsets: dict[int, int] = {}  # version -> offset a 429'd PATCH proved (skips a HEAD)
        self._watchers: dict[Path, FolderWatcher] = {}
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()
        self._link_state = ""
        self._wait_streak = 0  # server-wide waits (429/503/unreachable) in a row: their backoff exponent
        self._started = False

    # ---- subscribers -------------------------------------------------------------------------------

    def subscribe(self, callback: Listener) -> Callable[[], None]:
        """Callbacks run on engine threads; a front end on another loop must hop threads itself."""
        with self._lock:
            self._listeners.append(callback)

        def unsubscribe() -> None:
            with self._lock:
                if callback in self._listeners:
                    self._listeners.remove(callback)

        return unsubscribe

    def _emit(self, event: ev.EngineEvent) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener(event)
            except Exception:  # a broken front end must not stop uploads
                log.exception("event listener %r failed on %r", listener, event)

    def _notice(self, message: str, level: str = "info") -> None:
        log.log(logging.WARNING if level != "info" else logging.INFO, "%s", message)
        self._emit(ev.Notice(message, level))

    def _connection(self, state: str, detail: str = "") -> None:
        with self._lock:
            if state == self._link_state:
                return
            self._link_state = state
        self._emit(ev.Connection(state, detail))

    # ---- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> None:
        """Non-blocking: re-queues unfinished work from the journal, starts watchers, scan and workers."""
        if self._started:
            return
        self._run_lock.acquire()  # JournalBusy if another engine runs on this journal
        self._started = True
        for row in self._rows(ACTIVE):
            self.journal.update(row.id, state=QUEUED)
            self._queue.put(row.id)
        self._request_scan(None)
        self._spawn("stabiliser", self._stabilise_loop)
        for i in range(self.config.workers):
            self._spawn(f"upload-{i}", self._work)
        if self.config.watch:
            for root in self.config.roots:
                self._watch(root)
        self._spawn("scanner", self._scan_loop)

    def _spawn(self, name: str, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=target, name=f"tuskit-{name}", daemon=True)
        thread.start()
        self._threads.append(thread)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop watching and uploading; attempts in flight stop between blocks and resume next start."""
        self._stopping.set()
        with self._lock:
            for attempt in self._attempts.values():
                attempt.cancel("stop")
        self._queue.close()
        for watcher in list(self._watchers.values()):
            watcher.stop()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        self._run_lock.release()

    def wait_idle(self, timeout: float | None = None) -> bool:
        """True once nothing is being stabilised, scanned, queued, uploaded or waiting out a backoff."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._idle():
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(0.05)
        return True

    def _idle(self) -> bool:
        with self._stab_cond:
            if len(self._stab) or self._handoff or self._scans:
                return False
        return self._queue.idle()

    # ---- watching, scanning, stabilising ---------------------------------------------------------

    def _root_of(self, path: str) -> Path | None:
        for root in self.config.roots:
            if path == str(root) or path.startswith(str(root) + os.sep):
                return root
        return None

    def _rows(self, states: Iterable[str]) -> list[Version]:
        """Current versions in `states` under the configured roots (the journal may know other folders)."""
        return [r for r in self.journal.current_rows(self._server, states) if self._root_of(r.path) is not None]

    def _watch(self, root: Path) -> None:
        watcher = FolderWatcher(root, self._on_file, self._request_scan,
                                self._notice, poll=self.config.poll)
        try:
            watcher.start()
        except OSError as exc:
            self._notice(f"cannot watch {root}: {exc}; relying on rescans every {self.config.rescan_seconds:.0f}s",
                         "error")
            return
        self._watchers[root] = watcher

    def _on_file(self, path: str, writer_finished: bool) -> None:
        root = self._root_of(path)
        if root is None or self._rules.ignores(root, Path(path)):
            return
        with self._stab_cond:
            self._stab.note(path, time.monotonic(), writer_finished)
            self._stab_cond.notify()

    def _stabilise_loop(self) -> None:
        while not self._stopping.is_set():
            with self._stab_cond:
                now = time.monotonic()
                due = self._stab.next_due()
                if due is None or due > now:
                    self._stab_cond.wait(_TICK if due is None else min(due - now, _TICK))
                    continue
                ready = self._stab.poll(now)
                self._handoff += 1
            try:
                self._accept(ready)
            finally:
                with self._stab_cond:
                    self._handoff -= 1

    def _request_scan(self, folder: str | None) -> None:
        """Queue a scan of `folder` (None: every root); it counts as work from now, so wait_idle cannot
        slip in before it runs."""
        with self._stab_cond:
            self._scans += 1
        self._scan_requests.put(folder)

    def _scan_loop(self) -> None:
        """Scans requested by start, watchers (folders moved in) and add_root, and the periodic rescan."""
        next_rescan = time.monotonic() + self.config.rescan_seconds
        while not self._stopping.is_set():
            try:
                folder = self._scan_requests.get(timeout=_TICK)
            except queue.Empty:
                if self.config.watch and time.monotonic() >= next_rescan:
                    next_rescan = time.monotonic() + self.config.rescan_seconds
                    self._request_scan(None)
                continue
            try:
                self._scan(folder)
            finally:
                with self._stab_cond:
                    self._scans -= 1

    def _scan(self, folder: str | None) -> None:
        if folder is None:
            for root in list(self.config.roots):
                self._scan_tree(root, root)
            return
        root = self._root_of(folder)
        if root is not None and not self._rules.ignores(root, Path(folder)):
            self._scan_tree(root, Path(folder))

    def _scan_tree(self, root: Path, start: Path) -> None:
        """Compare the disk with the journal: files quiet for longer than the quiet period (by mtime) are
        versions at once; younger ones, and files found mid-write, go through the stabiliser."""
        known = self.journal.known_stats(self._server)
        settled_before = time.time_ns() - int(self.config.quiet_seconds * 1e9)
        ready: list[Ready] = []
        young: list[str] = []
        for path, size, mtime_ns in scan(root, self._rules, start):
            if self._stopping.is_set():
                return
            if known.get(path) == (size, mtime_ns):
                continue
            if mtime_ns <= settled_before:
                ready.append(Ready(path, size, mtime_ns, snapshot=False))
            else:
                young.append(path)
        self._accept(ready, known)
        for path in young:
            self._on_file(path, False)

    def _accept(self, ready: Iterable[Ready], known: dict[str, tuple[int, int]] | None = None) -> None:
        """Stable files become journal versions and jobs, unless the journal already has that version."""
        new: list[NewVersion] = []
        for r in ready:
            root = self._root_of(r.path)
            if root is None:
                continue
            if known is None:
                current = self.journal.current(self._server, r.path)
                if current is not None and (current.size, current.mtime_ns) == (r.size, r.mtime_ns):
                    if current.state in (QUEUED, BACKING_OFF) and current.id not in self._attempts:
                        self._queue.put(current.id)  # e.g. it was waiting to settle after changing mid-upload
                    continue
            new.append(NewVersion(str(root), r.path, r.size, r.mtime_ns, r.snapshot))
        if not new:
            return
        paths = {v.path for v in new}
        with self._lock:
            for attempt in self._attempts.values():
                if attempt.path in paths:
                    attempt.cancel("superseded")
        for row in self.journal.add_versions(self._server, new):
            self._emit(ev.Queued(row.path, row.size))
            self._queue.put(row.id)

    # ---- workers -----------------------------------------------------------------------------------

    def _work(self) -> None:
        tus = TusSession(self._server, self.config.token, self.config.timeout)
        try:
            while not self._stopping.is_set():
                job = self._queue.take(_TICK)
                if job is None:
                    continue
                try:
                    self._run(job, tus)
                except Exception as exc:  # a bug must show up as a failed file, not a silently dead worker
                    log.exception("upload of version %s crashed", job)
                    self._settle(job, FAILED, error=f"internal error: {exc!r}")
                    if (row := self.journal.get(job)) is not None:
                        self._emit(ev.Failed(row.path, f"internal error: {exc!r}", row.attempts, True))
                finally:
                    self._queue.finished()
        finally:
            tus.close()

    def _begin(self, job: int) -> tuple[Version, Attempt] | None:
        """Claim a version for an attempt, unless it was paused, removed or replaced meanwhile."""
        with self._lock:
            row = self.journal.get(job)
            if row is None or not row.current or row.state not in (QUEUED, BACKING_OFF):
                return None
            current = stat_file(row.path)
            if current is None:
                self.journal.update(job, state=REMOVED, error="the file disappeared before its upload")
                self._emit(ev.Removed(row.path))
                return None
            if self._differs(row, current):
                self._on_file(row.path, False)  # it changed again: the stabiliser makes a new version
                return None
            attempt = Attempt(job, row.path, row.size, self._emit, wait_turn=self._gate.wait_open,
                              on_started=partial(self._upload_started, row),
                              on_confirmed=partial(self._upload_confirmed, row))
            attempt.restart_clock(row.offset)
            self._attempts[job] = attempt
            return self.journal.update(job, state=UPLOADING, attempts=row.attempts + 1, error=None), attempt

    def _run(self, job: int, tus: TusSession) -> None:
        try:
            # wait out a server-wide hold before claiming the file, so a waiting file does not look "uploading";
            # only workers holding a file wait here, so the one that goes first (the probe) has a request to make
            if self._gate.wait_open(self._stopping) and (claimed := self._begin(job)) is not None:
                self._attempt(job, tus, *claimed)
        finally:
            self._gate.release()

    def _attempt(self, job: int, tus: TusSession, row: Version, attempt: Attempt) -> None:
        try:
            sha256 = row.sha256 or attempt.sha256()
            if row.sha256 is None:
                self._check_unchanged(row)
                row = self.journal.update(job, sha256=sha256)
            earlier = self.journal.uploaded_before(self._server, row.path, sha256)
            if earlier is not None and earlier.id != job:
                url = earlier.url or ""
            else:
                with self._lock:
                    known = self._exact_offsets.pop(job, None)
                url = upload(tus, row.path, row.size, row.url, self._metadata(row, sha256), self.config.chunk_size,
                             attempt, self._throttle, self.config.max_chunk_size, known)
            with self._lock:
                self._wait_streak = 0
            self._settle(job, DONE, url=url, offset=row.size, error=None)
            self._emit(ev.Done(row.path, row.size, url, sha256))
        except Exception as exc:
            self._after_failure(row, attempt, exc)
        finally:
            with self._lock:
                self._attempts.pop(job, None)

    def _upload_started(self, row: Version, url: str, offset: int) -> None:
        """The upload exists on the server: its URL goes into the journal at once, so a crash resumes it with
        a HEAD; the server answered, which also ends a server-wide wait's probe."""
        self.journal.update(row.id, url=url, offset=offset)
        self._gate.succeeded()
        self._connection("online")
        self._emit(ev.Started(row.path, row.size, offset, url))

    def _upload_confirmed(self, row: Version, offset: int) -> None:
        """The server has every byte up to `offset`; a file that changed meanwhile stops the attempt."""
        self.journal.update(row.id, offset=offset)
        self._check_unchanged(row)

    def _metadata(self, row: Version, sha256: str) -> dict[str, str]:
        rel = Path(row.path).relative_to(row.root).as_posix()
        return {"filename": Path(row.path).name, "relativePath": rel, "sha256": sha256}

    @staticmethod
    def _differs(row: Version, current: tuple[int, int]) -> bool:
        """A snapshot of a growing file only cares that its prefix is still there (the server verifies it)."""
        if row.snapshot:
            return current[0] < row.size
        return current != (row.size, row.mtime_ns)

    def _check_unchanged(self, row: Version) -> None:
        current = stat_file(row.path)
        if current is None or self._differs(row, current):
            raise FileChanged("the file changed during its upload")

    def _settle(self, job: int, state: str, **changes: object) -> None:
        with self._lock:
            self.journal.update(job, state=state, **changes)

    def _after_failure(self, row: Version, attempt: Attempt, exc: Exception) -> None:
        with self._lock:
            if attempt.cancelled.is_set():  # whatever broke, it broke because we pulled the plug
                self._after_cancel(row, attempt.reason or "stop")
                return
        match exc:
            case Cancelled():
                self._after_cancel(row, "stop")
            case FileChanged():
                self._settle(row.id, QUEUED, error=f"{exc}; waiting for it to settle")
                self._notice(f"{row.path} changed during its upload; it is queued again once it settles")
                self._on_file(row.path, False)
            case UploadError():
                self._after_upload_error(row, exc)
            case OSError():  # reading the file failed (permissions, I/O error)
                if stat_file(row.path) is None:
                    self._settle(row.id, REMOVED, error="the file disappeared during its upload")
                    self._emit(ev.Removed(row.path))
                else:
                    self._settle(row.id, FAILED, error=f"cannot read the file: {exc}")
                    self._emit(ev.Failed(row.path, f"cannot read the file: {exc}", row.attempts, True))
            case _:
                raise exc

    def _after_cancel(self, row: Version, reason: str) -> None:
        """pause/remove already recorded their state; a stop or pause-all leaves the version queued."""
        if reason in ("stop", "pause-all"):
            self._settle(row.id, QUEUED)
            if reason == "pause-all":
                self._queue.put(row.id)

    def _after_upload_error(self, row: Version, err: UploadError) -> None:
        with self._lock:
            if err.kind in SERVER_WIDE:
                self._wait_streak += 1
            streak = self._wait_streak
        # `sync --once` must end: there an unreachable server counts like any failure
        decision = decide(err, row.attempts, row.restarts, self.config.max_attempts, streak,
                          wait_out_unreachable=self.config.watch)
        attempts = row.attempts if decision.counts else row.attempts - 1
        if err.status is not None and err.kind != RATE_LIMITED:
            self._gate.succeeded()  # the server answered, and not with "wait": the probe is over
        if err.kind == UNREACHABLE:
            self._connection("offline", err.reason)
        if decision.server_wait and self._gate.close_for(decision.server_wait):
            if err.kind == RATE_LIMITED:
                self._connection("rate-limited", err.reason)
            self._emit(ev.BackingOff(None, decision.server_wait, err.reason))
        if decision.final:
            self._settle(row.id, FAILED, error=err.reason, attempts=attempts)
            self._emit(ev.Failed(row.path, err.reason, attempts, True))
            return
        self._emit(ev.Failed(row.path, err.reason, attempts, False))
        changes: dict[str, object] = {"error": err.reason, "attempts": attempts}
        if decision.restart:
            changes.update(url=None, offset=0, sha256=None, restarts=row.restarts + (err.kind == CHECKSUM))
        with self._lock:
            current = self.journal.get(row.id)
            if current is None or current.state != UPLOADING:  # paused or removed meanwhile
                return
            if err.exact_offset is not None and not decision.restart:
                self._exact_offsets[row.id] = err.exact_offset
            self.journal.update(row.id, state=BACKING_OFF if decision.delay else QUEUED, **changes)
            self._queue.put(row.id, decision.delay)
        if decision.delay:
            self._emit(ev.BackingOff(row.path, decision.delay, err.reason))

    # ---- user actions ------------------------------------------------------------------------------

    def pause(self, path: str | None = None) -> None:
        """Pause one file (it keeps its place on the server) or, with None, every upload."""
        with self._lock:
            if path is None:
                self._queue.hold(True)
                for attempt in self._attempts.values():
                    attempt.cancel("pause-all")
            else:
                row = self.journal.current(self._server, path)
                if row is None or row.state not in ACTIVE:
                    return
                self._queue.discard(row.id)
                self.journal.update(row.id, state=PAUSED)
                if (attempt := self._attempts.get(row.id)) is not None:
                    attempt.cancel("pause")
        self._emit(ev.Paused(path))

    def resume(self, path: str | None = None) -> None:
        """Resume one paused file or, with None, everything (files paused one by one included)."""
        with self._lock:
            if path is None:
                rows = self._rows([PAUSED])
            else:
                row = self.journal.current(self._server, path)
                rows = [row] if row is not None and row.state == PAUSED else []
            for row in rows:
                self.journal.update(row.id, state=QUEUED)
                self._queue.put(row.id)
            if path is None:
                self._queue.hold(False)
        if path is None or rows:
            self._emit(ev.Resumed(path))

    def retry_failed(self) -> int:
        """Give every failed file a fresh set of attempts; returns how many were queued."""
        with self._lock:
            rows = self._rows([FAILED])
            for row in rows:
                self.journal.update(row.id, state=QUEUED, attempts=0, restarts=0, error=None)
                self._queue.put(row.id)
        for row in rows:
            self._emit(ev.Queued(row.path, row.size))
        return len(rows)

    def remove(self, path: str) -> None:
        """Take a file off the list; nothing is deleted on disk or on the server. A later change to the
        file makes a new version, which is uploaded again."""
        with self._stab_cond:
            self._stab.forget(path)
        with self._lock:
            row = self.journal.current(self._server, path)
            if row is None or row.state == REMOVED:
                return
            self._queue.discard(row.id)
            self.journal.update(row.id, state=REMOVED)
            if (attempt := self._attempts.get(row.id)) is not None:
                attempt.cancel("remove")
        self._emit(ev.Removed(path))

    def add_root(self, root: Path) -> None:
        root = Path(root).expanduser().resolve()
        if root in self.config.roots:
            return
        if not root.is_dir():
            self._notice(f"not a folder: {root}", "error")
            return
        self.config.roots.append(root)
        self._notice(f"watching {root}")
        if self._started and not self._stopping.is_set():
            if self.config.watch:
                self._watch(root)
            self._request_scan(str(root))

    # ---- views -------------------------------------------------------------------------------------

    def snapshot(self) -> list[FileStatus]:
        """Current rows (one per path), for a front end that subscribes late."""
        with self._lock:
            live = {job: a.bytes_sent for job, a in self._attempts.items()}
        return [FileStatus(r.path, r.size, live.get(r.id, r.offset), r.state, r.error, r.url, r.attempts)
                for r in self._rows(STATES)]

    def thumbnail(self, url: str, cancelled: threading.Event) -> bytes | Missing:
        """The server's thumbnail of a finished upload, with this engine's token; blocks (HTTP), so a front
        end calls it off its UI loop. Front ends get bytes to render, never a server or a token."""
        return fetch_thumbnail(url, self.config.token, cancelled)
