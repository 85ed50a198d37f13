"""Storage under hostile or unlucky use: amplification by concatenation, uploads kept alive by slow
progress, a full disk under the embedded redis, records and directories that would never go.

Real server processes, a real Redis, real files; a small tmpfs (mounted here, skipped where that is not
allowed) stands in for a full disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import os
import signal
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import redis
import redis.asyncio as aioredis
import requests
from PIL import Image
from storage import Storage
from tus_calls import metric

from tuskit.errors import TusError
from tuskit.server.core.config import ServiceConfig
from tuskit.server.core.model import DONE
from tuskit.server.core.runtime import Runtime
from tuskit.server.core.service import UploadService
from tuskit.server.redis import keys
from tuskit.server.redis.events import EventBus
from tuskit.server.redis.locks import RedisLocker
from tuskit.server.redis.state import RedisStateStore
from tuskit.server.stores.files import FileStore

from support import (
    TUS,
    ServerProcess,
    b64,
    create_upload,
    patch_upload,
    poll,
    raw_connect,
    read_response,
    request_head,
    stored_sha256,
)

MIB = 1024 * 1024


def _partial(server: ServerProcess, length: int | None, data: bytes | None = None) -> str:
    created = create_upload(server.url, length, headers={"Upload-Concat": "partial"}, data=data)
    assert created.status_code == 201, created.text
    return str(created.headers["Location"])


def _final(server: ServerProcess, parts: list[str]) -> requests.Response:
    return requests.post(server.url, headers={**TUS, "Upload-Concat": "final;" + " ".join(parts)}, timeout=60)


def _upload_id(url: str) -> str:
    return url.rsplit("/", 1)[1]


# ---- concatenation ---------------------------------------------------------------------------------

def test_a_final_lists_each_partial_once(tus_server: ServerProcess, storage: Storage) -> None:
    part = _partial(tus_server, MIB, os.urandom(MIB))
    before = storage.keys(tus_server)
    repeated = _final(tus_server, [part] * 3)
    assert repeated.status_code == 400 and "more than once" in repeated.text
    assert "Location" not in repeated.headers
    assert storage.added(tus_server, before) == set()  # nothing created, nothing copied


def test_a_final_names_at_most_a_hundred_partials(tus_server: ServerProcess) -> None:
    """The final's HEAD echoes every partial's URL in one header: past ~8 KiB proxies and clients refuse it."""
    many = [tus_server.url + os.urandom(16).hex() for _ in range(101)]
    response = _final(tus_server, many)
    assert response.status_code == 400 and "at most 100" in response.text


def test_a_final_past_max_size_is_never_copied(server_factory: Callable[..., ServerProcess], storage: Storage) -> None:
    """Partials of deferred length: the total is known only when both are done, and it is too big."""
    srv = server_factory("--max-size", "3MiB")
    parts = [_partial(srv, None), _partial(srv, None)]
    final = _final(srv, parts)
    assert final.status_code == 201
    url = final.headers["Location"]
    for part in parts:
        done = patch_upload(part, 0, os.urandom(2 * MIB), {"Upload-Length": str(2 * MIB)})
        assert done.status_code == 204, done.text
    status = poll(lambda: (code := requests.head(url, headers=TUS, timeout=30).status_code) != 200 and code,
                  what="the final to end")
    assert status == 410
    assert "Tus-Max-Size" in requests.get(url, timeout=30).text
    # the tombstone comes first, then the store's delete (several requests on S3)
    poll(lambda: not storage.holds(srv, _upload_id(url)), what="the final's blob deleted")


@pytest.mark.file_store  # free space is the file store's bound
def test_a_final_larger_than_the_free_space_is_413_before_anything_is_copied(
    small_disk: Path, redis_url: str, server_factory: Callable[..., ServerProcess]
) -> None:
    srv = server_factory("--redis-url", redis_url, data_dir=small_disk)
    parts = [_partial(srv, 3 * MIB, os.urandom(3 * MIB)) for _ in range(2)]
    uploads = small_disk / "uploads"
    before = set(uploads.iterdir())
    free = os.statvfs(small_disk).f_bavail
    response = _final(srv, parts)
    assert response.status_code == 413, response.text
    assert "free" in response.text
    assert set(uploads.iterdir()) == before
    assert os.statvfs(small_disk).f_bavail == free


# ---- expiry ----------------------------------------------------------------------------------------

def test_a_slow_patch_that_keeps_sending_outlives_its_expiry(server_factory: Callable[..., ServerProcess]) -> None:
    srv = server_factory("--expire-after", "2s", "--sweep-interval", "0.25s")
    piece, pieces = 1024, 12
    body = os.urandom(piece * pieces)
    url = create_upload(srv.url, len(body)).headers["Location"]
    started = time.monotonic()
    with raw_connect(url) as sock:
        sock.sendall(request_head("PATCH", url, {**TUS, "Upload-Offset": "0", "Content-Length": str(len(body)),
                                                 "Content-Type": "application/offset+octet-stream"}))
        for i in range(pieces):  # a client on a bad line: 1 KiB every half second, 6 s in all
            sock.sendall(body[i * piece:(i + 1) * piece])
            time.sleep(0.5)
        answer = read_response(sock, "PATCH")
    assert time.monotonic() - started > 3 * 2  # it ran well past --expire-after
    assert answer.status == 204, answer.body
    assert answer.headers["Upload-Offset"] == str(len(body))
    assert stored_sha256(url) == hashlib.sha256(body).hexdigest()


@pytest.mark.file_store  # batching is the state store's; S3's sweeping is in tests/server/test_sweeper.py
def test_the_sweeper_removes_every_expired_upload_in_one_pass(
    redis_url: str, server_factory: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    shared = tmp_path / "shared"
    maker = server_factory("--redis-url", redis_url, "--expire-after", "1s", "--sweep-interval", "1h", data_dir=shared)
    count = 1100
    with requests.Session() as session:
        for _ in range(count):
            assert session.post(maker.url, headers={**TUS, "Upload-Length": "10"}, timeout=10).status_code == 201
    maker.stop()
    client = redis.Redis.from_url(redis_url)
    poll(lambda: client.zcount("tuskit:expiry", 0, time.time()) == count, what="every upload expired")
    sweeper = server_factory("--redis-url", redis_url, "--sweep-interval", "0.5s", data_dir=shared)
    first = poll(lambda: next((line for line in sweeper.output if "unfinished uploads" in line), None),
                 what="the first sweep", timeout=60)
    assert f"expired {count} unfinished uploads" in first
    assert client.zcard("tuskit:expiry") == 0
    assert list((shared / "uploads").iterdir()) == []


# ---- disk full -------------------------------------------------------------------------------------

def test_a_full_disk_under_the_embedded_redis_answers_507_not_503(
    small_disk: Path, server_factory: Callable[..., ServerProcess]
) -> None:
    """The embedded redis keeps its append-only file in the data dir: on a full disk it refuses writes
    with MISCONF, which is a full disk, not an outage."""
    srv = server_factory(data_dir=small_disk)
    filler = small_disk / "filler"
    with filler.open("wb") as f, contextlib.suppress(OSError):
        while True:
            f.write(b"\0" * 65536)
            f.flush()
    statuses = []
    for _ in range(50):
        response = requests.post(srv.url, headers={**TUS, "Upload-Length": "10"}, timeout=10)
        statuses.append(response.status_code)
        if response.status_code != 201:
            break
    assert statuses[-1] == 507, (statuses, response.text)
    filler.unlink()
    poll(lambda: requests.post(srv.url, headers={**TUS, "Upload-Length": "10"}, timeout=10).status_code == 201,
         what="uploads accepted again once space is free")


# ---- a writer that lost its lease -------------------------------------------------------------------

@pytest.mark.file_store  # reads the file; S3's segments: test_s3_store.py
def test_a_writer_paused_past_its_lease_never_writes_again(
    redis_url: str, server_factory: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    """Server A is stopped (SIGSTOP: a GC pause, a swapped-out process) in the middle of a PATCH, with
    bytes written and more buffered; its lease expires and server B takes the upload to its end. When A
    runs again it must not write a byte: B's upload is published and is what anyone downloads."""
    shared = tmp_path / "shared"
    a = server_factory("--redis-url", redis_url, "--network-timeout", "300s", data_dir=shared)
    b = server_factory("--redis-url", redis_url, data_dir=shared)
    length = 6 * MIB
    real, stale = os.urandom(length), b"\xaa" * length
    url = create_upload(a.url, length).headers["Location"]
    upload_id = _upload_id(url)
    first = shared / "uploads" / upload_id
    client = redis.Redis.from_url(redis_url)

    old = raw_connect(url, timeout=120)
    old.sendall(request_head("PATCH", url, {**TUS, "Upload-Offset": "0", "Content-Length": str(length),
                                            "Content-Type": "application/offset+octet-stream"}))
    old.sendall(stale[:3 * MIB + MIB // 2])
    # A writes whenever 1 MiB has gathered, so some of what it got is written and the rest is buffered
    poll(lambda: first.stat().st_size >= 2 * MIB, what="A's first bytes on disk")
    a.proc.send_signal(signal.SIGSTOP)
    try:
        old.sendall(stale[3 * MIB + MIB // 2:5 * MIB])  # waits in the socket for A to wake up
        poll(lambda: not client.exists(f"tuskit:lock:{upload_id}"), what="A's lease to expire", timeout=60)
        on_b = b.url + upload_id
        offset = int(requests.head(on_b, headers=TUS, timeout=30).headers["Upload-Offset"])
        assert offset == 0  # A recorded nothing: its bytes are not counted
        done = patch_upload(on_b, 0, real)
        assert done.status_code == 204, done.text
    finally:
        a.proc.send_signal(signal.SIGCONT)
    with contextlib.suppress(OSError):
        answer = read_response(old, "PATCH")
        assert answer.status >= 400
    old.close()
    poll(lambda: any("lost the lease" in line or "took over" in line for line in a.output), what="A to give up")
    head = requests.head(url, headers=TUS, timeout=30)
    assert head.headers["Upload-Offset"] == str(length)
    assert stored_sha256(url) == stored_sha256(on_b) == hashlib.sha256(real).hexdigest()
    assert (shared / "uploads" / upload_id).read_bytes() == real


def test_a_writer_that_never_learns_it_lost_its_lease_writes_nothing_anyone_reads(
    redis_url: str, tmp_path: Path
) -> None:
    """The case no check can catch: a writer whose lease expired (its process was paused) and who has
    not noticed yet, so it writes on. Two services share one Redis and one data dir, as two processes
    would; the lease's expiry is played by deleting its key."""
    async def main() -> None:
        client = aioredis.from_url(redis_url)
        executor = ThreadPoolExecutor(4)

        def process() -> UploadService:
            state = RedisStateStore(client)
            locker = RedisLocker(client, state, ttl_ms=600_000, wait_seconds=0.5)  # no renewal in this test
            return UploadService(Runtime(state, FileStore(tmp_path), locker, EventBus(client), executor,
                                         ServiceConfig(flush_bytes=1024, checkpoint_bytes=1 << 30)))

        a, b = process(), process()
        upload = await a.create(length=8192, metadata={}, concat=None, owner="")
        stale = await a.open_append(upload.id, "", 0, new_length=None, body_length=None, checksum=None,
                                    checksum_in_trailer=False)
        await stale.write(b"x" * 2048)
        await client.delete(keys.lock(upload.id))  # its lease expired while it was paused
        real = os.urandom(8192)
        fresh = await b.open_append(upload.id, "", 0, new_length=None, body_length=None, checksum=None,
                                    checksum_in_trailer=False)
        await fresh.write(real[:6000])
        assert (await fresh.finish()).offset == 6000
        await stale.write(b"x" * 4096)  # it wakes up and writes on, knowing nothing, over recorded bytes
        with pytest.raises(TusError):
            await stale.finish()
        last = await b.open_append(upload.id, "", 6000, new_length=None, body_length=None, checksum=None,
                                   checksum_in_trailer=False)
        await last.write(real[6000:])
        assert (await last.finish()).status == DONE
        assert b"".join(b.rt.store.read(upload.id, 0, 8192)) == real
        await client.aclose()
        executor.shutdown()

    asyncio.run(main())


# ---- records and directories that must go ----------------------------------------------------------

def test_a_failed_verification_leaves_a_small_tombstone_that_expires(
    redis_url: str, server_factory: Callable[..., ServerProcess]
) -> None:
    srv = server_factory("--redis-url", redis_url)
    note = b64(os.urandom(24_000))  # a client may send up to the header limit of metadata
    wrong = b64("0" * 64)
    created = create_upload(srv.url, 3, metadata=f"filename {b64('a.txt')},note {note},sha256 {wrong}")
    url = created.headers["Location"]
    assert patch_upload(url, 0, b"abc").status_code == 460
    client = redis.Redis.from_url(redis_url)
    key = f"tuskit:upload:{_upload_id(url)}"
    assert 0 < client.ttl(key) <= 7 * 86400
    # only the name survives, so a listing can still say which file failed
    assert client.hget(key, "metadata") == f"filename {b64('a.txt')}".encode()
    assert client.memory_usage(key) < 2048
    gone = requests.head(url, headers=TUS, timeout=10)
    assert gone.status_code == 410


def test_finals_of_sets_go_with_their_final(redis_url: str, server_factory: Callable[..., ServerProcess]) -> None:
    srv = server_factory("--redis-url", redis_url)
    client = redis.Redis.from_url(redis_url)
    done = [_partial(srv, 2, b"ab"), _partial(srv, 2)]
    merged = _final(srv, done).headers["Location"]
    assert patch_upload(done[1], 0, b"cd").status_code == 204
    poll(lambda: requests.head(merged, headers=TUS, timeout=10).headers.get("Upload-Offset") == "4")
    waiting = [_partial(srv, 2, b"ef"), _partial(srv, 2)]
    terminated = _final(srv, waiting).headers["Location"]
    assert requests.delete(terminated, headers=TUS, timeout=10).status_code == 204
    assert list(client.scan_iter("tuskit:finals-of:*")) == []


def _slow_png() -> bytes:
    """A small file that takes a while to decode, so its analysis outlives a DELETE sent right after."""
    buf = io.BytesIO()
    Image.new("RGB", (5000, 5000), "red").save(buf, "PNG")
    return buf.getvalue()


def test_delete_right_after_the_last_patch_leaves_no_derived_directory(
    server_factory: Callable[..., ServerProcess]
) -> None:
    srv = server_factory()
    data = _slow_png()
    url = create_upload(srv.url, len(data)).headers["Location"]
    assert patch_upload(url, 0, data).status_code == 204
    assert requests.delete(url, headers=TUS, timeout=10).status_code == 204
    poll(lambda: metric(srv.origin, "tuskit_uploads_processed_total") >= 1
         or any("post-processing" in line for line in srv.output), what="the analysis to end")
    assert not (srv.data_dir / "derived" / _upload_id(url)).exists()
