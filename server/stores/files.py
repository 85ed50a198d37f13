"""Upload bytes as files in the data dir (core.ports.BlobStore), the default store.

All methods are synchronous and may block on disk: the core calls them in an executor, never on the
event loop. Files are written in place with pwrite, so a retried append overwrites whatever a crash left
past the recorded offset; merges are copied inside the kernel (copy_file_range).
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from .writeback import start_writeback

_READ = 1024 * 1024


class FileWriter:
    """Appends to one upload's file from an offset by positional writes: a retried append overwrites what
    lies past the recorded offset."""

    def __init__(self, path: Path, offset: int) -> None:
        self.fd = os.open(path, os.O_WRONLY)
        self.position = offset
        self.queued = offset  # written bytes before this are queued for writeback (or synced)

    def write(self, data: bytes | memoryview) -> None:
        """Store `data`, and queue the bytes of the writes before it for writeback: one write late, so a
        write that is synced at once (a small PATCH's only one) costs no writeback call of its own."""
        view = memoryview(data)
        start = self.position
        while view:
            written = os.pwrite(self.fd, view, self.position)
            self.position += written
            view = view[written:]
        if self.queued < start:
            start_writeback(self.fd, self.queued, start - self.queued)
            self.queued = start

    def sync(self) -> None:
        """The written bytes (and the size needed to read them) are on disk: fdatasync skips timestamps."""
        end = self.position
        os.fdatasync(self.fd)
        self.queued = max(self.queued, end)

    def close(self) -> None:
        os.close(self.fd)


class FileStore:
    """Uploads as files under `<root>/uploads/`, derived artefacts under `<root>/derived/<id>/`.

    IDs reaching here were validated by `tuskit.server.core.ids`; paths are never built from anything else.
    """

    def __init__(self, root: Path) -> None:
        self.uploads = Path(root) / "uploads"
        self.derived = Path(root) / "derived"
        self.uploads.mkdir(parents=True, exist_ok=True)
        self.derived.mkdir(parents=True, exist_ok=True)

    def _path(self, upload_id: str) -> Path:
        return self.uploads / upload_id

    def _derived_dir(self, upload_id: str) -> Path:
        return self.derived / upload_id

    def create(self, upload_id: str) -> None:
        os.close(os.open(self._path(upload_id), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640))

    def writer(self, upload_id: str, offset: int) -> FileWriter:
        return FileWriter(self._path(upload_id), offset)

    def read(self, upload_id: str, start: int, end: int) -> Iterator[bytes]:
        """Bytes [start, end) in blocks of at most 1 MiB."""
        with open(self._path(upload_id), "rb", buffering=0) as f:
            f.seek(start)
            remaining = end - start
            while remaining > 0:
                block = f.read(min(_READ, remaining))
                if not block:
                    raise OSError(f"upload {upload_id} is shorter than expected")
                remaining -= len(block)
                yield block

    def open(self, upload_id: str) -> BinaryIO:
        return open(self._path(upload_id), "rb")

    def concat(self, final_id: str, parts: list[tuple[str, int]]) -> None:
        """Append each part's first `length` bytes to the final's file, copied inside the kernel."""
        out = os.open(self._path(final_id), os.O_WRONLY | os.O_TRUNC)
        try:
            offset = 0
            for part_id, length in parts:
                src = os.open(self._path(part_id), os.O_RDONLY)
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
        fd = os.open(self._path(upload_id), os.O_WRONLY)
        try:
            os.ftruncate(fd, length)
            os.fsync(fd)
        finally:
            os.close(fd)

    def delete(self, upload_id: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path(upload_id).unlink()
        shutil.rmtree(self._derived_dir(upload_id), ignore_errors=True)

    def put_derived(self, upload_id: str, name: str, data: bytes) -> None:
        """Written beside and renamed into place, so a reader never sees half an artefact."""
        directory = self._derived_dir(upload_id)
        directory.mkdir(exist_ok=True)
        tmp = directory / f".{name}.tmp"
        tmp.write_bytes(data)
        os.replace(tmp, directory / name)

    def get_derived(self, upload_id: str, name: str) -> bytes | None:
        try:
            return (self._derived_dir(upload_id) / name).read_bytes()
        except FileNotFoundError:
            return None

    def free_space(self) -> int:
        st = os.statvfs(self.uploads)
        return st.f_bavail * st.f_frsize
