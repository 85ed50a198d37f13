"""One Redis lease per upload, so two requests never write the same upload at once.

A lease is `SET NX PX` with a random token, renewed while its holder works and released with
compare-and-delete. A request that finds the upload leased asks the holder to let go over pub/sub (the
usual holder is a client's old, half-open connection after it reconnected); the holder saves what it has
and releases, and the newcomer gets the lease within a few seconds or answers 423.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis

from tuskit import errors

from ..core.model import Upload
from ..core.ports import Advance
from . import keys
from .state import RedisStateStore, clear_writer, parse

log = logging.getLogger(__name__)

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
# take the lease and, only if taken, read a hash in the same round trip (nil: someone else holds it);
# ARGV[3] == '1' (a writer): become the active upload's writer if it has none, after reading it
_ACQUIRE_READING = """
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return false end
local record = redis.call('HGETALL', KEYS[2])
if ARGV[3] == '1' and redis.call('HGET', KEYS[2], 'status') == 'active' then
  local writer = redis.call('HGET', KEYS[2], 'writer')
  if not writer or writer == '' then redis.call('HSET', KEYS[2], 'writer', ARGV[1]) end
end
return record
"""
# KEYS[1]: the lease, KEYS[2]: the upload; ARGV[1]: the lease's token, ARGV[2]: '1' if it ended cleanly
_RELEASE = clear_writer("KEYS[2]", "ARGV[1]", "ARGV[2]") + """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class RedisLease:
    """A held lock (core.ports.Lease). `lost` turns true if renewal failed: its holder must stop writing."""

    def __init__(self, locker: RedisLocker, upload_id: str, token: str) -> None:
        self.locker = locker
        self.upload_id = upload_id
        self.token = token
        self.lost = False
        self._on_release_request: Callable[[], None] | None = None
        self._asked = False  # a release request came before anyone listened for it
        self._renewer: asyncio.Task[None] | None = None
        self._first_renewal: asyncio.TimerHandle | None = None
        self._released = False
        self.upload: Upload | None = None  # the record `acquire(read=True)` read as the lease was taken

    def _schedule_renewal(self) -> None:
        """Most leases (small PATCHes, HEADs) end before a renewal is due: a timer costs far less than a task."""
        self._first_renewal = asyncio.get_running_loop().call_later(self._renew_interval(), self._start_renewing)

    def _renew_interval(self) -> float:
        return self.locker.ttl_ms / 3000

    def _start_renewing(self) -> None:
        self._renewer = asyncio.create_task(self._renew_forever())

    async def _renew_forever(self) -> None:
        """Renew until released. The flag, not only cancellation, ends the loop: a cancellation that lands
        inside a redis-py command can be lost (seen under load: the renewer kept renewing a released lease and
        its releaser, which awaited it, hung with the upload locked), so nothing waits for this task."""
        while not self._released:
            try:
                ok = await self.locker._renew(keys=[self.key], args=[self.token, self.locker.ttl_ms])
            except aioredis.RedisError as exc:
                log.warning("lease renewal for %s failed: %s", self.upload_id, exc)
                ok = 0
            if self._released:
                return
            if not ok:
                self.lost = True
                log.warning("lost the lease on %s; its writer stops", self.upload_id)
                self._ask_to_stop()
                return
            await asyncio.sleep(self._renew_interval())

    def when_asked_to_release(self, callback: Callable[[], None]) -> None:
        """Call `callback` when another request wants this upload, at once if one already asked: a request
        may ask between our acquiring the lease and our starting to write, and must not wait in vain."""
        self._on_release_request = callback
        if self._asked:
            callback()

    def _ask_to_stop(self) -> None:
        self._asked = True
        if self._on_release_request is not None:
            self._on_release_request()

    @property
    def key(self) -> str:
        return keys.lock(self.upload_id)

    def _end(self) -> None:
        """Stop renewing and forget the lease here (in Redis it is gone or about to go)."""
        if self.locker._held.get(self.upload_id) is self:  # a lost lease may have a successor here
            del self.locker._held[self.upload_id]
        self._released = True
        if self._first_renewal is not None:
            self._first_renewal.cancel()
        if self._renewer is not None:
            self._renewer.cancel()  # not awaited (see _renew_forever); a late renewal fails its token check

    async def release(self, advance: Advance | None = None, *, clean: bool = True) -> None:
        """End the lease once; with `advance`, the offset moves and the lease goes in one script (the
        script deletes the lease only when the offset moved; otherwise it is deleted here). `clean`: see
        core.ports.Lease."""
        if self._released:
            return
        self._end()
        if advance is not None:
            try:
                await self.locker.state.advance(self.upload_id, advance, release=(self.key, self.token), clean=clean)
                return
            except BaseException:
                await self.locker._drop(self.upload_id, self.token, clean)
                raise
        await self.locker._drop(self.upload_id, self.token, clean)


