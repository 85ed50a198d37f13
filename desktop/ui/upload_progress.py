"""What `tuskit upload` shows while it runs, and what it reports when it ends.

On a terminal: a bar per file being sent and a total line with throughput and ETA, redrawn in place by
Rich (which Textual brings anyway), with what happened (done, resumed, retried, failed) printed above
them. Anywhere else (a pipe, a log file, CI) a redrawn bar would be a stream of control characters, so the
same happenings go out as plain lines, with a total line every few seconds. With `--json`: nothing while
it runs and one JSON document at the end, for scripts.

Events are folded by the dashboard's model, so `tuskit upload` and `tuskit desk` count the same way.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any, TextIO

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from ..engine import events as ev
from ..engine.states import DONE, FAILED, UPLOADING, FileStatus
from ..engine.sync_config import relative_path, root_of
from .formatting import NONE_MARK, human_bytes, human_duration, human_rate, shorten_path
from .model import DashboardModel

PLAIN_TOTAL_EVERY = 5.0
"""Seconds between total lines when stdout is not a terminal."""
RATE_WINDOW = 5.0
"""Seconds of history behind the total throughput: long enough to be steady, short enough to follow."""
_BAR = 20
_FIXED = _BAR + 4 + 19 + 11 + 6 + 5  # a file's row but its name: bar, percent, sizes, speed, ETA, spaces
_STYLES = {"detail": "dim", "warning": "yellow", "error": "bold red"}


class UploadProgress:
    """An engine subscriber (its `__call__` runs on engine threads) that the command's main thread ticks."""

    def __init__(self, server: str, roots: list[Path], out: TextIO, *, json_report: bool = False,
                 verbose: bool = False) -> None:
        self.server = server
        self.model = DashboardModel(roots)
        self.console = Console(file=out, highlight=False, soft_wrap=True)
        self.json_report = json_report
        self.live = self.console.is_terminal and not json_report
        self.verbose = verbose
        self._lock = threading.Lock()  # the model is folded on engine threads and drawn on Rich's
        self._first_offset: dict[str, int] = {}  # where this run's first attempt at each file began
        self._samples: deque[tuple[float, int]] = deque()
        self._rate = 0.0
        self._began = time.monotonic()
        self._last_total = (self._began, "")  # when the last plain total line went out, and what it said
        self._display: Live | None = None

    def __call__(self, event: ev.EngineEvent) -> None:
        with self._lock:
            if isinstance(event, ev.Started):
                self._first_offset.setdefault(event.path, event.offset)
            self.model.apply(event, time.monotonic())

    def start(self) -> None:
        if self.live:
            self._display = Live(console=self.console, get_renderable=self._render, refresh_per_second=4,
                                 transient=True, redirect_stdout=False, redirect_stderr=False)
            self._display.start()

    def stop(self) -> None:
        self.tick()
        if not self.live and not self.json_report:  # a log ends with where the totals got to
            now = time.monotonic()
            with self._lock:
                total = f"total {self._totals_text(now)}"
            self._print_total(total, now)
        if self._display is not None:
            self._display.stop()
            self._display = None

    def tick(self) -> None:
        """On the main thread, a few times a second: print what happened, measure the throughput."""
        now = time.monotonic()
        with self._lock:
            changes = self.model.take_changes()
            self._samples.append((now, self._sent_now()))
            while now - self._samples[0][0] > RATE_WINDOW:
                self._samples.popleft()
            (then, before), (_, after) = self._samples[0], self._samples[-1]
            self._rate = (after - before) / (now - then) if now > then else 0.0
            total = f"total {self._totals_text(now)}"
        if self.json_report:
            return
        for level, text in changes.log:
            if level != "detail" or self.verbose:
                self._print(text, level)
        if not self.live and now - self._last_total[0] >= PLAIN_TOTAL_EVERY:
            self._print_total(total, now)

    def _print_total(self, total: str, now: float) -> None:
        if total != self._last_total[1]:
            self._print(total, "info")
        self._last_total = (now, total)

    def _print(self, text: str, level: str) -> None:
        stamp = "" if self.live else time.strftime("%H:%M:%S ")
        self.console.print(Text(stamp + text, style=_STYLES.get(level, "")), crop=False)

    def _sent_now(self) -> int:
        """Bytes this run sent (resumed files count from where they resumed)."""
        rows = self.model.rows
        return sum(max(0, min(rows[p].sent, rows[p].size) - first)
                   for p, first in self._first_offset.items() if p in rows)

    def _totals_text(self, now: float) -> str:
        totals = self.model.totals(now)
        done = totals.by_state.get(DONE, 0)
        eta = (totals.size - totals.sent) / self._rate if self._rate > 0 else None
        failed = totals.by_state.get(FAILED, 0)
        return (f"{done}/{totals.files} files, {human_bytes(totals.sent)} / {human_bytes(totals.size)}, "
                f"{human_rate(self._rate)}, ETA {human_duration(eta) if totals.files > done else '0s'}"
                + (f", {failed} failed" if failed else ""))

    def _render(self) -> RenderableType:
        """Rich's refresh thread: a bar per file on its way, then the total line."""
        now = time.monotonic()
        name_width = max(12, self.console.width - _FIXED)
        bars = Table.grid(padding=(0, 1))
        for _ in range(6):
            bars.add_column(no_wrap=True)
        with self._lock:
            for row in self.model.rows.values():
                if row.state != UPLOADING:
                    continue
                bars.add_row(Text(shorten_path(self.model.display_name(row.path), name_width).ljust(name_width)),
                             ProgressBar(total=max(row.size, 1), completed=row.sent, width=_BAR),
                             Text(f"{row.fraction * 100:3.0f}%"),
                             Text(f"{human_bytes(row.sent)} / {human_bytes(row.size)}", justify="right"),
                             Text(human_rate(row.speed(now)), justify="right"),
                             Text(human_duration(row.eta(now)) if row.speed(now) else NONE_MARK))
            totals = self.model.totals(now)
            total = Table.grid(padding=(0, 1))
            total.add_row(Text("Total", style="bold"),
                          ProgressBar(total=max(totals.size, 1), completed=totals.sent, width=_BAR),
                          Text(self._totals_text(now), style="bold"))
        return Group(bars, total)

    def finish(self, statuses: list[FileStatus], interrupted: bool) -> bool:
        """Report every file named or found (the journal's final word on each); True if all are verified."""
        seconds = time.monotonic() - self._began
        present = [s for s in statuses if Path(s.path).is_file()]  # not what an earlier run saw and is gone
        with self._lock:
            files = sorted((self._entry(s) for s in present), key=lambda f: f["path"])
        done = [f for f in files if f["state"] == DONE]
        ok = len(done) == len(files) and not interrupted
        sent = sum(f["sent"] for f in files)
        if self.json_report:
            report = {"server": self.server, "ok": ok, "interrupted": interrupted, "seconds": round(seconds, 3),
                      "files": files, "done": len(done), "failed": sum(f["state"] == FAILED for f in files),
                      "unfinished": sum(f["state"] == "unfinished" for f in files), "skipped": self.model.skipped,
                      "bytes": sum(f["size"] for f in files), "bytesSent": sent}
            self.console.file.write(json.dumps(report, indent=2) + "\n")
            return ok
        for f in files:
            if f["state"] == FAILED:
                self._print(f"failed {f['name']}: {f['error']}", "error")
            elif f["state"] == "unfinished" and f["url"]:
                self._print(f"unfinished {f['name']}: {human_bytes(f['confirmed'])} of {human_bytes(f['size'])} "
                            "confirmed by the server; the same command again resumes it", "warning")
        new = sum(not f["alreadyUploaded"] for f in done)
        parts = [f"{len(done)}/{len(files)} files verified on the server",
                 f"{new} uploaded ({human_bytes(sent)} in {seconds:.1f} s, {human_rate(sent / seconds)})"]
        if already := len(done) - new:
            parts.append(f"{already} already there")
        if failed := sum(f["state"] == FAILED for f in files):
            parts.append(f"{failed} failed")
        if unfinished := sum(f["state"] == "unfinished" for f in files):
            parts.append(f"{unfinished} unfinished")
        if self.model.skipped:
            parts.append(f"{self.model.skipped} skipped{'' if self.verbose else ' (-v lists them)'}")
        self._print(", ".join(parts), "info" if ok else "error")
        return ok

    def _entry(self, status: FileStatus) -> dict[str, Any]:
        path = Path(status.path)
        root = root_of(status.path, self.model.roots) or path.parent
        first = self._first_offset.get(status.path)
        state = status.state if status.state in (DONE, FAILED) else "unfinished"
        confirmed = status.size if state == DONE else status.sent  # the server may hold more (an unacked tail)
        return {"path": status.path, "name": self.model.display_name(status.path),
                "relativePath": relative_path(path, root), "size": status.size, "state": state,
                "sha256": status.sha256, "url": status.url, "error": status.error if state != DONE else None,
                "confirmed": confirmed, "resumedFrom": first or None,
                "sent": 0 if first is None else max(0, confirmed - first),
                "alreadyUploaded": state == DONE and first is None}
