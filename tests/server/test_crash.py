"""Failures mid-upload: a client that drops, a server and its Redis killed with -9. Nothing acknowledged is lost."""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis
import requests
from storage import Storage

from tuskit.checksums import sha256_file

from support import (
    OFFSET_TYPE,
    TUS,
    ServerProcess,
    b64,
    create_upload,
    patch_upload,
    raw_connect,
    request_head,
    stored_sha256,
)

MiB = 1024 * 1024


def _body(size: int) -> bytes:
    block = os.urandom(MiB)
    return b"".join(i.to_bytes(8, "big") + block[8:] for i in range(size // MiB))


def _declared(body: bytes) -> str:
    return f"sha256 {b64(hashlib.sha256(body).hexdigest())}"


def _stored(server: ServerProcess, url: str) -> Path:
    return server.data_dir / "uploads" / url.rsplit("/", 1)[1]


def _offset(url: str) -> int:
    head = requests.head(url, headers=TUS, timeout=30)
    assert head.status_code == 200, head.text
    return int(head.headers["Upload-Offset"])


def _wait_for_size(path: Path, size: int) -> None:
    deadline = time.monotonic() + 60
    while not (path.exists() and path.stat().st_size >= size):
        assert time.monotonic() < deadline, f"{path} never reached {size} bytes"
        time.sleep(0.01)


def _start_patch(url: str, body: bytes, sent: int) -> socket.socket:
    sock = raw_connect(url)
    sock.sendall(request_head("PATCH", url, {**TUS, "Upload-Offset": "0", "Content-Type": OFFSET_TYPE,
                                             "Content-Length": str(len(body))}) + body[:sent])
    return sock


@pytest.mark.file_store
def test_client_dropping_mid_patch_keeps_every_byte_it_sent(tus_server: ServerProcess) -> None:
    body = _body(6 * MiB)
    url = create_upload(tus_server.url, len(body), metadata=_declared(body)).headers["Location"]
    sent = 3 * MiB + 12345
    sock = _start_patch(url, body, sent)
    sock.close()
    # the server reads to the end of what was sent, writes it out and records it (a HEAD sent sooner would
    # take over from the writer at once, and the client would simply resume from an earlier offset)
    _wait_for_size(_stored(tus_server, url), sent)
    assert _offset(url) == sent
    done = patch_upload(url, sent, body[sent:])
    assert done.status_code == 204 and done.headers["Upload-Offset"] == str(len(body))
    assert stored_sha256(url) == hashlib.sha256(body).hexdigest()


@pytest.mark.file_store  # on S3: tests/server/test_s3_store.py, where the resume is on another host
def test_kill_9_of_server_and_redis_mid_patch_then_resume(server_factory: Callable[..., ServerProcess],
                                                         tmp_path: Path) -> None:
    data_dir = tmp_path / "crash"
    body = _body(48 * MiB)
    server = server_factory(data_dir=data_dir)
    url = create_upload(server.url, len(body), metadata=_declared(body)).headers["Location"]
    sock = _start_patch(url, body, 30 * MiB)
    try:
        _wait_for_size(_stored(server, url), 26 * MiB)  # past three offset checkpoints (every 8 MiB)
        redis_pid = int((data_dir / "redis" / "redis.pid").read_text())
        os.kill(redis_pid, signal.SIGKILL)
        server.kill()
    finally:
        sock.close()

    restarted = server_factory(data_dir=data_dir)  # same data dir: stale socket, pid file and leases
    url = restarted.url + url.rsplit("/", 1)[1]
    offset = _offset(url)
    assert 8 * MiB <= offset <= 30 * MiB  # a checkpoint survived; the offset never ran ahead of the bytes
    with open(_stored(restarted, url), "rb") as f:
        assert f.read(offset) == body[:offset]
    done = patch_upload(url, offset, body[offset:])
    assert done.status_code == 204, done.text
    assert done.headers["Upload-Offset"] == str(len(body))
    assert sha256_file(_stored(restarted, url)) == hashlib.sha256(body).hexdigest()
    assert stored_sha256(url) == hashlib.sha256(body).hexdigest()


def test_upload_recorded_complete_but_never_published_is_finished_by_head_or_patch(
        server_factory: Callable[..., ServerProcess], redis_url: str, storage: Storage) -> None:
    """A process died after recording the last offset and before publishing: clients that see
    offset == length stop sending, so the next HEAD must publish (and verify) the upload."""
    server = server_factory("--redis-url", redis_url)
    good, bad = b"all the bytes arrived", b"these bytes do not match"
    urls = []
    for body in (good, bad, good):
        url = create_upload(server.url, len(body), metadata=_declared(good)).headers["Location"]
        upload_id = url.rsplit("/", 1)[1]
        # what the dead process left behind: every byte stored and the offset recorded, status still active
        storage.leave_bytes(server, upload_id, body)
        client = redis.Redis.from_url(redis_url)
        client.hset("tuskit:upload:" + upload_id, "offset", len(body))
        client.close()
        urls.append(url)

    head = requests.head(urls[0], headers=TUS, timeout=30)
    assert head.status_code == 200 and head.headers["Upload-Offset"] == str(len(good))
    assert "Upload-Expires" not in head.headers  # finished
    assert requests.get(urls[0], timeout=30).content == good

    assert requests.head(urls[1], headers=TUS, timeout=30).status_code == 460
    assert requests.get(urls[1], timeout=30).status_code == 410

    # a client that re-sends its (empty) last PATCH finishes the job as well
    again = patch_upload(urls[2], len(good), b"")
    assert again.status_code == 204 and again.headers["Upload-Offset"] == str(len(good))
    assert requests.get(urls[2], timeout=30).content == good
