"""Which paths under a root are never uploaded: editors' and browsers' temporaries, plus user globs.

Policy (documented in `tuskit sync --help`):
- names matching DEFAULT_IGNORES are partial or temporary files that some program is still writing or
  will delete; uploading them would publish garbage;
- hidden files and folders (a name starting with '.') are skipped unless `include_hidden`: they are
  mostly tool state (.git, .cache) rather than what people drop into a watched folder;
- symbolic links are never followed: they can point outside the root or loop.
A glob without '/' matches a name at any depth (and prunes a folder of that name); a glob with '/'
matches the path relative to the root, in POSIX form.

Every rule answers with its reason rather than a bare yes, so a skipped file can be reported (`tuskit sync
-v`) in words a user can act on.
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from pathlib import Path, PurePosixPath

DEFAULT_IGNORES: tuple[str, ...] = (
    "*.part", "*.crdownload", "*.tmp", ".*.swp", "~$*", ".~lock.*", "*~", ".goutputstream-*", "4913", ".DS_Store",
)
HIDDEN = "hidden (--include-hidden uploads it)"
SYMLINK = "symbolic link (never followed)"


class IgnoreRules:
    def __init__(self, user_globs: list[str] | tuple[str, ...] = (), include_hidden: bool = False) -> None:
        self.user_name_globs = [g for g in user_globs if "/" not in g]
        self.path_globs = [g.strip("/") for g in user_globs if "/" in g]
        self.include_hidden = include_hidden

    def name_reason(self, name: str) -> str | None:
        """Why a single path component is never uploaded (nor descended into, for folders); None if it is."""
        if not self.include_hidden and name.startswith("."):
            return HIDDEN
        if glob := next((g for g in DEFAULT_IGNORES if fnmatchcase(name, g)), None):
            return f"temporary file ({glob})"
        if glob := next((g for g in self.user_name_globs if fnmatchcase(name, g)), None):
            return f"--ignore {glob}"
        return None

    def relative_reason(self, rel: str) -> str | None:
        """Path globs (those with a '/') against a POSIX path relative to the root."""
        glob = next((g for g in self.path_globs if fnmatchcase(rel, g) or fnmatchcase(rel, g + "/*")), None)
        return None if glob is None else f"--ignore {glob}"

    def reason(self, root: Path, path: Path) -> tuple[Path, str] | None:
        """The outermost ignored path from `root` down to `path` and why, or None if `path` is uploaded."""
        try:
            rel = PurePosixPath(path.relative_to(root).as_posix())
        except ValueError:
            return path, "outside the watched folders"  # a move out of the folder, or a symlink target
        for depth, part in enumerate(rel.parts, 1):
            if why := self.name_reason(part):
                return root.joinpath(*rel.parts[:depth]), why
        if why := self.relative_reason(str(rel)):
            return path, why
        return None

    def ignores(self, root: Path, path: Path) -> bool:
        """True if `path` (under `root`) must not be uploaded, judging every component below the root."""
        return self.reason(root, path) is not None
