"""What the state machine needs from the world, as Protocols: it is handed implementations at start-up.

The core imports none of them: `tuskit.server.redis` implements state, leases, events, the event feed and
the rate limiter on Redis; `tuskit.server.stores` implements where bytes live. A new backend implements
these and touches nothing above them.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from .model import FIRST_SEGMENTS, Segments, Upload


class OffsetConflict(Exception):
    """Someone else moved the offset (or the upload stopped being active) since we read it."""


# ---- upload state ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Advance:
    """Move an upload's offset from `old` to `new` (compare-and-set), sliding its expiry when given.

    `segments`: the upload's segments from now on, when a session's first recorded bytes open a segment
    of its own; `writer` (its lease token) is then recorded as the last segment's writer."""

    old: int
    new: int
    expires: float | None
    segments: Segments | None = None
    writer: str = ""


Position = tuple[float, str]  # (created, upload id): a place in an owner's listing, newest first


class StateStore(Protocol):
    """Upload records. Every method is one round trip to the store; the offset moves only by compare-and-set,
    so two writers can never both advance it."""

    # exceptions that mean "the store is away for now" (answered 503 + Retry-After, never a traceback)
    unavailable: tuple[type[BaseException], ...]

    def out_of_space(self, exc: BaseException) -> bool:
        """The store refused a write because its disk is full: 507, as for a full blob store (checked
        before `unavailable`, which it may also match)."""

    async def create(self, upload: Upload) -> None: ...
    async def get(self, upload_id: str) -> Upload | None: ...
    async def get_many(self, upload_ids: list[str]) -> list[Upload | None]: ...
    async def advance(self, upload_id: str, advance: Advance) -> None:
        """OffsetConflict when the offset is no longer `advance.old` or the upload is not active."""
    async def set_length(self, upload_id: str, length: int) -> bool:
        """Fix a deferred length once; False if it was already set to another value."""
    async def settle(self, upload_id: str, status: str, **fields: Any) -> bool:
        """active -> `status` with extra fields, atomically; False if it was no longer active. A final
        that settles leaves its partials' `finals_of`; any status but DONE is a tombstone (see `bury`)."""
    async def bury(self, upload_id: str, status: str, reason: str) -> None:
        """Replace an upload by a tombstone that answers 410 with `reason` for a while, then goes: its
        metadata, its `finals_of` and its place in its partials' `finals_of` go at once."""
    async def finals_of(self, partial_id: str) -> list[str]: ...
    async def owned(self, owner: str, limit: int, after: Position | None) -> tuple[list[Upload], Position | None]:
        """Up to `limit` of `owner`'s listed uploads (`Upload.listed`), newest first, starting after the
        position `after`; and the position to continue from (None when nothing is left). Buried uploads are
        no longer indexed; a record found missing drops out of the index here, so a page may be short."""
    async def note_processed(self, upload_id: str, content_type: str, thumbnails: tuple[int, ...]) -> None:
        """Record what post-processing found (nothing happens for an upload whose record is gone)."""
    async def expired(self, now: float, limit: int, skip: int = 0) -> list[str]:
        """Active uploads whose expiry is at or before `now`, soonest first, from the `skip`-th on."""
    async def touch(self, upload_id: str, expires: float) -> None:
        """Slide an active upload's expiry (bytes arrive, but no offset is recorded yet)."""
    async def forget(self, upload_id: str) -> None:
        """Drop an upload from the expiry index (its record is gone or no longer active)."""
    async def ping(self) -> None: ...


# ---- leases ------------------------------------------------------------------------------------------

class Lease(Protocol):
    """A held lock on one upload. `lost` turns true if it could not be kept: its holder stops writing."""

    upload_id: str
    token: str  # unique to this lease: names the segment its holder writes when it opens one
    lost: bool
    upload: Upload | None  # the record read as the lease was taken (Locker.acquire(read=True))

    def when_asked_to_release(self, callback: Callable[[], None]) -> None:
        """Call `callback` when another request wants the upload (at once if one already asked)."""

    async def release(self, advance: Advance | None = None, *, clean: bool = True) -> None:
        """End the lease, exactly once. With `advance`, the offset moves in the same round trip as the
        release (the common end of a PATCH); OffsetConflict if it could not, and the lease still ends.

        `clean`: nothing this holder wrote is still in flight and its blob is closed, so it stops being
        the upload's `writer`. False after a failure that may have left a write running."""


