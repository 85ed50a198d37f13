"""After an upload is published: sniff its type from content and, for images, make thumbnails.

Runs as background work after the last PATCH has been answered; everything CPU-bound (Pillow) goes to an
executor. Results live beside the blob as `derived/<id>/report.json`, read by the info endpoint.
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
from pathlib import Path
from typing import Any

from tuskit.server import events as ev
from tuskit.server.events import EventBus
from tuskit.server.imaging import DECODABLE, process_image
from tuskit.server.sniff import SNIFF_BYTES, sniff_type
from tuskit.server.state import Upload
from tuskit.server.storage import BlobStore

log = logging.getLogger(__name__)

REPORT = "report.json"
BACKGROUND_NICENESS = 10
RESTART_AFTER_SECONDS = 120.0  # an upload still unprocessed this long after it finished is processed again


def background_thread() -> None:
    """Executor initializer: run Pillow at a lower CPU priority than the threads serving requests, so
    on a small machine a thumbnail takes longer rather than PATCHes (Linux nices threads one by one)."""
    with contextlib.suppress(OSError, AttributeError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), BACKGROUND_NICENESS)


def _write_json_atomically(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def analyse(blob: Path, out_dir: Path, sizes: Sequence[int], max_pixels: int) -> dict[str, Any]:
    """Executor side: type from the first bytes; image facts and thumbnails when it is an image."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(blob, "rb") as f:
        mime = sniff_type(f.read(SNIFF_BYTES))
    report: dict[str, Any] = {"type": mime}
    if mime in DECODABLE:
        report["image"] = process_image(blob, out_dir, sizes, max_pixels).to_json()
    _write_json_atomically(out_dir / REPORT, report)
    return report


def read_report(out_dir: Path) -> dict[str, Any] | None:
    """The post-processing report, or None while it is being made."""
    try:
        return dict(json.loads((out_dir / REPORT).read_text()))
    except FileNotFoundError:
        return None


class PostProcessor:
    """The service's on_published hook. Its executor is its own (one or two threads), so thumbnails
    never queue in front of the disk writes of PATCHes in the I/O executor."""

    def __init__(self, store: BlobStore, events: EventBus, executor: Executor,
                 sizes: Sequence[int] = (256,), max_pixels: int = 64_000_000) -> None:
        self.store = store
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
            report = await loop.run_in_executor(self.executor, analyse, self.store.path(upload.id),
                                                self.store.derived_dir(upload.id), self.sizes, self.max_pixels)
        except OSError as exc:
            log.warning("post-processing %s failed: %s", upload.id, exc)
            return
        finally:
            self.running.discard(upload.id)
        await self.events.emit(ev.PROCESSED, upload.id, upload.owner, content_type=report["type"],
                               image=report.get("image"))

    def overdue(self, upload: Upload, now: float) -> bool:
        """Finished long ago, unanalysed and not being analysed here: a process died while making it."""
        return (upload.concat != "partial" and upload.id not in self.running
                and upload.finished is not None and now - upload.finished > RESTART_AFTER_SECONDS)
