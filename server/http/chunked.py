"""Tornado's HTTP server with changes of ours: chunked request bodies may end with trailers (the
checksum-trailer extension), body reads are sized by the process's body budget and received without
copies, a request head over the size limit is answered 431 instead of a silent close, Nagle stays off
for a connection's life, and workers that share a listening socket take turns at it (http.accept).

Tornado 6.6 rejects a chunked body whose terminating chunk is followed by trailer fields ("improperly
terminated chunked request"), yet tus's checksum-trailer extension sends `Upload-Checksum` exactly there.
We swap in a connection class whose chunked-body reader parses trailers and keeps them on the
connection, where `request_trailers()` finds them for the handler. Its body reads (chunked or not) ask
the budget how big they may be: a read of 1 MiB per upload is what makes uploads fast, and what made 200
of them take 500 MB at once; the bytes are received straight into the buffer handed to the handler.
Everything else is Tornado's.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from tornado import httputil, iostream
from tornado.http1connection import HTTP1Connection, HTTP1ServerConnection
from tornado.httpserver import HTTPServer, _HTTPRequestContext
from tornado.log import gen_log

from ..core.budget import MIN_PIECE, BodyBudget
from .accept import Share, add_balanced_accept_handler

_MAX_SIZE_LINE = 1024  # a chunk-size line with extensions
_MAX_TRAILERS = 16 * 1024  # all trailer fields together
_YIELD_EVERY = 256 * 1024  # body bytes read before other connections get a turn, as tornado does
_FIRST_PIECE = 64 * 1024  # a body's first read; reads grow while the socket fills them, up to the chunk size
_EMPTY = httputil.HTTPHeaders()
_TOO_LARGE_REASON = b"request header block is over 64 KiB\n"
_HEAD_TOO_LARGE = (b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Type: text/plain; charset=utf-8\r\n"
                   b"Tus-Resumable: 1.0.0\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s"
                   % (len(_TOO_LARGE_REASON), _TOO_LARGE_REASON))


class HeadLimitStream(iostream.IOStream):
    """A connection's stream that answers a request head over the limit with 431 before it closes.

    Tornado reads the request head (and nothing else on a server) with `read_until_regex(max_bytes)`, and
    when the head outgrows it the stream closes itself at once, leaving the client guessing."""

    reading_head = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        super().set_nodelay(True)

    def set_nodelay(self, value: bool) -> None:
        """Nagle stays off for the connection's life (set once, above). Tornado turns it on to end each
        response and off again after it: two setsockopt calls per request, ~2% of the event loop's time in
        a run of 64 KiB PATCHes, for responses that are whole writes (a head with its small body, or
        1 MiB download blocks) and gain nothing from coalescing."""

    def read_until_regex(self, regex: bytes, max_bytes: int | None = None) -> asyncio.Future[bytes]:
        self.reading_head = True
        future = super().read_until_regex(regex, max_bytes)
        future.add_done_callback(self._head_read)
        return future

    def _head_read(self, _future: asyncio.Future[bytes]) -> None:
        self.reading_head = False

    def close(self, exc_info: Any = False) -> None:
        if self.reading_head and isinstance(exc_info, iostream.UnsatisfiableReadError) and not self.closed():
            with contextlib.suppress(OSError):
                self.socket.send(_HEAD_TOO_LARGE)  # a small write into an idle socket: it goes at once
        super().close(exc_info)


def _chunk_size(line: bytes) -> int:
    """The size on a chunk-size line (`1a2b;ext=1\\r\\n`); extensions are allowed and ignored."""
    text = line[:-2].split(b";", 1)[0].strip()
    if not text or len(text) > 16 or text.strip(b"0123456789abcdefABCDEF"):
        raise httputil.HTTPInputError(f"invalid chunk size line {line[:40]!r}")
    return int(text, 16)


class TrailerConnection(HTTP1Connection):
    """One request on a connection; its chunked body may carry trailers, kept in `self.trailers`."""

    trailers: httputil.HTTPHeaders = _EMPTY
    budget: BodyBudget
    # set by a handler that streams a body: awaited before each piece after the first (byte-rate pacing,
    # the body budget's leave to read on)
    gate: Callable[[], Awaitable[None]] | None = None
    _pieces = 0
    _piece = _FIRST_PIECE  # the next read's size, before the budget has its say

    async def _take_piece(self, delegate: httputil.HTTPMessageDelegate, want: int) -> int:
        """Read one piece of the body (at most `want` bytes, as soon as any arrived, no more than the
        budget allows), hand it to the handler and return its size.

        The piece lives only in this frame, so whatever the handler did not keep is freed before the gate
        makes the next piece wait: a waiting body must hold only what the budget counts. It is received
        straight into the buffer the handler gets: tornado's `read_bytes` copies every body byte three times
        on the event loop's thread (into a zeroed buffer of the stream's read size, onto the stream's
        buffer, out as bytes), 0.4-0.9 s of CPU per GiB against 0.27 s this way. The buffer is zeroed and
        resident while it waits for bytes, so it is sized by how the last one filled: doubled up to the
        chunk size while the socket fills them at once (a fast stream), halved when it did not (1,000
        uploads trickling in held 1,000 MiB of waiting 1 MiB buffers, and zeroing them took 43% of the
        event loop's thread)."""
        if self._pieces and self.gate is not None:
            await self.gate()
        self._pieces += 1
        size = self.budget.start_read(min(want, self._piece))
        try:
            piece = bytearray(size)
            got = await self.stream.read_into(piece, partial=True)
        finally:
            self.budget.end_read(size)
        if got < size:
            del piece[got:]  # the unfilled end goes back to the allocator
            self._piece = max(self._piece // 2, _FIRST_PIECE)
        else:
            self._piece = min(self._piece * 2, self.params.chunk_size)
        await self._deliver_body(delegate, piece)
        return got

    async def _read_fixed_body(self, content_length: int, delegate: httputil.HTTPMessageDelegate) -> None:
        work = 0
        while content_length > 0:
            got = await self._take_piece(delegate, content_length)
            content_length -= got
            work += got
            if work >= _YIELD_EVERY:
                work = 0
                await asyncio.sleep(0)

    async def _read_chunked_body(self, delegate: httputil.HTTPMessageDelegate) -> None:
        total = 0
        while True:
            size = _chunk_size(await self.stream.read_until(b"\r\n", max_bytes=_MAX_SIZE_LINE))
            if size == 0:
                self.trailers = await self._read_trailers()
                return
            total += size
            if total > self._max_body_size:
                raise httputil.HTTPInputError("chunked body too large")
            left = size
            while left:
                left -= await self._take_piece(delegate, left)
            if await self.stream.read_bytes(2) != b"\r\n":
                raise httputil.HTTPInputError("improperly terminated chunk")

    async def _read_trailers(self) -> httputil.HTTPHeaders:
        """Trailer fields up to the empty line that ends the body (usually there are none)."""
        first = await self.stream.read_bytes(2)
        if first == b"\r\n":
            return _EMPTY
        block = first + await self.stream.read_until(b"\r\n\r\n", max_bytes=_MAX_TRAILERS)
        try:
            return httputil.HTTPHeaders.parse(block[:-4].decode("latin1"))
        except httputil.HTTPInputError:
            raise
        except ValueError as exc:
            raise httputil.HTTPInputError(f"malformed chunked trailers: {exc}") from None


class TrailerServerConnection(HTTP1ServerConnection):
    """Tornado's request loop, with TrailerConnection per request."""

    budget: BodyBudget

    async def _server_request_loop(self, delegate: httputil.HTTPServerConnectionDelegate) -> None:
        try:
            while True:
                conn = TrailerConnection(self.stream, False, self.params, self.context)
                conn.budget = self.budget
                request_delegate = delegate.start_request(self, conn)
                try:
                    keep_alive = await conn.read_response(request_delegate)
                except (iostream.StreamClosedError, iostream.UnsatisfiableReadError, asyncio.CancelledError):
                    return
                except Exception:
                    gen_log.error("uncaught exception on connection", exc_info=True)
                    conn.close()
                    return
                if not keep_alive:
                    return
                await asyncio.sleep(0)
        finally:
            delegate.on_close(self)


class TusHTTPServer(HTTPServer):
    def initialize(self, *args: Any, budget: BodyBudget | None = None, share: Share | None = None,
                   **kwargs: Any) -> None:
        """`budget`: the process's body budget, shared with the append sessions (None: unbounded); `share`:
        this worker's part of connections on a socket that workers share (None: the only process)."""
        super().initialize(*args, **kwargs)
        self.budget = budget or BodyBudget()
        self.share = share

    def add_sockets(self, sockets: Iterable[socket.socket]) -> None:
        if self.share is None:
            super().add_sockets(sockets)
            return
        for sock in sockets:
            self._sockets[sock.fileno()] = sock
            self._handlers[sock.fileno()] = add_balanced_accept_handler(sock, self._handle_connection, self.share)

    def on_close(self, server_conn: object) -> None:
        super().on_close(server_conn)
        if self.share is not None:
            self.share.closed()

    def handle_stream(self, stream: iostream.IOStream, address: tuple[str, ...]) -> None:
        if type(stream) is iostream.IOStream:  # not yet used: the same socket gets our stream class
            stream = HeadLimitStream(stream.socket, max_buffer_size=stream.max_buffer_size,
                                     read_chunk_size=MIN_PIECE,  # request heads; body reads size their own
                                     max_write_buffer_size=stream.max_write_buffer_size)
        context = _HTTPRequestContext(stream, address, self.protocol, self.trusted_downstream)
        conn = TrailerServerConnection(stream, self.conn_params, context)
        conn.budget = self.budget
        self._connections.add(conn)
        if self.share is not None:
            self.share.opened()
        conn.start_serving(self)


def request_trailers(request: httputil.HTTPServerRequest) -> httputil.HTTPHeaders:
    """The trailer fields that ended this request's chunked body (empty for any other body)."""
    return getattr(request.connection, "trailers", _EMPTY)
