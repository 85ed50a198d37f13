"""Storage under hostile or unlucky use: amplification by concatenation, uploads kept alive by slow
progress, a full disk under the embedded redis, records and directories that would never go.

Real server processes, a real Redis, real files; a small tmpfs (mounted here, skipped where that is not
allowed) stands in for a full disk.
"""

from __future__ import annotations

import io
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
from PIL import Image
from tus_calls import metric

from support import (
    TUS,
    ServerProcess,
    create_upload,
    patch_upload,
    poll,
)

MIB = 1024 * 1024


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """An 8 MiB tmpfs, skipped where mounting is impossible (not root, no CAP_SYS_ADMIN)."""
    mount_point = tmp_path / "small"
    mount_point.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount_point)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {mounted.stderr.strip()}")
    yield mount_point
    subprocess.run(["umount", "-l", str(mount_point)], check=False)


def _partial(server: ServerProcess, length: int | None, data: bytes | None = None) -> str:
    created = create_upload(server.url, length, headers={"Upload-Concat": "partial"}, data=data)
    assert created.status_code == 201, created.text
    return str(created.headers["Location"])


def _final(server: ServerProcess, parts: list[str]) -> requests.Response:
    return requests.post(server.url, headers={**TUS, "Upload-Concat": "final;" + " ".join(parts)}, timeout=60)


def _upload_id(url: str) -> str:
    return url.rsplit("/", 1)[1]


# ---- records and directories that must go ----------------------------------------------------------

def _slow_png() -> bytes:
    """A small file that takes a while to decode, so its analysis outlives a DELETE sent right after."""
    buf = io.BytesIO()
    Image.new("RGB", (5000, 5000), "red").save(buf, "PNG")
    return buf.getvalue()


def test_delete_right_after_the_last_patch_leaves_no_derived_directory(
    server_factory: Callable[..., ServerProcess]
) -> None:
    srv = server_factory()
    data = _slow_png()
    url = create_upload(srv.url, len(data)).headers["Location"]
    assert patch_upload(url, 0, data).status_code == 204
    assert requests.delete(url, headers=TUS, timeout=10).status_code == 204
    poll(lambda: metric(srv.origin, "tuskit_uploads_processed_total") >= 1
         or any("post-processing" in line for line in srv.output), what="the analysis to end")
    assert not (srv.data_dir / "derived" / _upload_id(url)).exists()
