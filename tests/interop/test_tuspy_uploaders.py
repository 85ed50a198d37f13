"""tuspy against a live tuskit server: the synchronous and the asyncio uploader, each resuming via URL storage.

"Resume" is what a restarted program does: a new client and uploader with the same URL storage file find
the upload by fingerprint, ask the server for its offset, and send only the rest.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tusclient import client
from tusclient.storage.filestorage import FileStorage

from support import ServerProcess, stored_sha256

CHUNK = 256 * 1024


def _source(tmp_path: Path, size: int) -> tuple[Path, str]:
    path = tmp_path / "upload.bin"
    path.write_bytes(os.urandom(size))
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


@contextmanager
def _storage(tmp_path: Path) -> Iterator[FileStorage]:
    storage = FileStorage(str(tmp_path / "tus-urls.json"))
    try:
        yield storage
    finally:
        storage.close()


def _options(path: Path, digest: str, storage: FileStorage) -> dict[str, object]:
    return {"file_path": str(path), "chunk_size": CHUNK, "store_url": True, "url_storage": storage,
            "metadata": {"filename": path.name, "sha256": digest}}


def test_sync_uploader_resumes_from_url_storage(tus_server: ServerProcess, tmp_path: Path) -> None:
    path, digest = _source(tmp_path, 5 * CHUNK + 123)
    with _storage(tmp_path) as storage:
        first = client.TusClient(tus_server.url).uploader(**_options(path, digest, storage))
        first.upload_chunk()
        first.upload_chunk()
        assert first.offset == 2 * CHUNK

    with _storage(tmp_path) as storage:  # a fresh program: only the storage file remembers the upload
        again = client.TusClient(tus_server.url).uploader(**_options(path, digest, storage))
        assert again.url == first.url
        assert again.offset == 2 * CHUNK  # asked the server, which kept both chunks
        again.upload()
        assert again.offset == path.stat().st_size
    assert stored_sha256(again.url) == digest


def test_async_uploader_resumes_from_url_storage(tus_server: ServerProcess, tmp_path: Path) -> None:
    path, digest = _source(tmp_path, 4 * CHUNK + 7)

    async def scenario() -> tuple[str, str]:
        with _storage(tmp_path) as storage:
            first = client.TusClient(tus_server.url).async_uploader(**_options(path, digest, storage))
            await first.upload(stop_at=3 * CHUNK)
            assert first.offset == 3 * CHUNK
        with _storage(tmp_path) as storage:
            again = client.TusClient(tus_server.url).async_uploader(**_options(path, digest, storage))
            assert again.offset == 3 * CHUNK
            await again.upload()
            assert again.offset == path.stat().st_size
        return first.url, again.url

    first_url, again_url = asyncio.run(scenario())
    assert again_url == first_url
    assert stored_sha256(again_url) == digest
