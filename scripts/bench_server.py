#!/usr/bin/env python3
"""tuskit against @tus/server (FileStore) and tuspyserver (FastAPI on uvicorn) in one run, goals beside the ratios.

Every server runs at once on a free loopback port; each workload runs against one server at a time, the
servers in turn phase by phase, the order rotated every round, so drift on a shared machine hits all alike.
Dirty pages are flushed (sync) before every measurement so one server's writeback is not charged to the
next, and each phase's uploads are deleted (untimed) after it so a run's disk use stays small. A figure
is the median of the rounds; ratios are taken between medians.

    python scripts/bench_server.py                          # the full run: 3 rounds, 256 MiB single stream
    python scripts/bench_server.py --size 64MiB --patches 200 --rounds 1   # a quick look
    python scripts/bench_server.py --only tuskit            # no Node, no tuspyserver venv
    python scripts/bench_server.py --variant 'tuskit debug=--log-level debug'   # one more tuskit column
    python scripts/bench_server.py --s3 --only tuskit --only "tuskit s3"   # file store vs S3 store (on moto)
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import platform
import resource
import shlex
import shutil
import signal
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Protocol, TypeVar

from tusbench import s3, servers, workloads
from tusbench.client import BenchError, metadata
from tusbench.report import Goal, Metric, Report, Server, Values
from tusbench.rss import RssSampler
from tusbench.servers import RunningServer, StartFailed, Variant

from tuskit.settings import parse_size

GiB = 1024**3
MiB = 1024**2
PATCH_SIZE = 64 * 1024
PATCH_CONNECTIONS = 8
CONCURRENT = (200, 1000)  # connections at once, each a POST and one PATCH of CONCURRENT_SIZE
CONCURRENT_SIZE = MiB
FD_WANTED = 65536  # 1,000 sockets in the client, as many in a server plus its open files
DEFAULT, ONE_WORKER, TUS_NODE, TUSPY = (v.name for v in servers.BUILT_IN)


def _size(n: int) -> str:
    return f"{n / GiB:g} GiB" if n >= GiB else f"{n / MiB:g} MiB" if n >= MiB else f"{n // 1024} KiB"


def _whole(v: float) -> str:
    return f"{v:.0f}"


def _mib(v: float) -> str:
    return f"{v / MiB:.1f}"


def _ms(v: float) -> str:
    return f"{v * 1000:.1f}"


def _share(v: float) -> str:
    return f"{v * 100:+.1f}%"


def metrics(big: int) -> list[Metric]:
    """The rows in the order of issue 12's table, then the ones kept from issue 2."""
    rows = [
        Metric("single", f"single stream, {_size(big)} in one PATCH (curl -T), MB/s", _whole, "higher"),
        Metric("rate", f"{_size(PATCH_SIZE)} PATCHes/s, {PATCH_CONNECTIONS} keep-alive connections", _whole, "higher"),
        Metric("rate_errors", f"{_size(PATCH_SIZE)} PATCHes: errors, all rounds", _whole, "", sum),
    ]
    for count in CONCURRENT:
        what = f"{count} concurrent x (POST + {_size(CONCURRENT_SIZE)} PATCH)"
        rows += [Metric(f"c{count}", f"{what}, s", lambda v: f"{v:.2f}", "lower"),
                 Metric(f"c{count}_errors", f"{what}: errors, all rounds", _whole, "", sum),
                 Metric(f"c{count}_rss", f"{what}: peak RSS, MiB", _mib, "lower")]
    return [
        *rows,
        Metric("rss_peak", "peak RSS of the server's processes, whole run (max), MiB", _mib, "lower", max),
        Metric("last_verified", f"last byte -> 204, {_size(big)}, declared sha256, ms", _ms, "lower"),
        Metric("last_plain", f"last byte -> 204, {_size(big)}, no sha256, ms", _ms, "lower"),
        Metric("verify_share", "declaring sha256 adds, share of the upload's time", _share, ""),
        Metric("rss_growth", "RSS growth during the single stream, MiB", _mib, "lower"),
    ]


