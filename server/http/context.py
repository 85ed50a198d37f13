"""What every handler needs, built once at start-up by the composition root (tuskit.server.app) and handed
to handlers through the application. Backends appear here only as the core's ports."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Protocol

from ..config import ServerConfig
from ..core.budget import BodyBudget
from ..core.ports import EventFeed, RateLimiter
from ..core.service import UploadService
from ..media.metrics import Metrics
from ..media.postprocess import PostProcessor
from ..media.webhooks import HookSender
from .auth import TokenTable


class Interruptible(Protocol):
    """A request streaming a body: it can be told to save what it has and end."""

    last_data: float  # time.monotonic() of the last body bytes
    stopping: asyncio.Future[None] | None  # set once interrupted: done when its bytes are saved
    held_back: bool  # waiting for the body budget: quiet because of us, not the client

    def interrupt(self, why: str) -> None: ...

    def settle(self) -> None:
        """Hand the bytes it holds to storage and record them (its client went quiet)."""


@dataclass
class ServerContext:
    config: ServerConfig
    service: UploadService
    postprocessor: PostProcessor
    limiter: RateLimiter
    feed: EventFeed
    signing_secret: bytes
    budget: BodyBudget = field(default_factory=BodyBudget)  # request body bytes in memory, shared with the core
    tokens: TokenTable | None = None  # None: auth off, every upload belongs to owner ""
    hooks: HookSender | None = None
    metrics: Metrics = field(default_factory=Metrics)
    shutting_down: bool = False
    active: set[Interruptible] = field(default_factory=set)  # requests streaming a body right now
    # /events replay pages read and sent at once (each holds one page of history in memory)
    replay_slots: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(8))
