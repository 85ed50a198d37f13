"""Small appends through io_uring (`stores.uring`): the bytes land where asked, the file store refuses a
published blob, the buffers outlive their callers, and more appends than the ring holds all complete."""

from __future__ import annotations

import asyncio
import errno
import gc
import hashlib
import resource
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest

from tuskit.server.core.ports import OffsetConflict
from tuskit.server.stores.files import PUBLISHED_MODE, FileStore
from tuskit.server.stores.uring import Ring

from support import ServerProcess, b64, create_upload, patch_upload, stored_sha256

T = TypeVar("T")


def with_ring(scenario: Callable[[Ring], Awaitable[T]], entries: int = 256) -> T:
    """Run `scenario` with a ring on a fresh event loop, and close the ring after it."""
    async def main() -> T:
        ring = Ring.start(entries)
        if ring is None:
            pytest.skip("this kernel or sandbox refuses io_uring")
        try:
            return await scenario(ring)
        finally:
            await ring.aclose()

    return asyncio.run(main())


def _pattern(seed: int, size: int) -> bytes:
    return hashlib.shake_256(seed.to_bytes(4, "big")).digest(size)


def test_blocks_land_at_their_position_and_the_end_comes_back(tmp_path: Path) -> None:
    path = tmp_path / "blob"
    path.write_bytes(b"k" * 10 + b"left by a crash past the offset")

    async def scenario(ring: Ring) -> int:
        return await ring.append(path, 10, [b"head", bytearray(b"-piece-"), memoryview(b"tail")], OSError())

    assert with_ring(scenario) == 25
    assert path.read_bytes() == b"k" * 10 + b"head-piece-tail" + b" past the offset"


def test_a_read_only_file_fails_with_the_callers_error_and_keeps_its_bytes(tmp_path: Path) -> None:
    path = tmp_path / "blob"
    path.write_bytes(b"published")
    path.chmod(PUBLISHED_MODE)  # the server runs as root in CI: open() alone would not refuse it
    refused = OffsetConflict("published")

    async def scenario(ring: Ring) -> None:
        with pytest.raises(OffsetConflict) as caught:
            await ring.append(path, 0, [b"overwritten"], refused)
        assert caught.value is refused

    with_ring(scenario)
    assert path.read_bytes() == b"published"


def test_a_short_write_is_continued_and_its_failure_reported(tmp_path: Path) -> None:
    """A file size limit cuts the write short at 100,000 bytes; the rest is retried and refused (EFBIG)."""
    path = tmp_path / "blob"
    path.touch()

    async def scenario(ring: Ring) -> None:
        with pytest.raises(OSError) as caught:
            await ring.append(path, 60_000, [b"a" * 30_000, bytearray(b"b" * 30_000)], OSError())
        assert caught.value.errno == errno.EFBIG

    limit = resource.getrlimit(resource.RLIMIT_FSIZE)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # its default ends the process
    resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, limit[1]))
    try:
        with_ring(scenario)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, limit)
        signal.signal(signal.SIGXFSZ, signal.SIG_DFL)
    assert path.read_bytes()[60_000:] == b"a" * 30_000 + b"b" * 10_000  # as far as the limit let it


def test_a_missing_file_is_an_os_error_naming_it(tmp_path: Path) -> None:
    async def scenario(ring: Ring) -> None:
        with pytest.raises(OSError) as caught:
            await ring.append(tmp_path / "gone", 0, [b"x"], OSError())
        assert caught.value.errno == errno.ENOENT and "gone" in str(caught.value)

    with_ring(scenario)


def test_buffers_the_caller_dropped_are_kept_until_the_kernel_wrote_them(tmp_path: Path) -> None:
    path = tmp_path / "blob"
    path.touch()

    async def scenario(ring: Ring) -> None:
        pending = [ring.append(path, i * 65536, [bytearray(_pattern(i, 65536))], OSError()) for i in range(16)]
        gc.collect()  # nothing of ours refers to the bytearrays any more
        await asyncio.gather(*pending)

    with_ring(scenario)
    assert path.read_bytes() == b"".join(_pattern(i, 65536) for i in range(16))


def test_more_appends_than_the_ring_holds_all_complete_in_place(tmp_path: Path) -> None:
    """A ring of 4 entries (each append takes 4 in turn: open, write, sync, close) and 200 appends at once."""
    path = tmp_path / "blob"
    path.touch()

    async def scenario(ring: Ring) -> list[int]:
        assert ring.capacity == 4
        return await asyncio.gather(*(ring.append(path, i * 1000, [_pattern(i, 1000)], OSError())
                                      for i in range(200)))

    ends = with_ring(scenario, entries=4)
    assert ends == [(i + 1) * 1000 for i in range(200)]
    assert path.read_bytes() == b"".join(_pattern(i, 1000) for i in range(200))


def test_closing_the_ring_waits_for_appends_in_flight(tmp_path: Path) -> None:
    path = tmp_path / "blob"
    path.touch()

    async def main() -> asyncio.Future[int]:
        ring = Ring.start()
        if ring is None:
            pytest.skip("this kernel or sandbox refuses io_uring")
        appended = ring.append(path, 0, [_pattern(1, 1 << 20)], OSError())
        await ring.aclose()
        return appended

    appended = asyncio.run(main())
    assert appended.done() and appended.result() == 1 << 20
    assert path.read_bytes() == _pattern(1, 1 << 20)


def test_the_file_store_appends_through_its_ring_only_to_the_first_segment(tmp_path: Path) -> None:
    """A later segment is a new file whose directory entry must be synced too: the writer's job."""
    async def scenario(ring: Ring) -> None:
        store = FileStore(tmp_path, ring)
        store.create("a" * 32)
        direct = store.direct_append("a" * 32, 0, "", 0, [b"first"])
        assert direct is not None and await direct == 5
        assert store.direct_append("a" * 32, 5, "token", 5, [b"later"]) is None
        assert FileStore(tmp_path).direct_append("a" * 32, 5, "", 0, [b"later"]) is None  # no ring

    with_ring(scenario)
    assert (tmp_path / "uploads" / ("a" * 32)).read_bytes() == b"first"


@pytest.mark.parametrize("flags", [(), ("--no-io-uring",)], ids=["io_uring", "threads"])
def test_small_patches_to_a_server_add_up_to_the_declared_file(
    server_factory: Callable[..., ServerProcess], flags: tuple[str, ...]
) -> None:
    """Creation-with-upload, then 64 KiB PATCHes (the ring's size) and a last odd one, with a declared
    sha256 the server checks before it publishes."""
    server = server_factory(*flags)
    body = _pattern(7, 5 * 65536 + 99)
    digest = hashlib.sha256(body).hexdigest()
    created = create_upload(server.url, len(body), metadata="sha256 " + b64(digest), data=body[:65536])
    assert created.status_code == 201 and created.headers["Upload-Offset"] == "65536"
    offset = 65536
    while offset < len(body):
        sent = patch_upload(created.headers["Location"], offset, body[offset:offset + 65536])
        assert sent.status_code == 204, sent.text
        offset = int(sent.headers["Upload-Offset"])
    assert offset == len(body)
    assert stored_sha256(created.headers["Location"]) == digest
