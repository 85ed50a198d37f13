"""The modals that add a folder to watch and stop watching one; each answers with a folder, or None when
cancelled."""

from __future__ import annotations

from pathlib import Path

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label, OptionList


class AddFolderScreen(ModalScreen[Path | None]):
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def compose(self) -> ComposeResult:
        with Vertical(id="add-folder", classes="folder-dialog"):
            yield Label("Watch another folder, now and at the next start (Enter to add, Esc to cancel)")
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


class ForgetFolderScreen(ModalScreen[Path | None]):
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, roots: list[Path]) -> None:
        super().__init__()
        self.roots = list(roots)

    def compose(self) -> ComposeResult:
        with Vertical(id="forget-folder", classes="folder-dialog"):
            yield Label("Stop watching a folder (Enter; Esc to cancel). Its unfinished uploads wait in the journal "
                        "and resume if it is added again; nothing is deleted.")
            yield OptionList(*(str(root) for root in self.roots), id="folder-choice")

    @on(OptionList.OptionSelected)
    def choose(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(self.roots[event.option_index])

    def action_cancel(self) -> None:
        self.dismiss(None)
