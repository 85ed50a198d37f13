"""What a failed attempt leads to: retry later, start over, wait for the whole server, or give up.

Kept apart from the engine's threads so the rules read as a table and are tested as one.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from ..client.errors import CHECKSUM, FATAL, GONE, RATE_LIMITED, UNREACHABLE, UploadError
from .backoff import backoff_delay

MAX_CHECKSUM_RESTARTS = 1
SERVER_WIDE = (RATE_LIMITED, UNREACHABLE)  # conditions of the server (or the network), not of one file
UNREACHABLE_CAP = 60.0  # seconds: after sleep or an outage, find the server again within a minute


@dataclass(frozen=True)
class Decision:
    final: bool = False  # mark the file failed; only the user retries it
    delay: float = 0.0  # seconds before this file's next attempt
    restart: bool = False  # forget the upload URL (and digest): create a new upload from byte 0
    server_wait: float = 0.0  # hold every worker against this server this long
    counts: bool = True  # the attempt counts toward max_attempts


def decide(err: UploadError, attempts: int, restarts: int, max_attempts: int, wait_streak: int = 1,
           rng: random.Random | None = None, wait_out_unreachable: bool = True) -> Decision:
    """`attempts` includes the one that just failed; `wait_streak` counts server-wide waits in a row."""
    if err.kind == CHECKSUM:
        # the bytes the server hashed are not the file we hashed: once from scratch (a flaky path corrupted
        # them), then it is not going to get better by itself
        return Decision(restart=True) if restarts < MAX_CHECKSUM_RESTARTS else Decision(final=True)
    if err.kind == FATAL:
        return Decision(final=True)
    if err.kind == RATE_LIMITED:
        # the server is fine and asked us to slow down: wait as long as it says (at least), never give up
        wait = backoff_delay(wait_streak, floor=err.retry_after or 0.0, rng=rng)
        return Decision(delay=wait, server_wait=wait, counts=False)
    if err.kind == UNREACHABLE and wait_out_unreachable:
        # offline, asleep, server restarting: every file would fail alike, so hold them all (one probe at
        # a time) and do not spend their attempts; a laptop that wakes up carries on
        wait = backoff_delay(wait_streak, cap=UNREACHABLE_CAP, rng=rng)
        return Decision(delay=wait, server_wait=wait, counts=False)
    if attempts >= max_attempts:
        return Decision(final=True)
    if err.kind == GONE:  # expired or failed on the server: a fresh upload, right away
        return Decision(restart=True)
    return Decision(delay=backoff_delay(attempts, floor=err.retry_after or 0.0, rng=rng))
