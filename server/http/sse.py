"""`GET /events`: upload events as Server-Sent Events, replayed from the event history after a
`Last-Event-ID`, then live. With auth on, a caller sees only events of its own uploads.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from tornado.iostream import StreamClosedError

from ..core.ports import FEED_CLOSED, Entry
from .auth import bearer_token
from .base import BaseHandler

KEEPALIVE_SECONDS = 15.0


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
            sent = ""
            after = self.request.headers.get("Last-Event-ID") or self.get_query_argument("last_event_id", "")
            if feed.is_event_id(after):
                for entry in await feed.replay(after):
                    await self._send(entry)
                    sent = entry[0]
            while True:
                try:
                    entry = await asyncio.wait_for(self.queue.get(), KEEPALIVE_SECONDS)
                except TimeoutError:
                    await self._send_comment("keep-alive")
                    continue
                if entry is FEED_CLOSED:
                    break
                if not sent or feed.newer(entry[0], sent):  # the replay may already have sent it
                    await self._send(entry)
                    sent = entry[0]
        except StreamClosedError:
            pass
        finally:
            feed.unsubscribe(self.queue)
        if not self._finished:
            self.finish()

    def on_connection_close(self) -> None:
        queue = getattr(self, "queue", None)
        if queue is not None:
            self.ctx.feed.unsubscribe(queue)

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
