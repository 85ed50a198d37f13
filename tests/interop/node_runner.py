"""Run the Node side of the interop tests: install the locked npm packages once, then run small scripts.

The scripts live next to this file and take one JSON job on argv; they print one JSON line back. pytest owns
the servers and checks the bytes; Node only plays the client.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
MIN_NODE_MAJOR = 20


class NodeScriptFailed(AssertionError):
    """The client reported an error (or crashed): its message is the test's failure message."""


def node_unavailable() -> str | None:
    """Why the Node tests cannot run here, or None when they can."""
    node = shutil.which("node")
    if node is None:
        return "node is not installed (CI installs Node 20)"
    version = subprocess.run([node, "--version"], capture_output=True, text=True, check=True).stdout.strip()
    if int(version.lstrip("v").split(".")[0]) < MIN_NODE_MAJOR:
        return f"node {version} is older than {MIN_NODE_MAJOR}"
    return None


def ensure_packages() -> None:
    """`npm ci` from the committed lock file, unless .ci/run (or an earlier run) already installed it since the
    lock file last changed."""
    installed = HERE / "node_modules" / ".package-lock.json"
    if installed.exists() and installed.stat().st_mtime >= (HERE / "package-lock.json").stat().st_mtime:
        return
    done = subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=HERE, capture_output=True, text=True,
                          timeout=300)
    if done.returncode != 0:
        raise RuntimeError(f"npm ci failed in {HERE}:\n{done.stdout}\n{done.stderr}")


def run_script(script: str, job: dict[str, Any], timeout: float = 120) -> dict[str, Any]:
    """Run `node <script> '<job>'` and return its JSON answer; a client error fails the test with its message."""
    done = subprocess.run(["node", str(HERE / script), json.dumps(job)], cwd=HERE, capture_output=True,
                          stdin=subprocess.DEVNULL, text=True, timeout=timeout)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    answer: dict[str, Any] = json.loads(lines[-1]) if lines else {}
    if done.returncode != 0 or "error" in answer or not lines:
        raise NodeScriptFailed(f"{script} {job.get('scenario', '')} failed ({done.returncode}): "
                               f"{answer.get('error', '')}\nstdout: {done.stdout[-2000:]}\n"
                               f"stderr: {done.stderr[-2000:]}")
    return answer


class ScriptSession:
    """A node script the test talks to while it runs: its JSON event lines in, lines of text to its stdin out."""

    def __init__(self, script: str, job: dict[str, Any]) -> None:
        self.proc = subprocess.Popen(["node", str(HERE / script), json.dumps(job)], cwd=HERE, text=True,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.events: list[dict[str, Any]] = []

    def next_event(self) -> dict[str, Any]:
        """The script's next event; its end without one fails the test with what it printed."""
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait(10)
            stderr = self.proc.stderr.read() if self.proc.stderr else ""
            raise NodeScriptFailed(f"node exited ({self.proc.returncode}) after {self.events}\n{stderr[-2000:]}")
        event: dict[str, Any] = json.loads(line)
        self.events.append(event)
        if "error" in event:
            raise NodeScriptFailed(f"{event['error']}\nafter {self.events}")
        return event

    def until(self, key: str) -> dict[str, Any]:
        """Read events up to and including the first that has `key`."""
        while key not in (event := self.next_event()):
            pass
        return event

    def say(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
