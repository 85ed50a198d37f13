"""What every handler needs, built once at start-up and handed to handlers through the application."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import redis.asyncio as aioredis

from tuskit.server.auth import TokenTable
from tuskit.server.config import ServerConfig
from tuskit.server.metrics import Metrics
from tuskit.server.postprocess import PostProcessor
from tuskit.server.ratelimit import RateLimiter
from tuskit.server.service import UploadService

if TYPE_CHECKING:
    from tuskit.server.sse import EventFeed
    from tuskit.server.webhooks import HookSender


class Interruptible(Protocol):
    """A request streaming a body: it can be told to save what it has and end."""

    last_data: float  # time.monotonic() of the last body bytes
    stopping: asyncio.Future[None] | None  # set once interrupted: done when its bytes are saved

    def interrupt(self, why: str) -> None: ...


@dataclass
class ServerContext:
    config: ServerConfig
    redis: aioredis.Redis
    service: UploadService
    postprocessor: PostProcessor
    limiter: RateLimiter
    feed: EventFeed
    signing_secret: bytes
    tokens: TokenTable | None = None  # None: auth off, every upload belongs to owner ""
    hooks: HookSender | None = None
    metrics: Metrics = field(default_factory=Metrics)
    shutting_down: bool = False
    active: set[Interruptible] = field(default_factory=set)  # requests streaming a body right now
