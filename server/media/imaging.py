"""Decode an uploaded image safely and make WebP thumbnails (executor side: blocking, CPU-bound).

Uploads are untrusted: the pixel count is checked from the header before anything is decoded (a
decompression bomb is a small file that would expand into gigabytes), and a truncated or corrupt file is
recorded as invalid rather than raised. Thumbnails are oriented as the camera meant (EXIF orientation).
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from PIL import Image, ImageOps

# what we hand to Pillow; other image types (HEIC, AVIF...) are reported by type only
DECODABLE = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp", "image/bmp", "image/tiff"})
WEBP_QUALITY = 80
_ORIENTATION_TAG = 0x0112
_SWAPS_AXES = {5, 6, 7, 8}  # orientations that rotate by 90 degrees


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


def process_image(source: BinaryIO, sizes: Sequence[int], max_pixels: int) -> tuple[ImageReport, Thumbnails]:
    """Facts about the image and one WebP thumbnail per size; never raises for a bad image."""
    thumbnails: Thumbnails = {}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limit decides
            with Image.open(source) as img:
                return _process_open(img, sizes, max_pixels, thumbnails), thumbnails
    except Image.DecompressionBombError as exc:
        return ImageReport(valid=False, error=f"refused to decode: {exc}"), {}
    except Exception as exc:
        # untrusted bytes: Pillow reports truncation and corruption as OSError, SyntaxError, ValueError,
        # struct.error ... depending on the codec; any of them means "not a valid image", not a crash
        return ImageReport(valid=False, error=f"cannot decode image: {exc}"), {}


def _process_open(img: Image.Image, sizes: Sequence[int], max_pixels: int, out: Thumbnails) -> ImageReport:
    width, height = img.size
    fmt = img.format
    if width * height > max_pixels:
        return ImageReport(valid=False, width=width, height=height, format=fmt,
                           error=f"{width}x{height} is more than the {max_pixels} pixels we decode")
    orientation = img.getexif().get(_ORIENTATION_TAG, 1)
    if orientation in _SWAPS_AXES:
        width, height = height, width
    largest = max(sizes)
    if fmt == "JPEG":
        img.draft("RGB", (largest, largest))  # DCT scaling: decode at 1/2..1/8 size, far cheaper
    img.load()  # decodes every byte: truncation and corruption surface here
    pixels = _displayable(ImageOps.exif_transpose(img))
    report = ImageReport(valid=True, width=width, height=height, format=fmt)
    for size in sorted(sizes, reverse=True):
        thumb = pixels.copy()
        thumb.thumbnail((size, size), Image.Resampling.LANCZOS)
        out[thumbnail_name(size)] = _webp(thumb)
        report.thumbnails[str(size)] = thumbnail_name(size)
    return report


def _displayable(img: Image.Image) -> Image.Image:
    """RGB or RGBA, as WebP wants; 16-bit greyscale is scaled to 8 bits (a plain convert clips it white)."""
    if img.mode.startswith("I;16") or img.mode == "I":
        img = img.convert("I").point(lambda v: v / 256).convert("L")
    return img.convert("RGBA" if _has_alpha(img) else "RGB")


def _has_alpha(img: Image.Image) -> bool:
    return img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (img.mode == "P" and "transparency" in img.info)


def _webp(img: Image.Image) -> bytes:
    out = io.BytesIO()
    img.save(out, "WEBP", quality=WEBP_QUALITY, method=4)
    return out.getvalue()
