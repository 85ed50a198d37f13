"""The stabiliser's rules, driven with explicit clock values over real files."""

from __future__ import annotations

import os
from pathlib import Path

from tuskit.desktop.watch.stabiliser import Ready, Stabiliser, stat_file


def _write(path: Path, data: bytes, mtime_ns: int | None = None) -> None:
    path.write_bytes(data)
    if mtime_ns is not None:
        os.utime(path, ns=(mtime_ns, mtime_ns))


def test_ready_after_quiet_period_when_two_stats_agree(tmp_path: Path) -> None:
    f = tmp_path / "a.jpg"
    _write(f, b"x" * 10)
    s = Stabiliser(quiet=2.0)
    s.note(str(f), now=100.0)
    assert s.poll(101.9) == []
    _, mtime = stat_file(str(f)) or (0, 0)
    assert s.poll(102.0) == [Ready(str(f), 10, mtime, snapshot=False)]
    assert len(s) == 0


def test_events_restart_the_quiet_period(tmp_path: Path) -> None:
    f = tmp_path / "a.jpg"
    _write(f, b"x")
    s = Stabiliser(quiet=2.0)
    s.note(str(f), now=100.0)
    _write(f, b"xy")
    s.note(str(f), now=101.5)
    assert s.poll(102.0) == []  # only 0.5 s quiet since the last write
    assert [r.size for r in s.poll(103.5)] == [2]


def test_change_without_event_needs_another_quiet_period(tmp_path: Path) -> None:
    f = tmp_path / "a.jpg"
    _write(f, b"x", mtime_ns=1_000_000_000)
    s = Stabiliser(quiet=2.0)
    s.note(str(f), now=100.0)
    _write(f, b"xyz", mtime_ns=2_000_000_000)  # e.g. a poller that missed it, or an mmap write
    assert s.poll(102.0) == []
    assert s.next_due() == 104.0
    assert [r.size for r in s.poll(104.0)] == [3]


def test_close_event_shortens_the_wait(tmp_path: Path) -> None:
    f = tmp_path / "a.jpg"
    _write(f, b"x")
    s = Stabiliser(quiet=2.0, close_grace=0.3)
    s.note(str(f), now=100.0, closed=True)
    assert [r.path for r in s.poll(100.3)] == [str(f)]


def test_ever_growing_file_is_released_as_snapshot_at_the_cap(tmp_path: Path) -> None:
    f = tmp_path / "grow.log"
    s = Stabiliser(quiet=1.0, max_wait=5.0)
    _write(f, b"1", mtime_ns=1)
    s.note(str(f), now=0.0)
    released: list[Ready] = []
    t, n = 0.0, 1
    while not released and t < 20:
        t += 1.0
        n += 1
        _write(f, b"1" * n, mtime_ns=n)  # grows every second, faster than the quiet period
        released = s.poll(t)
    assert released and released[0].snapshot
    assert 5.0 <= t <= 6.0


def test_cap_holds_even_while_events_keep_coming(tmp_path: Path) -> None:
    f = tmp_path / "stream.ts"
    s = Stabiliser(quiet=1.0, max_wait=3.0)
    released: list[Ready] = []
    t = 0.0
    while not released and t < 10:
        _write(f, b"x" * int(1 + 10 * t), mtime_ns=int(1e9 * t) + 1)
        s.note(str(f), now=t)  # an event every 0.1 s: never quiet
        released = s.poll(t)
        t = round(t + 0.1, 1)
    assert released and released[0].snapshot and 3.0 <= t <= 3.2


def test_vanished_and_non_regular_paths_are_dropped(tmp_path: Path) -> None:
    f = tmp_path / "gone.tmp"
    _write(f, b"x")
    s = Stabiliser(quiet=1.0)
    s.note(str(f), now=0.0)
    s.note(str(tmp_path), now=0.0)
    f.unlink()
    assert s.poll(5.0) == []
    assert len(s) == 0


def test_forget(tmp_path: Path) -> None:
    f = tmp_path / "a"
    _write(f, b"x")
    s = Stabiliser(quiet=1.0)
    s.note(str(f), now=0.0)
    s.forget(str(f))
    assert s.poll(5.0) == [] and s.next_due() is None
