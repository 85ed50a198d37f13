"""The event stream read back (core.ports.EventFeed), for `GET /events`: a replay after an event ID, then
live events.

One tail per process reads the stream (XREAD BLOCK on its own connection) and fans entries out to this
process's subscribers, so a thousand dashboards cost one Redis connection, and live events carry their
stream IDs, which a reconnecting EventSource sends back as Last-Event-ID.

A replay reads the history a page at a time and keeps only the caller's events as it reads, so its memory
is one page whatever the history's length; it goes at most REPLAY_DEPTH entries deep per call (the
caller continues from where it stopped), so no request scans the whole history on its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import AsyncIterator
from typing import Any

from redis.exceptions import RedisError

from ..core.ports import FEED_CLOSED, Entry, ReplayPage
from . import keys
from .connect import connect

log = logging.getLogger(__name__)

_STREAM_ID = re.compile(r"\d+-\d+")
QUEUE_LIMIT = 1000  # a subscriber this far behind is dropped; it reconnects and replays
REPLAY_PAGE = 500
REPLAY_DEPTH = 10_000  # history entries one replay call reads at most (20 pages)


def stream_order(stream_id: str) -> tuple[int, int]:
    """A stream ID (`<ms>-<seq>`) as a sortable pair."""
    ms, seq = stream_id.split("-")
    return int(ms), int(seq)


def _stream_id(raw_id: Any) -> str:
    return raw_id.decode() if isinstance(raw_id, bytes) else str(raw_id)


def _decode(entries: list[Any]) -> list[Entry]:
    out: list[Entry] = []
    for raw_id, fields in entries:
        with contextlib.suppress(KeyError, ValueError):
            out.append((_stream_id(raw_id), json.loads(fields[b"event"])))
    return out


class EventFeed:
    """This process's reader of the event stream."""

    def __init__(self, redis_url: str) -> None:
        # its own connection: XREAD BLOCK would hold a pooled one and trip the shared client's socket timeout
        self.redis = connect(redis_url, socket_timeout=None)
        self.subscribers: set[asyncio.Queue[Entry]] = set()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._tail())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for queue in list(self.subscribers):
            self.unsubscribe(queue)
        with contextlib.suppress(RedisError):
            await self.redis.aclose()

    async def _tail(self) -> None:
        last = ""
        failing = False
        while True:
            try:
                if not last or failing:
                    newest = await self.redis.xrevrange(keys.EVENT_STREAM, count=1)
                    newest_id = newest[0][0].decode() if newest else "0-0"
                    if not last:  # start after the newest entry, by ID: "$" on every call would skip events
                        last = newest_id
                    elif stream_order(newest_id) < stream_order(last):  # redis came back without our history
                        last = "0-0"
                reply = await self.redis.xread({keys.EVENT_STREAM: last}, block=5000, count=REPLAY_PAGE)
            except (RedisError, OSError) as exc:
                if not failing:  # one line per outage, not one per second
                    log.warning("event stream unavailable (%s); retrying every second", exc)
                failing = True
                await asyncio.sleep(1)
                continue
            if failing:
                log.info("event stream available again")
                failing = False
            for _stream, entries in reply or []:
                for entry in _decode(entries):
                    last = entry[0]
                    for queue in list(self.subscribers):
                        if queue.qsize() >= QUEUE_LIMIT:
                            self.unsubscribe(queue)
                        else:
                            queue.put_nowait(entry)

    def subscribe(self) -> asyncio.Queue[Entry]:
        queue: asyncio.Queue[Entry] = asyncio.Queue(QUEUE_LIMIT + 1)
        self.subscribers.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[Entry]) -> None:
        self.subscribers.discard(queue)
        with contextlib.suppress(asyncio.QueueFull):
            queue.put_nowait(FEED_CLOSED)

    async def replay(self, after: str, owner: str | None) -> AsyncIterator[ReplayPage]:
        """Pages of the entries after `after` (exclusive), oldest first, with only `owner`'s events (None:
        all); at most REPLAY_DEPTH entries deep."""
        last = after
        for _ in range(REPLAY_DEPTH // REPLAY_PAGE):
            raw = await self.redis.xrange(keys.EVENT_STREAM, min=f"({last}", max="+", count=REPLAY_PAGE)
            if raw:
                last = _stream_id(raw[-1][0])
            entries = [e for e in _decode(raw) if owner is None or e[1].get("owner") == owner]
            caught_up = len(raw) < REPLAY_PAGE
            yield ReplayPage(entries, last, caught_up)
            if caught_up:
                return

    def is_event_id(self, text: str) -> bool:
        return bool(_STREAM_ID.fullmatch(text))

    def newer(self, event_id: str, than: str) -> bool:
        return stream_order(event_id) > stream_order(than)
