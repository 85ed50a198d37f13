"""HTTP <-> UploadService. Parse and validate with tuskit.protocol, call the service, render the result.

No tus rules live here beyond mapping headers to arguments; every failure is a TusError rendered by
`write_error` with CORS and Tus-Resumable, so errors look like every other response to a browser.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from urllib.parse import quote

import tornado.web
from tornado.iostream import StreamClosedError

from tuskit import errors, protocol

from ..core import ids
from ..core.append import AppendSession
from ..core.model import DONE, Upload
from . import cors
from .base import BaseHandler
from .chunked import request_trailers

log = logging.getLogger("tuskit.server.http")

_OVERRIDABLE = {"PATCH", "DELETE", "HEAD"}
SPILL_WHILE_WAITING_SECONDS = 0.1  # see _admit
_STRAY_BODY = 64 * 1024  # the most a POST may send that is not an upload's first bytes (read and ignored)
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")
_INLINE_TYPES = {
    "image/png", "image/jpeg", "image/gif", "image/webp", "image/avif", "text/plain", "application/pdf",
    "audio/mpeg", "audio/ogg", "audio/wav", "video/mp4", "video/webm", "video/ogg",
}


@tornado.web.stream_request_body
class TusHandler(BaseHandler):
    """The tus endpoint: `{base}` (OPTIONS, POST) and `{base}{id}` (HEAD, PATCH, DELETE, GET, OPTIONS)."""

    SUPPORTED_METHODS = ("OPTIONS", "HEAD", "GET", "POST", "PATCH", "DELETE")

    def initialize(self) -> None:
        super().initialize()
        self.service = self.ctx.service
        self.session: AppendSession | None = None
        self.stopping: asyncio.Future[None] | None = None
        self._room: asyncio.Future[None] | None = None  # waiting for the body budget (see _next_piece)
        self._unpaced = 0  # body bytes received since the last --byte-rate pacing
        self.last_data = time.monotonic()
        override = self.request.headers.get("X-HTTP-Method-Override", "").upper()
        if self.request.method == "POST" and override in _OVERRIDABLE:
            self.request.method = override

    # ---- request set-up --------------------------------------------------------------------------

    async def prepare(self) -> None:
        await self.admit()  # token or signed link, and the rate limit (http_base)
        method = self.request.method
        if method not in ("PATCH", "POST"):
            self.refuse_body()
        if method == "OPTIONS" or (method == "GET" and "Tus-Resumable" not in self.request.headers):
            return  # discovery/preflight and plain downloads are not tus requests
        protocol.check_version(self.request.headers.get("Tus-Resumable"))
        if self.ctx.shutting_down:
            raise errors.SHUTTING_DOWN()
        if method == "PATCH":
            await self._start_patch()
        elif method == "POST":
            await self._start_post()

    def _body_length(self) -> int | None:
        return protocol.parse_content_length(self.request.headers.get("Content-Length"))

    def _has_body(self) -> bool:
        return bool(self._body_length()) or "chunked" in self.request.headers.get("Transfer-Encoding", "").lower()

    def _max_body(self) -> int:
        # a little over what any upload may take, so overruns reach us as a clear 413, not tornado's 400
        return (self.ctx.config.max_size or 2**40) + 1024 * 1024

    def _upload_id(self) -> str:
        upload_id = self.path_args[0] if self.path_args else None
        if not upload_id:
            raise errors.METHOD_NOT_ALLOWED(f"{self.request.method} needs an upload URL, not the collection")
        return ids.check(upload_id)

    async def _start_patch(self) -> None:
        upload_id = self._upload_id()
        h = self.request.headers
        if h.get("Content-Type", "").split(";")[0].strip().lower() != protocol.OFFSET_CONTENT_TYPE:
            raise errors.UNSUPPORTED_MEDIA()
        offset = protocol.parse_offset(h.get("Upload-Offset"))
        checksum = protocol.parse_checksum(h["Upload-Checksum"]) if "Upload-Checksum" in h else None
        new_length = protocol.parse_length(h["Upload-Length"]) if "Upload-Length" in h else None
        await self._open_session(upload_id, offset, new_length, self._body_length(), checksum)

    async def _start_post(self) -> None:
        """Create the upload now: with creation-with-upload its body streams in before `post()` runs."""
        if self.path_args and self.path_args[0]:
            raise errors.METHOD_NOT_ALLOWED("POST creates uploads at the collection URL, not on an upload")
        h = self.request.headers
        concat = protocol.parse_concat(h.get("Upload-Concat"))
        metadata = protocol.parse_metadata(h.get("Upload-Metadata"))
        deferred = protocol.parse_defer_length(h.get("Upload-Defer-Length"))
        length = protocol.parse_length(h["Upload-Length"]) if "Upload-Length" in h else None
        if concat is not None and concat.kind == "final":
            if length is not None or deferred:
                raise errors.INVALID_LENGTH("a final upload takes its length from its partials; omit Upload-Length")
        elif length is None and not deferred:
            raise errors.INVALID_LENGTH("Upload-Length or Upload-Defer-Length: 1 is required")
        elif length is not None and deferred:
            raise errors.INVALID_LENGTH("send Upload-Length or Upload-Defer-Length, not both")
        content_type = h.get("Content-Type", "").split(";")[0].strip().lower()
        if self._has_body() and content_type != protocol.OFFSET_CONTENT_TYPE:
            raise errors.UNSUPPORTED_MEDIA(f"a creation body must be {protocol.OFFSET_CONTENT_TYPE}; nothing created")
        with_body = self._has_body() and (concat is None or concat.kind == "partial")
        checksum = protocol.parse_checksum(h["Upload-Checksum"]) if with_body and "Upload-Checksum" in h else None
        body_length = self._body_length()
        if with_body and length is not None and body_length is not None and body_length > length:
            raise errors.LENGTH_EXCEEDED(f"a body of {body_length} bytes does not fit Upload-Length {length}")
        if not with_body and self._has_body() and (body_length is None or body_length > _STRAY_BODY):
            raise errors.BODY_NOT_ALLOWED(
                f"a POST body is an upload's first bytes only with Content-Type: {protocol.OFFSET_CONTENT_TYPE}")
        self.created = await self.service.create(length=length, metadata=metadata, concat=concat,
                                                 owner=self.owner())
        self.set_header("Location", self.upload_url(self.created.id))
        if not with_body:
            # a small stray body is read and ignored, within --network-timeout like every body
            self.request.connection.set_body_timeout(self.ctx.config.network_timeout)
            return
        await self._open_session(self.created.id, 0, None, body_length, checksum)

    async def _open_session(self, upload_id: str, offset: int, new_length: int | None,
                            body_length: int | None, checksum: tuple[str, bytes] | None, *,
                            ends_upload: bool = False) -> None:
        h = self.request.headers
        trailer = "upload-checksum" in h.get("Trailer", "").lower()
        chunked = "chunked" in h.get("Transfer-Encoding", "").lower()
        # a body that must wait for memory waits here, before it takes the upload's lease
        await self._admit()
        if self.ctx.shutting_down:
            raise errors.SHUTTING_DOWN()
        self.session = await self.service.open_append(
            upload_id, self.owner(), offset, new_length=new_length, body_length=body_length,
            checksum=checksum, checksum_in_trailer=trailer, trailer_possible=chunked and checksum is None,
            ends_upload=ends_upload)
        self.request.connection.set_max_body_size(self._max_body())
        self.request.connection.gate = self._next_piece  # type: ignore[attr-defined]  # a TrailerConnection
        self.last_data = time.monotonic()
        self.ctx.active.add(self)
        self.session.when_asked_to_release(lambda: self.interrupt("another request took over the upload"))

    async def data_received(self, chunk: bytes) -> None:
        if self.session is not None:
            self.last_data = time.monotonic()
            self.ctx.budget.used(self)
            self.ctx.metrics.bytes_received += len(chunk)
            self._unpaced += len(chunk)
            await self.session.write(chunk)

    async def _next_piece(self) -> None:
        """The connection's gate before each piece of the body after the first: --byte-rate pacing, then
        the body budget's leave. While the budget is spent our buffer goes to storage and the body waits
        its turn (TCP meanwhile slows the client): never a failure, and not a stall of the client's, so
        the --network-timeout watchdog leaves it alone."""
        unpaced, self._unpaced = self._unpaced, 0
        await self.pace(unpaced)
        self.held_back = self.ctx.budget.would_wait()
        try:
            if self.held_back and self.session is not None:
                await self.session.flush()
            await self._admit()
        finally:
            self.held_back = False
            self.last_data = time.monotonic()

    async def _admit(self) -> None:
        """Wait for the body budget's leave to read a piece; an interruption ends the wait early. A wait that
        lasts has the writer let go of what it holds (S3's unfilled part): spilling at every short wait
        would cost a store and a read-back per piece, never spilling could leave the budget held by
        waiting bodies alone."""
        if self.ctx.budget.try_admit(self):
            return
        self._room = asyncio.ensure_future(self.ctx.budget.admit(self, under_way=self.session is not None))
        try:
            done, _ = await asyncio.wait({self._room}, timeout=SPILL_WHILE_WAITING_SECONDS)
            if not done and self.session is not None:
                await self.session.settle(record=False)  # what it frees lets the next body in (BodyBudget.release)
            await asyncio.wait({self._room})
        finally:
            self._room.cancel()
            self._room = None

    def settle(self) -> None:
        """The client went quiet: its bytes go to storage and are recorded instead of waiting in memory, and
        the room it was let in for goes to a body that sends (a stalled body's grant would otherwise keep a
        piece of the budget for GRANT_SECONDS: 200 stalled bodies under an 8 MiB budget took 40 s to read)."""
        self.ctx.budget.used(self)
        if self.session is not None and not self.session.settled and not self.session.closed:
            self.service.spawn(self.session.settle())

    # ---- ending a streamed body ------------------------------------------------------------------

    def interrupt(self, why: str) -> None:
        """Another request wants this upload, the client stalled, or the server is stopping: save and end."""
        if self.stopping is None and self.session is not None and not self.session.closed:
            self.stopping = asyncio.ensure_future(self._stop_streaming(why))
            if self._room is not None:
                self._room.cancel()  # no more reading: stop waiting for memory

    async def _stop_streaming(self, why: str) -> None:
        assert self.session is not None
        saved: dict[str, str] = {}
        try:
            offset = await self.session.abort(why)
            if offset is None:
                return  # the body had already ended: the verb's own response answers this request
            saved["Upload-Offset"] = str(offset)
        except Exception as exc:
            log.warning("saving upload %s on interrupt failed: %s", self.session.upload.id, exc)
        finally:
            self.ctx.active.discard(self)
        if self.ctx.shutting_down:
            sent = self.render_error(errors.SHUTTING_DOWN(headers=saved))
            if sent is not None:
                with contextlib.suppress(StreamClosedError):
                    await sent  # the 503 is on the wire before the connection goes
        self.request.connection.close()

    def on_finish(self) -> None:
        self.ctx.budget.used(self)  # a grant it did not use

    def on_connection_close(self) -> None:
        self.ctx.budget.used(self)
        if self._room is not None:
            self._room.cancel()
        if self.session is not None and not self.session.closed and self.stopping is None:
            self.stopping = asyncio.ensure_future(self._stop_on_disconnect())
        # ends tornado's wait for the body (quietly); without it the handler lingered until shutdown
        super().on_connection_close()

    async def _stop_on_disconnect(self) -> None:
        assert self.session is not None
        try:
            await self.session.abort("client disconnected")
        except Exception as exc:
            log.warning("saving upload %s after disconnect failed: %s", self.session.upload.id, exc)
        finally:
            self.ctx.active.discard(self)

    async def _finish_session(self) -> Upload:
        assert self.session is not None
        try:
            trailers = request_trailers(self.request)
            trailer = protocol.parse_checksum(trailers["Upload-Checksum"]) if "Upload-Checksum" in trailers else None
            return await self.session.finish(trailer)
        finally:
            self.ctx.active.discard(self)

    def render_error(self, err: errors.TusError) -> asyncio.Future[None] | None:
        if err.offset is not None:
            self.set_header("Upload-Offset", str(err.offset))  # a 409 says where to resume: no HEAD needed
        return super().render_error(err)

    # ---- verbs -----------------------------------------------------------------------------------

    def _upload_headers(self, upload: Upload) -> None:
        if upload.expires is not None and upload.status != DONE:
            self.set_header("Upload-Expires", protocol.http_date(upload.expires))

    async def options(self, upload_id: str | None = None) -> None:
        self.set_header("Tus-Version", ",".join(protocol.SUPPORTED_VERSIONS))
        self.set_header("Tus-Extension", ",".join(protocol.EXTENSIONS))
        self.set_header("Tus-Checksum-Algorithm", ",".join(protocol.CHECKSUM_ALGORITHMS))
        if self.ctx.config.max_size is not None:
            self.set_header("Tus-Max-Size", str(self.ctx.config.max_size))
        if "Access-Control-Request-Method" in self.request.headers:
            for name, value in cors.preflight_headers().items():
                self.set_header(name, value)
        self.set_status(200)  # tus allows 200 or 204; tusd (and checkers written against it) answer 200

    async def post(self, upload_id: str | None = None) -> None:
        upload = self.created
        if self.session is not None:
            upload = await self._finish_session()
            self.set_header("Upload-Offset", str(upload.offset))
        self._upload_headers(upload)
        self.set_status(201)

    async def head(self, upload_id: str) -> None:
        upload = await self.service.head(self._upload_id(), self.owner())  # a stale writer is stopped first
        self.set_header("Cache-Control", "no-store")
        final_waiting = upload.concat == "final" and upload.status != DONE
        if not final_waiting:
            self.set_header("Upload-Offset", str(upload.offset))
        if upload.length is not None:
            self.set_header("Upload-Length", str(upload.length))
        elif upload.concat != "final":
            self.set_header("Upload-Defer-Length", "1")
        if upload.metadata:
            self.set_header("Upload-Metadata", upload.metadata)
        if upload.concat == "partial":
            self.set_header("Upload-Concat", "partial")
        elif upload.concat == "final":
            self.set_header("Upload-Concat", "final;" + " ".join(self.upload_url(p) for p in upload.parts))
        self._upload_headers(upload)
        self.set_status(200)

    async def patch(self, upload_id: str | None = None) -> None:
        upload = await self._finish_session()
        self.set_header("Upload-Offset", str(upload.offset))
        self._upload_headers(upload)
        self.set_status(204)

    async def delete(self, upload_id: str | None = None) -> None:
        await self.service.terminate(self._upload_id(), self.owner())
        self.set_status(204)

    async def get(self, upload_id: str | None = None) -> None:
        upload = await self.service.get(self._upload_id(), self.owner())
        if upload.status != DONE or upload.length is None:
            raise errors.NOT_FOUND("upload is not finished yet; HEAD shows its progress")
        declared, filename = upload.declared_type, upload.filename
        inline = declared in _INLINE_TYPES
        disposition = "inline" if inline else "attachment"
        if filename:
            disposition += f"; filename*=UTF-8''{quote(filename, safe='')}"
        answer = {"Content-Type": declared if inline else "application/octet-stream",
                  "Content-Disposition": disposition}
        presign = self.ctx.config.s3_presign_downloads
        if presign and (link := await self.service.download_url(upload.id, answer, presign)) is not None:
            self.set_header("Cache-Control", "no-store")  # the link expires
            self.redirect(link)  # the client asks the bucket, Range and all: no byte passes through here
            return
        start, end = self._byte_range(upload.length)
        for name, value in answer.items():
            self.set_header(name, value)
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Accept-Ranges", "bytes")
        self.set_header("ETag", f'"{upload.sha256}"')
        self.set_header("Content-Length", str(end - start))
        try:
            await self.service.stream(upload.id, start, end, self._send)
        except StreamClosedError:
            return

    async def _send(self, block: bytes) -> None:
        self.write(block)
        await self.flush()

    def _byte_range(self, length: int) -> tuple[int, int]:
        header = self.request.headers.get("Range")
        if not header:
            return 0, length
        m = _RANGE.fullmatch(header.strip())
        if not m or (not m.group(1) and not m.group(2)):
            raise errors.TusError(416, "ERR_RANGE", f"unsupported Range {header!r}",
                                  {"Content-Range": f"bytes */{length}"})
        if m.group(1):
            start = int(m.group(1))
            end = min(int(m.group(2)) + 1, length) if m.group(2) else length
        else:
            start, end = max(length - int(m.group(2)), 0), length
        if start >= length or start >= end:
            raise errors.TusError(416, "ERR_RANGE", f"Range {header!r} is outside 0-{length - 1}",
                                  {"Content-Range": f"bytes */{length}"})
        self.set_status(206)
        self.set_header("Content-Range", f"bytes {start}-{end - 1}/{length}")
        return start, end


class NotFoundHandler(BaseHandler):
    """Paths outside the endpoint (`/files/../x` included): a 404 with CORS, like every other response."""

    async def prepare(self) -> None:
        raise errors.NOT_FOUND(f"no such path {self.request.path!r}")
