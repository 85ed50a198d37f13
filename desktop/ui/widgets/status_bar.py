"""The header line: which server, whether it answers, and which folders are watched."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from ..model import NOT_CONTACTED, DashboardModel

CONNECTION_STYLES = {"online": "green", "rate-limited": "yellow", NOT_CONTACTED: "dim", "offline": "red"}


class StatusBar(Static):
    """Redrawn after each batch of events and once a second, so a server-wide wait counts down here too."""

    def __init__(self, server_url: str, *, id: str | None = None) -> None:
        super().__init__(id=id, markup=False)
        self.server_url = server_url

    def show(self, model: DashboardModel, now: float) -> None:
        text = Text.assemble(("tuskit ", "bold"), "→ ", (self.server_url, "underline"), "  ")
        state = model.connection
        text.append(f"● {state}", style=CONNECTION_STYLES.get(state, ""))
        if model.connection_detail:
            text.append(f" ({model.connection_detail})", style="dim")
        left = model.backoff_left(now)
        if left is not None:
            text.append(f" ({left:.0f} s)", style="yellow")
        if model.paused_all:
            text.append("  ⏸ paused", style="bold yellow")
        roots = ", ".join(str(root) for root in model.roots) or "no folder"
        text.append("  watching ", style="dim")
        text.append(roots)
        self.update(text)
