"""After an upload verifies: its type is sniffed from its bytes, images get oriented WebP thumbnails, and
bad images (corrupt, truncated, decompression bombs) are recorded as invalid while the server carries on.
Every image here is made by Pillow in the test; the server is a real process."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
from PIL import Image
from storage import Storage
from tus_calls import create, patch, processed_info, upload

from tuskit.server.media.sniff import parse_accept, sniff_type, type_gate

from support import TUS, ServerProcess

SIZES = (64, 256)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, storage: Storage) -> Iterator[ServerProcess]:
    """Thumbnails and reports go to the upload's store: the data dir, or the bucket beside the object."""
    srv = storage.start(tmp_path_factory.mktemp("pp"), "--thumbnail-sizes", ",".join(map(str, SIZES)))
    yield srv
    srv.stop()


def encode(img: Image.Image, fmt: str, **options: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **options)
    return buf.getvalue()


def halves(size: tuple[int, int], left: str, right: str) -> Image.Image:
    """An image whose left half is `left` and right half `right`: its orientation is visible."""
    img = Image.new("RGB", size, left)
    img.paste(Image.new("RGB", (size[0] // 2, size[1]), right), (size[0] // 2, 0))
    return img


def thumbnail(url: str, size: int) -> Image.Image:
    response = requests.get(f"{url}/thumbnail?size={size}", timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == "image/webp"
    img = Image.open(io.BytesIO(response.content))
    assert img.format == "WEBP"
    return img


def is_red(pixel: tuple[int, ...]) -> bool:
    return pixel[0] > 180 and pixel[2] < 80


def is_blue(pixel: tuple[int, ...]) -> bool:
    return pixel[2] > 180 and pixel[0] < 80


def test_jpeg_with_exif_rotation_gets_upright_thumbnails(server: ServerProcess) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: display rotated 90 degrees clockwise
    data = encode(halves((800, 400), "red", "blue"), "JPEG", exif=exif.tobytes(), quality=95)
    url = upload(server.url, data, filename="holiday.jpg")

    info = processed_info(url)
    assert info["type"] == "image/jpeg" and info["image_valid"] is True
    assert (info["width"], info["height"]) == (400, 800)  # as displayed, not as stored
    assert set(info["thumbnails"]) == {str(s) for s in SIZES}
    big = thumbnail(url, 256).convert("RGB")
    assert big.size == (128, 256)  # long side 256, portrait after rotation
    # the stored left half (red) is on top once rotated clockwise
    assert is_red(big.getpixel((64, 20))) and is_blue(big.getpixel((64, 236)))
    assert thumbnail(url, 64).size == (32, 64)


@pytest.mark.parametrize(
    ("make", "mime"),
    [
        (lambda: encode(Image.new("RGBA", (300, 120), (0, 200, 0, 128)), "PNG"), "image/png"),
        (lambda: encode(halves((500, 300), "red", "blue"), "WEBP", quality=90), "image/webp"),
        (lambda: encode(Image.new("P", (90, 60), 3), "GIF"), "image/gif"),
    ],
    ids=["png-alpha", "webp", "gif"],
)
def test_type_comes_from_content_not_the_filename(server: ServerProcess, make: Callable[[], bytes], mime: str) -> None:
    url = upload(server.url, make(), filename="report.pdf", filetype="application/pdf")
    info = processed_info(url)
    assert info["type"] == mime
    assert info["filename"] == "report.pdf"
    thumb = thumbnail(url, 256)
    assert max(thumb.size) <= 256
    if mime == "image/png":
        assert thumb.mode == "RGBA" and thumb.getpixel((10, 10))[3] == 128  # transparency survives


def test_sixteen_bit_greyscale_is_scaled_not_clipped(server: ServerProcess) -> None:
    url = upload(server.url, encode(Image.new("I;16", (100, 100), 30000), "PNG"))  # 30000/65535: mid grey
    processed_info(url)
    grey = thumbnail(url, 64).convert("L").getpixel((10, 10))
    assert 100 < grey < 140


def test_a_concatenated_image_is_analysed_and_its_partials_are_not(server: ServerProcess) -> None:
    data = encode(halves((300, 200), "red", "blue"), "PNG")
    parts = []
    for piece in (data[:100], data[100:]):
        url = create(server.url, len(piece), {"Upload-Concat": "partial"}).headers["Location"]
        assert patch(url, 0, piece).status_code == 204
        parts.append(url)
    final = requests.post(server.url, headers={**TUS, "Upload-Concat": "final;" + " ".join(parts)}, timeout=10)
    assert final.status_code == 201
    info = processed_info(final.headers["Location"])
    assert info["type"] == "image/png" and (info["width"], info["height"]) == (300, 200)
    for part in parts:
        assert requests.get(part + "/info", timeout=10).json()["state"] == "partial"  # never analysed
        missing = requests.get(part + "/thumbnail", timeout=10)
        assert missing.status_code == 404 and "Retry-After" not in missing.headers


def test_small_image_is_not_upscaled(server: ServerProcess) -> None:
    url = upload(server.url, encode(Image.new("RGB", (40, 30), "white"), "PNG"))
    processed_info(url)
    assert thumbnail(url, 256).size == (40, 30)


def test_truncated_and_corrupt_images_are_recorded_invalid(server: ServerProcess) -> None:
    whole = encode(halves((600, 400), "red", "blue"), "JPEG", quality=95)
    truncated = upload(server.url, whole[: len(whole) // 2])
    garbage = upload(server.url, b"\x89PNG\r\n\x1a\n" + b"\x00not really a png" * 50)
    for url in (truncated, garbage):
        info = processed_info(url)
        assert info["image_valid"] is False and info["image_error"]
        assert info["type"] in ("image/jpeg", "image/png")
        assert "thumbnails" not in info or not info["thumbnails"]
        missing = requests.get(url + "/thumbnail?size=64", timeout=10)
        assert missing.status_code == 404 and "Retry-After" not in missing.headers
        assert "not a valid image" in missing.text
    # the server is still well: a good image right after is processed normally
    good = upload(server.url, encode(Image.new("RGB", (50, 50), "red"), "PNG"))
    assert processed_info(good)["image_valid"] is True


def test_decompression_bomb_is_refused_without_decoding(server: ServerProcess) -> None:
    bomb = encode(Image.new("1", (10_000, 10_000)), "PNG")  # 100 megapixels in ~12 KB
    assert len(bomb) < 100_000
    url = upload(server.url, bomb)
    info = processed_info(url)
    assert info["image_valid"] is False
    assert (info["width"], info["height"]) == (10_000, 10_000)
    assert "pixels" in info["image_error"]
    assert requests.get(url + "/thumbnail", timeout=10).status_code == 404


def test_pdf_and_text_are_typed_and_get_no_thumbnail(server: ServerProcess) -> None:
    pdf = upload(server.url, b"%PDF-1.7\n1 0 obj\n<<>>\nendobj\ntrailer\n<<>>\n%%EOF\n", filename="x.jpg")
    text = upload(server.url, "plain words, ünïcode too\n".encode())
    assert processed_info(pdf)["type"] == "application/pdf"
    assert processed_info(text)["type"] == "text/plain"
    assert requests.get(pdf + "/thumbnail?size=64", timeout=10).status_code == 404


def test_thumbnail_of_an_unfinished_upload_says_retry_later(server: ServerProcess) -> None:
    data = encode(Image.new("RGB", (64, 64), "red"), "PNG")
    url = create(server.url, len(data)).headers["Location"]
    assert patch(url, 0, data[:10]).status_code == 204
    early = requests.get(url + "/thumbnail?size=64", timeout=10)
    assert early.status_code == 404 and early.headers["Retry-After"].isdigit()
    assert requests.get(url + "/info", timeout=10).json()["state"] == "uploading"
    assert requests.get(url + "/thumbnail?size=99", timeout=10).status_code == 404  # not a size we make
    assert patch(url, 10, data[10:]).status_code == 204
    processed_info(url)
    assert thumbnail(url, 64).size == (64, 64)


def test_accept_gate_refuses_other_types_before_storing_them(tmp_path: Path, storage: Storage) -> None:
    srv = storage.start(tmp_path / "gate", "--accept", "image/*,application/pdf")
    try:
        png = encode(Image.new("RGB", (20, 20), "red"), "PNG")
        assert processed_info(upload(srv.url, png, filename="fine.txt"))["type"] == "image/png"

        text = b"just some text pretending to be a photo\n" * 100
        created = create(srv.url, len(text), filename="photo.jpg", filetype="image/jpeg")
        url = created.headers["Location"]
        refused = patch(url, 0, text)
        assert refused.status_code == 415
        assert "text/plain" in refused.text
        assert not storage.holds(srv, url.rsplit("/", 1)[1])  # nothing of it stored
        assert requests.head(url, headers=TUS, timeout=10).status_code == 410

        # creation-with-upload goes through the same gate
        inline = requests.post(srv.url, data=text, headers={**TUS, "Upload-Length": str(len(text)),
                                                            "Content-Type": "application/offset+octet-stream"},
                               timeout=10)
        assert inline.status_code == 415
    finally:
        srv.stop()


@pytest.mark.parametrize(
    ("head", "mime"),
    [
        (b"\xff\xd8\xff\xe0\x00\x10JFIF", "image/jpeg"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", "image/png"),
        (b"GIF89a\x01\x00", "image/gif"),
        (b"RIFF\x10\x00\x00\x00WEBPVP8 ", "image/webp"),
        (b"RIFF\x10\x00\x00\x00WAVEfmt ", "audio/wav"),
        (b"%PDF-1.4\n", "application/pdf"),
        (b"II*\x00\x08\x00", "image/tiff"),
        (b"PK\x03\x04\x14\x00", "application/zip"),
        (b"\x00\x00\x00\x1cftypheic", "image/heic"),
        (b"\x00\x00\x00\x1cftypisom", "video/mp4"),
        (b"\x1a\x45\xdf\xa3\x9f", "video/webm"),
        ("\ufeffname,size\r\nphoto.jpg,12\r\n".encode(), "text/plain"),
        ("café"[:3].encode() + "é".encode()[:1], "text/plain"),  # a character cut at the end of the head
        (b"<svg onload=alert(1)>", "text/plain"),  # markup is never served as markup
        (b"\x00\x01\x02binary", "application/octet-stream"),
        (b"", "application/octet-stream"),
    ],
)
def test_sniffing_by_magic_bytes(head: bytes, mime: str) -> None:
    assert sniff_type(head) == mime


def test_accept_patterns_and_gate() -> None:
    gate = type_gate(parse_accept(" image/* , application/pdf"))
    assert gate(b"\x89PNG\r\n\x1a\n") is None and gate(b"%PDF-1.7") is None
    assert "text/plain" in (gate(b"hello") or "")
    with pytest.raises(ValueError, match="MIME type"):
        parse_accept("image")
