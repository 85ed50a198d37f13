"""What every part of the state machine runs with: the ports, the I/O executor, its settings, the running
digests and its background work. Service, append sessions, publishing and concatenation share one.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

from tuskit import errors

from .budget import BodyBudget
from .config import ServiceConfig
from .digests import RunningDigests
from .failures import as_tus_error
from .ports import BlobStore, EventSink, Lease, Locker, StateStore


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
