"""`tuskit server`: flags (each also `TUSKIT_<FLAG>`), and a one-line error when it cannot start;
`tuskit sign`: a download link that works without a token until it expires."""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import Any

from tuskit.settings import env_default, parse_duration, parse_size

from .config_file import ConfigFileError, ConfigLayer


def _origins(text: str) -> tuple[str, ...]:
    return tuple(o.strip() for o in text.split(",") if o.strip())


def _sizes(text: str) -> tuple[int, ...]:
    try:
        return tuple(sorted({int(s) for s in text.split(",") if s.strip()}))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of pixel sizes: {text!r} (example: 256,1024)") from None


def _accept(text: str) -> tuple[str, ...]:
    from .media.sniff import parse_accept

    try:
        return parse_accept(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def register(sub: Any) -> None:
    _register_server(sub)
    _register_sign(sub)


def _register_server(sub: Any) -> None:
    from .config import default_data_dir, default_workers

    p = sub.add_parser("server", help="run the tus upload server",
                       description="Serve tus 1.0 uploads. Every flag can also be set as TUSKIT_<FLAG>.")
    p.add_argument("--host", default=env_default("host", "127.0.0.1"), help="address to listen on")
    p.add_argument("--port", type=int, default=env_default("port", 1080, int), help="port (0 picks a free one)")
    p.add_argument("--data-dir", type=Path, default=env_default("data-dir", default_data_dir(), Path),
                   help="uploads, derived files and the embedded redis live here")
    p.add_argument("--redis-url", default=env_default("redis-url", None),
                   help="use this redis instead of the embedded one: redis://host:port/db, rediss:// (TLS), "
                        "unix://path, or redis+sentinel://host:port[,host:port...]/SERVICE[/db]")
    p.add_argument("--storage", default=env_default("storage", "file"),
                   help="where upload bytes live: file (the data dir, default) or s3://BUCKET[/PREFIX]")
    p.add_argument("--s3-endpoint", default=env_default("s3-endpoint", None),
                   help="URL of an S3-compatible server (default: AWS); credentials come from the AWS chain")
    p.add_argument("--s3-region", default=env_default("s3-region", None), help="the bucket's region")
    p.add_argument("--s3-part-size", type=parse_size, default=env_default("s3-part-size", 8 * 1024**2, parse_size),
                   help="size of the S3 multipart parts, 5MiB to 5GiB (default 8MiB)")
    p.add_argument("--s3-presign-downloads", type=parse_duration, metavar="SECONDS",
                   default=env_default("s3-presign-downloads", 0.0, parse_duration),
                   help="GET of a finished upload redirects to a presigned S3 URL valid this long (e.g. 15m), "
                        "so the bytes do not pass through the server; default 0: stream them")
    p.add_argument("--base-path", default=env_default("base-path", "/files/"), help="URL path of the tus endpoint")
    p.add_argument("--max-size", type=parse_size, default=env_default("max-size", None, parse_size),
                   help="largest upload accepted (Tus-Max-Size), e.g. 10GiB; default unlimited")
    p.add_argument("--expire-after", type=parse_duration, default=env_default("expire-after", 86400.0, parse_duration),
                   help="unfinished uploads expire after this long without progress (default 24h; 0 = never)")
    p.add_argument("--cors-origins", type=_origins, default=env_default("cors-origins", ("*",), _origins),
                   help="comma-separated origins allowed to use the endpoint from a browser (default *)")
    p.add_argument("--network-timeout", type=parse_duration,
                   default=env_default("network-timeout", 60.0, parse_duration),
                   help="close a request whose head or body sends nothing for this long (default 60s)")
    p.add_argument("--buffer-budget", type=parse_size, default=env_default("buffer-budget", 64 * 1024**2, parse_size),
                   help="upload bytes this process holds in memory at once; when spent, reading waits "
                        "(uploads slow down, never fail) (default 64MiB)")
    p.add_argument("--behind-proxy", action="store_true", default=env_default("behind-proxy", False, bool),
                   help="trust X-Forwarded-* / Forwarded headers for client address and Location URLs")
    p.add_argument("--log-level", default=env_default("log-level", "info"), help="debug, info, warning, error")
    p.add_argument("--sweep-interval", type=parse_duration, default=env_default("sweep-interval", 60.0, parse_duration),
                   help="how often expired unfinished uploads are deleted (default 60s)")
    p.add_argument("--accept", type=_accept, default=env_default("accept", (), _accept),
                   help="accept only these types, sniffed from the first bytes, e.g. image/*,application/pdf")
    p.add_argument("--thumbnail-sizes", type=_sizes, default=env_default("thumbnail-sizes", (256,), _sizes),
                   help="long side of the WebP thumbnails made of images, in pixels (default 256)")
    p.add_argument("--max-image-pixels", type=int, default=env_default("max-image-pixels", 64_000_000, int),
                   help="images with more pixels are recorded as invalid, not decoded (default 64000000)")
    p.add_argument("--tokens", type=Path, default=env_default("tokens", None, Path),
                   help="file of 'TOKEN OWNER' lines; requests then need Authorization: Bearer TOKEN")
    p.add_argument("--signing-secret", default=env_default("signing-secret", None),
                   help="secret for signed download links (default: one created in the data dir)")
    p.add_argument("--list-without-tokens", action="store_true",
                   default=env_default("list-without-tokens", False, bool),
                   help="without --tokens, let anyone list every upload (GET /uploads) and follow GET /events: "
                        "both name every upload, and an upload's ID is the key to it; off by default")
    p.add_argument("--rate-limit", type=float, default=env_default("rate-limit", 0.0, float),
                   help="requests/s per client (owner, or IP without auth); 0 = off (default)")
    p.add_argument("--rate-burst", type=float, default=env_default("rate-burst", 0.0, float),
                   help="requests a client may make at once before --rate-limit applies (default 2x the rate)")
    p.add_argument("--byte-rate", type=parse_size, default=env_default("byte-rate", 0, parse_size),
                   help="upload bytes/s per client, e.g. 10MiB; uploads are slowed, not refused; 0 = off")
    p.add_argument("--hook-url", default=env_default("hook-url", None),
                   help="POST a JSON post-finish event here when an upload is finished and verified")
    p.add_argument("--hook-timeout", type=parse_duration, default=env_default("hook-timeout", 10.0, parse_duration),
                   help="time limit of one hook delivery attempt (default 10s)")
    p.add_argument("--hook-retries", type=int, default=env_default("hook-retries", 3, int),
                   help="retries of a failed hook delivery, with exponential backoff (default 3)")
    p.add_argument("--min-free-disk", type=parse_size, default=env_default("min-free-disk", 256 * 1024**2, parse_size),
                   help="/healthz reports unhealthy with less free space in the data dir (default 256MiB)")
    p.add_argument("--workers", type=int, default=env_default("workers", default_workers(), int),
                   help="processes serving requests on one port and one redis (default: the number of cores, "
                        f"{default_workers()} here); a worker that dies is replaced")
    p.add_argument("--publish-dir", type=Path, default=env_default("publish-dir", None, Path), metavar="DIR",
                   help="each verified upload also appears as DIR/<owner>/<relativePath or filename> (a hard "
                        "link when DIR is on the data dir's file system; never overwriting)")
    p.add_argument("--no-io-uring", action="store_true", default=env_default("no-io-uring", False, bool),
                   help="write small bodies to the data dir through threads, not Linux's io_uring (which is "
                        "used where the kernel allows it)")
    p.add_argument("--no-page", action="store_true", default=env_default("no-page", False, bool),
                   help="do not serve the upload page at / (a browser page to upload and watch uploads)")
    p.add_argument("--config", type=Path, default=env_default("config", None, Path), metavar="FILE",
                   help="TOML file of flags (keys are flag names: max-size = \"10GiB\"); the command line "
                        "and TUSKIT_* win over it")
    # last: it wraps the defaults of every flag above, so that the file fills only what was not given
    p.set_defaults(run=run_server, config_layer=ConfigLayer(p))


def _register_sign(sub: Any) -> None:
    from .config import default_data_dir

    p = sub.add_parser("sign", help="print a download link that works without a token until it expires",
                       description="Sign a download URL for one finished upload (HMAC with the server's secret).")
    p.add_argument("upload_id", metavar="ID", help="the upload's ID (the last part of its URL)")
    p.add_argument("--expires", type=parse_duration, default=3600.0, help="how long the link works (default 1h)")
    p.add_argument("--url", default=env_default("url", "http://127.0.0.1:1080/files/"),
                   help="the server's public tus endpoint (default http://127.0.0.1:1080/files/)")
    p.add_argument("--data-dir", type=Path, default=env_default("data-dir", default_data_dir(), Path),
                   help="the server's data dir, where its signing secret lives")
    p.add_argument("--signing-secret", default=env_default("signing-secret", None),
                   help="the server's --signing-secret, if it was given one")
    p.set_defaults(run=run_sign)


def run_sign(args: argparse.Namespace) -> int:
    from .core import ids
    from .http import signing

    if not ids.is_valid(args.upload_id):
        raise SystemExit(f"tuskit sign: {args.upload_id!r} is not an upload ID (32 hexadecimal characters)")
    if not args.signing_secret and not (args.data_dir / signing.SECRET_FILE).exists():
        raise SystemExit(f"tuskit sign: no signing secret in {args.data_dir}; pass the server's --data-dir "
                         "(it creates the secret when it starts) or its --signing-secret")
    secret = args.signing_secret.encode() if args.signing_secret else signing.data_dir_secret(args.data_dir)
    expires = int(time.time() + args.expires)
    base = args.url if args.url.endswith("/") else args.url + "/"
    print(f"{base}{args.upload_id}?{signing.signed_query(secret, args.upload_id, expires)}")
    return 0


def run_server(args: argparse.Namespace) -> int:
    from .app import StartupError, run
    from .config import ServerConfig

    try:
        args = args.config_layer.resolve(args)
    except ConfigFileError as exc:
        raise SystemExit(f"tuskit server: {exc}") from None
    # with workers, each line says which process wrote it
    process = " [%(process)d]" if args.workers > 1 else ""
    logging.basicConfig(level=args.log_level.upper(),
                        format=f"%(asctime)s %(levelname)s{process} %(name)s: %(message)s")
    try:
        config = ServerConfig(
            host=args.host, port=args.port, data_dir=args.data_dir, redis_url=args.redis_url,
            storage=args.storage, s3_endpoint=args.s3_endpoint, s3_region=args.s3_region,
            s3_part_size=args.s3_part_size, s3_presign_downloads=args.s3_presign_downloads,
            base_path=args.base_path, max_size=args.max_size, expire_after=args.expire_after or None,
            cors_origins=args.cors_origins, network_timeout=args.network_timeout, behind_proxy=args.behind_proxy,
            buffer_budget=args.buffer_budget, list_without_tokens=args.list_without_tokens,
            sweep_interval=args.sweep_interval, accept=args.accept, thumbnail_sizes=args.thumbnail_sizes,
            max_image_pixels=args.max_image_pixels, tokens_file=args.tokens, signing_secret=args.signing_secret,
            request_rate=args.rate_limit, request_burst=args.rate_burst, byte_rate=args.byte_rate,
            hook_url=args.hook_url, hook_timeout=args.hook_timeout, hook_retries=args.hook_retries,
            min_free_disk=args.min_free_disk, workers=args.workers,
            publish_dir=args.publish_dir, page=not args.no_page, io_uring=not args.no_io_uring,
        )
    except ValueError as exc:
        raise SystemExit(f"tuskit server: {exc}") from None
    try:
        return run(config)
    except StartupError as exc:
        raise SystemExit(f"tuskit server: {exc}") from None