GOALS = (
    # issue 12: `tuskit server` with its default --workers, and with --workers 1
    Goal("single", ">= 1.3x", lambda r: r >= 1.3, DEFAULT, TUS_NODE),
    Goal("single", ">= 1.0x", lambda r: r >= 1.0, DEFAULT, TUSPY),
    Goal("rate", ">= 1.5x", lambda r: r >= 1.5, DEFAULT, TUS_NODE),
    Goal("rate", ">= 1.0x", lambda r: r >= 1.0, ONE_WORKER, TUS_NODE),
    Goal("c200", ">= 1.0x", lambda r: r >= 1.0, DEFAULT, TUS_NODE),
    Goal("c200_rss", ">= 1.0x", lambda r: r >= 1.0, DEFAULT, TUS_NODE),
    Goal("c1000_errors", "0", lambda v: v == 0),
    Goal("c1000_rss", "< 300", lambda v: v < 300 * MiB, DEFAULT),
    # issue 2
    Goal("rate_errors", "0", lambda v: v == 0),
    Goal("c200_errors", "0", lambda v: v == 0),
    Goal("verify_share", "< 5%", lambda v: v < 0.05, DEFAULT),
    Goal("rss_growth", "< 64", lambda v: v < 64 * MiB, DEFAULT),
)


class Measured(Protocol):
    """A workload's result: it names the uploads it created, to be deleted after the phase."""

    @property
    def paths(self) -> list[str]: ...


M = TypeVar("M", bound=Measured)


def make_file(path: Path, size: int) -> str:
    """Random bytes (nothing for a filesystem to compress or dedupe); returns their sha256."""
    digest = hashlib.sha256()
    with path.open("wb") as f:
        left = size
        while left:
            block = os.urandom(min(4 * MiB, left))
            digest.update(block)
            f.write(block)
            left -= len(block)
    return digest.hexdigest()


