#!/usr/bin/env python3
"""tuskit vs @tus/server (FileStore), side by side in one run, with the goals of issue 2 next to the ratios.

Both servers run at once on free loopback ports; each workload runs against one server at a time,
alternating servers phase by phase so drift on a shared machine hits both alike. Dirty pages are
flushed (sync) before every measurement so one server's writeback is not charged to the next.

    python scripts/bench_server.py                 # the full run: 1 GiB files, 200 x 5 MiB, 8 x 1000 PATCHes
    python scripts/bench_server.py --size 64MiB    # a quick run: every workload scaled down with the file
    python scripts/bench_server.py --only tuskit   # no Node needed
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import platform
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from tusbench import servers, workloads
from tusbench.client import metadata
from tusbench.rss import RssSampler
from tusbench.servers import RunningServer

from tuskit.settings import parse_size

GiB = 1024**3
MiB = 1024**2
PATCH_SIZE = 64 * 1024
PATCH_CONNECTIONS = 8
CONCURRENT_UPLOADS = 200
T = TypeVar("T")


@dataclass
class Plan:
    """Workload sizes: the full run's, scaled by `--size` / 1 GiB for quick runs."""

    big: int
    patches_per_connection: int
    concurrent_size: int

    @classmethod
    def scaled(cls, big: int) -> Plan:
        factor = big / GiB
        return cls(big, max(20, round(1000 * factor)), max(PATCH_SIZE, round(5 * MiB * factor)))


@dataclass
class Figures:
    single: workloads.Transfer
    single_rss_growth: int
    plain: workloads.Transfer
    verified: workloads.Transfer
    rate: workloads.Rate
    batch: workloads.Batch
    rss_peak: int = 0


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
    def __init__(self, plan: Plan, file: Path, sha256: str, sampler: RssSampler) -> None:
        self.plan = plan
        self.file = file
        self.sha256 = sha256
        self.sampler = sampler

    def measure(self, server: RunningServer, label: str, run: Callable[[], T]) -> tuple[T, float, float]:
        """Run one workload on a quiet disk; returns its result and its monotonic start and end."""
        os.sync()
        print(f"  {server.name:<12} {label} ...", end="", flush=True)
        start = time.monotonic()
        result = run()
        end = time.monotonic()
        print(f" {end - start:.1f}s", flush=True)
        return result, start, end

    def single_stream(self, server: RunningServer) -> tuple[workloads.Transfer, int]:
        result, start, end = self.measure(server, "single stream (curl -T)",
                                          lambda: workloads.curl_upload(server.endpoint, self.file, self.plan.big))
        growth = self.sampler.peak(server.name, start, end) - self.sampler.before(server.name, start)
        return result, growth

    def finish(self, server: RunningServer, declare: bool) -> workloads.Transfer:
        meta = metadata(filename="big.bin", **({"sha256": self.sha256} if declare else {}))
        label = "upload with declared sha256" if declare else "upload without sha256"
        return self.measure(server, label, lambda: asyncio.run(
            workloads.file_upload(server.endpoint, self.file, self.plan.big, meta)))[0]

    def rate(self, server: RunningServer) -> workloads.Rate:
        count = self.plan.patches_per_connection
        return self.measure(server, f"{PATCH_CONNECTIONS} x {count} PATCHes", lambda: asyncio.run(
            workloads.patch_rate(server.endpoint, PATCH_CONNECTIONS, count, PATCH_SIZE)))[0]

    def batch(self, server: RunningServer) -> workloads.Batch:
        label = f"{CONCURRENT_UPLOADS} concurrent uploads"
        return self.measure(server, label, lambda: asyncio.run(
            workloads.concurrent_uploads(server.endpoint, CONCURRENT_UPLOADS, self.plan.concurrent_size)))[0]

    def run(self, targets: list[RunningServer]) -> dict[str, Figures]:
        """Phase by phase, each phase over every server in turn."""
        single = {s.name: self.single_stream(s) for s in targets}
        plain, verified = {}, {}
        for s in targets:
            plain[s.name] = self.finish(s, declare=False)
            verified[s.name] = self.finish(s, declare=True)
        rate = {s.name: self.rate(s) for s in targets}
        batch = {s.name: self.batch(s) for s in targets}
        return {s.name: Figures(single[s.name][0], single[s.name][1], plain[s.name], verified[s.name],
                                rate[s.name], batch[s.name], self.sampler.peak(s.name)) for s in targets}


# ---- the table ------------------------------------------------------------------------------------

def _size(n: int) -> str:
    return f"{n / GiB:g} GiB" if n >= GiB else f"{n / MiB:g} MiB" if n >= MiB else f"{n // 1024} KiB"


def _mib(n: float) -> str:
    return f"{n / MiB:.1f} MiB"


def _ratio(ours: float, theirs: float | None, higher_is_better: bool) -> float | None:
    """tuskit's advantage: > 1 means tuskit did better, whichever direction 'better' is."""
    if theirs is None or ours <= 0 or theirs <= 0:
        return None
    return ours / theirs if higher_is_better else theirs / ours


def _times(ratio: float | None) -> str:
    return "" if ratio is None else f"{ratio:.2f}x" if ratio >= 0.1 else f"{ratio:.3f}x"


def _verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else "met" if ok else "MISSED"


