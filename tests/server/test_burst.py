"""A burst of simultaneous uploads is served, not refused: every request waits its turn for Redis."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from support import ServerProcess, create_upload, patch_upload

BURST = 200  # more than redis-py's default pool of 100 connections, which refused the rest with 503


def test_burst_of_uploads_all_complete(tus_server: ServerProcess) -> None:
    start = threading.Barrier(BURST)
    body = b"x" * 1024

    def upload(_: int) -> tuple[int, int, str]:
        start.wait(timeout=60)
        created = create_upload(tus_server.url, len(body))
        if created.status_code != 201:
            return created.status_code, 0, created.text
        patched = patch_upload(created.headers["Location"], 0, body)
        return patched.status_code, int(patched.headers.get("Upload-Offset", -1)), patched.text

    with ThreadPoolExecutor(BURST) as pool:
        outcomes = list(pool.map(upload, range(BURST)))
    failures = [o for o in outcomes if o[:2] != (204, len(body))]
    assert failures == []
