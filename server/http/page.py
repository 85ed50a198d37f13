"""The upload page at `/` (off with `--no-page`) and its two assets at `/page/<name>`.

Everything it runs ships in the wheel (`assets/`, its script bundled from tus-js-client by
scripts/build_page.mjs), so the page works without a CDN or any network but the server's. It is public:
it is where a user types the token that the API calls then carry. The Content-Security-Policy lets it talk
only to this origin and run only its own script, so a hostile filename shown on it cannot run anything.
"""

from __future__ import annotations

import hashlib
import html
import json
from dataclasses import dataclass
from importlib import resources

from tuskit import errors

from .base import BaseHandler

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob:; connect-src 'self'; "
       "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
CHUNK_SIZE = 32 * 1024 * 1024  # bytes per PATCH: progress is saved at least this often behind any proxy
_TYPES = {"page.js": "text/javascript; charset=utf-8", "page.css": "text/css; charset=utf-8",
          "page-licenses.txt": "text/plain; charset=utf-8"}


@dataclass(frozen=True)
class PageAssets:
    """The page's files, read once at start-up; the HTML names its assets by content hash, so browsers may
    cache them for good and still never run a stale script after an upgrade."""

    template: str
    files: dict[str, bytes]

    @classmethod
    def load(cls) -> PageAssets:
        folder = resources.files(__package__) / "assets"
        return cls((folder / "index.html").read_text(encoding="utf-8"),
                   {name: (folder / name).read_bytes() for name in _TYPES})

    def version(self, name: str) -> str:
        return hashlib.sha256(self.files[name]).hexdigest()[:16]

    def html(self, settings: dict[str, object]) -> str:
        return (self.template.replace("{{css}}", self.version("page.css")).replace("{{js}}", self.version("page.js"))
                .replace("{{config}}", html.escape(json.dumps(settings), quote=True)))


class _PageHandler(BaseHandler):
    public = True  # no token: the page is where one is entered

    def initialize(self, assets: PageAssets) -> None:  # type: ignore[override]
        super().initialize()
        self.assets = assets

    def set_default_headers(self) -> None:
        super().set_default_headers()
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Referrer-Policy", "no-referrer")


class PageHandler(_PageHandler):
    async def get(self) -> None:
        config = self.ctx.config
        settings = {"endpoint": config.base_path, "tokens": self.ctx.tokens is not None,
                    "listing": self.ctx.tokens is not None or config.public_listing, "chunkSize": CHUNK_SIZE}
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.set_header("Content-Security-Policy", CSP)
        self.set_header("Cache-Control", "no-cache")
        self.finish(self.assets.html(settings))


class AssetHandler(_PageHandler):
    async def get(self, name: str) -> None:
        if name not in _TYPES:
            raise errors.NOT_FOUND(f"no such page asset {name!r}")
        self.set_header("Content-Type", _TYPES[name])
        versioned = self.get_query_argument("v", "") == self.assets.version(name)
        self.set_header("Cache-Control", "public, max-age=31536000, immutable" if versioned else "no-cache")
        self.finish(self.assets.files[name])
