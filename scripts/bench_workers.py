#!/usr/bin/env python3
"""64 KiB PATCHes/s of `tuskit server --workers 1` and `--workers N` (and @tus/server with --node), in
alternating rounds, with how each tuskit server's requests spread over its workers: the figures behind
--workers and its listening sockets.

    python scripts/bench_workers.py                      # --workers 1 vs the default (one per core)
    python scripts/bench_workers.py --workers 4 --node   # also @tus/server (needs node and npm)

Each round opens 8 new keep-alive connections per server (the kernel spreads connections, not requests),
creates an upload per connection, then times --patches PATCHes of 64 KiB per connection.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

import requests
from tusbench import servers, workloads
from tusbench.servers import RunningServer

from tuskit.server.config import default_workers

CONNECTIONS = 8
PATCH_SIZE = 64 * 1024
_WORKER_REQUESTS = re.compile(r'^tuskit_worker_requests_total\{worker="\d+"\} (\d+)$', re.MULTILINE)


def per_worker(server: RunningServer) -> list[int]:
    origin = server.endpoint.split("/files/")[0]
    return [int(n) for n in _WORKER_REQUESTS.findall(requests.get(origin + "/metrics", timeout=10).text)]


def start_tuskit(work: Path, workers: int) -> RunningServer:
    """The benchmark's own tuskit start-up, with --workers set through its environment variable."""
    os.environ["TUSKIT_WORKERS"] = str(workers)
    home = work / f"workers-{workers}"
    home.mkdir()
    server = servers.start_tuskit(home, "warning")
    server.name = f"--workers {workers}"
    return server


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workers", type=int, default=default_workers(), help="N (default: the number of cores)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--patches", type=int, default=300, help="PATCHes per connection and round (default 300)")
    p.add_argument("--node", action="store_true", help="also measure @tus/server with its FileStore")
    args = p.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="tuskit-bench-workers-"))
    targets: list[RunningServer] = []
    rates: dict[str, list[float]] = {}
    try:
        targets = [start_tuskit(work, 1), start_tuskit(work, args.workers)]
        if args.node:
            targets.append(servers.start_tus_node(work))
        print(f"{os.cpu_count()} cores; {CONNECTIONS} connections x {args.patches} PATCHes of 64 KiB per round")
        for round_number in range(1, args.rounds + 1):
            for server in targets:
                os.sync()
                before = per_worker(server) if server.name.startswith("--") else []
                rate = asyncio.run(workloads.patch_rate(server.endpoint, CONNECTIONS, args.patches, PATCH_SIZE))
                rates.setdefault(server.name, []).append(rate.per_second)
                spread = ""
                if before:
                    served = [a - b for a, b in zip(per_worker(server), before, strict=True)]
                    spread = f"  requests per worker {served} (busiest {max(served) / sum(served):.0%})"
                errors = f"  ERRORS {rate.errors}" if rate.errors else ""
                print(f"round {round_number}  {server.name:<12} {rate.per_second:6.0f}/s{spread}{errors}", flush=True)
    finally:
        for server in targets:
            server.stop()
        shutil.rmtree(work, ignore_errors=True)
    medians = {name: statistics.median(values) for name, values in rates.items()}
    print()
    for name, median in medians.items():
        print(f"{name:<12} median {median:6.0f}/s  rounds {[round(r) for r in rates[name]]}")
    if args.node:
        ours = medians[f"--workers {args.workers}"]
        print(f"--workers {args.workers} / @tus/server: {ours / medians['@tus/server']:.2f}x (issue 12 goal: >= 1.5x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
