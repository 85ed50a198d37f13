"""`GET /uploads?limit=N&cursor=C`: the caller's uploads, newest first, as JSON pages.

An operators'-style route outside the tus endpoint, so it can never collide with an upload URL. Without
`--tokens` every upload belongs to nobody in particular and an upload URL is the only secret that guards
it (whoever holds it may download or delete it), so the listing, which hands out every URL, is off unless
the operator opts in with `--public-listing`.
"""

from __future__ import annotations

from typing import Any

from tuskit import errors

from ..core.listing import DEFAULT_LIMIT, state_of
from ..core.model import Upload
from . import cors
from .base import BaseHandler


class ListingHandler(BaseHandler):
    async def options(self) -> None:
        """Preflight: a page on another origin sends Authorization, which browsers ask about first."""
        for name, value in cors.preflight_headers().items():
            self.set_header(name, value)
        self.set_status(204)

    async def get(self) -> None:
        if self.ctx.tokens is None and not self.ctx.config.public_listing:
            raise errors.FORBIDDEN("listing uploads needs --tokens (each caller sees its own), or "
                                   "--public-listing to show every upload to anyone")
        try:
            limit = int(self.get_query_argument("limit", str(DEFAULT_LIMIT)))
        except ValueError:
            raise errors.BAD_REQUEST("limit must be an integer") from None
        page = await self.ctx.service.listing(self.owner(), limit, self.get_query_argument("cursor", None) or None)
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")
        base = self.upload_url("")  # the public origin is worked out once per page, not per upload
        self.finish({"uploads": [_item(base + upload.id, upload) for upload in page.uploads], "next": page.next})


def _item(url: str, upload: Upload) -> dict[str, Any]:
    return {
        "id": upload.id,
        "url": url,
        "state": state_of(upload, processed=bool(upload.content_type)),
        "size": upload.length,
        "offset": upload.offset,
        "filename": upload.filename,
        "relativePath": upload.relative_path,
        "sha256": upload.sha256 or None,
        "type": upload.content_type or None,
        "created": upload.created,
        "finished": upload.finished,
        "thumbnail": f"{url}/thumbnail?size={upload.thumbnails[0]}" if upload.thumbnails else None,
        "reason": upload.reason or None,  # why a failed upload failed
    }
