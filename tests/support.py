"""Helpers the tests share: real tuskit server processes and small HTTP conveniences."""

from __future__ import annotations

import base64
import hashlib
import http.client
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

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


def run_sync(home: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """`tuskit sync ARGS` as a process whose config and journal live under `home`, never the user's own."""
    env = {**os.environ, "XDG_CONFIG_HOME": str(home / "xdg-config"), "XDG_STATE_HOME": str(home / "xdg-state")}
    return subprocess.run([sys.executable, "-m", "tuskit", "sync", *args], capture_output=True, text=True, env=env,
                          timeout=timeout)


def peak_rss(pid: int) -> int:
    """A process's peak resident memory so far (Linux's VmHWM), in bytes: what a test of bounded memory
    compares before and after the load, however briefly the peak lasted."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmHWM in /proc/{pid}/status")


def free_port() -> int:
    """A loopback port free right now, for a process that must come back on the same address after a restart."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stored_sha256(upload_url: str, headers: dict[str, str] | None = None) -> str:
    """SHA-256 of the bytes the server serves for a finished upload (GET), streamed, so big files stay cheap."""
    digest = hashlib.sha256()
    with requests.get(upload_url, headers=headers, stream=True, timeout=60) as response:
        response.raise_for_status()
        for block in response.iter_content(1024 * 1024):
            digest.update(block)
    return digest.hexdigest()


# ---- tus over requests and raw sockets -------------------------------------------------------------

OFFSET_TYPE = "application/offset+octet-stream"


def b64(value: str | bytes) -> str:
    """Base64 of text or bytes, as Upload-Metadata and Upload-Checksum carry values."""
    return base64.b64encode(value.encode() if isinstance(value, str) else value).decode()


def create_upload(endpoint: str, length: int | None, *, metadata: str | None = None,
                  headers: dict[str, str] | None = None, data: bytes | None = None) -> requests.Response:
    """POST a new upload (`length` None: deferred); with `data`, creation-with-upload."""
    sent = {**TUS, **({"Upload-Defer-Length": "1"} if length is None else {"Upload-Length": str(length)})}
    if metadata is not None:
        sent["Upload-Metadata"] = metadata
    if data is not None:
        sent["Content-Type"] = OFFSET_TYPE
    return requests.post(endpoint, headers={**sent, **(headers or {})}, data=data, timeout=30)


def patch_upload(url: str, offset: int, data: bytes, headers: dict[str, str] | None = None) -> requests.Response:
    sent = {**TUS, "Upload-Offset": str(offset), "Content-Type": OFFSET_TYPE}
    return requests.patch(url, data=data, headers={**sent, **(headers or {})}, timeout=60)


@dataclass
class RawResponse:
    status: int
    headers: http.client.HTTPMessage
    body: bytes


def request_head(method: str, url: str, headers: dict[str, str]) -> bytes:
    """The request line and header block of a raw HTTP/1.1 request to `url`, sent as is (no normalising)."""
    parts = urlsplit(url)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    lines = [f"{method} {target} HTTP/1.1", f"Host: {parts.netloc}", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin1")


def chunked_body(pieces: Sequence[bytes], trailers: dict[str, str] | None = None) -> bytes:
    """A chunked transfer-coded body of `pieces`, ending with `trailers` when given."""
    out = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces if p)
    fields = "".join(f"{k}: {v}\r\n" for k, v in (trailers or {}).items())
    return out + b"0\r\n" + fields.encode("latin1") + b"\r\n"


def raw_connect(url: str, timeout: float = 30) -> socket.socket:
    parts = urlsplit(url)
    return socket.create_connection((parts.hostname, parts.port), timeout=timeout)


def read_response(sock: socket.socket, method: str = "GET") -> RawResponse:
    """Parse one HTTP response from a raw socket."""
    response = http.client.HTTPResponse(sock, method=method)
    response.begin()
    return RawResponse(response.status, response.headers, response.read())


def raw_request(url: str, data: bytes, method: str = "GET", timeout: float = 30) -> RawResponse:
    """Send raw request bytes on a fresh connection and read the response."""
    with raw_connect(url, timeout) as sock:
        sock.sendall(data)
        return read_response(sock, method)


T = TypeVar("T")


def poll(probe: Callable[[], T | None], timeout: float = 30.0, what: str = "condition", every: float = 0.02) -> T:
    """The first truthy result of `probe`: tests wait for a condition, never for a fixed time."""
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {result!r})")
        time.sleep(every)
