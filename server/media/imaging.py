"""Decode an uploaded image safely and make WebP thumbnails (executor side: blocking, CPU-bound).

Uploads are untrusted: the pixel count is checked from the header before anything is decoded (a
decompression bomb is a small file that would expand into gigabytes), and a truncated or corrupt file is
recorded as invalid rather than raised. Thumbnails are oriented as the camera meant (EXIF orientation).

The cost of an analysis is one decoded frame plus one thumbnail, whatever the file claims:
- one frame: an animation is judged by its first frame. Pillow's WebP decoder composites every frame onto
  a full canvas, keeps two canvases in libwebp and copies a third into a Python bytes object while it
  holds the GIL (a 64-megapixel canvas froze the event loop for 160-660 ms), so an animated WebP's first
  frame is cut out of the container and decoded alone, at its own size.
- a WebP frame costs four frames in Pillow, so it may have a quarter of the pixels of another format.
- decoded once, reduced early: JPEG decodes at 1/2..1/8 size (DCT scaling); everything else is reduced by
  an integer factor band by band, converting each band to RGB or premultiplied RGBA on the way, so no
  full-size converted copy ever exists. The decoded frame is dropped before the thumbnails are made, all
  from the reduced image; orientation is applied to each thumbnail, not to the frame.
"""

from __future__ import annotations

import io
import struct
import warnings
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from PIL import Image

# what we hand to Pillow; other image types (HEIC, AVIF...) are reported by type only
DECODABLE = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp", "image/bmp", "image/tiff"})
WEBP_QUALITY = 80
REDUCING_GAP = 2  # reduce to at least twice the thumbnail, then resample (Pillow's thumbnail() default)
BAND_PIXELS = 1 << 20  # pixels converted at a time while reducing
# compressed bytes per decoder call (Pillow's default is 64 KiB): Pillow holds the GIL for each call, and
# 64 KiB of deflate can expand 1000-fold (a uniform 7999x7999 PNG held it for 110 ms at a time, 16-35 ms now)
DECODE_BLOCK = 4096
_ORIENTATION_TAG = 0x0112
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_SWAPS_AXES = {5, 6, 7, 8}  # orientations that rotate by 90 degrees
_PREMULTIPLIED = "RGBa"
# Pillow decodes WebP through libwebp's animation decoder: two canvases there, a bytes copy made while it
# holds the GIL, then the image itself. The pixel limit bounds memory as one RGBA frame would, so a WebP
# frame may have a quarter of the pixels (and the GIL is held for a quarter as long).
WEBP_DECODE_COPIES = 4


@dataclass
class ImageReport:
    valid: bool
    width: int | None = None  # as displayed, after EXIF orientation
    height: int | None = None
    format: str | None = None
    error: str | None = None
    thumbnails: dict[str, str] = field(default_factory=dict)  # long side (as text, JSON keys) -> file name

    def to_json(self) -> dict[str, Any]:
        return {"valid": self.valid, "width": self.width, "height": self.height, "format": self.format,
                "error": self.error, "thumbnails": self.thumbnails}


def thumbnail_name(size: int) -> str:
    return f"thumb-{size}.webp"


Thumbnails = dict[str, bytes]  # file name -> WebP bytes


class Truncated(ValueError):
    """The image's data ends before its last row (Pillow accepts a PNG whose zlib stream ends early)."""


def process_image(source: BinaryIO, sizes: Sequence[int], max_pixels: int) -> tuple[ImageReport, Thumbnails]:
    """Facts about the image and one WebP thumbnail per size; never raises for a bad image."""
    thumbnails: Thumbnails = {}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limit decides
            frame = _open_frame(source)
            with frame.image:
                return _process_frame(frame, source, sizes, max_pixels, thumbnails), thumbnails
    except Image.DecompressionBombError as exc:
        return ImageReport(valid=False, error=f"refused to decode: {exc}"), {}
    except Image.UnidentifiedImageError:
        # Pillow's message names the file object, i.e. a path on this server
        return ImageReport(valid=False, error="not an image format this server decodes"), {}
    except Exception as exc:
        # untrusted bytes: Pillow reports truncation and corruption as OSError, SyntaxError, ValueError,
        # struct.error ... depending on the codec; any of them means "not a valid image", not a crash
        return ImageReport(valid=False, error=f"cannot decode image: {_without_path(str(exc), source)}"), {}


def _without_path(message: str, source: BinaryIO) -> str:
    name = getattr(source, "name", None)
    return message.replace(name, "<upload>") if isinstance(name, str) and name else message


@dataclass(frozen=True)
class _Frame:
    """The pixels to decode, placed on the canvas a viewer shows (an animation's frame may be smaller)."""

    image: Image.Image  # opened, not decoded yet
    canvas: tuple[int, int]
    at: tuple[int, int]
    extent: tuple[int, int]  # the frame's size in canvas pixels (a drafted JPEG decodes smaller)

    @property
    def covers(self) -> bool:
        return self.at == (0, 0) and self.extent == self.canvas


