"""The composition root: prepare everything once, then serve in this process (`--workers 1`) or in forked
workers (`tuskit.server.workers`); run until SIGTERM/SIGINT, then stop without losing bytes. The only
module that knows every concrete class."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import redis.asyncio as aioredis
import uvloop
from redis.exceptions import RedisError
from tornado.netutil import bind_sockets

from .config import ServerConfig
from .core.budget import BodyBudget
from .core.config import ServiceConfig
from .core.ports import BlobStore
from .core.runtime import Runtime
from .core.service import UploadService
from .http import signing
from .http.auth import TokenTable
from .http.chunked import TusHTTPServer
from .http.context import ServerContext
from .http.routes import make_app
from .media.metrics import Metrics, MetricsBlock
from .media.postprocess import PostProcessor, background_thread
from .media.publish_dir import PublishDir
from .media.sniff import type_gate
from .media.webhooks import HookSender
from .redis.connect import connect
from .redis.embedded import DataDirInUse, EmbeddedRedis
from .redis.events import EventBus
from .redis.feed import EventFeed
from .redis.locks import RedisLocker
from .redis.ratelimit import RedisRateLimiter
from .redis.state import RedisStateStore
from .stores.files import FileStore
from .stores.uring import Ring
from .workers import Supervisor

log = logging.getLogger("tuskit.server")

SHUTDOWN_GRACE_SECONDS = 15.0
# connections the kernel queues before a worker accepts them (capped by net.core.somaxconn): tornado's 128
# overflowed when 200 clients connected at once, and each dropped SYN cost its client a 1 s retry
LISTEN_BACKLOG = 4096
PUBLISH_SECONDS = 0.25  # how stale another worker's gauges may be in a scrape (its counters are never stale)
KEEPER_SECONDS = 0.5  # how soon a dead embedded redis is noticed
SETTLE_AFTER_SECONDS = 1.0  # a body quiet this long has its bytes stored and recorded (see BodyBudget)
PRESSED_SETTLE_SECONDS = 0.1  # ... this long while other bodies wait for memory


class StartupError(Exception):
    """The server cannot start; the message is the one line the operator gets."""


@dataclass
class Launch:
    """What is prepared once, before any worker: a worker inherits it (fork) and only assembles its own
    clients and loop on top."""

    config: ServerConfig
    redis_url: str
    listeners: list[socket.socket]  # every worker accepts from all of them (http.accept)
    url: str  # the tus endpoint as announced
    tokens: TokenTable | None
    secret: bytes
    metrics: MetricsBlock = field(init=False)

    def __post_init__(self) -> None:
        self.metrics = MetricsBlock(self.config.workers)

    def close_listeners(self) -> None:
        for sock in self.listeners:
            sock.close()


def run(config: ServerConfig) -> int:
    """`tuskit server`: the exit code (0 after SIGTERM/SIGINT, 1 when the embedded redis could not be
    brought back). Anything that can keep the server from starting fails here as a StartupError."""
    embedded = None if config.redis_url else EmbeddedRedis(config.data_dir)
    try:
        launch = _prepare(config, embedded)
        if config.workers == 1:
            return uvloop.run(serve(launch, 0, lambda: _announce(launch), embedded))
        supervisor = Supervisor(
            config.workers, lambda slot, ready: _work(launch, slot, ready, embedded),
            check=lambda: embedded is None or embedded.alive() or _revive(embedded),
            retired=launch.metrics.retire, announce=lambda: _announce(launch),
            stop_listening=launch.close_listeners,
        )
        return supervisor.run()
    finally:
        if embedded is not None:
            embedded.stop()


def _prepare(config: ServerConfig, embedded: EmbeddedRedis | None) -> Launch:
    """In the order that leaves least behind on failure: files, the data dir's owner, the port, redis."""
    try:
        config.data_dir.mkdir(parents=True, exist_ok=True)
        secret = config.signing_secret.encode() if config.signing_secret else signing.data_dir_secret(config.data_dir)
    except OSError as exc:
        raise StartupError(f"cannot use the data dir {config.data_dir}: {exc.strerror or exc}") from None
    if config.publish_dir is not None:  # an unusable DIR fails at start, not once per upload
        try:
            config.publish_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StartupError(f"cannot use the publish dir {config.publish_dir}: {exc.strerror or exc}") from None
    try:
        tokens = TokenTable.load(config.tokens_file) if config.tokens_file else None
    except (ValueError, OSError) as exc:
        raise StartupError(str(exc)) from None
    _check_storage(config)
    if embedded is not None:
        try:
            embedded.claim()
        except DataDirInUse as exc:
            raise StartupError(str(exc)) from None
    host = f"[{config.host}]" if ":" in config.host else config.host
    try:
        listeners = _listen(config)
    except OSError as exc:
        raise StartupError(f"cannot listen on {host}:{config.port}: {exc.strerror or exc}") from None
    try:
        redis_url = config.redis_url or embedded.start()  # type: ignore[union-attr]
    except (RuntimeError, OSError) as exc:
        raise StartupError(str(exc).splitlines()[0]) from None
    asyncio.run(_check_redis(redis_url, clear_stale=embedded is not None))
    url = f"http://{host}:{listeners[0].getsockname()[1]}{config.base_path}"
    return Launch(config, redis_url, listeners, url, tokens, secret)


