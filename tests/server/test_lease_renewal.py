"""Leases on a real Redis: renewed while held, ended cleanly when released, taken together with a read of
the upload's state (a PATCH's first round trip) and released together with its offset (its last)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest
import redis.asyncio as aioredis

from tuskit.errors import TusError
from tuskit.server.core.ports import Advance, OffsetConflict
from tuskit.server.redis import keys
from tuskit.server.redis.locks import RedisLease, RedisLocker
from tuskit.server.redis.state import RedisStateStore

TTL_MS = 300  # renewals every 0.1 s


async def _until(condition: Callable[[], bool], what: str, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        await asyncio.sleep(0.01)


async def _with_locker(redis_url: str, body: Callable[[aioredis.Redis, RedisLocker], Awaitable[None]]) -> None:
    client = aioredis.from_url(redis_url)
    try:
        await body(client, RedisLocker(client, RedisStateStore(client), ttl_ms=TTL_MS))
    finally:
        await client.aclose()


def test_a_held_lease_outlives_its_ttl(redis_url: str) -> None:
    async def body(client: aioredis.Redis, locker: RedisLocker) -> None:
        lease = await locker.acquire("a" * 32)
        await asyncio.sleep(3 * TTL_MS / 1000)  # the scenario: held for three TTLs
        assert await client.get(keys.lock("a" * 32)) == lease.token.encode()
        assert not lease.lost
        await lease.release()

    asyncio.run(_with_locker(redis_url, body))


def test_release_while_renewing_ends_the_renewer_and_frees_the_upload(redis_url: str) -> None:
    async def body(client: aioredis.Redis, locker: RedisLocker) -> None:
        lease: RedisLease = await locker.acquire("b" * 32)
        await _until(lambda: lease._renewer is not None, "renewal started")
        await lease.release()
        renewer = lease._renewer
        assert renewer is not None
        await _until(renewer.done, "the renewer ended")
        assert await client.exists(keys.lock("b" * 32)) == 0
        assert not lease.lost
        again = await locker.acquire("b" * 32)  # free for the next request at once
        await again.release()

    asyncio.run(_with_locker(redis_url, body))


def test_acquire_reads_a_hash_as_the_lease_is_taken(redis_url: str) -> None:
    async def body(client: aioredis.Redis, locker: RedisLocker) -> None:
        await client.hset(keys.upload("c" * 32), mapping={"offset": "7", "status": "active"})
        lease = await locker.acquire("c" * 32, read=True)
        assert lease.upload is not None and (lease.upload.offset, lease.upload.status) == (7, "active")
        # another process: held, so 423, no read
        waiting = RedisLocker(client, RedisStateStore(client), ttl_ms=TTL_MS, wait_seconds=0.3)
        with pytest.raises(TusError) as refused:
            await waiting.acquire("c" * 32, read=True)
        assert refused.value.status == 423
        await lease.release()
        missing = await locker.acquire("d" * 32, read=True)
        assert missing.upload is None
        await missing.release()

    asyncio.run(_with_locker(redis_url, body))


def test_advance_releases_the_lease_only_when_the_offset_moves(redis_url: str) -> None:
    async def body(client: aioredis.Redis, locker: RedisLocker) -> None:
        state, upload_id = RedisStateStore(client), "e" * 32
        await client.hset(keys.upload(upload_id), mapping={"offset": "0", "status": "active"})
        lease = await locker.acquire(upload_id)
        with pytest.raises(OffsetConflict):  # a stale writer: nothing recorded, the lease still held
            await state.advance(upload_id, Advance(5, 10, None), release=(lease.key, lease.token))
        assert await client.get(lease.key) == lease.token.encode()
        await lease.release(Advance(0, 10, None))  # a PATCH's last round trip: offset and lease together
        assert await client.hget(keys.upload(upload_id), "offset") == b"10"
        assert await client.exists(lease.key) == 0
        await lease.release()  # released once: no second delete, which could hit a successor's lease
        successor = await locker.acquire(upload_id)
        await lease.release()
        assert await client.get(successor.key) == successor.token.encode()
        await successor.release()


def test_a_release_whose_advance_conflicts_still_ends_the_lease(redis_url: str) -> None:
    async def body(client: aioredis.Redis, locker: RedisLocker) -> None:
        upload_id = "f" * 32
        await client.hset(keys.upload(upload_id), mapping={"offset": "4", "status": "active"})
        lease = await locker.acquire(upload_id)
        with pytest.raises(OffsetConflict):
            await lease.release(Advance(0, 10, None))
        assert await client.hget(keys.upload(upload_id), "offset") == b"4"
        assert await client.exists(lease.key) == 0  # the upload is free for the next request

    asyncio.run(_with_locker(redis_url, body))
