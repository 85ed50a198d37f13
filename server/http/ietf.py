"""The IETF draft "Resumable Uploads for HTTP" (interop versions 3-8): a second front end over the same core.

The router sends a request here when its `Upload-Draft-Interop-Version` is one tuskit speaks
(`InteropVersionMatches`); every other request is tus 1.0. Both front ends share what lies under the
wire: admission (tokens, rate limits), the streaming of a body into an append session, leases (a new
request makes a hanging one let go, as the draft recommends), expiry, events, post-processing and the
SHA-256 check before publishing. This class only translates the draft's fields (`tuskit.rufh`) to the
service's arguments and the service's answers back, in the dialect of the request's interop version.

Where the two protocols disagree about an upload (a tus concatenation that is still waiting for its
parts has no offset the draft could report), the draft's request gets a 400 that says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import time
from typing import Any

from tornado.httputil import HTTPServerRequest
from tornado.iostream import StreamClosedError
from tornado.routing import PathMatches

from tuskit import errors, protocol, rufh

from ..core.model import DONE, Upload, declared_sha256
from .tus import TusHandler

# the draft's refusal of an append to a finished upload (interop 6 and 7: 400; 8: 410 for an empty body)
UPLOAD_COMPLETED = errors.ErrorKind(400, "ERR_UPLOAD_COMPLETED", "upload is already complete")

_PROBLEMS = {
    errors.MISMATCHED_OFFSET.code: rufh.MISMATCHING_OFFSET,
    errors.INVALID_LENGTH.code: rufh.INCONSISTENT_LENGTH,
    UPLOAD_COMPLETED.code: rufh.COMPLETED_UPLOAD,
}


class InteropVersionMatches(PathMatches):
    """A path of the upload endpoint requested with an interop version tuskit serves."""

    def match(self, request: HTTPServerRequest) -> dict[str, Any] | None:
        if rufh.interop_version(request.headers.get(rufh.INTEROP)) is None:
            return None
        return super().match(request)


class IetfHandler(TusHandler):
    """`{base}`: creation (POST, PUT or PATCH, as the draft allows any method with content) and OPTIONS;
    `{base}{id}`: offset retrieval (HEAD), append (PATCH), cancellation (DELETE), download (GET)."""

    SUPPORTED_METHODS = ("OPTIONS", "HEAD", "GET", "POST", "PUT", "PATCH", "DELETE")

    def initialize(self) -> None:
        super().initialize()
        self.created: Upload | None = None
        self.provided_offset: int | None = None  # the append's Upload-Offset, for a 409's problem details
        self.completing: bool | None = None  # whether this request's body ends the upload, once known

    @functools.cached_property
    def draft(self) -> rufh.Draft:
        version = rufh.interop_version(self.request.headers.get(rufh.INTEROP))
        assert version is not None, "the router sends only served interop versions here"
        return rufh.Draft(version)

    def set_default_headers(self) -> None:
        super().set_default_headers()
        if self.request.method != "OPTIONS":  # tus discovery stays on OPTIONS, where it harms no draft client
            self.clear_header("Tus-Resumable")
        self.set_header(rufh.INTEROP, str(self.draft.version))  # which rules answered

    # ---- request set-up --------------------------------------------------------------------------

    async def prepare(self) -> None:
        await self.admit()
        method = self.request.method
        if method in ("OPTIONS", "GET", "HEAD", "DELETE"):
            self.refuse_body()  # answered from the headers, as for tus requests: the body is never read
        if method in ("OPTIONS", "GET"):
            return
        if self.ctx.shutting_down:
            raise errors.SHUTTING_DOWN()
        on_upload = bool(self.path_args and self.path_args[0])
        if not on_upload and method in ("POST", "PUT", "PATCH"):
            await self._start_creation()
        elif on_upload and method == "PATCH":
            await self._start_append()
        elif method in ("HEAD", "DELETE"):
            self._refuse_strays()
        else:
            raise errors.METHOD_NOT_ALLOWED(f"{method} {'on an upload URL' if on_upload else 'at the collection'}")

    def _content_length(self) -> int | None:
        """The body's size; None for a chunked one (known at its end). Neither framing means no body."""
        h = self.request.headers
        if "chunked" in h.get("Transfer-Encoding", "").lower():
            return None
        return protocol.parse_content_length(h.get("Content-Length")) or 0

    def _refuse_strays(self) -> None:
        """Interop 3-6: offset retrieval and cancellation carry none of the upload's state fields."""
        strays = [name for name in self.draft.strays_on_head_and_delete if name in self.request.headers]
        if strays:
            raise errors.BAD_REQUEST(f"{self.request.method} must not carry {', '.join(strays)}")

    def _length(self, complete: bool, offset: int) -> int | None:
        """The upload's length as this request tells it: `Upload-Length`, or the end of a body that
        completes the upload (offset + Content-Length); when both are there they must agree."""
        declared = rufh.parse_size(self.request.headers.get(rufh.LENGTH), rufh.LENGTH, lenient=self.draft.lenient)
        body = self._content_length()
        if not complete or body is None:
            return declared
        if declared is not None and declared != offset + body:
            raise errors.INVALID_LENGTH(
                f"Upload-Length {declared} disagrees with the complete upload's {offset + body} bytes")
        return offset + body

    def _content_digest(self) -> tuple[str, bytes] | None:
        """RFC 9530 Content-Digest of this body, checked as tus's Upload-Checksum is (sha-256 preferred)."""
        digests = rufh.parse_digests(self.request.headers.get(rufh.CONTENT_DIGEST), rufh.CONTENT_DIGEST)
        for algorithm in ("sha256", "sha512"):
            if algorithm in digests:
                return algorithm, digests[algorithm]
        return None

    def _metadata(self) -> dict[str, bytes | None]:
        """What the core records about the file: tus-js-client sends Upload-Metadata in its draft modes too;
        the draft's own carriers are Content-Type, Content-Disposition and RFC 9530 Repr-Digest."""
        h = self.request.headers
        metadata = protocol.parse_metadata(h.get("Upload-Metadata"))
        content_type = h.get("Content-Type", "").split(";")[0].strip().lower()
        if content_type and content_type != rufh.PARTIAL_UPLOAD_TYPE:
            metadata.setdefault("filetype", content_type.encode())
        filename = rufh.disposition_filename(h.get("Content-Disposition"))
        if filename:
            metadata.setdefault("filename", filename.encode())
        digest = rufh.parse_digests(h.get(rufh.REPR_DIGEST), rufh.REPR_DIGEST).get("sha256")
        if digest is not None:
            declared = declared_sha256(metadata)
            if declared is not None and declared != digest.hex():
                raise errors.BAD_REQUEST("Repr-Digest sha-256 and Upload-Metadata sha256 disagree")
            metadata["sha256"] = digest.hex().encode()  # verified before publishing, as tus's is
        return metadata

    async def _start_creation(self) -> None:
        """Create the upload, announce it with a 104, then take the body (if any) into it."""
        h = self.request.headers
        complete = self.draft.read_complete(h, append=False)
        if rufh.parse_size(h.get(rufh.OFFSET), rufh.OFFSET, lenient=self.draft.lenient) not in (None, 0):
            raise errors.BAD_REQUEST("a creation request starts at offset 0; it carries no other Upload-Offset")
        if "Upload-Concat" in h:
            raise errors.BAD_REQUEST("concatenation (Upload-Concat) is tus 1.0 only; send Tus-Resumable instead")
        length = self._length(complete, 0)
        body_length = self._content_length()
        if length is not None and body_length is not None and body_length > length:
            raise errors.LENGTH_EXCEEDED(f"a body of {body_length} bytes does not fit Upload-Length {length}")
        metadata = self._metadata()
        checksum = self._content_digest()
        self.completing = complete
        self.created = await self.service.create(length=length, metadata=metadata, concat=None, owner=self.owner())
        location = self.upload_url(self.created.id)
        self.set_header("Location", location)
        await self._announce(location, self.created)
        if self._has_body():
            await self._open_session(self.created.id, 0, None, body_length, checksum, ends_upload=complete)

    async def _announce(self, location: str, upload: Upload) -> None:
        """104 (Upload Resumption Supported) before the body is read, so a client whose connection drops
        knows where to resume. Tornado has no API for 1xx: the lines go on the stream before the final
        response. Never to HTTP/1.0, which has no 1xx (RFC 9110)."""
        stream = getattr(self.request.connection, "stream", None)
        if self.request.version != "HTTP/1.1" or stream is None:
            return
        lines = ["HTTP/1.1 104 Upload Resumption Supported", f"{rufh.INTEROP}: {self.draft.version}",
                 f"Location: {location}"]
        if self.draft.has_limits:
            lines.append(f"{rufh.LIMIT}: {self._limits(upload)}")
        with contextlib.suppress(StreamClosedError):  # the client left: on_connection_close saves what came
            await stream.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin1"))

    async def _start_append(self) -> None:
        h = self.request.headers
        upload_id = self._upload_id()
        offset = rufh.parse_size(h.get(rufh.OFFSET), rufh.OFFSET, lenient=self.draft.lenient)
        if offset is None:
            raise errors.BAD_REQUEST("an append needs Upload-Offset")
        self.provided_offset = offset
        self.completing = self.draft.read_complete(h, append=True)
        content_type = h.get("Content-Type", "").split(";")[0].strip().lower()
        if self.draft.appends_are_partial_uploads and content_type != rufh.PARTIAL_UPLOAD_TYPE:
            raise errors.UNSUPPORTED_MEDIA(f"an append's body must be {rufh.PARTIAL_UPLOAD_TYPE}")
        length = self._length(self.completing, offset)
        try:
            await self._open_session(upload_id, offset, length, self._content_length(), self._content_digest(),
                                     ends_upload=self.completing)
        except errors.TusError as err:
            raise await self._explain(err, upload_id) from None

    async def _explain(self, err: errors.TusError, upload_id: str) -> errors.TusError:
        """An append refused because the upload is already complete says so, as the version words it.

        The core answers such an append like any other (offset mismatch, body past the length, a length
        other than the recorded one); only on that path is the upload looked up again, so a normal append
        costs no extra round trip. An empty append at the end of a finished upload is no error at all: it
        is answered like the completing one (the upload completed when its last byte arrived; the client
        may still send its `?1`)."""
        refusals = (errors.MISMATCHED_OFFSET.code, errors.LENGTH_EXCEEDED.code, errors.INVALID_LENGTH.code)
        if err.code not in refusals or not self.draft.has_problem(rufh.COMPLETED_UPLOAD):
            return err
        try:
            upload = await self.service.get(upload_id, self.owner())
        except errors.TusError:
            return err
        if upload.status != DONE:
            return err
        message = f"upload is already complete at {upload.offset} bytes"
        if self._content_length() == 0:
            return errors.TusError(410 if self.draft.version >= 8 else 400, UPLOAD_COMPLETED.code, message)
        if self.draft.version >= 8:  # -10: more bytes for a finished upload are an inconsistent length
            return errors.INVALID_LENGTH(message)
        return UPLOAD_COMPLETED(message)

    # ---- rendering -------------------------------------------------------------------------------

    def _limits(self, upload: Upload | None) -> str:
        """Upload-Limit: the server's size bounds, and for an unfinished upload the seconds it has left
        (the server's expiry, `expires` in interop 6, `max-age` from 7)."""
        members = {"min-size": 0}
        if self.ctx.config.max_size is not None:
            members["max-size"] = self.ctx.config.max_size
        if upload is not None and upload.status != DONE and upload.expires is not None:
            members[self.draft.lifetime_key] = max(0, int(upload.expires - time.time()))
        return rufh.serialize_integers(members)

    def _state_headers(self, upload: Upload, *, limits: bool) -> None:
        """Where the upload stands, in this version's fields (Upload-Offset always: clients read it)."""
        self.set_header(*self.draft.completeness(upload.status == DONE))
        self.set_header(rufh.OFFSET, str(upload.offset))
        if limits and self.draft.has_limits:
            self.set_header(rufh.LIMIT, self._limits(upload))
        if upload.status == DONE and upload.sha256:  # RFC 9530: what the server stored, for Want-Repr-Digest
            self.set_header(rufh.REPR_DIGEST, f"sha-256={rufh.serialize_bytes(bytes.fromhex(upload.sha256))}")

    def render_error(self, err: errors.TusError) -> asyncio.Future[None] | None:
        if err.status == 410 and err.code == errors.GONE.code and self.draft.version <= 6:
            err = errors.NOT_FOUND(err.message)  # 3-6 name 404 for an upload that is no longer active
        if self.created is not None:  # the same Location as the 104 and a success would carry
            self.set_header("Location", self.upload_url(self.created.id))
        if self.completing is False and self.draft.marks_incomplete_errors:
            self.set_header(*self.draft.completeness(False))
        if err.status == 413 and self.draft.has_limits:
            self.set_header(rufh.LIMIT, self._limits(None))
        problem = _PROBLEMS.get(err.code)
        if problem is None or not self.draft.has_problem(problem) or self.request.method == "HEAD":
            return super().render_error(err)
        details: dict[str, Any] = {"type": problem, "title": rufh.PROBLEM_TITLES[problem], "detail": err.message}
        if problem == rufh.MISMATCHING_OFFSET:
            details.update({"expected-offset": err.offset, "provided-offset": self.provided_offset})
        if err.offset is not None:
            self.set_header(rufh.OFFSET, str(err.offset))
        self.failure = err.message
        self.set_status(err.status)
        for name, value in err.headers.items():
            self.set_header(name, value)
        self.set_header("Content-Type", rufh.PROBLEM_TYPE)
        return None if self._finished else self.finish(json.dumps(details) + "\n")

    # ---- verbs -----------------------------------------------------------------------------------

    async def options(self, upload_id: str | None = None) -> None:
        await super().options(upload_id)
        self.set_header("Accept-Patch", rufh.PARTIAL_UPLOAD_TYPE)
        if self.draft.has_limits:
            self.set_header(rufh.LIMIT, self._limits(None))

    async def post(self, upload_id: str | None = None) -> None:
        """Creation (with POST, PUT or PATCH at the collection) or an append (PATCH on an upload URL)."""
        creating = self.created is not None
        upload = await self._finish_session() if self.session is not None else self.created
        assert upload is not None
        self._state_headers(upload, limits=creating)
        self.set_status(201 if creating else self.draft.append_status())

    put = post

    async def patch(self, upload_id: str | None = None) -> None:
        try:
            await self.post(upload_id)
        except errors.TusError as err:
            if self.created is not None:
                raise
            raise await self._explain(err, self._upload_id()) from None  # a chunked body ran past the end

    async def head(self, upload_id: str) -> None:
        upload = await self.service.head(self._upload_id(), self.owner())
        if upload.concat == "final" and upload.status != DONE:
            raise errors.BAD_REQUEST("a tus 1.0 concatenation still waiting for its parts has no offset the "
                                     "draft can report; ask with Tus-Resumable")
        self.set_header("Cache-Control", "no-store")
        self._state_headers(upload, limits=True)
        if upload.length is not None:
            self.set_header(rufh.LENGTH, str(upload.length))
        self.set_status(204)
