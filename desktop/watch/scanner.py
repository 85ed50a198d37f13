"""Walk a root for the files that may be uploaded: what the startup scan and periodic rescans compare
with the journal, so files written while nothing was watching (or events a watcher dropped) are found.

`os.scandir` gives names and types without extra syscalls; only candidate files are stat'ed. Ignored
names prune whole folders; symbolic links are never followed. A root may also be a single file (`tuskit
upload FILE`): the scan then finds that file, whatever its name, since it was named on purpose.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

from .ignore import SYMLINK, IgnoreRules

OnSkip = Callable[[str, str], None]  # (path, reason)


def scan(root: Path, rules: IgnoreRules, start: Path | None = None,
         on_skip: OnSkip | None = None) -> Iterator[tuple[str, int, int]]:
    """Yield (path, size, mtime_ns) for every regular file under `start` (default: the root); what is left
    out is reported to `on_skip` (a pruned folder once, not each file in it)."""
    try:
        st = os.lstat(start or root)
    except OSError:
        return
    if stat.S_ISREG(st.st_mode):
        yield str(start or root), st.st_size, st.st_mtime_ns
        return
    skipped = on_skip or (lambda _path, _why: None)
    prefix = len(str(root)) + 1
    stack = [str(start or root)]
    while stack:
        folder = stack.pop()
        try:
            entries = os.scandir(folder)
        except OSError:  # vanished or unreadable: the next rescan tries again
            continue
        with entries:
            for entry in entries:
                why = rules.name_reason(entry.name) or (SYMLINK if entry.is_symlink() else None)
                if why is None and rules.path_globs:
                    why = rules.relative_reason(entry.path[prefix:].replace(os.sep, "/"))
                if why is not None:
                    skipped(entry.path, why)
                    continue
                try:
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(entry.path)
                    elif entry.is_file(follow_symlinks=False):
                        st = entry.stat(follow_symlinks=False)
                        yield entry.path, st.st_size, st.st_mtime_ns
                except OSError:
                    continue
