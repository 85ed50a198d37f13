"""Will inotify be able to watch a whole tree? Asked before watchdog tries, because watchdog 7 silently
skips the subfolders it cannot watch (a full `max_user_watches` budget looks like a quiet folder).

We add a watch for every folder ourselves on a private inotify instance, then close it (which frees them
all): the first refusal is the answer. Linux only; elsewhere the answer is "yes".
"""

from __future__ import annotations

import ctypes
import errno
import os
import sys
from pathlib import Path

_IN_MODIFY = 0x2


def inotify_refusal(root: Path) -> OSError | None:
    """The error inotify gives for this tree (ENOSPC: watch limit, EMFILE: instance limit), or None."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.inotify_init1(os.O_CLOEXEC)
    if fd < 0:
        return _error(ctypes.get_errno())
    try:
        for folder, _, _ in os.walk(root):
            if libc.inotify_add_watch(fd, os.fsencode(folder), _IN_MODIFY) < 0:
                code = ctypes.get_errno()
                if code in (errno.ENOSPC, errno.EMFILE, errno.ENOMEM):
                    return _error(code)
                # a folder that vanished or is unreadable: watchdog skips it too
    finally:
        os.close(fd)
    return None


def _error(code: int) -> OSError:
    text = "inotify watch limit reached" if code == errno.ENOSPC else os.strerror(code)
    return OSError(code, text)