class RedisLocker:
    """Hands out leases (core.ports.Locker); one instance per server process, sharing Redis with the others."""

    def __init__(self, redis: aioredis.Redis, state: RedisStateStore, ttl_ms: int = 10_000,
                 wait_seconds: float = 5.0, poll_seconds: float = 0.05) -> None:
        self.redis = redis
        self.state = state
        self.ttl_ms = ttl_ms
        self.wait_seconds = wait_seconds
        self.poll_seconds = poll_seconds
        self._renew = redis.register_script(_RENEW)
        self._release = redis.register_script(_RELEASE)
        self._acquire_reading = redis.register_script(_ACQUIRE_READING)
        self._held: dict[str, RedisLease] = {}
        self._listener: asyncio.Task[None] | None = None
        self.waits = 0  # how many acquisitions had to wait (for metrics)
        self._orphans: dict[str, str] = {}  # upload id -> token of a lease we could not release

    async def start(self) -> None:
        """Listen for release requests aimed at leases this process holds."""
        pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
        await pubsub.psubscribe(keys.RELEASE_CHANNEL_PREFIX + "*")
        self._listener = asyncio.create_task(self._listen(pubsub))

    async def clear_stale(self) -> int:
        """Drop every lease: only for a Redis this process owns alone (the embedded one) at start-up,
        where any lease left is a crashed predecessor's and would otherwise block its upload for a TTL."""
        stale = [key async for key in self.redis.scan_iter(match=keys.LOCK_PREFIX + "*", count=1000)]
        if stale:
            await self.redis.delete(*stale)
        return len(stale)

    async def stop(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, aioredis.RedisError):
                await self._listener

    async def _listen(self, pubsub: aioredis.client.PubSub) -> None:
        while True:
            try:
                async for message in pubsub.listen():
                    channel = message["channel"].decode()
                    lease = self._held.get(channel[len(keys.RELEASE_CHANNEL_PREFIX):])
                    if lease is not None:
                        log.info("upload %s requested by another request; its writer lets go", lease.upload_id)
                        lease._ask_to_stop()
            except aioredis.RedisError as exc:
                log.warning("lock release listener lost redis (%s); reconnecting", exc)
                await asyncio.sleep(1)
                with contextlib.suppress(aioredis.RedisError):
                    await pubsub.psubscribe(keys.RELEASE_CHANNEL_PREFIX + "*")

    async def _drop(self, upload_id: str, token: str, clean: bool) -> None:
        """Compare-and-delete a lease of ours. If Redis is away, remember it and retry at the next acquire:
        otherwise the lease of a request that Redis's outage ended would lock the upload for a whole TTL."""
        try:
            await self._release(keys=[keys.lock(upload_id), keys.upload(upload_id)],
                                args=[token, "1" if clean else "0"])
        except aioredis.RedisError:
            self._orphans[upload_id] = token

    async def _take(self, upload_id: str, token: str, read: bool, write: bool = False) -> tuple[bool, Upload | None]:
        """One attempt: (taken, the upload's record when `read`)."""
        if not read:
            return bool(await self.redis.set(keys.lock(upload_id), token, nx=True, px=self.ttl_ms)), None
        flat = await self._acquire_reading(keys=[keys.lock(upload_id), keys.upload(upload_id)],
                                           args=[token, self.ttl_ms, "1" if write else "0"])
        if flat is None:
            return False, None
        return True, parse(upload_id, dict(zip(flat[::2], flat[1::2], strict=True)))

    async def acquire(self, upload_id: str, *, read: bool = False, write: bool = False,
                      owner: str | None = None) -> RedisLease:
        """Take the lease, asking a current holder to let go; 423 if it is not free in time.

        `read`: also read the upload's record as the lease is taken, in the same round trip; `write`: and
        become its writer if it has none (core.ports.Locker). `owner`: the asker's; if the upload is not
        theirs, a lease held by someone else is a 404 and nobody is asked."""
        await self._drop_orphan(upload_id)
        token = secrets.token_hex(16)
        read_as_taken: list[Upload | None] = []

        async def take() -> bool:
            taken, upload = await self._take(upload_id, token, read or write, write)
            if taken:
                read_as_taken.append(upload)
            return taken

        await self._until(upload_id, owner, take)
        return self._hold(upload_id, token, read_as_taken[0])

    async def wait_released(self, upload_id: str, owner: str) -> bool:
        """If the upload is leased, ask the holder to let go and wait until it did, without taking the
        lease (423 if not in time; 404 if the upload is not `owner`'s). True if there was a holder."""
        await self._drop_orphan(upload_id)
        key = keys.lock(upload_id)
        if not await self.redis.exists(key):
            return False

        async def released() -> bool:
            return not await self.redis.exists(key)

        await self._until(upload_id, owner, released)
        return True

    async def _until(self, upload_id: str, owner: str | None, attempt: Callable[[], Awaitable[bool]]) -> None:
        """Repeat `attempt` until it succeeds, asking the lease's holder to let go; 423 if not in time.

        Only the upload's owner may ask (`owner` None: the server itself, e.g. the sweeper): anyone else
        would cut a stranger's upload with a request that is answered 404 anyway."""
        deadline = time.monotonic() + self.wait_seconds
        next_ask = 0.0  # asked again every second: pub/sub drops messages while a listener reconnects
        while not await attempt():
            if time.monotonic() >= next_ask:
                if next_ask == 0.0:
                    if owner is not None and await self.redis.hget(keys.upload(upload_id), "owner") != owner.encode():
                        raise errors.NOT_FOUND()
                    self.waits += 1
                await self.redis.publish(keys.release_channel(upload_id), "")
                next_ask = time.monotonic() + 1.0
            if time.monotonic() >= deadline:
                raise errors.UPLOAD_LOCKED()
            await asyncio.sleep(self.poll_seconds)

    async def try_acquire(self, upload_id: str) -> RedisLease | None:
        """The lease if it is free right now; nobody is asked to let go (the sweeper must not stop a
        request that is still sending)."""
        await self._drop_orphan(upload_id)
        token = secrets.token_hex(16)
        taken, _ = await self._take(upload_id, token, read=False)
        return self._hold(upload_id, token, None) if taken else None

    async def _drop_orphan(self, upload_id: str) -> None:
        orphan = self._orphans.pop(upload_id, None)
        if orphan is not None:  # who knows what its holder left in flight: it stays the writer, if it was
            await self._drop(upload_id, orphan, clean=False)

    def _hold(self, upload_id: str, token: str, upload: Upload | None) -> RedisLease:
        lease = RedisLease(self, upload_id, token)
        lease.upload = upload
        self._held[upload_id] = lease
        lease._schedule_renewal()
        return lease