def _check_storage(config: ServerConfig) -> None:
    """An object store we cannot write (missing bucket, no credentials, wrong endpoint) stops the server
    here, in one line, before any worker starts; each worker then opens its own client."""
    if config.storage == "file":
        return
    from .stores.s3 import BucketUnusable, S3Location, S3Store  # boto3 takes a while to import: only when used

    try:
        S3Store(S3Location.parse(config.storage, config.s3_endpoint, config.s3_region), config.s3_part_size).check()
    except (ValueError, BucketUnusable) as exc:
        raise StartupError(str(exc)) from None


def _listen(config: ServerConfig) -> list[socket.socket]:
    """One set of listening sockets, which every worker inherits and accepts from, each taking its share
    (http.accept): per-worker sockets with SO_REUSEPORT spread connections by a hash of the client's
    address, and 2 keep-alive clients landed on one of 2 workers in 3 of 6 runs (463-595 64 KiB PATCHes/s
    against 682-779 when split). The parent keeps them open: a replacement worker finds them, and a
    connection that arrives while a worker dies goes to another."""
    return bind_sockets(config.port, config.host, backlog=LISTEN_BACKLOG)


async def _check_redis(url: str, clear_stale: bool) -> None:
    """Redis answers; and the embedded one, which only we use, loses the leases of a server that died
    holding them (here, once, before any worker takes a lease of its own)."""
    redis = connect(url)
    try:
        await redis.ping()
        if clear_stale:
            cleared = await RedisLocker(redis, RedisStateStore(redis)).clear_stale()
            if cleared:
                log.warning("cleared %d upload locks left by a previous run that did not stop cleanly", cleared)
    except (RedisError, OSError) as exc:
        raise StartupError(f"cannot reach redis at {url}: {exc}") from None
    finally:
        with contextlib.suppress(RedisError, OSError):
            await redis.aclose()


def _announce(launch: Launch) -> None:
    """Printed once, when every worker serves and SIGTERM is handled: a supervisor that stops us right
    after must not kill us, and tests wait for this line."""
    print(f"tuskit server listening on {launch.url}", flush=True)


def _revive(embedded: EmbeddedRedis) -> bool:
    if embedded.revive():
        return True
    log.error("the embedded redis-server could not be restarted; exiting so that a service manager "
              "can restart tuskit")
    return False


def _work(launch: Launch, slot: int, ready: Callable[[], None], embedded: EmbeddedRedis | None) -> int:
    """A forked worker's life: the parent alone owns the data dir."""
    if embedded is not None:
        embedded.disown()
    return uvloop.run(serve(launch, slot, ready, None))


@dataclass
class Assembly:
    """The handlers' context and what only the composition root must close at shutdown."""

    ctx: ServerContext
    redis: aioredis.Redis
    locker: RedisLocker
    executors: tuple[ThreadPoolExecutor, ...]
    ring: Ring | None  # the file store's io_uring, on this loop


