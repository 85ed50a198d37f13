"""tus 1.0.0 wire format: header names, versions, and strict parsers for every tus request header.

Pure functions, no I/O: every malformed value raises a TusError the HTTP layer renders as it is.
Where real clients are looser than the spec (tuspy's empty Upload-Metadata, tus-js-client's `key ` with a
trailing space) we accept them; everything else that is malformed is a 400.
"""

from __future__ import annotations

import base64
import binascii
import functools
import re
from dataclasses import dataclass
from email.utils import formatdate

from tuskit import errors
from tuskit.checksums import ALGORITHMS, DIGEST_SIZES

TUS_VERSION = "1.0.0"
SUPPORTED_VERSIONS = (TUS_VERSION,)
EXTENSIONS = (
    "creation",
    "creation-with-upload",
    "creation-defer-length",
    "expiration",
    "checksum",
    "checksum-trailer",
    "termination",
    "concatenation",
    "concatenation-unfinished",
)
CHECKSUM_ALGORITHMS = tuple(ALGORITHMS)
OFFSET_CONTENT_TYPE = "application/offset+octet-stream"

# Every header a tus client may send, and every header a browser must be allowed to read.
REQUEST_HEADERS = (
    "Authorization", "Content-Type", "Location", "Tus-Resumable", "Upload-Checksum", "Upload-Concat",
    "Upload-Defer-Length", "Upload-Length", "Upload-Metadata", "Upload-Offset", "X-HTTP-Method-Override",
    "X-Requested-With", "X-Request-ID",
)
EXPOSED_HEADERS = (
    "Location", "Tus-Checksum-Algorithm", "Tus-Extension", "Tus-Max-Size", "Tus-Resumable", "Tus-Version",
    "Upload-Concat", "Upload-Defer-Length", "Upload-Expires", "Upload-Length", "Upload-Metadata",
    "Upload-Offset", "X-Request-ID",
)

_UINT = re.compile(r"[0-9]{1,19}")  # ASCII digits only: str.isdigit() also takes "²" and other scripts' digits
_LIST_SEPARATOR = re.compile(r",[ \t]*")
_MAX_UINT = 2**63 - 1
_META_KEY = re.compile(r"[!-+\--~]+")  # printable ASCII without space and comma


def check_version(value: str | None) -> None:
    """412 unless the request speaks a version we support (OPTIONS requests skip this check)."""
    if value not in SUPPORTED_VERSIONS:
        raise errors.UNSUPPORTED_VERSION(
            f"Tus-Resumable must be {TUS_VERSION}, got {value!r}" if value else "missing Tus-Resumable header",
            headers={"Tus-Version": ",".join(SUPPORTED_VERSIONS)},
        )


def _parse_uint(value: str | None, kind: errors.ErrorKind, name: str) -> int:
    if value is None or not _UINT.fullmatch(value) or int(value) > _MAX_UINT:
        raise kind(f"{name} must be a non-negative integer, got {value[:40]!r}" if value is not None
                   else f"missing {name} header")
    return int(value)


def parse_offset(value: str | None) -> int:
    return _parse_uint(value, errors.INVALID_OFFSET, "Upload-Offset")


def parse_length(value: str | None) -> int:
    return _parse_uint(value, errors.INVALID_LENGTH, "Upload-Length")


def parse_content_length(value: str | None) -> int | None:
    """A request's Content-Length (None when absent). Equal repeated values ("5, 5": proxies merge
    duplicated headers) count once, as tornado reads them; anything else is a 400, never a crash."""
    if value is None:
        return None
    values = set(_LIST_SEPARATOR.split(value))
    if len(values) != 1:
        raise errors.BAD_REQUEST(f"conflicting Content-Length values {value[:40]!r}")
    return _parse_uint(values.pop(), errors.BAD_REQUEST, "Content-Length")


def parse_defer_length(value: str | None) -> bool:
    """Upload-Defer-Length may only be 1; absent means the length must be given."""
    if value is None:
        return False
    if value != "1":
        raise errors.INVALID_LENGTH(f"Upload-Defer-Length must be 1, got {value!r}")
    return True


