"""Short human strings for sizes, rates and durations, sized for narrow table cells; plain `str`, no Rich,
so the headless `tuskit sync` log prints sizes the way the dashboard does without loading a renderer."""

from __future__ import annotations

import math

NONE_MARK = "\N{EN DASH}"
"""Shown for a value that does not apply or is not known yet."""

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")


def human_bytes(count: float) -> str:
    """Binary units with three significant digits at most, so a column keeps its width as numbers grow."""
    value = float(count)
    for unit in _UNITS:
        if abs(value) < 1024 or unit == _UNITS[-1]:
            if unit == "B":
                return f"{int(value)} B"
            return f"{value:.1f} {unit}" if abs(value) < 100 else f"{value:.0f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def human_rate(bytes_per_second: float) -> str:
    """A transfer rate; nothing moving reads as a dash rather than a misleading "0 B/s"."""
    if bytes_per_second <= 0:
        return NONE_MARK
    return f"{human_bytes(bytes_per_second)}/s"


def human_duration(seconds: float | None) -> str:
    """Remaining time as the two largest units ("1h05m", "3m07s", "42s"); unknown reads as a dash."""
    if seconds is None or math.isnan(seconds) or seconds < 0:
        return NONE_MARK
    whole = math.ceil(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def shorten_middle(name: str, width: int) -> str:
    """Cut the middle of a long name so both its start and its extension stay visible."""
    if len(name) <= width:
        return name
    if width <= 1:
        return name[:width]
    head = (width - 1) // 2
    tail = width - 1 - head
    return f"{name[:head]}…{name[-tail:] if tail else ''}"


def shorten_path(path: str, width: int) -> str:
    """Folders give way before the file name does: "20…11/DSC_1040.ARW", then "DSC_…0.ARW"."""
    if len(path) <= width:
        return path
    folder, _, name = path.rpartition("/")
    room = width - len(name) - 1
    if folder and room >= 2:
        return f"{shorten_middle(folder, room)}/{name}"
    return shorten_middle(name, width)
