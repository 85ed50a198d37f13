"""An offset is recorded in Redis only after the bytes it counts were synced to disk.

Otherwise a power loss (not a mere kill -9: the page cache survives that) could leave Redis counting
bytes the file never got, and a client without a declared sha256 would resume over a hole.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from tuskit.server.core.config import ServiceConfig
from tuskit.server.core.ports import Advance, BlobWriter
from tuskit.server.core.runtime import Runtime
from tuskit.server.core.service import UploadService
from tuskit.server.redis.events import EventBus
from tuskit.server.redis.locks import RedisLocker
from tuskit.server.redis.state import RedisStateStore
from tuskit.server.stores.files import FileStore

FLUSH = 1024
CHECKPOINT = 4096


class SyncRecordingWriter:
    """The real file writer, noting how far the file was written when it was last synced."""

    def __init__(self, writer: BlobWriter, upload_id: str, offset: int, synced: dict[str, int]) -> None:
        self.writer, self.upload_id, self.synced, self.end = writer, upload_id, synced, offset

    def write(self, data: bytes | memoryview) -> None:
        self.writer.write(data)
        self.end += len(data)

    def sync(self, partial: bool = False) -> int:
        durable = self.writer.sync(partial)
        self.synced[self.upload_id] = max(self.synced.get(self.upload_id, 0), durable)
        return durable

    def close(self) -> None:
        self.writer.close()


class SyncRecordingStore(FileStore):
    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.synced: dict[str, int] = {}

    def writer(self, upload_id: str, offset: int, *segment: Any) -> SyncRecordingWriter:  # type: ignore[override]
        return SyncRecordingWriter(super().writer(upload_id, offset, *segment), upload_id, offset, self.synced)


class AdvanceRecordingState(RedisStateStore):
    """The real Redis state store, noting for every recorded offset how much of the file was synced then."""

    def __init__(self, client: aioredis.Redis, store: SyncRecordingStore) -> None:
        super().__init__(client)
        self.store = store
        self.recorded: list[tuple[int, int]] = []  # (offset recorded, bytes synced at that moment)

    async def advance(self, upload_id: str, advance: Advance, *args: Any, **kwargs: Any) -> Any:
        self.recorded.append((advance.new, self.store.synced.get(upload_id, 0)))
        return await super().advance(upload_id, advance, *args, **kwargs)


@pytest.mark.parametrize(
    "pieces",
    [
        [b"x" * 1000] * 20,  # checkpoints inside the body, then its end
        [b"y" * FLUSH] * 3,  # the body ends exactly on a flush boundary: nothing is left for a last write
        [b"z" * 100],  # a small PATCH: one write, recorded at the end
    ],
)
def test_every_recorded_offset_was_synced_first(redis_url: str, tmp_path: Path, pieces: list[bytes]) -> None:
    async def main() -> list[tuple[int, int]]:
        client = aioredis.from_url(redis_url)
        store = SyncRecordingStore(tmp_path)
        state = AdvanceRecordingState(client, store)
        locker = RedisLocker(client, state, wait_seconds=0.5)  # its release-with-advance records through `state`
        await locker.start()
        with ThreadPoolExecutor(2) as executor:
            service = UploadService(Runtime(state, store, locker, EventBus(client), executor,
                                            ServiceConfig(flush_bytes=FLUSH, checkpoint_bytes=CHECKPOINT)))
            try:
                upload = await service.create(length=1 << 20, metadata={}, concat=None, owner="")
                session = await service.open_append(upload.id, "", 0, new_length=None, body_length=None,
                                                    checksum=None, checksum_in_trailer=False)
                for piece in pieces:
                    await session.write(piece)
                finished = await session.finish()
                assert finished.offset == sum(len(p) for p in pieces)
            finally:
                await service.drain()
                await locker.stop()
                await client.aclose()
        return state.recorded

    recorded = asyncio.run(main())
    assert recorded, "the PATCH recorded no offset"
    assert recorded[-1][0] == sum(len(p) for p in pieces)
    for offset, synced in recorded:
        assert synced >= offset, f"offset {offset} recorded with only {synced} bytes synced"
