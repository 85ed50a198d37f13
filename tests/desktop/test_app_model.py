"""The dashboard's model folds engine events into rows, totals and alerts, without Textual or an engine."""

from __future__ import annotations

from pathlib import Path

from tuskit.desktop.engine.events import (
    BackingOff,
    Connection,
    Done,
    Failed,
    Notice,
    Paused,
    Progress,
    Queued,
    Removed,
    Resumed,
    Started,
)
from tuskit.desktop.engine.states import FileStatus
from tuskit.desktop.ui.formatting import (
    human_bytes,
    human_duration,
    human_rate,
    shorten_middle,
    shorten_path,
)
from tuskit.desktop.ui.model import STALE_SPEED_SECONDS, AlertGate, DashboardModel
from tuskit.desktop.ui.widgets.file_table import progress_bar

ROOT = Path("/watched")
A, B = str(ROOT / "a.jpg"), str(ROOT / "sub" / "b.bin")


def model_with(*events: object, now: float = 100.0) -> DashboardModel:
    model = DashboardModel([ROOT])
    for event in events:
        model.apply(event, now)
    return model


def test_an_upload_moves_from_queued_to_done_and_a_batch_touches_each_row_once() -> None:
    model = model_with(Queued(A, 1000), Started(A, 1000, 0, "http://s/files/1"),
                       Progress(A, 400, 1000, 200.0), Progress(A, 600, 1000, 250.0))
    changes = model.take_changes()
    assert changes.rows == {A}
    row = model.rows[A]
    assert (row.state, row.sent, row.fraction, row.url, row.attempts) == ("uploading", 600, 0.6, "http://s/files/1", 1)
    assert row.eta(100.0) == 400 / 250.0
    assert changes.log == []  # a fresh start shows in the table, not the log
    assert model.connection == "online"

    model.apply(Done(A, 1000, "http://s/files/1", "ab" * 32), 101.0)
    changes = model.take_changes()
    assert (model.rows[A].state, model.rows[A].sent, model.rows[A].sha256) == ("done", 1000, "ab" * 32)
    assert changes.log == [("info", "done a.jpg")]
    assert model.take_changes().rows == set()


def test_a_resumed_upload_starts_from_the_servers_offset() -> None:
    model = model_with(Queued(B, 1000), Started(B, 1000, 250, "http://s/files/2"))
    assert model.rows[B].sent == 250
    assert model.take_changes().log == [("info", "resuming sub/b.bin at 25%")]


def test_only_a_final_failure_is_an_alert() -> None:
    model = model_with(Queued(A, 10), Failed(A, "connection reset", 1, False))
    changes = model.take_changes()
    assert changes.alerts == []
    assert changes.log[-1][0] == "warning"
    assert model.rows[A].state == "queued"

    model.apply(Failed(A, "460: checksum mismatch", 3, True), 100.0)
    changes = model.take_changes()
    assert model.rows[A].state == "failed"
    assert model.rows[A].attempts == 3
    assert [(a.severity, a.message) for a in changes.alerts] == [("error", "a.jpg: 460: checksum mismatch")]


def test_a_per_file_backoff_counts_down_in_the_row() -> None:
    model = model_with(Queued(A, 10), BackingOff(A, 7.0, "503"))
    row = model.rows[A]
    assert row.state == "backing-off"
    assert row.retry_at == 107.0
    assert model.take_changes().backoff_started is False


def test_a_server_wide_wait_starts_a_countdown_that_ends_by_itself() -> None:
    model = model_with(BackingOff(None, 30.0, "429 Too Many Requests"))
    changes = model.take_changes()
    assert changes.backoff_started and changes.status
    assert model.connection == "rate-limited"
    assert model.backoff_left(110.0) == 20.0

    model.apply(BackingOff(None, 5.0, "429"), 110.0)  # shorter than what is left: not a new countdown
    assert model.take_changes().backoff_started is False
    model.apply(BackingOff(None, 60.0, "429"), 110.0)
    assert model.take_changes().backoff_started is True

    model.tick(169.0)
    assert model.backoff_left(169.0) == 1.0
    model.tick(170.0)
    assert model.backoff_left(170.0) is None
    assert model.connection == "online"


def test_the_engines_connection_report_wins_over_guesses() -> None:
    model = model_with(Connection("offline", "connection refused"), Progress(A, 1, 10, 1.0))
    assert (model.connection, model.connection_detail) == ("offline", "connection refused")
    changes = model.take_changes()
    assert changes.log[0] == ("warning", "server offline: connection refused")
    assert [(a.title, a.message) for a in changes.alerts] == [("Server offline", "connection refused")]
    model.apply(Connection("online"), 100.0)
    assert model.connection == "online"