class Bench:
    """Runs the phases and records one value per metric, server and round; a failed phase records nothing."""

    def __init__(self, big: int, patches: int, file: Path, sha256: str, sampler: RssSampler) -> None:
        self.big = big
        self.patches = patches
        self.file = file
        self.sha256 = sha256
        self.sampler = sampler
        self.values: Values = defaultdict(lambda: defaultdict(list))
        self.errors: dict[str, list[str]] = defaultdict(list)

    def record(self, server: RunningServer, key: str, value: float) -> None:
        self.values[server.name][key].append(value)

    def measure(self, server: RunningServer, label: str, run: Callable[[], M]) -> tuple[M, float, float] | None:
        """Run one workload on a quiet disk, then delete its uploads; its result and monotonic start and end."""
        os.sync()
        print(f"  {server.name:<20} {label} ...", end="", flush=True)
        cpu, start = time.process_time(), time.monotonic()
        try:
            result = run()
        except (BenchError, OSError, asyncio.IncompleteReadError) as exc:
            print(f" FAILED: {type(exc).__name__}: {exc}", flush=True)
            self.errors[server.name].append(f"{label}: {type(exc).__name__}: {exc}")
            return None
        end = time.monotonic()
        print(f" {end - start:.1f}s (client CPU {time.process_time() - cpu:.1f}s)", flush=True)
        failures = asyncio.run(workloads.delete_uploads(server.endpoint, result.paths))
        if failures:
            print(f"  {server.name}: {len(failures)} connection(s) failed to DELETE uploads: {failures[0]}")
        return result, start, end

    def single_stream(self, server: RunningServer) -> None:
        measured = self.measure(server, f"single stream {_size(self.big)} (curl -T)",
                                lambda: workloads.curl_upload(server.endpoint, self.file, self.big))
        if measured:
            result, start, end = measured
            self.record(server, "single", self.big / 1e6 / result.seconds)
            growth = self.sampler.peak(server.name, start, end) - self.sampler.before(server.name, start)
            self.record(server, "rss_growth", growth)

    def _finish(self, server: RunningServer, declare: bool) -> workloads.Transfer | None:
        meta = metadata(filename="big.bin", **({"sha256": self.sha256} if declare else {}))
        label = "upload with declared sha256" if declare else "upload without sha256"
        measured = self.measure(server, label, lambda: asyncio.run(
            workloads.file_upload(server.endpoint, self.file, self.big, meta)))
        return measured[0] if measured else None

    def last_byte(self, server: RunningServer) -> None:
        plain, verified = self._finish(server, declare=False), self._finish(server, declare=True)
        if plain and plain.after_last_byte is not None:
            self.record(server, "last_plain", plain.after_last_byte)
        if verified and verified.after_last_byte is not None:
            self.record(server, "last_verified", verified.after_last_byte)
            if plain and plain.after_last_byte is not None:
                self.record(server, "verify_share", (verified.after_last_byte - plain.after_last_byte) / plain.seconds)

    def rate(self, server: RunningServer) -> None:
        label = f"{PATCH_CONNECTIONS} x {self.patches} PATCHes of {_size(PATCH_SIZE)}"
        measured = self.measure(server, label, lambda: asyncio.run(
            workloads.patch_rate(server.endpoint, PATCH_CONNECTIONS, self.patches, PATCH_SIZE)))
        if measured:
            rate = measured[0]
            self.record(server, "rate", rate.per_second)
            self.record(server, "rate_errors", len(rate.errors))
            self.errors[server.name] += rate.errors

    def concurrent(self, server: RunningServer, count: int) -> None:
        measured = self.measure(server, f"{count} concurrent uploads of {_size(CONCURRENT_SIZE)}", lambda: asyncio.run(
            workloads.concurrent_uploads(server.endpoint, count, CONCURRENT_SIZE)))
        if measured:
            batch, start, end = measured
            self.record(server, f"c{count}", batch.seconds)
            self.record(server, f"c{count}_errors", len(batch.errors))
            self.record(server, f"c{count}_rss", self.sampler.peak(server.name, start, end))
            self.errors[server.name] += batch.errors

    def run(self, targets: Sequence[RunningServer], rounds: int) -> None:
        """Phase by phase, each phase over every server in turn; each round starts one server later."""
        phases: list[Callable[[RunningServer], None]] = [self.single_stream, self.rate]
        phases += [partial(self.concurrent, count=count) for count in CONCURRENT]
        phases.append(self.last_byte)
        for r in range(rounds):
            order = [*targets[r % len(targets):], *targets[:r % len(targets)]]
            print(f"round {r + 1} of {rounds}", flush=True)
            start = time.monotonic()
            for phase in phases:
                for server in order:
                    phase(server)
            end = time.monotonic()
            for server in targets:
                self.record(server, "rss_peak", self.sampler.peak(server.name, start, end))


