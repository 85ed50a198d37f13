"""Helpers the tests share: real tuskit server processes and small HTTP conveniences."""

from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import requests

TUS = {"Tus-Resumable": "1.0.0"}
_READY = re.compile(r"listening on (http://\S+)")


@dataclass
class ServerProcess:
    """A `tuskit server` child process; `url` is its tus endpoint (ends with the base path)."""

    proc: subprocess.Popen[str]
    url: str
    data_dir: Path
    output: list[str] = field(default_factory=list)

    @property
    def origin(self) -> str:
        return self.url.split("/files/")[0] if "/files/" in self.url else self.url.rstrip("/")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def kill(self) -> None:
        self.stop(signal.SIGKILL)


def start_server(data_dir: Path, *args: str, env: dict[str, str] | None = None,
                 timeout: float = 30) -> ServerProcess:
    """Start `python -m tuskit server --port 0` and wait for its "listening on URL" line."""
    data_dir.mkdir(parents=True, exist_ok=True)
    cmd: Sequence[str] = [sys.executable, "-m", "tuskit", "server", "--host", "127.0.0.1", "--port", "0",
                          "--data-dir", str(data_dir), *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, **(env or {})})
    output: list[str] = []
    found = threading.Event()
    url: list[str] = []

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            output.append(line)
            m = _READY.search(line)
            if m and not found.is_set():
                url.append(m.group(1))
                found.set()
        found.set()

    threading.Thread(target=pump, daemon=True).start()
    if not found.wait(timeout) or not url:
        proc.kill()
        raise RuntimeError("tuskit server did not start:\n" + "".join(output))
    return ServerProcess(proc, url[0], data_dir, output)


def stored_sha256(upload_url: str) -> str:
    """SHA-256 of the bytes the server serves for a finished upload (GET), streamed, so big files stay cheap."""
    digest = hashlib.sha256()
    with requests.get(upload_url, stream=True, timeout=60) as response:
        response.raise_for_status()
        for block in response.iter_content(1024 * 1024):
            digest.update(block)
    return digest.hexdigest()