def test_pause_all_spares_finished_files_and_resume_requeues_paused_ones() -> None:
    model = model_with(Queued(A, 10), Queued(B, 10), Done(B, 10, "u", "s"), Paused(None))
    assert model.paused_all
    assert [model.rows[A].state, model.rows[B].state] == ["paused", "done"]
    model.apply(Resumed(None), 100.0)
    assert not model.paused_all
    assert [model.rows[A].state, model.rows[B].state] == ["queued", "done"]

    model.apply(Paused(A), 100.0)
    assert model.rows[A].state == "paused" and not model.paused_all

    model.apply(Paused(None), 100.0)
    model.apply(Queued(str(ROOT / "new.jpg"), 5), 100.0)  # the engine holds new files while everything waits
    assert model.rows[str(ROOT / "new.jpg")].state == "paused"


def test_a_storm_of_failures_becomes_a_few_toasts_and_one_summary() -> None:
    model = model_with(*(Failed(str(ROOT / f"f{n}"), "413: too large", 1, True) for n in range(50)))
    changes = model.take_changes()
    assert len(changes.alerts) == 50 and len([t for level, t in changes.log if level == "error"]) == 50

    gate = AlertGate(limit=3, window=10.0)
    assert gate.admit(changes.alerts[:40], 100.0) == changes.alerts[:3]
    assert gate.admit(changes.alerts[40:], 105.0) == []
    assert gate.flush(109.0) is None  # the window is still full
    summary = gate.flush(110.0)
    assert summary is not None
    assert (summary.severity, summary.message) == ("error", "47 more problems; the log (l) lists them")
    assert gate.flush(111.0) is None
    assert gate.admit(changes.alerts[:1], 111.0) == changes.alerts[:1]  # room for two more in this window


def test_removed_rows_disappear() -> None:
    model = model_with(Queued(A, 10), Queued(B, 10))
    model.take_changes()
    model.apply(Removed(A), 100.0)
    changes = model.take_changes()
    assert list(model.rows) == [B]
    assert changes.removed == {A} and A not in changes.rows


def test_notices_log_and_warnings_alert_and_unknown_events_are_harmless() -> None:
    model = model_with(Notice("root added"), Notice("watch limit reached", "warning"), object())
    changes = model.take_changes()
    assert [a.message for a in changes.alerts] == ["watch limit reached"]
    assert changes.log[0] == ("info", "root added")
    assert changes.log[2][1].startswith("unhandled engine event")


def test_throughput_sums_moving_files_and_forgets_stalled_ones() -> None:
    model = model_with(Queued(A, 1000), Started(A, 1000, 0, "u"), Progress(A, 100, 1000, 300.0),
                       Queued(B, 500), Started(B, 500, 0, "v"), Progress(B, 50, 500, 100.0))
    totals = model.totals(101.0)
    assert (totals.files, totals.size, totals.sent, totals.bytes_per_second) == (2, 1500, 150, 400.0)
    assert totals.by_state == {"uploading": 2}
    assert model.totals(100.0 + STALE_SPEED_SECONDS + 1).bytes_per_second == 0.0
    model.tick(101.0)
    assert model.history[-1] == 400.0


def test_a_snapshot_fills_rows_for_a_late_dashboard() -> None:
    model = DashboardModel([ROOT])
    model.load([FileStatus(A, 10, 4, "paused", None, "u", 1), FileStatus("/elsewhere/c", 5, 5, "done", None, "w", 1)],
               100.0)
    assert model.take_changes().rows == {A, "/elsewhere/c"}
    assert model.rows[A].state == "paused"
    assert model.display_name("/elsewhere/c") == "c"


def test_formatting_keeps_cells_short() -> None:
    assert [human_bytes(n) for n in (0, 1023, 1536, 150 * 1024**2, 3 * 1024**4)] == [
        "0 B", "1023 B", "1.5 KiB", "150 MiB", "3.0 TiB"]
    assert human_rate(0) == human_duration(None) == human_duration(-1)
    assert human_rate(2048) == "2.0 KiB/s"
    assert [human_duration(s) for s in (0.2, 42, 187, 3900)] == ["1s", "42s", "3m07s", "1h05m"]
    assert shorten_middle("holiday_0001_final.jpeg", 11) == "holid….jpeg"
    assert shorten_middle("short", 11) == "short"
    assert shorten_path("2026-11/DSC_1040.ARW", 18) == "20…11/DSC_1040.ARW"
    assert shorten_path("2026-11/DSC_1040.ARW", 12) == "DSC_1040.ARW"
    assert shorten_path("a/very_long_name.jpeg", 12) == "very_…e.jpeg"
    assert [len(progress_bar(f, 8, "cyan").plain) for f in (0, 0.33, 1)] == [13, 13, 13]
