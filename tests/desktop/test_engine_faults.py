"""The engine's policy against real misbehaviour: 429 with Retry-After, 460, pauses, files changing mid-upload.

A real HTTP proxy on loopback (http_fault_proxy) sits between the engine and a real tuskit server.
"""

from __future__ import annotations

import hashlib
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from engine_support import config, running, state_of
from http_fault_proxy import FaultProxy, Faults

from tuskit.desktop.engine import events as ev

from support import TUS, ServerProcess, poll, stored_sha256

MiB = 1024 * 1024


@pytest.fixture
def proxy(tus_server: ServerProcess) -> Iterator[FaultProxy]:
    p = FaultProxy(tus_server.origin).start()
    yield p
    p.stop()


def _file(tmp_path: Path, name: str, size: int) -> tuple[Path, Path]:
    root = tmp_path / "watched"
    root.mkdir(exist_ok=True)
    f = root / name
    f.write_bytes(os.urandom(size))
    os.utime(f, (time.time() - 60, time.time() - 60))  # settled long ago: the startup scan takes it at once
    return root, f


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_429_retry_after_is_honoured_by_every_worker(tmp_path: Path, proxy: FaultProxy,
                                                     tus_server: ServerProcess) -> None:
    root, f = _file(tmp_path, "a.bin", 100_000)
    (root / "b.bin").write_bytes(b"b" * 1000)
    proxy.faults = Faults(reject_first=3, reject_status=429, retry_after="1")
    with running(config(tmp_path, root, proxy.url(tus_server.url), workers=2)) as (engine, rec):
        poll(lambda: len(rec.of(ev.Done)) == 2, what="both uploads")
        assert engine.wait_idle(30)
    waits = rec.of(ev.BackingOff, None)
    assert waits and all(w.seconds >= 1.0 for w in waits)
    assert any(isinstance(e, ev.Connection) and e.state == "rate-limited" for e in rec.events)
    seen = proxy.seen
    last_429 = max(s.at for s in seen if s.status == 429)
    came_back = min(s.arrived for s in seen if s.arrived > last_429)
    assert came_back - last_429 >= 0.9  # nobody came back before the server said so
    assert stored_sha256(rec.of(ev.Done, str(f))[0].url) == _sha(f)
    assert all(not e.final for e in rec.of(ev.Failed))


def test_460_restarts_the_file_once_from_scratch(tmp_path: Path, proxy: FaultProxy,
                                                  tus_server: ServerProcess) -> None:
    root, f = _file(tmp_path, "photo.raw", 2 * MiB)  # above SMALL_FILE: created empty, then PATCHed
    proxy.faults = Faults(corrupt_bodies=1)
    with running(config(tmp_path, root, proxy.url(tus_server.url))) as (engine, rec):
        [done] = poll(lambda: rec.of(ev.Done, str(f)), what="the upload after the restart")
        assert engine.wait_idle(30)
    [failed] = rec.of(ev.Failed, str(f))
    assert "460" in failed.error and not failed.final
    starts = rec.of(ev.Started, str(f))
    assert len(starts) == 2 and starts[0].url != starts[1].url and starts[1].offset == 0
    assert [m for m, _ in proxy.methods() if m == "POST"] == ["POST", "POST"]
    assert stored_sha256(done.url) == _sha(f)


def test_460_twice_fails_with_the_reason_until_retried(tmp_path: Path, proxy: FaultProxy,
                                                       tus_server: ServerProcess) -> None:
    root, f = _file(tmp_path, "photo.raw", 50_000)  # small: the bytes go in the creation POST
    proxy.faults = Faults(corrupt_bodies=2)
    with running(config(tmp_path, root, proxy.url(tus_server.url))) as (engine, rec):
        poll(lambda: [e for e in rec.of(ev.Failed, str(f)) if e.final], what="the final failure")
        assert engine.wait_idle(30)
        [row] = engine.snapshot()
        assert row.state == "failed" and "sha256" in (row.error or "")
        assert engine.retry_failed() == 1
        [done] = poll(lambda: rec.of(ev.Done, str(f)), what="the retried upload")
        assert stored_sha256(done.url) == _sha(f)


def test_pause_and_resume_one_file_and_everything(tmp_path: Path, tus_server: ServerProcess) -> None:
    root, f = _file(tmp_path, "slow.bin", 3 * MiB)
    _, g = _file(tmp_path, "other.bin", 3 * MiB)
    cfg = config(tmp_path, root, tus_server.url, chunk_size=256 * 1024, bandwidth_limit=2 * MiB)
    with running(cfg) as (engine, rec):
        poll(lambda: any(s.sent > 0 for s in engine.snapshot() if s.path == str(f)), what="progress")
        engine.pause(str(f))
        poll(lambda: state_of(engine, f) == "paused", what="the paused state")
        url = rec.of(ev.Started, str(f))[0].url
        poll(lambda: rec.of(ev.Done, str(g)), what="the other file, which was not paused")
        assert state_of(engine, f) == "paused" and not rec.of(ev.Done, str(f))
        kept = int(requests.head(url, headers=TUS, timeout=10).headers["Upload-Offset"])  # settled by now
        engine.resume(str(f))
        poll(lambda: rec.of(ev.Done, str(f)), what="the resumed file")
        resumed = rec.of(ev.Started, str(f))[-1]
        assert (resumed.url, resumed.offset) == (url, kept) and kept > 0  # continued, not restarted
        assert rec.of(ev.Paused, str(f)) and rec.of(ev.Resumed, str(f))

        h = root / "third.bin"
        h.write_bytes(os.urandom(2 * MiB))
        poll(lambda: any(s.sent > 0 for s in engine.snapshot() if s.path == str(h)), what="progress on h")
        engine.pause()
        poll(lambda: state_of(engine, h) == "queued", what="h back in the (held) queue")
        assert not engine.wait_idle(0.3) and not rec.of(ev.Done, str(h))
        engine.resume()
        poll(lambda: rec.of(ev.Done, str(h)), what="h after resume all")
        assert stored_sha256(rec.of(ev.Done, str(h))[0].url) == _sha(h)
        assert rec.of(ev.Paused, None) and rec.of(ev.Resumed, None)


