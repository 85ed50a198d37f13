"""tuskit's own upload page (`/`) in Debian's headless Chromium: real uploads through its bundled
tus-js-client, a resume after a reload, a refused token, and live progress from /events, all under the
page's Content-Security-Policy (a violation shows up in the console and fails the test)."""

from __future__ import annotations

import hashlib
import io
import os
import random
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests
from interop.node_runner import ScriptSession, run_script
from PIL import Image
from tus_calls import create, metric, patch, poll

from support import ServerProcess, stored_sha256

CHROMIUM = Path("/usr/bin/chromium")
TOKEN = "page-token-6b0d"
AUTH = {"Authorization": f"Bearer {TOKEN}"}

pytestmark = [
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed "
                       "(apt-get install -y chromium; .ci/run does it)"),
    pytest.mark.usefixtures("node_packages"),
]


def _job(server: ServerProcess, tmp_path: Path, scenario: str, **job: Any) -> dict[str, Any]:
    return {"scenario": scenario, "page": server.origin + "/", "chromium": str(CHROMIUM),
            "userDataDir": str(tmp_path / "chromium-profile"), **job}


def _browse(server: ServerProcess, tmp_path: Path, scenario: str, **job: Any) -> dict[str, Any]:
    answer = run_script("page_browser.mjs", _job(server, tmp_path, scenario, **job), timeout=180)
    violations = [line for line in answer["console"] if "Content Security Policy" in line or "pageerror" in line]
    assert not violations, violations
    return answer


@pytest.fixture
def token_server(server_factory: Callable[..., ServerProcess], tmp_path: Path) -> Callable[..., ServerProcess]:
    tokens = tmp_path / "tokens.txt"
    tokens.write_text(f"{TOKEN} page-user\n")
    return lambda *flags: server_factory("--tokens", str(tokens), *flags)


def _jpeg(width: int = 320, height: int = 240) -> bytes:
    rng = random.Random(7)
    image = Image.new("RGB", (width, height))
    image.putdata([(rng.randrange(256), rng.randrange(256), rng.randrange(256)) for _ in range(width * height)])
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=85)
    return buffer.getvalue()


def _listing(server: ServerProcess) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = requests.get(server.origin + "/uploads", headers=AUTH, timeout=10).json()["uploads"]
    return items


def test_the_page_uploads_files_and_a_folder_and_shows_thumbnails(
        token_server: Callable[..., ServerProcess], tmp_path: Path) -> None:
    published = tmp_path / "published"
    server = token_server("--publish-dir", str(published))
    pick = tmp_path / "pick"
    (pick / "album" / "2024").mkdir(parents=True)
    files = {pick / "photo.jpg": _jpeg(), pick / "notes.txt": b"written in a browser\n" * 50,
             pick / "album" / "2024" / "beach.jpg": _jpeg(200, 300), pick / "album" / "list.txt": os.urandom(70_000)}
    for path, data in files.items():
        path.write_bytes(data)

    answer = _browse(server, tmp_path, "upload", token=TOKEN, files=[str(pick / "photo.jpg"), str(pick / "notes.txt")],
                     folder=str(pick / "album"), expect=4)
    shown = {row["name"]: row for row in answer["result"]["rows"]}
    assert set(shown) == {"photo.jpg", "notes.txt", "album/2024/beach.jpg", "album/list.txt"}
    assert all(row["state"] == "processed" for row in shown.values()), shown
    assert shown["photo.jpg"]["thumbnail"] == 256 and shown["album/2024/beach.jpg"]["thumbnail"] > 0
    assert shown["notes.txt"]["thumbnail"] == 0

    listed = {item["relativePath"] or item["filename"]: item for item in _listing(server)}
    for path, data in files.items():
        name = path.relative_to(pick).as_posix()
        assert stored_sha256(listed[name]["url"], AUTH) == hashlib.sha256(data).hexdigest()
        assert listed[name]["url"] == shown[name]["url"]
        assert (published / "page-user" / name).read_bytes() == data  # the folder's tree, on the server
    assert listed["photo.jpg"]["type"] == "image/jpeg"


