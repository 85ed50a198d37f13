"""Redis behind Sentinel: the master is killed in the middle of a PATCH, a Sentinel promotes the replica, and
the upload completes against the new master with the right SHA-256.

Replication is asynchronous, so the offset the new master knows may be older than the last one the old
master recorded: the client re-sends from there, and bytes past it are overwritten. Bytes may be re-sent,
never lost or mixed; the declared whole-file SHA-256 is the proof.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from faults import tus_ops
from faults.sentinel_group import SentinelGroup

from support import (
    OFFSET_TYPE,
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

MiB = 1024 * 1024


@pytest.fixture
def sentinels(tmp_path: Path) -> Iterator[SentinelGroup]:
    group = SentinelGroup(tmp_path / "ha")
    group.start()
    yield group
    group.stop()


def test_master_killed_mid_patch_fails_over_and_the_upload_completes(
        sentinels: SentinelGroup, server_factory: Callable[..., ServerProcess]) -> None:
    server = server_factory("--redis-url", sentinels.url)
    body = os.urandom(40 * MiB)
    digest = hashlib.sha256(body).hexdigest()
    url = create_upload(server.url, len(body), metadata=f"sha256 {b64(digest)}").headers["Location"]
    assert patch_upload(url, 0, body[:4 * MiB]).status_code == 204
    key = "tuskit:upload:" + url.rsplit("/", 1)[1]
    old_master = sentinels.master_port()

    sock = raw_connect(url)
    try:
        sock.sendall(request_head("PATCH", url, {**TUS, "Upload-Offset": str(4 * MiB), "Content-Type": OFFSET_TYPE,
                                                 "Content-Length": str(len(body) - 4 * MiB)}) + body[4 * MiB:24 * MiB])
        master = sentinels.master()
        poll(lambda: int(master.hget(key, "offset") or 0) > 4 * MiB, timeout=60, what="a checkpoint mid-PATCH")
        master.close()
        sentinels.kill_master()
        sock.sendall(body[24 * MiB:])
        read_response(sock, "PATCH")  # most often 503 (its offset could not be recorded), whatever it is
    finally:
        sock.close()

    # the client asks where to go on, until the new master answers (423: the killed master's lease of that
    # PATCH reached the replica and runs out)
    offset = int(tus_ops.head_when_back(url, retryable=(423, 503), timeout=60).headers["Upload-Offset"])
    assert sentinels.master_port() != old_master
    assert offset >= 4 * MiB  # acknowledged before the PATCH began, long replicated
    if offset < len(body):
        done = patch_upload(url, offset, body[offset:])
        assert done.status_code == 204, done.text  # the declared SHA-256 matched: nothing lost, nothing mixed
    assert stored_sha256(url) == digest
