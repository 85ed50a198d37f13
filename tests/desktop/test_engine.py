"""The engine watching real folders and uploading to a real tuskit server."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from engine_support import config, running, state_of

from tuskit.desktop.engine import events as ev
from tuskit.desktop.engine.engine import Engine
from tuskit.desktop.engine.runlock import JournalBusy

from support import TUS, ServerProcess, poll, stored_sha256

KiB = 1024
MiB = 1024 * KiB


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _root(tmp_path: Path) -> Path:
    root = tmp_path / "watched"
    root.mkdir()
    return root


def test_file_written_slowly_is_uploaded_once_after_it_stops_changing(tmp_path: Path,
                                                                      tus_server: ServerProcess) -> None:
    root = _root(tmp_path)
    f = root / "scan.pdf"
    with running(config(tmp_path, root, tus_server.url, quiet_seconds=1.5)) as (engine, rec):
        assert engine.wait_idle(30)
        with open(f, "wb") as out:  # a scanner or a download: one writer, pieces over time, closed at the end
            for _ in range(8):
                out.write(os.urandom(64 * KiB))
                out.flush()
                time.sleep(0.15)  # the writer's pace, not synchronisation
            assert rec.of(ev.Queued) == []  # still being written: nothing queued yet
        [done] = poll(lambda: rec.of(ev.Done, str(f)), what="the upload")
        assert engine.wait_idle(30)
        assert done.size == 8 * 64 * KiB
        assert len(rec.of(ev.Queued, str(f))) == 1 and len(rec.of(ev.Started, str(f))) == 1
        assert stored_sha256(done.url) == _sha(f) == done.sha256


def test_atomic_save_uploads_the_destination_only(tmp_path: Path, tus_server: ServerProcess) -> None:
    root = _root(tmp_path)
    target = root / "notes.txt"
    with running(config(tmp_path, root, tus_server.url)) as (engine, rec):
        assert engine.wait_idle(30)
        for version in (b"first draft\n", b"second draft, longer\n"):
            temp = root / "notes.txt.tmp"
            temp.write_bytes(version)
            os.replace(temp, target)  # what editors do on save
            poll(lambda v=version: any(d.size == len(v) for d in rec.of(ev.Done, str(target))),
                     what="the saved version")
        assert engine.wait_idle(30)
        assert {e.path for e in rec.of(ev.Queued)} == {str(target)}
        last = rec.of(ev.Done, str(target))[-1]
        assert stored_sha256(last.url) == _sha(target)


def test_temporary_hidden_and_linked_files_are_not_uploaded(tmp_path: Path, tus_server: ServerProcess) -> None:
    root = _root(tmp_path)
    outside = tmp_path / "outside.jpg"
    outside.write_bytes(b"not in the root")
    with running(config(tmp_path, root, tus_server.url, ignore=["*.bak"])) as (engine, rec):
        assert engine.wait_idle(30)
        for name in ["movie.mkv.part", "x.crdownload", "a.tmp", ".doc.swp", "~$budget.xlsx", ".~lock.a.ods#",
                     "draft~", ".goutputstream-XYZ", "4913", ".DS_Store", ".hidden", "old.bak"]:
            (root / name).write_bytes(b"temporary")
        os.symlink(outside, root / "link.jpg")
        keep = root / "keep.jpg"
        keep.write_bytes(b"a real photo")
        poll(lambda: rec.of(ev.Done, str(keep)), what="keep.jpg")
        assert engine.wait_idle(30)
        assert [s.path for s in engine.snapshot()] == [str(keep)]
        assert {e.path for e in rec.of(ev.Queued)} == {str(keep)}


def test_a_thousand_small_files_and_nothing_twice_after_a_restart(tmp_path: Path, tus_server: ServerProcess) -> None:
    root = _root(tmp_path)
    for i in range(1000):
        sub = root / f"d{i % 10}"
        sub.mkdir(exist_ok=True)
        (sub / f"f{i:04d}.txt").write_bytes(f"file {i}\n".encode() * 10)
    cfg = config(tmp_path, root, tus_server.url, watch=False, quiet_seconds=0.2)
    with running(cfg) as (engine, rec):
        assert engine.wait_idle(240)
        states = [s.state for s in engine.snapshot()]
        assert len(states) == 1000 and set(states) == {"done"}, {s for s in states if s != "done"}
        sample = {d.path: d for d in rec.of(ev.Done)}
        for name in ("d0/f0000.txt", "d7/f0517.txt", "d9/f0999.txt"):
            assert stored_sha256(sample[str(root / name)].url) == _sha(root / name)
    with running(config(tmp_path, root, tus_server.url, watch=False)) as (engine, rec):
        assert engine.wait_idle(60)
        assert rec.of(ev.Queued) == [] and rec.of(ev.Started) == []


def test_restart_resumes_from_the_servers_offset(tmp_path: Path, tus_server: ServerProcess) -> None:
    root = _root(tmp_path)
    f = root / "video.mov"
    f.write_bytes(os.urandom(6 * MiB))
    os.utime(f, (time.time() - 60, time.time() - 60))
    slow = config(tmp_path, root, tus_server.url, chunk_size=MiB, bandwidth_limit=2 * MiB)
    with running(slow) as (engine, _):
        poll(lambda: any(s.sent >= 2 * MiB for s in engine.snapshot()), what="some progress")
    [row] = Engine(slow).snapshot()
    assert row.state == "queued" and row.url
    server_offset = int(requests.head(row.url, headers=TUS, timeout=10).headers["Upload-Offset"])
    assert server_offset >= MiB
    with running(config(tmp_path, root, tus_server.url, chunk_size=MiB)) as (engine, rec):
        [done] = poll(lambda: rec.of(ev.Done, str(f)), what="the resumed upload")
        [started] = rec.of(ev.Started, str(f))
        assert started.url == row.url and started.offset == server_offset > 0
        assert stored_sha256(done.url) == _sha(f)


def test_same_content_is_not_uploaded_again(tmp_path: Path, tus_server: ServerProcess) -> None:
    root = _root(tmp_path)
    f = root / "same.txt"
    f.write_bytes(b"unchanging content")
    with running(config(tmp_path, root, tus_server.url)) as (engine, rec):
        [first] = poll(lambda: rec.of(ev.Done, str(f)), what="the first upload")
        os.utime(f, (time.time() + 5, time.time() + 5))  # touched: new mtime, same bytes
        poll(lambda: len(rec.of(ev.Done, str(f))) == 2, what="the touched version")
        assert engine.wait_idle(30)
        assert len(rec.of(ev.Queued, str(f))) == 2 and len(rec.of(ev.Started, str(f))) == 1
        assert rec.of(ev.Done, str(f))[1].url == first.url
        assert state_of(engine, f) == "done"


def test_folder_moved_in_and_root_added_later_are_scanned(tmp_path: Path, tus_server: ServerProcess) -> None:
    root = _root(tmp_path)
    staging = tmp_path / "staging" / "album"
    staging.mkdir(parents=True)
    (staging / "one.jpg").write_bytes(b"1")
    (staging / "two.jpg").write_bytes(b"22")
    second = tmp_path / "second"
    second.mkdir()
    (second / "three.jpg").write_bytes(b"333")
    with running(config(tmp_path, root, tus_server.url)) as (engine, rec):
        assert engine.wait_idle(30)
        os.rename(staging, root / "album")
        engine.add_root(second)
        wanted = {str(root / "album" / "one.jpg"), str(root / "album" / "two.jpg"), str(second / "three.jpg")}
        poll(lambda: {d.path for d in rec.of(ev.Done)} == wanted, what="the moved-in and added files")


def test_polling_observer_and_coalesced_progress(tmp_path: Path, tus_server: ServerProcess) -> None:
    root = _root(tmp_path)
    cfg = config(tmp_path, root, tus_server.url, poll=True, chunk_size=256 * KiB, bandwidth_limit=4 * MiB)
    with running(cfg) as (engine, rec):
        assert engine.wait_idle(30)
        f = root / "polled.bin"
        f.write_bytes(os.urandom(3 * MiB))
        [done] = poll(lambda: rec.of(ev.Done, str(f)), timeout=60, what="the polled file")
    assert stored_sha256(done.url) == _sha(f)
    progress = rec.of(ev.Progress, str(f))
    assert 0 < len(progress) < 12  # 12 blocks of 256 KiB went out over >= 0.75 s: one event per 0.25 s at most
    assert [p.sent for p in progress] == sorted(p.sent for p in progress)
    assert all(p.size == 3 * MiB and p.bytes_per_second > 0 for p in progress)


def test_a_journal_shared_by_two_folders_shows_each_only_its_own(tmp_path: Path, tus_server: ServerProcess) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    (first / "a.txt").write_bytes(b"a")
    (second / "b.txt").write_bytes(b"b")
    for root in (first, second):
        with running(config(tmp_path, root, tus_server.url, watch=False, quiet_seconds=0.1)) as (engine, _):
            assert engine.wait_idle(30)
            assert [Path(s.path).parent for s in engine.snapshot()] == [root]


def test_one_running_engine_per_journal(tmp_path: Path, tus_server: ServerProcess) -> None:
    root = _root(tmp_path)
    cfg = config(tmp_path, root, tus_server.url)
    with running(cfg):
        second = Engine(config(tmp_path, root, tus_server.url))
        with pytest.raises(JournalBusy, match="another tuskit sync/desk is running"):
            second.start()
        assert second.snapshot() == []  # reading the journal is fine
    with running(cfg) as (engine, _):  # released by stop()
        assert engine.wait_idle(30)
    busy = subprocess.Popen([sys.executable, "-c", "import fcntl, sys, time; f = open(sys.argv[1], 'w'); "
                             "fcntl.flock(f, fcntl.LOCK_EX); print('locked', flush=True); time.sleep(60)",
                             str(cfg.journal_path) + ".lock"], stdout=subprocess.PIPE, text=True)
    try:
        assert busy.stdout is not None and busy.stdout.readline().strip() == "locked"
        with pytest.raises(JournalBusy):
            Engine(cfg).start()
    finally:
        busy.kill()
        busy.wait()
    with running(cfg) as (engine, _):  # a dead holder leaves no stale lock
        assert engine.wait_idle(30)


def test_ever_growing_file_is_uploaded_as_snapshots_then_whole(tmp_path: Path, tus_server: ServerProcess) -> None:
    root = _root(tmp_path)
    f = root / "recording.log"
    with running(config(tmp_path, root, tus_server.url, quiet_seconds=1.0, max_wait_seconds=2.0)) as (engine, rec):
        assert engine.wait_idle(30)
        with open(f, "wb") as out:
            deadline = time.monotonic() + 4.0
            while time.monotonic() < deadline:  # never quiet for a whole second: only the cap releases it
                out.write(os.urandom(16 * KiB))
                out.flush()
                time.sleep(0.1)  # the writer's pace
        final = f.stat().st_size
        poll(lambda: any(d.size == final for d in rec.of(ev.Done, str(f))), what="the whole file")
        assert engine.wait_idle(30)
    done = rec.of(ev.Done, str(f))
    assert len(done) >= 2 and done[0].size < final
    data = f.read_bytes()
    for d in done:  # each snapshot is exactly the prefix it claims, verified by the server's sha256
        assert stored_sha256(d.url) == hashlib.sha256(data[: d.size]).hexdigest() == d.sha256


def test_a_file_deleted_before_its_upload_is_dropped_not_failed(tmp_path: Path, tus_server: ServerProcess) -> None:
    root = _root(tmp_path)
    f = root / "gone-soon.txt"
    f.write_bytes(b"short-lived")
    os.utime(f, (time.time() - 60, time.time() - 60))
    engine = Engine(config(tmp_path, root, tus_server.url, watch=False))
    engine.pause()  # hold the queue so the file is journaled but not uploaded yet
    engine.start()
    try:
        poll(lambda: state_of(engine, f) == "queued", what="the queued file")
        f.unlink()
        engine.resume()
        assert engine.wait_idle(30)
        assert engine.snapshot() == []
    finally:
        engine.stop()