def test_file_changed_during_upload_is_requeued_and_uploaded_as_changed(tmp_path: Path,
                                                                       tus_server: ServerProcess) -> None:
    root, f = _file(tmp_path, "growing.bin", 2 * MiB)
    cfg = config(tmp_path, root, tus_server.url, chunk_size=256 * 1024, bandwidth_limit=2 * MiB)
    with running(cfg) as (engine, rec):
        poll(lambda: any(s.sent > 0 for s in engine.snapshot() if s.path == str(f)), what="progress")
        with open(f, "ab") as out:
            out.write(os.urandom(MiB))
        [done] = poll(lambda: rec.of(ev.Done, str(f)), timeout=60, what="the changed file")
        assert done.size == 3 * MiB
        assert stored_sha256(done.url) == _sha(f)
        assert any("changed during its upload" in n.message for n in rec.of(ev.Notice))


def test_remove_drops_a_file_from_the_queue(tmp_path: Path, tus_server: ServerProcess) -> None:
    root, f = _file(tmp_path, "unwanted.bin", 3 * MiB)
    cfg = config(tmp_path, root, tus_server.url, chunk_size=256 * 1024, bandwidth_limit=MiB)
    with running(cfg) as (engine, rec):
        poll(lambda: any(s.sent > 0 for s in engine.snapshot()), what="progress")
        engine.remove(str(f))
        assert engine.wait_idle(30)
        assert engine.snapshot() == [] and rec.of(ev.Removed, str(f)) and not rec.of(ev.Done)
        assert f.exists()


def test_the_servers_own_rate_limit_is_waited_out(tmp_path: Path, server_factory) -> None:  # type: ignore[no-untyped-def]
    server = server_factory("--rate-limit", "10", "--rate-burst", "4")
    root = tmp_path / "watched"
    root.mkdir()
    for i in range(20):
        (root / f"f{i}.txt").write_bytes(f"{i}".encode() * 100)
    with running(config(tmp_path, root, server.url, watch=False, quiet_seconds=0.1)) as (engine, rec):
        assert engine.wait_idle(120)
        assert {s.state for s in engine.snapshot()} == {"done"} and len(engine.snapshot()) == 20
    waits = rec.of(ev.BackingOff, None)
    assert waits and all(w.seconds > 0 and "429" in w.reason for w in waits)
    assert not [e for e in rec.of(ev.Failed) if e.final]


def test_a_patch_refused_by_the_rate_limit_resumes_without_a_head(tmp_path: Path, server_factory) -> None:  # type: ignore[no-untyped-def]
    # one request a second: a HEAD before each retried PATCH would spend the only token the wait freed,
    # and the PATCH would be refused again, for ever
    server = server_factory("--rate-limit", "1", "--rate-burst", "1")
    root, f = _file(tmp_path, "big.bin", 3 * MiB)
    cfg = config(tmp_path, root, server.url, watch=False, quiet_seconds=0.1, chunk_size=MiB, max_chunk_size=MiB)
    with running(cfg) as (_engine, rec):
        [done] = poll(lambda: rec.of(ev.Done, str(f)), timeout=60, what="the rate-limited upload")
    assert rec.of(ev.BackingOff, None)  # the limit was hit and waited out
    heads = [line for line in server.output if " HEAD /files/" in line]
    assert heads == []  # every refused PATCH was re-sent at the offset the server confirmed last
    served = poll(lambda: (r := requests.get(done.url, timeout=30)).status_code != 429 and r, what="the download")
    assert hashlib.sha256(served.content).hexdigest() == _sha(f)


def test_an_unreachable_server_is_waited_for_without_spending_attempts(tmp_path: Path,
                                                                       tus_server: ServerProcess) -> None:
    root, f = _file(tmp_path, "made-offline.bin", 20_000)
    with socket.socket() as probe:  # a port nothing listens on: connection refused, like a sleeping laptop
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with running(config(tmp_path, root, f"http://127.0.0.1:{port}/files/", max_attempts=2)) as (engine, rec):
        poll(lambda: len(rec.of(ev.Failed, str(f))) >= 3, what="three failed attempts")  # > max_attempts
        assert not [e for e in rec.of(ev.Failed) if e.final] and state_of(engine, f) != "failed"
        assert rec.of(ev.BackingOff, None) and ev.Connection("offline", rec.of(ev.Failed)[0].error) in rec.events
        proxy = FaultProxy(tus_server.origin).start(port)  # the server is back
        try:
            [done] = poll(lambda: rec.of(ev.Done, str(f)), timeout=60, what="the upload once reachable")
            assert stored_sha256(done.url) == _sha(f)
        finally:
            proxy.stop()
    assert any(isinstance(e, ev.Connection) and e.state == "online" for e in rec.events)
