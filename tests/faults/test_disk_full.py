"""The data directory fills up: a small tmpfs (mounted by the test; CI runs as root) stands in for a full disk.

A PATCH that cannot be stored is answered 507 and records no byte it could not write; a PATCH on a disk
that is already full changes nothing at all; once space is freed the upload resumes and verifies.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from faults import tus_ops
from faults.tus_ops import Source

from support import ServerProcess, patch_upload, stored_sha256

MIB = 1024 * 1024


def test_disk_full_answers_507_keeps_the_offset_and_recovers(
    small_disk: Path, redis_url: str, server_factory: Callable[..., ServerProcess]
) -> None:
    # Redis lives elsewhere: only the upload bytes share the small disk
    server = server_factory("--redis-url", redis_url, data_dir=small_disk)
    filler = small_disk / "filler"
    filler.write_bytes(b"\0" * (6 * MIB))
    source = Source(os.urandom(4 * MIB))
    url = tus_ops.create(server.url, source)

    first = patch_upload(url, 0, source.body)
    assert first.status_code == 507, first.text
    kept = tus_ops.offset(url)
    assert kept < 2 * MIB  # never more than the free space could hold

    again = patch_upload(url, kept, source.body[kept:])
    assert again.status_code == 507
    assert tus_ops.offset(url) == kept  # a PATCH that stored nothing moved nothing

    filler.unlink()
    done = tus_ops.resume(url, source)
    assert done.status_code == 204, done.text
    assert stored_sha256(url) == source.sha256
