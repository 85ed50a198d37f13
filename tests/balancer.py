"""A round-robin TCP load balancer for tests: each new connection goes to the next server in turn.

Servers behind it see the balancer's address in Host, so the upload URLs they hand out lead back through
it, as behind a real load balancer.
"""

from __future__ import annotations

import asyncio
import itertools
from urllib.parse import urlsplit

from loop_thread import LoopServer, pipe


class RoundRobin(LoopServer):
    def __init__(self, *server_urls: str) -> None:
        super().__init__()
        self.targets = [(urlsplit(u).hostname or "", urlsplit(u).port or 80) for u in server_urls]
        self._turn = itertools.cycle(range(len(self.targets)))
        self.picked: list[int] = []  # index of the server each accepted connection went to

    def endpoint(self, path: str = "/files/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        index = next(self._turn)
        self.picked.append(index)
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.targets[index])
        except OSError:
            writer.close()
            return
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
