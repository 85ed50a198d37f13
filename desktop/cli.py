"""`tuskit sync` (headless) and `tuskit desk` (Textual dashboard): one set of flags, one engine.

Precedence: a flag on the command line, then `TUSKIT_<FLAG>` from the environment, then the TOML
config file, then the documented defaults. Textual is imported only inside `desk`.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from tuskit.settings import env_default, parse_size

_CONFIG_HELP = """\
Configuration file: {path} (TOML; keys: {keys}).
Every option can also be set as TUSKIT_<OPTION> in the environment; the command line wins over the
environment, which wins over the file. Policy: files whose names match the default ignore list
(*.part *.crdownload *.tmp .*.swp ~$* .~lock.* *~ .goutputstream-* 4913 .DS_Store) or a --ignore glob are
never uploaded; hidden files and folders (name starting with '.') are skipped unless --include-hidden;
symbolic links are never followed (they could lead outside the folder or loop). A file is uploaded once it
has been quiet for --quiet seconds; content already uploaded to the same server from the same path (same
SHA-256) is not uploaded again; nothing is ever deleted on the server or on disk.
"""


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("dirs", nargs="*", type=Path, metavar="DIR", help="folders to watch (recursively)")
    p.add_argument("--server", default=env_default("server", None), metavar="URL",
                   help="tus endpoint to upload to, e.g. http://127.0.0.1:1080/files/")
    p.add_argument("--token", default=env_default("token", None), metavar="T",
                   help="bearer token sent as `Authorization: Bearer T`")
    p.add_argument("--workers", type=int, default=env_default("workers", None, int), metavar="N",
                   help="files uploaded at once (default 4)")
    p.add_argument("--poll", action="store_true", default=env_default("poll", None, bool) or None,
                   help="poll the folders instead of using inotify/FSEvents (network mounts)")
    p.add_argument("--ignore", action="append", default=None, metavar="GLOB",
                   help="also skip names (or relative paths, if the glob has a '/') matching GLOB; repeatable")
    p.add_argument("--include-hidden", action="store_true", default=env_default("include-hidden", None, bool) or None,
                   help="also upload hidden files and folders")
    p.add_argument("--journal", type=Path, default=env_default("journal", None, Path), metavar="PATH",
                   help="SQLite journal of what was uploaded (default: the platform state dir)")
    p.add_argument("--bwlimit", type=parse_size, default=env_default("bwlimit", None, parse_size), metavar="SIZE",
                   help="total upload bandwidth per second, e.g. 2MiB (default unlimited)")
    p.add_argument("--chunk-size", type=parse_size, default=env_default("chunk-size", None, parse_size),
                   metavar="SIZE", help="bytes in the first PATCH request of a file (default 4MiB); later "
                                        "ones double while a request takes under 0.5s")
    p.add_argument("--max-chunk-size", type=parse_size, default=env_default("max-chunk-size", None, parse_size),
                   metavar="SIZE", help="largest PATCH request (default 64MiB; equal to --chunk-size: fixed size)")
    p.add_argument("--quiet", type=float, default=env_default("quiet", None, float), metavar="SECONDS",
                   help="a file is ready once unchanged for this long (default 2)")
    p.add_argument("--timeout", type=float, default=env_default("timeout", None, float), metavar="SECONDS",
                   help="network timeout for one request (default 60)")
    p.add_argument("--max-attempts", type=int, default=env_default("max-attempts", None, int), metavar="N",
                   help="attempts per file before it is marked failed (default 10)")
    p.add_argument("--config", type=Path, default=env_default("config", None, Path), metavar="PATH",
                   help="TOML config file to read instead of the default one")
    p.add_argument("--log-level", default=env_default("log-level", "warning"), help="debug, info, warning, error")


def register(sub: Any) -> None:
    from .config import CONFIG_KEYS, default_config_path

    epilog = _CONFIG_HELP.format(path=default_config_path(), keys=", ".join(CONFIG_KEYS))
    sync = sub.add_parser("sync", help="upload every file that lands in folders (headless)",
                          description="Watch folders and upload every new or changed file to a tus server, "
                                      "resumably. Prints one line per event, for logs.",
                          epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_common(sync)
    sync.add_argument("--once", action="store_true",
                      help="upload what is there now, then exit; the exit status is 1 if any file failed "
                           "(every start of `tuskit sync` also retries files that failed before)")
    sync.set_defaults(run=run_sync)
    desk = sub.add_parser("desk", help="upload every file that lands in folders, with a terminal dashboard",
                          description="Watch folders and upload every new or changed file to a tus server, "
                                      "with a live dashboard (pause, resume, retry, add folders).",
                          epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_common(desk)
    desk.set_defaults(run=run_desk)


def _config_from_args(args: argparse.Namespace, watch: bool = True) -> Any:
    from .config import build_config, default_config_path, load_file

    file_values = load_file(args.config or default_config_path())
    flags = {
        "roots": args.dirs, "server_url": args.server, "token": args.token, "workers": args.workers,
        "poll": args.poll, "ignore": args.ignore, "include_hidden": args.include_hidden,
        "journal_path": args.journal, "bandwidth_limit": args.bwlimit, "chunk_size": args.chunk_size,
        "max_chunk_size": args.max_chunk_size,
        "quiet_seconds": args.quiet, "timeout": args.timeout, "max_attempts": args.max_attempts,
        "watch": watch,
    }
    try:
        config = build_config(file_values, flags)
    except ValueError as exc:
        raise SystemExit(f"tuskit {args.command}: {exc}") from None
    missing = [str(r) for r in config.roots if not r.is_dir()]
    if missing:
        raise SystemExit(f"tuskit {args.command}: not a folder: {', '.join(missing)}")
    return config


def run_sync(args: argparse.Namespace) -> int:
    from .engine.engine import Engine
    from .engine.runlock import JournalBusy
    from .engine.states import DONE, FAILED
    from .progress_log import ProgressLog

    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    engine = Engine(_config_from_args(args, watch=not args.once))
    engine.subscribe(ProgressLog(sys.stdout))
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        engine.start()
    except JournalBusy as exc:
        raise SystemExit(f"tuskit sync: {exc}") from None
    try:
        engine.retry_failed()  # headless: nobody presses "retry", so every start tries earlier failures again
        if args.once:
            while not stop.is_set() and not engine.wait_idle(timeout=0.5):
                pass
        else:
            stop.wait()
    finally:
        engine.stop()
    failed = [s for s in engine.snapshot() if s.state == FAILED]
    print(f"summary: {sum(s.state == DONE for s in engine.snapshot())} done, {len(failed)} failed", flush=True)
    return 1 if (args.once and (failed or stop.is_set())) else 0


def run_desk(args: argparse.Namespace) -> int:
    from .engine.engine import Engine
    from .ui.app import run_app  # lazily: `tuskit sync` never imports Textual

    # the dashboard owns the terminal: engine problems reach it as Notice events, not stderr lines
    logging.getLogger().addHandler(logging.NullHandler())
    return run_app(Engine(_config_from_args(args)))
