"""Start the servers under test on free loopback ports: tuskit variants and two peers.

The peers are installed once into ~/.cache/tuskit-bench at exact versions, so runs compare:
@tus/server with its FileStore by npm, tuspyserver (FastAPI) on uvicorn[standard] in a venv of its own.
Each gets a few-line server written there that listens on port 0 and prints its URL the way
`tuskit server` does, so one reader finds every server's endpoint.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil

TUS_NODE_PACKAGES = ("@tus/server@2.4.5", "@tus/file-store@2.1.1")
# fastapi is pinned too: tuspyserver accepts any fastapi >= 0.110, and the framework is most of its request path.
TUSPY_PACKAGES = ("tuspyserver==4.4.3", "uvicorn[standard]==0.54.0", "fastapi==0.165.0")
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "tuskit-bench"
TUSPY_HOME = CACHE / "tuspyserver-venv"
_LISTENING = re.compile(r"listening on (http://127\.0\.0\.1:\d+/\S*)")
_START_TIMEOUT = 60.0
_INSTALL_TIMEOUT = 900

NODE_SERVER = """\
// A stock @tus/server with its FileStore: what a Node user gets from the README.
import { Server } from "@tus/server";
import { FileStore } from "@tus/file-store";

const directory = process.argv[2];
const server = new Server({ path: "/files", datastore: new FileStore({ directory }) });
const http = server.listen(0, "127.0.0.1", () => {
  console.log(`@tus/server listening on http://127.0.0.1:${http.address().port}/files/`);
});
process.on("SIGTERM", () => http.close(() => process.exit(0)));
"""

TUSPY_SERVER = """\
# tuspyserver's router in a bare FastAPI app, served the way its README does, by uvicorn with the
# standard extras named so a missing one fails loudly. Logging at warning: no access line per request,
# like the other servers in the bench.
import socket
import sys

import uvicorn
from fastapi import FastAPI
from tuspyserver import create_tus_router

app = FastAPI()
app.include_router(create_tus_router(prefix="files", files_dir=sys.argv[1]))

# Bound and listening before the URL is printed, so the first request cannot be refused.
sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
sock.bind(("127.0.0.1", 0))
config = uvicorn.Config(app, loop="uvloop", http="httptools", log_level="warning")
sock.listen(config.backlog)
print(f"tuspyserver listening on http://127.0.0.1:{sock.getsockname()[1]}/files/", flush=True)
uvicorn.Server(config).run(sockets=[sock])
"""


@dataclass(frozen=True)
class Variant:
    """One column of the results: a server and the flags it runs with.

    Every tuskit configuration worth comparing (`--workers 1`, later `--storage s3://...`) is one more
    Variant of kind "tuskit" with its flags, so adding one needs no code.
    """

    name: str
    kind: str  # one of LAUNCHERS
    args: tuple[str, ...] = ()

    @property
    def is_peer(self) -> bool:
        return self.kind != "tuskit"

    @property
    def slug(self) -> str:
        return re.sub(r"[^A-Za-z0-9]+", "-", self.name).strip("-")


@dataclass
class RunningServer:
    name: str
    version: str
    endpoint: str
    process: subprocess.Popen[bytes]
    log_path: Path
    rss_scope: str  # which processes the RSS figures add up

    def tree(self) -> list[psutil.Process]:
        root = psutil.Process(self.process.pid)
        return [root, *root.children(recursive=True)]

    def log_tail(self, lines: int = 5) -> list[str]:
        """The last lines the server logged: what it said about the errors the bench counted."""
        with self.log_path.open("rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - 64 * 1024))
            return f.read().decode(errors="replace").splitlines()[-lines:]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class StartFailed(Exception):
    """A server could not be installed or did not come up; the bench goes on without it."""


def _last_lines(text: str, count: int = 3) -> str:
    return " | ".join(line.strip() for line in text.strip().splitlines()[-count:])


def _wait_listening(process: subprocess.Popen[bytes], log_path: Path) -> str:
    deadline = time.monotonic() + _START_TIMEOUT
    while time.monotonic() < deadline:
        log = log_path.read_text(errors="replace")
        if match := _LISTENING.search(log):
            return match.group(1)
        if process.poll() is not None:
            raise StartFailed(f"exited with {process.returncode}: {_last_lines(log)}")
        time.sleep(0.05)
    process.kill()
    process.wait()
    raise StartFailed(f"printed no URL within {_START_TIMEOUT:g}s: {_last_lines(log)}")


def _spawn(cmd: list[str], log_path: Path, cwd: Path | None = None) -> tuple[subprocess.Popen[bytes], str]:
    with log_path.open("wb") as log:
        process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=cwd, start_new_session=True)
    return process, _wait_listening(process, log_path)


def _install(cmd: list[str], what: str, cwd: Path | None = None) -> None:
    """Run an installer (first use only); its output is shown only when it fails."""
    print(f"installing {what} into {CACHE} ...", flush=True)
    result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=_INSTALL_TIMEOUT)
    if result.returncode != 0:
        output = _last_lines(result.stderr + result.stdout)
        raise StartFailed(f"installing {what} failed ({result.returncode}): {output}")


def start_tuskit(variant: Variant, work: Path, log_level: str) -> RunningServer:
    from importlib.metadata import version

    log_path = work / f"{variant.slug}.log"
    cmd = [sys.executable, "-m", "tuskit", "server", "--port", "0", "--data-dir", str(work / f"{variant.slug}-data"),
           "--log-level", log_level, *variant.args]
    process, endpoint = _spawn(cmd, log_path)
    flags = " ".join(("--log-level", log_level, *variant.args))
    return RunningServer(variant.name, f"tuskit {version('tuskit')} ({flags})", endpoint, process, log_path,
                         "tuskit's process tree: python process(es) + embedded redis-server")


def install_tus_node() -> Path:
    """npm-install the pinned @tus packages into the cache (once) and write the server script there."""
    npm = shutil.which("npm")
    if shutil.which("node") is None or npm is None:
        raise StartFailed("node and npm are needed (Node >= 20.19)")
    home = CACHE / "-".join(p.replace("/", "_") for p in TUS_NODE_PACKAGES)
    if not (home / "node_modules" / "@tus" / "file-store").is_dir():
        home.mkdir(parents=True, exist_ok=True)
        (home / "package.json").write_text(json.dumps({"name": "tuskit-bench", "private": True, "type": "module"}))
        _install([npm, "install", "--no-audit", "--no-fund", "--loglevel=error", *TUS_NODE_PACKAGES],
                 " + ".join(TUS_NODE_PACKAGES), cwd=home)
    (home / "server.mjs").write_text(NODE_SERVER)
    return home


def _start_peer(variant: Variant, work: Path, command: list[str], home: Path, version: str,
                rss_scope: str) -> RunningServer:
    """Start a peer's server script in its install folder, a fresh data dir as its last argument."""
    data = work / f"{variant.slug}-data"
    data.mkdir()
    log_path = work / f"{variant.slug}.log"
    process, endpoint = _spawn([*command, str(data)], log_path, cwd=home)
    return RunningServer(variant.name, version, endpoint, process, log_path, rss_scope)


