"""Verified merge: a declared whole-file sha256 decides whether an upload is ever published."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import requests
from storage import Storage

from support import TUS, ServerProcess, b64, create_upload, patch_upload


def _declared(body: bytes) -> str:
    return f"sha256 {b64(hashlib.sha256(body).hexdigest())}"


def _upload_in_pieces(url: str, body: bytes, pieces: int) -> requests.Response:
    step = -(-len(body) // pieces)
    response = None
    for start in range(0, len(body), step):
        response = patch_upload(url, start, body[start:start + step])
        assert response.status_code in (204, 460), response.text
    assert response is not None
    return response


def test_matching_declared_sha256_is_published(tus_server: ServerProcess) -> None:
    body = os.urandom(3 * 1024 * 1024 + 123)
    url = create_upload(tus_server.url, len(body), metadata=_declared(body)).headers["Location"]
    assert _upload_in_pieces(url, body, 5).status_code == 204
    download = requests.get(url, timeout=30)
    assert download.status_code == 200 and download.content == body
    assert download.headers["ETag"] == f'"{hashlib.sha256(body).hexdigest()}"'


def test_uppercase_declared_digest_is_accepted(tus_server: ServerProcess) -> None:
    body = b"case does not matter"
    metadata = f"sha256 {b64(hashlib.sha256(body).hexdigest().upper())}"
    url = create_upload(tus_server.url, len(body), metadata=metadata).headers["Location"]
    assert patch_upload(url, 0, body).status_code == 204


def test_mismatch_is_460_on_the_completing_request_then_410_with_the_reason(tus_server: ServerProcess,
                                                                          storage: Storage) -> None:
    body = os.urandom(2 * 1024 * 1024)
    wrong = hashlib.sha256(b"something else").hexdigest()
    url = create_upload(tus_server.url, len(body), metadata=f"sha256 {b64(wrong)}").headers["Location"]
    assert patch_upload(url, 0, body[:1_000_000]).status_code == 204
    completing = patch_upload(url, 1_000_000, body[1_000_000:])
    assert completing.status_code == 460
    assert wrong in completing.text
    for method in ("GET", "HEAD", "PATCH", "DELETE"):
        later = requests.request(method, url, timeout=30, headers={
            **TUS, "Upload-Offset": str(len(body)), "Content-Type": "application/offset+octet-stream"})
        assert later.status_code == 410, method
        assert "Upload-Offset" not in later.headers
    assert wrong in requests.get(url, timeout=30).text
    assert not storage.holds(tus_server, url.rsplit("/", 1)[1])  # the object is deleted, nothing published


def test_mismatch_on_creation_with_the_whole_upload(tus_server: ServerProcess) -> None:
    created = create_upload(tus_server.url, 5, data=b"hello", metadata=_declared(b"HELLO"))
    assert created.status_code == 460


def test_a_repeated_chunk_after_a_lost_response_still_verifies(tus_server: ServerProcess) -> None:
    body = b"0123456789" * 1000
    url = create_upload(tus_server.url, len(body), metadata=_declared(body)).headers["Location"]
    assert patch_upload(url, 0, body[:4000]).status_code == 204
    assert patch_upload(url, 0, body[:4000]).status_code == 409  # the client retries the same chunk
    assert patch_upload(url, 4000, body[4000:]).status_code == 204
    assert requests.get(url, timeout=30).content == body


def test_running_hash_survives_a_server_restart(server_factory: Callable[..., ServerProcess], tmp_path: Path) -> None:
    data_dir = tmp_path / "restart"
    body = os.urandom(5 * 1024 * 1024)
    first = server_factory(data_dir=data_dir)
    url = create_upload(first.url, len(body), metadata=_declared(body)).headers["Location"]
    assert patch_upload(url, 0, body[:3_000_000]).status_code == 204
    bad_url = create_upload(first.url, 4, metadata=_declared(b"good")).headers["Location"]
    assert patch_upload(bad_url, 0, b"ba").status_code == 204
    first.stop()

    second = server_factory(data_dir=data_dir)
    moved = second.url + url.rsplit("/", 1)[1]
    assert requests.head(moved, headers=TUS, timeout=30).headers["Upload-Offset"] == "3000000"
    # this process never saw the first 3 MB: it rebuilds the hash from storage once, at the end
    assert patch_upload(moved, 3_000_000, body[3_000_000:]).status_code == 204
    assert requests.get(moved, timeout=30).content == body
    assert patch_upload(second.url + bad_url.rsplit("/", 1)[1], 2, b"d!").status_code == 460
