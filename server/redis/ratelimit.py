"""Token buckets in Redis, one per client (owner, or IP without auth), shared by every server process.

Requests spend one token each and are refused (429) when the bucket is empty. Upload bytes spend one
token per byte and may run the bucket into debt: the PATCH is never refused, its reader just waits until
the debt is paid, so the client is slowed to the byte rate and no byte it sent is wasted.
The clock is Redis's own (TIME), so processes on hosts with skewed clocks agree.
"""

from __future__ import annotations

import redis.asyncio as aioredis

from ..core.ports import Verdict
from . import keys

# KEYS[1] bucket; ARGV: rate (tokens/s), burst (capacity), cost, may go into debt (1/0)
# -> {1 if taken else 0, seconds to wait as a string (Lua numbers would be truncated to integers)}
_TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local rate, burst, cost = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local b = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(b[1]) or burst
local ts = tonumber(b[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
local taken, wait = 1, 0
if tokens >= cost or ARGV[4] == '1' then
  tokens = tokens - cost
  if tokens < 0 then wait = -tokens / rate end
else
  taken, wait = 0, (cost - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil((burst - tokens) / rate * 1000) + 1000)
return {taken, tostring(wait)}
"""


class RedisRateLimiter:
    """Both budgets of one server (core.ports.RateLimiter); a rate of 0 switches that budget off (no Redis
    round trip)."""

    def __init__(self, redis: aioredis.Redis, request_rate: float, request_burst: float, byte_rate: int) -> None:
        self.request_rate = request_rate
        self.request_burst = request_burst or max(1.0, 2 * request_rate)
        self.byte_rate = byte_rate
        self._take = redis.register_script(_TAKE)

    async def _spend(self, bucket: str, rate: float, burst: float, cost: float, debt: bool) -> Verdict:
        taken, wait = await self._take(keys=[keys.rate_bucket(bucket)], args=[rate, burst, cost, 1 if debt else 0])
        return Verdict(bool(taken), float(wait))

    async def request(self, client: str) -> Verdict:
        """One request by `client`: allowed, or refused with how long to wait."""
        if not self.request_rate:
            return Verdict(True, 0.0)
        return await self._spend("req:" + client, self.request_rate, self.request_burst, 1, debt=False)

    async def upload_bytes(self, client: str, count: int) -> float:
        """`count` body bytes arrived from `client`: seconds to wait before reading more."""
        if not self.byte_rate:
            return 0.0
        verdict = await self._spend("bytes:" + client, self.byte_rate, self.byte_rate, count, debt=True)
        return verdict.wait
