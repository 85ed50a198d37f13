"""Two `tuskit server` processes sharing one Redis and one data dir behave as one server."""

from __future__ import annotations

import base64
import hashlib
import os
import socket
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import redis
import requests

from support import TUS, ServerProcess, poll


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _patch(url: str, offset: int, data: bytes) -> requests.Response:
    headers = {**TUS, "Upload-Offset": str(offset), "Content-Type": "application/offset+octet-stream"}
    return requests.patch(url, data=data, headers=headers, timeout=30)


def _on(server: ServerProcess, url: str) -> str:
    """The same upload URL addressed to another process."""
    return server.url + url.rsplit("/", 1)[1]


def test_create_on_a_continue_on_b_finish_on_a(
    server_factory: Callable[..., ServerProcess], redis_url: str, tmp_path: Path
) -> None:
    shared = tmp_path / "shared-data"
    a = server_factory("--redis-url", redis_url, data_dir=shared)
    b = server_factory("--redis-url", redis_url, data_dir=shared)
    body = os.urandom(3 * 1024 * 1024 + 17)
    digest = hashlib.sha256(body).hexdigest()
    created = requests.post(a.url, headers={**TUS, "Upload-Length": str(len(body)),
                                            "Upload-Metadata": "sha256 " + _b64(digest)}, timeout=10)
    assert created.status_code == 201
    url_a = created.headers["Location"]

    assert _patch(url_a, 0, body[:1_000_000]).headers["Upload-Offset"] == "1000000"
    on_b = _patch(_on(b, url_a), 1_000_000, body[1_000_000:2_500_000])
    assert on_b.status_code == 204 and on_b.headers["Upload-Offset"] == "2500000"
    head_a = requests.head(url_a, headers=TUS, timeout=10)
    assert head_a.headers["Upload-Offset"] == "2500000"
    done = _patch(url_a, 2_500_000, body[2_500_000:])
    assert done.status_code == 204 and done.headers["Upload-Offset"] == str(len(body))

    download = requests.get(_on(b, url_a), timeout=30)
    assert download.status_code == 200
    assert hashlib.sha256(download.content).hexdigest() == digest


def test_stalled_writer_on_a_is_released_by_a_request_at_b(
    server_factory: Callable[..., ServerProcess], redis_url: str, tmp_path: Path
) -> None:
    shared = tmp_path / "shared-data"
    a = server_factory("--redis-url", redis_url, "--network-timeout", "300s", data_dir=shared)
    b = server_factory("--redis-url", redis_url, data_dir=shared)
    body = os.urandom(2 * 1024 * 1024)
    url = requests.post(a.url, headers={**TUS, "Upload-Length": str(len(body))}, timeout=10).headers["Location"]

    # A half-open writer on A: it announced the whole body, sent a third, then went quiet.
    parts = urlsplit(url)
    stalled = socket.create_connection((parts.hostname, parts.port), timeout=30)
    stalled.sendall(
        f"PATCH {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\nTus-Resumable: 1.0.0\r\n"
        f"Upload-Offset: 0\r\nContent-Type: application/offset+octet-stream\r\n"
        f"Content-Length: {len(body)}\r\n\r\n".encode() + body[: len(body) // 3]
    )
    try:
        # Only a writer that holds the lease can be asked to let go: before it takes it, a HEAD has
        # nobody to ask and answers the offset at once, leaving the stalled connection open.
        with redis.Redis.from_url(redis_url) as client:
            poll(lambda: client.exists("tuskit:lock:" + parts.path.rsplit("/", 1)[1]), what="A's writer's lease")
        # The client reconnects to B; B asks A's writer to let go, and answers instead of 423.
        head = requests.head(_on(b, url), headers=TUS, timeout=30)
        assert head.status_code == 200
        offset = int(head.headers["Upload-Offset"])
        assert 0 <= offset <= len(body) // 3
        try:
            leftover = stalled.recv(65536)
        except ConnectionResetError:
            leftover = b""
        assert leftover == b""  # A saved what it had and closed the stale connection
        done = _patch(_on(b, url), offset, body[offset:])
        assert done.status_code == 204 and done.headers["Upload-Offset"] == str(len(body))
        stored = requests.get(url, timeout=30).content
        assert hashlib.sha256(stored).digest() == hashlib.sha256(body).digest()
    finally:
        stalled.close()

