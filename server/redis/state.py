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
from ..core.ports import Advance, OffsetConflict, Position
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


# Tombstone an upload: it leaves the expiry index and its owner's listing (the owner is read here, so the
# caller need not know it), and its record expires after a while.
_BURY = """
local owner = redis.call('HGET', KEYS[1], 'owner')
redis.call('HSET', KEYS[1], 'status', ARGV[1], 'reason', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('ZREM', KEYS[2], ARGV[4])
redis.call('DEL', KEYS[3])
if owner then redis.call('ZREM', ARGV[5] .. owner, ARGV[4]) end
return 1
"""

# One page of an owner's listing with each upload's record, in one round trip. ARGV: the position to start
# after (score '' for the first page) and its id, how many rows, the record key prefix. Uploads created at
# the same instant as the last one shown sort by id (as the sorted set does), so none is skipped or repeated.
# An index entry whose record is gone (it expired, or Redis lost it) is removed as it is met.
_OWNED_PAGE = """
local after, after_id, want, prefix = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local rows
if after == '' then
  rows = redis.call('ZREVRANGEBYSCORE', KEYS[1], '+inf', '-inf', 'WITHSCORES', 'LIMIT', 0, want)
else
  local ties = redis.call('ZCOUNT', KEYS[1], after, after)
  rows = redis.call('ZREVRANGEBYSCORE', KEYS[1], after, '-inf', 'WITHSCORES', 'LIMIT', 0, want + ties)
end
local out, taken = {}, 0
for i = 1, #rows, 2 do
  local id, score = rows[i], rows[i + 1]
  if after == '' or tonumber(score) < tonumber(after) or id < after_id then
    if taken == want then break end
    taken = taken + 1
    local record = redis.call('HGETALL', prefix .. id)
    if #record == 0 then redis.call('ZREM', KEYS[1], id) end
    table.insert(out, id)
    table.insert(out, score)
    table.insert(out, record)
  end
end
return out
"""

# What post-processing found, recorded only while the record exists (never recreating an expired one).
_NOTE_PROCESSED = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'type', ARGV[1], 'thumbnails', ARGV[2])
return 1
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
        content_type=s("type"),
        thumbnails=tuple(int(size) for size in s("thumbnails").split()),
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
        self._bury = redis.register_script(_BURY)
        self._owned_page = redis.register_script(_OWNED_PAGE)
        self._note_processed = redis.register_script(_NOTE_PROCESSED)

    async def create(self, upload: Upload) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(keys.upload(upload.id), mapping=_to_hash(upload))
            if upload.expires is not None:
                pipe.zadd(keys.EXPIRY_INDEX, {upload.id: upload.expires})
            if upload.listed:
                pipe.zadd(keys.owned(upload.owner), {upload.id: upload.created})
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
        await self._bury(keys=[keys.upload(upload_id), keys.EXPIRY_INDEX, keys.finals_of(upload_id)],
                         args=[status, reason, TOMBSTONE_SECONDS, upload_id, keys.OWNED_PREFIX])

    async def finals_of(self, partial_id: str) -> list[str]:
        return [m.decode() for m in await self.redis.smembers(keys.finals_of(partial_id))]

    async def expired(self, now: float, limit: int = 500) -> list[str]:
        return [m.decode() for m in await self.redis.zrangebyscore(keys.EXPIRY_INDEX, 0, now, start=0, num=limit)]

    async def owned(self, owner: str, limit: int, after: Position | None) -> tuple[list[Upload], Position | None]:
        score, after_id = ("", "") if after is None else (repr(after[0]), after[1])
        flat = await self._owned_page(keys=[keys.owned(owner)], args=[score, after_id, limit + 1, keys.UPLOAD_PREFIX])
        rows = [(flat[i].decode(), float(flat[i + 1]), flat[i + 2]) for i in range(0, len(flat), 3)]
        more = len(rows) > limit
        rows = rows[:limit]
        uploads = []
        for upload_id, _, record in rows:
            upload = parse(upload_id, dict(zip(record[::2], record[1::2], strict=True)))
            if upload is not None:
                uploads.append(upload)
        return uploads, (rows[-1][1], rows[-1][0]) if more else None

    async def note_processed(self, upload_id: str, content_type: str, thumbnails: tuple[int, ...]) -> None:
        await self._note_processed(keys=[keys.upload(upload_id)],
                                   args=[content_type, " ".join(map(str, thumbnails))])

    async def ping(self) -> None:
        await self.redis.ping()
