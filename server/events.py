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

_PROGRESS_MEMORY = 10_000  # uploads whose last progress time we remember before pruning


class EventBus:
    """Writes events; readers use XREAD on STREAM_KEY or SUBSCRIBE to CHANNEL (same JSON payload).

    Progress is throttled per upload: a client sending tiny PATCHes would otherwise flood the stream
    that every dashboard replays. The other events mark state changes and always go through.
    """

    def __init__(self, redis: aioredis.Redis, maxlen: int = 100_000, progress_interval: float = 0.5) -> None:
        self.redis = redis
        self.maxlen = maxlen
        self.progress_interval = progress_interval
        self.listeners: list[Listener] = []
        self._last_progress: dict[str, float] = {}  # upload id -> time.monotonic() of its last progress

    def _throttled(self, upload_id: str) -> bool:
        now = time.monotonic()
        if now - self._last_progress.get(upload_id, -self.progress_interval) < self.progress_interval:
            return True
        if len(self._last_progress) > _PROGRESS_MEMORY:
            self._last_progress = {k: t for k, t in self._last_progress.items() if now - t < self.progress_interval}
        self._last_progress[upload_id] = now
        return False

    async def emit(self, kind: str, upload_id: str, owner: str | None, **data: Any) -> str | None:
        """Record one event; returns its stream entry id (the SSE event id), None if throttled away."""
        if kind == PROGRESS and self._throttled(upload_id):
            return None
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
