"""A fast body is moved from the socket into the file inside the kernel (server/stores/splice.py) and hashed
where the file has it: every byte must still arrive exactly once, in order, verified, and an interrupted
body must keep what arrived. On S3 nothing is spliced (parts gather in memory), and the same holds.

Splicing is taken while a body arrives faster than the server reads it, which a loaded machine can deny a
given body; so each test checks the bytes whatever path they took, and one keeps sending until a body was
spliced.
"""

from __future__ import annotations

import base64
import hashlib
import os

import pytest
import requests
from storage import Storage
from tus_calls import metric

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
SPLICED = "tuskit_bytes_spliced_total"


def _declared(body: bytes) -> str:
    return f"sha256 {b64(hashlib.sha256(body).hexdigest())}"


def _checksum(body: bytes) -> str:
    return "sha1 " + base64.b64encode(hashlib.sha1(body).digest()).decode()


def _patch_head(url: str, offset: int, length: int, **extra: str) -> bytes:
    return request_head("PATCH", url, {**TUS, "Upload-Offset": str(offset), "Content-Type": OFFSET_TYPE,
                                       "Content-Length": str(length), **extra})


def _offset(url: str) -> int:
    return int(requests.head(url, headers=TUS, timeout=30).headers["Upload-Offset"])


def _spliced(server: ServerProcess, storage: Storage, before: float) -> float:
    """Bytes spliced since `before`; the S3 store never splices."""
    moved = metric(server.origin, SPLICED) - before
    if storage.kind == "s3":
        assert moved == 0
    return moved


def test_fast_bodies_are_spliced_and_verified_whole(tus_server: ServerProcess, storage: Storage) -> None:
    """32 MiB PATCHes with a chunk checksum and a declared whole-file SHA-256: each is 204 and published
    intact; on the file store one of at most five was spliced, on S3 none."""
    before = metric(tus_server.origin, SPLICED)
    for _ in range(5 if storage.kind == "file" else 1):
        body = os.urandom(32 * MiB)
        url = create_upload(tus_server.url, len(body), metadata=_declared(body)).headers["Location"]
        done = patch_upload(url, 0, body, {"Upload-Checksum": _checksum(body)})
        assert done.status_code == 204, done.text
        assert done.headers["Upload-Offset"] == str(len(body))
        assert stored_sha256(url) == hashlib.sha256(body).hexdigest()
        if _spliced(tus_server, storage, before):
            break
    if storage.kind == "file":
        assert _spliced(tus_server, storage, before) > 0  # the path under test was taken


def test_a_spliced_body_with_a_wrong_checksum_keeps_nothing(tus_server: ServerProcess, storage: Storage) -> None:
    body = os.urandom(32 * MiB)
    url = create_upload(tus_server.url, len(body)).headers["Location"]
    refused = patch_upload(url, 0, body, {"Upload-Checksum": _checksum(body[:-1] + b"?")})
    assert refused.status_code == 460, refused.text
    assert _offset(url) == 0


def test_a_request_behind_a_spliced_body_on_the_same_connection_is_read_intact(
        tus_server: ServerProcess, storage: Storage) -> None:
    """The body is taken to its last byte and not one further: the next request on the connection parses."""
    body = os.urandom(24 * MiB)
    url = create_upload(tus_server.url, len(body) + 5).headers["Location"]
    with raw_connect(url, timeout=60) as sock:
        sock.sendall(_patch_head(url, 0, len(body)) + body + _patch_head(url, len(body), 5) + b"tail!")
        first, second = read_response(sock, "PATCH"), read_response(sock, "PATCH")
    assert (first.status, first.headers["Upload-Offset"]) == (204, str(len(body)))
    assert (second.status, second.headers["Upload-Offset"]) == (204, str(len(body) + 5))
    assert stored_sha256(url) == hashlib.sha256(body + b"tail!").hexdigest()


def test_a_spliced_body_cut_off_keeps_what_arrived_and_resumes(tus_server: ServerProcess, storage: Storage) -> None:
    body = os.urandom(64 * MiB)
    received = metric(tus_server.origin, "tuskit_bytes_received_total")
    url = create_upload(tus_server.url, len(body), metadata=_declared(body)).headers["Location"]
    sent = 40 * MiB
    with raw_connect(url, timeout=60) as sock:
        sock.sendall(_patch_head(url, 0, len(body)) + body[:sent])
        poll(lambda: metric(tus_server.origin, "tuskit_bytes_received_total") >= received + sent, timeout=60,
             what="the server to have read what was sent")
    # the client went away: what arrived is kept (synced, then recorded), nothing past it
    offset = poll(lambda: _offset(url) == sent and sent, timeout=30, what="the cut-off body's bytes to be recorded")
    done = patch_upload(url, offset, body[offset:])
    assert done.status_code == 204, done.text  # the declared SHA-256 verified across both bodies
    assert stored_sha256(url) == hashlib.sha256(body).hexdigest()


def test_a_half_open_spliced_body_is_taken_over_by_the_clients_next_request(
        tus_server: ServerProcess, storage: Storage) -> None:
    """The client's network changed mid-body: its old connection stays open and silent while it resumes on
    a new one from the offset it last knew. The old body is stopped, its bytes kept, the new one completes."""
    body = os.urandom(48 * MiB)
    received = metric(tus_server.origin, "tuskit_bytes_received_total")
    url = create_upload(tus_server.url, len(body), metadata=_declared(body)).headers["Location"]
    sent = 32 * MiB
    with raw_connect(url, timeout=60) as old:
        old.sendall(_patch_head(url, 0, len(body)) + body[:sent])
        poll(lambda: metric(tus_server.origin, "tuskit_bytes_received_total") >= received + sent, timeout=60,
             what="the server to have read what was sent")
        done = patch_upload(url, sent, body[sent:])  # the offset it knew: everything it sent arrived
        assert done.status_code == 204, done.text
        old.settimeout(30)
        try:
            leftover = old.recv(1 << 16)
        except ConnectionResetError:
            leftover = b""
        except TimeoutError:
            pytest.fail("the old connection was left hanging")
        assert leftover == b"" or leftover.startswith(b"HTTP/1.1 ")
    assert stored_sha256(url) == hashlib.sha256(body).hexdigest()
