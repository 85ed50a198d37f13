"""Where the sync engine's `SyncConfig` comes from: a TOML file at the platformdirs config dir, and flags.

The file lets a user configure `tuskit sync`/`tuskit desk` once (cron, a systemd unit); flags given on
the command line override it key by key. Sizes accept `4MiB`-style strings as the flags do.
"""

from __future__ import annotations

import argparse
import tomllib
from dataclasses import fields
from pathlib import Path
from typing import Any

import platformdirs

from tuskit.settings import parse_size

from .engine.sync_config import SyncConfig


def default_config_path() -> Path:
    """`~/.config/tuskit/desktop.toml` on Linux (platformdirs decides per platform)."""
    return Path(platformdirs.user_config_dir("tuskit")) / "desktop.toml"


# TOML key -> (SyncConfig field, parser)
_KEYS: dict[str, tuple[str, Any]] = {
    "roots": ("roots", lambda v: [Path(p) for p in _list(v)]),
    "server": ("server_url", str),
    "token": ("token", str),
    "workers": ("workers", int),
    "chunk_size": ("chunk_size", lambda v: v if isinstance(v, int) else parse_size(str(v))),
    "max_chunk_size": ("max_chunk_size", lambda v: v if isinstance(v, int) else parse_size(str(v))),
    "quiet_seconds": ("quiet_seconds", float),
    "max_wait_seconds": ("max_wait_seconds", float),
    "rescan_seconds": ("rescan_seconds", float),
    "poll": ("poll", bool),
    "ignore": ("ignore", lambda v: [str(g) for g in _list(v)]),
    "include_hidden": ("include_hidden", bool),
    "journal": ("journal_path", Path),
    "bwlimit": ("bandwidth_limit", lambda v: v if isinstance(v, int) else parse_size(str(v))),
    "timeout": ("timeout", float),
    "max_attempts": ("max_attempts", int),
}
CONFIG_KEYS = tuple(_KEYS)


def _list(value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise TypeError("expected a list")
    return value


def load_file(path: Path) -> dict[str, Any]:
    """Read the TOML file into SyncConfig field values; a missing file is an empty config."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path}: {exc}") from None
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in _KEYS:
            raise ValueError(f"{path}: unknown key {key!r} (known: {', '.join(CONFIG_KEYS)})")
        name, parse = _KEYS[key]
        try:
            values[name] = parse(value)
        except (TypeError, ValueError, argparse.ArgumentTypeError) as exc:
            raise ValueError(f"{path}: bad value for {key!r}: {exc}") from None
    return values


def build_config(file_values: dict[str, Any], flags: dict[str, Any]) -> SyncConfig:
    """Flags that were given (not None) win over the file; user ignore globs from both are combined."""
    merged = dict(file_values)
    for name, value in flags.items():
        if value is None or (name == "roots" and not value):
            continue
        if name == "ignore":
            merged["ignore"] = [*file_values.get("ignore", []), *value]
        else:
            merged[name] = value
    if not merged.get("server_url"):
        raise ValueError("no server URL: pass --server URL or set `server` in the config file")
    if not merged.get("roots"):
        raise ValueError("no folder to watch: pass DIR arguments or set `roots` in the config file")
    known = {f.name for f in fields(SyncConfig)}
    return SyncConfig(**{k: v for k, v in merged.items() if k in known})
