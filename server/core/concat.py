"""The concatenation extension: a final upload is its partials' bytes in order, merged once all are done.

Any process may merge a final; the final's lease picks one. A final waits for its partials as long as
they live and ends with them, never by a clock of its own.

A merge copies bytes the client sent once, so it is bounded like an upload: each partial may be listed
once, a final names at most MAX_PARTS of them, and a total over --max-size or over the store's free
space is refused before anything is copied (413 when the total is known at creation; otherwise the
final fails, or waits for room with 507, when its partials are done).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import NoReturn

from tuskit import errors, protocol

from . import events as ev
from . import ids
from .failures import storage_error
from .model import ACTIVE, DONE, FAILED, TERMINATED, Upload
from .publish import Publisher
from .runtime import Runtime

log = logging.getLogger("tuskit.server.core")

# The final's HEAD echoes every partial's URL in one Upload-Concat header: at ~80 bytes a URL, a hundred
# stay under 8 KiB, the header line nginx (large_client_header_buffers) and most clients accept.
MAX_PARTS = 100


class Concatenator:
    def __init__(self, rt: Runtime, publisher: Publisher) -> None:
        self.rt = rt
        self.publisher = publisher

    async def prepare_final(self, upload: Upload, concat: protocol.Concat) -> Upload:
        """The final's record before creation: its partials checked (listed once, same owner, alive) and
        its length, which must fit --max-size and the store."""
        if len(concat.urls) > MAX_PARTS:
            raise errors.INVALID_CONCAT(f"a final upload names at most {MAX_PARTS} partial uploads")
        part_ids = [ids.id_from_url(url, self.rt.config.base_path) for url in concat.urls]
        if len(set(part_ids)) != len(part_ids):
            again = next(p for i, p in enumerate(part_ids) if p in part_ids[:i])
            raise errors.INVALID_CONCAT(f"Upload-Concat lists partial upload {again} more than once")
        parts = await self.rt.state.get_many(part_ids)
        total: int | None = 0
        for part_id, part in zip(part_ids, parts, strict=True):
            if part is None or part.owner != upload.owner or part.status not in (ACTIVE, DONE):
                raise errors.INVALID_CONCAT(f"partial upload {part_id} not found")
            if part.concat != "partial":
                raise errors.INVALID_CONCAT(f"upload {part_id} was not created with Upload-Concat: partial")
            total = None if total is None or part.length is None else total + part.length
        if total is not None:
            if (reason := self._too_large(total)) is not None:
                raise errors.TOO_LARGE(reason)
            if (room := await self._no_room(total)) is not None:
                raise errors.TOO_LARGE(room)
        return replace(upload, parts=tuple(part_ids), length=total, expires=None)

    def _too_large(self, total: int) -> str | None:
        max_size = self.rt.config.max_size
        if max_size is not None and total > max_size:
            return f"concatenated length {total} exceeds Tus-Max-Size {max_size}"
        return None

    async def _no_room(self, total: int) -> str | None:
        free = await self.rt.io(self.rt.store.free_space)
        if free is not None and total > free:
            return f"concatenated length {total} exceeds the free space of the store ({free} bytes)"
        return None

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
            await self._end(final, TERMINATED, f"partial upload {gone[0]} is gone, so this final upload "
                                               "cannot be completed")
        if any(p is None or p.status != DONE or p.length is None for p in parts):
            return None
        lengths = [(p.id, p.length) for p in parts if p is not None and p.length is not None]
        total = sum(n for _, n in lengths)
        if (reason := self._too_large(total)) is not None:  # partials of deferred length added up
            await self._end(final, FAILED, reason)
        if (room := await self._no_room(total)) is not None:  # it waits: a later HEAD or partial tries again
            raise errors.INSUFFICIENT_STORAGE(room)
        if final.length is None:
            await rt.state.set_length(final_id, total)
        try:
            await rt.io(rt.store.concat, final_id, lengths)
        except OSError as exc:
            raise storage_error(exc) from exc
        return await self.publisher.complete(replace(final, length=total, offset=total), hasher=None)

    async def _end(self, final: Upload, status: str, reason: str) -> NoReturn:
        """A final that can never be merged goes at once, with the reason its requests will see."""
        await self.rt.state.bury(final.id, status, reason)
        await self.rt.io(self.rt.store.delete, final.id)
        await self.rt.events.emit(ev.TERMINATED, final.id, final.owner, reason=reason)
        raise errors.GONE(reason)
