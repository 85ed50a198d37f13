"""What every tuskit HTTP request shares: CORS, Tus-Resumable, request IDs, errors rendered as values,
and admission (who is asking, whether they are over their rate, and whether they may send a body).

Every failure reaches the client as a status, a one-line reason in the body and the headers it needs
(Retry-After, Tus-Version ...), with CORS, so browsers can read errors like any other response.

Every handler streams its request body (tornado calls `prepare()` as soon as the headers are in): so
admission always comes before the first body byte is read, and a body where none belongs is answered
from the headers instead of being read into memory first, as tornado does for handlers that do not stream.
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import time
from typing import Any

import tornado
import tornado.web
from tornado import httputil

from tuskit import errors, protocol

from ..core import ids
from . import cors, signing
from .auth import bearer_token
from .context import ServerContext
from .urls import public_origin

log = logging.getLogger("tuskit.server.http")

_REASONS = {460: "Checksum Mismatch"}
# a client's own X-Request-ID is kept if it is a plausible ID; anything else is replaced, not logged
_REQUEST_ID = re.compile(r"[!-~]{1,128}")
_SERVER = f"TornadoServer/{tornado.version}"


def log_request(handler: tornado.web.RequestHandler) -> None:
    """One line per request with its ID and, on failure, its reason: a client's X-Request-ID finds it."""
    status = handler.get_status()
    ctx: ServerContext | None = handler.application.settings.get("tuskit")
    if ctx is not None:
        ctx.metrics.requests[status] += 1
    level = logging.WARNING if status >= 500 else logging.INFO
    failure = getattr(handler, "failure", None)
    log.log(level, "%s %s %s %d %.1fms id=%s%s", handler.request.remote_ip, handler.request.method,
            handler.request.path, status, 1000 * handler.request.request_time(),
            getattr(handler, "request_id", "-"), f" reason={failure!r}" if failure else "")


