"""The composition root: assemble the server from its layers and run it until SIGTERM/SIGINT, then stop
without losing bytes. The only module that knows every concrete class."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import redis.asyncio as aioredis
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
from .media.postprocess import PostProcessor, background_thread
from .media.publish_dir import PublishDir
from .media.sniff import type_gate
from .media.webhooks import HookSender
from .redis.connect import connect
from .redis.events import EventBus
from .redis.feed import EventFeed
from .redis.locks import RedisLocker
from .redis.ratelimit import RedisRateLimiter
from .redis.state import RedisStateStore
from .stores.files import FileStore

log = logging.getLogger("tuskit.server")

SHUTDOWN_GRACE_SECONDS = 15.0
SPILL_AFTER_SECONDS = 1.0  # a body quiet this long hands its buffered bytes to storage (see BodyBudget)


@dataclass
class Assembly:
    """The handlers' context and what only the composition root must close at shutdown."""

    ctx: ServerContext
    redis: aioredis.Redis
    locker: RedisLocker
    executors: tuple[ThreadPoolExecutor, ...]


async def assemble(config: ServerConfig, redis_url: str) -> Assembly:
    tokens = TokenTable.load(config.tokens_file) if config.tokens_file else None
    secret = config.signing_secret.encode() if config.signing_secret else signing.data_dir_secret(config.data_dir)
    redis = connect(redis_url)
    io = ThreadPoolExecutor(max_workers=8, thread_name_prefix="tuskit-io")
    store, store_threads = await _open_store(config, io)
    # Pillow gets its own single thread: thumbnails never queue in front of the disk writes of PATCHes
    cpu = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tuskit-cpu", initializer=background_thread)
    state = RedisStateStore(redis)
    locker = RedisLocker(redis, state)
    if config.redis_url is None:
        cleared = await locker.clear_stale()
        if cleared:
            log.warning("cleared %d upload locks left by a previous run that did not stop cleanly", cleared)
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
        config.publish_dir.mkdir(parents=True, exist_ok=True)  # an unusable DIR fails at start, not per upload
        service.on_published.append(PublishDir(config.publish_dir, store, io))
    ctx = ServerContext(
        config=config, service=service, postprocessor=postprocessor,
        limiter=RedisRateLimiter(redis, config.request_rate, config.request_burst, config.byte_rate),
        feed=EventFeed(redis_url), signing_secret=secret, tokens=tokens, budget=budget,
    )
    _observe(ctx, events, state, locker)
    return Assembly(ctx, redis, locker, (io, cpu, *store_threads))


async def _open_store(config: ServerConfig, io: ThreadPoolExecutor) -> tuple[BlobStore, tuple[ThreadPoolExecutor, ...]]:
    """The blob store --storage names, and its own threads; a bucket we cannot write stops the start."""
    if config.storage == "file":
        return FileStore(config.data_dir), ()
    from .stores.s3 import S3Location, S3Store  # boto3 takes a while to import: only when used

    location = S3Location.parse(config.storage, config.s3_endpoint, config.s3_region)
    store = S3Store(location, config.s3_part_size)
    await asyncio.get_running_loop().run_in_executor(io, store.check)
    return store, (store.parts,)


def _observe(ctx: ServerContext, events: EventBus, state: RedisStateStore, locker: RedisLocker) -> None:
    """Who hears of this process's events: the metrics, and the webhook when there is one."""
    events.listeners.append(ctx.metrics.on_event)
    ctx.metrics.gauges.update({
        "tuskit_active_patches": ("Request bodies streaming into uploads right now.", lambda: len(ctx.active)),
        "tuskit_lock_waits_total": ("Lease acquisitions that found the upload locked.", lambda: locker.waits),
        "tuskit_buffered_body_bytes": ("Request body bytes held in memory (--buffer-budget).",
                                       lambda: ctx.budget.held),
        "tuskit_bodies_waiting_for_memory": ("Request bodies not read on until the buffer budget has room.",
                                             lambda: ctx.budget.waiting),
    })
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
    waits for the body budget is not counted as quiet; one quiet for a second hands its buffer to storage.

    Tornado's body_timeout bounds the whole body, which would cut slow but healthy large uploads.
    """
    timeout = ctx.config.network_timeout
    while True:
        await asyncio.sleep(min(SPILL_AFTER_SECONDS, timeout / 4))
        now = time.monotonic()
        for handler in list(ctx.active):
            if handler.held_back:
                continue
            quiet = now - handler.last_data
            if quiet > timeout:
                handler.interrupt(f"client sent nothing for {timeout:g}s")
            elif quiet > SPILL_AFTER_SECONDS:
                handler.spill()


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


async def serve(config: ServerConfig, redis_url: str) -> None:
    assembly = await assemble(config, redis_url)
    ctx = assembly.ctx
    server = TusHTTPServer(
        make_app(ctx),
        xheaders=config.behind_proxy,
        chunk_size=config.chunk_size,
        # tornado times a request head from when it starts waiting for it, so this also closes idle
        # keep-alive connections (as Go's net/http does when only ReadTimeout is set)
        idle_connection_timeout=config.network_timeout,
        budget=ctx.budget,
    )
    sockets = bind_sockets(config.port, config.host)
    server.add_sockets(sockets)
    port = sockets[0].getsockname()[1]
    host = f"[{config.host}]" if ":" in config.host else config.host
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    ctx.feed.start()
    chores = [asyncio.create_task(_sweep_forever(ctx)), asyncio.create_task(_close_stalled_forever(ctx))]
    # announced only once SIGTERM is ours: a supervisor that stops us right after would otherwise kill us
    print(f"tuskit server listening on http://{host}:{port}{config.base_path}", flush=True)
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
        for executor in assembly.executors:
            executor.shutdown(wait=True)
