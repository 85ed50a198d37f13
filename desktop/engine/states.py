"""Every state a file version moves through, in one place, and one file's row as front ends see it.

queued -> uploading -> done, with backing-off (waiting to retry), paused (by the user) and failed (out of
automatic attempts; the user may retry) on the way. Two more states never reach a front end: a version
replaced by a newer one of the same path before it finished is `superseded`, one the user took off the
list (or whose file vanished) is `removed`; both stay in the journal so the same version is not queued
again.
"""

from __future__ import annotations

from dataclasses import dataclass

QUEUED = "queued"
UPLOADING = "uploading"
PAUSED = "paused"
BACKING_OFF = "backing-off"
DONE = "done"
FAILED = "failed"
SUPERSEDED = "superseded"
REMOVED = "removed"
STATES = (QUEUED, UPLOADING, PAUSED, BACKING_OFF, DONE, FAILED)  # what front ends see
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