def _open_frame(source: BinaryIO) -> _Frame:
    head = source.read(30)
    source.seek(0)
    if _is_animated_webp(head):
        return _first_webp_frame(source, head)
    img = Image.open(source)
    return _Frame(img, img.size, (0, 0), img.size)


def _process_frame(frame: _Frame, source: BinaryIO, sizes: Sequence[int], max_pixels: int,
                   out: Thumbnails) -> ImageReport:
    img = frame.image
    width, height = frame.canvas
    fmt = img.format
    if width * height > max_pixels:
        return ImageReport(valid=False, width=width, height=height, format=fmt,
                           error=f"{width}x{height} is more than the {max_pixels} pixels we decode")
    if fmt == "WEBP" and frame.extent[0] * frame.extent[1] * WEBP_DECODE_COPIES > max_pixels:
        return ImageReport(valid=False, width=width, height=height, format=fmt,
                           error=f"a {frame.extent[0]}x{frame.extent[1]} WebP frame decodes into "
                                 f"{WEBP_DECODE_COPIES} copies; we decode WebP frames up to "
                                 f"{max_pixels // WEBP_DECODE_COPIES} pixels")
    orientation = img.getexif().get(_ORIENTATION_TAG, 1)
    report = ImageReport(valid=True, width=width, height=height, format=fmt)
    if orientation in _SWAPS_AXES:
        report.width, report.height = height, width
    largest = max(sizes)
    if fmt == "JPEG":
        target = _fit(frame.canvas, largest)
        img.draft("RGB", (target[0] * REDUCING_GAP, target[1] * REDUCING_GAP))  # DCT scaling: 1/2..1/8 size
    img.decodermaxblock = DECODE_BLOCK
    img.load()  # decodes every byte: truncation and corruption surface here
    if fmt == "PNG":
        _check_png_rows(source, img)
    reduced = _reduce(frame, largest)
    if reduced is not img:
        img.close()  # the decoded frame goes before any thumbnail is made
    for size in sorted(sizes, reverse=True):
        thumb = _thumbnail(reduced, frame, size)
        if orientation in _TRANSPOSE:
            thumb = thumb.transpose(_TRANSPOSE[orientation])
        out[thumbnail_name(size)] = _webp(thumb)
        report.thumbnails[str(size)] = thumbnail_name(size)
    return report


