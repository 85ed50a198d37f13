"""How long `GET /uploads` takes for an owner with many uploads: the first page and a deep one.

Prints figures, asserts nothing: `python3 scripts/bench_listing.py [--uploads 10000] [--rounds 200]`.
A real `tuskit server --public-listing` runs on a redis-server of its own; the owner's uploads are written
straight into that Redis through RedisStateStore (created, verified and processed, with filenames and
relative paths), which is what 10,000 real uploads would leave there, in seconds instead of minutes.
Each figure is the client's wall time of one keep-alive request, body parsed, over `--rounds` requests.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import statistics
import sys
import tempfile
import time
from pathlib import Path

import redis.asyncio as aioredis
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from tuskit import protocol
from tuskit.server.core.listing import encode_cursor
from tuskit.server.core.model import ACTIVE, DONE, Upload
from tuskit.server.redis.embedded import EmbeddedRedis
from tuskit.server.redis.state import RedisStateStore

from support import start_server


async def populate(redis_url: str, count: int) -> list[tuple[float, str]]:
    """`count` finished, processed uploads of owner "" (no --tokens), one a millisecond apart; their positions."""
    client = aioredis.from_url(redis_url)
    state = RedisStateStore(client)
    start = time.time() - count / 1000
    positions = []
    for n in range(count):
        upload_id = f"{n:032x}"
        name = f"IMG_{n:05d}.JPG"
        metadata = protocol.encode_metadata({"filename": name.encode(), "relativePath": f"camera/{name}".encode()})
        upload = Upload(id=upload_id, offset=0, length=4_000_000, metadata=metadata, concat="", parts=(), owner="",
                        created=start + n / 1000, expires=None, status=ACTIVE, sha256="", reason="", finished=None)
        await state.create(upload)
        await state.settle(upload_id, DONE, sha256=hashlib.sha256(upload_id.encode()).hexdigest(), offset=4_000_000)
        await state.note_processed(upload_id, "image/jpeg", (256,))
        positions.append((upload.created, upload_id))
    await client.aclose()
    return positions[::-1]  # newest first, as listed


def timed(session: requests.Session, url: str, rounds: int, expect: int) -> list[float]:
    times = []
    for _ in range(rounds):
        began = time.perf_counter()
        answer = session.get(url, timeout=30)
        body = answer.json()
        times.append(time.perf_counter() - began)
        assert answer.status_code == 200 and len(body["uploads"]) == expect, answer.text[:200]
    return times


def report(what: str, times: list[float]) -> None:
    ms = sorted(t * 1000 for t in times)
    p95 = ms[int(len(ms) * 0.95) - 1]
    print(f"{what:<42} median {statistics.median(ms):6.2f} ms   p95 {p95:6.2f} ms   min {ms[0]:6.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uploads", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, EmbeddedRedis(Path(tmp) / "redis") as redis_server:
        began = time.perf_counter()
        positions = asyncio.run(populate(redis_server.url, args.uploads))
        print(f"{args.uploads} uploads written to Redis in {time.perf_counter() - began:.1f} s")
        server = start_server(Path(tmp) / "data", "--redis-url", redis_server.url, "--public-listing",
                              "--log-level", "warning")
        try:
            listing = server.origin + "/uploads"
            deep = int(len(positions) * 0.75)
            with requests.Session() as session:
                timed(session, listing, 20, 50)  # warm up: connection, scripts loaded into Redis
                for limit in (50, 500):
                    report(f"first page, limit {limit}", timed(session, f"{listing}?limit={limit}", args.rounds, limit))
                    cursor = encode_cursor(positions[deep - 1])
                    report(f"page after upload #{deep} of {len(positions)}, limit {limit}",
                           timed(session, f"{listing}?limit={limit}&cursor={cursor}", args.rounds, limit))
        finally:
            server.stop()


if __name__ == "__main__":
    main()
