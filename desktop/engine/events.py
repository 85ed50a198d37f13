"""Typed events the sync engine emits; front ends (Textual, headless logs) only render these.

Events are emitted from engine worker threads. A consumer that lives on another loop (Textual) must hop
threads itself (`App.call_from_thread` or `post_message`).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Queued:
    """A stable file entered the queue (new, changed, or re-queued after a retry)."""

    path: str
    size: int


@dataclass(frozen=True)
class Started:
    """A worker began (or resumed, when offset > 0) uploading `path`."""

    path: str
    size: int
    offset: int
    url: str


@dataclass(frozen=True)
class Progress:
    """Bytes confirmed or in flight for `path`; coalesced so a fast upload does not flood the UI."""

    path: str
    sent: int
    size: int
    bytes_per_second: float


@dataclass(frozen=True)
class Done:
    path: str
    size: int
    url: str
    sha256: str


@dataclass(frozen=True)
class Failed:
    """An attempt failed; `final` means no more automatic retries (the user can still retry)."""

    path: str
    error: str
    attempts: int
    final: bool


@dataclass(frozen=True)
class BackingOff:
    """Waiting before the next attempt; `path` is None when every worker waits (429/503 from the server)."""

    path: str | None
    seconds: float
    reason: str


@dataclass(frozen=True)
class Paused:
    path: str | None  # None: everything


@dataclass(frozen=True)
class Resumed:
    path: str | None  # None: everything


@dataclass(frozen=True)
class Removed:
    path: str


@dataclass(frozen=True)
class Notice:
    """Something the user should read that is not about one file (watch limit hit, root added)."""

    message: str
    level: str = "info"  # info | warning | error


@dataclass(frozen=True)
class Connection:
    """How the server is reachable, for a front end's header: `online`, `offline` or `rate-limited`."""

    state: str
    detail: str = ""


EngineEvent = (Queued | Started | Progress | Done | Failed | BackingOff | Paused | Resumed | Removed | Notice
               | Connection)
