"""One file's row as front ends see it, and the states it moves through."""

from __future__ import annotations

from dataclasses import dataclass

QUEUED = "queued"
UPLOADING = "uploading"
PAUSED = "paused"
BACKING_OFF = "backing-off"
DONE = "done"
FAILED = "failed"
STATES = (QUEUED, UPLOADING, PAUSED, BACKING_OFF, DONE, FAILED)
ACTIVE = (QUEUED, UPLOADING, BACKING_OFF)  # states that still have work in them


@dataclass(frozen=True)
class FileStatus:
    path: str
    size: int
    sent: int
    state: str
    error: str | None
    url: str | None
    attempts: int