async def assemble(launch: Launch, metrics: Metrics) -> Assembly:
    config, redis_url = launch.config, launch.redis_url
    redis = connect(redis_url)
    io = ThreadPoolExecutor(max_workers=8, thread_name_prefix="tuskit-io")
    ring = Ring.start() if config.storage == "file" and config.io_uring else None
    store, store_threads = _open_store(config, ring)
    # Pillow gets its own single thread: thumbnails never queue in front of the disk writes of PATCHes
    cpu = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tuskit-cpu", initializer=background_thread)
    state = RedisStateStore(redis)
    locker = RedisLocker(redis, state)
    await locker.start()
    events = EventBus(redis)
    budget = BodyBudget(config.buffer_budget, piece=config.chunk_size)
    service = UploadService(Runtime(
        state, store, locker, events, io,
        ServiceConfig(base_path=config.base_path, max_size=config.max_size, expire_after=config.expire_after,
                      type_gate=type_gate(config.accept) if config.accept else None),
        budget=budget,
    ))
    postprocessor = PostProcessor(store, state, events, cpu, config.thumbnail_sizes, config.max_image_pixels)
    service.on_published.append(postprocessor)
    if config.publish_dir is not None:
        service.on_published.append(PublishDir(config.publish_dir, store, io))
    ctx = ServerContext(
        config=config, service=service, postprocessor=postprocessor,
        limiter=RedisRateLimiter(redis, config.request_rate, config.request_burst, config.byte_rate),
        feed=EventFeed(redis_url), signing_secret=launch.secret, tokens=launch.tokens, metrics=metrics,
        budget=budget,
    )
    _observe(ctx, events, state, locker)
    return Assembly(ctx, redis, locker, (io, cpu, *store_threads), ring)


def _open_store(config: ServerConfig, ring: Ring | None) -> tuple[BlobStore, tuple[ThreadPoolExecutor, ...]]:
    """The blob store --storage names (checked at start-up by _check_storage), and its own threads."""
    if config.storage == "file":
        return FileStore(config.data_dir, ring), ()
    from .stores.s3 import S3Location, S3Store

    store = S3Store(S3Location.parse(config.storage, config.s3_endpoint, config.s3_region), config.s3_part_size)
    return store, (store.parts,)


def _observe(ctx: ServerContext, events: EventBus, state: RedisStateStore, locker: RedisLocker) -> None:
    """Who hears of this process's events: the metrics, and the webhook when there is one."""
    events.listeners.append(ctx.metrics.on_event)
    ctx.metrics.watch("tuskit_active_patches", lambda: len(ctx.active))
    ctx.metrics.watch("tuskit_lock_waits_total", lambda: locker.waits)
    ctx.metrics.watch("tuskit_buffered_body_bytes", lambda: ctx.budget.held)
    ctx.metrics.watch("tuskit_bodies_waiting_for_memory", lambda: ctx.budget.waiting)
    config = ctx.config
    if config.hook_url:
        ctx.hooks = HookSender(config.hook_url, state, ctx.metrics, config.base_path,
                               config.hook_timeout, config.hook_retries)
        events.listeners.append(ctx.hooks.on_event)


async def _sweep_forever(ctx: ServerContext) -> None:
    """Expiry sweeper: every process runs one; the per-upload lease makes them take turns."""
    while True:
        await asyncio.sleep(ctx.config.sweep_interval)
        try:
            swept = await ctx.service.sweep(time.time())
            if swept:
                log.info("expired %d unfinished uploads", swept)
        except RedisError as exc:
            log.warning("expiry sweep skipped, redis unavailable: %s", exc)


