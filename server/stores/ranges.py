"""Reading an exact number of bytes from a stream in bounded blocks, for ranged reads of a blob: a stream that
ends early is an error, never a short answer that a download or a hash would take for the whole range."""

from __future__ import annotations

from collections.abc import Callable, Iterator

BLOCK = 1024 * 1024  # the most one block holds (what a download or a hash has in memory at once)


def exact_blocks(read: Callable[[int], bytes], length: int, short: Callable[[], OSError]) -> Iterator[bytes]:
    """`length` bytes from `read` in blocks of at most BLOCK; `short()` is raised when the stream ends before."""
    remaining = length
    while remaining > 0:
        block = read(min(BLOCK, remaining))
        if not block:
            raise short()
        remaining -= len(block)
        yield block
