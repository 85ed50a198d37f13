"""The table of files: one row per path, redrawn cell by cell from the model."""

from __future__ import annotations

import time

from rich.text import Text
from textual.widgets import DataTable
from textual.widgets.data_table import CellDoesNotExist, RowDoesNotExist

from ...engine.states import BACKING_OFF, DONE, FAILED, PAUSED, QUEUED, UPLOADING
from ..formatting import (
    NONE_MARK,
    human_bytes,
    human_duration,
    human_rate,
    shorten_path,
)
from ..model import DashboardModel, FileRow

STATE_STYLES = {
    QUEUED: "dim",
    UPLOADING: "bold cyan",
    PAUSED: "yellow",
    BACKING_OFF: "magenta",
    DONE: "green",
    FAILED: "bold red",
}

# (key, label, width); the name column takes whatever the others leave (shared with a note column when wide).
_FIXED_COLUMNS = (("size", "Size", 9), ("progress", "Progress", 0), ("speed", "Speed", 11),
                  ("eta", "ETA", 6), ("state", "State", 11))
_MIN_NAME = 12
WIDE_FROM = 120
"""Terminal width from which the dashboard uses its wide layout (longer bars, every count in the totals)."""
_NARROW_BAR, _WIDE_BAR = 8, 20
_PERCENT = 5  # " 100%"
_CHROME = 2  # the vertical scrollbar
_NOTE_SHARE = 0.45
"""Wide layout: this share of the free width shows why a file failed or waits, next to its name."""


def progress_bar(fraction: float, width: int, style: str) -> Text:
    """A bar of eighth-blocks followed by the percentage; `width` counts the bar only."""
    fraction = min(max(fraction, 0.0), 1.0)
    eighths = round(fraction * width * 8)
    full, partial = divmod(eighths, 8)
    bar = "█" * full + ("▏▎▍▌▋▊▉"[partial - 1] if partial else "")
    text = Text(bar, style=style)
    text.append(" " * (width - len(bar)), style="on grey23")
    text.append(f" {fraction * 100:3.0f}%")
    return text


class FileTable(DataTable[Text]):
    """Keyed by path, drawn from the model; rebuilt when the terminal's width changes (column widths are
    fixed when columns are added)."""

    def __init__(self, model: DashboardModel, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)
        self.model = model
        self._built_for = 0
        self._bar_width = _NARROW_BAR
        self._name_width = _MIN_NAME
        self._note_width = 0

    def selected_path(self) -> str | None:
        if not self.row_count:
            return None
        try:
            key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key
        except CellDoesNotExist:
            return None
        return key.value

    def on_resize(self) -> None:
        if self.app.size.width != self._built_for:
            self.rebuild(time.monotonic())

    def rebuild(self, now: float) -> None:
        """Re-create columns sized for the terminal's width and every row, keeping the cursor on the same file."""
        model = self.model
        width = self._built_for = self.app.size.width
        selected = self.selected_path()
        wide = width >= WIDE_FROM
        self._bar_width = _WIDE_BAR if wide else _NARROW_BAR
        fixed = sum((w or self._bar_width + _PERCENT) + 2 * self.cell_padding for _, _, w in _FIXED_COLUMNS)
        free = width - fixed - 2 * self.cell_padding - _CHROME
        self._note_width = int(free * _NOTE_SHARE) if wide else 0
        self._name_width = max(free - (self._note_width + 2 * self.cell_padding if wide else 0), _MIN_NAME)
        self.clear(columns=True)
        self.add_column("Name", width=self._name_width, key="name")
        for key, label, column_width in _FIXED_COLUMNS:
            self.add_column(label, width=column_width or self._bar_width + _PERCENT, key=key)
        if wide:
            self.add_column("Note", width=self._note_width, key="note")
        for row in model.rows.values():
            self.add_row(*self._cells(row, now), key=row.path)
        if selected in model.rows:
            self.move_cursor(row=self.get_row_index(selected), animate=False)

    def show(self, paths: set[str], now: float) -> None:
        """Add rows for new paths (in the model's order) and redraw the cells of known ones."""
        model = self.model
        keys = [column.key for column in self.ordered_columns]
        for path, row in model.rows.items():
            if path not in paths:
                continue
            cells = self._cells(row, now)
            if path not in self.rows:  # RowKey compares equal to its string
                self.add_row(*cells, key=path)
                continue
            for key, cell in zip(keys, cells, strict=True):
                self.update_cell(path, key, cell)

    def drop(self, paths: set[str]) -> None:
        for path in paths:
            try:
                self.remove_row(path)
            except RowDoesNotExist:
                continue

    def _cells(self, row: FileRow, now: float) -> tuple[Text, ...]:
        style = STATE_STYLES.get(row.state, "")
        if row.state == BACKING_OFF and row.retry_at is not None:
            eta = Text(f"⟳{human_duration(max(row.retry_at - now, 0))}", style="magenta")
        else:
            eta = Text(human_duration(row.eta(now)) if row.state == UPLOADING else NONE_MARK)
        cells = (
            Text(shorten_path(self.model.display_name(row.path), self._name_width)),
            Text(human_bytes(row.size), justify="right"),
            progress_bar(row.fraction, self._bar_width, "green" if row.state == DONE else "cyan"),
            Text(human_rate(row.speed(now)), justify="right"),
            eta,
            Text(row.state, style=style),
        )
        if not self._note_width:
            return cells
        note = row.error if row.state in (FAILED, BACKING_OFF, QUEUED) and row.error else ""
        return (*cells, Text(note, style="red" if row.state == FAILED else "dim", no_wrap=True, overflow="ellipsis"))
