"""A round-robin TCP load balancer for tests: each new connection goes to the next server in turn.

Servers behind it see the balancer's address in Host, so the upload URLs they hand out lead back through
it, as behind a real load balancer. It runs its own asyncio loop in a thread for synchronous tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
from urllib.parse import urlsplit

_READ = 64 * 1024


class RoundRobin:
    def __init__(self, *server_urls: str) -> None:
        self.targets = [(urlsplit(u).hostname or "", urlsplit(u).port or 80) for u in server_urls]
        self._turn = itertools.cycle(range(len(self.targets)))
        self.picked: list[int] = []  # index of the server each accepted connection went to
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self._thread = threading.Thread(target=self._run, name="round-robin", daemon=True)
        self.port = 0

    def __enter__(self) -> RoundRobin:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("balancer did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def endpoint(self, path: str = "/files/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

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
        for handler in self._handlers:  # clients' keep-alive connections end with the balancer
            handler.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        task.add_done_callback(self._handlers.discard)
        index = next(self._turn)
        self.picked.append(index)
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.targets[index])
        except OSError:
            writer.close()
            return
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(_READ):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(ConnectionError, OSError):
            writer.close()
