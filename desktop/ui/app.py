"""The Textual dashboard over the sync engine (`tuskit desk`): it renders engine events and sends commands.

Engine callbacks run on engine threads. They only append to an inbox and, unless a wake-up is already
pending, post one `EngineWoke` message (thread-safe); the UI loop then folds the whole batch into the model
and redraws the rows it touched once. That coalesces bursts of progress events without a fast polling timer.
Commands go the other way on one command thread, in order: a journal busy with a thousand rows (retry all)
never freezes the screen, and their results come back as `CommandDone` messages.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import TypeVar

from rich.text import Text
from textual import on
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Footer, RichLog

from ..engine.engine import Engine
from ..engine.events import EngineEvent
from ..engine.states import BACKING_OFF, PAUSED, UPLOADING
from .model import PAUSABLE, Alert, AlertGate, Changes, DashboardModel, FileRow
from .widgets.add_folder import AddFolderScreen
from .widgets.backoff_toast import BackoffToast
from .widgets.detail import DetailScreen
from .widgets.file_table import WIDE_FROM, FileTable
from .widgets.status_bar import StatusBar
from .widgets.totals_bar import TotalsBar

LOG_STYLES = {"info": "", "warning": "yellow", "error": "bold red"}
LOG_LINES = 2000


T = TypeVar("T")


class EngineWoke(Message):
    """Engine events wait in the app's inbox; posted from an engine thread, at most one pending at a time."""


class CommandDone(Message):
    """An engine command finished on the command thread; `after` runs on the UI loop."""

    def __init__(self, after: Callable[[], None]) -> None:
        super().__init__()
        self.after = after


