"""Server settings: one dataclass, filled from flags and `TUSKIT_*` environment variables by the CLI."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import platformdirs

# routes of their own outside the tus endpoint; a base path equal to one of them would be shadowed
OPS_PATHS = ("/healthz", "/metrics", "/events", "/uploads", "/page")
MAX_WORKERS = 256


def default_data_dir() -> Path:
    return Path(platformdirs.user_data_dir("tuskit")) / "server"


def default_workers() -> int:
    """The cores this process may run on (a container's CPU set, not the host's count)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 1080
    data_dir: Path = field(default_factory=default_data_dir)
    redis_url: str | None = None  # None: start the embedded redis-server in data_dir
    storage: str = "file"  # "file": the data dir; or s3://BUCKET[/PREFIX]
    s3_endpoint: str | None = None  # None: AWS; else an S3-compatible server's URL
    s3_region: str | None = None  # None: from the AWS configuration chain
    s3_part_size: int = 8 * 1024 * 1024
    s3_presign_downloads: float = 0.0  # > 0: downloads redirect to a presigned URL valid this many seconds
    base_path: str = "/files/"
    max_size: int | None = None
    expire_after: float | None = 24 * 3600
    cors_origins: tuple[str, ...] = ("*",)
    network_timeout: float = 60.0  # seconds a request head or body may send nothing before we close it
    buffer_budget: int = 64 * 1024 * 1024  # request body bytes this process holds in memory at once
    behind_proxy: bool = False
    sweep_interval: float = 60.0
    chunk_size: int = 1024 * 1024  # tornado's read size for request bodies: one piece per flush_bytes
    # post-processing
    accept: tuple[str, ...] = ()  # MIME patterns (image/*, application/pdf); empty: anything
    thumbnail_sizes: tuple[int, ...] = (256,)  # long side in pixels
    max_image_pixels: int = 64_000_000  # larger images are recorded as invalid, never decoded
    # auth and signed links
    tokens_file: Path | None = None
    # without tokens, /uploads and /events (they name every upload, and an ID is its key) only if the operator says so
    list_without_tokens: bool = False
    signing_secret: str | None = None  # None: a secret created in data_dir
    # rate limits (0: off)
    request_rate: float = 0.0  # requests/s per client
    request_burst: float = 0.0  # 0: twice the rate
    byte_rate: int = 0  # upload bytes/s per client
    # hooks and operations
    hook_url: str | None = None
    hook_timeout: float = 10.0
    hook_retries: int = 3
    min_free_disk: int = 256 * 1024 * 1024  # /healthz turns unhealthy below this
    # front doors: what arrived and where it lands
    publish_dir: Path | None = None  # verified uploads also appear here as <owner>/<relativePath>
    page: bool = True  # the upload page at /
    io_uring: bool = True  # small bodies go to the data dir through io_uring where the kernel allows it
    workers: int = field(default_factory=default_workers)  # processes serving requests (1: this one)

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError(f"--port must be between 0 and 65535, got {self.port}")
        if not 1 <= self.workers <= MAX_WORKERS:
            raise ValueError(f"--workers must be between 1 and {MAX_WORKERS}, got {self.workers}")
        if not (self.base_path.startswith("/") and self.base_path.endswith("/")):
            raise ValueError(f"--base-path must start and end with '/', got {self.base_path!r}")
        if self.base_path.rstrip("/") in OPS_PATHS:
            raise ValueError(f"--base-path {self.base_path!r} would collide with {', '.join(OPS_PATHS)}")
        if self.page and self.base_path == "/":
            raise ValueError("--base-path / would collide with the upload page at /: pass --no-page as well")
        if not self.thumbnail_sizes or any(not 16 <= s <= 4096 for s in self.thumbnail_sizes):
            raise ValueError("--thumbnail-sizes must be between 16 and 4096 pixels")
        if self.storage != "file" and not self.storage.startswith("s3://"):
            raise ValueError(f"--storage must be 'file' or s3://BUCKET[/PREFIX], got {self.storage!r}")
        if self.s3_presign_downloads and not self.storage.startswith("s3://"):
            raise ValueError("--s3-presign-downloads needs --storage s3://...: files have no URL of their own")
        if not 0 <= self.s3_presign_downloads <= 7 * 86400:
            raise ValueError("--s3-presign-downloads must be between 0 (off) and 7d (S3's longest)")
        if self.sweep_interval <= 0:
            raise ValueError("--sweep-interval must be positive")
        if self.buffer_budget < 1024 * 1024:
            raise ValueError("--buffer-budget must be at least 1MiB")
        if self.network_timeout <= 0:
            raise ValueError("--network-timeout must be positive")