def raise_fd_limit() -> None:
    """1,000 concurrent connections need more descriptors than the common soft limit of 1024, in this
    client and in the servers, which inherit it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = FD_WANTED if hard == resource.RLIM_INFINITY else min(hard, FD_WANTED)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    if wanted < 2 * max(CONCURRENT) + 100:
        print(f"warning: only {wanted} file descriptors allowed (hard limit); "
              f"{max(CONCURRENT)} concurrent uploads may fail for want of them")


def parse_variant(text: str) -> Variant:
    name, sep, args = text.partition("=")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"expected NAME=ARGS, got {text!r}")
    return Variant(name.strip(), "tuskit", tuple(shlex.split(args)))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--size", type=parse_size, default=256 * MiB,
                   help="the single-stream and last-byte uploads' size (default 256MiB)")
    p.add_argument("--patches", type=int, default=1000,
                   help=f"{_size(PATCH_SIZE)} PATCHes per connection in the rate phase (default 1000)")
    p.add_argument("--rounds", type=int, default=3, help="rounds over every phase and server (default 3)")
    p.add_argument("--variant", type=parse_variant, action="append", default=[], metavar="NAME=ARGS",
                   help="one more tuskit column: `tuskit server` with these extra flags (a built-in NAME is replaced)")
    p.add_argument("--s3", action="store_true",
                   help="one more column, `tuskit s3`: the S3 store on moto's S3 server (far slower than S3)")
    p.add_argument("--only", action="append", metavar="NAME",
                   help=f"run only this server (repeatable): {', '.join(v.name for v in servers.BUILT_IN)} "
                        "or a --variant's NAME")
    p.add_argument("--log-level", default="warning",
                   help="tuskit's --log-level (default warning: no peer logs a line per request either)")
    p.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()),
                   help="where the test file and the data dirs go (needs ~1.5 GiB + 2x --size free)")
    args = p.parse_args(argv)
    args.s3_server = s3.start() if args.s3 else None
    extra = (Variant("tuskit s3", "tuskit", args.s3_server.tuskit_args()),) if args.s3_server else ()
    variants = {v.name: v for v in (*servers.BUILT_IN, *extra, *args.variant)}
    if unknown := set(args.only or ()) - variants.keys():
        p.error(f"unknown server(s) {', '.join(sorted(unknown))}; known: {', '.join(variants)}")
    chosen = [v for name, v in variants.items() if not args.only or name in args.only]
    args.variants = sorted(chosen, key=lambda v: v.is_peer)  # tuskit's columns first
    return args


def start_servers(variants: Sequence[Variant], work: Path, log_level: str) -> tuple[list[RunningServer], list[str]]:
    """Every server that starts; one line for each that does not, so the bench runs with the rest."""
    started, skipped = [], []
    for variant in variants:
        try:
            started.append(servers.start(variant, work, log_level))
        except StartFailed as exc:
            skipped.append(f"  skipped {variant.name}: {exc}")
    return started, skipped


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the servers and delete the data on kill
    raise_fd_limit()
    work = Path(tempfile.mkdtemp(prefix="tuskit-bench-", dir=args.workdir))
    targets: list[RunningServer] = []
    logs: dict[str, list[str]] = {}
    try:
        print(f"writing a {_size(args.size)} test file in {work} ...", flush=True)
        file = work / "big.bin"
        sha256 = make_file(file, args.size)
        targets, skipped = start_servers(args.variants, work, args.log_level)
        print(f"{platform.node()}: {os.cpu_count()} cores, python {platform.python_version()}, "
              f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {args.rounds} round(s), "
              f"RLIMIT_NOFILE {resource.getrlimit(resource.RLIMIT_NOFILE)[0]}")
        for s in targets:
            print(f"  {s.name:<20} {s.version} at {s.endpoint}\n  {'':<20} RSS = {s.rss_scope}")
        for line in skipped:
            print(line)
        if not targets:
            return 1
        with RssSampler({s.name: s.tree for s in targets}) as sampler:
            bench = Bench(args.size, args.patches, file, sha256, sampler)
            bench.run(targets, args.rounds)
    finally:
        for s in targets:
            s.stop()
            logs[s.name] = s.log_tail()  # read before the work dir is deleted
        shutil.rmtree(work, ignore_errors=True)
        if args.s3_server is not None:
            args.s3_server.stop()
    running = {s.name for s in targets}
    columns = [Server(v.name, v.is_peer) for v in args.variants if v.name in running]
    report = Report(metrics(args.size), GOALS, columns, bench.values)
    print()
    print("result: median of the rounds; ratio: tuskit's advantage between medians, > 1 = tuskit did better "
          "(higher MB/s or PATCHes/s, lower time, memory or latency); RSS in MiB")
    print(*report.lines(), sep="\n")
    print(report.summary())
    for name, errors in bench.errors.items():
        if not errors:
            continue
        for error in sorted(set(errors)):
            print(f"{name}: {errors.count(error)} x {error}")
        print(f"{name}'s log ends with:", *(f"    {line}" for line in logs[name]), sep="\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
