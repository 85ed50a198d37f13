"""`tuskit sync` as a real process: --once exit codes, config file and flags, and a SIGKILL mid-upload."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests
from cli_support import OutputReader, isolated_env, journal_offset, run_tuskit, start_tuskit, upload_metadata
from http_fault_proxy import FaultProxy

from support import TUS, ServerProcess, poll

MiB = 1024 * 1024


def _sync(tmp_path: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return run_tuskit(tmp_path, "sync", *args, timeout=timeout)


def _folder(tmp_path: Path, files: dict[str, bytes]) -> Path:
    root = tmp_path / "in"
    root.mkdir()
    for name, data in files.items():
        (root / name).write_bytes(data)
    return root


@pytest.mark.parametrize("command", ["sync", "desk"])
def test_help_documents_every_option(command: str) -> None:
    out = subprocess.run([sys.executable, "-m", "tuskit", command, "--help"], capture_output=True, text=True,
                         check=True).stdout
    for flag in ["--server", "--token", "--workers", "--poll", "--ignore", "--include-hidden", "--journal",
                 "--bwlimit", "--chunk-size", "--max-chunk-size", "--quiet", "--timeout", "--max-attempts",
                 "--config", "--log-level"]:
        assert flag in out
    assert ("--once" in out) == (command == "sync")
    assert "desktop.toml" in out and "TUSKIT_" in out and "symbolic links" in out


def test_version_is_printed_without_a_command() -> None:
    result = subprocess.run([sys.executable, "-m", "tuskit", "--version"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert re.fullmatch(r"tuskit \d+\.\d+\.\d+\S* \(tus 1\.0\.0, Python 3\.\d+\.\d+\)\n", result.stdout)


def test_once_uploads_what_is_there_and_exits_zero(tmp_path: Path, tus_server: ServerProcess) -> None:
    root = _folder(tmp_path, {"a.txt": b"alpha", "c.part": b"partial"})
    (root / "2026" / "11").mkdir(parents=True)
    (root / "2026" / "11" / "b.txt").write_bytes(b"beta" * 1000)
    result = _sync(tmp_path, str(root), "--server", tus_server.url, "--once", "--quiet", "0.2")
    assert result.returncode == 0, result.stdout + result.stderr
    done = re.findall(r"done (\S+) .* url=(\S+)", result.stdout)
    assert {Path(p).name for p, _ in done} == {"a.txt", "b.txt"}
    for path, url in done:
        assert requests.get(url, timeout=10).content == Path(path).read_bytes()
        # the server is told the name and the tree below the watched folder (not the folder's own name)
        told = upload_metadata(url)
        assert (told["filename"], told["relativePath"]) == (Path(path).name, Path(path).relative_to(root).as_posix())
    assert "summary: 2 done, 0 failed" in result.stdout
    assert (tmp_path / "xdg-state" / "tuskit" / "journal.sqlite3").exists()  # the platformdirs default


def test_once_exits_non_zero_when_a_file_fails(tmp_path: Path, server_factory) -> None:  # type: ignore[no-untyped-def]
    server = server_factory("--max-size", "1000")
    root = _folder(tmp_path, {"small.txt": b"ok", "big.bin": b"x" * 5000})
    result = _sync(tmp_path, str(root), "--server", server.url, "--once", "--quiet", "0.2")
    assert result.returncode == 1
    assert re.search(r"failed \S+big\.bin: create: 413 .*giving up after 1 attempt", result.stdout), result.stdout
    assert "summary: 1 done, 1 failed" in result.stdout


def test_once_gives_up_soon_on_a_server_it_never_reached(tmp_path: Path) -> None:
    # it took 221 s to fail 3 files (ten connection attempts each): now one short grace for the whole run,
    # counted tries, and every file fails with the reason (the timeout below is the bound it must keep)
    root = _folder(tmp_path, {"a.txt": b"alpha", "b.txt": b"beta", "c.txt": b"gamma"})
    result = _sync(tmp_path, str(root), "--server", "http://127.0.0.1:9/files/", "--once", timeout=60)
    assert result.returncode == 1
    unreachable = r"server unreachable at http://127\.0\.0\.1:9/files/ \(\w+: cannot connect: Connection refused; "
    for name in ("a.txt", "b.txt", "c.txt"):
        given_up = rf"failed \S+{name}: {unreachable}\d+ tries in \d+ s\) \(giving up (untried|after 1 attempt)\)"
        assert re.search(given_up, result.stdout), result.stdout
    tries = [int(n) for n in re.findall(r"server unreachable: .* \(try (\d+), ", result.stdout)]
    assert tries[:2] == [1, 2] and "next try in" in result.stdout and "attempt 0" not in result.stdout
    assert "summary: 0 done, 3 failed" in result.stdout


@contextmanager
def _not_tus(tmp_path: Path) -> Iterator[tuple[str, list[str]]]:
    """A real web server that is not a tus server (Python's file server: POST is 501 with an HTML page)."""
    posts: list[str] = []

    class Handler(SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            posts.append(self.path)
            self.send_error(501, f"Unsupported method ({self.command!r})")

    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(tmp_path)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/files/", posts
    finally:
        server.shutdown()
        server.server_close()


def test_once_against_something_that_is_not_a_tus_server_fails_at_once_and_says_so(tmp_path: Path) -> None:
    root = _folder(tmp_path, {"a.txt": b"alpha", "b.txt": b"beta", "c.txt": b"gamma"})
    with _not_tus(tmp_path) as (url, posts):
        result = _sync(tmp_path, str(root), "--server", url, "--once", "--workers", "1", timeout=60)
        assert result.returncode == 1
        assert f"not a tus server at {url} (501 Unsupported method ('POST'))" in result.stdout, result.stdout
        assert "DOCTYPE" not in result.stdout and "summary: 0 done, 3 failed" in result.stdout
        assert len(posts) == 1  # permanent: neither retried nor tried again with the next file


def test_once_against_a_wrong_path_of_a_tus_server_is_not_retried(tmp_path: Path, tus_server: ServerProcess) -> None:
    root = _folder(tmp_path, {"a.txt": b"alpha", "b.txt": b"beta"})
    wrong = tus_server.origin + "/nothing/"
    result = _sync(tmp_path, str(root), "--server", wrong, "--once", "--workers", "1", timeout=60)
    assert result.returncode == 1
    assert re.search(r"failed \S+\.txt: create: 404 no such path '/nothing/' \(giving up after 1 attempt\)",
                     result.stdout), result.stdout
    assert "summary: 0 done, 2 failed" in result.stdout
    posts = [line for line in tus_server.output if " POST /nothing/" in line]
    assert len(posts) == 1, posts


def test_skipped_files_are_counted_and_listed_with_verbose(tmp_path: Path, tus_server: ServerProcess) -> None:
    root = _folder(tmp_path, {"keep.txt": b"keep", "movie.mkv.part": b"partial", ".env": b"SECRET=1"})
    (root / ".git").mkdir()
    (root / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    os.symlink(root / "keep.txt", root / "link.txt")
    quiet = _sync(tmp_path, str(root), "--server", tus_server.url, "--once", "--journal", str(tmp_path / "1.db"))
    assert quiet.returncode == 0, quiet.stdout + quiet.stderr
    assert quiet.stdout.startswith(f"tuskit sync: uploading what is in {root} to {tus_server.url}\n")
    assert "summary: 1 done, 0 failed, 4 skipped (-v lists them)" in quiet.stdout
    assert "skipped /" not in quiet.stdout
    loud = _sync(tmp_path, str(root), "--server", tus_server.url, "--once", "-v", "--journal", str(tmp_path / "2.db"))
    assert loud.returncode == 0, loud.stdout + loud.stderr
    skipped = dict(re.findall(r"skipped (\S+): (.+)", loud.stdout))
    assert skipped == {str(root / ".git"): "hidden (--include-hidden uploads it)",  # a folder once, not its files
                       str(root / ".env"): "hidden (--include-hidden uploads it)",
                       str(root / "movie.mkv.part"): "temporary file (*.part)",
                       str(root / "link.txt"): "symbolic link (never followed)"}
    assert "summary: 1 done, 0 failed, 4 skipped\n" in loud.stdout


def test_config_file_is_read_and_flags_override_it(tmp_path: Path, tus_server: ServerProcess) -> None:
    root = _folder(tmp_path, {"keep.txt": b"keep", "skip.log": b"skip"})
    cfg = tmp_path / "desktop.toml"
    cfg.write_text(f'roots = ["{root}"]\nserver = "http://127.0.0.1:9/nothing/"\nignore = ["*.log"]\n'
                   f'quiet_seconds = 0.2\njournal = "{tmp_path / "j.db"}"\nbwlimit = "50MiB"\n')
    result = _sync(tmp_path, "--config", str(cfg), "--server", tus_server.url, "--once")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "done " in result.stdout and "keep.txt" in result.stdout and "skip.log" not in result.stdout
    assert (tmp_path / "j.db").exists()
    cfg.write_text('unknown_key = 1\n')
    bad = _sync(tmp_path, "--config", str(cfg), str(root), "--server", tus_server.url, "--once")
    assert bad.returncode != 0 and "unknown key 'unknown_key'" in bad.stderr


def test_the_readmes_example_config_file_is_valid(tmp_path: Path) -> None:
    from tuskit.desktop.config import build_config, load_file

    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    [example] = re.findall(r"```toml\n(# ~/.config/tuskit/desktop.toml\n.*?)```", readme, re.S)
    (tmp_path / "desktop.toml").write_text(example)
    config = build_config(load_file(tmp_path / "desktop.toml"), {})
    assert config.server_url == "https://up.example.com/files/" and len(config.roots) == 2
    assert config.bandwidth_limit == 20 * MiB and config.ignore == ["*.log", "cache/*"]


def test_sigkill_mid_upload_then_restart_resumes_from_the_servers_offset(
        tmp_path: Path, tus_server: ServerProcess, proxy: FaultProxy) -> None:
    size = 200 * MiB
    root = tmp_path / "in"
    root.mkdir()
    big = root / "big.bin"
    digest = hashlib.sha256()
    pattern = bytearray(os.urandom(8 * MiB))
    with open(big, "wb") as out:
        for i in range(size // (8 * MiB)):
            pattern[:8] = i.to_bytes(8, "big")  # every block differs; urandom for 200 MB would be slow
            digest.update(pattern)
            out.write(pattern)
    os.utime(big, (time.time() - 60, time.time() - 60))
    args = ["sync", str(root), "--server", proxy.url(tus_server.url), "--once", "--journal", str(tmp_path / "j.db")]
    first = start_tuskit(tmp_path, *args, "--bwlimit", "40MiB")
    try:
        out = OutputReader(first)
        url = poll(lambda: (m := re.search(r"started \S+ .*url=(\S+)", out.text())) and m.group(1),
                       timeout=60, what="the upload to start")
        # the journal records offsets the server confirmed (a HEAD here would make the server take the
        # upload's lease away from the running PATCH, as tusd does)
        poll(lambda: journal_offset(tmp_path / "j.db") >= 20 * MiB, timeout=60, what="confirmed bytes")
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    finally:
        first.kill()
    offset = int(requests.head(url, headers=TUS, timeout=10).headers["Upload-Offset"])
    assert 0 < offset < size
    second = run_tuskit(tmp_path, *args, timeout=240)
    assert second.returncode == 0, second.stdout + second.stderr
    assert re.search(rf"started \S+big\.bin .*resuming at .* url={re.escape(url)}", second.stdout), second.stdout
    assert f"sha256={digest.hexdigest()}" in second.stdout
    assert proxy.body_bytes < 1.2 * size
    assert hashlib.sha256(requests.get(url, timeout=60).content).hexdigest() == digest.hexdigest()


def test_watching_says_so_and_ctrl_c_names_the_unfinished_upload(tmp_path: Path, tus_server: ServerProcess) -> None:
    root = _folder(tmp_path, {"big.bin": os.urandom(8 * MiB)})
    journal = tmp_path / "j.db"
    proc = start_tuskit(tmp_path, "sync", str(root), "--server", tus_server.url, "--journal", str(journal),
                        "--bwlimit", "1MiB", "--chunk-size", "256KiB", "--max-chunk-size", "256KiB")
    try:
        out = OutputReader(proc)
        poll(lambda: f"watching {root}" in out.text(), what="the watching line")
        assert out.text().startswith(f"tuskit sync: uploading every file that lands in {root} to {tus_server.url}")
        poll(lambda: journal_offset(journal) >= MiB, what="confirmed bytes")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
    finally:
        proc.kill()
    unfinished = r"unfinished (\S+): ([\d.]+) MiB of 8\.0 MiB confirmed by the server; the next run resumes it"
    summary = re.search(unfinished, out.text())
    assert summary, out.text()
    assert summary.group(1) == str(root / "big.bin") and 1 <= float(summary.group(2)) < 8
    assert "summary: 0 done, 0 failed, 1 unfinished" in out.text()


def _can_limit_inotify() -> bool:
    """A child user namespace has its own inotify limits (/proc/sys/user): lowering them there leaves the
    machine's alone. Some sandboxes forbid user namespaces."""
    probe = subprocess.run(["unshare", "--user", "--map-root-user", "sh", "-c",
                            "echo 5 > /proc/sys/user/max_inotify_watches"], capture_output=True)
    return probe.returncode == 0


@pytest.mark.skipif(not shutil.which("unshare") or not _can_limit_inotify(),
                    reason="needs unshare and user namespaces to lower the inotify limit for one process")
def test_inotify_watch_limit_falls_back_to_polling_with_the_sysctl(tmp_path: Path, tus_server: ServerProcess) -> None:
    root = tmp_path / "in"
    for i in range(20):  # more folders than the 5 watches allowed below
        (root / f"sub{i}").mkdir(parents=True)
    script = ("echo 5 > /proc/sys/user/max_inotify_watches && exec \"$0\" -m tuskit sync \"$1\" --server \"$2\" "
              "--journal \"$3\" --quiet 0.3")
    proc = subprocess.Popen(["unshare", "--user", "--map-root-user", "sh", "-c", script, sys.executable, str(root),
                             tus_server.url, str(tmp_path / "j.db")], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=isolated_env(tmp_path))
    try:
        out = OutputReader(proc)
        poll(lambda: "polling instead" in out.text(), what="the fallback notice")
        assert "sudo sysctl fs.inotify.max_user_watches=" in out.text()
        late = root / "sub17" / "late.jpg"
        late.write_bytes(b"written after start, seen by the poller")
        poll(lambda: f"done {late}" in out.text(), what="the late file, found by polling")
    finally:
        proc.terminate()
        proc.wait(20)
    assert proc.returncode == 0, out.text()
