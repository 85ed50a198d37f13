"""Prometheus text exposition of this process's counters (`GET /metrics`).

Each process counts what it served; Prometheus scrapes every process and sums, as it does for any
horizontally scaled service. Upload counters follow the events this process emitted (one per change).
"""

from __future__ import annotations

from collections import Counter
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


def _number(value: float) -> str:
    """Counters exactly (1234567, not %g's 1.23457e+06, which a scraper would read as 1234570)."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


class Metrics:
    def __init__(self) -> None:
        self.requests: Counter[int] = Counter()  # by status code
        self.uploads: Counter[str] = Counter()  # by event kind
        self.bytes_received = 0
        self.rate_limited = 0
        self.hook_failures = 0
        # gauges read at scrape time, set up by the app: name -> (help, read)
        self.gauges: dict[str, tuple[str, Callable[[], float]]] = {}

    def on_event(self, event: dict[str, Any]) -> None:
        """EventBus listener."""
        if event["type"] in _UPLOAD_COUNTERS:
            self.uploads[event["type"]] += 1

    def render(self) -> str:
        lines: list[str] = []

        def metric(name: str, kind: str, help_text: str, samples: list[tuple[str, float]]) -> None:
            lines.append(f"# HELP {name} {help_text}")
            lines.append(f"# TYPE {name} {kind}")
            lines.extend(f"{name}{labels} {_number(value)}" for labels, value in samples)

        metric("tuskit_http_requests_total", "counter", "HTTP requests answered, by status code.",
               [(f'{{code="{code}"}}', n) for code, n in sorted(self.requests.items())])
        metric("tuskit_bytes_received_total", "counter", "Upload body bytes received.", [("", self.bytes_received)])
        for kind, (name, help_text) in _UPLOAD_COUNTERS.items():
            metric(name, "counter", help_text, [("", self.uploads[kind])])
        metric("tuskit_rate_limited_total", "counter", "Requests refused with 429.", [("", self.rate_limited)])
        metric("tuskit_hook_failures_total", "counter", "Webhook deliveries given up after all retries.",
               [("", self.hook_failures)])
        for name, (help_text, read) in self.gauges.items():
            metric(name, "counter" if name.endswith("_total") else "gauge", help_text, [("", read())])
        return "\n".join(lines) + "\n"
