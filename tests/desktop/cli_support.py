"""Helpers for tests that run `tuskit` commands as real processes: an isolated environment, the journal's
progress read from outside, what the server was told about an upload, a child's output as it comes."""

from __future__ import annotations

import base64
import os
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import requests

from support import TUS


def isolated_env(tmp_path: Path) -> dict[str, str]:
    """Keep the user's real config and state dirs out of it."""
    return {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "xdg-config"),
            "XDG_STATE_HOME": str(tmp_path / "xdg-state")}


def run_tuskit(tmp_path: Path, *args: str, timeout: float = 120,
               env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tuskit", *args], capture_output=True, text=True,
                          env={**isolated_env(tmp_path), **(env or {})}, timeout=timeout)


def start_tuskit(tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    """A `tuskit` command left running (to be interrupted); its stdout and stderr come as one text stream."""
    return subprocess.Popen([sys.executable, "-m", "tuskit", *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=isolated_env(tmp_path))


def journal_offset(path: Path) -> int:
    """The largest offset the journal recorded (bytes the server confirmed), read without disturbing it."""
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as db:
            return int(db.execute('SELECT coalesce(max("offset"), 0) FROM versions').fetchone()[0])
    except sqlite3.OperationalError:  # not created yet
        return 0


def upload_metadata(url: str) -> dict[str, str]:
    """What the server was told about an upload (HEAD echoes Upload-Metadata)."""
    header = requests.head(url, headers=TUS, timeout=10).headers["Upload-Metadata"]
    pairs = (item.strip().split(" ") for item in header.split(","))
    return {key: base64.b64decode(value).decode() for key, value in pairs}


class OutputReader:
    """Collects a child's stdout lines on a thread, so the test can poll them."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._pump, args=(proc,), daemon=True)
        self._thread.start()

    def _pump(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self.lines.append(line)

    def text(self) -> str:
        return "".join(self.lines)
