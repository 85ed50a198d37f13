"""Storage under hostile or unlucky use: amplification by concatenation, uploads kept alive by slow
progress, a full disk under the embedded redis, records and directories that would never go.

Real server processes, a real Redis, real files; a small tmpfs (mounted here, skipped where that is not
allowed) stands in for a full disk.
"""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
import requests
from PIL import Image
from tus_calls import metric

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


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """An 8 MiB tmpfs, skipped where mounting is impossible (not root, no CAP_SYS_ADMIN)."""
    mount_point = tmp_path / "small"
    mount_point.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount_point)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {mounted.stderr.strip()}")
    yield mount_point
    subprocess.run(["umount", "-l", str(mount_point)], check=False)


def _partial(server: ServerProcess, length: int | None, data: bytes | None = None) -> str:
    created = create_upload(server.url, length, headers={"Upload-Concat": "partial"}, data=data)
    assert created.status_code == 201, created.text
    return str(created.headers["Location"])


def _final(server: ServerProcess, parts: list[str]) -> requests.Response:
    return requests.post(server.url, headers={**TUS, "Upload-Concat": "final;" + " ".join(parts)}, timeout=60)


def _upload_id(url: str) -> str:
    return url.rsplit("/", 1)[1]


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
    poll(lambda: client.zcard("tuskit:expiry") == 0, what="expiry index empty", timeout=60)
    swept = [line for line in sweeper.output if "expired" in line and "unfinished uploads" in line]
    assert len(swept) == 1 and f"expired {count} " in swept[0], swept
    assert list((shared / "uploads").iterdir()) == []


# ---- records and directories that must go ----------------------------------------------------------

def test_a_failed_verification_leaves_a_small_tombstone_that_expires(
    redis_url: str, server_factory: Callable[..., ServerProcess]
) -> None:
    srv = server_factory("--redis-url", redis_url)
    note = b64(os.urandom(24_000))  # a client may send up to the header limit of metadata
    wrong = b64("0" * 64)
    created = create_upload(srv.url, 3, metadata=f"note {note},sha256 {wrong}")
    url = created.headers["Location"]
    assert patch_upload(url, 0, b"abc").status_code == 460
    client = redis.Redis.from_url(redis_url)
    key = f"tuskit:upload:{_upload_id(url)}"
    assert 0 < client.ttl(key) <= 7 * 86400
    assert client.hget(key, "metadata") is None
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
