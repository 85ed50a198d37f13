"""Accepting connections on the one listening socket every worker shares, so that each takes its share.

Every worker watches the same socket and the kernel wakes them all for a new connection; whoever calls
accept first gets it. Tornado's own handler accepts every waiting connection in a loop, so the worker that
happens to wake first takes a burst whole; per-worker sockets (SO_REUSEPORT) spread by a hash of the
client's address, blind to load. Both left one of 2 workers with 60-100% of 8 keep-alive connections.
Here a worker accepts only while it holds no more connections than the least loaded live worker, and
otherwise stops watching for a moment so that another takes the connection; a worker that waited
MAX_DEFER_SECONDS accepts anyway, so a stuck or slow sibling never leaves a client waiting longer.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any, Protocol

from tornado.ioloop import IOLoop

SPIN_SECONDS = 0.001  # a worker over its share first leaves a new connection for the others this long
DEFER_SECONDS = 0.002  # then looks away from the socket this long at a time
MAX_DEFER_SECONDS = 0.05  # and takes it after this long, over its share or not
_EPISODE_SECONDS = 1.0  # a deferral older than this was for a connection another worker took


class Share(Protocol):
    """This worker's part of the server's open connections (kept where every worker reads it)."""

    def opened(self) -> None: ...
    def closed(self) -> None: ...

    def fair(self) -> bool:
        """Whether this worker holds no more connections than the least loaded live worker."""


def add_balanced_accept_handler(sock: socket.socket, on_connection: Callable[[socket.socket, Any], None],
                                share: Share) -> Callable[[], None]:
    """Like tornado.netutil.add_accept_handler, but taking a connection only when `share` says it is this
    worker's turn (`on_connection` must count it at once, through `share.opened`). Returns the remover.

    A worker over its share first just returns (the socket stays readable, so the loop calls again at
    its next turn: a burst of connections is shared out without a timer's delay between two accepts),
    then looks away in DEFER_SECONDS steps, so that it does not spin while a busy sibling gets to it."""
    loop = IOLoop.current()
    watching = False
    removed = False
    deferred_since: float | None = None  # when this worker began leaving a waiting connection to others

    def watch() -> None:
        nonlocal watching
        if not removed and not watching:
            loop.add_handler(sock, readable, IOLoop.READ)
            watching = True

    def look_away() -> None:
        nonlocal watching
        loop.remove_handler(sock)
        watching = False
        loop.call_later(DEFER_SECONDS, watch)

    def readable(_fd: Any, _events: int) -> None:
        nonlocal deferred_since
        while not removed:
            if not share.fair():
                now = loop.time()
                if deferred_since is None or now - deferred_since > _EPISODE_SECONDS:
                    deferred_since = now
                waited = now - deferred_since
                if waited < SPIN_SECONDS:
                    return
                if waited < MAX_DEFER_SECONDS:
                    look_away()
                    return
            try:
                connection, address = sock.accept()
            except BlockingIOError:  # none left (another worker took it)
                deferred_since = None
                return
            except ConnectionAbortedError:  # closed while it waited in the queue
                continue
            deferred_since = None
            on_connection(connection, address)

    def remove() -> None:
        nonlocal removed
        removed = True
        if watching:
            loop.remove_handler(sock)

    watch()
    return remove
