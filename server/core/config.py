"""What the state machine is told at start-up: limits, expiry, and how often bytes are flushed and recorded."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class ServiceConfig:
    base_path: str = "/files/"
    max_size: int | None = None
    expire_after: float | None = 24 * 3600
    flush_bytes: int = 1024 * 1024  # bytes buffered before one write + hash update
    checkpoint_bytes: int = 8 * 1024 * 1024  # offset recorded at least this often during a PATCH
    # --accept: given the first bytes of an upload, a reason to refuse it (None: accepted)
    type_gate: Callable[[bytes], str | None] | None = None
    gate_bytes: int = 4096  # how many first bytes the gate wants
