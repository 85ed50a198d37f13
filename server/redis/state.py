"""Upload state in Redis: one hash per upload, an expiry index, and compare-and-set on the offset.

Redis is the truth for the offset. Bytes on disk past it are garbage that the next append overwrites, so a
crash between writing bytes and recording them loses nothing a client was told it had sent.
"""

from __future__ import annotations

import time
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from ..core.model import Upload
from ..core.ports import Advance, OffsetConflict
from . import keys

TOMBSTONE_SECONDS = 7 * 86400

# Advance the offset only from the value the writer started at, and only while the upload is active.
# With KEYS[3] (a lease) and ARGV[5] (its token), the writer's lease is released in the same round trip.
_ADVANCE = """
local cur = redis.call('HMGET', KEYS[1], 'offset', 'status')
if not cur[1] then return -1 end
if cur[2] ~= 'active' then return -2 end
if cur[1] ~= ARGV[1] then return -3 end
redis.call('HSET', KEYS[1], 'offset', ARGV[2])
if ARGV[3] ~= '' then
  redis.call('HSET', KEYS[1], 'expires', ARGV[3])
  redis.call('ZADD', KEYS[2], ARGV[3], ARGV[4])
end
if KEYS[3] and redis.call('GET', KEYS[3]) == ARGV[5] then redis.call('DEL', KEYS[3]) end
return 1
"""

# Move an active upload to another status (done/failed/...) exactly once.
_SETTLE = """
local cur = redis.call('HGET', KEYS[1], 'status')
if not cur then return -1 end
if cur ~= 'active' then return -2 end
for i = 3, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
redis.call('HSET', KEYS[1], 'status', ARGV[2])
redis.call('ZREM', KEYS[2], ARGV[1])
return 1
"""


# Fix a deferred length (stored as '') once; setting the same value again is fine, another value is not.
_SET_LENGTH = """
local cur = redis.call('HGET', KEYS[1], 'length')
if cur == '' then redis.call('HSET', KEYS[1], 'length', ARGV[1]) return 1 end
if cur == ARGV[1] then return 1 end
return 0
"""


def _to_hash(upload: Upload) -> dict[str, Any]:
    return {
        "offset": upload.offset, "length": "" if upload.length is None else upload.length,
        "metadata": upload.metadata, "concat": upload.concat, "parts": " ".join(upload.parts),
        "owner": upload.owner, "created": upload.created,
        "expires": "" if upload.expires is None else upload.expires, "status": upload.status,
        "sha256": upload.sha256, "reason": upload.reason,
    }


def parse(upload_id: str, h: dict[bytes, bytes]) -> Upload | None:
    """An upload from its hash (as HGETALL returns it); None for an empty hash (no such upload)."""
    if not h:
        return None

    def s(key: str) -> str:
        return h.get(key.encode(), b"").decode()

    return Upload(
        id=upload_id,
        offset=int(s("offset") or 0),
        length=int(s("length")) if s("length") else None,
        metadata=s("metadata"),
        concat=s("concat"),
        parts=tuple(s("parts").split()),
        owner=s("owner"),
        created=float(s("created") or 0),
        expires=float(s("expires")) if s("expires") else None,
        status=s("status"),
        sha256=s("sha256"),
        reason=s("reason"),
        finished=float(s("finished")) if s("finished") else None,
    )


class RedisStateStore:
    """All Redis access for upload state (core.ports.StateStore). Every method is one round trip
    (pipelined or scripted)."""

    unavailable: tuple[type[BaseException], ...] = (RedisError,)

    def __init__(self, redis: aioredis.Redis) -> None:
        self.redis = redis
        self._advance = redis.register_script(_ADVANCE)
        self._settle = redis.register_script(_SETTLE)
        self._set_length = redis.register_script(_SET_LENGTH)

    async def create(self, upload: Upload) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(keys.upload(upload.id), mapping=_to_hash(upload))
            if upload.expires is not None:
                pipe.zadd(keys.EXPIRY_INDEX, {upload.id: upload.expires})
            for part in upload.parts:
                pipe.sadd(keys.finals_of(part), upload.id)
            await pipe.execute()

    async def get(self, upload_id: str) -> Upload | None:
        return parse(upload_id, await self.redis.hgetall(keys.upload(upload_id)))

    async def get_many(self, upload_ids: list[str]) -> list[Upload | None]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for upload_id in upload_ids:
                pipe.hgetall(keys.upload(upload_id))
            hashes = await pipe.execute()
        return [parse(i, h) for i, h in zip(upload_ids, hashes, strict=True)]

    async def advance(self, upload_id: str, advance: Advance, release: tuple[str, str] | None = None) -> None:
        """Compare-and-set the offset; `release`: a lease (key, token) to compare-and-delete if the offset
        moved (RedisLease.release does both in a PATCH's last round trip)."""
        expires = "" if advance.expires is None else repr(advance.expires)
        script_keys = [keys.upload(upload_id), keys.EXPIRY_INDEX]
        args: list[Any] = [advance.old, advance.new, expires, upload_id]
        if release is not None:
            script_keys.append(release[0])
            args.append(release[1])
        result = await self._advance(keys=script_keys, args=args)
        if result != 1:
            raise OffsetConflict({-1: "gone", -2: "not active", -3: "offset moved"}.get(result, str(result)))

    async def set_length(self, upload_id: str, length: int) -> bool:
        return bool(await self._set_length(keys=[keys.upload(upload_id)], args=[length]))

    async def settle(self, upload_id: str, status: str, **fields: Any) -> bool:
        args: list[Any] = [upload_id, status, "finished", time.time()]
        for key, value in fields.items():
            args += [key, value]
        return await self._settle(keys=[keys.upload(upload_id), keys.EXPIRY_INDEX], args=args) == 1

    async def bury(self, upload_id: str, status: str, reason: str) -> None:
        key = keys.upload(upload_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, mapping={"status": status, "reason": reason})
            pipe.expire(key, TOMBSTONE_SECONDS)
            pipe.zrem(keys.EXPIRY_INDEX, upload_id)
            pipe.delete(keys.finals_of(upload_id))
            await pipe.execute()

    async def finals_of(self, partial_id: str) -> list[str]:
        return [m.decode() for m in await self.redis.smembers(keys.finals_of(partial_id))]

    async def expired(self, now: float, limit: int = 500) -> list[str]:
        return [m.decode() for m in await self.redis.zrangebyscore(keys.EXPIRY_INDEX, 0, now, start=0, num=limit)]

    async def ping(self) -> None:
        await self.redis.ping()
