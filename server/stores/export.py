"""Putting a copy of a blob into a local folder the way `BlobStore.export` promises: complete or not at all,
and never over a file that is already there (a store that cannot hard-link copies through here)."""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterable
from pathlib import Path


def copy_into_place(blocks: Iterable[bytes], target: Path) -> None:
    """Write `blocks` to a hidden file beside `target`, make it durable, then link it to `target`: link() fails
    with FileExistsError rather than replace a file, which rename() would do silently."""
    tmp = target.with_name(f".{secrets.token_hex(8)}.tuskit-tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
    try:
        with os.fdopen(fd, "wb") as out:
            for block in blocks:
                out.write(block)
            out.flush()
            os.fsync(out.fileno())
        os.link(tmp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
