"""Checksum algorithms the tus checksum extension accepts, and file hashing both sides need."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

ALGORITHMS: dict[str, Any] = {
    "sha1": hashlib.sha1,
    "sha256": hashlib.sha256,
    "md5": hashlib.md5,
    "sha512": hashlib.sha512,
}
DIGEST_SIZES = {name: factory().digest_size for name, factory in ALGORITHMS.items()}

_READ = 1024 * 1024


def new_hasher(algorithm: str) -> Any:
    """A fresh hashlib object for one of ALGORITHMS (KeyError for anything else)."""
    return ALGORITHMS[algorithm]()


class ShortFile(ValueError):
    """The file ended before the length asked for: it shrank since it was measured."""


def hash_file(path: Path | str, algorithm: str = "sha256", length: int | None = None, *,
              before_block: Callable[[], None] | None = None) -> Any:
    """Hash the first `length` bytes of a file (all of it when None); returns the hashlib object.

    Reads 1 MiB blocks, so a large file is never whole in memory. `before_block` runs before each read:
    a caller that may be told to stop midway (a paused upload hashing a big file) raises from it. A file
    shorter than `length` raises ShortFile.
    """
    hasher = new_hasher(algorithm)
    remaining = length
    with open(path, "rb", buffering=0) as f:
        while remaining is None or remaining > 0:
            if before_block is not None:
                before_block()
            block = f.read(_READ if remaining is None else min(_READ, remaining))
            if not block:
                break
            hasher.update(block)
            if remaining is not None:
                remaining -= len(block)
    if remaining:
        raise ShortFile(f"{path} is shorter than {length} bytes")
    return hasher


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a whole file, read in 1 MiB blocks (never whole in memory)."""
    return str(hash_file(path).hexdigest())
