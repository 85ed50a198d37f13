"""The URL map: operators' routes, the per-upload resources, and the upload endpoint (tus 1.0 and the IETF draft)."""

from __future__ import annotations

import re

import tornado.web

from .base import log_request
from .context import ServerContext
from .ietf import IetfHandler, InteropVersionMatches
from .info import InfoHandler, LinkHandler, ThumbnailHandler
from .listing import ListingHandler
from .ops import HealthHandler, MetricsHandler
from .page import AssetHandler, PageAssets, PageHandler
from .sse import EventsHandler
from .tus import NotFoundHandler, TusHandler


def make_app(ctx: ServerContext) -> tornado.web.Application:
    base = re.escape(ctx.config.base_path)
    upload = "([0-9a-f]{32})"
    assets = {"assets": PageAssets.load()} if ctx.config.page else None
    page = [(r"/", PageHandler, assets), (r"/page/([^/]+)", AssetHandler, assets)] if assets else []
    return tornado.web.Application(
        [
            # operators' routes first: they must win over a base path of "/"
            (r"/healthz", HealthHandler),
            (r"/metrics", MetricsHandler),
            (r"/events", EventsHandler),
            (r"/uploads", ListingHandler),
            *page,
            (rf"{base}{upload}/info", InfoHandler),
            (rf"{base}{upload}/thumbnail", ThumbnailHandler),
            (rf"{base}{upload}/link", LinkHandler),
            # the endpoint speaks two protocols: the IETF draft when the request names an interop version
            # tuskit serves, tus 1.0 otherwise
            (InteropVersionMatches(rf"{base}([^/]*)"), IetfHandler),
            (InteropVersionMatches(rf"{base[:-1]}()"), IetfHandler),
            (rf"{base}([^/]*)", TusHandler),
            (rf"{base[:-1]}()", TusHandler),
        ],
        default_handler_class=NotFoundHandler,
        tuskit=ctx,
        log_function=log_request,
    )
