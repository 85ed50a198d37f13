"""Upload bytes as files in the data dir (core.ports.BlobStore), the default store.

All methods are synchronous and may block on disk: the core calls them in an executor, never on the
event loop. Files are written in place with pwrite, so a retried append overwrites whatever a crash left
past the recorded offset; merges are copied inside the kernel (copy_file_range).

An unfinished upload is `uploads/<id>` (its first segment) and `uploads/<id>.<token>` for each later
segment (core.model). Publishing leaves one read-only file, `uploads/<id>`: the first segment itself when
no writer of it may be alive (the common case costs nothing), else a new file assembled from the
segments' recorded ranges and renamed into place, so a stale writer's open descriptor points at a file
nobody reads any more. A writer that opens a file refuses it if it is read-only: it was published.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import secrets
import shutil
import stat
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

from ..core.model import FIRST_SEGMENTS, Segments
from ..core.ports import OffsetConflict
from .export import copy_into_place
from .ranges import BLOCK, exact_blocks
from .uring import Ring
from .writeback import start_writeback

# link() failures that mean "no hard link here" (another file system, one without links, too many links)
_NO_LINK = {errno.EXDEV, errno.EPERM, errno.EMLINK, errno.EOPNOTSUPP}
FILE_MODE = 0o640  # uploads and everything made from them: the server's user and group, nobody else
PUBLISHED_MODE = 0o440  # a published blob is read-only: the mark a late writer finds (root included)
DIR_MODE = 0o750


def _write_all(fd: int, data: bytes | memoryview, position: int = 0) -> int:
    """pwrite until all of `data` is written; returns the position after it."""
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, position)
        position += written
        view = view[written:]
    return position


def _fsync(path: Path) -> None:
    """A file's bytes, or a directory's entries, are on disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _published() -> OffsetConflict:
    """What a writer that finds its file read-only says."""
    return OffsetConflict("the upload was finished by another request")


def _copy(src: int, out: int, src_offset: int, out_offset: int, count: int, what: str) -> None:
    """`count` bytes from `src` to `out`, copied inside the kernel (shared extents where the fs can)."""
    copied = 0
    while copied < count:
        n = os.copy_file_range(src, out, count - copied, src_offset + copied, out_offset + copied)
        if n == 0:
            raise OSError(f"{what} is shorter than its recorded length")
        copied += n


class FileWriter:
    """Appends to one segment's file from a position by positional writes: a retried append overwrites
    what lies past the recorded offset."""

    retained = 0  # written bytes are in the page cache at once: none held in this process's memory

    def __init__(self, path: Path, position: int, create: bool, start: int = 0) -> None:
        self.fd = os.open(path, os.O_WRONLY | (os.O_CREAT if create else 0), FILE_MODE)
        if not os.fstat(self.fd).st_mode & stat.S_IWUSR:
            os.close(self.fd)
            raise _published()
        self.position = position
        self.queued = position  # written bytes before this are queued for writeback (or synced)
        self.start = start  # the segment's upload offset: positions are the segment's own
        self.new_entry = path.parent if create else None  # a new file's name is durable once its directory is

    def write(self, data: bytes | memoryview) -> None:
        """Store `data`, and queue the bytes of the writes before it for writeback: one write late, so a
        write that is synced at once (a small PATCH's only one) costs no writeback call of its own."""
        start = self.position
        self.position = _write_all(self.fd, data, start)
        if self.queued < start:
            start_writeback(self.fd, self.queued, start - self.queued)
            self.queued = start

    def spill(self) -> None:
        """Nothing to let go of (see `retained`)."""

    def sync(self, partial: bool = False) -> int:
        """The bytes written before this call (and the size needed to read them) are on disk: fdatasync
        skips timestamps. A write running beside it in another thread may end past what it covered, so the
        offset returned is where the writes stood when it began."""
        end = self.position
        os.fdatasync(self.fd)
        if self.new_entry is not None:
            _fsync(self.new_entry)
            self.new_entry = None
        self.queued = max(self.queued, end)
        return self.start + end

    def close(self) -> None:
        os.close(self.fd)


