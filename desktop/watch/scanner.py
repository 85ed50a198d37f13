"""Walk a root for the files that may be uploaded: what the startup scan and periodic rescans compare
with the journal, so files written while nothing was watching (or events a watcher dropped) are found.

`os.scandir` gives names and types without extra syscalls; only candidate files are stat'ed. Ignored
names prune whole folders; symbolic links are never followed.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from .ignore import IgnoreRules


def scan(root: Path, rules: IgnoreRules, start: Path | None = None) -> Iterator[tuple[str, int, int]]:
    """Yield (path, size, mtime_ns) for every regular file under `start` (default: the root)."""
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
                if rules.ignores_name(entry.name) or entry.is_symlink():
                    continue
                if rules.path_globs and rules.ignores_relative(entry.path[prefix:].replace(os.sep, "/")):
                    continue
                try:
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(entry.path)
                    elif entry.is_file(follow_symlinks=False):
                        st = entry.stat(follow_symlinks=False)
                        yield entry.path, st.st_size, st.st_mtime_ns
                except OSError:
                    continue
