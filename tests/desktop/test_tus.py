"""The tus transport against a real tuskit server: streamed chunks, resume by HEAD, 460, timeouts, auth."""

from __future__ import annotations

import hashlib
import itertools
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from http_fault_proxy import FaultProxy

from tuskit.desktop.client.errors import CHECKSUM, FATAL, NETWORK, Cancelled, UploadError
from tuskit.desktop.client.throttle import Throttle
from tuskit.desktop.client.tus import TusSession, upload

from support import TUS, ServerProcess, stored_sha256

MiB = 1024 * 1024


class Hooks:
    """Records what an attempt reports; `cancel_after` pulls the plug once that many bytes went out."""

    def __init__(self, cancel_after: int | None = None) -> None:
        self.cancelled = threading.Event()
        self.cancel_after = cancel_after
        self.sent_calls: list[int] = []
        self.confirmed_offsets: list[int] = []
        self.started_at: list[tuple[str, int]] = []

    def before_request(self) -> None:
        if self.cancelled.is_set():
            raise Cancelled

    def started(self, url: str, offset: int) -> None:
        self.started_at.append((url, offset))

    def sent(self, n: int) -> None:
        self.sent_calls.append(n)
        if self.cancel_after is not None and sum(self.sent_calls) >= self.cancel_after:
            self.cancelled.set()

    def confirmed(self, offset: int) -> None:
        self.confirmed_offsets.append(offset)


@pytest.fixture
def payload(tmp_path: Path) -> tuple[Path, str]:
    path = tmp_path / "payload.bin"
    data = os.urandom(3 * MiB + 123)
    path.write_bytes(data)
    return path, hashlib.sha256(data).hexdigest()


@pytest.fixture
def tus(tus_server: ServerProcess) -> Iterator[TusSession]:
    session = TusSession(tus_server.url, None, timeout=30)
    yield session
    session.close()


def _meta(path: Path, sha: str) -> dict[str, str]:
    return {"filename": path.name, "sha256": sha}


def test_chunks_stream_with_progress_inside_each_chunk(tus: TusSession, payload: tuple[Path, str]) -> None:
    path, sha = payload
    hooks = Hooks()
    size = path.stat().st_size
    url = upload(tus, str(path), size, None, _meta(path, sha), MiB, hooks, Throttle(None))
    assert hooks.started_at == [(url, 0)]
    assert hooks.confirmed_offsets == [MiB, 2 * MiB, 3 * MiB, size]
    assert sum(hooks.sent_calls) == size
    assert len(hooks.sent_calls) > 2 * len(hooks.confirmed_offsets)  # several progress reports per chunk
    assert stored_sha256(url) == sha


def test_cancelled_upload_resumes_from_the_servers_offset(tus: TusSession, payload: tuple[Path, str]) -> None:
    path, sha = payload
    size = path.stat().st_size
    first = Hooks(cancel_after=int(1.5 * MiB))
    with pytest.raises(Cancelled):
        upload(tus, str(path), size, None, _meta(path, sha), MiB, first, Throttle(None))
    [(url, _)] = first.started_at
    offset = int(requests.head(url, headers=TUS, timeout=10).headers["Upload-Offset"])
    assert MiB <= offset < size
    second = Hooks()
    assert upload(tus, str(path), size, url, _meta(path, sha), MiB, second, Throttle(None)) == url
    assert second.started_at == [(url, offset)]
    assert sum(second.sent_calls) == size - offset
    assert stored_sha256(url) == sha


def test_declared_digest_mismatch_is_a_checksum_error(tus: TusSession, payload: tuple[Path, str]) -> None:
    path, _ = payload
    with pytest.raises(UploadError) as info:
        upload(tus, str(path), path.stat().st_size, None, _meta(path, "0" * 64), 4 * MiB, Hooks(), Throttle(None))
    assert info.value.kind == CHECKSUM and info.value.status == 460
    assert "sha256" in info.value.reason


def test_a_silent_server_times_out_as_a_network_error(tmp_path: Path) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)  # accepts connections (kernel backlog) but never answers
    try:
        session = TusSession(f"http://127.0.0.1:{listener.getsockname()[1]}/files/", None, timeout=0.5)
        f = tmp_path / "a.txt"
        f.write_bytes(b"hello")
        with pytest.raises(UploadError) as info:
            upload(session, str(f), 5, None, {"filename": "a.txt"}, MiB, Hooks(), Throttle(None))
        assert info.value.kind == NETWORK and "timed out" in info.value.reason
    finally:
        listener.close()


def test_bearer_token_is_sent(server_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    tokens = tmp_path / "tokens"
    tokens.write_text("s3cret alice\n")
    server = server_factory("--tokens", str(tokens))
    f = tmp_path / "a.txt"
    f.write_bytes(b"hello")
    with pytest.raises(UploadError) as info:
        upload(TusSession(server.url, None, 10), str(f), 5, None, {"filename": "a.txt"}, MiB, Hooks(), Throttle(None))
    assert info.value.kind == FATAL and info.value.status == 401
    url = upload(TusSession(server.url, "s3cret", 10), str(f), 5, None, {"filename": "a.txt"}, MiB, Hooks(),
                 Throttle(None))
    head = requests.head(url, headers={**TUS, "Authorization": "Bearer s3cret"}, timeout=10)
    assert head.headers["Upload-Offset"] == "5"


def test_small_files_travel_in_the_creation_request(tus_server: ServerProcess, tmp_path: Path) -> None:
    proxy = FaultProxy(tus_server.origin).start()
    try:
        session = TusSession(proxy.url(tus_server.url), None, 10)
        for name in ("a.txt", "b.txt"):
            f = tmp_path / name
            f.write_bytes(os.urandom(10_000))
            hooks = Hooks()
            url = upload(session, str(f), 10_000, None, {"filename": name}, MiB, hooks, Throttle(None))
            assert hooks.confirmed_offsets == [10_000] and sum(hooks.sent_calls) == 10_000
            assert stored_sha256(url.replace(proxy.origin, tus_server.origin)) == hashlib.sha256(
                f.read_bytes()).hexdigest()
        assert [m for m, _ in proxy.methods()] == ["OPTIONS", "POST", "POST"]  # extensions asked once, no PATCH
    finally:
        proxy.stop()


def test_chunks_grow_on_a_fast_link_up_to_the_cap(tus: TusSession, tmp_path: Path) -> None:
    f = tmp_path / "fast.bin"
    f.write_bytes(os.urandom(6 * MiB))
    hooks = Hooks()
    url = upload(tus, str(f), 6 * MiB, None, {"filename": f.name}, 256 * 1024, hooks, Throttle(None),
                 max_chunk_size=2 * MiB)
    offsets = [0, *hooks.confirmed_offsets]
    sizes = [b - a for a, b in itertools.pairwise(offsets)]
    assert sizes[0] == 256 * 1024 and max(sizes) == 2 * MiB  # loopback is fast: it doubled to the cap
    assert all(b >= a for a, b in itertools.pairwise(sizes[:-1]))  # never shrinks (the last is the remainder)
    assert stored_sha256(url) == hashlib.sha256(f.read_bytes()).hexdigest()