class FileStore:
    """Uploads as files under `<root>/uploads/`, derived artefacts under `<root>/derived/<id>/`.

    IDs reaching here were validated by `tuskit.server.core.ids`; paths are never built from anything else.
    With `ring` (made on the event loop that serves), small appends skip the executor (`direct_append`).
    """

    def __init__(self, root: Path, ring: Ring | None = None) -> None:
        root = Path(root).absolute()  # the ring opens files by name, whatever the working directory is then
        self.uploads = root / "uploads"
        self.derived = root / "derived"
        self.ring = ring
        for directory in (self.uploads, self.derived):
            directory.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)

    def _path(self, upload_id: str) -> Path:
        """The published blob, which is also the first segment of an unfinished one."""
        return self.uploads / upload_id

    def _segment(self, upload_id: str, name: str) -> Path:
        return self._path(upload_id) if not name else self.uploads / f"{upload_id}.{name}"

    def _derived_dir(self, upload_id: str) -> Path:
        return self.derived / upload_id

    def create(self, upload_id: str, length: int | None = None) -> None:
        os.close(os.open(self._path(upload_id), os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE))

    def writer(self, upload_id: str, offset: int, segment: str = "", start: int = 0) -> FileWriter:
        return FileWriter(self._segment(upload_id, segment), offset - start, create=bool(segment), start=start)

    def direct_append(self, upload_id: str, offset: int, segment: str, start: int,
                      blocks: Sequence[bytes | bytearray]) -> asyncio.Future[int] | None:
        """Through the ring, into the first segment only: a segment of its own is a new file, whose name
        must be made durable by an fsync of the directory (the writer's job)."""
        if self.ring is None or segment:
            return None
        return self.ring.append(self._path(upload_id), offset, blocks, _published())

    def read(self, upload_id: str, start: int, end: int) -> Iterator[bytes]:
        """Bytes [start, end) in blocks of at most 1 MiB."""
        with open(self._path(upload_id), "rb", buffering=0) as f:
            f.seek(start)
            short = f"upload {upload_id} is shorter than expected"
            yield from exact_blocks(f.read, end - start, lambda: OSError(short))

    def open(self, upload_id: str) -> BinaryIO:
        return open(self._path(upload_id), "rb")

    def concat(self, final_id: str, parts: list[tuple[str, int]]) -> None:
        """Each part's first `length` bytes, copied inside the kernel into a new file that replaces the
        final's: a merger that stalled and woke up late writes into a file nobody reads."""
        with self._new_file(final_id) as (out, tmp):
            offset = 0
            for part_id, length in parts:
                src = os.open(self._path(part_id), os.O_RDONLY)
                try:
                    _copy(src, out, 0, offset, length, f"partial upload {part_id}")
                finally:
                    os.close(src)
                offset += length
            os.fsync(out)
        os.replace(tmp, self._path(final_id))
        _fsync(self.uploads)

    def finalize(self, upload_id: str, length: int, segments: Segments = FIRST_SEGMENTS,
                 in_place: bool = True) -> None:
        """Drop any garbage past the final length, make the bytes durable and read-only, and only then
        publish them (the state store says so after this returns)."""
        published = self._path(upload_id)
        with contextlib.suppress(FileNotFoundError):
            done = os.stat(published)
            if not done.st_mode & stat.S_IWUSR and done.st_size == length:  # a crash came before the state
                _fsync(published)
                self._drop_working(upload_id)
                return
        if in_place:
            (name, _), = segments
            path = self._segment(upload_id, name)
            fd = os.open(path, os.O_WRONLY)
            try:
                os.ftruncate(fd, length)
                os.fchmod(fd, PUBLISHED_MODE)
                os.fsync(fd)
            finally:
                os.close(fd)
        else:
            path = self._assemble(upload_id, length, segments)
        if path != published:
            os.replace(path, published)
            _fsync(self.uploads)
        self._drop_working(upload_id)

    def _assemble(self, upload_id: str, length: int, segments: Segments) -> Path:
        """A new file of each segment's recorded range: what was written past a range (by a writer that
        lost its lease, or before a crash) stays behind."""
        with self._new_file(upload_id) as (out, tmp):
            for i, (name, start) in enumerate(segments):
                end = segments[i + 1][1] if i + 1 < len(segments) else length
                src = os.open(self._segment(upload_id, name), os.O_RDONLY)
                try:
                    _copy(src, out, 0, start, end - start, f"segment {name or '0'} of upload {upload_id}")
                finally:
                    os.close(src)
            os.ftruncate(out, length)
            os.fchmod(out, PUBLISHED_MODE)
            os.fsync(out)
        return tmp

    @contextlib.contextmanager
    def _new_file(self, upload_id: str) -> Iterator[tuple[int, Path]]:
        """A working file of the upload's (removed with it) to build a blob in, open for writing."""
        tmp = self.uploads / f"{upload_id}.{secrets.token_hex(8)}.tmp"
        out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
        try:
            yield out, tmp
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        finally:
            os.close(out)

    def _drop_working(self, upload_id: str) -> None:
        """Every segment but the first, and half-built files (an open descriptor keeps its file alive)."""
        for path in self.uploads.glob(f"{upload_id}.*"):
            path.unlink(missing_ok=True)

    def delete(self, upload_id: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path(upload_id).unlink()
        self._drop_working(upload_id)
        shutil.rmtree(self._derived_dir(upload_id), ignore_errors=True)

    def put_derived(self, upload_id: str, name: str, data: bytes) -> None:
        """Written beside and renamed into place, so a reader never sees half an artefact.

        An analysis can outlive its upload (a DELETE right after the last PATCH). `delete` unlinks the blob
        before it removes the directory, so whichever of the two looks last takes the directory away."""
        directory = self._derived_dir(upload_id)
        try:
            with contextlib.suppress(FileExistsError):
                directory.mkdir(mode=DIR_MODE)
            tmp = directory / f".{name}.tmp"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
            try:
                _write_all(fd, data)
            finally:
                os.close(fd)
            os.replace(tmp, directory / name)
        except FileNotFoundError:
            if self._path(upload_id).exists():
                raise
        if not self._path(upload_id).exists():
            shutil.rmtree(directory, ignore_errors=True)

    def get_derived(self, upload_id: str, name: str) -> bytes | None:
        try:
            return (self._derived_dir(upload_id) / name).read_bytes()
        except FileNotFoundError:
            return None

    def export(self, upload_id: str, target: Path) -> None:
        """A hard link: no bytes copied, and the published file outlives a later DELETE of the upload. The
        shared inode is made read-only first, so writing into the published file cannot change the verified
        upload (tools that replace a file instead of writing into it break the link and are harmless)."""
        source = self._path(upload_id)
        os.chmod(source, 0o440)
        try:
            os.link(source, target)
        except OSError as exc:
            if exc.errno not in _NO_LINK:
                raise
            with open(source, "rb") as blob:
                copy_into_place(iter(lambda: blob.read(BLOCK), b""), target)

    def unfinished(self, started_before: float) -> list[str]:
        """None: a file does not say whether its upload finished, and a finished file without a record (Redis
        lost its data) must not be swept away as garbage."""
        return []

    def download_url(self, upload_id: str, headers: dict[str, str], seconds: float) -> None:
        return None  # files are served by the server

    def health(self) -> str:
        if not self.uploads.is_dir():
            return f"{self.uploads} is missing (an unmounted volume?)"
        return "ok" if os.access(self.uploads, os.W_OK | os.X_OK) else f"{self.uploads} is not writable"

    def free_space(self) -> int:
        st = os.statvfs(self.uploads)
        return st.f_bavail * st.f_frsize

    def max_blob_size(self) -> None:
        return None  # a file can grow as long as the disk has room, which free_space() tells