class TuskitApp(App[int]):
    CSS_PATH = "app.tcss"
    TITLE = "tuskit"
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (WIDE_FROM, "-wide")]
    VERTICAL_BREAKPOINTS = [(0, "-short"), (40, "-tall")]
    # One key, two bindings: `check_action` enables the one that fits, so the footer says what the key does now.
    BINDINGS = [
        Binding("space", "pause_selected", "Pause", tooltip="Pause the selected file"),
        Binding("space", "resume_selected", "Resume", tooltip="Resume the selected file"),
        Binding("p", "pause_all", "Pause all", tooltip="Pause every upload"),
        Binding("p", "resume_all", "Resume all", tooltip="Resume every upload"),
        Binding("r", "retry_failed", "Retry", tooltip="Queue every failed file again"),
        Binding("x,delete", "remove_selected", "Remove", tooltip="Drop the selected file from the queue"),
        Binding("a", "add_folder", "Add", tooltip="Watch another folder"),
        Binding("l", "toggle_log", "Log", tooltip="Open the log full screen (again to close)"),
        Binding("d", "details", "Details", show=False, tooltip="Show the selected file (thumbnail for images)"),
        Binding("q", "quit", "Quit", tooltip="Stop uploads and quit"),
    ]

    def __init__(self, engine: Engine) -> None:
        super().__init__()
        self.engine = engine
        self.model = DashboardModel(engine.config.roots)
        self._inbox: list[EngineEvent] = []
        self._inbox_lock = threading.Lock()
        self._woken = False
        self._unsubscribe: Callable[[], None] | None = None
        self._engine_running = False
        self._backoff_toast = BackoffToast(self)
        self._alert_gate = AlertGate()
        self._status = StatusBar(engine.config.server_url, id="status")
        self._table = FileTable(self.model, id="files")
        self._totals = TotalsBar(id="totals")
        self._log = RichLog(id="log", max_lines=LOG_LINES, wrap=True, markup=False)
        self._binding_state: tuple[bool, str | None] = (False, None)
        self._commands = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tuskit-desk-commands")

    def compose(self) -> ComposeResult:
        yield self._status
        yield self._table
        yield self._totals
        yield self._log
        yield Footer()

    def on_mount(self) -> None:
        self._unsubscribe = self.engine.subscribe(self._receive)
        try:
            self.engine.start()
        except Exception as exc:  # e.g. another sync/desk holds the journal: a dashboard of nothing helps nobody
            self.exit(1, return_code=1, message=f"tuskit desk: the engine did not start: {exc}")
            return
        self._engine_running = True
        now = time.monotonic()
        self.model.load(self.engine.snapshot(), now)
        self.model.take_changes()
        self._table.rebuild(now)
        self._redraw_status(now)
        self.set_interval(1.0, self._tick)

    # Engine -> UI

    def _receive(self, event: EngineEvent) -> None:
        """Engine thread: queue the event; wake the UI only if it is not already due to drain."""
        with self._inbox_lock:
            self._inbox.append(event)
            wake, self._woken = not self._woken, True
        if wake:
            self.post_message(EngineWoke())

    def _showing(self) -> bool:
        """False once the app is exiting: its widgets are gone, late events and ticks are dropped."""
        return self._table.is_attached

    @on(EngineWoke)
    def _drain(self) -> None:
        if not self._showing():
            return
        with self._inbox_lock:
            events, self._inbox, self._woken = self._inbox, [], False
        now = time.monotonic()
        for event in events:
            self.model.apply(event, now)
        self._render_changes(self.model.take_changes(), now)

    def _render_changes(self, changes: Changes, now: float) -> None:
        self._table.drop(changes.removed)
        self._table.show(changes.rows, now)
        self._write_log(*changes.log)
        for alert in self._alert_gate.admit(changes.alerts, now):
            self._toast(alert)
        if changes.backoff_started:
            self._backoff_toast.start(self.model.backoff_left(now) or 0.0, self.model.backoff_reason)
        self._redraw_status(now)
        self._update_bindings()

    def _toast(self, alert: Alert) -> None:
        timeout = 15 if alert.severity == "error" else 8
        self.notify(alert.message, title=alert.title, severity=alert.severity, timeout=timeout,  # type: ignore[arg-type]
                    markup=False)

    def _update_bindings(self) -> None:
        """Re-label the footer only when what space and p would do changed (not on every progress batch)."""
        row = self._selected_row()
        state = (self.model.paused_all, None if row is None else row.state)
        if state != self._binding_state:
            self._binding_state = state
            self.refresh_bindings()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Enabled (True), shown but disabled (None), or hidden (False) in the footer and the palette."""
        row = self._selected_row()
        state = None if row is None else row.state
        match action:
            case "pause_all":
                return not self.model.paused_all
            case "resume_all":
                return self.model.paused_all
            case "resume_selected":
                return state == PAUSED
            case "pause_selected":
                return True if state in PAUSABLE else (False if state == PAUSED else None)
        return True

    def _tick(self) -> None:
        """Each second: live speeds, ETAs and countdowns move even when no event arrives."""
        if not self._showing():
            return
        now = time.monotonic()
        waiting = self.model.backoff_until is not None
        self.model.tick(now)
        moving = {path for path, row in self.model.rows.items() if row.state in (UPLOADING, BACKING_OFF)}
        self._table.show(moving, now)
        if waiting or self.model.backoff_until is not None:
            self._backoff_toast.tick(self.model.backoff_left(now), self.model.backoff_reason)
        if (summary := self._alert_gate.flush(now)) is not None:
            self._toast(summary)
        self._redraw_status(now)

    def _redraw_status(self, now: float) -> None:
        self._status.show(self.model, now)
        self._totals.show(self.model, now, wide=self.size.width >= WIDE_FROM)

    def _write_log(self, *entries: tuple[str, str]) -> None:
        """(level, text) lines in one write: RichLog renders per call, and a batch may carry a thousand."""
        if not entries:
            return
        stamp = time.strftime("%H:%M:%S ")
        lines = [Text.assemble((stamp, "dim"), (text, LOG_STYLES.get(level, ""))) for level, text in entries]
        self._log.write(Text("\n").join(lines))

    # UI -> engine

    def _command(self, call: Callable[[], T], after: Callable[[T], None] | None = None) -> None:
        """Run an engine command on the command thread; `after(result)` then runs on the UI loop."""

        def run() -> None:
            try:
                result = call()
            except Exception as exc:
                self.post_message(CommandDone(partial(self._command_failed, exc)))
            else:
                if after is not None:
                    self.post_message(CommandDone(partial(after, result)))

        self._commands.submit(run)

    @on(CommandDone)
    def _command_done(self, message: CommandDone) -> None:
        message.after()

    def _command_failed(self, exc: Exception) -> None:
        self._write_log(("error", f"command failed: {exc!r}"))
        self._toast(Alert(str(exc) or repr(exc), "error", "Command failed"))

    def _selected_row(self) -> FileRow | None:
        path = self._table.selected_path()
        return None if path is None else self.model.rows.get(path)

    def _selected(self) -> str | None:
        path = self._table.selected_path()
        if path is None:
            self.notify("No file selected", severity="warning", timeout=3)
        return path

    @on(DataTable.RowHighlighted)
    def _row_highlighted(self) -> None:
        self._update_bindings()

    def action_pause_selected(self) -> None:
        if (path := self._selected()) is not None:
            self._command(partial(self.engine.pause, path))

    def action_resume_selected(self) -> None:
        if (path := self._selected()) is not None:
            self._command(partial(self.engine.resume, path))

    def action_pause_all(self) -> None:
        self._command(self.engine.pause)

    def action_resume_all(self) -> None:
        self._command(self.engine.resume)

    def action_retry_failed(self) -> None:
        self._command(self.engine.retry_failed, self._retried)

    def _retried(self, count: int) -> None:
        self.notify(f"Queued {count} failed file(s) again" if count else "No failed files to retry", timeout=4)

    def action_remove_selected(self) -> None:
        if (path := self._selected()) is not None:
            self._command(partial(self.engine.remove, path))

    def action_add_folder(self) -> None:
        self.push_screen(AddFolderScreen(), self._add_root)

    def _add_root(self, folder: Path | None) -> None:
        """The engine starts a watcher and a scan, and says so (or why not) with a Notice."""
        if folder is not None:
            self._command(partial(self.engine.add_root, folder), self._roots_changed)

    def _roots_changed(self, _: None) -> None:
        self.model.roots = list(self.engine.config.roots)
        self._redraw_status(time.monotonic())

    def action_toggle_log(self) -> None:
        screen = self.screen
        if screen.maximized is not None:
            screen.minimize()
        else:
            screen.maximize(self._log, container=False)

    def action_details(self) -> None:
        path = self._selected()
        if path is not None:
            self._show_details(path)

    @on(DataTable.RowSelected)
    def _row_chosen(self, event: DataTable.RowSelected) -> None:
        if event.row_key.value is not None:
            self._show_details(event.row_key.value)

    def _show_details(self, path: str) -> None:
        row = self.model.rows.get(path)
        if row is not None:
            self.push_screen(DetailScreen(row, self.model.display_name(path), self.engine.thumbnail))

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        """The palette offers every binding of ours too (quit is already among Textual's own)."""
        yield from super().get_system_commands(screen)
        for binding in self.BINDINGS:
            if isinstance(binding, Binding) and binding.action != "quit" and self.check_action(binding.action, ()):
                yield SystemCommand(binding.tooltip, f"key: {binding.key}", self._runner(binding.action))

    def _runner(self, action: str) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            await self.run_action(action)

        return run

    # Shutdown

    async def action_quit(self) -> None:
        self.notify("Stopping uploads…", timeout=3)
        await asyncio.to_thread(self._stop_engine)
        self.exit(0)

    def on_unmount(self) -> None:
        self._stop_engine()

    def _stop_engine(self) -> None:
        """Idempotent: quitting stops the engine off the loop; unmount is the fallback for other exits."""
        self._commands.shutdown(wait=True, cancel_futures=True)  # commands only post messages: never waits on us
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._engine_running:
            self._engine_running = False
            self.engine.stop()


def run_app(engine: Engine) -> int:
    """Entry point for `tuskit desk`: the exit status is 0 after a quit, 1 if the engine could not start."""
    app = TuskitApp(engine)
    app.run()
    return app.return_code or 0
