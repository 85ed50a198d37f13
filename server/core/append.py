"""One request body going into one upload: the append session, which owns the upload's lease for its life.

Bytes are buffered up to `flush_bytes`, then written and hashed in the executor while the next buffer
fills (up to two flushes on their way; a big flush is hashed on a second thread while it is written). The
offset moves at checkpoints and at the end, by compare-and-set, and only as far as the store says the
bytes are durable (S3, mid-body: as far as its parts landed); a checkpoint's sync runs beside the next
writes. With a chunk checksum nothing is recorded until the whole chunk has verified.

Buffered and in-flight bytes count against the process's body budget (`Runtime.budget`) until storage
has them, and so do the bytes a writer keeps in memory after a write (S3: the unfilled part); `settle`
hands a short buffer over early, has the writer let go of what it keeps and records the offset, when the
body must wait for memory or its client went quiet.

The session takes the lease from whoever opened it and is its only releaser (`_close`); when a body ends
without completing its upload, the offset's last move and the release are one round trip
(`Lease.release(advance)`).

The body's end (`finish`) and an interruption (`abort`: another request took over, the client left, the
server stops) can race: `lock` serialises them with the flushes, so the blob is never closed under a
write in flight and a session ends exactly once.

A session that lost its lease writes nothing more (not even what it had buffered). That alone cannot stop
a process that was paused past its lease with a write already under way, so each session writes either
the upload's last segment, when every earlier writer of it ended cleanly, or a segment of its own (see
`core.model`): whatever a stale writer writes late lies outside every recorded range.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable
from dataclasses import replace
from functools import partial

from tuskit import errors
from tuskit.checksums import ALGORITHMS, new_hasher

from . import events as ev
from .failures import storage_error
from .model import DONE, FAILED, Upload
from .ports import Advance, BlobWriter, Lease, OffsetConflict
from .publish import Publisher
from .runtime import Runtime, SerialJobs

log = logging.getLogger("tuskit.server.core")

_HASH_APART = 256 * 1024  # flushes from this size on are hashed and written on two io threads at once
_IN_FLIGHT = 2  # flushes of one body on their way to storage while the next one fills
# a body whose hashes cost at most this many bytes hashed (size x hashers) is hashed on the event loop and
# handed to the store's direct_append: SHA-256 of 64 KiB takes ~40 us here, a trip to an io thread 0.3-0.8
# ms of GIL hand-offs on a busy 2-core machine. The whole-file hash and one chunk checksum fit 64 KiB
# bodies; a chunked body that may bring any algorithm in a trailer (three hashers) goes to a thread.
_DIRECT_HASHING = 128 * 1024
_DIRECT = 64 * 1024  # and at most this long

# a flush on its way to storage: its write (its result: the durable end when it synced), its hash update
# (None: the write job hashes it too), where it ends, and whether its write is synced
_Flight = tuple[asyncio.Future[int | None], asyncio.Future[None] | None, int, bool]


class AppendSession:
    def __init__(self, rt: Runtime, publisher: Publisher, upload: Upload, lease: Lease, room: int | None,
                 checksum: tuple[str, bytes] | None, checksum_in_trailer: bool, trailer_possible: bool,
                 ends_upload: bool = False) -> None:
        self.rt = rt
        self.publisher = publisher
        self.upload = upload
        self.lease = lease
        if upload.writer:  # the last segment's writer may still be alive: never share a file with it
            self.segment, self.segment_start = lease.token, upload.offset
            self.own_segment = True  # registered with this session's first recorded offset
        else:  # acquired for writing: the state store made this session the last segment's writer
            self.segment, self.segment_start = upload.segments[-1]
            self.own_segment = False
        # the blob is opened by the first flush and closed by the last, in the same executor jobs: a small
        # PATCH costs one trip to the executor instead of three
        self.writer: BlobWriter | None = None
        self.room = room
        self.checksum = checksum
        self.verify_chunk = checksum is not None or checksum_in_trailer
        # a header checksum names its algorithm; a trailer's is known only at the end, so every algorithm
        # hashes the chunk as it arrives (stored bytes of an unfinished upload cannot always be read back)
        trailer = checksum_in_trailer or trailer_possible
        algorithms = [checksum[0]] if checksum else list(ALGORITHMS) if trailer else []
        self.chunk_hashers = {algorithm: new_hasher(algorithm) for algorithm in algorithms}
        self.running = rt.digests.take(upload.id, upload.offset)
        # the hash as it was, to hand back if this body is discarded (no rebuild from storage at the end)
        self.base = self.running.copy() if self.running is not None else None
        self.start = upload.offset
        self.ends_upload = ends_upload  # the client says this body is the upload's last
        self.already_complete = upload.status == DONE  # a repeated last PATCH (its 204 was lost): answer it again
        self.committed = upload.offset  # recorded in the state store
        self.expires = upload.expires  # as recorded with the last offset (progress slides it)
        self.written = upload.offset  # stored, by completed flushes
        self.durable = upload.offset  # how far the store said written bytes are durable: what may be recorded
        self.position = upload.offset  # where the next flush writes
        self.received = 0  # body bytes accepted into this session
        self.buffer: list[bytes] = []
        self.buffered = 0
        self.retained = 0  # bytes the writer holds in memory, as last counted against the budget
        # flushes are written in order by one job queue and hashed in order by another, each keeping its io
        # thread while it has work; up to _IN_FLIGHT flushes are on their way at once
        self.writes = SerialJobs(rt.executor)
        self.hashes = SerialJobs(rt.executor)
        self.flights: collections.deque[_Flight] = collections.deque()
        self.write_failed = False  # executor side: the writes queued after a failed one do nothing
        # a checkpoint's sync runs beside the next flushes; its offset is recorded once it is done
        self.syncing: asyncio.Future[int] | None = None
        self.checkpoint = upload.offset  # where the writes stood when the last checkpoint's sync began
        self.error: errors.TusError | None = None
        self.overran = False  # the body went past the length: nothing of it is recorded
        self.stopping = False  # abort() was called: take no more bytes
        self.closed = False
        self.lock = asyncio.Lock()

    def when_asked_to_release(self, callback: Callable[[], None]) -> None:
        """`callback` runs when another request wants this upload: the caller then aborts the session."""
        self.lease.when_asked_to_release(callback)

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
        self.rt.budget.hold(len(data))
        if self._expiry_due():
            try:
                await self._slide_expiry()
            except Exception as exc:  # a body callback must not raise: the failure becomes the response
                self.error = self.rt.error(exc)
                return
        if self.buffered >= self.rt.config.flush_bytes:
            await self.flush()

    async def flush(self) -> None:
        """Hand the buffered bytes to storage now (also short of `flush_bytes`); returns once they are on
        their way, after the previous flush finished."""
        if not self.buffer:
            return
        async with self.lock:
            if self.closed:
                return
            try:
                await self._flush()
            except Exception as exc:  # a body callback must not raise: the failure becomes the response
                self.error = self.rt.error(exc)

    @property
    def settled(self) -> bool:
        """Nothing of the body is held in memory, and every byte of it that may be recorded is."""
        return not (self.buffered or self.retained or (self.position > self.committed and not self._unrecordable()))

    async def settle(self, record: bool = True) -> None:
        """`flush`, and have the writer store and drop what it holds in memory: the body is about to wait
        for the budget, or its client went quiet, and what it holds must not keep others waiting. `record`
        (the client went quiet): also make every byte durable and record the offset, so that what it sent
        survives it (a client that stalls for good, or a Redis failover, finds it all recorded; the last
        mid-body checkpoint alone could be two behind)."""
        await self.flush()
        async with self.lock:
            if self.closed or self.error is not None or not (record or self.retained or self.flights):
                return
            try:
                if record:
                    await self._land(room=None, checkpoint=False)
                    await self._wait_sync(record=False)
                    if self.error is not None:
                        return
                # after the flushes queued before it: what the writer holds is known once they are written
                settled = self.writes.run(partial(self._settle_writer, record))
                await asyncio.wait([settled])
                if not self._stored(settled):
                    return
                self._count_retained()
                durable = settled.result()
                if durable is not None and not self._unrecordable():
                    self.durable = max(self.durable, min(durable, self.written))
                    await self._record()
            except Exception as exc:  # a body callback must not raise: the failure becomes the response
                self.error = self.rt.error(exc)

    def _settle_writer(self, sync: bool) -> int | None:
        """Executor side, in the writes' queue; with `sync`, the durable end once the writer let go."""
        if self.writer is None or self.write_failed:
            return None
        self.writer.spill()
        return self.writer.sync() if sync else None

    def _count_retained(self) -> None:
        """Bring the budget in line with what the writer holds now (a write ended, or a spill)."""
        writer = self.writer
        retained = writer.retained if writer is not None else 0
        if retained > self.retained:
            self.rt.budget.hold(retained - self.retained)
        elif retained < self.retained:
            self.rt.budget.release(self.retained - retained)
        self.retained = retained

    def _left_memory(self, size: int) -> None:
        """A write ended: its bytes leave the budget, except what the writer keeps of them."""
        self.rt.budget.release(size)
        self._count_retained()

    def _expiry_due(self) -> bool:
        """Progress slides the expiry: once half of its window has passed since it was last recorded, even
        when no offset is (bytes trickle in below a flush, or a checksum holds the offset back)."""
        window = self.rt.config.expire_after
        return bool(window) and self.expires is not None and time.time() > self.expires - window / 2

    async def _slide_expiry(self) -> None:
        expires = self.rt.expiry()
        assert expires is not None  # _expiry_due: there is an expiry window
        await self.rt.state.touch(self.upload.id, expires)
        self.expires = expires

    async def _flush(self, last: bool = False) -> None:
        """Hand the buffer to the executor; `last`: no write follows, so that job also closes the blob (and
        every earlier flush lands first)."""
        if last:
            await self._land(room=None, checkpoint=False)
        else:
            await self._land(room=(_IN_FLIGHT - 1) * self.rt.config.flush_bytes)
        if self.error is None and self.lease.lost:
            self.error = errors.UPLOAD_LOCKED("this request lost the upload's lease; its last bytes were not kept")
        if self.error is not None:
            return
        if last:
            await self._wait_sync(record=False)  # the last job syncs everything and closes the blob
            if self.error is not None:
                return
        if not self.buffer:
            if last and self.writer is not None:  # the body ended on a flush boundary: sync and close
                written = self.writes.run(partial(self._write_blocks, [], True, True, False))
                self.flights.append((written, None, self.position, True))
            return
        if self.position == 0 and self.rt.config.type_gate is not None:
            await self._check_type(b"".join(self.buffer)[:self.rt.config.gate_bytes])
            if self.error is not None:
                return
        blocks, self.buffer, self.buffered = self.buffer, [], 0
        size = sum(len(b) for b in blocks)
        # the body's end is recorded after this write: its bytes must be durable first, or after a power loss
        # the state would count bytes the blob never got (checkpoints sync apart, see _checkpoint). A big
        # flush is hashed on another io thread while it is written (hashlib and pwrite release the GIL)
        apart = self._hash_apart(size)
        hashed = self.hashes.run(partial(self._hash, blocks)) if apart else None
        written = self._write_direct(blocks, size) if last and not apart else None
        if written is None:
            written = self.writes.run(partial(self._write_blocks, blocks, last, last, not apart))
        # the bytes leave the budget when the write ends, whoever awaits it (a waiting body may not)
        written.add_done_callback(lambda _: self._left_memory(size))
        self.position += size
        self.flights.append((written, hashed, self.position, last))

    def _write_direct(self, blocks: list[bytes], size: int) -> asyncio.Future[int] | None:
        """A small body in one piece goes to the store from the loop, if the store can take it so: it is
        this session's only write (no writer open, nothing on its way), so the body's end is its sync."""
        hashers = len(self.chunk_hashers) + (self.running is not None)
        if (size > _DIRECT or size * hashers > _DIRECT_HASHING or self.writer is not None or self.flights
                or self.write_failed):
            return None
        written = self.rt.store.direct_append(self.upload.id, self.position, self.segment, self.segment_start,
                                              blocks)
        if written is not None:
            self._hash(blocks)  # while the kernel writes
        return written

    def _hash_apart(self, size: int) -> bool:
        """Whether this flush is hashed by a job of its own (beside its write) or by its write job. Hash
        updates must run in the order of the bytes, and the two queues run beside each other: while an
        earlier flush's hash is pending in one queue, this one's goes to the same queue (a small flush
        hashed in its write job could otherwise overtake a big one's hash: a 460 for good bytes)."""
        if self.running is None and not self.chunk_hashers:
            return False
        if self.flights:
            written, hashed, _, _ = self.flights[-1]
            if hashed is not None and not hashed.done():
                return True
            if hashed is None and not written.done():
                return False
        return size >= _HASH_APART

    async def _check_type(self, head: bytes) -> None:
        """--accept: refuse a disallowed type before any of its bytes are stored, and retire the upload."""
        assert self.rt.config.type_gate is not None
        reason = self.rt.config.type_gate(head)
        if reason is None:
            return
        self.error = errors.DISALLOWED_TYPE(reason)
        await self.rt.state.bury(self.upload.id, FAILED, reason)
        await self.rt.io(self.rt.store.delete, self.upload.id)

    def _write_blocks(self, blocks: list[bytes], last: bool, durable: bool, hash_too: bool) -> int | None:
        """Executor side: appends (wholly synced when `durable`: the body's end), then, with `hash_too`, hash
        updates. Returns the durable end when it synced."""
        if hash_too and len(blocks) > 1:  # a small flush in pieces (a PATCH's head brought the first):
            blocks = [b"".join(blocks)]  # one write and one hash update instead of one per piece
        stored = None
        try:
            if self.write_failed:
                raise OSError("an earlier write of this body failed")
            if self.writer is None:
                self.writer = self.rt.store.writer(self.upload.id, self.start, self.segment, self.segment_start)
            for block in blocks:
                self.writer.write(block)
            if durable:
                stored = self.writer.sync()
        except BaseException:
            self.write_failed = True
            raise
        finally:
            if last:
                self._close_writer()
        if hash_too:
            self._hash(blocks)
        return stored

    def _hash(self, blocks: list[bytes]) -> None:
        """Executor side: the running and chunk hashes (hashlib releases the GIL on big blocks). The hashers
        are taken once: a failed checkpoint sync may drop `running` while a flush is being hashed."""
        hashers = [*self.chunk_hashers.values(), *([self.running] if self.running is not None else [])]
        for block in blocks:
            for hasher in hashers:
                hasher.update(block)

    def _close_writer(self) -> None:
        """Executor side, exactly once (a second close could hit a descriptor reused by another upload)."""
        writer, self.writer = self.writer, None
        if writer is not None:
            writer.close()

    async def _land(self, room: int | None, checkpoint: bool = True) -> None:
        """Take in the flushes that reached storage, oldest first, waiting for them while more than `room`
        bytes are on their way (None: for all); `checkpoint`: one may start when enough are written."""
        if self.syncing is not None and self.syncing.done():
            await self._wait_sync(record=True)
        while self.flights:
            written, hashed, end, durable = self.flights[0]
            if not (written.done() and (hashed is None or hashed.done())):
                if room is not None and self.position - self.written <= room:
                    return
                await asyncio.wait([f for f in (written, hashed) if f is not None])
            self.flights.popleft()
            if not self._stored(written) or (hashed is not None and not self._stored(hashed)):
                return
            self.written = end
            if durable and (stored := written.result()) is not None:
                self.durable = max(self.durable, stored)
            if (checkpoint and not self._unrecordable()
                    and self.written - self.checkpoint >= self.rt.config.checkpoint_bytes):
                await self._checkpoint()

    def _stored(self, work: asyncio.Future[int] | asyncio.Future[int | None] | asyncio.Future[None]) -> bool:
        """Whether a finished write, hash or sync went well; if the storage failed, that is the request's
        error (other failures are raised)."""
        failure = work.exception()
        if failure is None:
            return True
        self.running = None  # it may have seen bytes that are not stored
        if isinstance(failure, OffsetConflict):  # the blob was published meanwhile: this request came too late
            self.error = self.error or errors.UPLOAD_LOCKED(str(failure))
            return False
        if not isinstance(failure, OSError):
            raise failure
        # the first failure is the answer: the writes queued behind it fail only because it did
        self.error = self.error or storage_error(failure)
        return False

    async def _checkpoint(self) -> None:
        """Start making what is written durable, to record it as the offset once it is. The sync (some ms of
        waiting for the disk every 8 MiB) runs while later bytes are received and written, instead of
        holding up the next flush; the previous checkpoint's is waited for first, so the recorded offset
        is never more than two checkpoints behind. An object store answers as far as its parts landed."""
        await self._wait_sync(record=True)
        if self.error is not None or self.writer is None:
            return
        self.checkpoint = self.written
        self.syncing = asyncio.ensure_future(self.rt.io(self.writer.sync, True))

    async def _wait_sync(self, record: bool) -> None:
        """Wait for a checkpoint's sync; `record`: then record its offset (the body's end records its own)."""
        if self.syncing is None:
            return
        syncing, self.syncing = self.syncing, None
        await asyncio.wait([syncing])
        if not self._stored(syncing):
            return
        # never past the writes the session has taken in (its hash covers those), whatever the sync saw
        self.durable = max(self.durable, min(syncing.result(), self.checkpoint))
        if record:
            await self._record()

    async def _record(self) -> None:
        """Record the durable offset mid-body, and tell the listeners."""
        if self.durable > self.committed:
            await self._commit()
            await self.rt.events.emit(ev.PROGRESS, self.upload.id, self.upload.owner,
                                      offset=self.committed, length=self.upload.length)

    async def _commit(self, release: bool = False) -> None:
        """Record the offset; `release`: the session's work under the lease ends here, so the same round
        trip releases it (when the offset could not be recorded, `_close` releases it)."""
        if self.durable == self.committed or self.lease.lost:
            return
        segments = None
        if self.own_segment:  # its first recorded bytes: the segment joins the upload (replacing empty ones)
            kept = tuple(s for s in self.upload.segments if s[1] < self.segment_start)
            segments = (*kept, (self.segment, self.segment_start))
        advance = Advance(self.committed, self.durable, self.rt.expiry(), segments, self.lease.token)
        try:
            if release:
                await self.lease.release(advance)
            else:
                await self.rt.state.advance(self.upload.id, advance)
        except OffsetConflict as exc:
            self.error = errors.UPLOAD_LOCKED(f"offset changed under this request ({exc})")
            self.running = None
            return
        self.committed = self.durable
        self.expires = advance.expires
        if segments is not None:
            self.own_segment = False
            self.upload = replace(self.upload, segments=segments, writer=self.lease.token)

    async def _drain(self) -> None:
        await self._flush(last=True)
        await self._land(room=None, checkpoint=False)

    def _unrecordable(self) -> bool:
        """Bytes of this body that must not be recorded: a chunk checksum covers all of it, or it overran."""
        return self.verify_chunk or self.overran

    def _chunk_matches(self, trailer: tuple[str, bytes] | None) -> bool:
        expected = trailer or self.checksum
        if expected is None:
            return True
        algorithm, digest = expected
        hasher = self.chunk_hashers.get(algorithm)
        return hasher is not None and bool(hasher.digest() == digest)

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
            if self.error is None and not self._chunk_matches(trailer):
                self.running = None
                raise errors.CHECKSUM_MISMATCH("the checksum sent with this body does not match it; it was discarded")
            if self.error is not None and self._unrecordable():
                self.running = None
                raise self.error
            if self.ends_upload and self.error is None:
                await self._end_here()
            # unless these bytes complete the upload (which finishes under the lease), the lease goes with them
            await self._commit(release=self.error is None and self.written != self.upload.length)
            if self.error is not None:
                raise self.error
            upload = replace(self.upload, offset=self.committed, expires=self.expires)
            if upload.complete and not self.already_complete:
                running, self.running = self.running, None
                return await self.publisher.complete(upload, running, self.lease.token)
            if self.committed > self.start:  # dashboards see every PATCH, not only 8 MiB checkpoints
                await self.rt.events.emit(ev.PROGRESS, upload.id, upload.owner, offset=upload.offset,
                                          length=upload.length)
            return upload
        finally:
            await self._close()

    async def _end_here(self) -> None:
        """The body said it was the last, so the upload ends where it did: an unknown length becomes that
        offset (a chunked last body announces no size), a known one must be it (else the bytes are kept
        and the request fails as inconsistent)."""
        length = self.upload.length
        if length is None:
            if await self.rt.state.set_length(self.upload.id, self.written):
                self.upload = replace(self.upload, length=self.written)
            else:
                self.error = errors.INVALID_LENGTH("another request set the upload's length meanwhile")
        elif self.written != length:
            self.error = errors.INVALID_LENGTH(
                f"the last body ended at {self.written} but the upload's length is {length}", offset=self.written)

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

    async def close(self) -> None:
        """End a session that never took a body (its opening failed): the lease goes, nothing else."""
        async with self.lock:
            await self._close()

    async def _close(self) -> None:
        if self.closed:
            return
        self.closed = True
        clean = False  # until this session's writes are known to be over and its blob closed
        self.rt.budget.release(self.buffered)  # a buffer never written (an error or a discarded body)
        self.buffer, self.buffered = [], 0
        try:
            # an error cut the drain short: never close the blob under a write, hash or sync
            work: list[asyncio.Future[int] | asyncio.Future[int | None] | asyncio.Future[None]] = [
                f for written, hashed, _, _ in self.flights for f in (written, hashed) if f is not None]
            work += [self.syncing] if self.syncing is not None else []
            if work:
                await asyncio.wait(work)
                for done in work:
                    if not done.cancelled():
                        done.exception()  # seen: what failed was or will be this request's error
                self.flights.clear()
                self.syncing = None
                self.running = None
            self._keep_digest()
            if self.writer is not None:  # the last flush did not close it (an error, or nothing left to write)
                await self.rt.io(self._close_writer)
            clean = True
        finally:
            self.rt.budget.release(self.retained)  # the writer is closed or given up: it holds nothing more
            self.retained = 0
            await self.lease.release(clean=clean)  # a no-op when the last commit already released it

    def _keep_digest(self) -> None:
        """Leave the running hash for the next request of this upload in this process, if it still fits."""
        if self.running is not None and self.committed == self.written:
            self.rt.digests.put(self.upload.id, self.committed, self.running)
        elif self.base is not None and self.committed == self.start:
            self.rt.digests.put(self.upload.id, self.start, self.base)

