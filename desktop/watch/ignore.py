"""Which paths under a root are never uploaded: editors' and browsers' temporaries, plus user globs.

Policy (documented in `tuskit sync --help`):
- names matching DEFAULT_IGNORES are partial or temporary files that some program is still writing or
  will delete; uploading them would publish garbage;
- hidden files and folders (a name starting with '.') are skipped unless `include_hidden`: they are
  mostly tool state (.git, .cache) rather than what people drop into a watched folder;
- symbolic links are never followed: they can point outside the root or loop.
A glob without '/' matches a name at any depth (and prunes a folder of that name); a glob with '/'
matches the path relative to the root, in POSIX form.
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from pathlib import Path, PurePosixPath

DEFAULT_IGNORES: tuple[str, ...] = (
    "*.part", "*.crdownload", "*.tmp", ".*.swp", "~$*", ".~lock.*", "*~", ".goutputstream-*", "4913", ".DS_Store",
)


class IgnoreRules:
    def __init__(self, user_globs: list[str] | tuple[str, ...] = (), include_hidden: bool = False) -> None:
        globs = [*DEFAULT_IGNORES, *user_globs]
        self.name_globs = [g for g in globs if "/" not in g]
        self.path_globs = [g.strip("/") for g in globs if "/" in g]
        self.include_hidden = include_hidden

    def ignores_name(self, name: str) -> bool:
        """True for a single path component that is never uploaded (nor descended into, for folders)."""
        if not self.include_hidden and name.startswith("."):
            return True
        return any(fnmatchcase(name, g) for g in self.name_globs)

    def ignores(self, root: Path, path: Path) -> bool:
        """True if `path` (under `root`) must not be uploaded, judging every component below the root."""
        try:
            rel = PurePosixPath(path.relative_to(root).as_posix())
        except ValueError:
            return True  # outside every root: a move out of the folder, or a symlink target
        return any(self.ignores_name(part) for part in rel.parts) or self.ignores_relative(str(rel))

    def ignores_relative(self, rel: str) -> bool:
        """Path globs (those with a '/') against a POSIX path relative to the root."""
        return any(fnmatchcase(rel, g) or fnmatchcase(rel, g + "/*") for g in self.path_globs)
