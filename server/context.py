"""What every handler needs, built once at start-up and handed to handlers through `initialize`."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Protocol

import redis.asyncio as aioredis

from tuskit.server.config import ServerConfig
from tuskit.server.service import UploadService


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
    thumbnail_sizes: tuple[int, ...] = (256,)
    shutting_down: bool = False
    active: set[Interruptible] = field(default_factory=set)  # requests streaming a body right now
