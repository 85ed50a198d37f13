"""What the state machine needs from the world, as Protocols: it is handed implementations at start-up.

The core imports none of them: `tuskit.server.redis` implements state, leases, events, the event feed and
the rate limiter on Redis; `tuskit.server.stores` implements where bytes live. A new backend implements
these and touches nothing above them.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO, Protocol

from .model import Upload


class OffsetConflict(Exception):
    """Someone else moved the offset (or the upload stopped being active) since we read it."""


# ---- upload state ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Advance:
    """Move an upload's offset from `old` to `new` (compare-and-set), sliding its expiry when given."""

    old: int
    new: int
    expires: float | None


class StateStore(Protocol):
    """Upload records. Every method is one round trip to the store; the offset moves only by compare-and-set,
    so two writers can never both advance it."""

    # exceptions that mean "the store is away for now" (answered 503 + Retry-After, never a traceback)
    unavailable: tuple[type[BaseException], ...]

    async def create(self, upload: Upload) -> None: ...
    async def get(self, upload_id: str) -> Upload | None: ...
    async def get_many(self, upload_ids: list[str]) -> list[Upload | None]: ...
    async def advance(self, upload_id: str, advance: Advance) -> None:
        """OffsetConflict when the offset is no longer `advance.old` or the upload is not active."""
    async def set_length(self, upload_id: str, length: int) -> bool:
        """Fix a deferred length once; False if it was already set to another value."""
    async def settle(self, upload_id: str, status: str, **fields: Any) -> bool:
        """active -> `status` with extra fields, atomically; False if it was no longer active."""
    async def bury(self, upload_id: str, status: str, reason: str) -> None:
        """Replace an upload by a tombstone that answers 410 with `reason` for a while."""
    async def finals_of(self, partial_id: str) -> list[str]: ...
    async def expired(self, now: float, limit: int) -> list[str]: ...
    async def ping(self) -> None: ...


# ---- leases ------------------------------------------------------------------------------------------

class Lease(Protocol):
    """A held lock on one upload. `lost` turns true if it could not be kept: its holder stops writing."""

    upload_id: str
    lost: bool
    upload: Upload | None  # the record read as the lease was taken (Locker.acquire(read=True))

    def when_asked_to_release(self, callback: Callable[[], None]) -> None:
        """Call `callback` when another request wants the upload (at once if one already asked)."""

    async def release(self, advance: Advance | None = None) -> None:
        """End the lease, exactly once. With `advance`, the offset moves in the same round trip as the
        release (the common end of a PATCH); OffsetConflict if it could not, and the lease still ends."""


class Locker(Protocol):
    waits: int  # acquisitions that found the upload locked (for metrics)

    async def acquire(self, upload_id: str, *, read: bool = False) -> Lease:
        """Take the lease, asking a current holder to let go; 423 (UPLOAD_LOCKED) if it is not free in
        time. `read`: also read the upload's record, in the same round trip (`Lease.upload`)."""


# ---- bytes -------------------------------------------------------------------------------------------

class BlobWriter(Protocol):
    """Appends to one unfinished blob from the offset it was opened at (the recorded offset: bytes a crash
    left past it are overwritten). Blocking: called in an executor."""

    def write(self, data: bytes | memoryview) -> None: ...
    def sync(self) -> None:
        """Everything written so far is durable: only after this may its offset be recorded. May run in
        one thread while a later `write` runs in another (a checkpoint's sync beside the next bytes)."""
    def close(self) -> None: ...


