"""Fetch an upload's thumbnail from the server and turn it into terminal half-block pixels.

Both halves block (HTTP, Pillow), so the app calls them from a thread worker, never on the UI loop.
"""

from __future__ import annotations

import io
import threading
from dataclasses import dataclass
from pathlib import PurePath

import requests
from PIL import Image, UnidentifiedImageError
from rich_pixels import Pixels

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp", ".tif", ".tiff"})
THUMBNAIL_SIZE = 256
MAX_WAITS = 5
"""How many `Retry-After` answers (thumbnail still being made) to sit out before giving up."""
MAX_WAIT_SECONDS = 10.0


@dataclass(frozen=True)
class Missing:
    """Why there is no thumbnail to show; the detail view prints it in place of the picture."""

    reason: str


def looks_like_image(path: str) -> bool:
    """Only files named like images get a thumbnail request (the server answers 404 for the rest anyway)."""
    return PurePath(path).suffix.lower() in IMAGE_SUFFIXES


def thumbnail_url(upload_url: str, size: int = THUMBNAIL_SIZE) -> str:
    return f"{upload_url.rstrip('/')}/thumbnail?size={size}"


def fetch_thumbnail(upload_url: str, token: str | None, cancelled: threading.Event,
                    size: int = THUMBNAIL_SIZE, timeout: float = 10.0) -> bytes | Missing:
    """The thumbnail's bytes, waiting out `Retry-After` while the server is still making it."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    url = thumbnail_url(upload_url, size)
    for _ in range(MAX_WAITS + 1):
        try:
            response = requests.get(url, headers=headers, timeout=timeout)
        except requests.RequestException as exc:
            return Missing(f"server unreachable: {exc.__class__.__name__}")
        if response.status_code == 200:
            return response.content
        reason = response.text.strip().splitlines()[0] if response.text.strip() else response.reason
        wait = _retry_after(response.headers.get("Retry-After"))
        if wait is None:
            return Missing(f"{response.status_code}: {reason}")
        if cancelled.wait(min(wait, MAX_WAIT_SECONDS)):
            return Missing("cancelled")
    return Missing("the server is still making the thumbnail; open the details again later")


def render_thumbnail(data: bytes, max_columns: int, max_rows: int) -> Pixels | Missing:
    """Fit the picture in `max_columns` x `max_rows` cells: each cell shows two pixels stacked (half blocks)."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            picture = image.convert("RGBA")
    except (UnidentifiedImageError, OSError) as exc:
        return Missing(f"unreadable thumbnail: {exc}")
    picture.thumbnail((max(max_columns, 1), max(max_rows * 2, 2)), Image.Resampling.LANCZOS)
    return Pixels.from_image(picture)


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (the server sends delta-seconds; dates are not worth a wait here)."""
    if value is None:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        return None
