"""`tuskit upload` as a real process against a real tuskit server: a folder, a resumed interruption, a
refusal, --json, plain output when stdout is not a terminal."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest
import requests
from cli_support import journal_offset, run_tuskit, start_tuskit, upload_metadata
from http_fault_proxy import FaultProxy

from support import TUS, ServerProcess, poll, stored_sha256

MiB = 1024 * 1024


def _upload(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_tuskit(tmp_path, "upload", *args)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    root = tmp_path / "photos"
    (root / "2026" / "11").mkdir(parents=True)
    for rel, size in (("a.jpg", 10_000), ("2026/b.raw", 3 * MiB), ("2026/11/c.png", 200_000)):
        (root / rel).write_bytes(os.urandom(size))
    (root / "d.jpg.part").write_bytes(b"still downloading")
    (root / ".thumbs").mkdir()
    (root / ".thumbs" / "a.jpg").write_bytes(b"cache")
    return root


def test_a_folder_and_a_file_are_uploaded_verified_and_keep_their_tree(tmp_path: Path, tus_server: ServerProcess,
                                                                       photos: Path) -> None:
    named = tmp_path / ".profile"  # a FILE named on the command line is uploaded whatever the rules say
    named.write_bytes(b"export X=1\n")
    result = _upload(tmp_path, str(photos), str(named), "--server", tus_server.url, "--jobs", "3")
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "\x1b[" not in out  # not a terminal: plain lines, no redrawn bars
    assert re.search(r"^\d\d:\d\d:\d\d done photos/2026/11/c\.png$", out, re.M), out  # two roots: named by theirs
    assert re.search(r"^\d\d:\d\d:\d\d total 4/4 files, 3\.2 MiB / 3\.2 MiB, ", out, re.M), out
    assert re.search(r"4/4 files verified on the server, 4 uploaded \(3\.2 MiB in [\d.]+ s, .+\), 2 skipped "
                     r"\(-v lists them\)$", out.rstrip()), out
    again = _upload(tmp_path, str(photos), str(named), "--server", tus_server.url, "--json")
    assert again.returncode == 0, again.stdout + again.stderr
    report = json.loads(again.stdout)
    assert (report["ok"], report["done"], report["failed"], report["skipped"], report["bytesSent"]) == (
        True, 4, 0, 2, 0)
    files = {f["relativePath"]: f for f in report["files"]}
    assert set(files) == {"a.jpg", "2026/b.raw", "2026/11/c.png", ".profile"}  # the tree below the root
    for rel, f in files.items():
        local = named if rel == ".profile" else photos / rel
        assert f["alreadyUploaded"] and f["state"] == "done" and f["sha256"] == _sha(local)
        assert stored_sha256(f["url"]) == _sha(local)  # what the server stores, byte for byte
        assert upload_metadata(f["url"]) == {"filename": local.name, "relativePath": rel, "sha256": _sha(local)}


def test_on_a_terminal_each_file_gets_a_bar_and_the_run_a_total_line(tmp_path: Path,
                                                                     tus_server: ServerProcess) -> None:
    (tmp_path / "in").mkdir()
    for name in ("one.bin", "two.bin"):
        (tmp_path / "in" / name).write_bytes(os.urandom(3 * MiB))
    # TTY_COMPATIBLE=1 tells Rich that stdout is a terminal (what a real one tells it through isatty)
    result = run_tuskit(tmp_path, "upload", str(tmp_path / "in"), "--server", tus_server.url, "--bwlimit", "2MiB",
                        "--chunk-size", "256KiB", env={"TTY_COMPATIBLE": "1", "COLUMNS": "100"})
    assert result.returncode == 0, result.stdout + result.stderr
    frames = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", result.stdout)  # drawn in place with escape codes
    assert result.stdout != frames
    bar = re.search(r"(one|two)\.bin +━+.* +\d+% +[\d.]+ [KM]iB / 3\.0 MiB +[\d.]+ [KM]iB/s", frames)
    assert bar, frames
    assert re.search(r"Total ━+.* [01]/2 files, [\d.]+ [KM]iB / 6\.0 MiB, [\d.]+ [KM]iB/s, ETA \d+s", frames), frames
    last = frames.rstrip().splitlines()[-1]  # the bars are erased at the end; the summary stays
    assert re.fullmatch(r"2/2 files verified on the server, 2 uploaded \(6\.0 MiB in [\d.]+ s, .+/s\)", last), last


def test_an_interrupted_upload_resumes_from_the_servers_offset(tmp_path: Path, tus_server: ServerProcess,
                                                               proxy: FaultProxy) -> None:
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(24 * MiB))
    size = big.stat().st_size
    url = proxy.url(tus_server.url)
    journal = tmp_path / "xdg-state" / "tuskit" / "upload.sqlite3"  # the default, beside sync's journal
    first = start_tuskit(tmp_path, "upload", str(big), "--server", url, "--bwlimit", "4MiB", "--chunk-size", "1MiB",
                         "--max-chunk-size", "1MiB")
    try:
        poll(lambda: journal_offset(journal) >= 6 * MiB, timeout=60, what="confirmed bytes")
        first.send_signal(signal.SIGKILL)  # no goodbye: the journal and the server are all a second run has
        first.wait(10)
    finally:
        first.kill()
    [upload_url] = {s.path for s in proxy.seen if s.method == "PATCH"}
    server_has = int(requests.head(tus_server.origin + upload_url, headers=TUS, timeout=10).headers["Upload-Offset"])
    assert 6 * MiB <= server_has < size
    before = proxy.body_bytes
    second = _upload(tmp_path, str(big), "--server", url, "--json")
    assert second.returncode == 0, second.stdout + second.stderr
    [f] = json.loads(second.stdout)["files"]
    assert f["resumedFrom"] == server_has and f["sent"] == size - server_has and not f["alreadyUploaded"]
    assert proxy.body_bytes - before == size - server_has  # not one byte the server had again
    assert stored_sha256(tus_server.origin + upload_url) == _sha(big) == f["sha256"]


def test_ctrl_c_names_the_unfinished_upload_and_exits_130(tmp_path: Path, tus_server: ServerProcess) -> None:
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(8 * MiB))
    journal = tmp_path / "j.db"
    proc = start_tuskit(tmp_path, "upload", str(big), "--server", tus_server.url, "--journal", str(journal),
                        "--bwlimit", "2MiB", "--chunk-size", "256KiB", "--max-chunk-size", "256KiB")
    try:
        poll(lambda: journal_offset(journal) >= MiB, what="confirmed bytes")
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 130, out
    assert re.search(r"unfinished big\.bin: [\d.]+ MiB of 8\.0 MiB confirmed by the server; the same command "
                     r"again resumes it", out), out
    assert "0/1 files verified on the server" in out and "1 unfinished" in out


def test_a_refused_file_fails_the_run_with_the_reason(tmp_path: Path, server_factory: Any) -> None:
    server = server_factory("--max-size", "1000")
    root = tmp_path / "in"
    root.mkdir()
    (root / "small.txt").write_bytes(b"fits")
    (root / "big.bin").write_bytes(b"x" * 5000)
    result = _upload(tmp_path, str(root), "--server", server.url)
    assert result.returncode == 1
    assert re.search(r"failed big\.bin: create: 413 .+", result.stdout), result.stdout
    assert "1/2 files verified on the server, 1 uploaded" in result.stdout and "1 failed" in result.stdout
    report = json.loads(_upload(tmp_path, str(root), "--server", server.url, "--json").stdout)
    assert not report["ok"] and report["failed"] == 1
    [big] = [f for f in report["files"] if f["state"] == "failed"]
    assert big["relativePath"] == "big.bin" and "413" in big["error"]


def test_nothing_there_is_an_error_before_anything_starts(tmp_path: Path, tus_server: ServerProcess) -> None:
    result = _upload(tmp_path, str(tmp_path / "missing.bin"), "--server", tus_server.url)
    assert result.returncode != 0 and "no such file or folder" in result.stderr
