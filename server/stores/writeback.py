"""Start writing an upload's bytes to disk as they arrive, so the fsync before publishing has little left.

Without it the kernel keeps a whole large upload dirty in the page cache (writeback starts at 10% of RAM)
and the fsync that makes a finished upload durable writes all of it between the client's last byte and
our 204. Linux's sync_file_range(SYNC_FILE_RANGE_WRITE) queues a range for writeback and returns at once;
it is a hint, durability still comes from the fsync. Elsewhere this is a no-op.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Callable

_SYNC_FILE_RANGE_WRITE = 2


def _sync_file_range() -> Callable[[int, int, int, int], int] | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        function = libc.sync_file_range
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    function.restype = ctypes.c_int
    return function


_SYNC_RANGE = _sync_file_range()


def start_writeback(fd: int, offset: int, length: int) -> None:
    """Queue [offset, offset + length) of `fd` for writing to disk, without waiting (errors are the fsync's)."""
    if _SYNC_RANGE is not None and length > 0:
        _SYNC_RANGE(fd, offset, length, _SYNC_FILE_RANGE_WRITE)
