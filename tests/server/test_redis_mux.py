"""The server's Redis client on a real redis-server: commands, scripts and pipelines pipelined on one
connection answer as redis-py's pooled connections do, any number at once, and a restarted, killed or
hung Redis fails what was in flight (as RedisError, a 503 upstream) without mixing up later replies."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
import uvloop
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from tuskit.server.redis.connect import connect
from tuskit.server.redis.embedded import EmbeddedRedis
from tuskit.server.redis.mux import MultiplexedRedis

SCRIPT = "return {KEYS[1], ARGV[1], redis.call('HGETALL', KEYS[1])}"


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    """A redis-server of this test's own, to stop, kill and restart."""
    server = EmbeddedRedis(tmp_path)
    server.start()
    yield server
    if server.proc is not None:
        os.kill(server.proc.pid, signal.SIGCONT)
    server.stop()


def _run(url: str, body: Callable[[aioredis.Redis], Awaitable[None]], client: aioredis.Redis | None = None) -> None:
    async def main() -> None:
        c = client or connect(url)
        try:
            await body(c)
        finally:
            await c.aclose()

    asyncio.run(main())


async def _operations(client: aioredis.Redis) -> list[Any]:
    """A bit of everything the server does, results (or error types) in order."""
    out: list[Any] = []
    script = client.register_script(SCRIPT)
    out.append(await client.set("lease", "t", nx=True, px=10_000))
    out.append(await client.set("lease", "t", nx=True, px=10_000))
    out.append(await client.hset("h", mapping={"offset": 5, "expires": 1.5, "status": "active"}))
    out.append(await client.hgetall("h"))
    out.append(await script(keys=["h"], args=[2.5]))
    await client.script_flush()
    out.append(await script(keys=["h"], args=[7]))  # NOSCRIPT: loaded again and run
    async with client.pipeline(transaction=True) as pipe:
        pipe.hset("h2", mapping={"a": 1})
        pipe.zadd("z", {"m": 2.5})
        pipe.sadd("s", "q")
        out.append(await pipe.execute())
    async with client.pipeline(transaction=False) as pipe:
        pipe.hgetall("h")
        pipe.smembers("s")
        pipe.zrangebyscore("z", 0, 10, start=0, num=5)
        pipe.publish("channel", "x")
        out.append(await pipe.execute())
    wrong_type = client.register_script("return redis.call('HGETALL', KEYS[1])")
    for failing in (client.hgetall("lease"), client.evalsha("0" * 40, 0), wrong_type(keys=["lease"])):
        try:
            await failing
        except ResponseError as exc:
            out.append(type(exc).__name__)
    async with client.pipeline(transaction=True) as pipe:
        pipe.set("lease", "u")
        pipe.hgetall("lease")
        try:
            await pipe.execute()
        except ResponseError as exc:
            out.append(type(exc).__name__)
    out.append(await client.get("lease"))
    out.append(sorted([key async for key in client.scan_iter(match="h*")]))
    out.append(await client.delete("h", "h2", "s", "z", "lease"))
    return out


def test_replies_are_those_of_redis_py_own_connections(redis_url: str) -> None:
    results: dict[str, list[Any]] = {}

    async def multiplexed(client: aioredis.Redis) -> None:
        assert isinstance(client, MultiplexedRedis)
        results["multiplexed"] = await _operations(client)

    async def pooled(client: aioredis.Redis) -> None:
        results["pooled"] = await _operations(client)

    _run(redis_url, multiplexed)
    _run(redis_url, pooled, aioredis.Redis.from_url(redis_url, protocol=2))
    assert results["multiplexed"] == results["pooled"]
    assert results["multiplexed"][3] == {b"offset": b"5", b"expires": b"1.5", b"status": b"active"}


def test_thousands_of_commands_at_once_share_one_connection(redis_url: str) -> None:
    async def body(client: aioredis.Redis) -> None:
        await client.hset("h", mapping={"offset": 1})

        async def pipelined(i: int) -> list[Any]:
            async with client.pipeline(transaction=True) as pipe:
                pipe.hset(f"k{i}", mapping={"i": i})
                pipe.hgetall(f"k{i}")
                return await pipe.execute()

        singles, pipes = await asyncio.gather(
            asyncio.gather(*(client.hgetall("h") for _ in range(3000))),
            asyncio.gather(*(pipelined(i) for i in range(1000))))
        assert all(reply == {b"offset": b"1"} for reply in singles)
        assert all(reply == [1, {b"i": str(i).encode()}] for i, reply in enumerate(pipes))
        # CLIENT LIST itself takes a pooled connection; every other command came on one connection
        others = [c for c in await client.client_list() if not c["cmd"].startswith("client")]
        assert len(others) == 1, others

    _run(redis_url, body)