class BlobStore(Protocol):
    """Where upload bytes and their derived artefacts live, addressed by upload ID and never by path.

    Blocking methods, called in an executor. How each maps onto the local file store and onto an S3
    multipart upload (one per tus upload):

    - `create(id)`: file: an empty file. S3: CreateMultipartUpload; its UploadId is kept in a small
      object beside the blob (or found again with ListMultipartUploads), so any process can continue it.
    - `writer(id, offset).write(data)`: file: pwrite at the position. S3: bytes gather into parts; every
      full part (at least 5 MiB: S3 refuses smaller parts with EntityTooSmall, except the last one at
      CompleteMultipartUpload) goes up with UploadPart while the next bytes arrive. Opening at `offset`
      finds the stored parts with ListParts; parts past `offset` (stored before a crash, never recorded)
      are overwritten by uploading the same part numbers again.
    - `writer.sync()`: file: fdatasync. S3: the bytes that do not fill a part yet are PUT as one
      "incomplete part" object, where any process can continue from them (S3 cannot read back the parts
      of an unfinished multipart upload, so the tail must live outside it until it fills a part).
    - `finalize(id, length)`: file: truncate to `length` and fsync. S3: the incomplete part goes up as the
      last part, then CompleteMultipartUpload with the parts' ETags; the helper objects go.
    - `read(id, start, end)` and `open(id)`: only for finished blobs (S3: GetObject with Range).
    - `concat(final_id, parts)`: file: copy_file_range. S3: UploadPartCopy for each partial of at least
      5 MiB (all but the last), streaming (GetObject, UploadPart) for smaller ones, then complete.
    - `delete(id)`: file: unlink the file and the derived artefacts. S3: AbortMultipartUpload if
      unfinished, DeleteObjects for the blob, the helper objects and every derived artefact.
    - `put_derived` / `get_derived`: file: files under a per-upload directory. S3: PutObject/GetObject.
    """

    def create(self, upload_id: str) -> None: ...
    def writer(self, upload_id: str, offset: int) -> BlobWriter: ...
    def finalize(self, upload_id: str, length: int) -> None:
        """All bytes are in: drop anything past `length` and make the blob durable and readable."""
    def read(self, upload_id: str, start: int, end: int) -> Iterator[bytes]:
        """Bytes [start, end) of a finished blob, in blocks of at most 1 MiB."""
    def open(self, upload_id: str) -> BinaryIO:
        """A seekable reader of a finished blob (decoders such as Pillow seek around)."""
    def concat(self, final_id: str, parts: list[tuple[str, int]]) -> None:
        """The final's blob becomes the first `length` bytes of each (part id, length), in order."""
    def delete(self, upload_id: str) -> None:
        """The blob, unfinished or not, and every derived artefact; a missing one is no error."""
    def put_derived(self, upload_id: str, name: str, data: bytes) -> None:
        """Store an artefact made from an upload (a thumbnail, a report), replacing any of that name."""
    def get_derived(self, upload_id: str, name: str) -> bytes | None: ...
    def free_space(self) -> int | None:
        """Bytes that can still be stored; None where storage is not bounded by one disk."""


# ---- events ------------------------------------------------------------------------------------------

class EventSink(Protocol):
    async def emit(self, kind: str, upload_id: str, owner: str | None, **data: Any) -> str | None:
        """Record one event (kinds in `core.events`); returns its ID in the replayable history, None if it
        was throttled away."""


Entry = tuple[str, dict[str, Any]]  # (event ID, event)


FEED_CLOSED: Entry = ("", {})  # put in a subscriber's queue when the feed drops it


class EventFeed(Protocol):
    """Events for `GET /events`: a replay of the history after an event ID, then live ones."""

    def subscribe(self) -> asyncio.Queue[Entry]:
        """A queue of live events; FEED_CLOSED ends it (a subscriber too far behind is dropped)."""
    def unsubscribe(self, queue: asyncio.Queue[Entry]) -> None: ...
    async def replay(self, after: str) -> list[Entry]:
        """Every event still in the history after the event ID `after`, oldest first."""
    def is_event_id(self, text: str) -> bool:
        """Whether a client's Last-Event-ID names an event of this feed (anything else: no replay)."""
    def newer(self, event_id: str, than: str) -> bool:
        """Whether `event_id` comes after `than` in the history."""
    def start(self) -> None: ...
    async def stop(self) -> None: ...


# ---- admission ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Verdict:
    allowed: bool
    wait: float  # seconds until the request would pass (refused) or the debt is paid (bytes)

    @property
    def retry_after(self) -> str:
        """Whole seconds, at least 1, as Retry-After requires."""
        return str(max(1, math.ceil(self.wait)))


class RateLimiter(Protocol):
    request_rate: float

    async def request(self, client: str) -> Verdict:
        """One request by `client`: allowed, or refused with how long to wait."""
    async def upload_bytes(self, client: str, count: int) -> float:
        """`count` body bytes arrived from `client`: seconds to wait before reading more."""