def table(plan: Plan, ours: Figures, theirs: Figures | None) -> list[tuple[str, str, str, str, str, str]]:
    rows: list[tuple[str, str, str, str, str, str]] = []

    def row(label: str, fmt: Callable[[Figures], str], value: Callable[[Figures], float] | None = None,
            higher_is_better: bool = True, goal: str = "", ok: Callable[[float | None], bool | None] | None = None,
            ) -> None:
        ratio = _ratio(value(ours), value(theirs) if theirs else None, higher_is_better) if value else None
        rows.append((label, fmt(ours), fmt(theirs) if theirs else "-", _times(ratio),
                     goal, _verdict(ok(ratio)) if ok else ""))

    big = _size(plan.big)
    row(f"single stream {big}, curl -T (MiB/s)", lambda f: f"{plan.big / MiB / f.single.seconds:.0f}",
        lambda f: 1 / f.single.seconds, goal=">= 1.2x",
        ok=lambda r: None if r is None else r >= 1.2)
    row(f"{_size(PATCH_SIZE)} PATCHes/s, {PATCH_CONNECTIONS} keep-alive conns", lambda f: f"{f.rate.per_second:.0f}",
        lambda f: f.rate.per_second, goal=">= 1.0x", ok=lambda r: None if r is None else r >= 1.0)
    row(f"{CONCURRENT_UPLOADS} concurrent x {_size(plan.concurrent_size)}: time (s)",
        lambda f: f"{f.batch.seconds:.2f}", lambda f: f.batch.seconds, higher_is_better=False)
    row("errors (concurrent + PATCH phases)", lambda f: str(len(f.batch.errors) + len(f.rate.errors)),
        goal="0", ok=lambda _: not ours.batch.errors and not ours.rate.errors)
    row(f"last byte -> 204, {big}, declared sha256 (ms)", lambda f: f"{_ms(f.verified.after_last_byte)}",
        lambda f: f.verified.after_last_byte or 0.0, higher_is_better=False)
    row(f"last byte -> 204, {big}, no sha256 (ms)", lambda f: f"{_ms(f.plain.after_last_byte)}",
        lambda f: f.plain.after_last_byte or 0.0, higher_is_better=False)
    row("verification adds (% of upload time)", _verification_text, goal="< 5%",
        ok=lambda _: _verification_share(ours) < 0.05)
    row(f"RSS growth during the {big} upload", lambda f: _mib(f.single_rss_growth),
        lambda f: f.single_rss_growth, higher_is_better=False, goal="< 64 MiB",
        ok=lambda _: ours.single_rss_growth < 64 * MiB)
    row("peak RSS, whole run", lambda f: _mib(f.rss_peak), lambda f: f.rss_peak, higher_is_better=False)
    return rows


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.1f}"


def _verification_share(f: Figures) -> float:
    """What declaring the sha256 adds after the last byte, as a share of the plain upload's whole time."""
    return ((f.verified.after_last_byte or 0.0) - (f.plain.after_last_byte or 0.0)) / f.plain.seconds


def _verification_text(f: Figures) -> str:
    added = (f.verified.after_last_byte or 0.0) - (f.plain.after_last_byte or 0.0)
    return f"{added * 1000:+.0f} ms ({_verification_share(f) * 100:+.1f}%)"


def print_table(rows: list[tuple[str, str, str, str, str, str]], names: tuple[str, str]) -> None:
    header = ("", *names, "ratio", "goal", "")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(6)]
    for r in [header, *rows]:
        cells = [cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(r, widths, strict=True))]
        print("  ".join(cells))


# ---- main -----------------------------------------------------------------------------------------

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=parse_size, default=GiB,
                   help="the big upload's size (default 1GiB); the other workloads scale with it")
    p.add_argument("--only", choices=["tuskit", "tus-node"], help="run one server only")
    p.add_argument("--log-level", default="warning",
                   help="tuskit's --log-level (default warning: @tus/server logs nothing per request either)")
    p.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()),
                   help="where the test file and both data dirs go (needs ~6x --size free per server)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the servers and delete the data on kill
    plan = Plan.scaled(args.size)
    work = Path(tempfile.mkdtemp(prefix="tuskit-bench-", dir=args.workdir))
    targets: list[RunningServer] = []
    try:
        print(f"writing a {_size(plan.big)} test file in {work} ...", flush=True)
        file = work / "big.bin"
        sha256 = make_file(file, plan.big)
        if args.only != "tus-node":
            targets.append(servers.start_tuskit(work, args.log_level))
        if args.only != "tuskit":
            targets.append(servers.start_tus_node(work))
        print(f"{platform.node()}: {os.cpu_count()} cores, python {platform.python_version()}, "
              f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
        for s in targets:
            print(f"  {s.name:<12} {s.version} at {s.endpoint}  RSS = {s.rss_scope}")
        with RssSampler({s.name: s.tree for s in targets}) as sampler:
            figures = Bench(plan, file, sha256, sampler).run(targets)
    finally:
        for s in targets:
            s.stop()
        shutil.rmtree(work, ignore_errors=True)
    names = [s.name for s in targets]
    ours = figures[names[0]]
    theirs = figures[names[1]] if len(names) > 1 else None
    print()
    print_table(table(plan, ours, theirs), (names[0], names[1] if len(names) > 1 else "-"))
    for name in names:
        errors = figures[name].rate.errors + figures[name].batch.errors
        for error in sorted(set(errors)):
            print(f"{name}: {errors.count(error)} x {error}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
