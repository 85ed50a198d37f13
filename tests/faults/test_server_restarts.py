"""The server goes away mid-upload: politely (SIGTERM) or not (kill -9 of it and its embedded Redis).

SIGTERM: the streaming PATCH is answered 503 with the offset that was saved; after a restart HEAD agrees
and the upload resumes. kill -9 at random points of a 100-upload run: afterwards every upload either
completes with the right SHA-256 on resume or ends in a clear error, and none is silently corrupt.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import requests
from faults import tus_ops
from faults.tus_ops import Source
from tus_calls import poll

from support import TUS, ServerProcess, b64, patch_upload, raw_connect, start_server, stored_sha256

MIB = 1024 * 1024


def _on(server: ServerProcess, upload_url: str) -> str:
    """The same upload addressed to another server process (a restart listens on a new port)."""
    return server.url + upload_url.rsplit("/", 1)[1]


@pytest.mark.file_store  # waits until the first bytes reach the file
def test_sigterm_mid_patch_answers_503_keeps_bytes_and_resumes_after_restart(
    server_factory: Callable[..., ServerProcess]
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
RETRY_LATER = (423, 503)


class CrashingServer:
    """A `tuskit server` with its embedded Redis that a killer thread kills with SIGKILL and starts again."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.server = start_server(data_dir)
        self.up = threading.Event()
        self.up.set()
        self.kills = 0
        self.cut_off = 0  # requests a kill left without an answer

    def url(self, upload_id: str = "") -> str:
        return self.server.url + upload_id

    def kill_and_restart(self) -> None:
        self.up.clear()
        redis_pid = int((self.data_dir / "redis" / "redis.pid").read_text())
        os.kill(redis_pid, signal.SIGKILL)
        self.server.proc.kill()
        self.server.proc.wait()
        self.kills += 1
        self.server = start_server(self.data_dir)
        self.up.set()

    def through_kills(self, call: Callable[[], requests.Response]) -> requests.Response:
        """Send a request again when a kill cut it off (no answer at all), once the server is back."""
        while True:
            assert self.up.wait(60), "the server did not come back"
            try:
                return call()
            except requests.ConnectionError:
                self.cut_off += 1

    def stop(self) -> None:
        self.server.stop()


def _create(server: CrashingServer, source: Source) -> str:
    """A new upload's ID (a creation cut off by a kill is sent again; the first, if it landed, is orphaned)."""
    headers = {**TUS, "Upload-Length": str(len(source.body)), "Upload-Metadata": f"sha256 {b64(source.sha256)}"}
    created = server.through_kills(lambda: requests.post(server.url(), headers=headers, timeout=30))
    assert created.status_code == 201, created.text
    return str(created.headers["Location"]).rsplit("/", 1)[1]


def _finish(server: CrashingServer, upload_id: str, source: Source) -> str | None:
    """Resume as a client does until the server has every byte: None when done, else the clear error given."""
    while True:
        head = server.through_kills(lambda: requests.head(server.url(upload_id), headers=TUS, timeout=30))
        if head.status_code in RETRY_LATER:
            continue
        if head.status_code != 200:
            return f"HEAD {head.status_code}: {head.headers.get('X-Request-ID')}"
        at = int(head.headers["Upload-Offset"])
        if at == len(source.body):
            return None
        done = server.through_kills(lambda at=at: patch_upload(server.url(upload_id), at, source.body[at:at + CHUNK]))
        if done.status_code not in (204, 409, *RETRY_LATER):  # 409: an earlier answer was lost, HEAD again
            return f"PATCH {done.status_code}: {done.text.strip()}"


def test_kill_9_at_random_points_of_a_100_upload_run(tmp_path: Path) -> None:
    seed = int(os.environ.get("TUSKIT_FAULT_SEED") or random.randrange(2**32))
    rng = random.Random(seed)
    kill_at = sorted(rng.sample(range(UPLOADS), KILLS))
    sources = [Source(rng.randbytes(rng.randint(1, 4 * CHUNK))) for _ in range(UPLOADS)]
    server = CrashingServer(tmp_path / "data")
    started = [0]  # how many uploads the client has begun

    def killer() -> None:
        for number in kill_at:
            poll(lambda n=number: started[0] > n, timeout=300)
            time.sleep(rng.uniform(0, 0.05))  # not a wait for anything: it picks where in that upload to strike
            server.kill_and_restart()

    thread = threading.Thread(target=killer, name="killer", daemon=True)
    thread.start()
    ids: list[str] = []
    try:
        for source in sources:
            started[0] += 1
            ids.append(_create(server, source))
            _finish(server, ids[-1], source)
        thread.join(120)

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

    summary = f"seed={seed} kills after uploads {kill_at}, outcomes {sorted(set(outcomes.values()))}"
    assert server.kills == KILLS, summary
    assert not [o for o in outcomes.values() if o.startswith("CORRUPT")], summary
    errors = [o for o in outcomes.values() if o != "verified"]
    assert all(o.startswith(("HEAD 404", "HEAD 410", "PATCH 4")) for o in errors), summary
    print(f"kill -9 run: {len(outcomes) - len(errors)} verified, {len(errors)} clear errors, "
          f"{server.cut_off} requests cut off and sent again; {summary}")
