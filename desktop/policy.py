"""What a failed attempt leads to: retry later, start over, wait for the whole server, or give up.

Kept apart from the engine's threads so the rules read as a table and are tested as one.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from tuskit.desktop.backoff import backoff_delay
from tuskit.desktop.uploader import CHECKSUM, FATAL, GONE, RATE_LIMITED, UploadError

MAX_CHECKSUM_RESTARTS = 1


@dataclass(frozen=True)
class Decision:
    final: bool = False  # mark the file failed; only the user retries it
    delay: float = 0.0  # seconds before this file's next attempt
    restart: bool = False  # forget the upload URL (and digest): create a new upload from byte 0
    server_wait: float = 0.0  # hold every worker against this server this long
    counts: bool = True  # the attempt counts toward max_attempts


def decide(err: UploadError, attempts: int, restarts: int, max_attempts: int, rate_limit_streak: int = 1,
           rng: random.Random | None = None) -> Decision:
    """`attempts` includes the one that just failed; `rate_limit_streak` counts 429/503s in a row."""
    if err.kind == CHECKSUM:
        # the bytes the server hashed are not the file we hashed: once from scratch (a flaky path corrupted
        # them), then it is not going to get better by itself
        return Decision(restart=True) if restarts < MAX_CHECKSUM_RESTARTS else Decision(final=True)
    if err.kind == FATAL:
        return Decision(final=True)
    if err.kind == RATE_LIMITED:
        # the server is fine and asked us to slow down: wait as long as it says (at least), never give up
        wait = backoff_delay(rate_limit_streak, floor=err.retry_after or 0.0, rng=rng)
        return Decision(delay=wait, server_wait=wait, counts=False)
    if attempts >= max_attempts:
        return Decision(final=True)
    if err.kind == GONE:  # expired or failed on the server: a fresh upload, right away
        return Decision(restart=True)
    return Decision(delay=backoff_delay(attempts, floor=err.retry_after or 0.0, rng=rng))
