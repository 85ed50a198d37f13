"""Upload bytes in an S3 bucket (core.ports.BlobStore): one S3 multipart upload per tus upload.

S3 cannot read back the parts of an unfinished multipart upload and refuses parts under 5 MiB (but the
last), so an upload's bytes live in two places until it finishes:

- parts on a fixed grid: part n holds bytes [(n-1)*P, n*P) of the upload (P = the part size). A part goes
  up as soon as the writer holds P bytes, while the next bytes arrive; every part below the recorded
  offset has landed, so any process can tell from the offset alone which parts exist.
- the "tail": the bytes of the part still filling, stored when a request body ends (as pieces under
  `<id>.tail/<n>/`, see `tails`), where any process continues from them. Tails of parts that landed stay
  until the upload completes: after a Redis failover the recorded offset can go back (the replica had not
  seen the last advances), and the tail of that older offset must still be there.

Segments (core.model): a session that cannot rule out a live earlier writer writes a segment of its own,
and here that is a multipart upload of its own (`<id>.seg/<name>`, its grid from the segment's start), so
a stale writer's UploadPart only ever reaches parts nobody reads. Publishing completes each segment into an
object of its recorded range and concatenates those; the common upload has one segment and none of this.

Objects of an upload, all under `<prefix><id>`: the blob itself (once completed), `<id>.mpu` (the
multipart UploadId and the upload's part size, written at creation, so any process can continue it),
`<id>.tail/...`, `<id>.seg/...` and `<id>.derived/<name>` (thumbnails, reports). Deleting an upload
deletes everything under that prefix.

Every method blocks (boto3) and runs in the core's I/O executor; part uploads run in the store's own
threads so the request that feeds a writer keeps streaming. Failures of S3 reach the core as OSError.
"""

from __future__ import annotations

import contextlib
import functools
import io
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, TypeVar
from urllib.parse import urlsplit

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from ..core import ids
from ..core.model import FIRST_SEGMENTS, Segments
from ..core.ports import OffsetConflict
from .export import copy_into_place
from .ranges import exact_blocks
from .tails import MAX_PIECES, Tail, TailCache, chain, piece_key, pieces_prefix

log = logging.getLogger(__name__)

MiB = 1024 * 1024
MIN_PART = 5 * MiB  # S3 refuses smaller parts (EntityTooSmall), except the last one
MAX_PART = 5 * 1024 * MiB
MAX_PARTS = 10_000
MAX_OBJECT = 5 * 1024 * 1024 * MiB  # 5 TiB
DEFAULT_PART = 8 * MiB
_MISSING = {"404", "NoSuchKey", "NoSuchUpload", "NotFound"}

T = TypeVar("T")


class S3Failure(OSError):
    """S3 refused or could not be reached: the core answers a storage failure (500), never a traceback."""


class BucketUnusable(ValueError):
    """The configured bucket cannot be reached or written: the server does not start."""


def _missing(exc: ClientError) -> bool:
    return str(exc.response.get("Error", {}).get("Code")) in _MISSING


def _as_oserror(fn: Callable[..., T]) -> Callable[..., T]:
    """S3's exceptions as OSError, the only storage failure the core knows."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        try:
            return fn(*args, **kwargs)
        except (ClientError, BotoCoreError) as exc:
            raise S3Failure(f"s3: {exc}") from exc
    return wrapper


@dataclass(frozen=True)
class Multipart:
    """An upload's S3 multipart upload: its UploadId and the part size of its grid (fixed at creation, so that
    every process cuts the same parts)."""

    id: str
    part_size: int


@dataclass(frozen=True)
class S3Location:
    """`s3://BUCKET[/PREFIX]` with the endpoint and region to reach it."""

    bucket: str
    prefix: str = ""
    endpoint: str | None = None
    region: str | None = None

    @classmethod
    def parse(cls, url: str, endpoint: str | None = None, region: str | None = None) -> S3Location:
        parts = urlsplit(url)
        if parts.scheme != "s3" or not parts.netloc or parts.query or parts.fragment:
            raise ValueError(f"--storage must be 'file' or s3://BUCKET[/PREFIX], got {url!r}")
        prefix = parts.path.strip("/")
        return cls(parts.netloc, prefix + "/" if prefix else "", endpoint, region)

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"


def s3_client(location: S3Location, connections: int) -> Any:
    """A thread-safe client; credentials come from boto3's usual chain (environment, profile, instance role)."""
    config = Config(
        max_pool_connections=connections, connect_timeout=5, read_timeout=60,
        retries={"mode": "standard", "max_attempts": 5},
        # a custom endpoint (MinIO, a test server) is usually not reachable under bucket subdomains
        s3={"addressing_style": "path"} if location.endpoint else None,
    )
    return boto3.session.Session().client("s3", endpoint_url=location.endpoint, region_name=location.region,
                                          config=config)


