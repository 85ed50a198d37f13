"""`--publish-dir DIR`: every verified upload also appears as `DIR/<owner>/<relativePath or filename>`.

Uploads live in the store under their IDs, with their names only in Redis; this hook gives operators the
tree their users sent (a folder synced with `tuskit sync` comes back with its layout). Names come from
clients, so `safe_relative_path` refuses anything that could leave DIR, that a file system cannot hold, or
that would make one name look like another; a refused upload is logged and stays in the store only.
A name that is taken gets a numbered suffix: nothing already in DIR is ever replaced.
"""

from __future__ import annotations

import asyncio
import logging
import re
import unicodedata
from collections.abc import Iterator
from concurrent.futures import Executor
from pathlib import Path

from ..core.model import Upload
from ..core.ports import BlobStore

log = logging.getLogger(__name__)

ANONYMOUS = "anonymous"  # the owner folder of uploads made without --tokens (owner "")
MAX_SEGMENT_BYTES = 240  # NAME_MAX is 255 on common file systems: room is left for a " (n)" suffix
MAX_PATH_BYTES = 1024
MAX_SUFFIX = 999
# invisible characters that reorder the text around them: "photo\u202egpj.exe" shows as "photoexe.jpg"
_BIDI = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_UNPRINTABLE = frozenset({"Cc", "Cs", "Zl", "Zp"})  # control chars (NUL, C0, DEL, C1), surrogates, line breaks
_DRIVE = re.compile(r"[A-Za-z]:")


class UnsafeName(ValueError):
    """A client-given name that must not become a path."""


def safe_segment(segment: str) -> str:
    """One path segment, unchanged if it is safe (UnsafeName otherwise)."""
    if segment in ("", ".", ".."):
        raise UnsafeName(f"path segment {segment!r} is not a name")
    if "/" in segment or "\\" in segment:
        raise UnsafeName(f"path segment {segment!r} contains a separator")
    bad = next((c for c in segment if unicodedata.category(c) in _UNPRINTABLE or c in _BIDI), None)
    if bad is not None:
        raise UnsafeName(f"name contains the control character U+{ord(bad):04X}")
    if len(segment.encode()) > MAX_SEGMENT_BYTES:
        raise UnsafeName(f"a path segment is longer than {MAX_SEGMENT_BYTES} bytes")
    return segment


def safe_relative_path(name: str) -> tuple[str, ...]:
    """The segments of a client-given relative path (`a/b/c.txt`), in Unicode NFC (macOS sends decomposed
    names: both spellings of "é" must land on one file), or UnsafeName. Absolute paths, `..`, empty segments
    (`a//b`), backslashes (a Windows separator that Linux would keep as a character), drive letters
    (`C:x`), control and bidirectional-override characters and over-long names are refused, not repaired:
    a repaired name could collide with a real one."""
    name = unicodedata.normalize("NFC", name)
    if not name:
        raise UnsafeName("empty name")
    if name.startswith("/"):
        raise UnsafeName("absolute path")
    if _DRIVE.match(name):
        raise UnsafeName("Windows drive letter")
    if "\\" in name:
        raise UnsafeName("backslash in name")
    if len(name.encode()) > MAX_PATH_BYTES:
        raise UnsafeName(f"path longer than {MAX_PATH_BYTES} bytes")
    return tuple(safe_segment(segment) for segment in name.split("/"))


def owner_folder(owner: str) -> str:
    return safe_segment(unicodedata.normalize("NFC", owner)) if owner else ANONYMOUS


def published_path(upload: Upload) -> tuple[str, ...]:
    """Where under DIR an upload goes: its owner's folder, then its relativePath, else its filename (one
    name, no folders), else its ID."""
    if upload.relative_path:
        return owner_folder(upload.owner), *safe_relative_path(upload.relative_path)
    name = safe_relative_path(upload.filename or upload.id)
    if len(name) > 1:
        raise UnsafeName("a filename with '/' in it (folders come from relativePath)")
    return owner_folder(upload.owner), *name


def candidates(name: str) -> Iterator[str]:
    """`name`, then `stem (1).ext`, `stem (2).ext` ... (a dotfile's whole name is its stem)."""
    yield name
    dot = name.rfind(".")
    stem, ext = (name[:dot], name[dot:]) if dot > 0 else (name, "")
    for n in range(1, MAX_SUFFIX + 1):
        yield f"{stem} ({n}){ext}"


def place(store: BlobStore, upload_id: str, root: Path, segments: tuple[str, ...]) -> Path:
    """Executor side: create the folders and export the blob under the first free name; the path it got."""
    directory = root.joinpath(*segments[:-1])
    directory.mkdir(parents=True, exist_ok=True)  # FileExistsError when a file stands where a folder goes
    if not directory.resolve().is_relative_to(root.resolve()):
        raise UnsafeName(f"{directory} leads out of the publish dir (a symbolic link)")
    for name in candidates(segments[-1]):
        try:
            store.export(upload_id, directory / name)
            return directory / name
        except FileExistsError:
            continue
    raise FileExistsError(f"{directory / segments[-1]} and {MAX_SUFFIX} numbered variants exist")


class PublishDir:
    """The service's on_published hook for `--publish-dir`; the disk work runs in `executor`."""

    def __init__(self, root: Path, store: BlobStore, executor: Executor) -> None:
        self.root = root
        self.store = store
        self.executor = executor

    async def __call__(self, upload: Upload) -> None:
        if upload.concat == "partial":
            return  # a piece of a final upload, which is published when it is assembled
        try:
            segments = published_path(upload)
            path = await asyncio.get_running_loop().run_in_executor(
                self.executor, place, self.store, upload.id, self.root, segments)
        except UnsafeName as exc:
            log.warning("upload %s not published: unsafe name: %s", upload.id, exc)
        except OSError as exc:
            log.warning("upload %s not published: %s", upload.id, exc)
        else:
            log.info("upload %s published as %s", upload.id, path)
