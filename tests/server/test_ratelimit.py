"""Rate limits live in Redis, so every process spends from the same bucket: a burst over the request
budget gets 429 with whole-second Retry-After and a one-line reason; over the byte budget a PATCH is
read more slowly but never refused."""

from __future__ import annotations

import asyncio
import hashlib
import math
import os
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
import redis.asyncio as aioredis
import requests
from interop.node_runner import NodeScriptFailed, ensure_packages, node_unavailable, run_script
from tus_calls import create, metric, patch, poll

from tuskit.server.redis.ratelimit import RedisRateLimiter

from support import TUS, ServerProcess

UNKNOWN = "0" * 32


def burst(server: ServerProcess, count: int) -> list[requests.Response]:
    with requests.Session() as session:
        return [session.get(server.url + UNKNOWN, timeout=10) for _ in range(count)]


def test_request_burst_gets_429_with_retry_after_shared_by_processes(
    server_factory: Callable[..., ServerProcess], redis_url: str
) -> None:
    a = server_factory("--redis-url", redis_url, "--rate-limit", "0.5", "--rate-burst", "4")
    b = server_factory("--redis-url", redis_url, "--rate-limit", "0.5", "--rate-burst", "4")
    statuses = [r.status_code for r in burst(a, 4)]
    assert statuses == [404] * 4  # the burst allowance, then the bucket is empty
    refused = burst(b, 1)[0]  # the other process sees the same bucket (same client address)
    assert refused.status_code == 429
    assert refused.headers["Retry-After"].isdigit() and int(refused.headers["Retry-After"]) >= 1
    reason = refused.text.strip()
    assert "\n" not in reason and "requests/s" in reason
    assert refused.headers["Tus-Resumable"] == "1.0.0"
    assert requests.head(a.url + UNKNOWN, headers=TUS, timeout=10).status_code == 429
    # preflights, health checks and scrapes are not counted, so browsers, balancers and Prometheus keep working
    assert requests.options(a.url, timeout=10).status_code == 200
    assert requests.get(a.origin + "/healthz", timeout=10).status_code == 200
    assert metric(b.origin, "tuskit_rate_limited_total") == 1
    assert metric(b.origin, 'tuskit_http_requests_total{code="429"}') == 1


def test_rate_limits_are_off_by_default(tus_server: ServerProcess) -> None:
    assert {r.status_code for r in burst(tus_server, 60)} == {404}


def test_byte_rate_slows_a_patch_without_refusing_it(server_factory: Callable[..., ServerProcess]) -> None:
    srv = server_factory("--byte-rate", "1MiB")
    body = os.urandom(3 * 1024 * 1024)  # three of the server's 1 MiB read pieces, about two seconds
    url = create(srv.url, len(body)).headers["Location"]
    result: list[requests.Response] = []
    sender = threading.Thread(target=lambda: result.append(patch(url, 0, body)))
    sender.start()
    # the server reads the body piece by piece: /metrics shows it arriving partway, several times
    seen: set[float] = set()

    def partway() -> bool:
        received = metric(srv.origin, "tuskit_bytes_received_total")
        if 0 < received < len(body):
            seen.add(received)
        return len(seen) >= 2

    poll(partway, timeout=30)
    sender.join(60)
    assert result and result[0].status_code == 204
    assert result[0].headers["Upload-Offset"] == str(len(body))
    assert hashlib.sha256(requests.get(url, timeout=30).content).digest() == hashlib.sha256(body).digest()


def test_tus_js_client_fails_on_429(server_factory: Callable[..., ServerProcess], tmp_path: Path) -> None:
    """What README documents: tus-js-client does not retry a 429 (nor read Retry-After); it fails."""
    reason = node_unavailable()
    if reason:
        pytest.skip(reason)
    ensure_packages()
    srv = server_factory("--rate-limit", "0.05", "--rate-burst", "2")
    assert [r.status_code for r in burst(srv, 2)] == [404, 404]  # the budget is spent
    source = tmp_path / "file.bin"
    source.write_bytes(os.urandom(1000))
    with pytest.raises(NodeScriptFailed, match="429"):
        run_script("tus_node.mjs", {"scenario": "buffer", "endpoint": srv.url, "path": str(source)}, timeout=60)
    assert metric(srv.origin, "tuskit_rate_limited_total") == 1  # one refused POST, no retries


def test_token_bucket_arithmetic_in_redis(redis_url: str) -> None:
    async def scenario() -> None:
        redis = aioredis.from_url(redis_url)
        try:
            limiter = RedisRateLimiter(redis, request_rate=0.1, request_burst=3, byte_rate=100)
            verdicts = [await limiter.request("ip:10.0.0.1") for _ in range(4)]
            assert [v.allowed for v in verdicts] == [True, True, True, False]
            assert 0 < verdicts[-1].wait <= 10 and verdicts[-1].retry_after == str(math.ceil(verdicts[-1].wait))
            assert (await limiter.request("ip:10.0.0.2")).allowed  # another client, another bucket
            # bytes never refuse: spending past the budget returns how long the debt takes to pay
            assert await limiter.upload_bytes("owner:a", 100) == 0
            assert 2.0 < await limiter.upload_bytes("owner:a", 300) <= 3.0
            off = RedisRateLimiter(redis, request_rate=0, request_burst=0, byte_rate=0)
            assert (await off.request("ip:10.0.0.1")).allowed and await off.upload_bytes("owner:a", 10**9) == 0
        finally:
            await redis.aclose()

    asyncio.run(scenario())
