"""Just enough tus over raw HTTP/1.1 keep-alive connections to load a server, with no client library in the way.

Libraries (requests, http.client) spend more CPU per request than the servers we measure on a 2-core box,
so PATCH rates would measure the client. Here a request is one prebuilt header block and a write.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import time
from dataclasses import dataclass
from typing import BinaryIO
from urllib.parse import urljoin, urlsplit

OFFSET_TYPE = "application/offset+octet-stream"
_PIECE = 256 * 1024  # body bytes per write before waiting for the socket to drain
REPLY_TIMEOUT = 120.0  # seconds from the last byte sent to the status line (a 1 GiB fsync included)


class BenchError(Exception):
    """A server answered something a correct tus server would not: counted as an error."""


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]  # names in lower case
    body: bytes = b""  # kept for the error messages of failed requests

    def offset(self) -> int | None:
        value = self.headers.get("upload-offset")
        return int(value) if value is not None else None


def failure(what: str, reply: Reply) -> BenchError:
    return BenchError(f"{what} answered {reply.status} offset {reply.offset()}: "
                      f"{reply.body[:200].decode(errors='replace').strip()}")


def metadata(**pairs: str) -> str:
    """An Upload-Metadata value: keys with base64 values."""
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in pairs.items())


class TusConnection:
    """One keep-alive connection to a tus endpoint (`http://127.0.0.1:PORT/files/`)."""

    def __init__(self, endpoint: str) -> None:
        parts = urlsplit(endpoint)
        if parts.hostname is None or parts.port is None:
            raise ValueError(f"endpoint needs a host and port: {endpoint}")
        self.endpoint = endpoint
        self.host, self.port, self.collection = parts.hostname, parts.port, parts.path
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def __aenter__(self) -> TusConnection:
        self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(OSError):
                await self._writer.wait_closed()

    @property
    def reader(self) -> asyncio.StreamReader:
        assert self._reader is not None, "use the connection inside `async with`"
        return self._reader

    @property
    def writer(self) -> asyncio.StreamWriter:
        assert self._writer is not None, "use the connection inside `async with`"
        return self._writer

    def _head(self, method: str, path: str, headers: dict[str, str]) -> bytes:
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}", "Tus-Resumable: 1.0.0"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    async def _reply(self) -> Reply:
        """Read one response; a server that never answers is a TimeoutError (an OSError), not a hung run."""
        return await asyncio.wait_for(self._read_reply(), REPLY_TIMEOUT)

    async def _read_reply(self) -> Reply:
        """Its body is kept: there is one only on errors, a short text."""
        head = (await self.reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        status_line, *lines = head[:-4].split("\r\n")
        headers = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        body = b""
        if "content-length" in headers:
            body = await self.reader.readexactly(int(headers["content-length"]))
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            body = await self._read_chunked()
        return Reply(int(status_line.split()[1]), headers, body)

    async def _read_chunked(self) -> bytes:
        chunks = []
        while (size := int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)) > 0:
            chunks.append((await self.reader.readexactly(size + 2))[:-2])
        while await self.reader.readuntil(b"\r\n") != b"\r\n":
            pass  # trailer fields
        return b"".join(chunks)

    async def create(self, length: int, upload_metadata: str = "") -> str:
        """POST a new upload of `length` bytes; returns its path."""
        headers = {"Upload-Length": str(length), "Content-Length": "0"}
        if upload_metadata:
            headers["Upload-Metadata"] = upload_metadata
        self.writer.write(self._head("POST", self.collection, headers))
        reply = await self._reply()
        if reply.status != 201 or "location" not in reply.headers:
            raise failure("POST", reply)
        return urlsplit(urljoin(self.endpoint, reply.headers["location"])).path

    async def delete(self, path: str) -> None:
        """Terminate an upload (tus termination), so a long run does not fill the disk."""
        self.writer.write(self._head("DELETE", path, {"Content-Length": "0"}))
        reply = await self._reply()
        if reply.status != 204:
            raise failure(f"DELETE {path}", reply)

    def _patch_head(self, path: str, offset: int, length: int) -> bytes:
        return self._head("PATCH", path, {"Upload-Offset": str(offset), "Content-Type": OFFSET_TYPE,
                                          "Content-Length": str(length)})

    async def patch(self, path: str, offset: int, body: bytes) -> Reply:
        """One PATCH with `body`; small bodies go out in one write with the header."""
        head = self._patch_head(path, offset, len(body))
        if len(body) <= _PIECE:
            self.writer.write(head + body)
        else:
            self.writer.write(head)
            view = memoryview(body)
            for start in range(0, len(view), _PIECE):
                self.writer.write(view[start:start + _PIECE])
                await self.writer.drain()
        return await self._reply()

    async def patch_file(self, path: str, file: BinaryIO, length: int) -> tuple[Reply, float]:
        """PATCH a whole file from offset 0 with sendfile; also returns seconds from the last byte to the reply."""
        self.writer.write(self._patch_head(path, 0, length))
        await self.writer.drain()
        await asyncio.get_running_loop().sendfile(self.writer.transport, file, 0, length)
        sent = time.perf_counter()
        reply = await self._reply()
        return reply, time.perf_counter() - sent
