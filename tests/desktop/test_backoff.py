"""Backoff schedule, Retry-After parsing, the server gate and the failure policy table."""

from __future__ import annotations

import random
import threading
import time
from email.utils import formatdate

from tuskit.desktop.client.errors import (
    CHECKSUM,
    FATAL,
    GONE,
    NETWORK,
    RATE_LIMITED,
    RETRYABLE,
    UNREACHABLE,
    UploadError,
)
from tuskit.desktop.client.headers import parse_retry_after
from tuskit.desktop.engine.backoff import ServerGate, backoff_delay
from tuskit.desktop.engine.policy import Decision, decide


def test_full_jitter_stays_under_the_exponential_ceiling_and_the_cap() -> None:
    rng = random.Random(7)
    for attempt in range(1, 15):
        ceiling = min(300.0, 2.0 ** (attempt - 1))
        draws = [backoff_delay(attempt, rng=rng) for _ in range(200)]
        assert all(0.0 <= d <= ceiling for d in draws)
        assert max(draws) > ceiling * 0.8  # spread over the whole range, not a fixed delay
    assert all(backoff_delay(1, floor=5.0, rng=rng) >= 5.0 for _ in range(50))


def test_retry_after_seconds_date_and_garbage() -> None:
    assert parse_retry_after("7") == 7.0
    now = time.time()
    assert 29 <= parse_retry_after(formatdate(now + 30, usegmt=True), now=now) <= 31  # type: ignore[operator]
    assert parse_retry_after(formatdate(now - 30, usegmt=True), now=now) == 0.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None


def test_gate_only_extends_and_releases_waiters_when_open() -> None:
    gate = ServerGate()
    assert gate.close_for(0.3)
    assert not gate.close_for(0.1)  # a shorter wait does not shorten the longer one
    assert gate.remaining() > 0.1
    cancelled = threading.Event()
    assert gate.wait_open(cancelled)
    assert gate.remaining() == 0.0
    gate.close_for(60)
    cancelled.set()
    assert not gate.wait_open(cancelled)


def test_after_a_wait_one_probe_goes_first_and_the_others_follow_its_success() -> None:
    gate = ServerGate()
    gate.close_for(0.05)
    never = threading.Event()
    assert gate.wait_open(never)  # this thread is the probe
    follower_in = threading.Event()
    follower = threading.Thread(target=lambda: gate.wait_open(never) and follower_in.set())
    follower.start()
    assert not follower_in.wait(0.3)  # held while the probe's answer is pending
    gate.succeeded()
    assert follower_in.wait(10)
    follower.join()


def test_a_failed_probe_hands_over_to_the_next_worker() -> None:
    gate = ServerGate()
    gate.close_for(0.01)
    never = threading.Event()
    assert gate.wait_open(never)
    gate.release()  # the probe's attempt ended without an answer (e.g. network error)
    took_over = threading.Event()
    threading.Thread(target=lambda: gate.wait_open(never) and took_over.set(), daemon=True).start()
    assert took_over.wait(10)


def _err(kind: str, retry_after: float | None = None) -> UploadError:
    return UploadError(kind, "reason", retry_after=retry_after)


def test_policy_table() -> None:
    rng = random.Random(1)
    assert decide(_err(CHECKSUM), attempts=1, restarts=0, max_attempts=5) == Decision(restart=True)
    assert decide(_err(CHECKSUM), attempts=2, restarts=1, max_attempts=5) == Decision(final=True)
    assert decide(_err(FATAL), attempts=1, restarts=0, max_attempts=5).final
    assert decide(_err(GONE), attempts=1, restarts=0, max_attempts=5) == Decision(restart=True)
    rate = decide(_err(RATE_LIMITED, retry_after=4.0), attempts=9, restarts=0, max_attempts=5, rng=rng)
    assert not rate.final and not rate.counts and rate.delay >= 4.0 and rate.server_wait == rate.delay
    net = decide(_err(NETWORK), attempts=3, restarts=0, max_attempts=5, rng=rng)
    assert not net.final and 0 <= net.delay <= 4.0 and net.server_wait == 0
    assert decide(_err(RETRYABLE, retry_after=2.0), attempts=1, restarts=0, max_attempts=5).delay >= 2.0
    assert decide(_err(NETWORK), attempts=5, restarts=0, max_attempts=5).final
    offline = decide(_err(UNREACHABLE), attempts=50, restarts=0, max_attempts=5, wait_streak=20, rng=rng)
    assert not offline.final and not offline.counts and 0 <= offline.delay <= 60  # capped at a minute
    assert offline.server_wait == offline.delay
    assert decide(_err(UNREACHABLE), attempts=5, restarts=0, max_attempts=5, wait_out_unreachable=False).final
