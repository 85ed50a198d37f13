"""The detail view's thumbnail: fetched from a real tuskit server, rendered as half-block pixels."""

from __future__ import annotations

import io
import socket
import threading
from collections.abc import Callable
from pathlib import Path

from PIL import Image
from rich.console import Console

from tuskit.desktop.client.thumbnail import Missing, fetch_thumbnail
from tuskit.desktop.ui.thumbnail import looks_like_image, render_thumbnail

from support import ServerProcess, b64, create_upload


def upload(server: ServerProcess, name: str, data: bytes, token: str | None = None) -> str:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = create_upload(server.url, len(data), metadata=f"filename {b64(name)}", data=data, headers=headers)
    assert response.status_code == 201, response.text
    return response.headers["Location"]


def png(width: int, height: int) -> bytes:
    picture = Image.new("RGB", (width, height), (200, 30, 30))
    picture.paste((30, 30, 200), (0, height // 2, width, height))
    out = io.BytesIO()
    picture.save(out, "PNG")
    return out.getvalue()


def test_a_finished_image_has_a_thumbnail_that_fits_the_cells_given(tus_server: ServerProcess) -> None:
    url = upload(tus_server, "wide.png", png(400, 200))
    data = fetch_thumbnail(url, None, threading.Event())  # waits out 'being made' (Retry-After)
    assert isinstance(data, bytes), data
    with Image.open(io.BytesIO(data)) as thumb:
        assert max(thumb.size) == 256

    pixels = render_thumbnail(data, 40, 10)
    assert not isinstance(pixels, Missing)
    console = Console(width=80, color_system="truecolor", file=io.StringIO())
    lines = console.render_lines(pixels, pad=False)
    assert len(lines) == 10  # 40 columns wide, half as tall (2:1), two pixels stacked per cell
    assert {sum(len(segment.text) for segment in line) for line in lines} == {40}
    top, bottom = lines[0][20].style, lines[-1][20].style
    assert top is not None and bottom is not None
    assert top.bgcolor is not None and top.bgcolor.triplet is not None and top.bgcolor.triplet.red > 150  # red half
    assert bottom.color is not None and bottom.color.triplet is not None and bottom.color.triplet.blue > 150


def test_the_thumbnail_is_asked_for_with_the_sync_token(tmp_path: Path,
                                                        server_factory: Callable[..., ServerProcess]) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text("s3cret alice\n")
    server = server_factory("--tokens", str(tokens))
    url = upload(server, "owned.png", png(64, 64), token="s3cret")
    assert isinstance(fetch_thumbnail(url, "s3cret", threading.Event()), bytes)
    refused = fetch_thumbnail(url, None, threading.Event())
    assert isinstance(refused, Missing) and refused.reason.startswith("401")


def test_a_file_that_is_not_an_image_says_why_there_is_no_thumbnail(tus_server: ServerProcess) -> None:
    url = upload(tus_server, "notes.txt", b"plain words, not pixels\n" * 10)
    got = fetch_thumbnail(url, None, threading.Event())  # waits out 'being made' (Retry-After)
    assert isinstance(got, Missing)
    assert got.reason.startswith("404")


def test_an_unreachable_server_is_a_reason_not_an_exception() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    got = fetch_thumbnail(f"http://127.0.0.1:{port}/files/abc", None, threading.Event(), timeout=5)
    assert isinstance(got, Missing) and "unreachable" in got.reason


def test_undecodable_bytes_are_a_reason_and_names_decide_what_counts_as_an_image() -> None:
    got = render_thumbnail(b"not an image", 10, 10)
    assert isinstance(got, Missing) and "unreadable" in got.reason
    assert looks_like_image("/a/IMG_1.JPG") and not looks_like_image("/a/report.pdf")
