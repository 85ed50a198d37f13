"""The server goes away mid-upload: politely (SIGTERM) or not (kill -9 of it and its embedded Redis).

SIGTERM: the streaming PATCH is answered 503 with the offset that was saved; after a restart HEAD agrees
and the upload resumes. kill -9 at random points of a 100-upload run: afterwards every upload either
completes with the right SHA-256 on resume or ends in a clear error, and none is silently corrupt.
"""

from __future__ import annotations

import os
import random
import signal
from collections.abc import Callable
from pathlib import Path

import requests
from faults import tus_ops
from faults.tus_ops import Source
from tus_calls import poll

from support import TUS, ServerProcess, patch_upload, raw_connect, start_server, stored_sha256

MIB = 1024 * 1024


def _on(server: ServerProcess, upload_url: str) -> str:
    """The same upload addressed to another server process (a restart listens on a new port)."""
    return server.url + upload_url.rsplit("/", 1)[1]


def test_sigterm_mid_patch_answers_503_keeps_bytes_and_resumes_after_restart(
    server_factory: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    server = server_factory()
    source = Source(os.urandom(3 * MIB))
    url = tus_ops.create(server.url, source)
    stored = server.data_dir / "uploads" / url.rsplit("/", 1)[1]
    sent = 3 * MIB // 2
    sock = raw_connect(url)
    try:
        sock.sendall(tus_ops.patch_head(url, 0, len(source.body)) + source.body[:sent])
        poll(lambda: stored.stat().st_size > 0)  # the first bytes reached the disk
        on_disk = stored.stat().st_size
        server.proc.send_signal(signal.SIGTERM)
        response = tus_ops.answer(sock)
    finally:
        sock.close()
    assert response is not None and response.status == 503
    assert int(response.headers["Retry-After"]) > 0
    saved = int(response.headers["Upload-Offset"])
    assert on_disk <= saved <= sent
    assert server.proc.wait(30) == 0

    restarted = server_factory(data_dir=server.data_dir)
    url = _on(restarted, url)
    assert tus_ops.offset(url) == saved
    assert tus_ops.resume(url, source).status_code == 204
    assert stored_sha256(url) == source.sha256


KILLS = 4
UPLOADS = 100
CHUNK = 64 * 1024
PHASES = ("after-create", "mid-patch", "after-complete")


class CrashingServer:
    """A `tuskit server` with its embedded Redis that the test kills with SIGKILL and starts again."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.server = start_server(data_dir)
        self.kills = 0

    def url(self, upload_id: str) -> str:
        return self.server.url + upload_id

    def kill_and_restart(self) -> None:
        redis_pid = int((self.data_dir / "redis" / "redis.pid").read_text())
        os.kill(redis_pid, signal.SIGKILL)
        self.server.proc.kill()
        self.server.proc.wait()
        self.kills += 1
        self.server = start_server(self.data_dir)

    def stop(self) -> None:
        self.server.stop()


def _finish(server: CrashingServer, upload_id: str, source: Source) -> str | None:
    """Resume until the server has every byte; None when done, else the clear error the server gave."""
    url = server.url(upload_id)
    while True:
        head = requests.head(url, headers=TUS, timeout=30)
        if head.status_code != 200:
            return f"HEAD {head.status_code} {head.headers.get('X-Request-ID')}"
        at = int(head.headers["Upload-Offset"])
        if at == len(source.body):
            return None
        done = patch_upload(url, at, source.body[at:at + CHUNK])
        if done.status_code != 204:
            return f"PATCH {done.status_code}: {done.text.strip()}"


def _patch_then_crash(server: CrashingServer, upload_id: str, source: Source) -> None:
    """Start the first PATCH, get half its body to the server, and kill -9 the server under it."""
    url = server.url(upload_id)
    chunk = source.body[:CHUNK]
    with raw_connect(url) as sock:
        sock.sendall(tus_ops.patch_head(url, 0, len(chunk)) + chunk[: len(chunk) // 2])
        server.kill_and_restart()


def test_kill_9_at_random_points_of_a_100_upload_run(tmp_path: Path) -> None:
    seed = int(os.environ.get("TUSKIT_FAULT_SEED") or random.randrange(2**32))
    rng = random.Random(seed)
    kills = dict(zip(rng.sample(range(UPLOADS), KILLS), rng.choices(PHASES, k=KILLS), strict=True))
    sources = [Source(rng.randbytes(rng.randint(1, 4 * CHUNK))) for _ in range(UPLOADS)]
    server = CrashingServer(tmp_path / "data")
    ids: list[str] = []
    try:
        for number, source in enumerate(sources):
            upload_id = tus_ops.create(server.server.url, source).rsplit("/", 1)[1]
            ids.append(upload_id)
            phase = kills.get(number)
            if phase == "after-create":
                server.kill_and_restart()
            elif phase == "mid-patch":
                _patch_then_crash(server, upload_id, source)
            _finish(server, upload_id, source)
            if phase == "after-complete":
                server.kill_and_restart()

        # Afterwards, as a client with a journal would: resume whatever is not complete, then check every file.
        outcomes: dict[str, str] = {}
        for upload_id, source in zip(ids, sources, strict=True):
            error = _finish(server, upload_id, source)
            if error is None:
                digest = stored_sha256(server.url(upload_id))
                outcomes[upload_id] = "verified" if digest == source.sha256 else f"CORRUPT: sha256 {digest}"
            else:
                outcomes[upload_id] = error
    finally:
        server.stop()

    summary = f"seed={seed} kills={kills} outcomes={sorted(set(outcomes.values()))}"
    assert server.kills == KILLS, summary
    assert not [o for o in outcomes.values() if o.startswith("CORRUPT")], summary
    errors = [o for o in outcomes.values() if o != "verified"]
    assert all(o.startswith(("HEAD 404", "HEAD 410", "PATCH 4")) for o in errors), summary
    print(f"kill -9 run: {len(outcomes) - len(errors)} verified, {len(errors)} clear errors; {summary}")
