"""Redis (external, via --redis-url) stops in the middle of an upload and comes back.

While it is away every request is answered with a retryable error that carries Retry-After, never a
traceback or a hang; when it is back the client resumes from HEAD and the file verifies.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
from faults import tus_ops
from faults.redis_process import RedisProcess
from faults.tus_ops import Source

from support import TUS, ServerProcess, patch_upload, raw_connect, stored_sha256

MIB = 1024 * 1024


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisProcess]:
    server = RedisProcess(tmp_path / "redis")
    server.start()
    yield server
    server.stop()


def _retryable(response: requests.Response, *statuses: int) -> None:
    assert response.status_code in statuses, (response.status_code, response.text)
    assert int(response.headers["Retry-After"]) > 0


def _head_when_back(url: str) -> requests.Response:
    """Meanwhile only 503 with Retry-After. Never 423: the lease of the PATCH that the outage ended could not
    be released then, and must not lock the upload afterwards."""
    return tus_ops.head_when_back(url)


def test_redis_stopped_and_started_mid_upload(
    own_redis: RedisProcess, server_factory: Callable[..., ServerProcess]
) -> None:
    server = server_factory("--redis-url", own_redis.url)
    source = Source(os.urandom(3 * MIB))
    url = tus_ops.create(server.url, source)
    assert patch_upload(url, 0, source.body[:MIB]).status_code == 204

    # A PATCH is streaming when Redis goes away; its offset cannot be recorded, so it is refused.
    rest = source.body[MIB:]
    sock = raw_connect(url)
    try:
        sock.sendall(tus_ops.patch_head(url, MIB, len(rest)) + rest[: len(rest) // 2])
        own_redis.stop()
        sock.sendall(rest[len(rest) // 2:])
        response = tus_ops.answer(sock)
    finally:
        sock.close()
    assert response is not None and response.status == 503
    assert int(response.headers["Retry-After"]) > 0

    # Requests while Redis is down: retryable, with Retry-After (a failed HEAD is 423: tus-js-client retries
    # a 423, while it would restart from zero after a 5xx HEAD).
    _retryable(requests.post(server.url, headers={**TUS, "Upload-Length": "10"}, timeout=30), 503)
    _retryable(patch_upload(url, MIB, rest), 503)
    _retryable(requests.head(url, headers=TUS, timeout=30), 423, 503)
    assert server.proc.poll() is None

    own_redis.start()
    head = _head_when_back(url)
    at = int(head.headers["Upload-Offset"])
    assert at == MIB  # the refused PATCH recorded nothing; the bytes before it are all there
    done = patch_upload(url, at, source.body[at:])
    assert done.status_code == 204, done.text
    assert stored_sha256(url) == source.sha256
