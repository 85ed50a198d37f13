"""The data directory fills up: a small tmpfs (mounted by the test; CI runs as root) stands in for a full disk.

A PATCH that cannot be stored is answered 507 and records no byte it could not write; a PATCH on a disk
that is already full changes nothing at all; once space is freed the upload resumes and verifies.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
import requests
from faults import tus_ops
from faults.tus_ops import Source

from support import TUS, ServerProcess, patch_upload, stored_sha256

pytestmark = pytest.mark.file_store  # a full disk is the file store's failure

MIB = 1024 * 1024


def test_disk_full_answers_507_keeps_the_offset_and_recovers(
    small_disk: Path, redis_url: str, server_factory: Callable[..., ServerProcess]
) -> None:
    # Redis lives elsewhere: only the upload bytes share the small disk
    server = server_factory("--redis-url", redis_url, data_dir=small_disk)
    source = Source(os.urandom(4 * MIB))
    url = tus_ops.create(server.url, source)  # created while it fits: the disk fills up during the upload
    filler = small_disk / "filler"
    filler.write_bytes(b"\0" * (6 * MIB))
    too_big = requests.post(server.url, headers={**TUS, "Upload-Length": str(4 * MIB)}, timeout=30)
    assert too_big.status_code == 413  # a new upload the disk cannot hold now is refused up front

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
