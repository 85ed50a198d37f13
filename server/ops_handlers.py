"""Routes for operators, outside the tus base path: `GET /healthz` and `GET /metrics`."""

from __future__ import annotations

from tuskit.server import health, metrics
from tuskit.server.http_base import BaseHandler

UNHEALTHY_RETRY_SECONDS = "5"


class HealthHandler(BaseHandler):
    public = True  # load balancers probe without tokens, and must not be rate limited out

    async def get(self) -> None:
        ok, details = await health.check(self.ctx.redis, self.ctx.config.data_dir, self.ctx.config.min_free_disk,
                                         self.ctx.service.executor)
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
