"""The IETF draft "Resumable Uploads for HTTP" (interop versions 3-8) on the wire: structured fields, the
digest fields of RFC 9530, and what differs per interop version. Pure functions, no I/O.

A request is the draft's when `Upload-Draft-Interop-Version` is a structured-field Integer the server
speaks; anything else stays tus 1.0. Malformed values raise TusErrors the HTTP layer renders, like the
tus codecs in `tuskit.protocol` (whose 19-digit integers and free-form headers the draft does not share).
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from tuskit import errors
from tuskit.checksums import DIGEST_SIZES

INTEROP_VERSIONS = range(3, 9)
PARTIAL_UPLOAD_TYPE = "application/partial-upload"
PROBLEM_TYPE = "application/problem+json"

INTEROP = "Upload-Draft-Interop-Version"
COMPLETE = "Upload-Complete"
INCOMPLETE = "Upload-Incomplete"  # interop 3 only: the inverse of Upload-Complete
OFFSET = "Upload-Offset"
LENGTH = "Upload-Length"
LIMIT = "Upload-Limit"
REPR_DIGEST = "Repr-Digest"
CONTENT_DIGEST = "Content-Digest"

# what a browser must be allowed to send and to read, next to tus's lists
REQUEST_HEADERS = (INTEROP, COMPLETE, INCOMPLETE, "Content-Disposition", REPR_DIGEST, CONTENT_DIGEST,
                   "Want-Repr-Digest")
EXPOSED_HEADERS = (COMPLETE, INCOMPLETE, LIMIT, INTEROP, REPR_DIGEST, "Accept-Patch")

_PROBLEMS = "https://iana.org/assignments/http-problem-types#"
MISMATCHING_OFFSET = _PROBLEMS + "mismatching-upload-offset"
COMPLETED_UPLOAD = _PROBLEMS + "completed-upload"
INCONSISTENT_LENGTH = _PROBLEMS + "inconsistent-upload-length"
PROBLEM_TITLES = {
    MISMATCHING_OFFSET: "offset from request does not match offset of resource",
    COMPLETED_UPLOAD: "upload is already completed",
    INCONSISTENT_LENGTH: "inconsistent length values for upload",
}

# RFC 9530 algorithm names -> tuskit.checksums names (the active ones; the deprecated md5/sha are not taken)
DIGEST_ALGORITHMS = {"sha-256": "sha256", "sha-512": "sha512"}


# ---- structured fields (RFC 9651), the parts the draft and RFC 9530 use -------------------------------

class FieldError(ValueError):
    """A value that is not a valid structured field of the expected type."""


_KEY = re.compile(r"[a-z*][a-z0-9_.*-]*")
_TOKEN = re.compile(r"[A-Za-z*][!#$%&'*+.^_`|~0-9A-Za-z:/-]*")
_NUMBER = re.compile(r"-?[0-9]{1,15}(\.[0-9]{1,3})?")
_STRING = re.compile(r'"((?:[ !#-\[\]-~]|\\["\\])*)"')
_BYTES = re.compile(r":([A-Za-z0-9+/=]*):")


@dataclass(frozen=True)
class Token:
    """A structured-field Token (distinct from a String of the same text)."""

    text: str


Bare = int | float | str | bytes | bool | Token
Params = dict[str, Bare]


class _Reader:
    def __init__(self, text: str) -> None:
        self.text = text
        self.at = 0

    def peek(self) -> str:
        return self.text[self.at:self.at + 1]

    def skip(self, chars: str) -> None:
        while self.peek() and self.peek() in chars:
            self.at += 1

    def match(self, pattern: re.Pattern[str]) -> re.Match[str] | None:
        m = pattern.match(self.text, self.at)
        if m:
            self.at = m.end()
        return m

    def bare(self) -> Bare:
        c = self.peek()
        if c == "?":
            value = self.text[self.at + 1:self.at + 2]
            if value not in ("0", "1"):
                raise FieldError("a Boolean is ?0 or ?1")
            self.at += 2
            return value == "1"
        if c == '"':
            if not (m := self.match(_STRING)):
                raise FieldError("malformed String")
            return re.sub(r"\\(.)", r"\1", m.group(1))
        if c == ":":
            if not (m := self.match(_BYTES)):
                raise FieldError("malformed Byte Sequence")
            try:
                return base64.b64decode(m.group(1), validate=True)
            except (binascii.Error, ValueError):
                raise FieldError("Byte Sequence is not base64") from None
        if c == "-" or c.isdigit():
            if not (m := self.match(_NUMBER)) or (self.peek().isdigit() or self.peek() == "."):
                raise FieldError("an Integer has at most 15 digits (a Decimal 12.3)")
            return float(m.group(0)) if m.group(1) else int(m.group(0))
        if m := self.match(_TOKEN):
            return Token(m.group(0))
        raise FieldError(f"unexpected {c!r}" if c else "value missing")

    def params(self) -> Params:
        params: Params = {}
        while self.peek() == ";":
            self.at += 1
            self.skip(" ")
            if not (m := self.match(_KEY)):
                raise FieldError("malformed parameter key")
            value: Bare = True
            if self.peek() == "=":
                self.at += 1
                value = self.bare()
            params[m.group(0)] = value
        return params

    def member(self) -> tuple[Any, Params]:
        """An Item or an Inner List, with its parameters."""
        if self.peek() != "(":
            return self.bare(), self.params()
        self.at += 1
        items: list[tuple[Bare, Params]] = []
        while True:
            self.skip(" ")
            if self.peek() == ")":
                self.at += 1
                return items, self.params()
            items.append((self.bare(), self.params()))
            if self.peek() not in (" ", ")"):
                raise FieldError("malformed Inner List")

    def end(self) -> None:
        self.skip(" ")
        if self.at != len(self.text):
            raise FieldError(f"unexpected {self.text[self.at:self.at + 10]!r} after the value")


def parse_item(text: str) -> tuple[Bare, Params]:
    """An Item: a bare value and its parameters (RFC 9651 3.3). FieldError if malformed."""
    reader = _Reader(text)
    reader.skip(" ")
    value, params = reader.bare(), reader.params()
    reader.end()
    return value, params


def parse_dictionary(text: str) -> dict[str, tuple[Any, Params]]:
    """A Dictionary (RFC 9651 3.2); repeated field lines joined with commas parse as one. FieldError if
    malformed. A key without a value is the Boolean true; a later duplicate key wins."""
    reader = _Reader(text)
    reader.skip(" ")
    members: dict[str, tuple[Any, Params]] = {}
    while reader.peek():
        if not (m := reader.match(_KEY)):
            raise FieldError("malformed Dictionary key")
        if reader.peek() == "=":
            reader.at += 1
            members[m.group(0)] = reader.member()
        else:
            members[m.group(0)] = (True, reader.params())
        reader.skip(" \t")
        if not reader.peek():
            break
        if reader.peek() != ",":
            raise FieldError(f"unexpected {reader.peek()!r} in a Dictionary")
        reader.at += 1
        reader.skip(" \t")
        if not reader.peek():
            raise FieldError("a Dictionary does not end with a comma")
    return members


def serialize_integers(members: dict[str, int]) -> str:
    """A Dictionary of Integers, e.g. `max-size=1024, min-size=0` (Upload-Limit)."""
    return ", ".join(f"{key}={value}" for key, value in members.items())


def serialize_bytes(value: bytes) -> str:
    return f":{base64.b64encode(value).decode()}:"


# ---- the draft's request fields -----------------------------------------------------------------------

def interop_version(value: str | None) -> int | None:
    """The interop version a request asks for, when it is one served here; None makes it a tus request."""
    if value is None:
        return None
    try:
        version, _ = parse_item(value)
    except FieldError:
        return None
    if type(version) is not int or version not in INTEROP_VERSIONS:
        return None
    return version


def parse_boolean(value: str | None, name: str) -> bool | None:
    """A Boolean field (parameters ignored); None when absent, 400 when not ?0 or ?1."""
    if value is None:
        return None
    try:
        parsed, _ = parse_item(value)
    except FieldError as exc:
        raise errors.BAD_REQUEST(f"{name} must be ?0 or ?1, got {value!r} ({exc})") from None
    if type(parsed) is not bool:
        raise errors.BAD_REQUEST(f"{name} must be ?0 or ?1, got {value!r}")
    return parsed


def parse_size(value: str | None, name: str, *, lenient: bool = False) -> int | None:
    """A non-negative Integer field (offsets, lengths); None when absent. Malformed: 400, or (interop 8,
    `lenient`) None, as the draft from -09 on says an invalid field is ignored."""
    if value is None:
        return None
    try:
        parsed, _ = parse_item(value)
    except FieldError as exc:
        if lenient:
            return None
        raise errors.BAD_REQUEST(f"{name} must be a non-negative Integer, got {value!r} ({exc})") from None
    if type(parsed) is not int or parsed < 0:
        if lenient:
            return None
        raise errors.BAD_REQUEST(f"{name} must be a non-negative Integer, got {value!r}")
    return parsed


def parse_digests(value: str | None, name: str) -> dict[str, bytes]:
    """RFC 9530 Repr-Digest / Content-Digest -> {tuskit algorithm: raw digest} for the algorithms taken here
    (others are ignored, as RFC 9530 lets a recipient do). Malformed: 400; a digest of the wrong length
    for its algorithm can match nothing: 460, as a tus Upload-Checksum of the wrong length is."""
    if value is None:
        return {}
    try:
        members = parse_dictionary(value)
    except FieldError as exc:
        raise errors.BAD_REQUEST(f"{name} is not a structured-field Dictionary: {exc}") from None
    digests: dict[str, bytes] = {}
    for key, (digest, _) in members.items():
        algorithm = DIGEST_ALGORITHMS.get(key)
        if algorithm is None:
            continue
        if type(digest) is not bytes:
            raise errors.BAD_REQUEST(f"{name} {key} must be a Byte Sequence (:base64:)")
        if len(digest) != DIGEST_SIZES[algorithm]:
            raise errors.CHECKSUM_MISMATCH(f"{name} {key} must be {DIGEST_SIZES[algorithm]} bytes, got {len(digest)}")
        digests[algorithm] = digest
    return digests


_DISPOSITION_PARAM = re.compile(r';\s*([!#$%&\'*+.^_`|~0-9A-Za-z-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;\s]*)\s*')


def disposition_filename(value: str | None) -> str | None:
    """The file name of a Content-Disposition (RFC 6266): `filename*` (RFC 8187, UTF-8) wins over
    `filename`; None when there is none or it cannot be decoded."""
    if not value:
        return None
    params: dict[str, str] = {}
    for m in _DISPOSITION_PARAM.finditer(value[value.find(";"):] if ";" in value else ""):
        raw = m.group(2)
        params[m.group(1).lower()] = re.sub(r"\\(.)", r"\1", raw[1:-1]) if raw.startswith('"') else raw
    extended = params.get("filename*")
    if extended:
        charset, _, rest = extended.partition("'")
        _, _, encoded = rest.partition("'")
        if charset.lower() in ("utf-8", "iso-8859-1") and encoded:
            try:
                return unquote(encoded, encoding=charset.lower(), errors="strict") or None
            except UnicodeDecodeError:
                pass
    return params.get("filename") or None


# ---- what differs per interop version ------------------------------------------------------------------

@dataclass(frozen=True)
class Draft:
    """The rules of one interop version (the last revision that carries it: 3 = -01, 4 = -02, 5 = -03,
    6 = -05, 7 = -08, 8 = -11), as the handler needs them."""

    version: int

    @property
    def complete_field(self) -> str:
        return INCOMPLETE if self.version == 3 else COMPLETE

    def completeness(self, complete: bool) -> tuple[str, str]:
        """The field that tells whether the upload is complete, as this version spells it."""
        if self.version == 3:
            return INCOMPLETE, "?0" if complete else "?1"
        return COMPLETE, "?1" if complete else "?0"

    def read_complete(self, headers: Any, *, append: bool) -> bool:
        """Whether this request's body ends the upload. Creation must say so in every version; an append
        that does not say is the end in 3-6 and refused from 7 on (400)."""
        said = parse_boolean(headers.get(self.complete_field), self.complete_field)
        if said is None:
            if not append or self.version >= 7:
                raise errors.BAD_REQUEST(f"{self.complete_field} is required on this request")
            return True
        return not said if self.version == 3 else said

    @property
    def lenient(self) -> bool:
        """From -09 (interop 8) an invalid structured field is ignored rather than refused."""
        return self.version >= 8

    @property
    def has_limits(self) -> bool:
        return self.version >= 6

    @property
    def lifetime_key(self) -> str:
        """The Upload-Limit key for the seconds an upload has left: `expires` (6), renamed in -06."""
        return "expires" if self.version == 6 else "max-age"

    @property
    def appends_are_partial_uploads(self) -> bool:
        """From interop 6 an append's body must be application/partial-upload."""
        return self.version >= 6

    @property
    def strays_on_head_and_delete(self) -> tuple[str, ...]:
        """Request fields that make a HEAD or DELETE a 400 (3-6; from -06 the draft has no such rule)."""
        if self.version >= 7:
            return ()
        return (OFFSET, self.complete_field, *((LENGTH,) if self.version == 6 else ()))

    def has_problem(self, problem: str) -> bool:
        """Whether this version defines a problem type (two from -04 = interop 6, the third from -06 = 7)."""
        return self.version >= (7 if problem == INCONSISTENT_LENGTH else 6)

    def append_status(self) -> int:
        """A successful append: 3-6 name 201 (even for one that does not complete); 7 and 8 any 2xx."""
        return 201 if self.version <= 6 else 204

    @property
    def marks_incomplete_errors(self) -> bool:
        """Interop 7 (-06..-08): every response to a non-completing append, errors too, says ?0. Interop 8
        only requires it on a 2xx, but a ?0 on an error is still true, so it gets it too."""
        return self.version >= 7
