"""Accepting connections on the one listening socket every worker shares, so that each takes its share.

Every worker watches the same socket and the kernel wakes them all for a new connection; whoever calls
accept first gets it. Tornado's own handler accepts every waiting connection in a loop, so the worker that
happens to wake first takes a burst whole; per-worker sockets (SO_REUSEPORT) spread by a hash of the
client's address, blind to load. Both left one of 2 workers with 60-100% of 8 keep-alive connections.
Here a worker over its share (more connections than the least loaded live worker) leaves a waiting
connection to the others for HOLD_SECONDS and takes it after that, so a stuck sibling never keeps a
client waiting long. In a burst some worker is always within its share and accepts at once, so the hold
costs nothing there (200 and 1,000 concurrent uploads: no slower with 20 ms than with 2 ms, which on a
loaded CI machine let the over-share worker take a connection before its idle sibling was scheduled).
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any, Protocol

from tornado.ioloop import IOLoop

HOLD_SECONDS = 0.02  # how long a worker over its share leaves a connection to the others
_STALE_SECONDS = 0.05  # a hold older than this was for a connection another worker took


class Share(Protocol):
    """This worker's part of the server's open connections (kept where every worker reads it)."""

    def opened(self) -> None: ...
    def closed(self) -> None: ...

    def fair(self) -> bool:
        """Whether this worker holds no more connections than the least loaded live worker."""


def add_balanced_accept_handler(sock: socket.socket, on_connection: Callable[[socket.socket, Any], None],
                                share: Share) -> Callable[[], None]:
    """Like tornado.netutil.add_accept_handler, but a worker over its share first leaves the connection
    to the others (`on_connection` must count it at once, through `share.opened`). Returns the remover.

    While it holds back, the socket stays readable, so the loop calls again at its next turn: no timer."""
    loop = IOLoop.current()
    removed = False
    held_since: float | None = None  # when this worker began leaving a waiting connection to others

    def readable(_fd: Any, _events: int) -> None:
        nonlocal held_since
        while not removed:
            if not share.fair():
                now = loop.time()
                if held_since is None or now - held_since > _STALE_SECONDS:
                    held_since = now
                if now - held_since < HOLD_SECONDS:
                    return
            try:
                connection, address = sock.accept()
            except BlockingIOError:  # none left (another worker took it)
                held_since = None
                return
            except ConnectionAbortedError:  # closed while it waited in the queue
                continue
            held_since = None
            on_connection(connection, address)

    def remove() -> None:
        nonlocal removed
        removed = True
        loop.remove_handler(sock)

    loop.add_handler(sock, readable, IOLoop.READ)
    return remove
