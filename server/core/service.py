"""The tus state machine: create, append, complete and verify, concatenate, terminate, expire.

This is the only place that knows tus semantics, and the handlers' only door to state and bytes. It takes
its collaborators (ports) as arguments and knows nothing of HTTP, so tests can drive it with a real Redis
and a temp dir. Storage work runs in an executor; the event loop only moves buffers around.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

from tuskit import errors, protocol

from . import events as ev
from . import ids
from .append import AppendSession
from .concat import Concatenator
from .failures import storage_error
from .listing import Page, list_page
from .model import ACTIVE, EXPIRED, FAILED, GONE_REASONS, TERMINATED, Upload, declared_sha256
from .ports import BlobStore
from .publish import Hook, Publisher
from .runtime import Runtime

log = logging.getLogger("tuskit.server.core")

HEALTH_TIMEOUT_SECONDS = 2.0
STORAGE_PROBE_SECONDS = 5.0  # a storage probe's answer serves the health checks of this long
FULL_BELOW = 1024 * 1024  # a store with less free space than this is full, whatever is asked of it
SWEEP_BATCH = 500  # expired uploads read per round trip; a sweep goes on until none are left
STRAY_AGE_SECONDS = 86400.0  # when uploads never expire: how old an unrecorded blob must be to go


class UploadService:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.config = rt.config
        self.publisher = Publisher(rt)
        self.concat = Concatenator(rt, self.publisher)
        self.publisher.on_published.append(self.concat.on_published)
        self._storage_probe: asyncio.Future[str] | None = None
        self._storage_probed = 0.0  # time.monotonic() when the probe started

    @property
    def on_published(self) -> list[Hook]:
        """Work to start after an upload is published and verified (post-processing, ...)."""
        return self.publisher.on_published

    def error(self, exc: BaseException) -> errors.TusError:
        """Any failure as the response a client can act on (503 for a store that is away, 507 for a full disk)."""
        return self.rt.error(exc)

    def is_outage(self, exc: BaseException) -> bool:
        """An expected failure of a backend that is away for now (logged once as a warning, no traceback)."""
        return isinstance(exc, self.rt.state.unavailable)

    def spawn(self, coro: Awaitable[Any]) -> None:
        self.rt.spawn(coro)

    async def drain(self) -> None:
        """Wait for background work (merges, post-processing) — used at shutdown."""
        await self.rt.drain()

    # ---- lookups ---------------------------------------------------------------------------------

    async def get(self, upload_id: str, owner: str) -> Upload:
        """The upload if it exists, is visible to `owner` and is not gone (404 / 410 otherwise)."""
        ids.check(upload_id)
        return self._visible(await self.rt.state.get(upload_id), owner)

    async def owner_of(self, upload_id: str) -> str:
        """Whose upload this is ("" when unknown): a signed link acts for the upload's owner."""
        upload = await self.rt.state.get(ids.check(upload_id))
        return upload.owner if upload is not None else ""

    def _visible(self, upload: Upload | None, owner: str) -> Upload:
        if upload is None or upload.owner != owner:
            raise errors.NOT_FOUND()
        if upload.status == FAILED:
            raise errors.GONE(f"upload failed: {upload.reason}")
        if upload.status in GONE_REASONS:
            raise errors.GONE(upload.reason or GONE_REASONS[upload.status])
        if upload.status == ACTIVE and upload.expires is not None and upload.expires <= time.time():
            raise errors.GONE(GONE_REASONS[EXPIRED])
        return upload

    async def head(self, upload_id: str, owner: str) -> Upload:
        """Offset retrieval. Visibility first: another owner's upload is a 404 that disturbs nothing. A
        writer still holding the upload (usually the client's own old connection) is asked to let go, so
        the offset is final, as tusd does; the lease itself is taken only to finish an upload whose bytes
        are all in but that was never published, so simultaneous HEADs never queue for it."""
        upload = await self.get(upload_id, owner)
        if upload.status != ACTIVE:
            return upload
        if upload.complete or upload.concat == "final":
            async with self.rt.leased(upload_id, read=True, owner=owner) as lease:
                return await self._settle_pending(self._visible(lease.upload, owner))
        if await self.rt.locker.wait_released(upload_id, owner):
            return await self.get(upload_id, owner)
        return upload

    async def _settle_pending(self, upload: Upload) -> Upload:
        """That happens when a process died between recording the last offset and publishing, or when a
        final's partials finished while no process could merge it. Clients that see offset == length stop
        sending, so a HEAD must be able to finish the job."""
        if upload.status != ACTIVE:
            return upload
        if upload.concat == "final":
            return await self.concat.merge_held(upload.id) or upload
        if upload.complete:
            return await self.publisher.complete(upload, self.rt.digests.take(upload.id, upload.offset))
        return upload

    async def listing(self, owner: str, limit: int, cursor: str | None) -> Page:
        """A page of `owner`'s uploads, newest first (`core.listing`)."""
        return await list_page(self.rt.state, owner, limit, cursor)

    async def artefact(self, upload_id: str, name: str) -> bytes | None:
        """A derived artefact (report, thumbnail) of an upload, read off the event loop."""
        return await self.rt.io(self.rt.store.get_derived, ids.check(upload_id), name)

    async def stream(self, upload_id: str, start: int, end: int, send: Callable[[bytes], Awaitable[None]]) -> None:
        """Send bytes [start, end) of a stored upload block by block, reading each block in the executor."""
        blocks = self.rt.store.read(upload_id, start, end)
        while (block := await self.rt.io(next, blocks, None)) is not None:
            await send(block)

    async def download_url(self, upload_id: str, headers: dict[str, str], seconds: float) -> str | None:
        """Where a finished upload can be fetched straight from its store (see BlobStore.download_url)."""
        return await self.rt.io(self.rt.store.download_url, upload_id, headers, seconds)

    async def health(self) -> dict[str, Any]:
        """What a load balancer needs to know: does the state store answer, how much room is left."""
        details: dict[str, Any] = {}
        try:
            await asyncio.wait_for(self.rt.state.ping(), HEALTH_TIMEOUT_SECONDS)
            details["redis"] = "ok"
        except (TimeoutError, OSError, *self.rt.state.unavailable) as exc:
            details["redis"] = f"unavailable: {exc or type(exc).__name__}"
        details["storage"] = await self._storage_health()
        try:
            details["disk_free_bytes"] = await self.rt.io(self.rt.store.free_space)
        except OSError:  # the store's health says why
            details["disk_free_bytes"] = None
        return details

    async def _storage_health(self) -> str:
        """One probe at a time, its answer reused for a few seconds: a load balancer polling every worker
        must not turn into a stream of bucket requests, nor pile up threads on a store that hangs."""
        now = time.monotonic()
        probe = self._storage_probe
        if probe is None or (probe.done() and now - self._storage_probed > STORAGE_PROBE_SECONDS):
            probe = self._storage_probe = asyncio.ensure_future(self.rt.io(self.rt.store.health))
            self._storage_probed = now
        try:
            return await asyncio.wait_for(asyncio.shield(probe), HEALTH_TIMEOUT_SECONDS)
        except TimeoutError:
            return f"no answer within {HEALTH_TIMEOUT_SECONDS:g}s"
        except OSError as exc:
            return f"unavailable: {exc}"

    # ---- creation --------------------------------------------------------------------------------

    async def create(self, *, length: int | None, metadata: dict[str, bytes | None],
                     concat: protocol.Concat | None, owner: str) -> Upload:
        declared_sha256(metadata)
        if length is not None:
            await self._check_size(length)
        upload = Upload(
            id=ids.new_id(), offset=0, length=length, metadata=protocol.encode_metadata(metadata),
            concat=concat.kind if concat else "", parts=(), owner=owner, created=time.time(),
            expires=self.rt.expiry(), status=ACTIVE, sha256="", reason="", finished=None,
        )
        if concat is not None and concat.kind == "final":
            upload = await self.concat.prepare_final(upload, concat)
        # the record first: a blob without one is a stray the sweeper deletes, and a blob being created must
        # never look like one
        await self.rt.state.create(upload)
        try:
            await self.rt.io(self.rt.store.create, upload.id, upload.length)
        except OSError as exc:
            await self.rt.state.bury(upload.id, FAILED, "its storage could not be created")
            raise storage_error(exc) from exc
        await self.rt.events.emit(ev.CREATED, upload.id, owner, length=upload.length, concat=upload.concat)
        if upload.concat == "final":
            await self.concat.try_merge(upload.id)
            upload = await self.rt.state.get(upload.id) or upload
        elif upload.length == 0:
            upload = await self.publisher.complete(upload, hasher=None)
        return upload

    async def _check_size(self, length: int) -> None:
        """413 for a length no upload here can reach: over --max-size, or more than the store can ever hold
        (a full disk's free space, S3's object size cap), so a client learns it before sending any byte."""
        max_size = self.config.max_size
        if max_size is not None and length > max_size:
            raise errors.TOO_LARGE(f"Upload-Length {length} exceeds Tus-Max-Size {max_size}")
        free, largest = await self.rt.io(_store_room, self.rt.store)
        if largest is not None and length > largest:
            raise errors.TOO_LARGE(f"Upload-Length {length} is more than one upload here can hold ({largest} bytes)")
        if free is not None and free < FULL_BELOW and length > free:
            # a full store is a condition that passes (507: retry once space is freed), not a verdict on the
            # upload's size; a store with room to spare that still cannot take this length is a 413
            raise errors.INSUFFICIENT_STORAGE(f"storage is full ({free} bytes free); retry once space is freed")
        if free is not None and length > free:
            raise errors.TOO_LARGE(f"Upload-Length {length} is more than this server can store ({free} bytes free)")

    # ---- appending -------------------------------------------------------------------------------

    async def open_append(self, upload_id: str, owner: str, offset: int, *, new_length: int | None,
                          body_length: int | None, checksum: tuple[str, bytes] | None,
                          checksum_in_trailer: bool, trailer_possible: bool = False,
                          ends_upload: bool = False) -> AppendSession:
        """Take the upload's lease (reading it in the same round trip), check the append against it and
        return a session that takes the body; the session owns the lease from here on.

        `checksum_in_trailer`: the body announced an Upload-Checksum trailer, so nothing of it is recorded
        until it verified; `trailer_possible`: a chunked body may end with one unannounced; `ends_upload`:
        the client says this body is the last, so where it ends is the upload's length."""
        ids.check(upload_id)
        lease = await self.rt.locker.acquire(upload_id, read=True, write=True, owner=owner)
        try:
            upload = self._visible(lease.upload, owner)
            upload, room = await self._check_append(upload, offset, new_length, body_length)
        except BaseException:
            await lease.release()
            raise
        return AppendSession(self.rt, self.publisher, upload, lease, room, checksum, checksum_in_trailer,
                             trailer_possible, ends_upload)

    async def _check_append(self, upload: Upload, offset: int, new_length: int | None,
                            body_length: int | None) -> tuple[Upload, int | None]:
        """The upload as the append sees it and how many bytes it may still take (None: no limit)."""
        if upload.concat == "final":
            raise errors.MODIFY_FINAL()
        if offset != upload.offset:  # first: a stale request must change nothing, not even a deferred length
            raise errors.MISMATCHED_OFFSET(
                f"Upload-Offset {offset} does not match the upload's offset {upload.offset}", offset=upload.offset)
        if new_length is not None:
            upload = await self._fix_length(upload, new_length)
        limit = upload.length if upload.length is not None else self.config.max_size
        room = None if limit is None else limit - offset
        if body_length is not None and room is not None and body_length > room:
            raise errors.LENGTH_EXCEEDED(f"body of {body_length} bytes goes past Upload-Length by {body_length - room}")
        return upload, room

    async def _fix_length(self, upload: Upload, length: int) -> Upload:
        if upload.length is not None:
            if length != upload.length:
                raise errors.INVALID_LENGTH(f"Upload-Length is already {upload.length}, got {length}")
            return upload
        if length < upload.offset:
            raise errors.INVALID_LENGTH(f"Upload-Length {length} is below the current offset {upload.offset}")
        await self._check_size(length)
        if not await self.rt.state.set_length(upload.id, length):
            raise errors.INVALID_LENGTH("Upload-Length was already set")
        return replace(upload, length=length)

    # ---- termination and expiry ------------------------------------------------------------------

    async def terminate(self, upload_id: str, owner: str) -> None:
        ids.check(upload_id)
        async with self.rt.leased(upload_id, read=True, owner=owner) as lease:
            await self._retire(self._visible(lease.upload, owner), TERMINATED, ev.TERMINATED)

    async def _retire(self, upload: Upload, status: str, event: str) -> None:
        """Delete an upload's bytes and leave a tombstone; finals waiting for it as a partial end too."""
        rt = self.rt
        finals = await rt.state.finals_of(upload.id) if upload.concat == "partial" else []
        await rt.io(rt.store.delete, upload.id)
        await rt.state.bury(upload.id, status, GONE_REASONS[status])
        rt.digests.forget(upload.id)
        await rt.events.emit(event, upload.id, upload.owner)
        if finals:  # they wait for this partial in vain
            rt.spawn(self.concat.merge_finals(finals))

    async def sweep(self, now: float | None = None) -> int:
        """Delete every unfinished upload whose expiry passed, in batches; returns how many went.

        An upload whose lease is held is being written (or is stalled, until --network-timeout closes
        its request): it is passed over, never asked to let go."""
        now = time.time() if now is None else now
        swept, busy = await self._sweep_strays(now), 0
        while True:
            batch = await self.rt.state.expired(now, SWEEP_BATCH, busy)  # the busy ones are still listed first
            for upload_id in batch:
                lease = await self.rt.locker.try_acquire(upload_id)
                if lease is None:
                    busy += 1
                    continue
                try:
                    swept += await self._expire(upload_id, now)
                finally:
                    await lease.release()
            if len(batch) < SWEEP_BATCH:
                return swept

    async def _expire(self, upload_id: str, now: float) -> bool:
        upload = await self.rt.state.get(upload_id)
        if upload is None or upload.status != ACTIVE or upload.expires is None:
            await self.rt.state.forget(upload_id)  # a record that went by other ways than ours
            return False
        if upload.expires > now:
            return False  # progress moved it since the batch was read
        await self._retire(upload, EXPIRED, ev.EXPIRED)
        return True

    async def _sweep_strays(self, now: float) -> int:
        """Unfinished blobs without a live record (a process died while deleting one, or a Redis failover lost
        the record of one just created) go once they are older than the expiry: nobody can resume them."""
        strays = 0
        started_before = now - (self.config.expire_after or STRAY_AGE_SECONDS)
        for upload_id in await self.rt.io(self.rt.store.unfinished, started_before):
            upload = await self.rt.state.get(upload_id)
            if upload is None or upload.status in (TERMINATED, EXPIRED, FAILED):
                await self.rt.io(self.rt.store.delete, upload_id)
                log.info("deleted stray unfinished blob %s (%s)", upload_id, upload.status if upload else "no record")
                strays += 1
        return strays



def _store_room(store: BlobStore) -> tuple[int | None, int | None]:
    """Executor side: (free space, largest blob) of the store; None where it has no such bound."""
    return store.free_space(), store.max_blob_size()
