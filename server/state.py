"""Upload state in Redis: one hash per upload, an expiry index, and compare-and-set on the offset.

Redis is the truth for the offset. Bytes on disk past it are garbage that the next append overwrites, so a
crash between writing bytes and recording them loses nothing a client was told it had sent.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

# Upload statuses. Tombstones (terminated, expired, failed) keep answering 410 with a reason for a while.
ACTIVE = "active"  # accepting bytes (or, for a final, waiting for its partials)
DONE = "done"  # complete and verified: downloadable
FAILED = "failed"  # complete but its declared sha256 did not match: never published
TERMINATED = "terminated"
EXPIRED = "expired"
TOMBSTONE_SECONDS = 7 * 86400

_KEY = "tuskit:upload:"
_EXPIRY = "tuskit:expiry"
_FINALS_OF = "tuskit:finals-of:"

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


class OffsetConflict(Exception):
    """Someone else moved the offset (or the upload stopped being active) since we read it."""


@dataclass(frozen=True)
class Upload:
    """One upload's state as stored; `length` None means deferred."""

    id: str
    offset: int
    length: int | None
    metadata: str  # canonical Upload-Metadata header value
    concat: str  # "" | "partial" | "final"
    parts: tuple[str, ...]
    owner: str
    created: float
    expires: float | None
    status: str
    sha256: str
    reason: str
    finished: float | None

    @property
    def complete(self) -> bool:
        return self.length is not None and self.offset == self.length

    @classmethod
    def from_hash(cls, upload_id: str, h: dict[bytes, bytes]) -> Upload:
        def s(key: str) -> str:
            return h.get(key.encode(), b"").decode()

        return cls(
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


class StateStore:
    """All Redis access for upload state. Every method is one round trip (pipelined or scripted)."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self.redis = redis
        self._advance = redis.register_script(_ADVANCE)
        self._settle = redis.register_script(_SETTLE)
        self._set_length = redis.register_script(_SET_LENGTH)

    async def create(self, upload: Upload) -> None:
        fields: dict[str, Any] = {
            "offset": upload.offset, "length": "" if upload.length is None else upload.length,
            "metadata": upload.metadata, "concat": upload.concat, "parts": " ".join(upload.parts),
            "owner": upload.owner, "created": upload.created,
            "expires": "" if upload.expires is None else upload.expires, "status": upload.status,
            "sha256": upload.sha256, "reason": upload.reason,
        }
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(_KEY + upload.id, mapping=fields)
            if upload.expires is not None:
                pipe.zadd(_EXPIRY, {upload.id: upload.expires})
            for part in upload.parts:
                pipe.sadd(_FINALS_OF + part, upload.id)
            await pipe.execute()

    async def get(self, upload_id: str) -> Upload | None:
        return self.parse(upload_id, await self.redis.hgetall(self.key(upload_id)))

    @staticmethod
    def key(upload_id: str) -> str:
        """The upload's hash, for callers that read it in one round trip with something else."""
        return _KEY + upload_id

    @staticmethod
    def parse(upload_id: str, h: dict[bytes, bytes]) -> Upload | None:
        return Upload.from_hash(upload_id, h) if h else None

    async def get_many(self, upload_ids: list[str]) -> list[Upload | None]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for upload_id in upload_ids:
                pipe.hgetall(_KEY + upload_id)
            hashes = await pipe.execute()
        return [Upload.from_hash(i, h) if h else None for i, h in zip(upload_ids, hashes, strict=True)]

    async def advance(self, upload_id: str, old: int, new: int, expires: float | None,
                      release: tuple[str, str] | None = None) -> None:
        """Compare-and-set the offset from `old` to `new`, sliding the expiry when given; `release`: a lease
        (key, token) to compare-and-delete if the offset moved (a PATCH's last round trip does both)."""
        keys, args = [_KEY + upload_id, _EXPIRY], [old, new, "" if expires is None else repr(expires), upload_id]
        if release is not None:
            keys.append(release[0])
            args.append(release[1])
        result = await self._advance(keys=keys, args=args)
        if result != 1:
            raise OffsetConflict({-1: "gone", -2: "not active", -3: "offset moved"}.get(result, str(result)))

    async def set_length(self, upload_id: str, length: int) -> bool:
        """Fix a deferred length once; False if it was already set (to anything)."""
        return bool(await self._set_length(keys=[_KEY + upload_id], args=[length]))

    async def settle(self, upload_id: str, status: str, **fields: Any) -> bool:
        """active -> `status` with extra fields, atomically; False if it was no longer active."""
        args: list[Any] = [upload_id, status, "finished", time.time()]
        for key, value in fields.items():
            args += [key, value]
        return await self._settle(keys=[_KEY + upload_id, _EXPIRY], args=args) == 1

    async def bury(self, upload_id: str, status: str, reason: str) -> None:
        """Replace an upload by a tombstone that answers 410 with `reason` for a while."""
        key = _KEY + upload_id
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, mapping={"status": status, "reason": reason})
            pipe.expire(key, TOMBSTONE_SECONDS)
            pipe.zrem(_EXPIRY, upload_id)
            pipe.delete(_FINALS_OF + upload_id)
            await pipe.execute()

    async def finals_of(self, partial_id: str) -> list[str]:
        return [m.decode() for m in await self.redis.smembers(_FINALS_OF + partial_id)]

    async def expired(self, now: float, limit: int = 500) -> list[str]:
        return [m.decode() for m in await self.redis.zrangebyscore(_EXPIRY, 0, now, start=0, num=limit)]
