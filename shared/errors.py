"""Protocol failures as values: a status, a stable code and a one-line reason, rendered in one place.

Like tusd's ERR_* values, layers raise meaning (`raise UPLOAD_LOCKED()`) and the HTTP layer turns it
into a response; nothing below the handlers knows about Tornado.
"""

from __future__ import annotations

from dataclasses import dataclass, field


class TusError(Exception):
    """A request that cannot be served, with what the client needs to act on it."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None, *,
                 offset: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}
        # the upload's offset, where the failure knows it (a 409): each protocol's front end shows it its own
        # way, so a client can resume without asking first
        self.offset = offset

    def __repr__(self) -> str:
        return f"TusError({self.status}, {self.code!r}, {self.message!r})"


@dataclass(frozen=True)
class ErrorKind:
    """A named failure; call it (optionally with a more specific message) to get a raisable TusError."""

    status: int
    code: str
    message: str
    headers: dict[str, str] = field(default_factory=dict)

    def __call__(self, message: str | None = None, headers: dict[str, str] | None = None, *,
                 offset: int | None = None) -> TusError:
        return TusError(self.status, self.code, message or self.message, {**self.headers, **(headers or {})},
                        offset=offset)


BAD_REQUEST = ErrorKind(400, "ERR_BAD_REQUEST", "malformed request")
INVALID_OFFSET = ErrorKind(400, "ERR_INVALID_OFFSET", "missing or invalid Upload-Offset header")
INVALID_LENGTH = ErrorKind(400, "ERR_INVALID_UPLOAD_LENGTH", "missing or invalid Upload-Length header")
INVALID_METADATA = ErrorKind(400, "ERR_INVALID_METADATA", "invalid Upload-Metadata header")
INVALID_CHECKSUM = ErrorKind(400, "ERR_INVALID_CHECKSUM", "invalid Upload-Checksum header")
UNSUPPORTED_CHECKSUM = ErrorKind(400, "ERR_UNSUPPORTED_CHECKSUM_ALGORITHM", "unsupported checksum algorithm")
INVALID_CONCAT = ErrorKind(400, "ERR_INVALID_CONCAT", "invalid Upload-Concat header")
INVALID_ID = ErrorKind(404, "ERR_NOT_FOUND", "upload not found")
UNAUTHORIZED = ErrorKind(401, "ERR_UNAUTHORIZED", "missing or invalid bearer token",
                         {"WWW-Authenticate": 'Bearer realm="tuskit"'})
FORBIDDEN = ErrorKind(403, "ERR_FORBIDDEN", "forbidden")
MODIFY_FINAL = ErrorKind(403, "ERR_MODIFY_FINAL", "a final upload cannot be modified; PATCH its partials")
NOT_FOUND = ErrorKind(404, "ERR_NOT_FOUND", "upload not found")
METHOD_NOT_ALLOWED = ErrorKind(405, "ERR_METHOD_NOT_ALLOWED", "method not allowed")
MISMATCHED_OFFSET = ErrorKind(409, "ERR_MISMATCHED_OFFSET", "Upload-Offset does not match the upload's offset")
GONE = ErrorKind(410, "ERR_UPLOAD_GONE", "upload is gone")
UNSUPPORTED_VERSION = ErrorKind(412, "ERR_UNSUPPORTED_VERSION", "missing or unsupported Tus-Resumable header")
TOO_LARGE = ErrorKind(413, "ERR_MAX_SIZE_EXCEEDED", "upload exceeds the maximum size")
LENGTH_EXCEEDED = ErrorKind(413, "ERR_UPLOAD_LENGTH_EXCEEDED", "body goes past Upload-Length")
BODY_NOT_ALLOWED = ErrorKind(413, "ERR_BODY_NOT_ALLOWED", "this request takes no body")
UNSUPPORTED_MEDIA = ErrorKind(415, "ERR_INVALID_CONTENT_TYPE",
                              "PATCH requires Content-Type: application/offset+octet-stream")
DISALLOWED_TYPE = ErrorKind(415, "ERR_TYPE_NOT_ACCEPTED", "file type not accepted by this server")
UPLOAD_LOCKED = ErrorKind(423, "ERR_UPLOAD_LOCKED", "upload is being written by another request; retry")
RATE_LIMITED = ErrorKind(429, "ERR_RATE_LIMITED", "too many requests")
CHECKSUM_MISMATCH = ErrorKind(460, "ERR_CHECKSUM_MISMATCH", "checksum mismatch")
INTERNAL = ErrorKind(500, "ERR_INTERNAL", "internal server error")
UNAVAILABLE = ErrorKind(503, "ERR_UNAVAILABLE", "service temporarily unavailable", {"Retry-After": "5"})
SHUTTING_DOWN = ErrorKind(503, "ERR_SHUTTING_DOWN", "server is shutting down; resume from Upload-Offset",
                          {"Retry-After": "5"})
INSUFFICIENT_STORAGE = ErrorKind(507, "ERR_INSUFFICIENT_STORAGE", "not enough storage space")
