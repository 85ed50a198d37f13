"""The server's Redis client: one pool per process, sized for bursts."""

from __future__ import annotations

import redis.asyncio as aioredis

from .mux import MultiplexedRedis

MAX_CONNECTIONS = 100


def connect(url: str) -> aioredis.Redis:
    """redis-py's default pool refuses the 101st concurrent command ("Too many connections": 503s under a
    burst of 200 uploads); a blocking pool makes a burst wait its turn for a connection instead. Commands
    go through the pool only when they need a connection to themselves (see mux.py); RESP2 on every
    connection, so replies have one shape whichever way they came (redis-py 8 would speak RESP3)."""
    pool = aioredis.BlockingConnectionPool.from_url(
        url, protocol=2, max_connections=MAX_CONNECTIONS, timeout=10,
        socket_timeout=10, socket_connect_timeout=3, health_check_interval=30)
    return MultiplexedRedis.from_pool(pool)
