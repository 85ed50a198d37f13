"""Server settings: one dataclass, filled from flags and `TUSKIT_*` environment variables by the CLI."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import platformdirs


def default_data_dir() -> Path:
    return Path(platformdirs.user_data_dir("tuskit")) / "server"


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 1080
    data_dir: Path = field(default_factory=default_data_dir)
    redis_url: str | None = None  # None: start the embedded redis-server in data_dir
    base_path: str = "/files/"
    max_size: int | None = None
    expire_after: float | None = 24 * 3600
    cors_origins: tuple[str, ...] = ("*",)
    network_timeout: float = 60.0  # seconds a PATCH may send nothing before we close it
    behind_proxy: bool = False
    sweep_interval: float = 60.0
    chunk_size: int = 256 * 1024  # tornado's read size for request bodies

    def __post_init__(self) -> None:
        if not (self.base_path.startswith("/") and self.base_path.endswith("/")):
            raise ValueError(f"--base-path must start and end with '/', got {self.base_path!r}")
