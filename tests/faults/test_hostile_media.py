"""Hostile images: small files that decode into huge or dishonest pixel data.

The analysis must cost at most one decoded frame plus one thumbnail, whatever the format: an animated
WebP is judged by its first frame (not its canvas times its frames), and a picture is reduced before it
is converted or copied. Memory is measured as the peak RSS of a child process that runs the analysis
(Pillow allocates in C, where tracemalloc sees nothing). Every image is made here, with Pillow.
"""

from __future__ import annotations

import io
import json
import struct
import subprocess
import sys
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from PIL import Image
from tus_calls import processed_info, upload

from tuskit.server.media.imaging import process_image

from support import ServerProcess, start_server

MIB = 1024 * 1024
SIZES = (256,)

# Peak RSS growth of one analysis, measured in a fresh interpreter (Pillow imported before the baseline).
_MEASURE = """
import json, resource, sys
from tuskit.server.media.imaging import process_image
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
with open(sys.argv[1], "rb") as source:
    report, thumbnails = process_image(source, (256,), 64_000_000)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"report": report.to_json(), "growth": (after - before) * 1024,
                  "thumbnails": {name: len(data) for name, data in thumbnails.items()}}))
"""


def analyse_in_child(path: Path) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-c", _MEASURE, str(path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def encode(img: Image.Image, fmt: str, **options: Any) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **options)
    return buf.getvalue()


def _riff_chunk(tag: bytes, data: bytes) -> bytes:
    return tag + struct.pack("<I", len(data)) + data + (b"\0" if len(data) % 2 else b"")


def _u24(value: int) -> bytes:
    return struct.pack("<I", value)[:3]


def animated_webp(canvas: tuple[int, int], frames: int) -> bytes:
    """Many 1x1 red frames on a big canvas: a tiny file whose canvas decodes to canvas*4 bytes per copy."""
    still = encode(Image.new("RGBA", (1, 1), (255, 0, 0, 255)), "WEBP", lossless=True)
    assert still[12:16] == b"VP8L"
    frame = still[12:]  # the VP8L chunk
    width, height = canvas
    header = _riff_chunk(b"VP8X", bytes([0x02 | 0x10, 0, 0, 0]) + _u24(width - 1) + _u24(height - 1))
    anim = _riff_chunk(b"ANIM", bytes(6))
    anmf = _riff_chunk(b"ANMF", _u24(0) + _u24(0) + _u24(0) + _u24(0) + _u24(100) + b"\0" + frame)
    payload = b"WEBP" + header + anim + anmf * frames
    return b"RIFF" + struct.pack("<I", len(payload)) + payload


def png_stopping_after(width: int, height: int, rows: int) -> bytes:
    """An RGB PNG whose compressed data ends cleanly (a complete zlib stream, then IEND) after `rows` rows."""
    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    raw = (b"\0" + bytes([200, 30, 30]) * width) * rows
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def test_animated_webp_on_a_huge_canvas_costs_its_first_frame_not_its_canvas(tmp_path: Path) -> None:
    side = 4000  # each copy of the canvas is 64 MB of RGBA; the file is 40 KB
    path = tmp_path / "anim.webp"
    path.write_bytes(animated_webp((side, side), 1000))
    assert path.stat().st_size < 50_000

    result = analyse_in_child(path)
    report = result["report"]
    assert report["valid"] is True and (report["width"], report["height"]) == (side, side)
    assert result["thumbnails"] == {"thumb-256.webp": result["thumbnails"]["thumb-256.webp"]}
    assert result["growth"] < 16 * MIB, f"analysis grew RSS by {result['growth'] / MIB:.0f} MiB"


def test_animated_webp_thumbnail_shows_the_first_frame_in_place(tmp_path: Path) -> None:
    path = tmp_path / "anim.webp"
    path.write_bytes(animated_webp((512, 256), 3))
    with path.open("rb") as source:
        report, thumbnails = process_image(source, SIZES, 64_000_000)
    assert report.valid and (report.width, report.height) == (512, 256)
    thumb = Image.open(io.BytesIO(thumbnails["thumb-256.webp"])).convert("RGBA")
    assert thumb.size == (256, 128)
    assert thumb.getpixel((0, 0))[0] > 180 and thumb.getpixel((0, 0))[3] > 0  # the red frame, top left
    assert thumb.getpixel((200, 100))[3] == 0  # the rest of the canvas is transparent