def test_an_upload_interrupted_by_a_reload_continues_where_it_stopped(
        token_server: Callable[..., ServerProcess], tmp_path: Path) -> None:
    size = 20 * 1024 * 1024
    server = token_server("--byte-rate", "4MiB")  # slow enough to reload in the middle
    source = tmp_path / "video.bin"
    source.write_bytes(os.urandom(size))
    session = ScriptSession("page_browser.mjs", _job(server, tmp_path, "resume", token=TOKEN, file=str(source)))
    try:
        upload_id = session.until("started")["started"]
        checkpoint = 8 * 1024 * 1024  # the server records a streaming upload's offset every 8 MiB
        poll(lambda: _listing(server)[0]["offset"] >= checkpoint, what="the first checkpoint")
        session.say("reload")
        answer = session.until("result")
    finally:
        session.close()
    assert not [line for line in answer["console"] if "Content Security Policy" in line], answer["console"]
    before, listed, after = answer["result"]["before"], answer["result"]["listed"], answer["result"]["after"]
    assert before["id"] == listed["id"] == upload_id and int(listed["offset"]) >= checkpoint
    assert [row["id"] for row in after] == [upload_id] and after[0]["resumed"] == "true"
    assert [item["id"] for item in _listing(server)] == [upload_id]  # no second upload was started
    assert stored_sha256(before["url"], AUTH) == hashlib.sha256(source.read_bytes()).hexdigest()
    # what the server had before the reload was not sent again: the reloaded page's HEAD took the upload
    # over (the old request may go on sending until the server closes it: those few pieces are read and
    # dropped, up to 4 MiB on a loaded CI machine) and its PATCH went on from what the server kept
    kept = [int(m.group(1)) for line in server.output if (m := re.search(r"; kept (\d+) bytes", line))]
    assert kept and kept[-1] >= int(listed["offset"])
    assert size <= metric(server.origin, "tuskit_bytes_received_total", AUTH) < size * 1.3


def test_a_wrong_token_is_refused_and_nothing_is_uploaded(
        token_server: Callable[..., ServerProcess], tmp_path: Path) -> None:
    server = token_server()
    note = tmp_path / "note.txt"
    note.write_text("sent with the wrong token\n")
    answer = _browse(server, tmp_path, "refusedToken", token="not-the-token", files=[str(note)])
    assert answer["result"]["status"] == "The server refused this token."
    [row] = answer["result"]["rows"]
    assert row["state"] == "failed" and row["meta"].startswith("failed: 401 missing or invalid bearer token")
    assert _listing(server) == []


def test_the_page_follows_an_upload_made_elsewhere_through_events(
        token_server: Callable[..., ServerProcess], tmp_path: Path) -> None:
    server = token_server()
    session = ScriptSession("page_browser.mjs", _job(server, tmp_path, "watch", token=TOKEN))
    try:
        session.until("ready")
        image = _jpeg(640, 480)
        half = len(image) // 2
        url = create(server.url, len(image), AUTH, filename="from-elsewhere.jpg").headers["Location"]
        session.say(url.rsplit("/", 1)[1])
        row = session.until("row")["row"]
        assert row["state"] == "uploading" and row["offset"] == "0"
        assert patch(url, 0, image[:half], AUTH).status_code == 204
        session.say(str(half))
        progress = session.until("progress")["progress"]
        assert progress["meta"].endswith(f"({100 * half // len(image)}%)")
        assert patch(url, half, image[half:], AUTH).status_code == 204
        session.say("finished")
        final = session.until("result")
        assert final["result"]["row"]["state"] == "processed" and final["result"]["row"]["thumbnail"] == 256
        assert not [line for line in final["console"] if "Content Security Policy" in line], final["console"]
    finally:
        session.close()
