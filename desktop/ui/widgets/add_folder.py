"""A modal that asks for a folder to watch; it answers with the folder, or None when cancelled."""

from __future__ import annotations

from pathlib import Path

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label


class AddFolderScreen(ModalScreen[Path | None]):
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def compose(self) -> ComposeResult:
        with Vertical(id="add-folder"):
            yield Label("Watch another folder (Enter to add, Esc to cancel)")
            yield Input(placeholder="/path/to/folder", id="folder-input")
            yield Label("", id="folder-error")

    @on(Input.Submitted)
    def submit(self, event: Input.Submitted) -> None:
        folder = Path(event.value.strip()).expanduser()
        if not event.value.strip() or not folder.is_dir():
            self.query_one("#folder-error", Label).update(f"not a folder: {event.value.strip() or '(empty)'}")
            return
        self.dismiss(folder.resolve())

    def action_cancel(self) -> None:
        self.dismiss(None)
