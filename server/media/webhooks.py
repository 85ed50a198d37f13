"""`--hook-url`: tell another service when an upload is finished and verified (tusd's post-finish hook).

The process that verified the upload sends it, once, as a JSON POST; a failure (connection error,
timeout, any non-2xx) is retried with exponential backoff, then given up with a log line and a metric.
Delivery happens in the background: no client request waits for the receiver.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

from tuskit import protocol

from ..core import events as ev
from ..core.ports import StateStore
from .metrics import Metrics

log = logging.getLogger(__name__)

POST_FINISH = "post-finish"
FIRST_BACKOFF_SECONDS = 0.5


class HookSender:
    def __init__(self, url: str, state: StateStore, metrics: Metrics, base_path: str,
                 timeout: float = 10.0, retries: int = 3) -> None:
        self.url = url
        self.state = state
        self.metrics = metrics
        self.base_path = base_path
        self.timeout = timeout
        self.retries = retries
        self.client = AsyncHTTPClient()
        self._sending: set[asyncio.Task[None]] = set()

    def on_event(self, event: dict[str, Any]) -> None:
        """EventBus listener."""
        if event["type"] == ev.VERIFIED:
            task = asyncio.ensure_future(self._post_finish(event["id"]))
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)

    async def drain(self, timeout: float) -> None:
        """At shutdown: let deliveries in flight finish for a moment, then drop them."""
        if self._sending:
            _done, pending = await asyncio.wait(self._sending, timeout=timeout)
            for task in pending:
                task.cancel()

    async def _post_finish(self, upload_id: str) -> None:
        upload = await self.state.get(upload_id)
        if upload is None:
            return
        metadata = protocol.parse_metadata(upload.metadata)
        body = {
            "type": POST_FINISH,
            "upload": {
                "id": upload.id, "size": upload.length, "sha256": upload.sha256, "owner": upload.owner,
                "path": f"{self.base_path}{upload.id}", "created": upload.created, "finished": upload.finished,
                "metadata": {k: protocol.metadata_text(metadata, k) for k in metadata},
            },
        }
        await self.deliver(body)

    async def deliver(self, body: dict[str, Any]) -> bool:
        payload = json.dumps(body)
        for attempt in range(self.retries + 1):
            if attempt:
                await asyncio.sleep(FIRST_BACKOFF_SECONDS * 2 ** (attempt - 1))
            request = HTTPRequest(self.url, method="POST", body=payload, request_timeout=self.timeout,
                                  connect_timeout=self.timeout, headers={"Content-Type": "application/json",
                                                                         "Hook-Name": body["type"]})
            try:
                await self.client.fetch(request)
                return True
            except (HTTPClientError, OSError) as exc:
                log.warning("hook %s to %s, attempt %d of %d: %s", body["type"], self.url, attempt + 1,
                            self.retries + 1, exc)
        self.metrics.hook_failures += 1
        log.error("hook %s to %s given up after %d attempts", body["type"], self.url, self.retries + 1)
        return False
