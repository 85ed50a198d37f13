"""Prometheus text exposition of the server's counters (`GET /metrics`), summed over its worker processes.

Every worker counts in its own slot of one block of shared memory that the parent maps before it forks
(`MetricsBlock`), and whichever worker answers a scrape adds up all the slots: the figures are exact and
current, cost no Redis round trip per request, and a scrape sees the whole server, as one process did
before there were workers. A replacement worker carries on in its predecessor's slot, so counters never go
down when a worker dies. Each slot has one writer (its worker; the parent only after that worker is gone),
and cells are aligned 64-bit words, which no reader sees half written.

Servers on other hosts are separate targets: Prometheus scrapes each and sums, as for any scaled service.
"""

from __future__ import annotations

import mmap
from collections.abc import Callable
from typing import Any

from ..core import events as ev

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_UPLOAD_COUNTERS = {
    ev.CREATED: ("tuskit_uploads_created_total", "Uploads created."),
    ev.VERIFIED: ("tuskit_uploads_finished_total", "Uploads completed, verified and published."),
    ev.VERIFICATION_FAILED: ("tuskit_uploads_failed_total", "Uploads whose bytes did not match their declared sha256."),
    ev.TERMINATED: ("tuskit_uploads_terminated_total", "Uploads deleted by their client."),
    ev.EXPIRED: ("tuskit_uploads_expired_total", "Unfinished uploads removed by the expiry sweeper."),
    ev.PROCESSED: ("tuskit_uploads_processed_total", "Uploads analysed after publishing (type, thumbnails)."),
}
# values a worker reads from its own objects (`Metrics.watch`) and copies into its slot now and then
WATCHED = {
    "tuskit_active_patches": "Request bodies streaming into uploads right now.",
    "tuskit_lock_waits_total": "Lease acquisitions that found the upload locked.",
    "tuskit_buffered_body_bytes": "Request body bytes held in memory (--buffer-budget).",
    "tuskit_bodies_waiting_for_memory": "Request bodies not read on until the buffer budget has room.",
}

# one slot: a cell per HTTP status 100-599, then one per named value
_FIRST_CODE, _CODES = 100, 500
_NAMES = ("bytes_received", "rate_limited", "hook_failures", "up", "restarts", "connections", *_UPLOAD_COUNTERS,
          *WATCHED)
_CELL = {name: _CODES + i for i, name in enumerate(_NAMES)}
_SLOT_CELLS = _CODES + len(_NAMES)
# what a dead worker's slot no longer has
_GAUGES = ("up", "connections", "tuskit_active_patches", "tuskit_buffered_body_bytes",
           "tuskit_bodies_waiting_for_memory")


def _number(value: float) -> str:
    """Counters exactly (1234567, not %g's 1.23457e+06, which a scraper would read as 1234570)."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


class MetricsBlock:
    """The counters of every worker of one server: a slot of 64-bit cells per worker, in memory that
    `fork` shares (anonymous MAP_SHARED), so it must be made before the workers are forked."""

    def __init__(self, slots: int) -> None:
        self.slots = slots
        self._map = mmap.mmap(-1, slots * _SLOT_CELLS * 8)
        self.cells = memoryview(self._map).cast("q")

    def slot(self, index: int) -> memoryview:
        return self.cells[index * _SLOT_CELLS:(index + 1) * _SLOT_CELLS]

    def total(self, cell: int) -> int:
        return sum(self.cells[cell::_SLOT_CELLS])

    def retire(self, index: int) -> None:
        """The worker of this slot is gone (called by the parent): its gauges go, its counters stay for the
        replacement to continue, and the restart is counted."""
        cells = self.slot(index)
        for name in _GAUGES:
            cells[_CELL[name]] = 0
        cells[_CELL["restarts"]] += 1


class _Codes:
    """`metrics.requests[status] += 1` writes the slot's cell for that status (100-599; others are dropped)."""

    def __init__(self, cells: memoryview) -> None:
        self._cells = cells

    def __getitem__(self, status: int) -> int:
        return int(self._cells[status - _FIRST_CODE]) if _FIRST_CODE <= status < _FIRST_CODE + _CODES else 0

    def __setitem__(self, status: int, value: int) -> None:
        if _FIRST_CODE <= status < _FIRST_CODE + _CODES:
            self._cells[status - _FIRST_CODE] = value


def _cell_property(name: str) -> property:
    index = _CELL[name]

    def get(self: Metrics) -> int:
        return int(self._cells[index])

    def put(self: Metrics, value: int) -> None:
        self._cells[index] = value

    return property(get, put)