@tornado.web.stream_request_body
class BaseHandler(tornado.web.RequestHandler):
    public = False  # True: no token and no rate limit (health checks from load balancers)
    metered = True  # False: not counted against the rate limit (scrapes must not be starved by uploads)
    signed_reads = True  # a signed link for the upload in the path may stand in for a token on GET
    # set by TusHandler while it streams a body; here so body pacing can keep the idle watchdog fed
    last_data: float = 0.0
    stopping: asyncio.Future[None] | None = None
    held_back = False  # True while the body waits for the body budget: no stall of the client's

    @property
    def ctx(self) -> ServerContext:
        ctx: ServerContext = self.application.settings["tuskit"]
        return ctx

    def initialize(self) -> None:
        sent = self.request.headers.get("X-Request-ID", "")
        self.request_id = sent if _REQUEST_ID.fullmatch(sent) else secrets.token_hex(8)
        self.failure: str | None = None
        self._owner = ""
        self._via_link = False  # admitted by a signed link rather than a token
        self.set_header("X-Request-ID", self.request_id)

    def clear(self) -> None:
        """Tornado's reset of the response, with its Date formatted once a second rather than once a
        request (~12 us each) and without the Content-Type that set_default_headers would only remove."""
        self._headers = httputil.HTTPHeaders({"Server": _SERVER, "Date": protocol.http_date(time.time())})
        self.set_default_headers()
        self._write_buffer: list[bytes] = []
        self._status_code = 200
        self._reason = httputil.responses[200]

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
            err = self.ctx.service.error(exc)
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
        # no body for HEAD: one overridden from a POST (X-HTTP-Method-Override) would announce bytes never sent
        return None if self._finished else self.finish("" if self.request.method == "HEAD" else f"{err.message}\n")

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        if isinstance(value, errors.TusError) or self.ctx.service.is_outage(value) or (
                isinstance(value, tornado.web.HTTPError) and value.status_code < 500):
            return  # an expected outcome (an outage is one warning from service.error): log_request has it
        log.error("request %s failed", getattr(self, "request_id", "-"), exc_info=(typ, value, tb))

    def compute_etag(self) -> None:
        return None  # downloads set the sha256 as ETag; tus responses have none

    def owner(self) -> str:
        """Whose uploads this request may see ("" without auth)."""
        return self._owner

    def upload_url(self, upload_id: str) -> str:
        """An upload's public URL, as clients must use it (behind a proxy: the proxy's origin)."""
        origin = public_origin(self.request.headers, self.request.protocol, self.request.host or self._own_host(),
                               self.ctx.config.behind_proxy)
        return f"{origin}{self.ctx.config.base_path}{upload_id}"

    def _own_host(self) -> str:
        """The address this connection reached, for a request with an empty Host (legal HTTP, and no base
        for a URL): where nginx falls back to its server name."""
        host, port = self.request.connection.stream.socket.getsockname()[:2]  # type: ignore[attr-defined]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    # ---- admission: every handler's prepare() starts with this -----------------------------------

    async def prepare(self) -> None:
        await self.admit()
        self.refuse_body()

    def require_listing_allowed(self) -> None:
        """/uploads and /events name every upload a caller may see; without tokens that is every upload, and
        an ID is the only key to an upload (GET, DELETE): so they are off unless the operator opts in."""
        if self.ctx.tokens is None and not self.ctx.config.list_without_tokens:
            raise errors.FORBIDDEN(f"{self.request.path} is off: without --tokens it would show anyone every "
                                   "upload's ID; run the server with --tokens, or with --list-without-tokens")

    def refuse_body(self) -> None:
        """Answer a request that announces a body where none belongs (413) from its headers: the body is
        never read, and the connection closes after the answer."""
        h = self.request.headers
        if "Transfer-Encoding" in h or protocol.parse_content_length(h.get("Content-Length")):
            raise errors.BODY_NOT_ALLOWED(f"a {self.request.method} request here takes no body")

    async def data_received(self, chunk: bytes) -> None:
        """Bytes of a body this request ignores (a POST's stray body); handlers that take bodies override it."""

    async def admit(self) -> None:
        """Authenticate (bearer token or signed link) and spend one request from the caller's budget.

        A failed authentication spends one request of the caller's address, so guessing tokens is as
        rate limited as anything else."""
        if self.public or self.request.method == "OPTIONS":
            return  # preflights carry no credentials by design
        try:
            await self._authenticate()
        except errors.TusError as exc:
            if exc.status in (401, 403):
                await self._spend(f"ip:{self.request.remote_ip}")
            raise
        if self.metered:
            await self._spend(self._client())

    async def _authenticate(self) -> None:
        signed = self._signed_upload()
        if signed is not None:
            self._owner = await self.ctx.service.owner_of(signed)
            self._via_link = True
        elif self.ctx.tokens is not None:
            owner = self.ctx.tokens.owner_of(self.presented_token())
            if owner is None:
                raise errors.UNAUTHORIZED()
            self._owner = owner

    async def _spend(self, client: str) -> None:
        """One request from `client`'s budget, or 429."""
        verdict = await self.ctx.limiter.request(client)
        if not verdict.allowed:
            self.ctx.metrics.rate_limited += 1
            raise errors.RATE_LIMITED(
                f"over {self.ctx.limiter.request_rate:g} requests/s for this client; retry in {verdict.retry_after}s",
                headers={"Retry-After": verdict.retry_after})

    def presented_token(self) -> str | None:
        return bearer_token(self.request.headers.get("Authorization"))

    def _signed_upload(self) -> str | None:
        """The upload a signed link grants this GET (403 if the link was tampered with or expired)."""
        signature = self.get_query_argument(signing.SIGNATURE_ARG, None)
        upload_id = self.path_args[0] if self.path_args else None
        if (signature is None or not self.signed_reads or self.request.method != "GET" or not upload_id
                or not ids.is_valid(upload_id)):
            return None
        signing.check(self.ctx.signing_secret, upload_id, self.get_query_argument(signing.EXPIRES_ARG, ""),
                      signature, time.time())
        return upload_id

    def _client(self) -> str:
        """Whose budget a request spends: its owner's with a token, its address's without (and for a link's
        holders, who must not spend the owner's budget)."""
        return f"owner:{self._owner}" if self._owner and not self._via_link else f"ip:{self.request.remote_ip}"

    async def pace(self, count: int) -> None:
        """Pace an upload body to the byte rate by reading its next piece later (never by refusing), now
        that `count` more bytes of it arrived."""
        wait = await self.ctx.limiter.upload_bytes(self._client(), count)
        deadline = time.monotonic() + wait
        while wait > 0 and self.stopping is None:
            await asyncio.sleep(min(wait, 1.0))
            self.last_data = time.monotonic()  # paced, not idle: the --network-timeout watchdog must wait
            wait = deadline - self.last_data
