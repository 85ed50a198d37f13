"""The server's Redis clients: one pool per process, sized for bursts, from any of the URL forms --redis-url
takes:

- `redis://[[user]:password@]host:port[/db]`, `unix://path` and `rediss://...` (TLS; redis-py's query
  options such as `?ssl_ca_certs=/path/ca.pem` apply);
- `redis+sentinel://[[user]:password@]host:port[,host:port...]/SERVICE[/db]` (or `rediss+sentinel://` for
  TLS): the master of SERVICE as the Sentinels there name it, found again after a failover. The password
  is the Redis servers'; the Sentinels are asked without one. Query options apply to the Redis servers.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import redis.asyncio as aioredis
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool

from .mux import MultiplexedRedis

MAX_CONNECTIONS = 100
SENTINEL_SCHEMES = {"redis+sentinel": False, "rediss+sentinel": True}  # scheme -> TLS


class _BlockingSentinelPool(SentinelConnectionPool, aioredis.BlockingConnectionPool):
    """The master's pool waits for a free connection under a burst, as the plain one does (see `connect`)."""


def connect(url: str, socket_timeout: float | None = 10) -> aioredis.Redis:
    """redis-py's default pool refuses the 101st concurrent command ("Too many connections": 503s under a
    burst of 200 uploads); a blocking pool makes a burst wait its turn for a connection instead. Commands
    go through the pool only when they need a connection to themselves (see mux.py); RESP2 on every
    connection, so replies have one shape whichever way they came (redis-py 8 would speak RESP3).

    `socket_timeout` None: for a connection that blocks on purpose (XREAD BLOCK)."""
    options: dict[str, Any] = {"protocol": 2, "max_connections": MAX_CONNECTIONS, "timeout": 10,
                               "socket_timeout": socket_timeout, "socket_connect_timeout": 3,
                               "health_check_interval": 30}
    scheme = url.split("://", 1)[0]
    if scheme in SENTINEL_SCHEMES:
        sentinel, service = sentinel_for(url, options)
        return sentinel.master_for(service, connection_pool_class=_BlockingSentinelPool)
    pool = aioredis.BlockingConnectionPool.from_url(url, **options)
    return MultiplexedRedis.from_pool(pool)


def sentinel_for(url: str, options: dict[str, Any]) -> tuple[Sentinel, str]:
    """The Sentinels of a `redis+sentinel://` URL and the service they watch."""
    parts = urlsplit(url)
    path = [p for p in parts.path.split("/") if p]
    if not path or len(path) > 2 or not parts.netloc:
        raise ValueError(f"--redis-url {url!r}: expected redis+sentinel://host:port[,host:port...]/SERVICE[/db]")
    hosts = parts.netloc.rsplit("@", 1)[-1]
    sentinels = []
    for hostport in hosts.split(","):
        host, _, port = hostport.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"--redis-url {url!r}: {hostport!r} is not host:port")
        sentinels.append((host.strip("[]"), int(port)))
    server: dict[str, Any] = {**options, **dict(parse_qsl(parts.query)), "db": int(path[1]) if len(path) > 1 else 0}
    if parts.username:
        server["username"] = unquote(parts.username)
    if parts.password:
        server["password"] = unquote(parts.password)
    tls = SENTINEL_SCHEMES[parts.scheme]
    if tls:
        server["ssl"] = True
    asking = {"socket_timeout": 3, "socket_connect_timeout": 3, "ssl": tls}
    return Sentinel(sentinels, sentinel_kwargs=asking, **server), path[0]
