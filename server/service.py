"""The tus state machine: create, append, complete and verify, concatenate, terminate, expire.

This is the only module that knows tus semantics. It takes its collaborators (state, storage, locks,
events) as arguments and knows nothing of HTTP, so tests can drive it with a real Redis and a temp dir.
Disk and hashing run in an executor; the event loop only moves buffers around.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import re
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from dataclasses import dataclass, replace
from typing import Any

from redis.exceptions import RedisError

from tuskit import errors, protocol
from tuskit.checksums import hash_file, new_hasher
from tuskit.server import events as ev
from tuskit.server import ids
from tuskit.server.digests import RunningDigests
from tuskit.server.events import EventBus
from tuskit.server.locks import Lease, Locker
from tuskit.server.state import ACTIVE, DONE, EXPIRED, FAILED, TERMINATED, OffsetConflict, StateStore, Upload
from tuskit.server.storage import BlobStore, BlobWriter

log = logging.getLogger(__name__)

_SHA256_HEX = re.compile(r"[0-9a-fA-F]{64}")
_GONE_REASONS = {
    TERMINATED: "upload was terminated",
    EXPIRED: "upload expired before it was finished",
}


@dataclass(frozen=True)
class ServiceConfig:
    base_path: str = "/files/"
    max_size: int | None = None
    expire_after: float | None = 24 * 3600
    flush_bytes: int = 1024 * 1024  # bytes buffered before one positional write + hash update
    checkpoint_bytes: int = 8 * 1024 * 1024  # offset recorded in Redis at least this often during a PATCH
    # --accept: given the first bytes of an upload, a reason to refuse it (None: accepted)
    type_gate: Callable[[bytes], str | None] | None = None
    gate_bytes: int = 4096  # how many first bytes the gate wants


def declared_sha256(metadata: dict[str, bytes | None]) -> str | None:
    """The whole-file digest a client declared in Upload-Metadata, validated (400 if malformed)."""
    if "sha256" not in metadata:
        return None
    value = protocol.metadata_text(metadata, "sha256")
    if value is None or not _SHA256_HEX.fullmatch(value):
        raise errors.INVALID_METADATA("metadata sha256 must be 64 hexadecimal characters")
    return value.lower()


def as_tus_error(exc: BaseException) -> errors.TusError:
    """Any failure as the response a client can act on: a Redis outage is 503 + Retry-After, not a trace."""
    if isinstance(exc, errors.TusError):
        return exc
    if isinstance(exc, RedisError):
        log.warning("redis unavailable: %s", exc)
        return errors.UNAVAILABLE("upload state store (redis) is unavailable; retry later")
    if isinstance(exc, OSError):
        return _storage_error(exc)
    log.error("unexpected failure", exc_info=exc)
    return errors.INTERNAL()


def _storage_error(exc: OSError) -> errors.TusError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return errors.INSUFFICIENT_STORAGE()
    log.error("storage failure: %s", exc)
    return errors.INTERNAL("storage failure")


class UploadService:
    def __init__(self, state: StateStore, store: BlobStore, locker: Locker, events: EventBus,
                 executor: Executor, config: ServiceConfig) -> None:
        self.state = state
        self.store = store
        self.locker = locker
        self.events = events
        self.executor = executor
        self.config = config
        self.digests = RunningDigests()
        self.on_published: list[Callable[[Upload], Awaitable[None]]] = []
        self._background: set[asyncio.Task[Any]] = set()

    async def _io(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    def _expiry(self) -> float | None:
        return time.time() + self.config.expire_after if self.config.expire_after else None

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def drain(self) -> None:
        """Wait for background work (merges, post-processing) — used at shutdown."""
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)

    # ---- lookups ---------------------------------------------------------------------------------

    async def get(self, upload_id: str, owner: str) -> Upload:
        """The upload if it exists, is visible to `owner` and is not gone (404 / 410 otherwise)."""
        ids.check(upload_id)
        return self._visible(await self.state.get(upload_id), owner)

    async def lock_and_get(self, upload_id: str, owner: str) -> tuple[Lease, Upload]:
        """The lease and `get` under it, in one Redis round trip instead of two (a PATCH's first step)."""
        ids.check(upload_id)
        lease = await self.locker.acquire(upload_id, read=self.state.key(upload_id))
        try:
            return lease, self._visible(self.state.parse(upload_id, lease.read), owner)
        except BaseException:
            await lease.release()
            raise

    def _visible(self, upload: Upload | None, owner: str) -> Upload:
        if upload is None or upload.owner != owner:
            raise errors.NOT_FOUND()
        if upload.status == FAILED:
            raise errors.GONE(f"upload failed: {upload.reason}")
        if upload.status in _GONE_REASONS:
            raise errors.GONE(upload.reason or _GONE_REASONS[upload.status])
        if upload.status == ACTIVE and upload.expires is not None and upload.expires <= time.time():
            raise errors.GONE(_GONE_REASONS[EXPIRED])
        return upload

    # ---- creation --------------------------------------------------------------------------------

    async def create(self, *, length: int | None, metadata: dict[str, bytes | None],
                     concat: protocol.Concat | None, owner: str) -> Upload:
        declared_sha256(metadata)
        if length is not None and self.config.max_size is not None and length > self.config.max_size:
            raise errors.TOO_LARGE(f"Upload-Length {length} exceeds Tus-Max-Size {self.config.max_size}")
        upload = Upload(
            id=ids.new_id(), offset=0, length=length, metadata=protocol.encode_metadata(metadata),
            concat=concat.kind if concat else "", parts=(), owner=owner, created=time.time(),
            expires=self._expiry(), status=ACTIVE, sha256="", reason="", finished=None,
        )
        if concat is not None and concat.kind == "final":
            upload = await self._prepare_final(upload, concat)
        try:
            await self._io(self.store.create, upload.id)
        except OSError as exc:
            raise _storage_error(exc) from exc
        await self.state.create(upload)
        await self.events.emit(ev.CREATED, upload.id, owner, length=upload.length, concat=upload.concat)
        if upload.concat == "final":
            await self._try_merge(upload.id)
            upload = await self.state.get(upload.id) or upload
        elif upload.length == 0:
            upload = await self._complete(upload, hasher=None)
        return upload

    async def _prepare_final(self, upload: Upload, concat: protocol.Concat) -> Upload:
        part_ids = [ids.id_from_url(url, self.config.base_path) for url in concat.urls]
        parts = await self.state.get_many(part_ids)
        total: int | None = 0
        for part_id, part in zip(part_ids, parts, strict=True):
            if part is None or part.owner != upload.owner or part.status not in (ACTIVE, DONE):
                raise errors.INVALID_CONCAT(f"partial upload {part_id} not found")
            if part.concat != "partial":
                raise errors.INVALID_CONCAT(f"upload {part_id} was not created with Upload-Concat: partial")
            total = None if total is None or part.length is None else total + part.length
        if total is not None and self.config.max_size is not None and total > self.config.max_size:
            raise errors.TOO_LARGE(f"concatenated length {total} exceeds Tus-Max-Size {self.config.max_size}")
        # a final waits for its partials as long as they live: it ends with them (_retire), not by a clock
        return replace(upload, parts=tuple(part_ids), length=total, expires=None)

    # ---- appending -------------------------------------------------------------------------------

    async def lock(self, upload_id: str) -> Lease:
        ids.check(upload_id)
        return await self.locker.acquire(upload_id)

    async def open_append(self, upload: Upload, lease: Lease, offset: int, *, new_length: int | None,
                          body_length: int | None, checksum: tuple[str, bytes] | None,
                          checksum_in_trailer: bool) -> AppendSession:
        """Check a PATCH against the state (under the lease) and return a session that takes its body."""
        if upload.concat == "final":
            raise errors.MODIFY_FINAL()
        if new_length is not None:
            upload = await self._fix_length(upload, new_length)
        if offset != upload.offset:
            raise errors.MISMATCHED_OFFSET(
                f"Upload-Offset {offset} does not match the upload's offset {upload.offset}")
        limit = (upload.length if upload.length is not None else self.config.max_size)
        room = None if limit is None else limit - offset
        if body_length is not None and room is not None and body_length > room:
            raise errors.LENGTH_EXCEEDED(f"body of {body_length} bytes goes past Upload-Length by {body_length - room}")
        return AppendSession(self, upload, lease, room, checksum, checksum_in_trailer)

    async def _fix_length(self, upload: Upload, length: int) -> Upload:
        if upload.length is not None:
            if length != upload.length:
                raise errors.INVALID_LENGTH(f"Upload-Length is already {upload.length}, got {length}")
            return upload
        if length < upload.offset:
            raise errors.INVALID_LENGTH(f"Upload-Length {length} is below the current offset {upload.offset}")
        if self.config.max_size is not None and length > self.config.max_size:
            raise errors.TOO_LARGE(f"Upload-Length {length} exceeds Tus-Max-Size {self.config.max_size}")
        if not await self.state.set_length(upload.id, length):
            raise errors.INVALID_LENGTH("Upload-Length was already set")
        return replace(upload, length=length)

    async def _complete(self, upload: Upload, hasher: Any | None) -> Upload:
        """All bytes are in: make them durable, verify the declared sha256, publish or fail."""
        assert upload.length is not None
        try:
            await self._io(self.store.finalize, upload.id, upload.length)
            if hasher is None:  # this process did not see every byte: rebuild once from storage
                hasher = await self._io(hash_file, self.store.path(upload.id), "sha256", upload.length)
        except OSError as exc:
            raise _storage_error(exc) from exc
        actual = hasher.hexdigest()
        self.digests.forget(upload.id)
        declared = declared_sha256(protocol.parse_metadata(upload.metadata))
        await self.events.emit(ev.FINISHED, upload.id, upload.owner, size=upload.length)
        if declared is not None and declared != actual:
            reason = f"declared sha256 {declared} but received bytes hash to {actual}"
            if await self.state.settle(upload.id, FAILED, sha256=actual, reason=reason, offset=upload.length):
                await self._io(self.store.delete, upload.id)
                await self.events.emit(ev.VERIFICATION_FAILED, upload.id, upload.owner, reason=reason)
                log.warning("upload %s failed verification: %s", upload.id, reason)
            raise errors.CHECKSUM_MISMATCH(f"file checksum mismatch: {reason}")
        if await self.state.settle(upload.id, DONE, sha256=actual, offset=upload.length):
            await self.events.emit(ev.VERIFIED, upload.id, upload.owner, sha256=actual, declared=declared is not None)
            self._published(replace(upload, status=DONE, sha256=actual, offset=upload.length))
        return replace(upload, status=DONE, sha256=actual, offset=upload.length, expires=None)

    def _published(self, upload: Upload) -> None:
        for hook in self.on_published:
            self._spawn(hook(upload))
        if upload.concat == "partial":
            self._spawn(self._merge_finals_of(upload.id))

    async def stream(self, upload_id: str, start: int, end: int, send: Callable[[bytes], Awaitable[None]]) -> None:
        """Send bytes [start, end) of a stored upload block by block, reading each block in the executor."""
        blocks = self.store.read(upload_id, start, end)
        while (block := await self._io(next, blocks, None)) is not None:
            await send(block)

    # ---- concatenation ---------------------------------------------------------------------------

    async def _merge_finals_of(self, partial_id: str) -> None:
        await self._merge_finals(await self.state.finals_of(partial_id))

    async def _merge_finals(self, final_ids: list[str]) -> None:
        for final_id in final_ids:
            try:
                await self._try_merge(final_id)
            except errors.TusError as exc:
                log.info("final %s not merged yet: %s", final_id, exc.message)

    async def _try_merge(self, final_id: str) -> None:
        """Merge a final upload once all its partials are done; any process may do it, the lease picks one."""
        lease = await self.locker.acquire(final_id)
        try:
            await self._merge_held(final_id)
        finally:
            await lease.release()

    async def _merge_held(self, final_id: str) -> Upload | None:
        """Under the final's lease: merge and verify it if every partial is done (None while some are not)."""
        final = await self.state.get(final_id)
        if final is None or final.status != ACTIVE:
            return None
        parts = await self.state.get_many(list(final.parts))
        gone = [part_id for part_id, p in zip(final.parts, parts, strict=True)
                if p is None or p.status not in (ACTIVE, DONE)]
        if gone:  # it can never complete: say so instead of waiting until it expires
            reason = f"partial upload {gone[0]} is gone, so this final upload cannot be completed"
            await self.state.bury(final_id, TERMINATED, reason)
            await self._io(self.store.delete, final_id)
            await self.events.emit(ev.TERMINATED, final_id, final.owner, reason=reason)
            raise errors.GONE(reason)
        if any(p is None or p.status != DONE or p.length is None for p in parts):
            return None
        lengths = [(p.id, p.length) for p in parts if p is not None and p.length is not None]
        total = sum(n for _, n in lengths)
        if final.length is None:
            await self.state.set_length(final_id, total)
        try:
            await self._io(self.store.concat, final_id, lengths)
        except OSError as exc:
            raise _storage_error(exc) from exc
        return await self._complete(replace(final, length=total, offset=total), hasher=None)

    async def settle_pending(self, upload: Upload) -> Upload:
        """Under the upload's lease: finish an upload whose bytes are all in but that was never published.

        That happens when a process died between recording the last offset and publishing, or when a
        final's partials finished while no process could merge it. Clients that see offset == length stop
        sending, so a HEAD must be able to finish the job.
        """
        if upload.status != ACTIVE:
            return upload
        if upload.concat == "final":
            return await self._merge_held(upload.id) or upload
        if upload.complete:
            return await self._complete(upload, self.digests.take(upload.id, upload.offset))
        return upload

    # ---- termination and expiry ------------------------------------------------------------------

    async def terminate(self, upload: Upload) -> None:
        await self._retire(upload, TERMINATED, ev.TERMINATED)

    async def _retire(self, upload: Upload, status: str, event: str) -> None:
        """Delete an upload's bytes and leave a tombstone; finals waiting for it as a partial end too."""
        finals = await self.state.finals_of(upload.id) if upload.concat == "partial" else []
        await self._io(self.store.delete, upload.id)
        await self.state.bury(upload.id, status, _GONE_REASONS[status])
        self.digests.forget(upload.id)
        await self.events.emit(event, upload.id, upload.owner)
        if finals:  # they wait for this partial in vain
            self._spawn(self._merge_finals(finals))

    async def sweep(self, now: float | None = None) -> int:
        """Delete unfinished uploads whose expiry passed; returns how many went."""
        now = time.time() if now is None else now
        swept = 0
        for upload_id in await self.state.expired(now):
            try:
                lease = await self.locker.acquire(upload_id)
            except errors.TusError:
                continue  # someone is writing it right now, so it is not idle
            try:
                upload = await self.state.get(upload_id)
                if upload is None or upload.status != ACTIVE or upload.expires is None or upload.expires > now:
                    continue
                await self._retire(upload, EXPIRED, ev.EXPIRED)
                swept += 1
            finally:
                await lease.release()
        return swept


class AppendSession:
    """One PATCH body going into one upload.

    Bytes are buffered up to `flush_bytes`, then written at their offset and hashed in the executor while
    the next buffer fills (one flush in flight). The offset in Redis moves at checkpoints and at the end,
    by compare-and-set. With a chunk checksum nothing is recorded until the whole chunk has verified.

    The body's end (`finish`) and an interruption (`abort`: another request took over, the client left,
    the server stops) can race: `lock` serialises them with the flushes, so the file is never closed under
    a write in flight and a session ends exactly once.
    """

    def __init__(self, service: UploadService, upload: Upload, lease: Lease, room: int | None,
                 checksum: tuple[str, bytes] | None, checksum_in_trailer: bool) -> None:
        self.service = service
        self.upload = upload
        self.lease = lease
        # the file is opened by the first flush and closed by the last, in the same executor jobs: a small
        # PATCH costs one trip to the executor instead of three
        self.writer: BlobWriter | None = None
        self.room = room
        self.checksum = checksum
        self.verify_chunk = checksum is not None or checksum_in_trailer
        # a header checksum is hashed as bytes arrive; a trailer's algorithm is known only at the end
        self.chunk_hasher = new_hasher(checksum[0]) if checksum else None
        self.running = service.digests.take(upload.id, upload.offset)
        # the hash as it was, to hand back if this body is discarded (no rebuild from disk at the end)
        self.base = self.running.copy() if self.running is not None else None
        self.start = upload.offset
        self.already_complete = upload.status == DONE  # a repeated last PATCH (its 204 was lost): answer it again
        self.committed = upload.offset  # recorded in Redis
        self.expires = upload.expires  # as recorded with the last offset (progress slides it)
        self.written = upload.offset  # on disk, by completed flushes
        self.position = upload.offset  # where the next flush writes
        self.received = 0  # body bytes accepted into this session
        self.buffer: list[bytes] = []
        self.buffered = 0
        self.pending: asyncio.Future[None] | None = None
        self.error: errors.TusError | None = None
        self.overran = False  # the body went past the length: nothing of it is recorded
        self.stopping = False  # abort() was called: take no more bytes
        self.closed = False
        self.lock = asyncio.Lock()

    async def write(self, data: bytes) -> None:
        """Take the next piece of the body; returns once it is buffered (or written, when the buffer filled)."""
        if self.error is not None or self.stopping or self.closed:
            return
        if self.lease.lost:
            self.error = errors.UPLOAD_LOCKED("another request took over this upload")
            return
        if self.room is not None and self.received + len(data) > self.room:
            # refused like a failed checksum: a 4xx leaves the upload as it was (bar offset checkpoints)
            self.error = errors.LENGTH_EXCEEDED(
                f"body goes past the upload's length ({self.room} bytes were left); nothing of it was kept")
            self.overran = True
            return
        self.received += len(data)
        self.buffer.append(data)
        self.buffered += len(data)
        if self.buffered >= self.service.config.flush_bytes:
            async with self.lock:
                if self.closed:
                    return
                try:
                    await self._flush()
                except Exception as exc:  # a body callback must not raise: the failure becomes the response
                    self.error = as_tus_error(exc)

    async def _flush(self, last: bool = False) -> None:
        """Hand the buffer to the executor; `last`: no write follows, so that job also closes the file."""
        await self._wait_pending()
        if self.error is not None:
            return
        if not self.buffer:
            if last and self.writer is not None:  # the body ended on a flush boundary: sync and close
                self.pending = asyncio.ensure_future(
                    self.service._io(self._write_blocks, self.position, [], True, True))
            return
        if self.position == 0 and self.service.config.type_gate is not None:
            await self._check_type(b"".join(self.buffer)[:self.service.config.gate_bytes])
            if self.error is not None:
                return
        blocks, self.buffer, self.buffered = self.buffer, [], 0
        size = sum(len(b) for b in blocks)
        # an offset is recorded after this write (the body's end, or a checkpoint): its bytes must be on disk
        # first, or after a power loss Redis would count bytes the file never got
        durable = last or self.position + size - self.committed >= self.service.config.checkpoint_bytes
        self.pending = asyncio.ensure_future(
            self.service._io(self._write_blocks, self.position, blocks, last, durable))
        self.position += size

    async def _check_type(self, head: bytes) -> None:
        """--accept: refuse a disallowed type before any of its bytes are stored, and retire the upload."""
        assert self.service.config.type_gate is not None
        reason = self.service.config.type_gate(head)
        if reason is None:
            return
        self.error = errors.DISALLOWED_TYPE(reason)
        await self.service.state.bury(self.upload.id, FAILED, reason)
        await self.service._io(self.service.store.delete, self.upload.id)

    def _write_blocks(self, at: int, blocks: list[bytes], last: bool, durable: bool) -> None:
        """Executor side: positional writes (synced when `durable`), then hash updates (hashlib releases the
        GIL on big blocks)."""
        try:
            if self.writer is None:
                self.writer = self.service.store.writer(self.upload.id)
            for block in blocks:
                self.writer.write(at, block)
                at += len(block)
            if durable:
                self.writer.sync()
        finally:
            if last:
                self._close_file()
        for block in blocks:
            if self.running is not None:
                self.running.update(block)
            if self.chunk_hasher is not None:
                self.chunk_hasher.update(block)

    def _close_file(self) -> None:
        """Executor side, exactly once (a second close could hit a descriptor reused by another upload)."""
        writer, self.writer = self.writer, None
        if writer is not None:
            writer.close()

    async def _wait_pending(self) -> None:
        if self.pending is None:
            return
        pending, self.pending = self.pending, None
        try:
            await pending
        except OSError as exc:
            self.error = _storage_error(exc)
            self.running = None  # it may have seen bytes that are not on disk
            return
        self.written = self.position  # with one flush in flight, it ended where the next one starts
        if not self._unrecordable() and self.written - self.committed >= self.service.config.checkpoint_bytes:
            await self._commit()
            await self.service.events.emit(ev.PROGRESS, self.upload.id, self.upload.owner,
                                           offset=self.committed, length=self.upload.length)

    async def _commit(self, release: bool = False) -> None:
        """Record the offset; `release`: the session's work under the lease ends here, so the same round
        trip releases it (it stays held when the offset could not be recorded)."""
        if self.written == self.committed or self.lease.lost:
            return
        expires = self.service._expiry()
        lease = (self.lease.key, self.lease.token) if release else None
        try:
            await self.service.state.advance(self.upload.id, self.committed, self.written, expires, lease)
        except OffsetConflict as exc:
            self.error = errors.UPLOAD_LOCKED(f"offset changed under this request ({exc})")
            self.running = None
            return
        if release:
            self.lease.forget()
        self.committed = self.written
        self.expires = expires

    async def _drain(self) -> None:
        await self._flush(last=True)
        await self._wait_pending()

    def _unrecordable(self) -> bool:
        """Bytes of this body that must not be recorded: a chunk checksum covers all of it, or it overran."""
        return self.verify_chunk or self.overran

    async def _chunk_matches(self, trailer: tuple[str, bytes] | None) -> bool:
        expected = trailer or self.checksum
        if expected is None:
            return True
        algorithm, digest = expected
        if self.chunk_hasher is None or self.chunk_hasher.name != algorithm:
            self.chunk_hasher = await self.service._io(self._hash_range, algorithm)
        return bool(self.chunk_hasher.digest() == digest)

    def _hash_range(self, algorithm: str) -> Any:
        hasher = new_hasher(algorithm)
        for block in self.service.store.read(self.upload.id, self.start, self.written):
            hasher.update(block)
        return hasher

    async def finish(self, trailer: tuple[str, bytes] | None = None) -> Upload:
        """The body ended: verify the chunk, record the offset, complete the upload if that was the end."""
        async with self.lock:
            if self.closed:
                raise errors.UPLOAD_LOCKED("this request was stopped: another request took over the upload")
            return await self._finish(trailer)

    async def _finish(self, trailer: tuple[str, bytes] | None) -> Upload:
        try:
            await self._drain()
            if self.verify_chunk and self.checksum is None and trailer is None:
                self.error = self.error or errors.INVALID_CHECKSUM("announced Upload-Checksum trailer is missing")
            if self.error is None and not await self._chunk_matches(trailer):
                self.running = None
                raise errors.CHECKSUM_MISMATCH("Upload-Checksum does not match the received chunk; it was discarded")
            if self.error is not None and self._unrecordable():
                self.running = None
                raise self.error
            # unless these bytes complete the upload (which finishes under the lease), the lease goes with them
            await self._commit(release=self.error is None and self.written != self.upload.length)
            if self.error is not None:
                raise self.error
            upload = replace(self.upload, offset=self.committed, expires=self.expires)
            if upload.complete and not self.already_complete:
                running, self.running = self.running, None
                return await self.service._complete(upload, running)
            if self.committed > self.start:  # dashboards see every PATCH, not only 8 MiB checkpoints
                await self.service.events.emit(ev.PROGRESS, upload.id, upload.owner, offset=upload.offset,
                                               length=upload.length)
            return upload
        finally:
            await self._close()

    async def abort(self, why: str) -> int | None:
        """The client went away or another request wants the upload: keep what arrived, unless unverifiable.

        Returns the offset saved, or None when the body had already ended and `finish` answers the request.
        """
        self.stopping = True
        async with self.lock:
            if self.closed:
                return None
            return await self._abort(why)

    async def _abort(self, why: str) -> int:
        try:
            await self._drain()
            if self._unrecordable():
                self.running = None
                log.info("upload %s: %s; unverified or overrunning body of %d bytes discarded", self.upload.id, why,
                         self.received)
            else:
                await self._commit()
                log.info("upload %s: %s; kept %d bytes, offset %d", self.upload.id, why,
                         self.committed - self.start, self.committed)
            return self.committed
        finally:
            await self._close()

    async def _close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.pending is not None:  # an error cut the drain short: never close the file under a write
            with contextlib.suppress(OSError):
                await self.pending
            self.running = None
        if self.running is not None and self.committed == self.written:
            self.service.digests.put(self.upload.id, self.committed, self.running)
        elif self.base is not None and self.committed == self.start:
            self.service.digests.put(self.upload.id, self.start, self.base)
        if self.writer is not None:  # the last flush did not close it (an error, or nothing left to write)
            await self.service._io(self._close_file)
