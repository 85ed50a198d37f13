"""The totals line under the table: counts by state, bytes, throughput, and a throughput sparkline."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Sparkline, Static

from ...engine.states import BACKING_OFF, DONE, FAILED, PAUSED, QUEUED, UPLOADING
from ..formatting import human_bytes, human_rate
from ..model import DashboardModel
from .file_table import STATE_STYLES

_SHOWN_STATES = (UPLOADING, QUEUED, BACKING_OFF, PAUSED, FAILED)
_NARROW_STATES = (FAILED,)
"""At 80 columns the table already shows each state; the totals keep only what needs attention."""


class TotalsBar(Horizontal):
    def compose(self) -> ComposeResult:
        yield Static(id="totals-text", markup=False)
        yield Sparkline([], id="throughput")

    def show(self, model: DashboardModel, now: float, *, wide: bool) -> None:
        totals = model.totals(now)
        done = totals.by_state.get(DONE, 0)
        text = Text(f"{done}/{totals.files} done", style="bold")
        for state in _SHOWN_STATES if wide else _NARROW_STATES:
            if count := totals.by_state.get(state, 0):
                text.append(" · ")
                text.append(f"{count} {state}", style=STATE_STYLES[state])
        text.append(f"  {human_bytes(totals.sent)} / {human_bytes(totals.size)}  ")
        text.append(human_rate(totals.bytes_per_second), style="bold cyan")
        self.query_one("#totals-text", Static).update(text)
        self.query_one("#throughput", Sparkline).data = list(model.history)
