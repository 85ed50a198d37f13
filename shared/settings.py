"""Flags that can also come from the environment (`TUSKIT_<FLAG>`), shared by every subcommand.

Operators configure services through the environment; a flag on the command line still wins.
"""

from __future__ import annotations

import argparse
import os
import re
from typing import Any

_UNITS = {"": 1, "b": 1, "k": 1024, "kb": 1024, "kib": 1024, "m": 1024**2, "mb": 1024**2, "mib": 1024**2,
          "g": 1024**3, "gb": 1024**3, "gib": 1024**3, "t": 1024**4, "tb": 1024**4, "tib": 1024**4}
_DURATION = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_size(text: str) -> int:
    """Parse `512`, `64KiB`, `10MB`, `2g` into bytes (binary multiples, as users of tusd expect)."""
    m = re.fullmatch(r"\s*(\d+)\s*([a-zA-Z]*)\s*", text)
    if not m or m.group(2).lower() not in _UNITS:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (examples: 1048576, 64KiB, 10MB, 2GiB)")
    return int(m.group(1)) * _UNITS[m.group(2).lower()]


def parse_duration(text: str) -> float:
    """Parse `90`, `30s`, `15m`, `24h`, `7d` into seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text)
    if not m:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (examples: 30s, 15m, 24h, 7d)")
    return float(m.group(1)) * _DURATION[m.group(2)]


def env_name(flag: str) -> str:
    """The environment variable of `--flag`: `--max-size` is `TUSKIT_MAX_SIZE`."""
    return "TUSKIT_" + flag.lstrip("-").replace("-", "_").upper()


def env_default(flag: str, default: Any, kind: Any = str) -> Any:
    """The default for `--flag`: `TUSKIT_FLAG` from the environment if set, parsed like the flag."""
    raw = os.environ.get(env_name(flag))
    if raw is None:
        return default
    if kind is bool:
        return raw.strip().lower() in {"1", "true", "yes", "on"}
    return kind(raw)
