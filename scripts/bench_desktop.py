"""Benchmark the desktop sync engine against a local tuskit server; prints figures, asserts nothing.

    python scripts/bench_desktop.py [--big-mib 1024] [--small 1000] [--scan 10000]

1. files/s for N x 10 KiB files with 4 workers (start to idle, journal and hashing included);
2. seconds to scan a 10,000-file tree into the journal (uploads held back with pause-all);
3. latency from a file being closed to its upload starting (inotify close event -> Started event);
4. MB/s for one big file through the engine (hashing + upload, and upload alone) as a fraction of
   `curl -X PATCH -T file` to the same server.
The machine may be shared: run it twice and trust the better figures only roughly.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from tuskit.desktop.engine import events as ev
from tuskit.desktop.engine.engine import Engine
from tuskit.desktop.engine.sync_config import SyncConfig

MiB = 1024 * 1024


def start_server(data_dir: Path) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, "-m", "tuskit", "server", "--port", "0", "--data-dir", str(data_dir),
                             "--log-level", "warning"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        if m := re.search(r"listening on (http://\S+)", line):
            threading.Thread(target=proc.stdout.read, daemon=True).start()  # keep draining its output
            return proc, m.group(1)
    raise SystemExit("the server did not start")


def engine(work: Path, root: Path, url: str, **overrides: object) -> Engine:
    values: dict[str, object] = {"roots": [root], "server_url": url, "journal_path": work / f"j-{time.time_ns()}.db",
                                 "watch": False}
    values.update(overrides)
    return Engine(SyncConfig(**values))  # type: ignore[arg-type]


def old_files(root: Path, count: int, size: int, per_dir: int = 100) -> None:
    data = os.urandom(size)
    past = time.time() - 3600
    for i in range(count):
        d = root / f"d{i // per_dir:03d}"
        d.mkdir(parents=True, exist_ok=True)
        f = d / f"f{i:05d}.bin"
        f.write_bytes(i.to_bytes(4, "big") + data[4:])
        os.utime(f, (past, past))


def bench_small(work: Path, url: str, count: int) -> None:
    root = work / "small"
    old_files(root, count, 10 * 1024)
    e = engine(work, root, url, workers=4)
    t0 = time.perf_counter()
    e.start()
    e.wait_idle()
    elapsed = time.perf_counter() - t0
    e.stop()
    done = sum(s.state == "done" for s in e.snapshot())
    print(f"small files: {done}/{count} x 10 KiB in {elapsed:.2f} s = {count / elapsed:.0f} files/s (4 workers)")


def bench_scan(work: Path, url: str, count: int) -> None:
    root = work / "tree"
    old_files(root, count, 16)
    e = engine(work, root, url, workers=1)
    queued = threading.Semaphore(0)
    e.subscribe(lambda event: queued.release() if isinstance(event, ev.Queued) else None)
    e.pause()  # hold the uploads: this measures walking, comparing and journaling
    t0 = time.perf_counter()
    e.start()
    for _ in range(count):
        queued.acquire()
    elapsed = time.perf_counter() - t0
    e.stop()
    print(f"scan: {count} files into the journal in {elapsed:.2f} s ({count / elapsed:.0f} files/s)")


def bench_latency(work: Path, url: str, rounds: int = 10) -> None:
    root = work / "latency"
    root.mkdir()
    e = engine(work, root, url, watch=True)
    started: dict[str, float] = {}
    e.subscribe(lambda event: started.setdefault(event.path, time.perf_counter())
                if isinstance(event, ev.Started) else None)
    e.start()
    e.wait_idle()
    latencies = []
    for i in range(rounds):
        path = root / f"shot{i}.jpg"
        with open(path, "wb") as f:
            f.write(os.urandom(64 * 1024))
        closed = time.perf_counter()
        while str(path) not in started:
            time.sleep(0.005)
        latencies.append(started[str(path)] - closed)
    e.stop()
    print(f"close -> upload start: median {1000 * statistics.median(latencies):.0f} ms, "
          f"max {1000 * max(latencies):.0f} ms over {rounds} files (quiet period 2 s, close grace 0.3 s)")


def curl_seconds(url: str, path: Path, size: int) -> float:
    create = subprocess.run(["curl", "-s", "-i", "-X", "POST", url, "-H", "Tus-Resumable: 1.0.0",
                             "-H", f"Upload-Length: {size}"], capture_output=True, text=True, check=True).stdout
    location = re.search(r"(?im)^location:\s*(\S+)", create)
    assert location, create
    t0 = time.perf_counter()
    subprocess.run(["curl", "-s", "-o", "/dev/null", "-X", "PATCH", "-T", str(path), location.group(1),
                    "-H", "Tus-Resumable: 1.0.0", "-H", "Upload-Offset: 0",
                    "-H", "Content-Type: application/offset+octet-stream"], check=True)
    return time.perf_counter() - t0


def bench_big(work: Path, url: str, mib: int) -> None:
    root = work / "big"
    root.mkdir()
    path = root / "big.bin"
    with open(path, "wb") as f:
        for _ in range(mib // 64):
            f.write(os.urandom(64 * MiB))
    size = path.stat().st_size
    past = time.time() - 3600
    os.utime(path, (past, past))
    curl = curl_seconds(url, path, size)
    e = engine(work, root, url)
    marks: dict[str, float] = {}
    e.subscribe(lambda event: marks.setdefault(type(event).__name__, time.perf_counter()))
    t0 = time.perf_counter()
    e.start()
    e.wait_idle()
    e.stop()
    total = time.perf_counter() - t0
    upload = marks["Done"] - marks["Started"]
    mb = size / 1e6
    print(f"big file: {mib} MiB  curl -X PATCH -T: {mb / curl:.0f} MB/s | engine upload only: {mb / upload:.0f} MB/s "
          f"({curl / upload:.2f} of curl) | engine incl. sha256 of the file: {mb / total:.0f} MB/s "
          f"({curl / total:.2f} of curl)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", type=int, default=1000)
    parser.add_argument("--scan", type=int, default=10000)
    parser.add_argument("--big-mib", type=int, default=1024)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-desktop-"))
    server, url = start_server(work / "server")
    print(f"server {url}; {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} (shared machine)")
    try:
        bench_small(work, url, args.small)
        bench_scan(work, url, args.scan)
        bench_latency(work, url)
        bench_big(work, url, args.big_mib)
    finally:
        server.terminate()
        server.wait(30)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
