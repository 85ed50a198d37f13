"""Everything known about one file, and for a finished image its thumbnail from the server."""

from __future__ import annotations

import threading
from collections.abc import Callable
from functools import partial

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Static
from textual.worker import get_current_worker

from ...client.thumbnail import Missing
from ...engine.states import DONE
from ..formatting import NONE_MARK, human_bytes
from ..model import FileRow
from ..thumbnail import looks_like_image, render_thumbnail
from .file_table import STATE_STYLES


class DetailScreen(ModalScreen[None]):
    """Live: `row` is the model's own object, redrawn each second; a file that finishes while shown gets its
    thumbnail then. The thumbnail is fetched and decoded in a thread worker; the UI loop only mounts it."""

    BINDINGS = [Binding("escape,enter,q", "close", "Close")]

    def __init__(self, row: FileRow, name: str, fetch: Callable[[str, threading.Event], bytes | Missing]) -> None:
        """`fetch(url, cancelled)` gets the thumbnail's bytes (the engine's `thumbnail`): this screen renders
        them and never talks to the server itself."""
        super().__init__()
        self.row = row
        self.file_name = name
        self.fetch = fetch
        self._cancelled = threading.Event()
        self._thumbnail_asked = False

    def compose(self) -> ComposeResult:
        with Vertical(id="detail"):
            yield Static("", id="detail-facts", markup=False)
            yield Static("", id="thumbnail", markup=False)

    def on_mount(self) -> None:
        self._refresh()
        self.set_interval(1.0, self._refresh)

    def _refresh(self) -> None:
        self.query_one("#detail-facts", Static).update(self._facts())
        row = self.row
        if not self._thumbnail_asked and row.state == DONE and row.url and looks_like_image(row.path):
            self._thumbnail_asked = True
            self.query_one("#thumbnail", Static).update(Text("fetching thumbnail…", style="dim"))
            self.call_after_refresh(self._start_thumbnail)

    def on_unmount(self) -> None:
        self._cancelled.set()

    def action_close(self) -> None:
        self.dismiss(None)

    def _facts(self) -> Text:
        row = self.row
        text = Text(overflow="fold")  # long URLs and digests break inside, not onto a line of their own
        for label, value, style in (
            ("name", self.file_name, "bold"),
            ("path", row.path, ""),
            ("size", f"{human_bytes(row.size)} ({row.size:,} bytes)", ""),
            ("sent", f"{human_bytes(row.sent)} ({row.fraction:.0%})", ""),
            ("state", row.state, STATE_STYLES.get(row.state, "")),
            ("attempts", str(row.attempts), ""),
            ("error", row.error or NONE_MARK, "red" if row.error else ""),
            ("url", row.url or NONE_MARK, ""),
            ("sha256", row.sha256 or NONE_MARK, "dim"),
        ):
            text.append(f"{label:>9} ", style="dim")
            text.append(f"{value}\n", style=style)
        return text

    def _start_thumbnail(self) -> None:
        """Sized once the layout gave the thumbnail its room."""
        area = self.query_one("#thumbnail", Static).content_size
        self.run_worker(partial(self._load_thumbnail, area.width, area.height), thread=True, exclusive=True,
                        group="thumbnail")

    def _load_thumbnail(self, columns: int, rows: int) -> None:
        """Thread worker: the fetch and Pillow stay off the UI loop."""
        assert self.row.url is not None
        worker = get_current_worker()
        data = self.fetch(self.row.url, self._cancelled)
        picture = data if isinstance(data, Missing) else render_thumbnail(data, columns, rows)
        if not worker.is_cancelled and not self._cancelled.is_set():
            self.app.call_from_thread(self._show_thumbnail, picture)

    def _show_thumbnail(self, picture: object) -> None:
        target = self.query_one("#thumbnail", Static)
        if isinstance(picture, Missing):
            target.update(Text(f"no thumbnail: {picture.reason}", style="dim"))
        else:
            target.update(picture)
