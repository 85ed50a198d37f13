"""The state machine without HTTP: UploadService, StateStore and Locker on a real Redis and a temp dir."""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from tuskit import protocol
from tuskit.errors import TusError
from tuskit.server.core.config import ServiceConfig
from tuskit.server.core.digests import RunningDigests
from tuskit.server.core.model import ACTIVE, DONE, FAILED
from tuskit.server.core.ports import Advance, OffsetConflict
from tuskit.server.core.runtime import Runtime
from tuskit.server.core.service import UploadService
from tuskit.server.redis import keys
from tuskit.server.redis.events import EventBus
from tuskit.server.redis.locks import RedisLocker
from tuskit.server.redis.state import RedisStateStore
from tuskit.server.stores.files import FileStore
from tuskit.server.stores.uring import Ring

Scenario = Callable[[UploadService], Awaitable[None]]


@pytest.fixture(params=["threads", "io_uring"])
def run(request: pytest.FixtureRequest, redis_url: str, tmp_path: Path) -> Iterator[Callable[..., None]]:
    """Run a scenario against a fresh service (small flush and checkpoint sizes, short lock waits); with
    io_uring, bodies that fit in one flush are written through the file store's ring."""
    executor = ThreadPoolExecutor(4)

    def go(scenario: Scenario, **config: Any) -> None:
        async def main() -> None:
            ring = None
            if request.param == "io_uring" and (ring := Ring.start()) is None:
                pytest.skip("this kernel or sandbox refuses io_uring")
            client = aioredis.from_url(redis_url)
            state = RedisStateStore(client)
            locker = RedisLocker(client, state, wait_seconds=0.5)
            await locker.start()
            service = UploadService(Runtime(
                state, FileStore(tmp_path, ring), locker, EventBus(client), executor,
                ServiceConfig(**{"flush_bytes": 1024, "checkpoint_bytes": 4096, **config})))
            try:
                await scenario(service)
            finally:
                await service.drain()
                await locker.stop()
                await client.aclose()
                if ring is not None:
                    await ring.aclose()

        asyncio.run(main())

    yield go
    executor.shutdown()


async def _create(service: UploadService, length: int | None, **metadata: bytes) -> Any:
    return await service.create(length=length, metadata=dict(metadata), concat=None, owner="")


async def _append(service: UploadService, upload_id: str, offset: int, pieces: list[bytes],
                  checksum: tuple[str, bytes] | None = None, ends_upload: bool = False) -> Any:
    """`ends_upload`: the client marked this body as the upload's last (the IETF draft's Upload-Complete: ?1)."""
    session = await service.open_append(upload_id, "", offset, new_length=None, body_length=None,
                                        checksum=checksum, checksum_in_trailer=False, ends_upload=ends_upload)
    for piece in pieces:
        await session.write(piece)
    return await session.finish()


def test_offset_is_checkpointed_during_a_long_patch(run: Callable[..., None]) -> None:
    async def scenario(service: UploadService) -> None:
        upload = await _create(service, 64 * 1024)
        session = await service.open_append(upload.id, "", 0, new_length=None, body_length=None, checksum=None,
                                            checksum_in_trailer=False)
        for _ in range(20):
            await session.write(b"x" * 1000)
        # no finish yet: a crash now would keep what the checkpoints recorded
        recorded = (await service.rt.state.get(upload.id)).offset
        assert 8192 <= recorded <= 20_000
        saved = await session.abort("test ends the body")
        assert saved == 20_000
        assert (await service.rt.state.get(upload.id)).offset == 20_000

    run(scenario)


def test_chunk_with_checksum_records_nothing_until_verified(run: Callable[..., None]) -> None:
    async def scenario(service: UploadService) -> None:
        upload = await _create(service, 64 * 1024)
        body = b"y" * 20_000
        with pytest.raises(TusError) as caught:
            await _append(service, upload.id, 0, [body], ("sha1", hashlib.sha1(b"other").digest()))
        assert caught.value.status == 460
        assert (await service.rt.state.get(upload.id)).offset == 0
        done = await _append(service, upload.id, 0, [body], ("sha1", hashlib.sha1(body).digest()))
        assert done.offset == 20_000
        with pytest.raises(TusError):
            await _append(service, upload.id, 20_000, [b"z" * 10], ("md5", hashlib.md5(b"other").digest()))
        # the discarded chunk handed back the running hash of the first 20000 bytes, untouched by it
        running = service.rt.digests.take(upload.id, 20_000)
        assert running is not None and running.digest() == hashlib.sha256(body).digest()

    run(scenario)


