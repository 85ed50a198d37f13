"""Tornado's HTTP server with two changes of ours: chunked request bodies may end with trailers (the
checksum-trailer extension), and a request head over the size limit is answered 431 instead of a silent
close.

Tornado 6.6 rejects a chunked body whose terminating chunk is followed by trailer fields ("improperly
terminated chunked request"), yet tus's checksum-trailer extension sends `Upload-Checksum` exactly there.
We swap in a connection class whose chunked-body reader parses trailers and keeps them on the
connection, where `request_trailers()` finds them for the handler. Everything else is Tornado's.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from tornado import httputil, iostream
from tornado.http1connection import HTTP1Connection, HTTP1ServerConnection
from tornado.httpserver import HTTPServer, _HTTPRequestContext
from tornado.log import gen_log

_MAX_SIZE_LINE = 1024  # a chunk-size line with extensions
_MAX_TRAILERS = 16 * 1024  # all trailer fields together
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
                piece = await self.stream.read_bytes(min(left, self.params.chunk_size), partial=True)
                left -= len(piece)
                await self._deliver_body(delegate, piece)
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

    async def _server_request_loop(self, delegate: httputil.HTTPServerConnectionDelegate) -> None:
        try:
            while True:
                conn = TrailerConnection(self.stream, False, self.params, self.context)
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
    def handle_stream(self, stream: iostream.IOStream, address: tuple[str, ...]) -> None:
        if type(stream) is iostream.IOStream:  # not yet used: the same socket gets our stream class
            stream = HeadLimitStream(stream.socket, max_buffer_size=stream.max_buffer_size,
                                     read_chunk_size=stream.read_chunk_size,
                                     max_write_buffer_size=stream.max_write_buffer_size)
        context = _HTTPRequestContext(stream, address, self.protocol, self.trusted_downstream)
        conn = TrailerServerConnection(stream, self.conn_params, context)
        self._connections.add(conn)
        conn.start_serving(self)


def request_trailers(request: httputil.HTTPServerRequest) -> httputil.HTTPHeaders:
    """The trailer fields that ended this request's chunked body (empty for any other body)."""
    return getattr(request.connection, "trailers", _EMPTY)
