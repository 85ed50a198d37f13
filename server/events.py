"""Upload events: appended to a Redis stream (replayable, e.g. SSE with Last-Event-ID) and published on
pub/sub (instant fan-out), so dashboards, hooks and other server processes all see one history.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis

STREAM_KEY = "tuskit:events"
CHANNEL = "tuskit:events"

log = logging.getLogger(__name__)

# Called in this process for each event it emits: counters and hooks must fire once per event, which
# the process that caused it guarantees (every process reading the shared stream would multiply them).
Listener = Callable[[dict[str, Any]], None]

# kinds of event, one per state change of an upload
CREATED = "created"
PROGRESS = "progress"
FINISHED = "finished"
VERIFIED = "verified"
VERIFICATION_FAILED = "verification-failed"
PROCESSED = "processed"
TERMINATED = "terminated"
EXPIRED = "expired"


class EventBus:
    """Writes events; readers use XREAD on STREAM_KEY or SUBSCRIBE to CHANNEL (same JSON payload)."""

    def __init__(self, redis: aioredis.Redis, maxlen: int = 100_000) -> None:
        self.redis = redis
        self.maxlen = maxlen
        self.listeners: list[Listener] = []

    async def emit(self, kind: str, upload_id: str, owner: str | None, **data: Any) -> str:
        """Record one event; returns its stream entry id (the SSE event id)."""
        event = {**data, "type": kind, "id": upload_id, "owner": owner, "ts": time.time()}
        payload = json.dumps(event)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.xadd(STREAM_KEY, {"event": payload}, maxlen=self.maxlen, approximate=True)
            pipe.publish(CHANNEL, payload)
            entry_id, _ = await pipe.execute()
        for listener in self.listeners:
            try:
                listener(event)
            except Exception:
                log.exception("event listener failed on %s", kind)
        return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