def parse_metadata(value: str | None) -> dict[str, bytes | None]:
    """Decode Upload-Metadata into key -> value bytes (None for a key sent without a value)."""
    if value is None or not value.strip():
        return {}
    result: dict[str, bytes | None] = {}
    for item in value.split(","):
        parts = item.strip().split(" ")
        key = parts[0]
        if not key or len(parts) > 2 or not _META_KEY.fullmatch(key):
            raise errors.INVALID_METADATA(f"malformed Upload-Metadata entry {item.strip()!r}")
        if key in result:
            raise errors.INVALID_METADATA(f"duplicate Upload-Metadata key {key!r}")
        if len(parts) == 1 or parts[1] == "":
            result[key] = None
            continue
        try:
            result[key] = base64.b64decode(parts[1], validate=True)
        except (binascii.Error, ValueError):
            raise errors.INVALID_METADATA(f"Upload-Metadata value of {key!r} is not valid base64") from None
    return result


def encode_metadata(metadata: dict[str, bytes | None]) -> str:
    """The canonical Upload-Metadata header for `metadata` (what HEAD echoes)."""
    return ",".join(key if value is None else f"{key} {base64.b64encode(value).decode()}"
                    for key, value in metadata.items())


def metadata_text(metadata: dict[str, bytes | None], key: str) -> str | None:
    """A metadata value as text, or None when absent, empty or not UTF-8."""
    raw = metadata.get(key)
    if not raw:
        return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None


def parse_checksum(value: str) -> tuple[str, bytes]:
    """`Upload-Checksum: <algorithm> <base64 digest>` -> (algorithm, raw digest)."""
    parts = value.strip().split(" ")
    if len(parts) != 2 or not parts[0] or not parts[1]:
        raise errors.INVALID_CHECKSUM(f"Upload-Checksum must be '<algorithm> <base64 digest>', got {value!r}")
    algorithm = parts[0].lower()
    if algorithm not in ALGORITHMS:
        raise errors.UNSUPPORTED_CHECKSUM(
            f"unsupported checksum algorithm {parts[0]!r}; supported: {','.join(CHECKSUM_ALGORITHMS)}")
    try:
        digest = base64.b64decode(parts[1], validate=True)
    except (binascii.Error, ValueError):
        raise errors.INVALID_CHECKSUM("Upload-Checksum digest is not valid base64") from None
    if len(digest) != DIGEST_SIZES[algorithm]:
        # well-formed, but no chunk can hash to it: a mismatch, as tusd and strict checkers see it
        raise errors.CHECKSUM_MISMATCH(
            f"Upload-Checksum {algorithm} digest must be {DIGEST_SIZES[algorithm]} bytes, got {len(digest)}")
    return algorithm, digest


@dataclass(frozen=True)
class Concat:
    """A parsed Upload-Concat header: a partial upload, or a final one listing its partials' URLs."""

    kind: str  # "partial" | "final"
    urls: tuple[str, ...] = ()


def parse_concat(value: str | None) -> Concat | None:
    if value is None:
        return None
    value = value.strip()
    if value == "partial":
        return Concat("partial")
    if value.startswith("final;"):
        urls = tuple(u for u in value[len("final;"):].split(" ") if u)
        if not urls:
            raise errors.INVALID_CONCAT("Upload-Concat final needs at least one partial upload URL")
        return Concat("final", urls)
    raise errors.INVALID_CONCAT(f"Upload-Concat must be 'partial' or 'final;<urls>', got {value!r}")


def http_date(timestamp: float) -> str:
    """IMF-fixdate (RFC 9110), the format of Upload-Expires."""
    return _http_date_of_second(int(timestamp))


@functools.lru_cache(maxsize=4)
def _http_date_of_second(second: int) -> str:
    """Whole seconds are all the format shows, and a busy server formats the same one for many responses."""
    return formatdate(second, usegmt=True)
