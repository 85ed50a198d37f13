"""The README's curl example runs as written (only the address changed) against a real server."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from support import ServerProcess

README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_the_curl_example_uploads_and_downloads(tus_server: ServerProcess) -> None:
    block = re.search(r"## Upload a file with curl\n\n```sh\n(.*?)```", README.read_text(), re.S)
    assert block is not None
    script = block.group(1).replace("http://127.0.0.1:1080", tus_server.origin)
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert re.fullmatch(re.escape(tus_server.url) + "[0-9a-f]{32}", lines[0])  # $URL was set from Location
    assert "Upload-Offset: 11" in done.stdout and done.stdout.endswith("hello world")
