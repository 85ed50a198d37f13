"""Every Redis command of a process pipelined on one connection (a pool keeps what needs a connection to
itself: pub/sub, blocking reads, WATCH).

A connection pool hands each command a connection of its own from send to reply, so it carries at most
its size in commands per round trip, and a round trip on a busy event loop is a whole loop iteration.
With 1,000 uploads streaming, iterations took hundreds of milliseconds: the 100 connections were all
held (p50 34 ms, p90 0.5 s, p99 1.2 s from taking a connection to giving it back), commands waited
longer than the pool's 10 s for one ("No connection available", 503s) and lease renewals starved.
Redis answers in order, so one connection can carry any number of commands at once: each is written
as it is issued and its reply is matched by position. Nothing waits for a connection, and a command
costs ~6 us of this process's CPU instead of redis-py's ~70 (pool, retries, metrics hooks).
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import inspect
import time
from typing import Any

import hiredis
import redis.asyncio as aioredis
from redis._parsers.base import BaseParser
from redis.asyncio.client import Pipeline
from redis.asyncio.connection import Connection, UnixDomainSocketConnection
from redis.client import EMPTY_RESPONSE, NEVER_DECODE
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import DataError, ExecAbortError, NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

TIMEOUT = 10.0  # seconds a command may wait for its reply before the connection is given up
CONNECT_TIMEOUT = 3.0

# commands that change or hold their connection's state, or block it: never on the shared connection
_OWN_CONNECTION = frozenset({
    "AUTH", "HELLO", "SELECT", "CLIENT", "RESET", "QUIT", "MONITOR", "WATCH", "UNWATCH", "MULTI", "EXEC",
    "DISCARD", "SUBSCRIBE", "PSUBSCRIBE", "SSUBSCRIBE", "BLPOP", "BRPOP", "BLMOVE", "BLMPOP", "BRPOPLPUSH",
    "BZPOPMIN", "BZPOPMAX", "BZMPOP", "WAIT", "WAITAOF",
})


_shared_names: dict[str, bool] = {}  # command name -> may go on the shared connection


def _shareable(args: tuple[Any, ...], options: dict[str, Any]) -> bool:
    command = args[0]
    shared = _shared_names.get(command)
    if shared is None:
        name = str(command).upper().split(" ")[0]
        shared = _shared_names[command] = name not in _OWN_CONNECTION
    if not shared or EMPTY_RESPONSE in options or NEVER_DECODE in options:
        return False
    # redis-py spells the option b"BLOCK": on the shared connection it would stall every command behind it
    return not (command in ("XREAD", "XREADGROUP") and any(a in (b"BLOCK", "BLOCK") for a in args))


def _pack(args: tuple[Any, ...]) -> bytes:
    """One command in RESP, as redis-py sends it (a command name with a space is two words)."""
    if " " in args[0]:
        args = (*args[0].split(), *args[1:])
    try:
        return hiredis.pack_command(args)  # type: ignore[no-any-return]
    except TypeError:
        pass  # buffers other than bytes, as redis-py takes them; or a value it refuses too
    try:
        return hiredis.pack_command(tuple(bytes(a) if isinstance(a, (bytearray, memoryview)) else a for a in args))
    except TypeError as exc:
        raise DataError(str(exc)) from None


class _ServerError(ResponseError):
    """What the reply parser makes of an error reply: redis-py's exception for it (NoScriptError matters:
    scripts are loaded when it is raised), so errors look as they do through redis-py's own connections."""

    def __new__(cls, message: str) -> ResponseError:  # type: ignore[misc]
        return BaseParser.parse_error(message)  # type: ignore[no-any-return]


class _Request:
    __slots__ = ("count", "future", "replies", "sent")

    def __init__(self, future: asyncio.Future[list[Any]], count: int) -> None:
        self.future = future
        self.count = count
        self.replies: list[Any] = []
        self.sent = time.monotonic()


