"""What a file is, from its first bytes: magic numbers, never the filename or a client's claimed type.

A name or `filetype` metadata costs nothing to fake; the bytes are what a viewer will decode. Pure
functions, so the --accept gate can call them on the first buffer of a PATCH before anything is stored.
"""

from __future__ import annotations

import codecs
import fnmatch
from collections.abc import Callable

SNIFF_BYTES = 4096  # enough for every signature below and a fair look at text
OCTET_STREAM = "application/octet-stream"

# (offset, signature, type), checked in order
_MAGIC: tuple[tuple[int, bytes, str], ...] = (
    (0, b"\xff\xd8\xff", "image/jpeg"),
    (0, b"\x89PNG\r\n\x1a\n", "image/png"),
    (0, b"GIF87a", "image/gif"),
    (0, b"GIF89a", "image/gif"),
    (0, b"%PDF-", "application/pdf"),
    (0, b"II*\x00", "image/tiff"),
    (0, b"MM\x00*", "image/tiff"),
    (0, b"BM", "image/bmp"),
    (0, b"\x00\x00\x01\x00", "image/x-icon"),
    (0, b"PK\x03\x04", "application/zip"),
    (0, b"\x1f\x8b", "application/gzip"),
    (0, b"7z\xbc\xaf\x27\x1c", "application/x-7z-compressed"),
    (0, b"OggS", "audio/ogg"),
    (0, b"fLaC", "audio/flac"),
    (0, b"ID3", "audio/mpeg"),
    (0, b"\x1a\x45\xdf\xa3", "video/webm"),
)
_RIFF = {b"WEBP": "image/webp", b"WAVE": "audio/wav", b"AVI ": "video/x-msvideo"}
# ISO base media (ftyp box): the major brand says which kind
_FTYP = {
    b"avif": "image/avif", b"avis": "image/avif", b"heic": "image/heic", b"heix": "image/heic",
    b"mif1": "image/heif", b"qt  ": "video/quicktime", b"M4A ": "audio/mp4",
}


def sniff_type(head: bytes) -> str:
    """The MIME type the first bytes of a file reveal; octet-stream when nothing matches."""
    for offset, signature, mime in _MAGIC:
        if head[offset:offset + len(signature)] == signature:
            return mime
    if head[:4] == b"RIFF" and head[8:12] in _RIFF:
        return _RIFF[head[8:12]]
    if head[4:8] == b"ftyp":
        return _FTYP.get(head[8:12], "video/mp4")
    if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0 and head[1] & 0x06:
        return "audio/mpeg"  # an MPEG audio frame sync without an ID3 tag
    if _looks_like_text(head):
        return "text/plain"
    return OCTET_STREAM


def _looks_like_text(head: bytes) -> bool:
    """UTF-8 without control bytes (a multi-byte character cut at the end of `head` is fine)."""
    if not head or b"\x00" in head:
        return False
    try:
        text = codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError:
        return False
    return all(c.isprintable() or c in "\t\n\r\f" for c in text.removeprefix("\ufeff"))  # a BOM is fine


def parse_accept(text: str) -> tuple[str, ...]:
    """`image/*,application/pdf` -> the patterns; each must look like a MIME type or `type/*`."""
    patterns = tuple(p.strip().lower() for p in text.split(",") if p.strip())
    for pattern in patterns:
        kind, _, sub = pattern.partition("/")
        if not kind or not sub or "/" in sub:
            raise ValueError(f"not a MIME type pattern: {pattern!r} (examples: image/*, application/pdf)")
    return patterns


def type_gate(patterns: tuple[str, ...]) -> Callable[[bytes], str | None]:
    """The service's --accept check: given a file's first bytes, why it is refused (None: accepted)."""

    def gate(head: bytes) -> str | None:
        mime = sniff_type(head)
        if any(fnmatch.fnmatchcase(mime, p) for p in patterns):
            return None
        return f"content is {mime}; this server accepts {', '.join(patterns)}"

    return gate