async def _close_stalled_forever(ctx: ServerContext) -> None:
    """--network-timeout: a PATCH that sends nothing for that long keeps its bytes and is closed. One that
    waits for the body budget is not counted as quiet; one quiet for a second has what it sent stored and
    recorded, and so does one quiet for a tenth of that while other bodies wait for memory (on S3 a stalled body
    holds its unfilled part: a thousand of them would otherwise take turns at a second each).

    Tornado's body_timeout bounds the whole body, which would cut slow but healthy large uploads.
    """
    timeout = ctx.config.network_timeout
    every = min(SETTLE_AFTER_SECONDS, timeout / 4)
    scanned = time.monotonic()
    while True:
        await asyncio.sleep(PRESSED_SETTLE_SECONDS)
        now = time.monotonic()
        pressed = ctx.budget.waiting > 0
        if not pressed and now - scanned < every:
            continue
        scanned = now
        settle_after = PRESSED_SETTLE_SECONDS if pressed else SETTLE_AFTER_SECONDS
        for handler in list(ctx.active):
            if handler.held_back:
                continue
            quiet = now - handler.last_data
            if quiet > timeout:
                handler.interrupt(f"client sent nothing for {timeout:g}s")
            elif quiet > settle_after:
                handler.settle()


async def _shutdown(ctx: ServerContext, server: TusHTTPServer) -> None:
    """Stop taking requests, let streaming PATCHes save their bytes and answer 503, then close."""
    server.stop()
    ctx.shutting_down = True
    streams = list(ctx.active)
    for handler in streams:
        handler.interrupt("server shutting down")
    pending = [h.stopping for h in streams if h.stopping is not None]
    if pending:
        await asyncio.wait(pending, timeout=SHUTDOWN_GRACE_SECONDS)
    with contextlib.suppress(TimeoutError):  # a thumbnail still being made is made again on demand
        await asyncio.wait_for(ctx.service.drain(), timeout=SHUTDOWN_GRACE_SECONDS)
    await ctx.feed.stop()  # ends the event streams, whose connections would otherwise never close
    if ctx.hooks is not None:
        await ctx.hooks.drain(timeout=SHUTDOWN_GRACE_SECONDS)
    await server.close_all_connections()


async def _publish_forever(ctx: ServerContext) -> None:
    """This worker's gauges, where the other workers' scrapes read them."""
    while True:
        await asyncio.sleep(PUBLISH_SECONDS)
        ctx.metrics.publish()


async def _keep_redis(embedded: EmbeddedRedis, failed: Callable[[], None]) -> None:
    """--workers 1 has no parent to watch the embedded redis: this process restarts it, or stops."""
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(KEEPER_SECONDS)
        if not embedded.alive() and not await loop.run_in_executor(None, _revive, embedded):
            failed()
            return


async def serve(launch: Launch, slot: int, ready: Callable[[], None], embedded: EmbeddedRedis | None) -> int:
    """Serve as worker `slot` until SIGTERM/SIGINT; `embedded`: the redis to keep alive, when this process
    is the server's only one. The exit code."""
    assembly = await assemble(launch, Metrics(launch.metrics, slot))
    ctx = assembly.ctx
    config = launch.config
    server = TusHTTPServer(
        make_app(ctx),
        xheaders=config.behind_proxy,
        chunk_size=config.chunk_size,
        # tornado times a request head from when it starts waiting for it, so this also closes idle
        # keep-alive connections (as Go's net/http does when only ReadTimeout is set)
        idle_connection_timeout=config.network_timeout,
        budget=ctx.budget,
        share=ctx.metrics if config.workers > 1 else None,
    )
    server.add_sockets(launch.listeners)
    stop = asyncio.Event()
    exit_code = 0

    def fail() -> None:
        nonlocal exit_code
        exit_code = 1
        stop.set()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    ctx.feed.start()
    chores = [asyncio.create_task(_sweep_forever(ctx)), asyncio.create_task(_close_stalled_forever(ctx)),
              asyncio.create_task(_publish_forever(ctx))]
    if embedded is not None:
        chores.append(asyncio.create_task(_keep_redis(embedded, fail)))
    ready()  # only once SIGTERM is ours
    await stop.wait()
    log.info("shutting down: saving in-flight uploads")
    for chore in chores:
        chore.cancel()
    try:
        await _shutdown(ctx, server)
    finally:
        await assembly.locker.stop()
        with contextlib.suppress(RedisError):
            await assembly.redis.aclose()
        if assembly.ring is not None:
            await assembly.ring.aclose()
        for executor in assembly.executors:
            executor.shutdown(wait=True)
    return exit_code