def test_declared_sha256_verified_with_a_rebuilt_hash(run: Callable[..., None]) -> None:
    async def scenario(service: UploadService) -> None:
        body = bytes(range(256)) * 100
        declared = hashlib.sha256(body).hexdigest().encode()
        upload = await _create(service, len(body), sha256=declared)
        await _append(service, upload.id, 0, [body[:10_000]])
        service.rt.digests = RunningDigests()  # as if another process took over: the running hash is gone
        done = await _append(service, upload.id, 10_000, [body[10_000:]])
        assert (done.status, done.sha256) == (DONE, declared.decode())
        stored = await service.rt.state.get(upload.id)
        assert stored.status == DONE and stored.sha256 == declared.decode()

    run(scenario)


def test_a_small_flush_behind_a_big_one_is_hashed_after_it(run: Callable[..., None]) -> None:
    """A flush of 256 KiB or more is hashed by a job of its own, a small one by its write job, on two queues
    that run side by side. The small one's hash update used to run first whenever the big one's was still
    waiting: the running hash covered the right bytes in the wrong order, and a good upload got a 460."""
    async def scenario(service: UploadService) -> None:
        big, small = os.urandom(300 * 1024), os.urandom(1000)
        declared = hashlib.sha256(big + small).hexdigest().encode()
        upload = await _create(service, len(big) + len(small), sha256=declared)
        session = await service.open_append(upload.id, "", 0, new_length=None, body_length=None, checksum=None,
                                            checksum_in_trailer=False)
        hashing = threading.Event()
        session.hashes.run(hashing.wait)  # the hash queue is held until the small flush's write is done
        await session.write(big)
        await session.flush()
        await session.write(small)
        await session.flush()
        await asyncio.wait([session.flights[-1][0]])  # the small flush is written (and hashed, if by its write)
        hashing.set()
        done = await session.finish()
        assert (done.status, done.sha256) == (DONE, declared.decode())

    run(scenario, flush_bytes=512 * 1024, checkpoint_bytes=8 * 1024 * 1024)


def test_mismatched_sha256_fails_the_upload_for_good(run: Callable[..., None], tmp_path: Path) -> None:
    async def scenario(service: UploadService) -> None:
        upload = await _create(service, 3, sha256=hashlib.sha256(b"abd").hexdigest().encode())
        with pytest.raises(TusError) as caught:
            await _append(service, upload.id, 0, [b"abc"])
        assert caught.value.status == 460
        assert (await service.rt.state.get(upload.id)).status == FAILED
        assert not (tmp_path / "uploads" / upload.id).exists()
        with pytest.raises(TusError) as gone:
            await service.get(upload.id, "")
        assert gone.value.status == 410 and "sha256" in gone.value.message

    run(scenario)


def test_overrun_records_nothing_of_the_body(run: Callable[..., None]) -> None:
    async def scenario(service: UploadService) -> None:
        upload = await _create(service, 2500)
        with pytest.raises(TusError) as caught:
            await _append(service, upload.id, 0, [b"a" * 1000, b"b" * 1000, b"c" * 1000])
        assert caught.value.status == 413
        stored = await service.rt.state.get(upload.id)
        assert (stored.offset, stored.status) == (0, ACTIVE)
        done = await _append(service, upload.id, 0, [b"a" * 2500])
        assert (done.offset, done.status) == (2500, DONE)

    run(scenario)


def test_head_publishes_an_upload_left_complete_but_active(run: Callable[..., None]) -> None:
    async def scenario(service: UploadService) -> None:
        upload = await _create(service, 4, sha256=hashlib.sha256(b"done").hexdigest().encode())
        writer = service.rt.store.writer(upload.id, 0)
        writer.write(b"done")
        writer.close()
        await service.rt.state.advance(upload.id, Advance(0, 4, None))  # a process died right after this
        current = await service.get(upload.id, "")
        assert current.status == ACTIVE
        settled = await service.head(upload.id, "")
        assert settled.status == DONE
        assert (await service.rt.state.get(upload.id)).status == DONE

    run(scenario)


