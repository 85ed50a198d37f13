"""A fault-injecting TCP proxy for the failure tests: client -> proxy -> tuskit server, all on loopback.

It forwards bytes both ways and, for the next connection it accepts, can play one network fault on the
client -> server direction once a given number of bytes went through:

- `cut`: the connection breaks. What was forwarded reaches the server, then both sides are closed.
- `stall`: the network goes silent (a half-open connection): nothing more is forwarded, nothing is closed,
  until the server gives up (its --network-timeout) or the test ends.

It runs its own asyncio loop in a thread, so synchronous test code (requests, raw sockets) can use it.
Each connection is recorded, so tests can ask how many bytes the server got and who closed first.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from dataclasses import dataclass, field

_READ = 64 * 1024


@dataclass
class Fault:
    kind: str  # "cut" | "stall"
    after: int  # client -> server bytes forwarded before the fault


@dataclass
class Connection:
    """What happened to one proxied connection."""

    fault: Fault | None
    forwarded: int = 0  # client -> server bytes the server was sent
    faulted: threading.Event = field(default_factory=threading.Event)
    closed_by_server: threading.Event = field(default_factory=threading.Event)


class FaultProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.connections: list[Connection] = []
        self._next_fault: Fault | None = None
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._pipes: set[asyncio.Future[None]] = set()
        self._handlers: set[asyncio.Future[None]] = set()
        self._thread = threading.Thread(target=self._run, name="fault-proxy", daemon=True)
        self.port = 0

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("fault proxy did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def url(self, server_url: str) -> str:
        """`server_url` (an upload or endpoint URL of the target) as reached through the proxy."""
        host, port = self.target
        return server_url.replace(f"{host}:{port}", f"127.0.0.1:{self.port}", 1)

    def fail_next(self, kind: str, after: int) -> None:
        """Play `kind` on the next accepted connection after `after` client bytes."""
        with self._lock:
            self._next_fault = Fault(kind, after)

    # ---- the loop thread -------------------------------------------------------------------------

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._serve())
        self._loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        async with server:
            await self._stop.wait()
            server.close()
            pipes = list(self._pipes)
            for pipe in pipes:
                pipe.cancel()  # each connection's handler then closes both of its sides
            await asyncio.gather(*pipes, *self._handlers, return_exceptions=True)

    async def _accept(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        with self._lock:
            fault, self._next_fault = self._next_fault, None
        conn = Connection(fault)
        self.connections.append(conn)
        handler = asyncio.current_task()
        assert handler is not None
        self._handlers.add(handler)
        handler.add_done_callback(self._handlers.discard)
        try:
            server_r, server_w = await asyncio.open_connection(*self.target)
        except OSError:
            client_w.close()
            return
        upstream = asyncio.ensure_future(self._client_to_server(conn, client_r, server_w))
        downstream = asyncio.ensure_future(self._server_to_client(conn, server_r, client_w))
        self._pipes.update((upstream, downstream))
        try:
            await asyncio.wait([upstream, downstream], return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (upstream, downstream):
                task.cancel()
                self._pipes.discard(task)
            for writer in (server_w, client_w):
                writer.close()
                with contextlib.suppress(OSError, asyncio.CancelledError):
                    await writer.wait_closed()

    async def _client_to_server(self, conn: Connection, reader: asyncio.StreamReader,
                                writer: asyncio.StreamWriter) -> None:
        fault = conn.fault
        while True:
            data = await reader.read(_READ)
            if not data:
                with contextlib.suppress(OSError):
                    writer.write_eof()
                return
            if fault is not None:
                data = data[: max(fault.after - conn.forwarded, 0)]
            writer.write(data)
            await writer.drain()
            conn.forwarded += len(data)
            if fault is not None and conn.forwarded >= fault.after:
                conn.faulted.set()
                if fault.kind == "cut":
                    return  # the caller closes both sides; close() flushes what we wrote first
                await self._black_hole(reader)

    @staticmethod
    async def _black_hole(reader: asyncio.StreamReader) -> None:
        """A stalled network: the client's bytes vanish, and neither side hears of anything, ever."""
        while await reader.read(_READ):
            pass
        await asyncio.Event().wait()

    async def _server_to_client(self, conn: Connection, reader: asyncio.StreamReader,
                                writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(_READ):
            writer.write(data)
            await writer.drain()
        conn.closed_by_server.set()
