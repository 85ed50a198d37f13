"""tuspy (the Python tus client) against a real server: empty, small, and 200 MB with a real interruption."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import requests
from tusclient import client

from tuskit.checksums import sha256_file

from support import TUS, ServerProcess, stored_sha256

BIG = 200 * 1024 * 1024
CHUNK = 32 * 1024 * 1024


def _write_file(path: Path, size: int) -> str:
    """Random-looking content, fast: one random MiB stamped with its block number; returns its sha256."""
    block = os.urandom(1024 * 1024)
    digest = hashlib.sha256()
    with open(path, "wb") as f:
        for i in range(-(-size // len(block))):
            piece = (i.to_bytes(8, "big") + block[8:])[: size - i * len(block)]
            f.write(piece)
            digest.update(piece)
    return digest.hexdigest()


@pytest.fixture(scope="session")
def big_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    path = tmp_path_factory.mktemp("big") / "big.bin"
    return path, _write_file(path, BIG)


def _upload(endpoint: str, path: Path, **kwargs: object) -> str:
    uploader = client.TusClient(endpoint).uploader(str(path), **kwargs)
    uploader.upload()
    return str(uploader.url)


def test_empty_file(tus_server: ServerProcess, tmp_path: Path) -> None:
    path = tmp_path / "empty.txt"
    path.write_bytes(b"")
    url = _upload(tus_server.url, path)
    head = requests.head(url, headers=TUS, timeout=30)
    assert head.headers["Upload-Offset"] == head.headers["Upload-Length"] == "0"
    download = requests.get(url, timeout=30)
    assert download.status_code == 200 and download.content == b""


def test_small_file_with_metadata_and_chunk_checksums(tus_server: ServerProcess, tmp_path: Path) -> None:
    path = tmp_path / "small.bin"
    digest = _write_file(path, 300_001)
    url = _upload(tus_server.url, path, chunk_size=64 * 1024, upload_checksum=True,
                  metadata={"filename": "small.bin", "sha256": digest})
    assert stored_sha256(url) == digest
    assert "filename" in requests.head(url, headers=TUS, timeout=30).headers["Upload-Metadata"]


def test_small_file_without_metadata(tus_server: ServerProcess, tmp_path: Path) -> None:
    # tuspy then sends an empty Upload-Metadata header
    path = tmp_path / "plain.txt"
    path.write_bytes(b"plain text\n" * 100)
    url = _upload(tus_server.url, path, chunk_size=512)
    assert requests.get(url, timeout=30).content == path.read_bytes()


_CLIENT = textwrap.dedent("""
    import sys
    from tusclient import client
    endpoint, path, chunk, digest = sys.argv[1:]
    uploader = client.TusClient(endpoint).uploader(path, chunk_size=int(chunk), metadata={"sha256": digest})
    uploader.set_url(uploader.create_url())
    print(uploader.url, flush=True)
    uploader.upload()
""")


@pytest.mark.file_store  # kills the client once the file has grown past a chunk
def test_200mb_resumes_after_the_client_is_killed_mid_patch(
        server_factory: Callable[..., ServerProcess], big_file: tuple[Path, str]) -> None:
    path, digest = big_file
    server = server_factory()
    proc = subprocess.Popen([sys.executable, "-c", _CLIENT, server.url, str(path), str(CHUNK), digest],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        stored = server.data_dir / "uploads" / url.rsplit("/", 1)[1]
        deadline = time.monotonic() + 120
        # kill the client in the middle of a PATCH, well past the first chunk
        while not (stored.exists() and stored.stat().st_size > CHUNK + CHUNK // 2):
            assert proc.poll() is None, "the client finished before it could be interrupted"
            assert time.monotonic() < deadline, "upload made no progress"
            time.sleep(0.01)
        proc.kill()
    finally:
        proc.kill()
        proc.wait()

    offset = int(requests.head(url, headers=TUS, timeout=30).headers["Upload-Offset"])
    assert CHUNK <= offset < BIG  # at least the first whole chunk; received bytes of the cut PATCH are kept too

    # the rest in one PATCH of more than tornado's default 100 MB body cap
    resumed = client.TusClient(server.url).uploader(str(path), url=url, chunk_size=BIG)
    assert resumed.offset == offset  # tuspy asked the server where to go on
    resumed.upload()
    head = requests.head(url, headers=TUS, timeout=30)
    assert head.headers["Upload-Offset"] == str(BIG)
    assert sha256_file(stored) == digest
    with open(path, "rb") as f:
        f.seek(-16, os.SEEK_END)
        assert requests.get(url, headers={"Range": "bytes=-16"}, timeout=30).content == f.read()
