"""Uppy (@uppy/core + @uppy/tus) in Debian's headless Chromium, on a page from another origin than the server.

The page's origin (one loopback port) differs from the tus endpoint's (another port), so every tus request
is a real cross-origin request with preflights: the server's CORS headers decide whether Uppy can work.
"""

from __future__ import annotations

import functools
import hashlib
import io
import os
import random
import threading
from collections.abc import Callable, Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
from interop.node_runner import run_script
from PIL import Image

from support import ServerProcess, stored_sha256

CHROMIUM = Path("/usr/bin/chromium")
TOKEN = "uppy-token-41f2"
AUTH = {"Authorization": f"Bearer {TOKEN}"}

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed "
                                "(apt-get install -y chromium; .ci/run does it)")


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """The page's static files need no access log in test output."""


@pytest.fixture(scope="session")
def page_origin(node_packages: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The Uppy page, bundled with esbuild and served from its own loopback origin."""
    outdir = tmp_path_factory.mktemp("uppy-page")
    run_script("build_uppy_page.mjs", {"outdir": str(outdir)})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(outdir)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _jpeg(path: Path) -> None:
    rng = random.Random(5)
    image = Image.new("RGB", (320, 240))
    image.putdata([(rng.randrange(256), rng.randrange(256), rng.randrange(256)) for _ in range(320 * 240)])
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90)
    path.write_bytes(buffer.getvalue())


def _files(tmp_path: Path) -> dict[Path, str]:
    """Several files, one a real JPEG, with their SHA-256."""
    folder = tmp_path / "pick"
    folder.mkdir()
    _jpeg(folder / "photo.jpg")
    (folder / "notes.txt").write_text("tuskit and Uppy, across origins\n" * 100)
    (folder / "blob.bin").write_bytes(os.urandom(1_500_000))
    return {path: hashlib.sha256(path.read_bytes()).hexdigest() for path in folder.iterdir()}


def _run_uppy(page_origin: str, server: ServerProcess, files: list[Path], tmp_path: Path,
              token: str = "", retry_delays: str = "[0,300,1000]") -> dict[str, Any]:
    page = (f"{page_origin}/index.html?endpoint={server.url}&chunkSize={512 * 1024}&token={token}"
            f"&retryDelays={retry_delays}")
    return run_script("uppy_browser.mjs", {"page": page, "files": [str(f) for f in files], "chromium": str(CHROMIUM),
                                           "userDataDir": str(tmp_path / "chromium-profile")}, timeout=180)


def test_uppy_uploads_several_files_across_origins_with_a_bearer_token(
    page_origin: str, server_factory: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    tokens = tmp_path / "tokens.txt"
    tokens.write_text(f"{TOKEN} browser-user\n")
    server = server_factory("--cors-origins", page_origin, "--tokens", str(tokens))
    files = _files(tmp_path)
    answer = _run_uppy(page_origin, server, list(files), tmp_path, token=TOKEN)

    assert answer["status"] == "done", answer
    assert not [line for line in answer["console"] if "CORS" in line]
    result = answer["result"]
    assert result["failed"] == []
    uploaded = {item["name"]: item for item in result["successful"]}
    assert set(uploaded) == {path.name for path in files}
    for path, digest in files.items():
        url = uploaded[path.name]["url"]
        assert url.startswith(server.url)
        assert stored_sha256(url, AUTH) == digest
    photo = requests.get(uploaded["photo.jpg"]["url"], headers=AUTH, timeout=10)
    assert photo.headers["Content-Type"] == "image/jpeg"  # Uppy's filetype metadata reached the server


def test_uppy_is_refused_when_the_page_origin_is_not_allowed(
    page_origin: str, server_factory: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    server = server_factory("--cors-origins", "http://127.0.0.1:9")
    note = tmp_path / "note.txt"
    note.write_text("not allowed from this origin\n")
    answer = _run_uppy(page_origin, server, [note], tmp_path, retry_delays="[]")  # a refusal is not transient
    assert answer["status"] == "failed"
    assert [item["name"] for item in answer["result"]["failed"]] == ["note.txt"]
    assert any("blocked by CORS policy" in line for line in answer["console"]), answer["console"]
