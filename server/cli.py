"""`tuskit server`: flags (each also `TUSKIT_<FLAG>`), the embedded redis, and the run loop."""

from __future__ import annotations

import argparse
import asyncio
import logging
from pathlib import Path
from typing import Any

from tuskit.settings import env_default, parse_duration, parse_size


def _origins(text: str) -> tuple[str, ...]:
    return tuple(o.strip() for o in text.split(",") if o.strip())


def register(sub: Any) -> None:
    from tuskit.server.config import default_data_dir

    p = sub.add_parser("server", help="run the tus upload server",
                       description="Serve tus 1.0 uploads. Every flag can also be set as TUSKIT_<FLAG>.")
    p.add_argument("--host", default=env_default("host", "127.0.0.1"), help="address to listen on")
    p.add_argument("--port", type=int, default=env_default("port", 1080, int), help="port (0 picks a free one)")
    p.add_argument("--data-dir", type=Path, default=env_default("data-dir", default_data_dir(), Path),
                   help="uploads, derived files and the embedded redis live here")
    p.add_argument("--redis-url", default=env_default("redis-url", None),
                   help="use this redis (redis://host:port/db or unix://path) instead of the embedded one")
    p.add_argument("--base-path", default=env_default("base-path", "/files/"), help="URL path of the tus endpoint")
    p.add_argument("--max-size", type=parse_size, default=env_default("max-size", None, parse_size),
                   help="largest upload accepted (Tus-Max-Size), e.g. 10GiB; default unlimited")
    p.add_argument("--expire-after", type=parse_duration, default=env_default("expire-after", 86400.0, parse_duration),
                   help="unfinished uploads expire after this long without progress (default 24h; 0 = never)")
    p.add_argument("--cors-origins", type=_origins, default=env_default("cors-origins", ("*",), _origins),
                   help="comma-separated origins allowed to use the endpoint from a browser (default *)")
    p.add_argument("--network-timeout", type=parse_duration,
                   default=env_default("network-timeout", 60.0, parse_duration),
                   help="close a request body that sends nothing for this long (default 60s)")
    p.add_argument("--behind-proxy", action="store_true", default=env_default("behind-proxy", False, bool),
                   help="trust X-Forwarded-* / Forwarded headers for client address and Location URLs")
    p.add_argument("--log-level", default=env_default("log-level", "info"), help="debug, info, warning, error")
    p.set_defaults(run=run_server)


def run_server(args: argparse.Namespace) -> int:
    from tuskit.server.app import serve
    from tuskit.server.config import ServerConfig
    from tuskit.server.embedded_redis import EmbeddedRedis

    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = ServerConfig(
            host=args.host, port=args.port, data_dir=args.data_dir, redis_url=args.redis_url,
            base_path=args.base_path, max_size=args.max_size, expire_after=args.expire_after or None,
            cors_origins=args.cors_origins, network_timeout=args.network_timeout, behind_proxy=args.behind_proxy,
        )
    except ValueError as exc:
        raise SystemExit(f"tuskit server: {exc}") from None
    config.data_dir.mkdir(parents=True, exist_ok=True)
    embedded = None if config.redis_url else EmbeddedRedis(config.data_dir)
    redis_url = config.redis_url or embedded.start()  # type: ignore[union-attr]
    try:
        asyncio.run(serve(config, redis_url))
    finally:
        if embedded is not None:
            embedded.stop()
    return 0