def test_a_blocking_read_takes_a_connection_of_its_own(redis_url: str) -> None:
    """XREAD BLOCK on the shared connection would hold every command behind it until the block ends
    (redis-py spells the option as bytes, which a check for the string missed)."""
    async def body(client: aioredis.Redis) -> None:
        await client.set("k", "v")
        blocked = asyncio.ensure_future(client.xread({"s": "0-0"}, block=0))
        assert await asyncio.wait_for(client.get("k"), 5) == b"v"
        assert not blocked.done()
        added = await client.xadd("s", {"f": "1"})
        [(_stream, [(entry_id, _fields)])] = await asyncio.wait_for(blocked, 5)
        assert entry_id == added

    _run(redis_url, body)


def test_a_cancelled_command_does_not_shift_the_replies_after_it(redis_url: str) -> None:
    async def body(client: aioredis.Redis) -> None:
        for i in range(10):
            await client.set(f"k{i}", i)
        calls = [asyncio.ensure_future(client.get(f"k{i}")) for i in range(10)]
        await asyncio.sleep(0)  # every command is on the wire
        calls[3].cancel()
        replies = await asyncio.gather(*calls, return_exceptions=True)
        assert isinstance(replies[3], asyncio.CancelledError)
        assert [r for i, r in enumerate(replies) if i != 3] == [str(i).encode() for i in range(10) if i != 3]
        assert await client.get("k9") == b"9"

    _run(redis_url, body)


def test_killed_redis_fails_what_was_in_flight_then_a_restarted_one_answers(own_redis: EmbeddedRedis) -> None:
    async def body(client: aioredis.Redis) -> None:
        await client.set("k", "before")
        assert own_redis.proc is not None
        os.kill(own_redis.proc.pid, signal.SIGSTOP)  # commands go out and wait
        in_flight = [asyncio.ensure_future(client.get("k")) for _ in range(5)]
        await asyncio.sleep(0.2)
        own_redis.proc.kill()  # its sockets close: the waiting commands learn it
        failures = await asyncio.gather(*in_flight, return_exceptions=True)
        assert all(isinstance(f, RedisConnectionError) for f in failures), failures
        own_redis.proc.wait()
        own_redis.proc = None
        with pytest.raises(RedisError):  # nobody listens: refused at once, not after a timeout
            await client.get("k")
        own_redis.start()  # same socket, same append-only file
        assert await client.get("k") == b"before"

    _run(own_redis.url, body)


def test_hung_redis_times_out_and_the_next_command_gets_a_fresh_connection(own_redis: EmbeddedRedis) -> None:
    pool = aioredis.BlockingConnectionPool.from_url(own_redis.url, protocol=2, socket_timeout=0.5)

    async def body(client: aioredis.Redis) -> None:
        await client.set("k", "v")
        assert own_redis.proc is not None
        os.kill(own_redis.proc.pid, signal.SIGSTOP)
        started = time.monotonic()
        with pytest.raises(RedisTimeoutError):
            await client.get("k")
        assert time.monotonic() - started < 5
        os.kill(own_redis.proc.pid, signal.SIGCONT)
        assert await client.get("k") == b"v"  # the late reply to the timed-out GET went with the old connection

    _run(own_redis.url, body, MultiplexedRedis.from_pool(pool))


def test_a_redis_that_hangs_up_at_once_fails_commands_as_redis_errors(tmp_path: Path) -> None:
    """A dying Redis accepts and closes at once (seen in CI while the embedded one failed to restart): the
    client may find its fresh connection closed before it writes, and that must be a RedisError (the feed
    and the 503s handle those), never uvloop's RuntimeError for a closed handle."""
    path = tmp_path / "hangs-up.sock"
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(path))
    listener.listen(64)

    def hang_up() -> None:
        with contextlib.suppress(OSError):  # closed at the end of the test
            while True:
                listener.accept()[0].close()

    threading.Thread(target=hang_up, daemon=True).start()

    async def body(client: aioredis.Redis) -> None:
        failures = []
        for _ in range(300):
            try:
                await client.get("k")
            except Exception as exc:  # the type is what is checked
                failures.append(type(exc))
        assert failures and all(issubclass(f, RedisError) for f in failures), set(failures)

    try:
        uvloop.run(_client_of(f"unix://{path}", body))
    finally:
        listener.close()


async def _client_of(url: str, body: Callable[[aioredis.Redis], Awaitable[None]]) -> None:
    client = connect(url)
    try:
        await body(client)
    finally:
        await client.aclose()