class _Protocol(asyncio.Protocol):
    def __init__(self, mux: Multiplexer) -> None:
        self.mux = mux

    def data_received(self, data: bytes) -> None:
        self.mux._received(self, data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.mux._lost(self, exc)


class Multiplexer:
    """One connection to Redis that carries requests (a command, or a pipeline's commands) in order."""

    def __init__(self, params: dict[str, Any], timeout: float = TIMEOUT,
                 connect_timeout: float = CONNECT_TIMEOUT) -> None:
        self.params = params
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self._transport: asyncio.Transport | None = None
        self._protocol: _Protocol | None = None
        self._reader = self._new_reader()
        self._waiting: collections.deque[_Request] = collections.deque()
        self._connecting: asyncio.Future[None] | None = None
        self._timer: asyncio.TimerHandle | None = None

    def _new_reader(self) -> hiredis.Reader:
        encoding = self.params.get("encoding", "utf-8") if self.params.get("decode_responses") else None
        return hiredis.Reader(replyError=_ServerError, encoding=encoding)

    async def request(self, packed: bytes, count: int) -> list[Any]:
        """Send `count` packed commands; their replies, errors as values."""
        if self._transport is None or self._transport.is_closing():
            self._drop(RedisConnectionError("Connection to redis closed"))
            await self._connect()
        # a Redis that hangs up at once can close the fresh connection before its loss is reported:
        # writing on it would be uvloop's RuntimeError, not the RedisError callers handle
        transport = self._transport
        if transport is None or transport.is_closing():
            self._drop(RedisConnectionError("Connection to redis lost while connecting"))
            raise RedisConnectionError("Connection to redis lost while connecting")
        request = _Request(asyncio.get_running_loop().create_future(), count)
        self._waiting.append(request)
        try:
            transport.write(packed)
        except RuntimeError as exc:  # closed between the check and the write
            self._drop(RedisConnectionError(f"Connection to redis lost: {exc}"))
        if self._timer is None:
            self._arm(request.sent)
        return await request.future

    async def _connect(self) -> None:
        """Open the connection; concurrent callers share one attempt."""
        if self._connecting is None:
            self._connecting = asyncio.ensure_future(self._open())
            self._connecting.add_done_callback(self._connected)
        await asyncio.shield(self._connecting)

    def _connected(self, attempt: asyncio.Future[None]) -> None:
        self._connecting = None
        if not attempt.cancelled():
            attempt.exception()  # retrieved here; every waiter got it through the shield

    async def _open(self) -> None:
        loop = asyncio.get_running_loop()
        p = self.params
        try:
            if p.get("path"):
                opening = loop.create_unix_connection(lambda: _Protocol(self), p["path"])
            else:
                opening = loop.create_connection(lambda: _Protocol(self), p.get("host", "localhost"),
                                                 p.get("port", 6379))
            transport, protocol = await asyncio.wait_for(opening, self.connect_timeout)
        except (OSError, TimeoutError) as exc:
            raise RedisConnectionError(f"Error connecting to redis: {exc}") from None
        self._reader = self._new_reader()
        self._transport, self._protocol = transport, protocol
        handshake = []
        if p.get("password"):
            handshake.append(("AUTH", p["username"], p["password"]) if p.get("username") else ("AUTH", p["password"]))
        if p.get("db"):
            handshake.append(("SELECT", p["db"]))
        for command in handshake:
            reply = (await self.request(_pack(command), 1))[0]
            if isinstance(reply, ResponseError):
                self._drop(RedisConnectionError(f"redis refused {command[0]}: {reply}"))
                raise RedisConnectionError(f"redis refused {command[0]}: {reply}")

    def _arm(self, since: float) -> None:
        self._timer = asyncio.get_running_loop().call_later(since + self.timeout - time.monotonic(), self._check)

    def _check(self) -> None:
        """The oldest request waited too long: Redis is hung or gone without a word; drop the connection."""
        self._timer = None
        if not self._waiting:
            return
        oldest = self._waiting[0].sent
        if time.monotonic() - oldest >= self.timeout:
            self._drop(RedisTimeoutError(f"no reply from redis within {self.timeout:g}s"))
        else:
            self._arm(oldest)

    def _received(self, protocol: _Protocol, data: bytes) -> None:
        if protocol is not self._protocol:
            return  # a dropped connection's last bytes
        self._reader.feed(data)
        while (reply := self._reader.gets()) is not False:
            if not self._waiting:
                self._drop(RedisConnectionError("redis sent a reply nobody asked for"))
                return
            request = self._waiting[0]
            request.replies.append(reply)
            if len(request.replies) == request.count:
                self._waiting.popleft()
                if not request.future.done():  # a cancelled caller's replies are read and dropped
                    request.future.set_result(request.replies)
        if not self._waiting and self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _lost(self, protocol: _Protocol, exc: Exception | None) -> None:
        if protocol is self._protocol:
            self._drop(RedisConnectionError(f"Connection to redis lost: {exc or 'closed by redis'}"))

    def _drop(self, error: Exception) -> None:
        """Close the connection at once and fail what waits on it: replies that come later are ignored,
        so a new connection can never hand them to the wrong request."""
        transport, self._transport, self._protocol = self._transport, None, None
        if transport is not None:
            transport.abort()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        waiting, self._waiting = self._waiting, collections.deque()
        for request in waiting:
            if not request.future.done():
                request.future.set_exception(error)

    def close(self) -> None:
        self._drop(RedisConnectionError("Connection to redis closed"))


class MultiplexedRedis(aioredis.Redis):
    """redis-py's client with its commands and pipelines sent through a Multiplexer; what needs a
    connection of its own still takes one from the pool."""

    _mux: Multiplexer | None = None  # None: TLS, which only the pool's connections speak here

    @classmethod
    def from_pool(cls, connection_pool: aioredis.ConnectionPool) -> MultiplexedRedis:  # type: ignore[override]
        client = super().from_pool(connection_pool)
        kwargs = connection_pool.connection_kwargs
        if connection_pool.connection_class in (Connection, UnixDomainSocketConnection):
            client._mux = Multiplexer(kwargs, timeout=kwargs.get("socket_timeout") or TIMEOUT,
                                      connect_timeout=kwargs.get("socket_connect_timeout") or CONNECT_TIMEOUT)
        return client

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        if self._mux is None or not _shareable(args, options):
            return await super().execute_command(*args, **options)
        reply = (await self._mux.request(_pack(args), 1))[0]
        if isinstance(reply, ResponseError):
            raise reply
        return await _parsed(self, args, options, reply)

    def register_script(self, script: str | bytes) -> Any:
        if self._mux is None:
            return super().register_script(script)
        return MultiplexedScript(self._mux, script)

    def pipeline(self, transaction: bool = True, shard_hint: str | None = None) -> Pipeline:
        if self._mux is None:
            return super().pipeline(transaction, shard_hint)
        return MultiplexedPipeline(self._mux, self, transaction, shard_hint)

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        if self._mux is not None:
            self._mux.close()
        await super().aclose(close_connection_pool)


class MultiplexedScript:
    """A Lua script called by its SHA1 on the shared connection (loaded on first NOSCRIPT), as redis-py's
    Script is: its way there (pipeline checks, evalsha, reply callbacks that EVALSHA does not have) was
    ~3% of the event loop's time in a run of 64 KiB PATCHes, which take and release a lease by script."""

    def __init__(self, mux: Multiplexer, script: str | bytes) -> None:
        self.mux = mux
        self.script = script.encode() if isinstance(script, str) else script
        self.sha = hashlib.sha1(self.script).hexdigest()

    async def __call__(self, keys: list[Any] | None = None, args: list[Any] | None = None) -> Any:
        keys, args = keys or [], args or []
        call = _pack(("EVALSHA", self.sha, len(keys), *keys, *args))
        reply = (await self.mux.request(call, 1))[0]
        if isinstance(reply, NoScriptError):  # a Redis that restarted, or one we never ran this on
            load = _pack(("SCRIPT", "LOAD", self.script))
            loaded, reply = await self.mux.request(load + call, 2)
            if isinstance(loaded, ResponseError):
                raise loaded
        if isinstance(reply, ResponseError):
            raise reply
        return reply


async def _parsed(client: aioredis.Redis, args: tuple[Any, ...], options: dict[str, Any], reply: Any) -> Any:
    """A reply through redis-py's response callback for its command, as redis-py would return it."""
    callback = client.response_callbacks.get(args[0])
    if callback is None:
        return reply
    options.pop("keys", None)
    value = callback(reply, **options) if options else callback(reply)
    return await value if inspect.isawaitable(value) else value


class MultiplexedPipeline(Pipeline):
    """A pipeline (MULTI/EXEC or not) sent as one request on the shared connection; WATCH and scripts
    inside pipelines need a connection of their own and take redis-py's way."""

    def __init__(self, mux: Multiplexer, client: MultiplexedRedis, transaction: bool, shard_hint: str | None) -> None:
        super().__init__(client.connection_pool, client.response_callbacks, transaction, shard_hint)
        self._mux = mux

    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        stack = self.command_stack
        if (self.watching or self.scripts or self.explicit_transaction
                or not all(_shareable(args, options) for args, options in stack)):
            return await super().execute(raise_on_error)
        try:
            if not stack:
                return []
            packed = [_pack(args) for args, _ in stack]
            if self.is_transaction:
                replies = await self._mux.request(
                    b"".join([_pack(("MULTI",)), *packed, _pack(("EXEC",))]), len(stack) + 2)
                queued, response = replies[1:-1], replies[-1]
                if isinstance(response, ExecAbortError):
                    raise next((e for e in queued if isinstance(e, Exception)), response)
                if isinstance(response, Exception):
                    raise response
            else:
                response = await self._mux.request(b"".join(packed), len(stack))
            if raise_on_error:
                self.raise_first_error(stack, response)
            return [r if isinstance(r, Exception) else await _parsed(self, args, options, r)
                    for r, (args, options) in zip(response, stack, strict=True)]
        finally:
            await self.reset()
