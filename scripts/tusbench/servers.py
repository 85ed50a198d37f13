"""Start the servers under test on free loopback ports: tuskit, and @tus/server with its FileStore.

@tus/server is installed with npm once into ~/.cache/tuskit-bench (exact versions, so runs compare);
a tiny Node script there serves FileStore on port 0 and prints its URL the way `tuskit server` does.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

TUS_NODE_PACKAGES = ("@tus/server@2.4.5", "@tus/file-store@2.1.1")
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "tuskit-bench"
_LISTENING = re.compile(r"listening on (http://127\.0\.0\.1:\d+/\S*)")
_START_TIMEOUT = 60.0

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

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _wait_listening(process: subprocess.Popen[bytes], log_path: Path) -> str:
    deadline = time.monotonic() + _START_TIMEOUT
    while time.monotonic() < deadline:
        log = log_path.read_text(errors="replace")
        if match := _LISTENING.search(log):
            return match.group(1)
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{log[-2000:]}")
        time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"server did not print its URL within {_START_TIMEOUT:g}s:\n{log[-2000:]}")


def _spawn(cmd: list[str], log_path: Path, cwd: Path | None = None) -> tuple[subprocess.Popen[bytes], str]:
    with log_path.open("wb") as log:
        process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=cwd, start_new_session=True)
    return process, _wait_listening(process, log_path)


def start_tuskit(work: Path, log_level: str) -> RunningServer:
    from importlib.metadata import version

    data = work / "tuskit-data"
    log_path = work / "tuskit.log"
    cmd = [sys.executable, "-m", "tuskit", "server", "--port", "0", "--data-dir", str(data), "--log-level", log_level]
    process, endpoint = _spawn(cmd, log_path)
    return RunningServer("tuskit", f"tuskit {version('tuskit')} (--log-level {log_level})", endpoint, process,
                         log_path, "python + embedded redis-server")


def install_tus_node() -> Path:
    """npm-install the pinned @tus packages into the cache (once) and write the server script there."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        raise RuntimeError("node and npm are needed for @tus/server (Node >= 20.19)")
    home = CACHE / "-".join(p.replace("/", "_") for p in TUS_NODE_PACKAGES)
    if not (home / "node_modules" / "@tus" / "file-store").is_dir():
        home.mkdir(parents=True, exist_ok=True)
        (home / "package.json").write_text(json.dumps({"name": "tuskit-bench", "private": True, "type": "module"}))
        subprocess.run([npm, "install", "--no-audit", "--no-fund", "--loglevel=error", *TUS_NODE_PACKAGES],
                       cwd=home, check=True, timeout=600)
    (home / "server.mjs").write_text(NODE_SERVER)
    return home


def start_tus_node(work: Path) -> RunningServer:
    home = install_tus_node()
    data = work / "tus-node-data"
    data.mkdir()
    log_path = work / "tus-node.log"
    process, endpoint = _spawn(["node", str(home / "server.mjs"), str(data)], log_path, cwd=home)
    node = subprocess.run(["node", "--version"], capture_output=True, text=True, check=True).stdout.strip()
    return RunningServer("@tus/server", f"{' + '.join(TUS_NODE_PACKAGES)} (node {node})", endpoint, process,
                         log_path, "node")
