"""The measured workloads. Each one creates its own uploads, so servers and phases never share state,
and returns their paths so they can be deleted (untimed) before the next one."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin

from tusbench.client import OFFSET_TYPE, BenchError, TusConnection, failure


@dataclass(frozen=True)
class Transfer:
    """One upload: wall time of its PATCH, and of the part after its last byte left the client."""

    seconds: float
    after_last_byte: float | None
    paths: list[str]


@dataclass(frozen=True)
class Rate:
    requests: int
    seconds: float
    errors: list[str]  # one per connection that failed; its remaining PATCHes were not sent
    paths: list[str]

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds


@dataclass(frozen=True)
class Batch:
    uploads: int
    seconds: float
    errors: list[str]
    paths: list[str]


async def _create(endpoint: str, length: int) -> str:
    async with TusConnection(endpoint) as conn:
        return await conn.create(length)


def curl_upload(endpoint: str, file: Path, size: int) -> Transfer:
    """POST, then the whole file in one `curl -X PATCH -T`: the single-stream figure uses curl as the client."""
    path = asyncio.run(_create(endpoint, size))
    url = urljoin(endpoint, path)
    cmd = ["curl", "-sS", "--noproxy", "*", "-o", "/dev/null", "-w", "%{http_code} %{time_total}",
           "-X", "PATCH", "-T", str(file), "-H", "Tus-Resumable: 1.0.0", "-H", "Upload-Offset: 0",
           "-H", f"Content-Type: {OFFSET_TYPE}", "-H", "Expect:", url]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise BenchError(f"curl exited with {done.returncode}: {done.stderr.strip()}")
    status, seconds = done.stdout.split()
    if status != "204":
        raise BenchError(f"curl PATCH answered {status}")
    return Transfer(float(seconds), None, [path])


async def file_upload(endpoint: str, file: Path, size: int, upload_metadata: str) -> Transfer:
    """The whole file in one PATCH by sendfile, timing what the server does after the last byte."""
    async with TusConnection(endpoint) as conn:
        path = await conn.create(size, upload_metadata)
        start = time.perf_counter()
        with file.open("rb") as f:
            reply, after = await conn.patch_file(path, f, size)
        seconds = time.perf_counter() - start
    if reply.status != 204 or reply.offset() != size:
        raise failure(f"PATCH of {size} bytes", reply)
    return Transfer(seconds, after, [path])


async def _patch_loop(conn: TusConnection, path: str, body: bytes, count: int) -> tuple[int, str | None]:
    """`count` PATCHes in a row: how many succeeded, and the failure that ended the loop early."""
    for i in range(count):
        try:
            reply = await conn.patch(path, i * len(body), body)
        except (OSError, asyncio.IncompleteReadError) as exc:
            return i, f"PATCH {i + 1}: {type(exc).__name__}: {exc}"
        if reply.status != 204:
            return i, str(failure(f"PATCH {i + 1}", reply))
    return count, None


async def patch_rate(endpoint: str, connections: int, per_connection: int, size: int) -> Rate:
    """Small PATCHes back to back over keep-alive connections; uploads are created before the clock starts."""
    body = os.urandom(size)
    async with contextlib.AsyncExitStack() as stack:
        conns = [await stack.enter_async_context(TusConnection(endpoint)) for _ in range(connections)]
        paths = await asyncio.gather(*(c.create(per_connection * size) for c in conns))
        start = time.perf_counter()
        loops = await asyncio.gather(*(_patch_loop(c, p, body, per_connection)
                                       for c, p in zip(conns, paths, strict=True)))
        seconds = time.perf_counter() - start
    return Rate(sum(done for done, _ in loops), seconds, [error for _, error in loops if error], paths)


async def _one_upload(endpoint: str, body: bytes) -> tuple[str | None, str | None]:
    """Create and send one upload on its own connection: its path if it was created, and what went wrong."""
    path = None
    try:
        async with TusConnection(endpoint) as conn:
            path = await conn.create(len(body))
            reply = await conn.patch(path, 0, body)
    except (OSError, asyncio.IncompleteReadError, BenchError) as exc:
        return path, f"{type(exc).__name__}: {exc}"
    if reply.status != 204 or reply.offset() != len(body):
        return path, str(failure("PATCH", reply))
    return path, None


async def concurrent_uploads(endpoint: str, count: int, size: int) -> Batch:
    """`count` connections at once, each a POST and one PATCH of `size` bytes."""
    body = os.urandom(size)
    start = time.perf_counter()
    outcomes = await asyncio.gather(*(_one_upload(endpoint, body) for _ in range(count)))
    seconds = time.perf_counter() - start
    return Batch(count, seconds, [e for _, e in outcomes if e is not None], [p for p, _ in outcomes if p is not None])


async def _delete_loop(conn: TusConnection, paths: list[str]) -> list[str]:
    failures = []
    for path in paths:
        try:
            await conn.delete(path)
        except (OSError, asyncio.IncompleteReadError, BenchError) as exc:
            failures.append(f"{type(exc).__name__}: {exc}")
            break  # the connection may be unusable; the rest of its share stays on disk
    return failures


async def delete_uploads(endpoint: str, paths: list[str], connections: int = 8) -> list[str]:
    """DELETE every path over a few keep-alive connections; returns what failed."""
    shares = [paths[i::connections] for i in range(connections) if paths[i::connections]]
    async with contextlib.AsyncExitStack() as stack:
        conns = [await stack.enter_async_context(TusConnection(endpoint)) for _ in shares]
        results = await asyncio.gather(*(_delete_loop(c, share) for c, share in zip(conns, shares, strict=True)))
    return [failure for result in results for failure in result]
