"""The Textual dashboard driven with Pilot over a real engine, real files and a real tuskit server."""

from __future__ import annotations

import asyncio
import hashlib
import io
import random
import re
import socket
import threading
import time
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from engine_support import config
from PIL import Image
from rich_pixels import Pixels
from textual.command import CommandList
from textual.pilot import Pilot
from textual.widgets import RichLog, Static
from textual.widgets.data_table import ColumnKey

from tuskit.desktop.engine.engine import Engine
from tuskit.desktop.ui.app import TuskitApp
from tuskit.desktop.ui.widgets.detail import DetailScreen
from tuskit.desktop.ui.widgets.file_table import FileTable
from tuskit.desktop.ui.widgets.status_bar import StatusBar

from support import ServerProcess, stored_sha256

KiB = 1024
Scenario = Callable[[Pilot[int], TuskitApp], Awaitable[None]]


def drive(cfg: Any, scenario: Scenario, size: tuple[int, int] = (100, 30)) -> TuskitApp:
    """Run the dashboard over a real engine; the app starts and stops the engine itself."""
    app = TuskitApp(Engine(cfg))

    async def main() -> None:
        async with app.run_test(size=size, notifications=True) as pilot:
            await scenario(pilot, app)

    asyncio.run(main())
    return app


async def until(pilot: Pilot[int], condition: Callable[[], object], what: str, timeout: float = 25.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        await pilot.pause(0.05)


def cell(app: TuskitApp, path: Path, column: str) -> str:
    return str(app.query_one(FileTable).get_cell(str(path), column))


def has_row(app: TuskitApp, path: Path) -> bool:
    return str(path) in app.query_one(FileTable).rows


def toasts(app: TuskitApp) -> list[str]:
    return [str(toast.render()) for toast in app.screen.query("Toast")]


def footer(app: TuskitApp) -> dict[str, str]:
    """What each key in the footer says it does now."""
    return {key.key: key.description for key in app.screen.query("FooterKey")}  # type: ignore[attr-defined]


def engine_threads_started_since(before: set[threading.Thread]) -> list[str]:
    """The engine's upload workers still alive that this test started (other tests' leftovers do not count)."""
    return [t.name for t in threading.enumerate() if t not in before and t.name.startswith("tuskit-upload")]


def engine_state(app: TuskitApp, path: Path) -> str | None:
    return next((s.state for s in app.engine.snapshot() if s.path == str(path)), None)


def test_rows_appear_for_dropped_files_progress_moves_and_they_finish(tmp_path: Path,
                                                                      tus_server: ServerProcess) -> None:
    root = tmp_path / "watched"
    root.mkdir()
    big, small = root / "big.bin", root / "notes.txt"
    cfg = config(tmp_path, root, tus_server.url, bandwidth_limit=512 * KiB, chunk_size=256 * KiB)
    percents: set[str] = set()

    async def scenario(pilot: Pilot[int], app: TuskitApp) -> None:
        await pilot.pause()
        big.write_bytes(bytes(range(256)) * (6 * KiB))  # 1.5 MiB, three seconds at the bandwidth limit
        small.write_text("hello\n")
        await until(pilot, lambda: has_row(app, big) and has_row(app, small), "rows for both files")

        def big_done() -> bool:
            percents.add(cell(app, big, "progress").split()[-1])
            return cell(app, big, "state") == "done"

        await until(pilot, big_done, "big.bin done")
        await until(pilot, lambda: cell(app, small, "state") == "done", "notes.txt done")
        assert str(app.query_one("#totals-text", Static).render()).startswith("2/2 done")
        # a finished file has nothing to pause, and nothing failed to retry: neither is offered (the footer
        # is empty for a moment while it is drawn again: wait for the one that offers Remove)
        await until(pilot, lambda: (keys := footer(app)).get("x") == "Remove" and not {"space", "r"} & keys.keys(),
                    "the footer to offer Remove and neither pause nor retry")
        url = app.model.rows[str(big)].url
        assert url is not None and stored_sha256(url) == hashlib.sha256(big.read_bytes()).hexdigest()
        log = "\n".join(line.text for line in app.query_one(RichLog).lines)
        assert "done big.bin" in log and "done notes.txt" in log

    drive(cfg, scenario)
    assert percents & {f"{n}%" for n in range(1, 100)}, f"no progress between 0 and 100% was shown: {percents}"
    assert "100%" in percents


def test_pause_and_resume_the_selected_file_and_everything(tmp_path: Path, tus_server: ServerProcess) -> None:
    root = tmp_path / "watched"
    root.mkdir()
    slow = root / "slow.bin"
    cfg = config(tmp_path, root, tus_server.url, bandwidth_limit=512 * KiB, chunk_size=128 * KiB)

    async def scenario(pilot: Pilot[int], app: TuskitApp) -> None:
        await pilot.pause()
        slow.write_bytes(b"\x5a" * (2048 * KiB))  # four seconds at the limit, PATCHed in chunks
        await until(pilot, lambda: has_row(app, slow) and app.model.rows[str(slow)].url is not None
                    and app.model.rows[str(slow)].sent > 256 * KiB, "chunks on their way")

        await until(pilot, lambda: footer(app).get("space") == "Pause", "the footer to offer pause")
        await pilot.press("space")
        await until(pilot, lambda: cell(app, slow, "state") == "paused", "row paused")
        assert engine_state(app, slow) == "paused"
        await until(pilot, lambda: footer(app).get("space") == "Resume", "the footer to offer resume")
        await pilot.press("space")
        await until(pilot, lambda: engine_state(app, slow) in ("queued", "uploading"), "file resumed")

        await pilot.press("p")
        await until(pilot, lambda: app.model.paused_all, "the engine to announce everything paused")
        assert "paused" in str(app.query_one(StatusBar).render())
        assert cell(app, slow, "state") == "paused"
        await until(pilot, lambda: footer(app).get("p") == "Resume all", "the footer to offer resume all")
        await pilot.press("p")
        await until(pilot, lambda: not app.model.paused_all, "the engine to announce everything resumed")
        await until(pilot, lambda: cell(app, slow, "state") == "done", "slow.bin done after the pauses")
        log = "\n".join(line.text for line in app.query_one(RichLog).lines)
        assert "resuming slow.bin at" in log  # the pauses kept the server's offset: no restart from zero

    drive(cfg, scenario)


def test_leaving_mid_upload_stops_the_engine_and_keeps_the_offset(tmp_path: Path, tus_server: ServerProcess) -> None:
    root = tmp_path / "watched"
    root.mkdir()
    slow = root / "slow.bin"
    cfg = config(tmp_path, root, tus_server.url, bandwidth_limit=512 * KiB, chunk_size=64 * KiB)

    def streaming(app: TuskitApp) -> bool:
        row = app.model.rows.get(str(slow))
        return row is not None and row.url is not None and row.sent > 256 * KiB

    async def scenario(pilot: Pilot[int], app: TuskitApp) -> None:
        await pilot.pause()
        slow.write_bytes(b"\x33" * (2048 * KiB))  # above the engine's creation-with-upload size: PATCHed in chunks
        await until(pilot, lambda: streaming(app), "chunks on their way")
        # leaving run_test now shuts the app down while progress events are still arriving

    before = set(threading.enumerate())
    app = drive(cfg, scenario)
    assert not engine_threads_started_since(before), "the engine was not stopped"
    status = next(s for s in app.engine.snapshot() if s.path == str(slow))
    assert status.state == "queued" and status.url is not None
    assert 0 < status.sent < status.size  # the next start resumes from here


def test_a_refused_file_is_notified_retried_and_removed(tmp_path: Path,
                                                         server_factory: Callable[..., ServerProcess]) -> None:
    server = server_factory("--max-size", "1KiB")
    root = tmp_path / "watched"
    root.mkdir()
    large = root / "too-large.bin"
    cfg = config(tmp_path, root, server.url)

    async def scenario(pilot: Pilot[int], app: TuskitApp) -> None:
        await pilot.pause()
        large.write_bytes(b"x" * (4 * KiB))
        await until(pilot, lambda: has_row(app, large) and cell(app, large, "state") == "failed", "failure")
        await until(pilot, lambda: any("too-large.bin" in t and "413" in t for t in toasts(app)), "failure toast")
        assert "413" in cell(app, large, "note")  # the wide layout says why, next to the name
        await until(pilot, lambda: footer(app).get("r") == "Retry", "the footer to offer retry")
        assert "space" not in footer(app)  # a failed file is retried, not paused

        await pilot.press("r")
        await until(pilot, lambda: any("Queued 1 failed file(s) again" in t for t in toasts(app)), "retry notice")
        await until(pilot, lambda: sum("Upload failed" in t for t in toasts(app)) == 2, "second failure toast")

        await pilot.press("x")
        await until(pilot, lambda: not has_row(app, large), "row removed")
        assert engine_state(app, large) is None
        assert large.exists()  # removing from the queue never deletes anything

    drive(cfg, scenario, size=(130, 30))


def test_an_unreachable_server_shows_offline(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/files/"
    root = tmp_path / "watched"
    root.mkdir()
    cfg = config(tmp_path, root, url)

    async def scenario(pilot: Pilot[int], app: TuskitApp) -> None:
        await pilot.pause()
        (root / "waiting.txt").write_text("for the server\n")
        await until(pilot, lambda: any("Server unreachable" in t for t in toasts(app)), "an unreachable toast")
        await until(pilot, lambda: app.model.offline_tries >= 2, "a second try")
        assert re.search(r"● offline \(try \d+, next in \d+s\)", str(app.query_one(StatusBar).render()))
        log = "\n".join(line.text for line in app.query_one(RichLog).lines)
        assert re.search(r"server unreachable \(try 2, next try in \d+s\): \w+: cannot connect", log), log
        assert "attempt 0" not in log and "asked" not in log
        assert not any("asked us to wait" in t for t in toasts(app))  # down is not rate-limited
        assert cell(app, root / "waiting.txt", "state") == "queued"

    drive(cfg, scenario)


def test_a_rate_limited_server_gets_a_live_countdown(tmp_path: Path,
                                                     server_factory: Callable[..., ServerProcess]) -> None:
    server = server_factory("--rate-limit", "0.25", "--rate-burst", "1")  # one request, then 429 for ~4 s
    root = tmp_path / "watched"
    root.mkdir()
    cfg = config(tmp_path, root, server.url)
    seen: set[str] = set()

    async def scenario(pilot: Pilot[int], app: TuskitApp) -> None:
        await pilot.pause()
        for n in range(3):  # even one request per file (creation-with-upload) is more than the bucket holds
            (root / f"photo{n}.bin").write_bytes(b"p" * (8 * KiB))

        def countdown_moved() -> bool:
            seen.update(t for t in toasts(app) if "All uploads resume in" in t)
            return len(seen) >= 2

        await until(pilot, countdown_moved, "a countdown toast whose seconds change")
        assert " s)" in str(app.query_one(StatusBar).render())  # the header counts down too
        log = "\n".join(line.text for line in app.query_one(RichLog).lines)
        assert "server rate-limited" in log and "server asked to wait" in log

    drive(cfg, scenario)


def noisy_png() -> bytes:
    """About 1 MiB that does not compress, so the upload is still running when the details open."""
    out = io.BytesIO()
    Image.frombytes("RGB", (600, 600), random.Random(7).randbytes(600 * 600 * 3)).save(out, "PNG")
    return out.getvalue()


def test_the_detail_view_follows_an_image_until_done_then_shows_its_thumbnail(
        tmp_path: Path, tus_server: ServerProcess) -> None:
    root = tmp_path / "watched"
    root.mkdir()
    picture = root / "noise.png"
    cfg = config(tmp_path, root, tus_server.url, bandwidth_limit=512 * KiB, chunk_size=128 * KiB)

    async def scenario(pilot: Pilot[int], app: TuskitApp) -> None:
        await pilot.pause()
        picture.write_bytes(noisy_png())
        await until(pilot, lambda: has_row(app, picture) and cell(app, picture, "state") == "uploading", "upload")
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, DetailScreen), "detail view")
        facts = app.screen.query_one("#detail-facts", Static)
        thumbnail = app.screen.query_one("#thumbnail", Static)
        assert "uploading" in str(facts.render()) and not isinstance(thumbnail.content, Pixels)
        await until(pilot, lambda: "done" in str(facts.render()), "the details to follow the upload")
        await until(pilot, lambda: isinstance(thumbnail.content, Pixels), "thumbnail pixels")
        assert "noise.png" in str(facts.render())
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, DetailScreen), "detail closed")

    drive(cfg, scenario)


