"""Network faults between a client and tuskit, played by the fault proxy: cut, stall, reconnect.

In each, the bytes that reached the server are kept, HEAD says how many, and resuming from there gives
a file whose SHA-256 is the source's.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Callable

import pytest
import redis
from faults import tus_ops
from faults.fault_proxy import FaultProxy
from faults.tus_ops import Source
from tus_calls import poll

from tuskit.server.redis import keys

from support import RawResponse, ServerProcess, b64, patch_upload, raw_connect, stored_sha256

MIB = 1024 * 1024


def _proxy_for(server: ServerProcess) -> FaultProxy:
    host, port = server.origin.removeprefix("http://").rsplit(":", 1)
    return FaultProxy(host, int(port))


def _stored_bytes(server: ServerProcess, upload_url: str) -> int:
    """Bytes on disk for an upload (FileStore keeps `<data dir>/uploads/<id>`): proof that they arrived."""
    path = server.data_dir / "uploads" / upload_url.rsplit("/", 1)[1]
    return path.stat().st_size if path.exists() else 0


def _send_through(proxy: FaultProxy, upload_url: str, source: Source,
                  headers: dict[str, str] | None = None) -> RawResponse | None:
    """Send a PATCH of the whole body through the proxy; returns what came back (None if nothing)."""
    sock = raw_connect(proxy.url(upload_url))
    try:
        with contextlib.suppress(OSError):  # the fault may break the connection while we are still sending
            sock.sendall(tus_ops.patch_head(upload_url, 0, len(source.body), headers) + source.body)
        return tus_ops.answer(sock)
    finally:
        sock.close()


@pytest.mark.parametrize("with_checksum", [False, True], ids=["plain", "upload-checksum"])
def test_cut_mid_patch_keeps_the_bytes_that_arrived(
    server_factory: Callable[..., ServerProcess], with_checksum: bool
) -> None:
    """Without a chunk checksum every byte that arrived is kept; with one, the cut chunk cannot be verified,
    so none of it is (the offset stays where it was), and the client sends it again."""
    server = server_factory()
    source = Source(os.urandom(3 * MIB))
    url = tus_ops.create(server.url, source)
    checksum = {"Upload-Checksum": "sha1 " + b64(hashlib.sha1(source.body).digest())} if with_checksum else {}
    head_len = len(tus_ops.patch_head(url, 0, len(source.body), checksum))
    arrived = 1_234_567
    with _proxy_for(server) as proxy:
        proxy.fail_next("cut", after=head_len + arrived)
        response = _send_through(proxy, url, source, checksum)
        assert response is None or response.status != 204  # the client never got a success
        upload_id = url.rsplit("/", 1)[1]
        poll(lambda: any(f"upload {upload_id}: client disconnected" in line for line in server.output))
        assert proxy.connections[0].forwarded == head_len + arrived

    assert tus_ops.offset(url) == (0 if with_checksum else arrived)
    done = tus_ops.resume(url, source)
    assert done.status_code == 204 and done.headers["Upload-Offset"] == str(len(source.body))
    assert stored_sha256(url) == source.sha256


def test_stalled_patch_is_closed_by_the_network_timeout_and_keeps_its_bytes(
    server_factory: Callable[..., ServerProcess]
) -> None:
    server = server_factory("--network-timeout", "2s")
    source = Source(os.urandom(3 * MIB))
    url = tus_ops.create(server.url, source)
    head_len = len(tus_ops.patch_head(url, 0, len(source.body)))
    arrived = 1_500_000
    with _proxy_for(server) as proxy:
        proxy.fail_next("stall", after=head_len + arrived)
        response = _send_through(proxy, url, source)  # returns once the server hangs up
        conn = proxy.connections[0]
        assert conn.faulted.is_set() and conn.closed_by_server.is_set()
        assert response is None or response.status != 204

    assert tus_ops.offset(url) == arrived
    assert tus_ops.resume(url, source).status_code == 204
    assert stored_sha256(url) == source.sha256


def test_a_stalled_patch_has_every_byte_it_sent_recorded_while_it_waits(
    server_factory: Callable[..., ServerProcess]
) -> None:
    """A client that stalls mid-body (for good, or while Redis fails over) finds all it sent recorded once it
    has been quiet for a moment, not only up to the last checkpoint (8 MiB; on S3, the last part that
    landed); its connection stays open and the body goes on from there."""
    server = server_factory("--network-timeout", "300s")
    source = Source(os.urandom(24 * MIB))
    url = tus_ops.create(server.url, source)
    state_key = keys.upload(url.rsplit("/", 1)[1])
    sent = 10 * MIB + 12_345  # past a checkpoint, and neither on a flush's nor on an S3 part's boundary
    sock = raw_connect(url)
    try:
        sock.sendall(tus_ops.patch_head(url, 0, len(source.body)) + source.body[:sent])
        with redis.Redis(unix_socket_path=str(server.data_dir / "redis" / "redis.sock")) as state:
            poll(lambda: int(state.hget(state_key, "offset") or 0) == sent, what="every byte sent, recorded")
        sock.sendall(source.body[sent:])
        done = tus_ops.answer(sock)
        assert done is not None and done.status == 204
    finally:
        sock.close()
    assert stored_sha256(url) == source.sha256


@pytest.mark.file_store  # waits until the old writer's first bytes reach the file
def test_reconnecting_client_releases_its_old_half_open_writer(
    server_factory: Callable[..., ServerProcess]
) -> None:
    server = server_factory("--network-timeout", "300s")  # the stale writer is not timed out: it is asked to go
    source = Source(os.urandom(4 * MIB))
    url = tus_ops.create(server.url, source)
    head_len = len(tus_ops.patch_head(url, 0, len(source.body)))
    arrived = 2 * MIB + 5
    with _proxy_for(server) as proxy:
        proxy.fail_next("stall", after=head_len + arrived)
        old = raw_connect(proxy.url(url))
        try:
            old.sendall(tus_ops.patch_head(url, 0, len(source.body)) + source.body)
            poll(proxy.connections[0].faulted.is_set)
            poll(lambda: _stored_bytes(server, url) > 0)  # the first bytes reached the disk
            on_disk = _stored_bytes(server, url)

            # The client reconnects (directly) while its old connection is still open
            at = tus_ops.offset(url)
            assert on_disk <= at <= arrived  # what the old writer had received was saved when it let go
            poll(proxy.connections[0].closed_by_server.is_set)  # the old writer was let go
            old_answer = tus_ops.answer(old)
            assert old_answer is None or old_answer.status != 204
        finally:
            old.close()

    done = patch_upload(url, at, source.body[at:])
    assert done.status_code == 204
    assert stored_sha256(url) == source.sha256