def _fit(size: tuple[int, int], box: int) -> tuple[int, int]:
    """`size` scaled to fit a `box`-sided square, never enlarged."""
    width, height = size
    if width <= box and height <= box:
        return size
    scale = box / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def _reduce(frame: _Frame, largest: int) -> Image.Image:
    """The decoded frame reduced by an integer factor to at least twice the largest thumbnail, as RGB or
    premultiplied RGBA (what resampling needs), converted band by band."""
    img = frame.image
    width, height = img.size
    shown = _fit(frame.canvas, largest)  # the canvas as the largest thumbnail
    frame_shown = (frame.extent[0] * shown[0] / frame.canvas[0], frame.extent[1] * shown[1] / frame.canvas[1])
    factor = max(1, int(min(width / frame_shown[0], height / frame_shown[1]) / REDUCING_GAP))
    alpha = _has_alpha(img) or not frame.covers  # the canvas around a smaller frame is transparent
    work = _PREMULTIPLIED if alpha else "RGB"
    if img.mode == work:
        reduced = img.reduce(factor) if factor > 1 else img
    else:
        reduced = Image.new(work, (-(-width // factor), -(-height // factor)))
        rows = factor * max(1, BAND_PIXELS // (width * factor))
        for top in range(0, height, rows):
            band = _displayable(img.crop((0, top, width, min(height, top + rows))), alpha)
            if alpha:
                band = band.convert(_PREMULTIPLIED)
            reduced.paste(band.reduce(factor) if factor > 1 else band, (0, top // factor))
    return reduced


def _thumbnail(img: Image.Image, frame: _Frame, size: int) -> Image.Image:
    """One thumbnail of the canvas, resampled from the reduced frame (nothing larger is copied)."""
    target = _fit(frame.canvas, size)
    if frame.covers:
        thumb = img.resize(target, Image.Resampling.LANCZOS)
    else:  # a first frame smaller than its canvas, placed on a transparent one
        scale = target[0] / frame.canvas[0]
        extent = (max(1, round(frame.extent[0] * scale)), max(1, round(frame.extent[1] * scale)))
        thumb = Image.new(img.mode, target)
        thumb.paste(img.resize(extent, Image.Resampling.LANCZOS),
                    (round(frame.at[0] * scale), round(frame.at[1] * scale)))
    return thumb.convert("RGBA") if thumb.mode == _PREMULTIPLIED else thumb


def _displayable(img: Image.Image, alpha: bool) -> Image.Image:
    """RGB or RGBA, as WebP wants; 16-bit greyscale is scaled to 8 bits (a plain convert clips it white)."""
    if img.mode.startswith("I;16") or img.mode == "I":
        img = img.convert("I").point(lambda v: v / 256).convert("L")
    mode = "RGBA" if alpha else "RGB"
    return img if img.mode == mode else img.convert(mode)


def _has_alpha(img: Image.Image) -> bool:
    return img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (img.mode == "P" and "transparency" in img.info)


def _webp(img: Image.Image) -> bytes:
    out = io.BytesIO()
    img.save(out, "WEBP", quality=WEBP_QUALITY, method=4)
    return out.getvalue()


# ---- containers: what Pillow does not check or cannot skip ------------------------------------------------

_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # by colour type
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))
_PIECE = 1 << 20


def _chunks(source: BinaryIO, start: int, little_endian: bool) -> Iterator[tuple[bytes, int, int]]:
    """(tag, offset of its data, length) of each chunk from `start` (PNG: big-endian, RIFF: little-endian)."""
    at = start
    while True:
        source.seek(at)
        head = source.read(8)
        if len(head) < 8:
            return
        if little_endian:
            tag, length = head[:4], int.from_bytes(head[4:], "little")
            after = length + (length & 1)  # RIFF pads to even sizes
        else:
            length, tag = int.from_bytes(head[:4], "big"), head[4:]
            after = length + 4  # CRC
        yield tag, at + 8, length
        at += 8 + after


def _check_png_rows(source: BinaryIO, img: Image.Image) -> None:
    """Truncated unless the image data inflates to every row the header announces.

    Pillow stops without complaint where the zlib stream ends and leaves the missing rows zero (libpng
    says "Not enough image data"). Rows decode top to bottom, so a last row with anything in it proves
    the rest; otherwise (or for an interlaced image) the data is inflated once more, keeping no pixels."""
    source.seek(8)
    header = source.read(25)
    if len(header) < 25 or header[4:8] != b"IHDR":
        raise SyntaxError("PNG without IHDR")
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", header[8:21])
    if not interlace and _has_content(img.crop((0, img.height - 1, img.width, img.height))):
        return
    bits = depth * _PNG_CHANNELS.get(colour, 4)
    expected = 0
    for x0, y0, dx, dy in _ADAM7 if interlace else ((0, 0, 1, 1),):
        columns, rows = -(-(width - x0) // dx), -(-(height - y0) // dy)
        if columns > 0 and rows > 0:
            expected += rows * (1 + -(-columns * bits // 8))
    inflater = zlib.decompressobj()
    produced = 0
    for tag, at, length in _chunks(source, 8, little_endian=False):
        if tag == b"IEND" or produced >= expected or inflater.eof:
            break
        if tag != b"IDAT":
            continue
        source.seek(at)
        for start in range(0, length, _PIECE):
            data = source.read(min(_PIECE, length - start))
            while data and produced < expected and not inflater.eof:
                produced += len(inflater.decompress(data, _PIECE))
                data = inflater.unconsumed_tail
    if produced < expected:
        raise Truncated(f"image file is truncated: its data ends after {produced * 100 // expected}% of its rows")


def _has_content(row: Image.Image) -> bool:
    try:
        return row.getbbox(alpha_only=False) is not None
    except ValueError:  # a mode getbbox does not take: prove nothing
        return False


def _u24(data: bytes, at: int) -> int:
    return int.from_bytes(data[at:at + 3], "little")


def _is_animated_webp(head: bytes) -> bool:
    return head[:4] == b"RIFF" and head[8:16] == b"WEBPVP8X" and len(head) >= 30 and bool(head[20] & 0x02)


def _first_webp_frame(source: BinaryIO, head: bytes) -> _Frame:
    """An animated WebP's first frame, cut out of the container and opened as a still image of its own
    size: only that frame's chunk is read (Pillow would read the whole file and copy it).

    Over a transparent canvas (how libwebp starts every animation), blending does not change the first
    frame, so the frame placed on an empty canvas is exactly what a viewer first shows."""
    canvas = (_u24(head, 24) + 1, _u24(head, 27) + 1)
    for tag, at, length in _chunks(source, 12, little_endian=True):
        if tag == b"ANMF" and length >= 16:
            source.seek(at)
            body = source.read(length)
            placed = (2 * _u24(body, 0), 2 * _u24(body, 3))
            extent = (_u24(body, 6) + 1, _u24(body, 9) + 1)
            if placed[0] + extent[0] > canvas[0] or placed[1] + extent[1] > canvas[1]:
                raise ValueError("animated WebP whose first frame lies outside its canvas")
            frame = Image.open(io.BytesIO(_still_webp(body[16:], extent)), formats=["WEBP"])
            return _Frame(frame, canvas, placed, extent)
    raise ValueError("animated WebP without a first frame")


def _still_webp(chunks: bytes, size: tuple[int, int]) -> bytes:
    """A WebP file of one frame's chunks (ALPH + VP8, or VP8L)."""
    if chunks[:4] == b"ALPH":  # lossy with alpha needs the extended header
        extended = bytes([0x10, 0, 0, 0]) + (size[0] - 1).to_bytes(3, "little") + (size[1] - 1).to_bytes(3, "little")
        chunks = b"VP8X" + len(extended).to_bytes(4, "little") + extended + chunks
    payload = b"WEBP" + chunks
    return b"RIFF" + len(payload).to_bytes(4, "little") + payload
