"""Is this process fit to take uploads? Redis answers and the data dir has room: what a load balancer's
health check and an operator's dashboard need to know, without touching any upload."""

from __future__ import annotations

import asyncio
import os
from concurrent.futures import Executor
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

REDIS_TIMEOUT_SECONDS = 2.0


def free_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


async def check(redis: aioredis.Redis, data_dir: Path, min_free: int,
                executor: Executor) -> tuple[bool, dict[str, Any]]:
    """(healthy, details): details name each check and say why it failed."""
    details: dict[str, Any] = {}
    try:
        await asyncio.wait_for(redis.ping(), REDIS_TIMEOUT_SECONDS)
        details["redis"] = "ok"
    except (TimeoutError, RedisError, OSError) as exc:
        details["redis"] = f"unavailable: {exc or type(exc).__name__}"
    free = await asyncio.get_running_loop().run_in_executor(executor, free_bytes, data_dir)
    details["disk_free_bytes"] = free
    details["disk_free_minimum"] = min_free
    details["disk"] = "ok" if free >= min_free else f"only {free} bytes free, below {min_free}"
    return details["redis"] == "ok" and details["disk"] == "ok", details
