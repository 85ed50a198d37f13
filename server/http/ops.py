"""Routes for operators, outside the tus base path: `GET /healthz` and `GET /metrics`."""

from __future__ import annotations

from ..media import metrics
from .base import BaseHandler

UNHEALTHY_RETRY_SECONDS = "5"


class HealthHandler(BaseHandler):
    public = True  # load balancers probe without tokens, and must not be rate limited out

    async def get(self) -> None:
        details = await self.ctx.service.health()
        free, minimum = details["disk_free_bytes"], self.ctx.config.min_free_disk
        if free is not None:
            details["disk_free_minimum"] = minimum
            details["disk"] = "ok" if free >= minimum else f"only {free} bytes free, below {minimum}"
        ok = details["redis"] == "ok" and details["storage"] == "ok" and details.get("disk", "ok") == "ok"
        if self.ctx.shutting_down:
            ok, details["shutting_down"] = False, True
        details["status"] = "ok" if ok else "unhealthy"
        if not ok:
            self.set_status(503)
            self.set_header("Retry-After", UNHEALTHY_RETRY_SECONDS)
            self.failure = "; ".join(f"{k}: {v}" for k, v in details.items() if isinstance(v, str) and v != "ok")
        self.set_header("Cache-Control", "no-store")
        self.finish(details)


class MetricsHandler(BaseHandler):
    metered = False  # a scrape must work while the scraper's address is over its budget

    async def get(self) -> None:
        self.set_header("Content-Type", metrics.CONTENT_TYPE)
        self.set_header("Cache-Control", "no-store")
        self.finish(self.ctx.metrics.render())
