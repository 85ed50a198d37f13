"""An upload as the state machine sees it, and the statuses it moves through.

Tombstones (terminated, expired, failed) keep answering 410 with a reason for a while, so a client that
comes back learns why its upload is gone instead of seeing a bare 404.

Segments fence writers that lost their lease. An unfinished upload's bytes are a list of segments, each
written by a chain of append sessions and covering [its start, the next one's start). A session appends
to the last segment only if every earlier writer of it ended cleanly (`writer` is empty: each clears it
as it releases its lease, after its last write and with its blob closed); otherwise the last writer may
still be alive (crashed, or paused past its lease by a GC, SIGSTOP or swap), and the session writes a
segment of its own, registered with its first recorded offset. A stale writer therefore only ever
writes past the recorded end of its own segment, which nobody reads: the offset's compare-and-set
protects the record, segments protect the bytes. Publishing assembles the segments into a blob no
stale writer can reach (see BlobStore.finalize).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from tuskit import errors, protocol

ACTIVE = "active"  # accepting bytes (or, for a final, waiting for its partials)
DONE = "done"  # complete and verified: downloadable
FAILED = "failed"  # complete but its declared sha256 did not match: never published
TERMINATED = "terminated"
EXPIRED = "expired"

GONE_REASONS = {
    TERMINATED: "upload was terminated",
    EXPIRED: "upload expired before it was finished",
}

_SHA256_HEX = re.compile(r"[0-9a-fA-F]{64}")

Segments = tuple[tuple[str, int], ...]  # (name, start) of each segment of an unfinished upload, in order
FIRST_SEGMENTS: Segments = (("", 0),)  # the blob BlobStore.create made, from offset 0


@dataclass(frozen=True)
class Upload:
    """One upload's state as stored; `length` None means deferred."""

    id: str
    offset: int
    length: int | None
    metadata: str  # canonical Upload-Metadata header value
    concat: str  # "" | "partial" | "final"
    parts: tuple[str, ...]
    owner: str
    created: float
    expires: float | None
    status: str
    sha256: str
    reason: str
    finished: float | None
    # what post-processing found, kept with the state so listings need no artefact reads
    content_type: str = ""  # sniffed from the bytes; "" until the upload was processed
    thumbnails: tuple[int, ...] = ()  # sizes of the thumbnails made
    segments: Segments = FIRST_SEGMENTS
    writer: str = ""  # the lease token of a session that may still write the last segment; "" when none

    @property
    def complete(self) -> bool:
        return self.length is not None and self.offset == self.length

    @property
    def filename(self) -> str | None:
        """The name the client gave (`filename`, or Uppy's `name`), for downloads and listings."""
        metadata = protocol.parse_metadata(self.metadata)
        return protocol.metadata_text(metadata, "filename") or protocol.metadata_text(metadata, "name")

    @property
    def relative_path(self) -> str | None:
        """Where the file sat in the folder it was picked from (`relativePath`: tuskit sync, Uppy), if given.

        Uppy sends the text "null" for a file that was not picked from a folder."""
        value = protocol.metadata_text(protocol.parse_metadata(self.metadata), "relativePath")
        return None if value == "null" else value

    @property
    def listed(self) -> bool:
        """Whether the owner's listing shows it: a partial is a piece of a final upload, which is listed."""
        return self.concat != "partial"

    @property
    def declared_type(self) -> str:
        """The media type the client claimed (`filetype` or `type`), lower-cased; "" when none."""
        metadata = protocol.parse_metadata(self.metadata)
        return (protocol.metadata_text(metadata, "filetype") or protocol.metadata_text(metadata, "type") or "").lower()


def declared_sha256(metadata: dict[str, bytes | None]) -> str | None:
    """The whole-file digest a client declared in Upload-Metadata, validated (400 if malformed)."""
    if "sha256" not in metadata:
        return None
    value = protocol.metadata_text(metadata, "sha256")
    if value is None or not _SHA256_HEX.fullmatch(value):
        raise errors.INVALID_METADATA("metadata sha256 must be 64 hexadecimal characters")
    return value.lower()
