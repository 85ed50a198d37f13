"""What a failed attempt leads to: retry later, start over, wait for the whole server, or give up.

Kept apart from the engine's threads so the rules read as a table and are tested as one.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from ..client.errors import CHECKSUM, FATAL, GONE, RATE_LIMITED, REFUSED, UNREACHABLE, UploadError
from .backoff import backoff_delay

MAX_CHECKSUM_RESTARTS = 1
SERVER_WIDE = (RATE_LIMITED, UNREACHABLE)  # conditions of the server (or the network), not of one file
UNREACHABLE_CAP = 60.0  # seconds: after sleep or an outage, find the server again within a minute

# What an unreachable server means depends on the run (the engine picks one):
WAIT = "wait"  # watching folders: hold every worker, spend no attempt; a laptop that wakes up carries on
COUNT = "count"  # a one-shot run that reached the server before: an outage mid-run, retried like any failure
GIVE_UP = "give-up"  # a one-shot run that never reached the server, past its short grace: nothing will work


@dataclass(frozen=True)
class Decision:
    final: bool = False  # mark the file failed; only the user retries it
    delay: float = 0.0  # seconds before this file's next attempt
    restart: bool = False  # forget the upload URL (and digest): create a new upload from byte 0
    server_wait: float = 0.0  # hold every worker against this server this long
    counts: bool = True  # the attempt counts toward max_attempts
    everyone: bool = False  # every other file would get the same answer (a one-shot run ends)


def decide(err: UploadError, attempts: int, restarts: int, max_attempts: int, wait_streak: int = 1,
           rng: random.Random | None = None, unreachable: str = WAIT,
           unreachable_cap: float = UNREACHABLE_CAP) -> Decision:
    """`attempts` includes the one that just failed; `wait_streak` counts server-wide waits in a row."""
    if err.kind == CHECKSUM:
        # the bytes the server hashed are not the file we hashed: once from scratch (a flaky path corrupted
        # them), then it is not going to get better by itself
        return Decision(restart=True) if restarts < MAX_CHECKSUM_RESTARTS else Decision(final=True)
    if err.kind == FATAL:
        return Decision(final=True)
    if err.kind == REFUSED:  # not a tus server, no such endpoint, a token it does not know
        return Decision(final=True, everyone=True)
    if err.kind == RATE_LIMITED:
        # the server is fine and asked us to slow down: wait as long as it says (at least), never give up
        wait = backoff_delay(wait_streak, floor=err.retry_after or 0.0, rng=rng)
        return Decision(delay=wait, server_wait=wait, counts=False)
    if err.kind == UNREACHABLE and unreachable == GIVE_UP:
        return Decision(final=True, everyone=True)
    if err.kind == UNREACHABLE and unreachable == WAIT:
        # offline, asleep, server restarting: every file would fail alike, so hold them all (one probe at
        # a time) and do not spend their attempts
        wait = backoff_delay(wait_streak, cap=unreachable_cap, rng=rng)
        return Decision(delay=wait, server_wait=wait, counts=False)
    if attempts >= max_attempts:
        return Decision(final=True)
    if err.kind == GONE:  # expired or failed on the server: a fresh upload, right away
        return Decision(restart=True)
    return Decision(delay=backoff_delay(attempts, floor=err.retry_after or 0.0, rng=rng))
