"""An owner's uploads, newest first, a page at a time: what `GET /uploads` (and `tuskit ls`) shows.

The cursor handed to clients is opaque to them: it is the position (creation time, id) of the last upload
of the page, so paging neither repeats nor skips an upload while others are added (they appear on the
first page) or removed. Uploads that are gone (terminated, expired) are not listed; failed ones are, so
their owner learns why.
"""

from __future__ import annotations

import base64
import binascii
import math
import time
from dataclasses import dataclass

from tuskit import errors

from . import ids
from .model import ACTIVE, DONE, FAILED, Upload
from .ports import Position, StateStore

DEFAULT_LIMIT = 50
MAX_LIMIT = 500


@dataclass(frozen=True)
class Page:
    uploads: list[Upload]
    next: str | None  # the cursor of the next page; None on the last one


def state_of(upload: Upload, processed: bool) -> str:
    """The one-word state clients show: uploading, partial, processing, processed or failed."""
    if upload.status == FAILED:
        return "failed"
    if upload.status != DONE:
        return "uploading"
    if upload.concat == "partial":
        return "partial"  # a piece of a final upload: never analysed on its own
    return "processed" if processed else "processing"


def encode_cursor(position: Position) -> str:
    created, upload_id = position
    return base64.urlsafe_b64encode(f"{created!r} {upload_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> Position:
    """The position a cursor names; 400 for anything this server did not hand out."""
    try:
        created_text, upload_id = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode().split(" ")
        created = float(created_text)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise errors.BAD_REQUEST("cursor is not one this server handed out") from None
    if not math.isfinite(created) or not ids.is_valid(upload_id):
        raise errors.BAD_REQUEST("cursor is not one this server handed out")
    return created, upload_id


def _shown(upload: Upload, now: float) -> bool:
    """Tombstones that have not left the index yet, and unfinished uploads past their expiry, are gone."""
    if upload.status not in (ACTIVE, DONE, FAILED):
        return False
    return not (upload.status == ACTIVE and upload.expires is not None and upload.expires <= now)


async def list_page(state: StateStore, owner: str, limit: int, cursor: str | None) -> Page:
    if not 1 <= limit <= MAX_LIMIT:
        raise errors.BAD_REQUEST(f"limit must be between 1 and {MAX_LIMIT}")
    after = decode_cursor(cursor) if cursor else None
    uploads, position = await state.owned(owner, limit, after)
    now = time.time()
    return Page([u for u in uploads if _shown(u, now)], encode_cursor(position) if position else None)