def test_deferred_length_is_fixed_once(run: Callable[..., None]) -> None:
    async def scenario(service: UploadService) -> None:
        upload = await _create(service, None)
        assert await service.rt.state.set_length(upload.id, 10)
        assert await service.rt.state.set_length(upload.id, 10)
        assert not await service.rt.state.set_length(upload.id, 11)
        assert (await service.rt.state.get(upload.id)).length == 10

    run(scenario)


def test_offset_compare_and_set(run: Callable[..., None]) -> None:
    async def scenario(service: UploadService) -> None:
        upload = await _create(service, 10)
        await service.rt.state.advance(upload.id, Advance(0, 5, None))
        with pytest.raises(OffsetConflict):
            await service.rt.state.advance(upload.id, Advance(0, 7, None))  # a second writer that started at 0
        assert (await service.rt.state.get(upload.id)).offset == 5
        assert await service.rt.state.settle(upload.id, DONE)
        assert not await service.rt.state.settle(upload.id, FAILED)  # exactly once
        with pytest.raises(OffsetConflict):
            await service.rt.state.advance(upload.id, Advance(5, 10, None))  # no longer active

    run(scenario)


def test_lease_is_exclusive_and_a_holder_is_asked_to_let_go(run: Callable[..., None]) -> None:
    async def scenario(service: UploadService) -> None:
        upload = await _create(service, 10)
        held = await service.rt.locker.acquire(upload.id)
        asked = asyncio.Event()
        held.when_asked_to_release(asked.set)
        with pytest.raises(TusError) as caught:
            await service.rt.locker.acquire(upload.id)  # the holder ignores the request: 423 after the wait
        assert caught.value.status == 423
        assert asked.is_set()

        async def let_go_when_asked() -> None:
            await asked.wait()
            await held.release()

        asked.clear()
        helper = asyncio.create_task(let_go_when_asked())
        taken = await service.rt.locker.acquire(upload.id)
        await helper
        await taken.release()

    run(scenario)


def test_a_release_request_before_the_holder_listens_is_not_lost(run: Callable[..., None]) -> None:
    async def scenario(service: UploadService) -> None:
        upload = await _create(service, 10)
        held = await service.rt.locker.acquire(upload.id)
        with pytest.raises(TusError):
            await service.rt.locker.acquire(upload.id)
        called: list[bool] = []
        held.when_asked_to_release(lambda: called.append(True))
        assert called == [True]
        await held.release()

    run(scenario)


def test_metadata_stored_canonically(run: Callable[..., None]) -> None:
    async def scenario(service: UploadService) -> None:
        upload = await _create(service, 1, name=b"a.txt")
        assert protocol.parse_metadata((await service.rt.state.get(upload.id)).metadata) == {"name": b"a.txt"}

    run(scenario)


def test_running_digests_only_match_their_offset() -> None:
    digests = RunningDigests(capacity=2)
    h = hashlib.sha256(b"abc")
    digests.put("u1", 3, h)
    assert digests.take("u1", 4) is None  # bytes it did not see: rebuild instead
    digests.put("u1", 3, h)
    assert digests.take("u1", 3) is h
    assert digests.take("u1", 3) is None  # taken: its taker feeds it now
    for name in ("a", "b", "c"):
        digests.put(name, 1, hashlib.sha256(b"x"))
    assert digests.take("a", 1) is None  # least recently used went first


def test_releasing_a_lost_lease_leaves_its_successor_listening(run: Callable[..., None], redis_url: str) -> None:
    async def scenario(service: UploadService) -> None:
        upload = await _create(service, 10)
        old = await service.rt.locker.acquire(upload.id)
        await service.rt.locker.redis.delete(keys.lock(upload.id))  # its TTL ran out while it stalled
        successor = await service.rt.locker.acquire(upload.id)
        await old.release()
        asked: list[bool] = []
        successor.when_asked_to_release(lambda: asked.append(True))
        with pytest.raises(TusError):
            await service.rt.locker.acquire(upload.id)
        assert asked  # the successor still hears release requests
        await successor.release()

    run(scenario)


