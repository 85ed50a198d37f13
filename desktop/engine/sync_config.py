"""What the sync engine is told to do, validated, with the documented defaults.

The engine's own input, so it lives beside the engine: `tuskit.desktop.config` (the TOML file and the
flags) builds one, and tests and benchmarks build one directly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import platformdirs

MiB = 1024 * 1024


def default_journal_path() -> Path:
    """`~/.local/state/tuskit/journal.sqlite3`: state, not configuration, and not a cache to be wiped."""
    return Path(platformdirs.user_state_dir("tuskit")) / "journal.sqlite3"


@dataclass
class SyncConfig:
    """Everything the engine needs; the defaults are the documented policy."""

    roots: list[Path]
    server_url: str
    token: str | None = None
    workers: int = 4
    chunk_size: int = 4 * MiB  # the first PATCH; later ones grow on a fast link (see client.tus.upload)
    max_chunk_size: int = 64 * MiB
    quiet_seconds: float = 2.0
    # a file still changing after this long is uploaded as a snapshot of what is there (verified by sha256)
    max_wait_seconds: float = 600.0
    rescan_seconds: float = 300.0
    poll: bool = False
    ignore: list[str] = field(default_factory=list)
    include_hidden: bool = False
    journal_path: Path = field(default_factory=default_journal_path)
    bandwidth_limit: int | None = None
    timeout: float = 60.0
    max_attempts: int = 10
    watch: bool = True  # False (`sync --once`): scan the roots once, no watchers or periodic rescans

    def __post_init__(self) -> None:
        self.roots = [Path(r).expanduser().resolve() for r in self.roots]
        self.journal_path = Path(self.journal_path).expanduser()
        if not self.server_url.startswith(("http://", "https://")):
            raise ValueError(f"server URL must start with http:// or https://, got {self.server_url!r}")
        if not self.server_url.endswith("/"):
            self.server_url += "/"
        if self.workers < 1:
            raise ValueError("workers must be at least 1")
        if self.chunk_size < 64 * 1024:
            raise ValueError("chunk size must be at least 64KiB")
        self.max_chunk_size = max(self.max_chunk_size, self.chunk_size)
        if self.bandwidth_limit is not None and self.bandwidth_limit <= 0:
            self.bandwidth_limit = None
