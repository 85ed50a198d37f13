"""Upload state in Redis: one hash per upload, an expiry index, and compare-and-set on the offset.

Redis is the truth for the offset. Bytes on disk past it are garbage that the next append overwrites, so a
crash between writing bytes and recording them loses nothing a client was told it had sent.
"""

from __future__ import annotations

import time
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from ..core.model import DONE, FIRST_SEGMENTS, Segments, Upload
from ..core.ports import Advance, OffsetConflict, Position
from . import keys

TOMBSTONE_SECONDS = 7 * 86400



def clear_writer(upload: str, token: str, clean: str) -> str:
    """Lua: a lease's holder ended cleanly (`clean` == '1'); if it is the upload's writer (`token`), the
    last segment has no live writer any more. Shared with the lease's release (locks.py)."""
    return f"""
if {clean} == '1' and redis.call('HGET', {upload}, 'writer') == {token} then
  redis.call('HSET', {upload}, 'writer', '')
end
"""

# what Redis says when it cannot persist (MISCONF) because its disk is full: writes are refused until it
# can write its append-only file again (the embedded redis keeps it in the data dir, beside the uploads)
_DISK_FULL = ("No space left on device", "Disk quota exceeded")

# Advance the offset only from the value the writer started at, and only while the upload is active.
# ARGV[5] (when not empty): the upload's segments from now on, ARGV[6] their last one's writer. With
# KEYS[3] (a lease) and ARGV[7] (its token), the writer's lease is released in the same round trip, and
# with ARGV[8] == '1' (it ended cleanly) it stops being the upload's writer.
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
if ARGV[5] ~= '' then redis.call('HSET', KEYS[1], 'segments', ARGV[5], 'writer', ARGV[6]) end
if KEYS[3] then
  if redis.call('GET', KEYS[3]) == ARGV[7] then redis.call('DEL', KEYS[3]) end
""" + clear_writer("KEYS[1]", "ARGV[7]", "ARGV[8]") + """
end
return 1
"""

# A final that ends (done, failed or buried) no longer waits for its partials: leave their finals-of sets,
# so a set goes with its last final. KEYS[1] is the upload; ARGV[1] its id, ARGV[2] the finals-of prefix.
_LEAVE_PARTIALS = """
for part in string.gmatch(redis.call('HGET', KEYS[1], 'parts') or '', '%S+') do
  redis.call('SREM', ARGV[2] .. part, ARGV[1])
end
"""

# A tombstone answers 410 with its reason for a while, then goes. Of its metadata (up to a header's worth
# of client text) it keeps only a short name and relative path, so a listing can still say which file
# failed. ARGV[3] is its lifetime in seconds.
_TOMBSTONE = """
local kept = {}
for item in string.gmatch(redis.call('HGET', KEYS[1], 'metadata') or '', '[^,]+') do
  local key = string.match(item, '^(%S+)')
  if (key == 'filename' or key == 'name' or key == 'relativePath') and #item <= 1024 then
    table.insert(kept, item)
  end
end
redis.call('HSET', KEYS[1], 'metadata', table.concat(kept, ','))
redis.call('EXPIRE', KEYS[1], ARGV[3])
"""

# Move an active upload to another status (done/failed) exactly once; ARGV[4] the status, ARGV[5...] fields.
_SETTLE = """
local cur = redis.call('HGET', KEYS[1], 'status')
if not cur then return -1 end
if cur ~= 'active' then return -2 end
for i = 5, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
redis.call('HSET', KEYS[1], 'status', ARGV[4])
redis.call('ZREM', KEYS[2], ARGV[1])
""" + _LEAVE_PARTIALS + """
if ARGV[3] ~= '0' then
""" + _TOMBSTONE + """
end
return 1
"""

# Replace an upload by a tombstone (KEYS[3]: its own finals-of set, which goes with it); it also leaves its
# owner's listing (ARGV[6]: the listing key prefix; the owner is read here, so the caller need not know it).
_BURY = """
local owner = redis.call('HGET', KEYS[1], 'owner')
redis.call('HSET', KEYS[1], 'status', ARGV[4], 'reason', ARGV[5])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('DEL', KEYS[3])
if owner then redis.call('ZREM', ARGV[6] .. owner, ARGV[1]) end
""" + _LEAVE_PARTIALS + _TOMBSTONE


# Progress without a new offset: slide an active upload's expiry.
_TOUCH = """
if redis.call('HGET', KEYS[1], 'status') ~= 'active' then return 0 end
redis.call('HSET', KEYS[1], 'expires', ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
return 1
"""

# Fix a deferred length (stored as '') once; setting the same value again is fine, another value is not.
_SET_LENGTH = """
local cur = redis.call('HGET', KEYS[1], 'length')
if cur == '' then redis.call('HSET', KEYS[1], 'length', ARGV[1]) return 1 end
if cur == ARGV[1] then return 1 end
return 0
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
        "segments": encode_segments(upload.segments), "writer": upload.writer,
    }


