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

_UPLOAD_HELP = """\
Configuration file: {path}, as for `tuskit sync`, for the server, token and transfer settings (its folders,
journal and workers are for `tuskit sync`). Every option can also be set as TUSKIT_<OPTION>. Hidden files,
temporary files (*.part, *.tmp, ...) and --ignore globs under a DIR are skipped, and counted (-v lists them);
a FILE named on the command line is always uploaded. Examples:
  tuskit upload ~/Pictures/2026 --server https://up.example.com/files/ --token "$TOKEN" -j 8
  tuskit upload big.iso --server http://127.0.0.1:1080/files/ --bwlimit 20MiB --json > report.json
"""

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


def _add_server(p: argparse.ArgumentParser) -> None:
    p.add_argument("--server", default=env_default("server", None), metavar="URL",
                   help="tus endpoint to upload to, e.g. http://127.0.0.1:1080/files/")
    p.add_argument("--token", default=env_default("token", None), metavar="T",
                   help="bearer token sent as `Authorization: Bearer T`")
    p.add_argument("--config", type=Path, default=env_default("config", None, Path), metavar="PATH",
                   help="TOML config file to read instead of the default one")


def _add_transfer(p: argparse.ArgumentParser, journal_help: str) -> None:
    p.add_argument("--ignore", action="append", default=None, metavar="GLOB",
                   help="also skip names (or relative paths, if the glob has a '/') matching GLOB; repeatable")
    p.add_argument("--include-hidden", action="store_true", default=env_default("include-hidden", None, bool) or None,
                   help="also upload hidden files and folders")
    p.add_argument("--journal", type=Path, default=env_default("journal", None, Path), metavar="PATH",
                   help=journal_help)
    p.add_argument("--bwlimit", type=parse_size, default=env_default("bwlimit", None, parse_size), metavar="SIZE",
                   help="total upload bandwidth per second, e.g. 2MiB (default unlimited)")
    p.add_argument("--chunk-size", type=parse_size, default=env_default("chunk-size", None, parse_size),
                   metavar="SIZE", help="bytes in the first PATCH request of a file (default 4MiB); later "
                                        "ones double while a request takes under 0.5s")
    p.add_argument("--max-chunk-size", type=parse_size, default=env_default("max-chunk-size", None, parse_size),
                   metavar="SIZE", help="largest PATCH request (default 64MiB; equal to --chunk-size: fixed size)")
    p.add_argument("--timeout", type=float, default=env_default("timeout", None, float), metavar="SECONDS",
                   help="network timeout for one request (default 60)")
    p.add_argument("--max-attempts", type=int, default=env_default("max-attempts", None, int), metavar="N",
                   help="attempts per file before it is marked failed (default 10)")


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("dirs", nargs="*", type=Path, metavar="DIR", help="folders to watch (recursively)")
    _add_server(p)
    p.add_argument("--workers", type=int, default=env_default("workers", None, int), metavar="N",
                   help="files uploaded at once (default 4)")
    p.add_argument("--poll", action="store_true", default=env_default("poll", None, bool) or None,
                   help="poll the folders instead of using inotify/FSEvents (network mounts)")
    p.add_argument("--quiet", type=float, default=env_default("quiet", None, float), metavar="SECONDS",
                   help="a file is ready once unchanged for this long (default 2)")
    _add_transfer(p, "SQLite journal of what was uploaded (default: the platform state dir)")
    p.add_argument("--log-level", default=env_default("log-level", "warning"), help="debug, info, warning, error")


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {value}")
    return value


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
    sync.add_argument("-v", "--verbose", action="store_true",
                      help="also list every file left out (hidden, temporary, --ignore, symbolic links) and why")
    sync.set_defaults(run=run_sync)
    desk = sub.add_parser("desk", help="upload every file that lands in folders, with a terminal dashboard",
                          description="Watch folders and upload every new or changed file to a tus server, "
                                      "with a live dashboard (pause, resume, retry, add folders).",
                          epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_common(desk)
    desk.set_defaults(run=run_desk)

    upload = sub.add_parser(
        "upload", help="upload files and folders once, with progress (like rclone copy -P)",
        description="Upload each FILE, and every file under each DIR, to a tus server, JOBS at a time, with a\n"
                    "progress bar per file and a total line (plain lines when stdout is not a terminal).\n"
                    "Resumable: after an interruption the same command continues every upload from the server's\n"
                    "offset, and a file already uploaded is not sent again. Each file declares its SHA-256, so the\n"
                    "server verifies it; the exit status is 0 only when every file is verified on the server\n"
                    "(1: a file failed, 130: interrupted). Files under a DIR keep their path below it (relativePath).",
        epilog=_UPLOAD_HELP.format(path=default_config_path()), formatter_class=argparse.RawDescriptionHelpFormatter)
    upload.add_argument("paths", nargs="+", type=Path, metavar="FILE|DIR", help="files, and folders to upload whole")
    _add_server(upload)
    upload.add_argument("-j", "--jobs", type=_positive, default=env_default("jobs", None, _positive), metavar="N",
                        help="files uploaded at once (default 4)")
    upload.add_argument("--json", action="store_true",
                        help="no progress; print one JSON document at the end: every file with its state, URL, "
                             "SHA-256 and error, and the totals")
    upload.add_argument("-v", "--verbose", action="store_true",
                        help="also list every file left out (hidden, temporary, --ignore, symbolic links) and why")
    _add_transfer(upload, "SQLite journal that makes a second run resume (default: upload.sqlite3 in the "
                          "platform state dir; `tuskit sync` keeps its own)")
    upload.add_argument("--log-level", default=env_default("log-level", "error"), help="debug, info, warning, error")
    upload.set_defaults(run=run_upload)

    ls = sub.add_parser("ls", help="list your uploads on the server, newest first",
                        description="List the uploads the token owns on the server (GET /uploads on the "
                                    "server's origin), newest first: size, state, SHA-256 prefix, age, name.")
    _add_server(ls)
    ls.add_argument("--limit", type=_positive, default=None, metavar="N", help="list at most N uploads (default: all)")
    ls.add_argument("--json", action="store_true", help='print {"uploads": [...]} as the server describes them')
    ls.set_defaults(run=run_ls)


# SyncConfig fields a one-shot upload never takes from the config file: it uploads what it is given, now,
# and keeps its own journal
_NOT_FOR_UPLOAD = ("roots", "journal_path", "workers", "poll", "quiet_seconds", "max_wait_seconds", "rescan_seconds")


def _config(args: argparse.Namespace, flags: dict[str, Any], not_from_file: tuple[str, ...] = ()) -> Any:
    from .config import build_config, default_config_path, load_file

    try:
        file_values = load_file(args.config or default_config_path())
        for name in not_from_file:
            file_values.pop(name, None)
        return build_config(file_values, {
            "server_url": args.server, "token": args.token, "ignore": args.ignore,
            "include_hidden": args.include_hidden, "journal_path": args.journal, "bandwidth_limit": args.bwlimit,
            "chunk_size": args.chunk_size, "max_chunk_size": args.max_chunk_size, "timeout": args.timeout,
            "max_attempts": args.max_attempts, **flags})
    except ValueError as exc:
        raise SystemExit(f"tuskit {args.command}: {exc}") from None


def _config_from_args(args: argparse.Namespace, watch: bool = True, remember_roots: bool = False) -> Any:
    config = _config(args, {"roots": args.dirs, "workers": args.workers, "poll": args.poll,
                            "quiet_seconds": args.quiet, "watch": watch, "remember_roots": remember_roots})
    missing = [str(r) for r in config.roots if not r.is_dir()]
    if missing:
        raise SystemExit(f"tuskit {args.command}: not a folder: {', '.join(missing)}")
    return config


def _stop_on_signals() -> threading.Event:
    """Ctrl-C and SIGTERM end the run between two blocks; what is unfinished resumes next time."""
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    return stop


def run_sync(args: argparse.Namespace) -> int:
    from .engine.engine import Engine
    from .engine.runlock import JournalBusy
    from .engine.states import DONE, FAILED
    from .progress_log import ProgressLog
    from .ui.formatting import human_bytes

    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = _config_from_args(args, watch=not args.once)
    engine = Engine(config)
    progress = ProgressLog(sys.stdout, verbose=args.verbose)
    engine.subscribe(progress)
    folders = ", ".join(str(root) for root in config.roots)
    print(f"tuskit sync: uploading {'what is in' if args.once else 'every file that lands in'} {folders} "
          f"to {config.server_url}{'' if args.once else ' (Ctrl-C stops; unfinished uploads resume next time)'}",
          flush=True)
    stop = _stop_on_signals()
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
    rows = engine.snapshot()
    failed = [s for s in rows if s.state == FAILED]
    unfinished = [s for s in rows if s.state not in (DONE, FAILED)]
    counts = [f"{sum(s.state == DONE for s in rows)} done", f"{len(failed)} failed"]
    if unfinished:
        counts.append(f"{len(unfinished)} unfinished")
    if progress.skipped:
        counts.append(f"{progress.skipped} skipped{'' if args.verbose else ' (-v lists them)'}")
    print(f"summary: {', '.join(counts)}", flush=True)
    for row in unfinished:  # interrupted: say which uploads the next run resumes, and from where
        if row.url:
            print(f"unfinished {row.path}: {human_bytes(row.sent)} of {human_bytes(row.size)} confirmed by the "
                  "server; the next run resumes it", flush=True)
    if waiting := sum(not row.url for row in unfinished):
        print(f"unfinished: {waiting} file(s) not started yet; the next run uploads them", flush=True)
    return 1 if (args.once and (failed or stop.is_set())) else 0


def run_desk(args: argparse.Namespace) -> int:
    from .engine.engine import Engine
    from .ui.app import run_app  # lazily: `tuskit sync` never imports Textual

    # the dashboard owns the terminal: engine problems reach it as Notice events, not stderr lines
    logging.getLogger().addHandler(logging.NullHandler())
    return run_app(Engine(_config_from_args(args, remember_roots=True)))  # folders added with `a` stay


def run_upload(args: argparse.Namespace) -> int:
    from .engine.engine import Engine
    from .engine.runlock import JournalBusy
    from .engine.sync_config import default_journal_path
    from .ui.upload_progress import UploadProgress

    # the display prints what the engine has to say; stderr gets only what went wrong inside
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    missing = [str(p) for p in args.paths if not p.exists()]
    if missing:
        raise SystemExit(f"tuskit upload: no such file or folder: {', '.join(missing)}")
    config = _config(args, {"roots": args.paths, "workers": args.jobs, "quiet_seconds": 0.0, "watch": False,
                            "journal_path": args.journal or default_journal_path("upload")}, _NOT_FOR_UPLOAD)
    engine = Engine(config)
    view = UploadProgress(config.server_url, config.roots, sys.stdout, json_report=args.json, verbose=args.verbose)
    engine.subscribe(view)
    stop = _stop_on_signals()
    try:
        engine.start()
    except JournalBusy as exc:
        raise SystemExit(f"tuskit upload: {exc}") from None
    view.start()
    try:
        engine.retry_failed()  # a second run is how a user says "try again"
        while not stop.is_set() and not engine.wait_idle(timeout=0.25):
            view.tick()
    finally:
        engine.stop()
        view.stop()
    ok = view.finish(engine.snapshot(), interrupted=stop.is_set())
    return 130 if stop.is_set() else 0 if ok else 1


def run_ls(args: argparse.Namespace) -> int:
    import json
    import time

    from .client.listing import ListingError, list_uploads
    from .config import default_config_path, load_file
    from .ui.listing import listing_lines

    try:
        file_values = load_file(args.config or default_config_path())
    except ValueError as exc:
        raise SystemExit(f"tuskit ls: {exc}") from None
    server, token = args.server or file_values.get("server_url"), args.token or file_values.get("token")
    if not server:
        raise SystemExit("tuskit ls: no server URL: pass --server URL or set `server` in the config file")
    try:
        uploads = list(list_uploads(server, token, args.limit))
    except ListingError as exc:
        raise SystemExit(f"tuskit ls: {exc}") from None
    if args.json:
        print(json.dumps({"uploads": uploads}, indent=2))
    else:
        print("\n".join(listing_lines(uploads, time.time())))
    return 0
