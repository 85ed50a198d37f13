"""`GET {base}{id}/info` (what arrived, as JSON), `GET {base}{id}/thumbnail?size=N` (a WebP preview) and
`GET {base}{id}/link?expires=1h` (a signed download link, for the upload's owner only)."""

from __future__ import annotations

import argparse
import time
from typing import Any

from tuskit import errors
from tuskit.settings import parse_duration

from ..core.listing import state_of
from ..core.model import DONE, Upload
from ..media.imaging import thumbnail_name
from ..media.postprocess import REPORT, parse_report
from . import signing
from .base import BaseHandler

PROCESSING_RETRY_SECONDS = "2"
MAX_LINK_SECONDS = 30 * 86400


class _UploadResource(BaseHandler):
    async def _upload(self, upload_id: str) -> Upload:
        return await self.ctx.service.get(upload_id, self.owner())

    async def _report(self, upload: Upload) -> dict[str, Any] | None:
        """The post-processing report; None while it is being made (restarted here if its maker died)."""
        if upload.status != DONE:
            return None
        report = parse_report(await self.ctx.service.artefact(upload.id, REPORT))
        processor = self.ctx.postprocessor
        if report is None and processor.overdue(upload, time.time()):
            self.ctx.service.spawn(processor(upload))
        return report


class InfoHandler(_UploadResource):
    async def get(self, upload_id: str) -> None:
        upload = await self._upload(upload_id)
        report = await self._report(upload)
        base = self.upload_url(upload.id)
        info: dict[str, Any] = {
            "id": upload.id,
            "filename": upload.filename,
            "relativePath": upload.relative_path,
            "size": upload.length,
            "offset": upload.offset,
            "sha256": upload.sha256 or None,
            "created": upload.created,
            "finished": upload.finished,
            "state": state_of(upload, processed=report is not None),
            "type": report.get("type") if report else None,
            "url": base,
        }
        image = (report or {}).get("image")
        if image:
            info.update(width=image.get("width"), height=image.get("height"), image_valid=image.get("valid"),
                        image_error=image.get("error"))
            info["thumbnails"] = {str(size): f"{base}/thumbnail?size={size}" for size in image.get("thumbnails", {})}
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")
        self.finish(info)


class ThumbnailHandler(_UploadResource):
    async def get(self, upload_id: str) -> None:
        upload = await self._upload(upload_id)
        sizes = self.ctx.config.thumbnail_sizes
        try:
            size = int(self.get_query_argument("size", str(sizes[0])))
        except ValueError:
            raise errors.BAD_REQUEST("size must be an integer") from None
        if size not in sizes:
            raise errors.NOT_FOUND(f"no thumbnail of size {size}; sizes made: {', '.join(map(str, sizes))}")
        report = await self._report(upload)
        if upload.concat == "partial":
            raise errors.NOT_FOUND("partial uploads have no thumbnail; their final upload has")
        if report is None:
            raise errors.NOT_FOUND("thumbnail is being made", headers={"Retry-After": PROCESSING_RETRY_SECONDS})
        image = report.get("image")
        if not image or str(size) not in image.get("thumbnails", {}):
            raise errors.NOT_FOUND("this upload has no thumbnail (not a valid image)")
        data = await self.ctx.service.artefact(upload.id, thumbnail_name(size))
        if data is None:
            raise errors.NOT_FOUND("thumbnail is being made", headers={"Retry-After": PROCESSING_RETRY_SECONDS})
        self.set_header("Content-Type", "image/webp")
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Cache-Control", "private, max-age=86400")
        self.finish(data)


class LinkHandler(_UploadResource):
    signed_reads = False  # a link's holder must not mint itself longer-lived links

    async def get(self, upload_id: str) -> None:
        upload = await self._upload(upload_id)
        if upload.status != DONE:
            raise errors.NOT_FOUND("upload is not finished yet; only finished uploads can be shared")
        try:
            seconds = parse_duration(self.get_query_argument("expires", "1h"))
        except argparse.ArgumentTypeError:
            raise errors.BAD_REQUEST("expires must be a duration such as 30m, 1h or 7d") from None
        if not 0 < seconds <= MAX_LINK_SECONDS:
            raise errors.BAD_REQUEST(f"expires must be positive and at most {MAX_LINK_SECONDS // 86400} days")
        expires = int(time.time() + seconds)
        query = signing.signed_query(self.ctx.signing_secret, upload.id, expires)
        self.set_header("Cache-Control", "no-store")
        self.finish({"url": f"{self.upload_url(upload.id)}?{query}", "expires": expires})
