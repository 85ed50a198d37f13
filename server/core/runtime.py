"""What every part of the state machine runs with: the ports, the I/O executor, its settings, the running
digests and its background work. Service, append sessions, publishing and concatenation share one.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from tuskit import errors

from .budget import BodyBudget
from .config import ServiceConfig
from .digests import RunningDigests
from .failures import as_tus_error
from .ports import BlobStore, EventSink, Lease, Locker, StateStore

T = TypeVar("T")


class SerialJobs:
    """Jobs run in the order given, one at a time, on an executor's threads. The thread that ends one takes
    the next if there is one, so a stream of jobs (a body's writes, its hash updates) costs one thread
    wake-up rather than one per job: on a busy 2-core machine a wake-up took 0.3-0.8 ms, longer than
    writing or hashing a MiB."""

    def __init__(self, executor: Executor) -> None:
        self.executor = executor
        self.loop = asyncio.get_running_loop()
        self.jobs: collections.deque[tuple[Callable[[], Any], asyncio.Future[Any]]] = collections.deque()
        self.lock = threading.Lock()
        self.running = False

    def run(self, job: Callable[[], T]) -> asyncio.Future[T]:
        """Queue `job`; the future is done when it has run, with its result (or its exception if it raised)."""
        done: asyncio.Future[T] = self.loop.create_future()
        with self.lock:
            self.jobs.append((job, done))
            if self.running:
                return done
            self.running = True
        self.executor.submit(self._work)
        return done

    def _work(self) -> None:
        """Executor side: the queued jobs, until there are none."""
        while True:
            with self.lock:
                if not self.jobs:
                    self.running = False
                    return
                job, done = self.jobs.popleft()
            try:
                result = job()
            except BaseException as exc:  # handed to the waiting side, as an executor future would
                self.loop.call_soon_threadsafe(_settle, done, None, exc)
            else:
                self.loop.call_soon_threadsafe(_settle, done, result, None)


def _settle(done: asyncio.Future[Any], result: Any, exc: BaseException | None) -> None:
    if done.done():
        return
    if exc is None:
        done.set_result(result)
    else:
        done.set_exception(exc)


@dataclass
class Runtime:
    state: StateStore
    store: BlobStore
    locker: Locker
    events: EventSink
    executor: Executor
    config: ServiceConfig
    digests: RunningDigests = field(default_factory=RunningDigests)
    budget: BodyBudget = field(default_factory=BodyBudget)  # body bytes in memory (unbounded unless given)
    background: set[asyncio.Task[Any]] = field(default_factory=set)

    async def io(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run blocking storage work (disk, object store, hashing large buffers) off the event loop."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    def expiry(self) -> float | None:
        """When an upload that makes progress now expires (progress slides it)."""
        return time.time() + self.config.expire_after if self.config.expire_after else None

    def error(self, exc: BaseException) -> errors.TusError:
        return as_tus_error(exc, self.state.unavailable, self.state.out_of_space)

    def spawn(self, coro: Awaitable[Any]) -> None:
        """Background work that must finish before shutdown (see `drain`), not tied to a request."""
        task = asyncio.ensure_future(coro)
        self.background.add(task)
        task.add_done_callback(self.background.discard)

    async def drain(self) -> None:
        if self.background:
            await asyncio.gather(*self.background, return_exceptions=True)

    @contextlib.asynccontextmanager
    async def leased(self, upload_id: str, *, read: bool = False, owner: str | None = None) -> AsyncIterator[Lease]:
        """Hold an upload's lease for a block: its only taker and releaser outside an append session.
        `owner`: a client's request, which may make a holder let go only of its own uploads."""
        lease = await self.locker.acquire(upload_id, read=read, owner=owner)
        try:
            yield lease
        finally:
            await lease.release()
