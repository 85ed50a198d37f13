"""Two writers on one upload: the lease and the offset compare-and-set let exactly one write each byte."""

from __future__ import annotations

import hashlib
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import requests

from support import (
    OFFSET_TYPE,
    TUS,
    ServerProcess,
    b64,
    create_upload,
    patch_upload,
    raw_connect,
    request_head,
)

SIZE = 4 * 1024 * 1024


def _offset(url: str) -> int:
    return int(requests.head(url, headers=TUS, timeout=30).headers["Upload-Offset"])


def _patch_head(url: str, offset: int, length: int) -> bytes:
    return request_head("PATCH", url, {**TUS, "Upload-Offset": str(offset), "Content-Type": OFFSET_TYPE,
                                       "Content-Length": str(length)})


def _stall_after(url: str, body: bytes, sent: int, stored: Path) -> socket.socket:
    """A writer that announced the whole body, sent `sent` bytes and went quiet (as a dead network does),
    returned once the server has written at least 1 MiB of them to disk."""
    stale = raw_connect(url)
    stale.sendall(_patch_head(url, 0, len(body)) + body[:sent])
    deadline = time.monotonic() + 30
    while not (stored.exists() and stored.stat().st_size >= 1024 * 1024):
        assert time.monotonic() < deadline, "the server never wrote the stalled writer's bytes"
        time.sleep(0.01)
    return stale


def _stored(server: ServerProcess, url: str) -> Path:
    return server.data_dir / "uploads" / url.rsplit("/", 1)[1]


@pytest.mark.file_store  # waits until the stalled writer's bytes reach the file
def test_a_reconnecting_client_takes_over_from_its_own_half_open_connection(tus_server: ServerProcess) -> None:
    body = bytes(range(256)) * (SIZE // 256)
    url = create_upload(tus_server.url, SIZE, metadata=f"sha256 {b64(hashlib.sha256(body).hexdigest())}"
                        ).headers["Location"]
    sent = SIZE // 3
    stale = _stall_after(url, body, sent, _stored(tus_server, url))
    try:
        # the client reconnects and asks where to go on: the old writer is told to save and let go
        offset = _offset(url)
        assert 1024 * 1024 <= offset <= sent
        stale.settimeout(10)
        assert stale.recv(1024) == b""  # the old connection was closed by the server
        done = patch_upload(url, offset, body[offset:])
        assert done.status_code == 204 and done.headers["Upload-Offset"] == str(SIZE)
    finally:
        stale.close()
    assert requests.get(url, timeout=30).content == body


@pytest.mark.file_store  # waits until the stalled writer's bytes reach the file
def test_a_second_writer_with_a_stale_offset_gets_409(tus_server: ServerProcess) -> None:
    mine, theirs = b"a" * SIZE, b"b" * SIZE
    url = create_upload(tus_server.url, SIZE).headers["Location"]
    stale = _stall_after(url, mine, SIZE // 2, _stored(tus_server, url))
    try:
        # another writer believes the upload is still at 0: the first one's bytes were saved first
        second = patch_upload(url, 0, theirs)
        assert second.status_code == 409, second.text
    finally:
        stale.close()
    offset = _offset(url)
    assert 1024 * 1024 <= offset <= SIZE // 2
    assert patch_upload(url, offset, mine[offset:]).status_code == 204
    assert requests.get(url, timeout=30).content == mine


def _race(urls: dict[str, str], bodies: dict[str, bytes]) -> dict[str, int | str]:
    """PATCH every body at offset 0 at once (each to its URL); each writer's status, or the error that cut it off."""
    results: dict[str, int | str] = {}
    start = threading.Barrier(len(bodies))

    def write(name: str) -> None:
        start.wait()
        try:
            results[name] = patch_upload(urls[name], 0, bodies[name]).status_code
        except requests.ConnectionError as exc:  # a writer told to let go may be cut off mid-body
            results[name] = type(exc).__name__

    threads = [threading.Thread(target=write, args=(name,)) for name in bodies]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results


def _check_race_outcome(url: str, bodies: dict[str, bytes], results: dict[str, int | str]) -> None:
    """At most one writer finished; what was kept came from one writer only, and that writer can finish."""
    winners = [name for name, status in results.items() if status == 204]
    assert len(winners) <= 1, results
    assert all(status in (204, 409, 423, "ConnectionError") for status in results.values()), results
    offset = _offset(url)
    assert offset > 0  # whoever held the upload first kept its bytes, or the other wrote them all
    if winners:
        assert offset == SIZE and requests.get(url, timeout=30).content == bodies[winners[0]]
        return
    # finish with a's bytes: what was kept before `offset` must be one writer's, never a mix
    assert patch_upload(url, offset, bodies["a"][offset:]).status_code == 204
    kept = requests.get(url, timeout=30).content[:offset]
    assert kept in (bodies["a"][:offset], bodies["b"][:offset])


def test_two_writers_racing_from_the_same_offset_never_mix_bytes(tus_server: ServerProcess) -> None:
    bodies = {"a": b"a" * SIZE, "b": b"b" * SIZE}
    for _ in range(3):  # different interleavings each round
        url = create_upload(tus_server.url, SIZE).headers["Location"]
        results = _race({"a": url, "b": url}, bodies)
        _check_race_outcome(url, bodies, results)


def test_two_writers_racing_through_two_server_processes(
        server_factory: Callable[..., ServerProcess], redis_url: str, tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    one = server_factory("--redis-url", redis_url, data_dir=shared)
    two = server_factory("--redis-url", redis_url, data_dir=shared)
    bodies = {"a": b"a" * SIZE, "b": b"b" * SIZE}
    for _ in range(2):
        url = create_upload(one.url, SIZE).headers["Location"]
        results = _race({"a": url, "b": two.url + url.rsplit("/", 1)[1]}, bodies)
        _check_race_outcome(url, bodies, results)


@pytest.mark.file_store  # waits until the stalled writer's bytes reach the file
def test_delete_during_a_streaming_patch_terminates_the_upload(tus_server: ServerProcess) -> None:
    body = b"d" * SIZE
    url = create_upload(tus_server.url, SIZE).headers["Location"]
    stored = _stored(tus_server, url)
    stale = _stall_after(url, body, SIZE // 2, stored)
    try:
        deleted = requests.delete(url, headers=TUS, timeout=30)
        assert deleted.status_code == 204
        stale.settimeout(10)
        assert stale.recv(1024) == b""
    finally:
        stale.close()
    assert requests.head(url, headers=TUS, timeout=30).status_code == 410
    assert not stored.exists()
