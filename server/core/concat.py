"""The concatenation extension: a final upload is its partials' bytes in order, merged once all are done.

Any process may merge a final; the final's lease picks one. A final waits for its partials as long as
they live and ends with them, never by a clock of its own.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from tuskit import errors, protocol

from . import events as ev
from . import ids
from .failures import storage_error
from .model import ACTIVE, DONE, TERMINATED, Upload
from .publish import Publisher
from .runtime import Runtime

log = logging.getLogger("tuskit.server.core")


class Concatenator:
    def __init__(self, rt: Runtime, publisher: Publisher) -> None:
        self.rt = rt
        self.publisher = publisher

    async def prepare_final(self, upload: Upload, concat: protocol.Concat) -> Upload:
        """The final's record before creation: its partials checked (same owner, alive) and its length."""
        part_ids = [ids.id_from_url(url, self.rt.config.base_path) for url in concat.urls]
        parts = await self.rt.state.get_many(part_ids)
        total: int | None = 0
        for part_id, part in zip(part_ids, parts, strict=True):
            if part is None or part.owner != upload.owner or part.status not in (ACTIVE, DONE):
                raise errors.INVALID_CONCAT(f"partial upload {part_id} not found")
            if part.concat != "partial":
                raise errors.INVALID_CONCAT(f"upload {part_id} was not created with Upload-Concat: partial")
            total = None if total is None or part.length is None else total + part.length
        max_size = self.rt.config.max_size
        if total is not None and max_size is not None and total > max_size:
            raise errors.TOO_LARGE(f"concatenated length {total} exceeds Tus-Max-Size {max_size}")
        return replace(upload, parts=tuple(part_ids), length=total, expires=None)

    async def on_published(self, upload: Upload) -> None:
        """Publisher hook: a partial that completes may be the last one some finals waited for."""
        if upload.concat == "partial":
            await self.merge_finals(await self.rt.state.finals_of(upload.id))

    async def merge_finals(self, final_ids: list[str]) -> None:
        for final_id in final_ids:
            try:
                await self.try_merge(final_id)
            except errors.TusError as exc:
                log.info("final %s not merged yet: %s", final_id, exc.message)

    async def try_merge(self, final_id: str) -> None:
        async with self.rt.leased(final_id):
            await self.merge_held(final_id)

    async def merge_held(self, final_id: str) -> Upload | None:
        """Under the final's lease: merge and verify it if every partial is done (None while some are not)."""
        rt = self.rt
        final = await rt.state.get(final_id)
        if final is None or final.status != ACTIVE:
            return None
        parts = await rt.state.get_many(list(final.parts))
        gone = [part_id for part_id, p in zip(final.parts, parts, strict=True)
                if p is None or p.status not in (ACTIVE, DONE)]
        if gone:  # it can never complete: say so instead of waiting until it expires
            reason = f"partial upload {gone[0]} is gone, so this final upload cannot be completed"
            await rt.state.bury(final_id, TERMINATED, reason)
            await rt.io(rt.store.delete, final_id)
            await rt.events.emit(ev.TERMINATED, final_id, final.owner, reason=reason)
            raise errors.GONE(reason)
        if any(p is None or p.status != DONE or p.length is None for p in parts):
            return None
        lengths = [(p.id, p.length) for p in parts if p is not None and p.length is not None]
        total = sum(n for _, n in lengths)
        if final.length is None:
            await rt.state.set_length(final_id, total)
        try:
            await rt.io(rt.store.concat, final_id, lengths)
        except OSError as exc:
            raise storage_error(exc) from exc
        return await self.publisher.complete(replace(final, length=total, offset=total), hasher=None)
