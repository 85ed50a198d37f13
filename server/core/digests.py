"""Running SHA-256 per upload, fed as bytes arrive, so verifying the whole file at the end costs nothing.

hashlib objects cannot be stored in Redis, so the running hash lives in this process only. A process
that did not see the earlier bytes (restart, another node, a discarded chunk) has no entry for that
offset and the service rebuilds the digest from the stored bytes once, when the upload completes.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import Any


class RunningDigests:
    """upload id -> (offset the hash covers, sha256 object); least recently used entries are dropped."""

    def __init__(self, capacity: int = 10_000) -> None:
        self.capacity = capacity
        self._entries: OrderedDict[str, tuple[int, Any]] = OrderedDict()

    def take(self, upload_id: str, offset: int) -> Any | None:
        """The hash covering exactly [0, offset), removed from the cache (its taker now feeds it)."""
        if offset == 0:
            self._entries.pop(upload_id, None)
            return hashlib.sha256()
        entry = self._entries.pop(upload_id, None)
        if entry is None or entry[0] != offset:
            return None
        return entry[1]

    def put(self, upload_id: str, offset: int, hasher: Any) -> None:
        self._entries[upload_id] = (offset, hasher)
        self._entries.move_to_end(upload_id)
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)

    def forget(self, upload_id: str) -> None:
        self._entries.pop(upload_id, None)
