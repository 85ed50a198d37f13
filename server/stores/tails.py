"""The unfilled part of an S3 multipart upload (its "tail"): how it is kept in the bucket and remembered
in-process.

A tail is stored as pieces, one object per request body that ended inside the part, each holding only the
bytes that body added: `<key>.tail/<part>/<start>`, `start` being where in the part its bytes begin. A
small PATCH then PUTs its own bytes, not the whole tail again. Reading a tail back follows the chain from
0: the piece at 0, then the one where it ends, and so on, up to the recorded offset. A piece that a crash
left past the recorded offset is off that chain, or overwritten by the next body that starts at its key.
When a chain grows long, the next body stores the whole tail again as the piece at 0, which jumps over
the rest.

The process that stored a tail keeps it in memory (a bounded LRU), so the next request of the same upload
in that process reads nothing back; another process reads the chain once.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

MAX_PIECES = 16  # a chain this long is stored again as one piece


@dataclass(frozen=True)
class Tail:
    data: bytes
    pieces: int  # how many stored pieces the chain to `data` takes


def piece_key(base: str, part: int, start: int) -> str:
    return f"{base}.tail/{part:05d}/{start:010d}"


def pieces_prefix(base: str, part: int) -> str:
    return f"{base}.tail/{part:05d}/"


def chain(listed: dict[int, int], size: int) -> list[tuple[int, int]] | None:
    """(start, bytes to read) of the pieces covering [0, size), from {start: piece size}; None when the
    chain breaks before `size`."""
    pieces, at = [], 0
    while at < size:
        length = listed.get(at, 0)
        if length == 0:
            return None
        pieces.append((at, min(length, size - at)))
        at += length
    return pieces


class TailCache:
    """Tails this process stored, by multipart upload key, with the offset they end at; at most `budget`
    bytes in all."""

    def __init__(self, budget: int = 64 * 1024 * 1024) -> None:
        self.budget = budget
        self.size = 0
        self._entries: OrderedDict[str, tuple[int, Tail]] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, base: str, offset: int) -> Tail | None:
        """The tail ending at `offset`, removed (its taker now extends it); None if not that offset."""
        with self._lock:
            entry = self._entries.pop(base, None)
            if entry is None:
                return None
            self.size -= len(entry[1].data)
            return entry[1] if entry[0] == offset else None

    def put(self, base: str, offset: int, tail: Tail) -> None:
        with self._lock:
            old = self._entries.pop(base, None)
            if old is not None:
                self.size -= len(old[1].data)
            if len(tail.data) > self.budget:
                return
            self._entries[base] = (offset, tail)
            self.size += len(tail.data)
            while self.size > self.budget:
                _, (_, evicted) = self._entries.popitem(last=False)
                self.size -= len(evicted.data)

    def forget(self, base: str) -> None:
        self.take(base, -1)