class Metrics:
    """This process's counters (its slot of `block`; a block of its own by default) and the scrape."""

    bytes_received = _cell_property("bytes_received")
    rate_limited = _cell_property("rate_limited")
    hook_failures = _cell_property("hook_failures")

    def __init__(self, block: MetricsBlock | None = None, slot: int = 0) -> None:
        self.block = block or MetricsBlock(1)
        self.slot = slot
        self._cells = self.block.slot(slot)
        self._cells[_CELL["up"]] = 1
        self.requests = _Codes(self._cells)
        self._watched: dict[str, Callable[[], int]] = {}
        # a watched counter counts from zero in each process: a replacement adds to what its slot holds
        self._base = {name: int(self._cells[_CELL[name]]) for name in WATCHED if name.endswith("_total")}

    def on_event(self, event: dict[str, Any]) -> None:
        """EventBus listener."""
        if event["type"] in _UPLOAD_COUNTERS:
            self._cells[_CELL[event["type"]]] += 1

    # ---- this worker's share of the connections (http.accept.Share): written at once, read by the others

    def opened(self) -> None:
        self._cells[_CELL["connections"]] += 1

    def closed(self) -> None:
        self._cells[_CELL["connections"]] -= 1

    def fair(self) -> bool:
        cells, width, up, count = self.block.cells, _SLOT_CELLS, _CELL["up"], _CELL["connections"]
        mine = cells[self.slot * width + count]
        slack = mine // 16  # a few connections are shared out exactly; a burst of them without a hold each
        return all(mine <= cells[i * width + count] + slack for i in range(self.block.slots)
                   if i != self.slot and cells[i * width + up])

    def watch(self, name: str, read: Callable[[], int]) -> None:
        """Publish `read()` as the WATCHED value `name` (copied into the slot by `publish`)."""
        if name not in WATCHED:
            raise KeyError(f"{name} is not one of {', '.join(WATCHED)}")
        self._watched[name] = read

    def publish(self) -> None:
        """Copy the watched values into this worker's slot, where the other workers' scrapes read them: the
        app calls it a few times a second, and every scrape calls it, so its own values are current."""
        for name, read in self._watched.items():
            self._cells[_CELL[name]] = self._base.get(name, 0) + read()

    def render(self) -> str:
        self.publish()
        block = self.block
        lines: list[str] = []

        def metric(name: str, kind: str, help_text: str, samples: list[tuple[str, float]]) -> None:
            lines.append(f"# HELP {name} {help_text}")
            lines.append(f"# TYPE {name} {kind}")
            lines.extend(f"{name}{labels} {_number(value)}" for labels, value in samples)

        codes = [(code, block.total(code - _FIRST_CODE)) for code in range(_FIRST_CODE, _FIRST_CODE + _CODES)]
        metric("tuskit_http_requests_total", "counter", "HTTP requests answered, by status code.",
               [(f'{{code="{code}"}}', n) for code, n in codes if n])
        metric("tuskit_bytes_received_total", "counter", "Upload body bytes received.",
               [("", block.total(_CELL["bytes_received"]))])
        for kind, (name, help_text) in _UPLOAD_COUNTERS.items():
            metric(name, "counter", help_text, [("", block.total(_CELL[kind]))])
        metric("tuskit_rate_limited_total", "counter", "Requests refused with 429.",
               [("", block.total(_CELL["rate_limited"]))])
        metric("tuskit_hook_failures_total", "counter", "Webhook deliveries given up after all retries.",
               [("", block.total(_CELL["hook_failures"]))])
        for name, help_text in WATCHED.items():
            metric(name, "counter" if name.endswith("_total") else "gauge", help_text,
                   [("", block.total(_CELL[name]))])
        metric("tuskit_workers", "gauge", "Worker processes serving requests (--workers).",
               [("", block.total(_CELL["up"]))])
        metric("tuskit_worker_restarts_total", "counter", "Workers that died and were replaced.",
               [("", block.total(_CELL["restarts"]))])
        metric("tuskit_open_connections", "gauge", "Client connections open, by worker (how they spread).",
               [(f'{{worker="{i}"}}', block.slot(i)[_CELL["connections"]]) for i in range(block.slots)])
        metric("tuskit_worker_requests_total", "counter", "HTTP requests answered, by worker (how the load spreads).",
               [(f'{{worker="{i}"}}', sum(block.slot(i)[:_CODES])) for i in range(block.slots)])
        return "\n".join(lines) + "\n"