class S3Store:
    """Uploads in one bucket under a prefix. IDs reaching here were validated by `core.ids` (32 hex digits,
    so `<prefix><id>` names exactly one upload's objects)."""

    def __init__(self, location: S3Location, part_size: int = DEFAULT_PART, part_threads: int = 16) -> None:
        if not MIN_PART <= part_size <= MAX_PART:
            raise ValueError(f"--s3-part-size must be between 5MiB and 5GiB, got {part_size}")
        self.location = location
        self.bucket = location.bucket
        self.part_size = part_size
        self.s3 = s3_client(location, connections=part_threads + 16)
        # part uploads run here, one per writer at a time, while the writer takes the next bytes
        self.parts = ThreadPoolExecutor(max_workers=part_threads, thread_name_prefix="tuskit-s3-part")
        self._multiparts: OrderedDict[str, Multipart] = OrderedDict()  # object key -> its multipart upload
        self.tails = TailCache()
        self._ids_lock = threading.Lock()

    # ---- keys --------------------------------------------------------------------------------------

    def key(self, upload_id: str) -> str:
        """The object key of an upload: its finished blob, and the multipart upload of its first segment."""
        return self.location.prefix + upload_id

    def segment_key(self, upload_id: str, segment: str) -> str:
        """The multipart upload of one segment (core.model): each later segment has one of its own, so a
        writer that lost its lease can only ever reach its own segment's parts."""
        return self.key(upload_id) + (f".seg/{segment}" if segment else "")

    def _derived_key(self, upload_id: str, name: str) -> str:
        return f"{self.key(upload_id)}.derived/{name}"

    # ---- start-up ----------------------------------------------------------------------------------

    def check(self) -> None:
        """Write and delete a probe object: a bucket we cannot use stops the server before it takes uploads."""
        probe = f"{self.location.prefix}.tuskit-probe-{time.time_ns()}"
        try:
            self.s3.put_object(Bucket=self.bucket, Key=probe, Body=b"")
            self.s3.delete_object(Bucket=self.bucket, Key=probe)
        except (ClientError, BotoCoreError) as exc:
            raise BucketUnusable(f"cannot write to {self.location}: {exc}") from None

    # ---- multipart uploads, by object key ("base") -------------------------------------------------

    def part_size_for(self, length: int | None) -> int:
        """The configured part size, or larger when `length` would not fit into S3's 10,000 parts with it (a
        deferred length gets the configured size: such an upload can grow to 10,000 parts)."""
        needed = -(-length // MAX_PARTS) if length else 0
        return max(self.part_size, -(-needed // MiB) * MiB)

    def _start(self, base: str, part_size: int) -> Multipart:
        """CreateMultipartUpload, and its UploadId and part size where any process finds them (`<base>.mpu`)."""
        mpu = self.s3.create_multipart_upload(Bucket=self.bucket, Key=base)["UploadId"]
        self.s3.put_object(Bucket=self.bucket, Key=base + ".mpu", Body=f"{mpu}\n{part_size}".encode())
        multipart = Multipart(mpu, part_size)
        self._remember(base, multipart)
        return multipart

    def _remember(self, base: str, multipart: Multipart) -> None:
        with self._ids_lock:
            self._multiparts[base] = multipart
            self._multiparts.move_to_end(base)
            while len(self._multiparts) > 10_000:
                self._multiparts.popitem(last=False)

    def multipart(self, base: str) -> Multipart | None:
        """The multipart upload of an object key (None once completed or deleted); cached, as it never
        changes."""
        with self._ids_lock:
            known = self._multiparts.get(base)
        if known is not None:
            return known
        try:
            text = self.s3.get_object(Bucket=self.bucket, Key=base + ".mpu")["Body"].read().decode()
        except ClientError as exc:
            if _missing(exc):
                return None
            raise
        mpu, _, part_size = text.partition("\n")
        multipart = Multipart(mpu, int(part_size))
        self._remember(base, multipart)
        return multipart

    def _forget(self, base: str) -> None:
        with self._ids_lock:
            self._multiparts.pop(base, None)
        self.tails.forget(base)

    @_as_oserror
    def create(self, upload_id: str, length: int | None = None) -> None:
        self._start(self.key(upload_id), self.part_size_for(length))

    def direct_append(self, upload_id: str, offset: int, segment: str, start: int,
                      blocks: Sequence[bytes | bytearray]) -> None:
        """Every request to S3 goes through the executor."""
        return None

    @_as_oserror
    def writer(self, upload_id: str, offset: int, segment: str = "", start: int = 0) -> S3Writer:
        """A later segment's multipart upload is started by its first writer, with the upload's part size."""
        base = self.segment_key(upload_id, segment)
        multipart = self.multipart(base)
        if multipart is None:
            first = self.multipart(self.key(upload_id))
            if first is None:
                if self._size(self.key(upload_id)) is not None:
                    raise OffsetConflict("the upload was finished by another request")
                raise S3Failure(f"upload {upload_id} has no multipart upload in {self.location}")
            if not segment:
                raise S3Failure(f"upload {upload_id} has no multipart upload in {self.location}")
            multipart = self._start(base, first.part_size)
        return S3Writer(self, base, multipart, offset, start)

    def upload_part(self, base: str, mpu: str, number: int, data: bytes) -> str:
        return str(self.s3.upload_part(Bucket=self.bucket, Key=base, UploadId=mpu, PartNumber=number,
                                       Body=data)["ETag"])

    def get_tail(self, base: str, offset: int, part_size: int, cached: bool = True) -> Tail:
        """The tail a multipart upload has at a recorded `offset` (from its own start): bytes of its unfilled
        part up to there. `cached` False: from the bucket (a spilled tail is in the bucket only)."""
        full, rest = divmod(offset, part_size)
        if rest == 0:
            return Tail(b"", 0)
        remembered = self.tails.take(base, offset) if cached else None
        if remembered is not None:
            return remembered
        prefix = pieces_prefix(base, full + 1)
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        listed = {int(o["Key"][len(prefix):]): o["Size"] for page in pages for o in page.get("Contents", [])}
        pieces = chain(listed, rest)
        if pieces is None:
            raise S3Failure(f"{base}: its stored tail does not reach the recorded offset {offset}")
        data = b"".join(
            self.s3.get_object(Bucket=self.bucket, Key=piece_key(base, full + 1, start),
                               Range=f"bytes=0-{length - 1}")["Body"].read()
            for start, length in pieces)
        return Tail(data, len(pieces))

    def put_piece(self, base: str, part: int, start: int, data: bytes) -> None:
        self.s3.put_object(Bucket=self.bucket, Key=piece_key(base, part, start), Body=data)

    @_as_oserror
    def finalize(self, upload_id: str, length: int, segments: Segments = FIRST_SEGMENTS,
                 in_place: bool = True) -> None:
        """The last part goes up from the tail, then CompleteMultipartUpload. With several segments, each is
        completed into an object of its recorded range and those are concatenated into the blob. A repeat (a
        process died between completing and publishing, or another one completed it) finds the object
        there. `in_place` does not matter here: a completed object cannot be written by anybody."""
        base = self.key(upload_id)
        if segments == FIRST_SEGMENTS:
            self._finish(base, length)
            return
        if self.multipart(base) is None and not self._list(base + ".seg/") and self._size(base) == length:
            return  # assembled before
        ranges = []
        for i, (name, start) in enumerate(segments):
            end = segments[i + 1][1] if i + 1 < len(segments) else length
            self._finish(self.segment_key(upload_id, name), end - start)
            ranges.append((self.segment_key(upload_id, name), end - start))
        self._abort_all(base, exact=True)  # the first segment's, when a later one replaced it from offset 0
        self._join(base, ranges, self._start(base, self.part_size_for(length)))
        self._delete_keys(self._list(base + ".seg/"))

    def _finish(self, base: str, length: int) -> None:
        """Complete one multipart upload into an object of `length` bytes, unless that was done before."""
        multipart = self.multipart(base)
        try:
            if multipart is None:
                raise S3Failure(f"{base} has no multipart upload")
            self._complete(base, multipart, length)
        except (ClientError, S3Failure):
            if self._size(base) != length:
                raise
        self._drop_helpers(base)

    def _complete(self, base: str, multipart: Multipart, length: int) -> None:
        """Complete the grid's parts into an object of `length` bytes."""
        full, rest = divmod(length, multipart.part_size)
        if rest or length == 0:  # S3 needs at least one part, even for an empty upload
            last = self.get_tail(base, length, multipart.part_size).data
            self.upload_part(base, multipart.id, full + 1, last)
        count = full + (1 if rest or length == 0 else 0)
        etags = self._etags(base, multipart, count, length)
        self.s3.complete_multipart_upload(
            Bucket=self.bucket, Key=base, UploadId=multipart.id,
            MultipartUpload={"Parts": [{"PartNumber": n, "ETag": etags[n]} for n in range(1, count + 1)]})

    def _etags(self, base: str, multipart: Multipart, count: int, length: int) -> dict[int, str]:
        """ETags of parts 1..count, checked against the sizes the grid says they have (parts past them are
        leftovers of a crash past the recorded offset: completing without them discards them)."""
        etags: dict[int, str] = {}
        pages = self.s3.get_paginator("list_parts").paginate(Bucket=self.bucket, Key=base, UploadId=multipart.id)
        for page in pages:
            for part in page.get("Parts", []):
                number = part["PartNumber"]
                if number > count:
                    continue
                expected = min(multipart.part_size, length - (number - 1) * multipart.part_size)
                if part["Size"] != expected:
                    raise S3Failure(f"{base}: part {number} has {part['Size']} bytes, not {expected}")
                etags[number] = part["ETag"]
        missing = [n for n in range(1, count + 1) if n not in etags]
        if missing:
            raise S3Failure(f"{base}: parts {missing[:5]} are missing from its multipart upload")
        return etags

    def _size(self, key: str) -> int | None:
        """An object's size; None when there is no such object."""
        try:
            return int(self.s3.head_object(Bucket=self.bucket, Key=key)["ContentLength"])
        except ClientError as exc:
            if _missing(exc):
                return None
            raise

    def _drop_helpers(self, base: str) -> None:
        """The UploadId and the tails of a completed multipart upload."""
        self._forget(base)
        self._delete_keys([base + ".mpu", *self._list(base + ".tail/")])

    # ---- concatenation -----------------------------------------------------------------------------

    @_as_oserror
    def concat(self, final_id: str, parts: list[tuple[str, int]]) -> None:
        """The final's object is complete afterwards (its finalize finds it so)."""
        base = self.key(final_id)
        multipart = self.multipart(base)
        if multipart is None:
            raise S3Failure(f"final upload {final_id} has no multipart upload")
        self._join(base, [(self.key(part_id), length) for part_id, length in parts], multipart)

    def _join(self, base: str, sources: list[tuple[str, int]], multipart: Multipart) -> None:
        """Complete `multipart` as the first `length` bytes of each (object key, length), in order: copied
        inside S3 (UploadPartCopy) when every source but the last makes a valid part, else streamed through
        a writer."""
        pieces = _copy_plan(sources)
        if pieces is None:
            writer = S3Writer(self, base, multipart, 0, 0)
            try:
                for key, length in sources:
                    for block in self._read(key, 0, length):
                        writer.write(block)
                writer.sync()
            finally:
                writer.close()
            self._complete(base, multipart, sum(length for _, length in sources))
            self._drop_helpers(base)
            return
        etags = []
        for number, (key, start, end) in enumerate(pieces, 1):
            copied = self.s3.upload_part_copy(
                Bucket=self.bucket, Key=base, UploadId=multipart.id, PartNumber=number,
                CopySource={"Bucket": self.bucket, "Key": key}, CopySourceRange=f"bytes={start}-{end - 1}")
            etags.append({"PartNumber": number, "ETag": copied["CopyPartResult"]["ETag"]})
        if not etags:  # every source is empty
            etags.append({"PartNumber": 1, "ETag": self.upload_part(base, multipart.id, 1, b"")})
        self.s3.complete_multipart_upload(Bucket=self.bucket, Key=base, UploadId=multipart.id,
                                          MultipartUpload={"Parts": etags})
        self._drop_helpers(base)

    # ---- finished blobs ----------------------------------------------------------------------------

    def read(self, upload_id: str, start: int, end: int) -> Iterator[bytes]:
        """Bytes [start, end) with one ranged GET, in blocks of at most 1 MiB."""
        return self._read(self.key(upload_id), start, end)

    def _read(self, key: str, start: int, end: int) -> Iterator[bytes]:
        if end <= start:
            return
        try:
            body = self.s3.get_object(Bucket=self.bucket, Key=key, Range=f"bytes={start}-{end - 1}")["Body"]
            with contextlib.closing(body):
                yield from exact_blocks(body.read, end - start, lambda: S3Failure(f"{key} is shorter than expected"))
        except (ClientError, BotoCoreError) as exc:  # a generator: the decorator would see none of these
            raise S3Failure(f"s3: {exc}") from exc

    @_as_oserror
    def open(self, upload_id: str) -> BinaryIO:
        size = self.s3.head_object(Bucket=self.bucket, Key=self.key(upload_id))["ContentLength"]
        return io.BufferedReader(_RangedReader(self, upload_id, size), buffer_size=256 * 1024)  # type: ignore[return-value]

    # ---- deletion ----------------------------------------------------------------------------------

    @_as_oserror
    def delete(self, upload_id: str) -> None:
        """Abort the multipart uploads (every one S3 knows of for the upload and its segments) and delete
        every object of the upload: nothing is left behind."""
        base = self.key(upload_id)
        self._abort_all(base, exact=False)
        self._delete_keys(self._list(base))

    def _abort_all(self, base: str, exact: bool) -> None:
        """Abort the multipart uploads on `base` (`exact`), or on it and its segments' keys."""
        listed = self.s3.get_paginator("list_multipart_uploads").paginate(Bucket=self.bucket, Prefix=base)
        for page in listed:
            for upload in page.get("Uploads", []):
                key = upload["Key"]
                if key == base or (not exact and key.startswith(base + ".")):
                    with contextlib.suppress(ClientError):  # gone meanwhile
                        self.s3.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload["UploadId"])
                    self._forget(key)
        self._forget(base)

    def _list(self, prefix: str) -> list[str]:
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        return [obj["Key"] for page in pages for obj in page.get("Contents", [])]

    def _delete_keys(self, keys: list[str]) -> None:
        for i in range(0, len(keys), 1000):
            batch = keys[i:i + 1000]
            result = self.s3.delete_objects(Bucket=self.bucket,
                                            Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True})
            if result.get("Errors"):
                raise S3Failure(f"could not delete {result['Errors'][0]}")

    @_as_oserror
    def unfinished(self, started_before: float) -> list[str]:
        """IDs of uploads under our prefix with a multipart upload (of any segment) started before
        `started_before` (unix time): the sweeper aborts those without a live upload record."""
        found: dict[str, None] = {}
        prefix = self.location.prefix
        pages = self.s3.get_paginator("list_multipart_uploads").paginate(Bucket=self.bucket, Prefix=prefix)
        for page in pages:
            for upload in page.get("Uploads", []):
                name = upload["Key"][len(prefix):]
                upload_id, rest = name[:32], name[32:]
                if (ids.is_valid(upload_id) and (not rest or rest.startswith(".seg/"))
                        and upload["Initiated"].timestamp() < started_before):
                    found[upload_id] = None
        return list(found)

    # ---- derived artefacts -------------------------------------------------------------------------

    @_as_oserror
    def put_derived(self, upload_id: str, name: str, data: bytes) -> None:
        """One PUT: S3 never shows half an object."""
        self.s3.put_object(Bucket=self.bucket, Key=self._derived_key(upload_id, name), Body=data)

    @_as_oserror
    def get_derived(self, upload_id: str, name: str) -> bytes | None:
        try:
            return bytes(self.s3.get_object(Bucket=self.bucket, Key=self._derived_key(upload_id, name))["Body"].read())
        except ClientError as exc:
            if _missing(exc):
                return None
            raise

    @_as_oserror
    def export(self, upload_id: str, target: Path) -> None:
        """Streamed from one GET into a file beside `target`, then linked into place."""
        size = self.s3.head_object(Bucket=self.bucket, Key=self.key(upload_id))["ContentLength"]
        copy_into_place(self.read(upload_id, 0, size), target)

    def free_space(self) -> None:
        return None

    def download_url(self, upload_id: str, headers: dict[str, str], seconds: float) -> str:
        """Signed here (no request to S3): a GET of it within `seconds` is S3's answer, Range included."""
        params = {"Bucket": self.bucket, "Key": self.key(upload_id)}
        for name, value in headers.items():
            params["Response" + name.replace("-", "")] = value  # ResponseContentType, ...
        return str(self.s3.generate_presigned_url("get_object", Params=params, ExpiresIn=int(seconds)))

    def health(self) -> str:
        try:
            self.s3.head_bucket(Bucket=self.bucket)
        except (ClientError, BotoCoreError) as exc:
            return f"{self.location} unavailable: {exc}"
        return "ok"

    def max_blob_size(self) -> int:
        return MAX_OBJECT


def _copy_plan(sources: list[tuple[str, int]]) -> list[tuple[str, int, int]] | None:
    """(object key, start, end) ranges to copy as parts, in order; None when a source other than the last is
    under S3's minimum part size (then the bytes are streamed instead)."""
    plan: list[tuple[str, int, int]] = []
    sized = [(key, length) for key, length in sources if length > 0]
    for i, (key, length) in enumerate(sized):
        if length < MIN_PART and i < len(sized) - 1:
            return None
        count = max(1, -(-length // MAX_PART))  # S3 copies at most 5 GiB into one part
        step = -(-length // count)
        plan += [(key, start, min(start + step, length)) for start in range(0, length, step)]
    return plan if len(plan) <= MAX_PARTS else None


class S3Writer:
    """Appends to one multipart upload (an upload's segment) from a recorded offset (core.ports.BlobWriter).

    Bytes gather in `tail`; each full part goes up in the store's part threads while the next bytes arrive,
    at most one part in flight per writer, so a writer holds at most about two parts of memory, which count
    against the body budget (`retained`). A body that must wait for memory spills its tail: stored as a
    piece, dropped, and read back from the bucket when the body goes on. A part
    number stored before a crash past the recorded offset is simply uploaded again (by this segment's
    writers only: another segment is another multipart upload).
    """

    def __init__(self, store: S3Store, base: str, multipart: Multipart, offset: int, start: int) -> None:
        self.store = store
        self.base = base
        self.mpu = multipart.id
        self.part_size = multipart.part_size
        self.start = start  # the segment's upload offset: positions below are the segment's own
        self.position = offset - start
        full = self.position // self.part_size
        self.part = full + 1  # the part `tail` will become
        self.landed = full * self.part_size  # bytes in landed parts: the recorded offset says these exist
        stored = store.get_tail(base, self.position, self.part_size)
        self.tail = bytearray(stored.data)
        self.saved = len(self.tail)  # bytes at the start of `tail` already in the bucket, in `pieces` objects
        self.pieces = stored.pieces
        self.synced = -1  # the position of the last complete sync
        self.in_flight: Future[int] | None = None  # a part upload; its result is where its bytes end
        self.spilled = False  # the tail is in the bucket only

    @property
    def retained(self) -> int:
        in_flight = self.in_flight
        return len(self.tail) + (self.part_size if in_flight is not None and not in_flight.done() else 0)

    @_as_oserror
    def spill(self) -> None:
        """The whole tail goes up as the chain's first piece: reading it back is then one GET, not one per
        body that added to it."""
        if len(self.tail) > self.saved:
            self.saved = self.pieces = 0
        self.sync()
        self.tail = bytearray()
        self.spilled = True

    @_as_oserror
    def write(self, data: bytes | memoryview) -> None:
        if self.spilled:
            stored = self.store.get_tail(self.base, self.position, self.part_size, cached=False)
            self.tail, self.saved, self.pieces = bytearray(stored.data), len(stored.data), stored.pieces
            self.spilled = False
        self.tail += data
        self.position += len(data)
        size = self.part_size
        while len(self.tail) >= size:
            part = bytes(self.tail[:size])
            del self.tail[:size]
            self._wait()
            self.in_flight = self.store.parts.submit(self._upload, self.part, part)
            self.in_flight.add_done_callback(self._landed)
            self.part += 1
            self.saved = self.pieces = 0

    def _upload(self, number: int, data: bytes) -> int:
        self.store.upload_part(self.base, self.mpu, number, data)
        return number * self.part_size

    def _landed(self, done: Future[int]) -> None:
        """A part upload's end: `landed` moves on as parts land, for a checkpoint's sync in another thread."""
        if not done.cancelled() and done.exception() is None:
            self.landed = max(self.landed, done.result())

    def _wait(self) -> None:
        """The part in flight has landed (or its failure is raised here)."""
        if self.in_flight is not None:
            in_flight, self.in_flight = self.in_flight, None
            self.landed = max(self.landed, in_flight.result())

    @_as_oserror
    def sync(self, partial: bool = False) -> int:
        """`partial` (a checkpoint mid-body, which may run beside the next write): the end of the parts that
        landed once the part in flight has, without storing the tail (the offset trails the bytes by less
        than a part). Otherwise everything: the part in flight lands, and the tail is stored where any
        process continues from it."""
        if partial:  # may run beside a write in another thread: it only reads, and waits as a write would
            in_flight = self.in_flight
            landed = in_flight.result() if in_flight is not None else 0
            return self.start + max(self.landed, landed)
        self._wait()
        if len(self.tail) > self.saved:
            if self.pieces >= MAX_PIECES:  # the whole tail as the chain's first piece, which skips the rest
                self.saved = self.pieces = 0
            self.store.put_piece(self.base, self.part, self.saved, bytes(self.tail[self.saved:]))
            self.saved = len(self.tail)
            self.pieces += 1
        self.synced = self.position
        return self.start + self.position

    def close(self) -> None:
        """Never leaves a part upload running after the writer's lease may have gone to another writer. A tail
        that is all in the bucket is remembered for this segment's next writer in this process."""
        with contextlib.suppress(Exception):
            self._wait()
        if self.synced == self.position and not self.spilled:
            self.store.tails.put(self.base, self.position, Tail(bytes(self.tail), self.pieces))
        self.tail = bytearray()


class _RangedReader(io.RawIOBase):
    """A finished object as a seekable raw stream: each read is a ranged GET (decoders seek around)."""

    def __init__(self, store: S3Store, upload_id: str, size: int) -> None:
        self.store = store
        self.upload_id = upload_id
        self.size = size
        self.pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.pos, io.SEEK_END: self.size}[whence]
        self.pos = max(0, base + offset)
        return self.pos

    def tell(self) -> int:
        return self.pos

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        end = min(self.pos + len(view), self.size)
        got = 0
        for block in self.store.read(self.upload_id, self.pos, end):
            view[got:got + len(block)] = block
            got += len(block)
        self.pos += got
        return got