class Locker(Protocol):
    waits: int  # acquisitions that found the upload locked (for metrics)

    async def acquire(self, upload_id: str, *, read: bool = False, write: bool = False,
                      owner: str | None = None) -> Lease:
        """Take the lease, asking a current holder to let go; 423 (UPLOAD_LOCKED) if it is not free in
        time. `read`: also read the upload's record, in the same round trip (`Lease.upload`). `write`:
        and, if its `writer` is empty, record this lease as its writer (the record read shows the old one).
        `owner`: the request's; a holder is asked to let go only for the upload's owner (anyone else: 404)."""

    async def try_acquire(self, upload_id: str) -> Lease | None:
        """The lease if it is free right now, else None; nobody is asked to let go."""

    async def wait_released(self, upload_id: str, owner: str) -> bool:
        """Ask a holder of the upload's lease to let go and wait until it did, taking no lease (423 if not
        in time, 404 if the upload is not `owner`'s); True if there was a holder."""


# ---- bytes -------------------------------------------------------------------------------------------

class BlobWriter(Protocol):
    """Appends to one segment of an unfinished blob from the position it was opened at (the recorded
    offset: bytes a crash left past it are overwritten). Blocking: called in an executor."""

    @property
    def retained(self) -> int:
        """Written bytes the writer still holds in memory (S3: its unfilled part and a part in flight; a file
        writer: none). They count against the body budget, as a buffer does, until `spill` or `close`."""
    def spill(self) -> None:
        """Store what `retained` counts and let go of it (the body waits for memory, or went quiet); the next
        write reads back what it needs."""
    def write(self, data: bytes | memoryview) -> None: ...
    def sync(self, partial: bool = False) -> int:
        """Make written bytes durable and return the upload offset up to which they are: only up to there may
        an offset be recorded. Everything written before the call, or with `partial` (a checkpoint in the
        middle of a body) as far as the store gets without extra work: S3 returns the end of the parts that
        landed (waiting for the one in flight) and keeps the tail of an unfilled part for the body's end, so
        the offset advances as parts land. May run in one thread while a later `write` runs in another (a
        checkpoint's sync beside the next bytes)."""
    def close(self) -> None: ...