def test_an_added_folder_is_named_watched_again_at_the_next_start_and_can_be_forgotten(
        tmp_path: Path, tus_server: ServerProcess, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # the folder is typed as a relative path: short to type, resolved by the dialog
    root, extra = tmp_path / "watched", tmp_path / "scans"
    root.mkdir()
    extra.mkdir()
    mine, scan = root / "notes.txt", extra / "scan-001.txt"
    mine.write_text("mine\n")
    scan.write_text("scanned\n")
    cfg = partial(config, tmp_path, root, tus_server.url, remember_roots=True)  # as `tuskit desk` runs it

    async def add(pilot: Pilot[int], app: TuskitApp) -> None:
        await until(pilot, lambda: has_row(app, mine) and cell(app, mine, "name") == "notes.txt", "the first row")
        await pilot.press("a")
        await pilot.press(*"nowhere", "enter")
        assert "not a folder: nowhere" in str(app.screen.query_one("#folder-error", Static).render())
        await pilot.press(*["backspace"] * len("nowhere"), *"scans", "enter")
        await until(pilot, lambda: extra in app.model.roots, "the folder is watched")
        assert str(extra) in str(app.query_one(StatusBar).render())
        await until(pilot, lambda: has_row(app, scan) and cell(app, scan, "state") == "done", "its file uploaded")
        # two folders: each name says which one it is in
        assert (cell(app, scan, "name"), cell(app, mine, "name")) == ("scans/scan-001.txt", "watched/notes.txt")
        await pilot.press("q")

    async def restarted(pilot: Pilot[int], app: TuskitApp) -> None:
        await until(pilot, lambda: has_row(app, scan), "the added folder's file, after a restart")
        assert app.model.roots == [root, extra] and str(extra) in str(app.query_one(StatusBar).render())
        await pilot.press("f")
        await pilot.press("down", "enter")  # the second folder in the list: scans
        await until(pilot, lambda: app.model.roots == [root], "the folder forgotten")
        await until(pilot, lambda: not has_row(app, scan), "its rows gone")
        assert cell(app, mine, "name") == "notes.txt" and scan.exists()
        await pilot.press("q")

    async def forgotten(pilot: Pilot[int], app: TuskitApp) -> None:
        await until(pilot, lambda: has_row(app, mine), "the first row")
        assert app.model.roots == [root] and not has_row(app, scan)
        await pilot.press("q")

    for scenario in (add, restarted, forgotten):
        drive(cfg(), scenario)


def test_the_log_goes_full_screen_and_the_keys_come_back_to_the_table(tmp_path: Path,
                                                                     tus_server: ServerProcess) -> None:
    root = tmp_path / "watched"
    root.mkdir()
    (root / "a.txt").write_text("a\n")

    async def scenario(pilot: Pilot[int], app: TuskitApp) -> None:
        log, table = app.query_one(RichLog), app.query_one(FileTable)
        await until(pilot, lambda: has_row(app, root / "a.txt"), "a row")
        strip = log.size.height
        await pilot.press("l")
        await until(pilot, lambda: log.size.height >= 30 - 2, "the log to fill the screen")
        assert strip <= 12 and app.screen.maximized is log and app.focused is log
        await pilot.press("l")
        await until(pilot, lambda: log.size.height == strip, "the log back to its strip")
        assert app.screen.maximized is None and app.focused is table
        await pilot.press("l", "escape")  # escape also leaves the full-screen log
        await until(pilot, lambda: app.screen.maximized is None and app.focused is table, "the table, after escape")

    drive(config(tmp_path, root, tus_server.url), scenario, size=(100, 30))


def test_the_palette_offers_what_applies_and_quit_stops_the_engine(tmp_path: Path, tus_server: ServerProcess) -> None:
    root = tmp_path / "watched"
    root.mkdir()

    async def scenario(pilot: Pilot[int], app: TuskitApp) -> None:
        await pilot.pause()
        await pilot.press("ctrl+p")
        await pilot.press(*"pause ev")  # fuzzy: only "Pause every upload" matches
        await until(pilot, lambda: app.screen.query_one(CommandList).option_count > 0, "palette hits")
        await pilot.press("enter")
        await until(pilot, lambda: app.model.paused_all, "pause-all from the command palette")
        titles = {command.title for command in app.get_system_commands(app.screen)}
        assert "Resume every upload" in titles and "Pause every upload" not in titles  # only what applies

        await pilot.press("q")
        await until(pilot, lambda: app.return_code == 0, "the app to quit", timeout=15)

    before = set(threading.enumerate())
    drive(config(tmp_path, root, tus_server.url), scenario)
    assert not engine_threads_started_since(before), "the engine was not stopped"


def test_a_journal_in_use_by_another_engine_ends_the_dashboard_with_a_reason(tmp_path: Path,
                                                                             tus_server: ServerProcess) -> None:
    root = tmp_path / "watched"
    root.mkdir()
    other = Engine(config(tmp_path, root, tus_server.url))
    other.start()
    try:
        async def scenario(pilot: Pilot[int], app: TuskitApp) -> None:
            await until(pilot, lambda: app.return_code == 1, "the app to give up")

        app = drive(config(tmp_path, root, tus_server.url), scenario)
    finally:
        other.stop()
    assert app.return_code == 1
    assert not app.model.rows  # nothing was shown as if it were syncing


def test_every_column_fits_at_80_columns_and_a_wider_terminal_gets_the_wide_layout(
        tmp_path: Path, tus_server: ServerProcess) -> None:
    root = tmp_path / "watched"
    root.mkdir()
    (root / "a_rather_long_file_name_from_a_camera_import_0001.jpg").write_bytes(b"j" * 100)
    widths: dict[int, tuple[int, int, int]] = {}

    async def scenario(pilot: Pilot[int], app: TuskitApp) -> None:
        table = app.query_one(FileTable)
        await until(pilot, lambda: table.row_count == 1, "the row")
        for columns, rows in ((80, 24), (160, 48)):
            await pilot.resize_terminal(columns, rows)
            await until(pilot, lambda c=columns: table.size.width == c, "the table to take the new width")
            await pilot.pause()
            progress = table.columns[ColumnKey("progress")].width
            widths[columns] = (table.virtual_size.width, table.size.width, progress)
            assert (ColumnKey("note") in table.columns) == (columns >= 120)  # why a file waits, when there is room
            assert app.query_one(RichLog).size.height >= 4

    drive(config(tmp_path, root, tus_server.url), scenario, size=(80, 24))
    for columns, (content, visible, _) in widths.items():
        assert content <= visible, f"the table scrolls sideways at {columns} columns"
    assert widths[160][2] > widths[80][2]
