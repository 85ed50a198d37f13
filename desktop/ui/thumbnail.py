"""Which files get a thumbnail in the detail view, and how its bytes become terminal half-block pixels.

Decoding with Pillow blocks, so the detail view calls `render_thumbnail` from a thread worker, as it does
the fetch (`tuskit.desktop.client.thumbnail`, reached through the engine).
"""

from __future__ import annotations

import io
from pathlib import PurePath

from PIL import Image, UnidentifiedImageError
from rich_pixels import Pixels

from ..client.thumbnail import Missing

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp", ".tif", ".tiff"})


def looks_like_image(path: str) -> bool:
    """Only files named like images get a thumbnail request (the server answers 404 for the rest anyway)."""
    return PurePath(path).suffix.lower() in IMAGE_SUFFIXES


def render_thumbnail(data: bytes, max_columns: int, max_rows: int) -> Pixels | Missing:
    """Fit the picture in `max_columns` x `max_rows` cells: each cell shows two pixels stacked (half blocks)."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            picture = image.convert("RGBA")
    except (UnidentifiedImageError, OSError) as exc:
        return Missing(f"unreadable thumbnail: {exc}")
    picture.thumbnail((max(max_columns, 1), max(max_rows * 2, 2)), Image.Resampling.LANCZOS)
    return Pixels.from_image(picture)
