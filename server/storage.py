"""Where upload bytes live. `BlobStore` is the narrow interface the service uses; `FileStore` is the
local-directory implementation (an S3 multipart store fits the same shape later).

All methods are synchronous and may block on disk: the service calls them in an executor, never on the
event loop.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from tuskit.server.writeback import start_writeback

_READ = 1024 * 1024


class BlobWriter(Protocol):
    def write(self, offset: int, data: bytes | memoryview) -> None: ...
    def sync(self) -> None: ...
    def close(self) -> None: ...


class BlobStore(Protocol):
    def create(self, upload_id: str) -> None: ...
    def writer(self, upload_id: str) -> BlobWriter: ...
    def read(self, upload_id: str, start: int, end: int) -> Iterator[bytes]: ...
    def concat(self, final_id: str, parts: list[tuple[str, int]]) -> None: ...
    def finalize(self, upload_id: str, length: int) -> None: ...
    def delete(self, upload_id: str) -> None: ...
    def path(self, upload_id: str) -> Path: ...
    def derived_dir(self, upload_id: str) -> Path: ...


class FileWriter:
    """Positional writes into one upload's file: a retried append overwrites what lies past the offset."""

    def __init__(self, path: Path) -> None:
        self.fd = os.open(path, os.O_WRONLY)

    def write(self, offset: int, data: bytes | memoryview) -> None:
        view = memoryview(data)
        start = offset
        while view:
            written = os.pwrite(self.fd, view, offset)
            offset += written
            view = view[written:]
        start_writeback(self.fd, start, offset - start)

    def sync(self) -> None:
        """The written bytes (and the size needed to read them) are on disk: fdatasync skips timestamps."""
        os.fdatasync(self.fd)

    def close(self) -> None:
        os.close(self.fd)


class FileStore:
    """Uploads as files under `<root>/uploads/`, derived files (thumbnails) under `<root>/derived/<id>/`.

    IDs reaching here were validated by `tuskit.server.ids`; paths are never built from anything else.
    """

    def __init__(self, root: Path) -> None:
        self.uploads = Path(root) / "uploads"
        self.derived = Path(root) / "derived"
        self.uploads.mkdir(parents=True, exist_ok=True)
        self.derived.mkdir(parents=True, exist_ok=True)

    def path(self, upload_id: str) -> Path:
        return self.uploads / upload_id

    def derived_dir(self, upload_id: str) -> Path:
        return self.derived / upload_id

    def create(self, upload_id: str) -> None:
        os.close(os.open(self.path(upload_id), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640))

    def writer(self, upload_id: str) -> FileWriter:
        return FileWriter(self.path(upload_id))

    def read(self, upload_id: str, start: int, end: int) -> Iterator[bytes]:
        """Bytes [start, end) in blocks of at most 1 MiB."""
        with open(self.path(upload_id), "rb", buffering=0) as f:
            f.seek(start)
            remaining = end - start
            while remaining > 0:
                block = f.read(min(_READ, remaining))
                if not block:
                    raise OSError(f"upload {upload_id} is shorter than expected")
                remaining -= len(block)
                yield block

    def concat(self, final_id: str, parts: list[tuple[str, int]]) -> None:
        """Append each part's first `length` bytes to the final's file, copied inside the kernel."""
        out = os.open(self.path(final_id), os.O_WRONLY | os.O_TRUNC)
        try:
            offset = 0
            for part_id, length in parts:
                src = os.open(self.path(part_id), os.O_RDONLY)
                try:
                    copied = 0
                    while copied < length:
                        n = os.copy_file_range(src, out, length - copied, copied, offset + copied)
                        if n == 0:
                            raise OSError(f"partial upload {part_id} is shorter than its length {length}")
                        copied += n
                finally:
                    os.close(src)
                offset += length
            os.fsync(out)
        finally:
            os.close(out)

    def finalize(self, upload_id: str, length: int) -> None:
        """Drop any garbage past the final length and make the bytes durable before we publish them."""
        fd = os.open(self.path(upload_id), os.O_WRONLY)
        try:
            os.ftruncate(fd, length)
            os.fsync(fd)
        finally:
            os.close(fd)

    def delete(self, upload_id: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path(upload_id).unlink()
        shutil.rmtree(self.derived_dir(upload_id), ignore_errors=True)