def test_a_lease_is_renewed_while_held_and_its_loss_stops_the_holder(redis_url: str) -> None:
    async def main() -> None:
        client = aioredis.from_url(redis_url)
        locker = RedisLocker(client, RedisStateStore(client), ttl_ms=300, wait_seconds=0.2)
        await locker.start()
        try:
            lease = await locker.acquire("a" * 32)
            stopped = asyncio.Event()
            lease.when_asked_to_release(stopped.set)
            await asyncio.sleep(1.0)  # over three TTLs: only renewal keeps it
            assert await client.get(keys.lock("a" * 32)) == lease.token.encode()
            assert not lease.lost
            await client.set(keys.lock("a" * 32), "someone else")  # e.g. it expired during a stall
            await asyncio.wait_for(stopped.wait(), 5)
            assert lease.lost
            await lease.release()
            assert await client.get(keys.lock("a" * 32)) == b"someone else"  # not ours to delete
        finally:
            await locker.stop()
            await client.aclose()

    asyncio.run(main())


def test_a_last_body_fixes_an_unknown_length_where_it_ends(run: Callable[..., None]) -> None:
    async def scenario(service: UploadService) -> None:
        upload = await _create(service, None)
        await _append(service, upload.id, 0, [b"a" * 3000])
        done = await _append(service, upload.id, 3000, [b"b" * 2500, b"c" * 10], ends_upload=True)
        assert (done.status, done.length, done.offset) == (DONE, 5510, 5510)
        assert done.sha256 == hashlib.sha256(b"a" * 3000 + b"b" * 2500 + b"c" * 10).hexdigest()

    run(scenario)


def test_a_last_body_that_stops_short_of_the_length_keeps_its_bytes_and_fails(run: Callable[..., None]) -> None:
    async def scenario(service: UploadService) -> None:
        upload = await _create(service, 100)
        with pytest.raises(TusError) as caught:
            await _append(service, upload.id, 0, [b"x" * 40], ends_upload=True)
        assert caught.value.code == "ERR_INVALID_UPLOAD_LENGTH" and caught.value.offset == 40
        stored = await service.rt.state.get(upload.id)
        assert (stored.status, stored.offset, stored.length) == (ACTIVE, 40, 100)
        done = await _append(service, upload.id, 40, [b"y" * 60], ends_upload=True)
        assert (done.status, done.offset) == (DONE, 100)

    run(scenario)


def test_a_mismatched_offset_error_carries_the_upload_offset(run: Callable[..., None]) -> None:
    async def scenario(service: UploadService) -> None:
        upload = await _create(service, 100)
        await _append(service, upload.id, 0, [b"x" * 30])
        with pytest.raises(TusError) as caught:
            await _append(service, upload.id, 10, [b"y"])
        assert (caught.value.status, caught.value.offset) == (409, 30)

    run(scenario)


def test_a_body_of_one_flush_is_written_by_the_ring_when_there_is_one(
    run: Callable[..., None], request: pytest.FixtureRequest
) -> None:
    """No executor writer for it; a longer body goes through the writer, and the whole file verifies."""
    through_ring = request.node.callspec.params["run"] == "io_uring"
    body = os.urandom(3000)

    async def scenario(service: UploadService) -> None:
        store = service.rt.store
        opened: list[tuple[Any, ...]] = []
        writer = store.writer
        store.writer = lambda *args: opened.append(args) or writer(*args)  # type: ignore[method-assign]
        upload = await _create(service, len(body), sha256=hashlib.sha256(body).hexdigest().encode())
        assert (await _append(service, upload.id, 0, [body[:600], body[600:1000]])).offset == 1000
        assert len(opened) == (0 if through_ring else 1)
        done = await _append(service, upload.id, 1000, [body[1000:]])  # two flushes of 1024 and the rest
        assert done.status == DONE and len(opened) == (1 if through_ring else 2)
        assert b"".join(store.read(upload.id, 0, len(body))) == body

    run(scenario)
