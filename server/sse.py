"""`GET /events`: upload events as Server-Sent Events, replayed from the Redis stream after a
`Last-Event-ID`, then live. With auth on, a caller sees only events of its own uploads.

One tail per process reads the stream (XREAD BLOCK on its own connection) and fans entries out to this
process's subscribers, so a thousand dashboards cost one Redis connection, and live events carry their
stream IDs, which a reconnecting EventSource sends back as Last-Event-ID.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError
from tornado.iostream import StreamClosedError

from tuskit.server.auth import bearer_token
from tuskit.server.events import STREAM_KEY
from tuskit.server.http_base import BaseHandler

log = logging.getLogger(__name__)

Entry = tuple[str, dict[str, Any]]  # (stream id, event)
_STREAM_ID = re.compile(r"\d+-\d+")
KEEPALIVE_SECONDS = 15.0
QUEUE_LIMIT = 1000  # a subscriber this far behind is dropped; it reconnects and replays
REPLAY_PAGE = 500
_CLOSED = ("", {})  # sentinel put in a subscriber's queue when its connection ends


def _order(stream_id: str) -> tuple[int, int]:
    ms, seq = stream_id.split("-")
    return int(ms), int(seq)


def _decode(entries: list[Any]) -> list[Entry]:
    out: list[Entry] = []
    for raw_id, fields in entries:
        stream_id = raw_id.decode() if isinstance(raw_id, bytes) else str(raw_id)
        with contextlib.suppress(KeyError, ValueError):
            out.append((stream_id, json.loads(fields[b"event"])))
    return out


class EventFeed:
    """This process's reader of the event stream."""

    def __init__(self, redis_url: str) -> None:
        # its own connection: XREAD BLOCK would hold a pooled one and trip the shared client's socket timeout
        self.redis = aioredis.from_url(redis_url, socket_connect_timeout=3, socket_timeout=None)
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
            self._close(queue)
        with contextlib.suppress(RedisError):
            await self.redis.aclose()

    async def _tail(self) -> None:
        last = ""
        failing = False
        while True:
            try:
                if not last or failing:
                    newest = await self.redis.xrevrange(STREAM_KEY, count=1)
                    newest_id = newest[0][0].decode() if newest else "0-0"
                    if not last:  # start after the newest entry, by ID: "$" on every call would skip events
                        last = newest_id
                    elif _order(newest_id) < _order(last):  # redis came back without our history
                        last = "0-0"
                reply = await self.redis.xread({STREAM_KEY: last}, block=5000, count=REPLAY_PAGE)
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
                            self._close(queue)
                        else:
                            queue.put_nowait(entry)

    def subscribe(self) -> asyncio.Queue[Entry]:
        queue: asyncio.Queue[Entry] = asyncio.Queue(QUEUE_LIMIT + 1)
        self.subscribers.add(queue)
        return queue

    def _close(self, queue: asyncio.Queue[Entry]) -> None:
        self.subscribers.discard(queue)
        with contextlib.suppress(asyncio.QueueFull):
            queue.put_nowait(_CLOSED)

    async def replay(self, after: str) -> list[Entry]:
        """Every entry still in the stream after `after` (exclusive), oldest first."""
        out: list[Entry] = []
        start = f"({after}"
        while True:
            page = _decode(await self.redis.xrange(STREAM_KEY, min=start, max="+", count=REPLAY_PAGE))
            out.extend(page)
            if len(page) < REPLAY_PAGE:
                return out
            start = f"({page[-1][0]}"


class EventsHandler(BaseHandler):
    def presented_token(self) -> str | None:
        # a browser's EventSource cannot set headers: accept the token as `access_token` (RFC 6750 2.3)
        return bearer_token(self.request.headers.get("Authorization")) or \
            self.get_query_argument("access_token", None)

    async def get(self) -> None:
        self.set_header("Content-Type", "text/event-stream; charset=utf-8")
        self.set_header("Cache-Control", "no-store")
        self.set_header("X-Accel-Buffering", "no")  # nginx: pass events through unbuffered
        feed = self.ctx.feed
        self.queue = feed.subscribe()
        try:
            await self._send_comment("connected")
            sent = "0-0"
            after = self.request.headers.get("Last-Event-ID") or self.get_query_argument("last_event_id", "")
            if _STREAM_ID.fullmatch(after):
                for entry in await feed.replay(after):
                    await self._send(entry)
                    sent = entry[0]
            while True:
                try:
                    entry = await asyncio.wait_for(self.queue.get(), KEEPALIVE_SECONDS)
                except TimeoutError:
                    await self._send_comment("keep-alive")
                    continue
                if entry is _CLOSED:
                    break
                if _order(entry[0]) > _order(sent):  # the replay may already have sent it
                    await self._send(entry)
                    sent = entry[0]
        except StreamClosedError:
            pass
        finally:
            feed.subscribers.discard(self.queue)
        if not self._finished:
            self.finish()

    def on_connection_close(self) -> None:
        queue = getattr(self, "queue", None)
        if queue is not None:
            self.ctx.feed._close(queue)

    def _visible(self, event: dict[str, Any]) -> bool:
        return self.ctx.tokens is None or event.get("owner") == self.owner()

    async def _send(self, entry: Entry) -> None:
        stream_id, event = entry
        if self._visible(event):
            self.write(f"id: {stream_id}\ndata: {json.dumps(event)}\n\n")
            await self.flush()

    async def _send_comment(self, text: str) -> None:
        self.write(f": {text}\n\n")
        await self.flush()