def encode_segments(segments: Segments) -> str:
    return " ".join(f"{name}:{start}" for name, start in segments)


def _decode_segments(text: str) -> Segments:
    if not text:
        return FIRST_SEGMENTS  # a record from before segments: its blob is the first one
    return tuple((name, int(start)) for name, _, start in (s.rpartition(":") for s in text.split()))


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
        segments=_decode_segments(s("segments")),
        writer=s("writer"),
    )


class RedisStateStore:
    """All Redis access for upload state (core.ports.StateStore). Every method is one round trip
    (pipelined or scripted)."""

    unavailable: tuple[type[BaseException], ...] = (RedisError,)

    def __init__(self, redis: aioredis.Redis) -> None:
        self.redis = redis
        self._advance = redis.register_script(_ADVANCE)
        self._settle = redis.register_script(_SETTLE)
        self._bury = redis.register_script(_BURY)
        self._set_length = redis.register_script(_SET_LENGTH)
        self._owned_page = redis.register_script(_OWNED_PAGE)
        self._note_processed = redis.register_script(_NOTE_PROCESSED)
        self._touch = redis.register_script(_TOUCH)

    def out_of_space(self, exc: BaseException) -> bool:
        message = str(exc)  # in a pipeline: "Command # 1 (HSET ...) of pipeline caused error: MISCONF ..."
        return isinstance(exc, ResponseError) and "MISCONF" in message and any(r in message for r in _DISK_FULL)

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

    async def advance(self, upload_id: str, advance: Advance, release: tuple[str, str] | None = None,
                      clean: bool = True) -> None:
        """Compare-and-set the offset; `release`: a lease (key, token) to compare-and-delete if the offset
        moved (RedisLease.release does both in a PATCH's last round trip), `clean` as Lease.release."""
        expires = "" if advance.expires is None else repr(advance.expires)
        segments = "" if advance.segments is None else encode_segments(advance.segments)
        script_keys = [keys.upload(upload_id), keys.EXPIRY_INDEX]
        args: list[Any] = [advance.old, advance.new, expires, upload_id, segments, advance.writer]
        if release is not None:
            script_keys.append(release[0])
            args += [release[1], "1" if clean else "0"]
        result = await self._advance(keys=script_keys, args=args)
        if result != 1:
            raise OffsetConflict({-1: "gone", -2: "not active", -3: "offset moved"}.get(result, str(result)))

    async def set_length(self, upload_id: str, length: int) -> bool:
        return bool(await self._set_length(keys=[keys.upload(upload_id)], args=[length]))

    async def settle(self, upload_id: str, status: str, **fields: Any) -> bool:
        """active -> `status` once; anything but done becomes a tombstone that expires."""
        ttl = 0 if status == DONE else TOMBSTONE_SECONDS
        args: list[Any] = [upload_id, keys.FINALS_OF_PREFIX, ttl, status, "finished", time.time()]
        for key, value in fields.items():
            args += [key, value]
        return await self._settle(keys=[keys.upload(upload_id), keys.EXPIRY_INDEX], args=args) == 1

    async def bury(self, upload_id: str, status: str, reason: str) -> None:
        await self._bury(keys=[keys.upload(upload_id), keys.EXPIRY_INDEX, keys.finals_of(upload_id)],
                         args=[upload_id, keys.FINALS_OF_PREFIX, TOMBSTONE_SECONDS, status, reason,
                               keys.OWNED_PREFIX])

    async def finals_of(self, partial_id: str) -> list[str]:
        return [m.decode() for m in await self.redis.smembers(keys.finals_of(partial_id))]

    async def expired(self, now: float, limit: int, skip: int = 0) -> list[str]:
        found = await self.redis.zrangebyscore(keys.EXPIRY_INDEX, 0, now, start=skip, num=limit)
        return [m.decode() for m in found]

    async def touch(self, upload_id: str, expires: float) -> None:
        await self._touch(keys=[keys.upload(upload_id), keys.EXPIRY_INDEX], args=[upload_id, repr(expires)])

    async def forget(self, upload_id: str) -> None:
        await self.redis.zrem(keys.EXPIRY_INDEX, upload_id)

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