def test_a_webp_frame_may_cost_no_more_memory_than_one_frame_of_the_pixel_limit() -> None:
    """Pillow decodes a WebP frame into four copies (two canvases in libwebp, a bytes copy taken while it
    holds the GIL, the image): it gets a quarter of the pixels, never four times the memory."""
    still = encode(Image.new("RGBA", (2000, 2000), (10, 20, 30, 255)), "WEBP", lossless=True)
    refused, thumbnails = process_image(io.BytesIO(still), SIZES, 8_000_000)
    assert refused.valid is False and refused.error is not None and "WebP" in refused.error
    assert (refused.width, refused.height) == (2000, 2000) and thumbnails == {}
    assert process_image(io.BytesIO(still), SIZES, 16_000_000)[0].valid is True


def test_rgba_png_costs_one_frame_plus_a_thumbnail(tmp_path: Path) -> None:
    side = 4000
    frame = side * side * 4  # 64 MB decoded
    path = tmp_path / "big.png"
    path.write_bytes(encode(Image.new("RGBA", (side, side), (0, 200, 0, 128)), "PNG"))

    result = analyse_in_child(path)
    assert result["report"]["valid"] is True
    assert result["growth"] < frame * 1.3, f"analysis grew RSS by {result['growth'] / MIB:.0f} MiB"


@pytest.mark.parametrize(
    ("make", "alpha"),
    [
        (lambda: Image.new("RGBA", (1200, 900), (0, 200, 0, 128)), 128),
        (lambda: Image.new("LA", (1200, 900), (90, 60)), 60),
        (lambda: Image.new("P", (1200, 900), 1), None),
        (lambda: Image.new("1", (1200, 900), 1), None),
        (lambda: Image.new("I;16", (1200, 900), 30000), None),
        (lambda: Image.new("CMYK", (1200, 900), (0, 255, 255, 0)), None),
    ],
    ids=["rgba", "la", "palette", "bilevel", "16-bit", "cmyk"],
)
def test_every_mode_is_reduced_into_a_faithful_thumbnail(make: Any, alpha: int | None) -> None:
    img = make()
    fmt = "TIFF" if img.mode == "CMYK" else "PNG"
    report, thumbnails = process_image(io.BytesIO(encode(img, fmt)), (256, 64), 64_000_000)
    assert report.valid, report.error
    big = Image.open(io.BytesIO(thumbnails["thumb-256.webp"]))
    assert big.size == (256, 192)
    assert Image.open(io.BytesIO(thumbnails["thumb-64.webp"])).size == (64, 48)
    expected = img.convert("RGBA" if alpha is not None else "RGB").getpixel((600, 450))
    if img.mode == "I;16":
        expected = (117, 117, 117)  # 16-bit is scaled to 8 bits, not clipped
    if img.mode == "CMYK":
        expected = (255, 0, 0)
    got = big.convert("RGBA" if alpha is not None else "RGB").getpixel((128, 96))
    assert all(abs(a - b) <= 6 for a, b in zip(got, expected, strict=True)), (got, expected)


def test_png_whose_data_stops_cleanly_is_truncated_not_valid() -> None:
    stopped = png_stopping_after(100, 4000, rows=100)
    report, thumbnails = process_image(io.BytesIO(stopped), SIZES, 64_000_000)
    assert report.valid is False and report.error is not None and "truncated" in report.error
    assert thumbnails == {}
    whole = png_stopping_after(100, 4000, rows=4000)
    assert process_image(io.BytesIO(whole), SIZES, 64_000_000)[0].valid is True


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = start_server(tmp_path_factory.mktemp("media"))
    yield srv
    srv.stop()


def test_image_errors_never_show_a_server_path(server: ServerProcess) -> None:
    garbage = upload(server.url, b"\x89PNG\r\n\x1a\n" + b"\x00not really a png" * 50)
    truncated = upload(server.url, png_stopping_after(100, 4000, rows=100))
    for url in (garbage, truncated):
        info = processed_info(url)
        assert info["image_valid"] is False and info["image_error"]
        assert str(server.data_dir) not in info["image_error"] and "/" not in info["image_error"], info
    assert "truncated" in processed_info(truncated)["image_error"]


def test_thumbnails_and_reports_are_not_world_readable(server: ServerProcess) -> None:
    url = upload(server.url, encode(Image.new("RGB", (300, 200), "red"), "PNG"))
    processed_info(url)
    derived = server.data_dir / "derived" / url.rsplit("/", 1)[1]
    made = [derived, *derived.iterdir()]
    assert {p.name for p in made[1:]} == {"report.json", "thumb-256.webp"}
    for path in made:
        assert path.stat().st_mode & 0o007 == 0, f"{path.name} is {oct(path.stat().st_mode)}"
    thumb = requests.get(url + "/thumbnail?size=256", timeout=10)
    assert thumb.status_code == 200