def start_tus_node(variant: Variant, work: Path, log_level: str) -> RunningServer:
    home = install_tus_node()
    node = subprocess.run(["node", "--version"], capture_output=True, text=True, check=True).stdout.strip()
    return _start_peer(variant, work, ["node", str(home / "server.mjs")], home,
                       f"{' + '.join(TUS_NODE_PACKAGES)} (node {node})", "the node process")


def install_tuspyserver() -> Path:
    """A venv of its own in the cache with the pinned packages (reinstalled when the pins change)."""
    python = TUSPY_HOME / "bin" / "python"
    pins = TUSPY_HOME / "bench-pins.txt"
    wanted = "\n".join(TUSPY_PACKAGES) + "\n"
    if not python.exists():
        _install([sys.executable, "-m", "venv", str(TUSPY_HOME)], "a venv for tuspyserver")
    if not pins.exists() or pins.read_text() != wanted:
        _install([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *TUSPY_PACKAGES],
                 " + ".join(TUSPY_PACKAGES))
        pins.write_text(wanted)
    (TUSPY_HOME / "serve.py").write_text(TUSPY_SERVER)
    return TUSPY_HOME


def start_tuspyserver(variant: Variant, work: Path, log_level: str) -> RunningServer:
    home = install_tuspyserver()
    return _start_peer(variant, work, [str(home / "bin" / "python"), str(home / "serve.py")], home,
                       f"{' + '.join(TUSPY_PACKAGES)} (python {platform.python_version()})", "the uvicorn process")


LAUNCHERS: dict[str, Callable[[Variant, Path, str], RunningServer]] = {
    "tuskit": start_tuskit,
    "tus-node": start_tus_node,
    "tuspyserver": start_tuspyserver,
}

BUILT_IN = (
    Variant("tuskit", "tuskit"),
    Variant("tuskit --workers 1", "tuskit", ("--workers", "1")),
    Variant("@tus/server", "tus-node"),
    Variant("tuspyserver", "tuspyserver"),
)


def start(variant: Variant, work: Path, log_level: str) -> RunningServer:
    return LAUNCHERS[variant.kind](variant, work, log_level)
