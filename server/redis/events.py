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

from ..core import events as ev
from . import keys

log = logging.getLogger(__name__)

# Called in this process for each event it emits: counters and hooks must fire once per event, which
# the process that caused it guarantees (every process reading the shared stream would multiply them).
Listener = Callable[[dict[str, Any]], None]

_PROGRESS_MEMORY = 10_000  # uploads whose last progress time we remember before pruning


class EventBus:
    """Writes events (core.ports.EventSink); readers use XREAD on the event stream or SUBSCRIBE to the
    event channel (same JSON payload).

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
        if kind == ev.PROGRESS and self._throttled(upload_id):
            return None
        event = {**data, "type": kind, "id": upload_id, "owner": owner, "ts": time.time()}
        payload = json.dumps(event)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.xadd(keys.EVENT_STREAM, {"event": payload}, maxlen=self.maxlen, approximate=True)
            pipe.publish(keys.EVENT_CHANNEL, payload)
            entry_id, _ = await pipe.execute()
        for listener in self.listeners:
            try:
                listener(event)
            except Exception:
                log.exception("event listener failed on %s", kind)
        return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
