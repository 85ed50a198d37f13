"""`tuskit ls` as a table: one line per upload, columns aligned, the name last so a long path is never cut
(a pipe to `grep` or `awk` gets whole names). Plain text: the same on a terminal and in a file."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .formatting import NONE_MARK, human_age, human_bytes

HEADER = ("SIZE", "STATE", "SHA256", "AGE", "NAME")
SHA_PREFIX = 12


def listing_row(item: dict[str, Any], now: float) -> tuple[str, ...]:
    size, offset = item.get("size"), item.get("offset") or 0
    state = str(item.get("state") or NONE_MARK)
    if state == "uploading" and isinstance(size, int) and size > 0:
        state += f" {offset * 100 // size}%"
    name = str(item.get("relativePath") or item.get("filename") or item.get("id") or NONE_MARK)
    if state == "failed" and item.get("reason"):
        name += f"  ({item['reason']})"  # last, like the name: a long reason widens no column
    created = item.get("created")
    return (human_bytes(size) if isinstance(size, int) else NONE_MARK,
            state,
            (item.get("sha256") or NONE_MARK)[:SHA_PREFIX],
            human_age(now - created) if isinstance(created, int | float) else NONE_MARK,
            name)


def listing_lines(items: Iterable[dict[str, Any]], now: float) -> list[str]:
    rows = [HEADER, *(listing_row(item, now) for item in items)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADER) - 1)]
    return ["  ".join([*(cell.ljust(w) for cell, w in zip(row, widths, strict=False)), row[-1]]) for row in rows]
