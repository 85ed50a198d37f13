"""The end of an upload: its bytes made durable, the declared SHA-256 checked, then published or failed.

A file whose declared digest does not match is deleted and never published: the client gets 460 and
later requests 410 with the reason. Published uploads are handed to `on_published` hooks (merging the
finals that wait for a partial, post-processing) as background work, after the client's answer.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

from tuskit import errors, protocol

from . import events as ev
from .failures import storage_error
from .model import DONE, FAILED, Upload, declared_sha256
from .ports import BlobStore
from .runtime import Runtime

log = logging.getLogger("tuskit.server.core")

Hook = Callable[[Upload], Awaitable[None]]


def hash_stored(store: BlobStore, upload_id: str, length: int) -> Any:
    """Executor side: SHA-256 of a finished blob, read back once (for a process that missed earlier bytes)."""
    hasher = hashlib.sha256()
    for block in store.read(upload_id, 0, length):
        hasher.update(block)
    return hasher


class Publisher:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.on_published: list[Hook] = []

    async def complete(self, upload: Upload, hasher: Any | None, session: str | None = None) -> Upload:
        """All bytes are in: make them durable, verify the declared sha256, publish or fail.

        `hasher`: the running SHA-256 over every byte, or None when this process did not see them all
        (it is then rebuilt once from storage). `session`: the lease token of the append session that
        wrote the last bytes, if one did."""
        assert upload.length is not None
        rt = self.rt
        # one segment whose writers all ended (or are this session) is published as it is; otherwise its
        # recorded ranges are copied into a blob no stale writer holds open
        in_place = len(upload.segments) == 1 and upload.writer in ("", session)
        try:
            await rt.io(rt.store.finalize, upload.id, upload.length, upload.segments, in_place)
            if hasher is None:
                hasher = await rt.io(hash_stored, rt.store, upload.id, upload.length)
        except OSError as exc:
            raise storage_error(exc) from exc
        actual = hasher.hexdigest()
        rt.digests.forget(upload.id)
        declared = declared_sha256(protocol.parse_metadata(upload.metadata))
        await rt.events.emit(ev.FINISHED, upload.id, upload.owner, size=upload.length)
        if declared is not None and declared != actual:
            reason = f"declared sha256 {declared} but received bytes hash to {actual}"
            if await rt.state.settle(upload.id, FAILED, sha256=actual, reason=reason, offset=upload.length):
                await rt.io(rt.store.delete, upload.id)
                await rt.events.emit(ev.VERIFICATION_FAILED, upload.id, upload.owner, reason=reason)
                log.warning("upload %s failed verification: %s", upload.id, reason)
            raise errors.CHECKSUM_MISMATCH(f"file checksum mismatch: {reason}")
        published = replace(upload, status=DONE, sha256=actual, offset=upload.length)
        if await rt.state.settle(upload.id, DONE, sha256=actual, offset=upload.length):
            await rt.events.emit(ev.VERIFIED, upload.id, upload.owner, sha256=actual, declared=declared is not None)
            for hook in self.on_published:
                rt.spawn(hook(published))
        return replace(published, expires=None)
