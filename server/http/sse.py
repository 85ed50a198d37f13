"""`GET /events`: upload events as Server-Sent Events, replayed from the event history after a
`Last-Event-ID`, then live. With auth on, a caller sees only events of its own uploads.

Without --tokens the stream would show anyone every upload's ID, and an ID is the only key to an upload:
it is off then unless the operator opts in with --public-events.

Whatever a caller does, its stream holds little: a replay goes a page at a time (a few pages are read and
sent at once in this process, first come first served: ServerContext.replay_slots), a bounded depth per
response (it then
ends with the ID it reached, and EventSource reconnects from there), and a reader that takes nothing for
--network-timeout is dropped instead of buffered for.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

from tornado.iostream import StreamClosedError

from tuskit import errors

from ..core.ports import FEED_CLOSED, Entry
from .auth import bearer_token
from .base import BaseHandler

log = logging.getLogger("tuskit.server.http")

KEEPALIVE_SECONDS = 15.0


_DEPTH_REACHED = "depth"  # the replay ended the response; the client reconnects from where it got


class _SlowReader(Exception):
    """The client took nothing of what was sent to it for --network-timeout."""


class EventsHandler(BaseHandler):
    def presented_token(self) -> str | None:
        # a browser's EventSource cannot set headers: accept the token as `access_token` (RFC 6750 2.3)
        return bearer_token(self.request.headers.get("Authorization")) or \
            self.get_query_argument("access_token", None)

    async def prepare(self) -> None:
        await super().prepare()
        if self.ctx.tokens is None and not self.ctx.config.public_events:
            raise errors.NOT_FOUND("the event stream is off: without --tokens it would show anyone every upload's "
                                   "ID; run the server with --tokens, or with --public-events to serve it to all")

    async def get(self) -> None:
        self.set_header("Content-Type", "text/event-stream; charset=utf-8")
        self.set_header("Cache-Control", "no-store")
        self.set_header("X-Accel-Buffering", "no")  # nginx: pass events through unbuffered
        feed = self.ctx.feed
        self.queue = feed.subscribe()
        try:
            await self._send_comment("connected")
            seen = ""  # the last history entry replayed: live events up to it were sent already
            after = self.request.headers.get("Last-Event-ID") or self.get_query_argument("last_event_id", "")
            if feed.is_event_id(after):
                seen = await self._replay(after)
            while seen != _DEPTH_REACHED:
                try:
                    entry = await asyncio.wait_for(self.queue.get(), KEEPALIVE_SECONDS)
                except TimeoutError:
                    await self._send_comment("keep-alive")
                    continue
                if entry is FEED_CLOSED:
                    break
                if not seen or feed.newer(entry[0], seen):
                    if self._visible(entry[1]):
                        self._write_event(entry)
                        await self._flush()
                    seen = entry[0]
        except StreamClosedError:
            pass
        except _SlowReader:
            log.info("dropped a slow event stream reader at %s: it took nothing for %gs", self.request.remote_ip,
                     self.ctx.config.network_timeout)
            self.request.connection.close()
        finally:
            self.ctx.feed.unsubscribe(self.queue)
        if not self._finished:
            self.finish()

    async def _replay(self, after: str) -> str:
        """Send the caller's events of the history after `after`, page by page, each page read and sent in
        one of the process's replay slots. Returns the last entry covered, or _DEPTH_REACHED when the
        replay stopped short of the present (the response then ends with the ID it reached, so that a
        reconnecting EventSource continues from there)."""
        owner = None if self.ctx.tokens is None else self.owner()
        async with contextlib.aclosing(self.ctx.feed.replay(after, owner)) as pages:
            while True:
                async with self.ctx.replay_slots:
                    page = await anext(pages, None)
                    if page is None:
                        return _DEPTH_REACHED
                    for entry in page.entries:
                        self._write_event(entry)
                    if not page.entries or page.entries[-1][0] != page.last_id:
                        self.write(f"id: {page.last_id}\n\n")  # no data: only the client's Last-Event-ID moves
                    await self._flush()
                if page.caught_up:
                    return page.last_id

    def on_connection_close(self) -> None:
        queue = getattr(self, "queue", None)
        if queue is not None:
            self.ctx.feed.unsubscribe(queue)
        super().on_connection_close()

    def _visible(self, event: dict[str, Any]) -> bool:
        return self.ctx.tokens is None or event.get("owner") == self.owner()

    def _write_event(self, entry: Entry) -> None:
        stream_id, event = entry
        self.write(f"id: {stream_id}\ndata: {json.dumps(event)}\n\n")

    async def _send_comment(self, text: str) -> None:
        self.write(f": {text}\n\n")
        await self._flush()

    async def _flush(self) -> None:
        """Send what was written; a client that takes none of it in time is dropped, not buffered for."""
        try:
            await asyncio.wait_for(self.flush(), self.ctx.config.network_timeout)
        except TimeoutError:
            raise _SlowReader() from None
