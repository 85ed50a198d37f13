"""What every tuskit HTTP response shares: CORS, Tus-Resumable, request IDs, errors rendered as values.

Every failure reaches the client as a status, a one-line reason in the body and the headers it needs
(Retry-After, Tus-Version ...), with CORS, so browsers can read errors like any other response.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from typing import Any

import tornado.web
from redis.exceptions import RedisError

from tuskit import errors, protocol
from tuskit.server import cors
from tuskit.server.context import ServerContext
from tuskit.server.service import as_tus_error

log = logging.getLogger("tuskit.server.http")

_REASONS = {460: "Checksum Mismatch"}


def log_request(handler: tornado.web.RequestHandler) -> None:
    """One line per request with its ID and, on failure, its reason: a client's X-Request-ID finds it."""
    status = handler.get_status()
    level = logging.WARNING if status >= 500 else logging.INFO
    failure = getattr(handler, "failure", None)
    log.log(level, "%s %s %s %d %.1fms id=%s%s", handler.request.remote_ip, handler.request.method,
            handler.request.path, status, 1000 * handler.request.request_time(),
            getattr(handler, "request_id", "-"), f" reason={failure!r}" if failure else "")


class BaseHandler(tornado.web.RequestHandler):
    @property
    def ctx(self) -> ServerContext:
        ctx: ServerContext = self.application.settings["tuskit"]
        return ctx

    def initialize(self) -> None:
        self.request_id = self.request.headers.get("X-Request-ID") or secrets.token_hex(8)
        self.failure: str | None = None
        self.set_header("X-Request-ID", self.request_id)

    def set_default_headers(self) -> None:
        self.set_header("Tus-Resumable", protocol.TUS_VERSION)
        self.clear_header("Content-Type")
        for name, value in cors.cors_headers(self.request.headers.get("Origin"),
                                             self.ctx.config.cors_origins).items():
            self.set_header(name, value)
        if hasattr(self, "request_id"):
            self.set_header("X-Request-ID", self.request_id)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs["exc_info"][1] if kwargs.get("exc_info") else None
        if exc is None or isinstance(exc, tornado.web.HTTPError):
            message = exc.log_message if isinstance(exc, tornado.web.HTTPError) and exc.log_message else self._reason
            err = errors.TusError(status_code, "ERR_HTTP", message)
        else:
            err = as_tus_error(exc)
        self.render_error(err)

    def render_error(self, err: errors.TusError) -> asyncio.Future[None] | None:
        status = err.status
        if self.request.method == "HEAD" and status >= 500:
            # tus-js-client starts over from zero after a failed HEAD, but retries a 423
            status = 423
        self.failure = err.message
        self.set_status(status, _REASONS.get(status))
        for name, value in err.headers.items():
            self.set_header(name, value)
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        return None if self._finished else self.finish(f"{err.message}\n")

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        if isinstance(value, errors.TusError | RedisError) or (
                isinstance(value, tornado.web.HTTPError) and value.status_code < 500):
            return  # an expected outcome (a redis outage is one warning from as_tus_error): log_request has it
        log.error("request %s failed", getattr(self, "request_id", "-"), exc_info=(typ, value, tb))

    def compute_etag(self) -> None:
        return None  # downloads set the sha256 as ETag; tus responses have none

    def owner(self) -> str:
        """Whose uploads this request may see ("" without auth)."""
        return ""
