"""A warning toast that counts down a server-wide wait (429/503 with Retry-After) live, once per tick."""

from __future__ import annotations

from textual.app import App
from textual.notifications import Notification, Notify

from ..formatting import human_duration


class BackoffToast:
    """Owns one notification; its text is rewritten each second and the toast redrawn in place.

    A longer wait replaces the toast (a toast's lifetime is fixed when it is shown): the old notification
    is expired so the toast rack drops it when the new one arrives.
    """

    def __init__(self, app: App[object]) -> None:
        self._app = app
        self._notification: Notification | None = None

    @property
    def message(self) -> str | None:
        return None if self._notification is None else self._notification.message

    def start(self, seconds_left: float, reason: str) -> None:
        if self._notification is not None:
            self._notification.timeout = 0
        self._notification = Notification(_text(seconds_left, reason), "Server asked us to wait", "warning",
                                          timeout=seconds_left + 1)
        self._app.post_message(Notify(self._notification))

    def tick(self, seconds_left: float | None, reason: str) -> None:
        if self._notification is None:
            return
        if seconds_left is None:
            self._notification.message = "Resuming uploads"
            self._notification = None
        else:
            self._notification.message = _text(seconds_left, reason)
        for toast in self._app.screen.query("Toast"):
            toast.refresh()


def _text(seconds_left: float, reason: str) -> str:
    return f"All uploads resume in {human_duration(seconds_left)} ({reason})"
