"""After an upload is published: sniff its type from content and, for images, make thumbnails.

Runs as background work after the last PATCH has been answered; everything CPU-bound (Pillow) goes to an
executor. Results are the upload's derived artefacts in its blob store (`report.json`, thumbnails), read
by the info endpoint through the core service.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import threading
from collections.abc import Sequence
from concurrent.futures import Executor
from typing import Any

from ..core import events as ev
from ..core.model import Upload
from ..core.ports import BlobStore, EventSink, StateStore
from .imaging import DECODABLE, process_image
from .sniff import SNIFF_BYTES, sniff_type

log = logging.getLogger(__name__)

REPORT = "report.json"
BACKGROUND_NICENESS = 10
RESTART_AFTER_SECONDS = 120.0  # an upload still unprocessed this long after it finished is processed again


def background_thread() -> None:
    """Executor initializer: run Pillow at a lower CPU priority than the threads serving requests, so
    on a small machine a thumbnail takes longer rather than PATCHes (Linux nices threads one by one)."""
    with contextlib.suppress(OSError, AttributeError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), BACKGROUND_NICENESS)


def analyse(store: BlobStore, upload_id: str, sizes: Sequence[int], max_pixels: int) -> dict[str, Any]:
    """Executor side: type from the first bytes; image facts and thumbnails when it is an image. The
    report is stored last: its presence says the thumbnails it names are there."""
    with store.open(upload_id) as blob:
        mime = sniff_type(blob.read(SNIFF_BYTES))
        report: dict[str, Any] = {"type": mime}
        if mime in DECODABLE:
            blob.seek(0)
            image, thumbnails = process_image(blob, sizes, max_pixels)
            for name, data in thumbnails.items():
                store.put_derived(upload_id, name, data)
            report["image"] = image.to_json()
    store.put_derived(upload_id, REPORT, json.dumps(report).encode())
    return report


def parse_report(raw: bytes | None) -> dict[str, Any] | None:
    """The post-processing report as stored, or None while it is being made."""
    return None if raw is None else dict(json.loads(raw))


def thumbnail_sizes(report: dict[str, Any]) -> tuple[int, ...]:
    """The sizes of the thumbnails a report names, smallest first."""
    return tuple(sorted(int(size) for size in (report.get("image") or {}).get("thumbnails", {})))


class PostProcessor:
    """The service's on_published hook. Its executor is its own (one or two threads), so thumbnails
    never queue in front of the disk writes of PATCHes in the I/O executor. What it found is also noted in
    the upload's state (`state`), so listings show types and thumbnails without reading reports."""

    def __init__(self, store: BlobStore, state: StateStore, events: EventSink, executor: Executor,
                 sizes: Sequence[int] = (256,), max_pixels: int = 64_000_000) -> None:
        self.store = store
        self.state = state
        self.events = events
        self.executor = executor
        self.sizes = tuple(sizes)
        self.max_pixels = max_pixels
        self.running: set[str] = set()  # uploads this process is analysing now

    async def __call__(self, upload: Upload) -> None:
        if upload.concat == "partial":
            return  # a piece of a final upload; the final is analysed when it is assembled
        self.running.add(upload.id)
        loop = asyncio.get_running_loop()
        try:
            report = await loop.run_in_executor(self.executor, analyse, self.store, upload.id, self.sizes,
                                                self.max_pixels)
        except OSError as exc:
            log.warning("post-processing %s failed: %s", upload.id, exc)
            return
        finally:
            self.running.discard(upload.id)
        try:  # the note before the event: a listing refreshed on the event shows the result
            await self.state.note_processed(upload.id, report["type"], thumbnail_sizes(report))
            await self.events.emit(ev.PROCESSED, upload.id, upload.owner, content_type=report["type"],
                                   image=report.get("image"))
        except self.state.unavailable as exc:  # the report is stored; the listing says "processing" until
            log.warning("upload %s processed, but redis was unavailable to record it: %s", upload.id, exc)

    def overdue(self, upload: Upload, now: float) -> bool:
        """Finished long ago, unanalysed and not being analysed here: a process died while making it."""
        return (upload.concat != "partial" and upload.id not in self.running
                and upload.finished is not None and now - upload.finished > RESTART_AFTER_SECONDS)