class BlobStore(Protocol):
    """Where upload bytes and their derived artefacts live, addressed by upload ID and never by path.

    An unfinished blob is a list of segments (see `core.model`): a writer that lost its lease may still
    write its own segment, never a byte anybody reads. Blocking methods, called in an executor. How each
    maps onto the local file store and onto an S3 multipart upload (one per tus upload):

    - `create(id, length)`: the first segment. file: an empty file. S3: CreateMultipartUpload (parts sized
      so that `length` fits in 10,000 of them); its UploadId is kept in a small object beside the blob, so
      any process can continue it.
    - `writer(id, offset, segment, start).write(data)`: file: pwrite into the segment's own file, at
      `offset - start`. S3: every segment is a multipart upload of its own (a stale writer's UploadPart can
      only reach its own segment's upload); bytes gather into parts on a grid from the segment's start, and
      every full part (at least 5 MiB: S3 refuses smaller parts with EntityTooSmall, except the last one)
      goes up with UploadPart while the next bytes arrive. Parts below the recorded offset have landed.
    - `writer.sync()`: file: fdatasync. S3: the bytes that do not fill a part yet are stored as small
      objects of the segment, where any process can continue from them (S3 cannot read back the parts of
      an unfinished multipart upload, so they must live outside it until they fill a part).
      `sync(partial=True)` at a checkpoint mid-body: S3 answers how far the landed parts reach.
    - `finalize(id, length, segments, in_place)`: file: the segments' recorded ranges become the published
      file, which no stale writer can open for writing. S3: the last part goes up from the stored tail,
      then CompleteMultipartUpload; with several segments each is completed into an object of its
      recorded range and those are concatenated (as `concat`) into the blob; the helper objects go.
    - `read(id, start, end)` and `open(id)`: only for finished blobs (S3: GetObject with Range).
    - `concat(final_id, parts)`: file: copy_file_range. S3: UploadPartCopy for each partial of at least
      5 MiB (all but the last), streaming (GetObject, UploadPart) for smaller ones, then complete.
    - `delete(id)`: file: unlink the file, its segments and the derived artefacts. S3:
      AbortMultipartUpload if unfinished, DeleteObjects for the blob, the helper objects and every derived
      artefact.
    - `put_derived` / `get_derived`: file: files under a per-upload directory. S3: PutObject/GetObject.
    - `export(id, target)`: file: a hard link (a copy across file systems). S3: GetObject streamed into a
      file beside the target, then linked into place.
    """

    def create(self, upload_id: str, length: int | None) -> None:
        """An empty blob; `length` (None: deferred) lets S3 pick parts large enough for 10,000 of them."""
    def writer(self, upload_id: str, offset: int, segment: str = "", start: int = 0) -> BlobWriter:
        """Write `segment` (which starts at upload offset `start`) from upload offset `offset`; a segment
        other than the first is made by its first writer. OffsetConflict if the blob was published."""
    def direct_append(self, upload_id: str, offset: int, segment: str, start: int,
                      blocks: Sequence[bytes | bytearray]) -> asyncio.Future[int] | None:
        """Unlike the rest, called on the event loop: `blocks` written into `segment` at upload offset
        `offset` and made durable with no executor thread (the file store on Linux: io_uring). The future's
        result is the durable end, as `BlobWriter.sync` says; it fails as a writer would (OffsetConflict
        if the blob was published). None when the store cannot for this append: nothing was done, and the
        caller writes through `writer` in the executor."""
    def finalize(self, upload_id: str, length: int, segments: Segments = FIRST_SEGMENTS,
                 in_place: bool = True) -> None:
        """All bytes are in: segment i's bytes up to the next one's start (the last one's up to `length`)
        become the durable, readable, published blob. `in_place`: the only segment has no writer that may
        still be alive, so it can be published as it is instead of copied. Done again, it changes nothing."""
    def read(self, upload_id: str, start: int, end: int) -> Iterator[bytes]:
        """Bytes [start, end) of a finished blob, in blocks of at most 1 MiB."""
    def download_url(self, upload_id: str, headers: dict[str, str], seconds: float) -> str | None:
        """A URL that serves the finished blob directly for `seconds`, answering with `headers`
        (Content-Type, Content-Disposition): S3, a presigned GET; None where the store has no such URL."""
    def open(self, upload_id: str) -> BinaryIO:
        """A seekable reader of a finished blob (decoders such as Pillow seek around)."""
    def concat(self, final_id: str, parts: list[tuple[str, int]]) -> None:
        """The final's blob becomes the first `length` bytes of each (part id, length), in order."""
    def delete(self, upload_id: str) -> None:
        """The blob, unfinished or not, its segments and every derived artefact; a missing one is no error."""
    def put_derived(self, upload_id: str, name: str, data: bytes) -> None:
        """Store an artefact made from an upload (a thumbnail, a report), replacing any of that name."""
    def get_derived(self, upload_id: str, name: str) -> bytes | None: ...
    def free_space(self) -> int | None:
        """Bytes that can still be stored; None where storage is not bounded by one disk."""
    def health(self) -> str:
        """"ok" if bytes can be stored right now, otherwise why not, in one line (a bucket that went away,
        a data dir that became read-only): for /healthz, so a load balancer stops sending uploads here."""
    def unfinished(self, started_before: float) -> list[str]:
        """IDs of unfinished blobs started before `started_before` (unix time), for the sweeper to delete
        those without a live upload record (a process died while deleting it, a failover lost its record)."""
    def max_blob_size(self) -> int | None:
        """The largest blob the store can hold at all (S3: 5 TiB per object); None: only free space bounds it."""
    def export(self, upload_id: str, target: Path) -> None:
        """Make a finished blob appear as the local file `target` (its directory exists), complete or not at
        all, never replacing a file: FileExistsError when the name is taken."""


# ---- events ------------------------------------------------------------------------------------------

class EventSink(Protocol):
    async def emit(self, kind: str, upload_id: str, owner: str | None, **data: Any) -> str | None:
        """Record one event (kinds in `core.events`); returns its ID in the replayable history, None if it
        was throttled away."""


Entry = tuple[str, dict[str, Any]]  # (event ID, event)


FEED_CLOSED: Entry = ("", {})  # put in a subscriber's queue when the feed drops it


@dataclass(frozen=True)
class ReplayPage:
    """One page of a replay: the caller's events among the history entries it covered."""

    entries: list[Entry]
    last_id: str  # the last history entry the page covered, the caller's or not
    caught_up: bool  # the page reached the end of the history


class EventFeed(Protocol):
    """Events for `GET /events`: a replay of the history after an event ID, then live ones."""

    def subscribe(self) -> asyncio.Queue[Entry]:
        """A queue of live events; FEED_CLOSED ends it (a subscriber too far behind is dropped)."""
    def unsubscribe(self, queue: asyncio.Queue[Entry]) -> None: ...
    def replay(self, after: str, owner: str | None) -> AsyncIterator[ReplayPage]:
        """The history after the event ID `after`, oldest first, a page at a time, keeping only `owner`'s
        events (None: everyone's). It goes a bounded depth: it may stop before a page that caught up."""
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
