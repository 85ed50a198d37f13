"""A real HTTP proxy on loopback in front of a real tuskit server, that can misbehave on purpose.

It forwards requests byte for byte (bodies streamed), rewrites `Location` so clients keep talking to the
proxy, counts upload body bytes (what a client really sent), and can answer 429/503 with Retry-After to
the first N requests or flip one byte of a PATCH body (the server then answers 460).
"""

from __future__ import annotations

import http.client
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection"}


@dataclass
class Seen:
    method: str
    path: str
    status: int
    arrived: float  # time.monotonic() when the request line was read
    at: float  # time.monotonic() when the answer was sent


@dataclass
class Faults:
    reject_first: int = 0  # answer this many requests with `reject_status` instead of forwarding
    reject_status: int = 429
    retry_after: str | None = "1"
    corrupt_bodies: int = 0  # flip one byte in this many upload bodies (PATCH, or POST with a body)


@dataclass
class FaultProxy:
    upstream: str  # origin of the real server, e.g. http://127.0.0.1:1234
    faults: Faults = field(default_factory=Faults)
    seen: list[Seen] = field(default_factory=list)
    body_bytes: int = 0  # upload bytes forwarded (PATCH and POST bodies)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None

    @property
    def origin(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def url(self, server_url: str) -> str:
        """The proxy's equivalent of a URL on the real server."""
        return self.origin + server_url[len(self.upstream):]

    def methods(self) -> list[tuple[str, int]]:
        with self._lock:
            return [(s.method, s.status) for s in self.seen]

    def start(self, port: int = 0) -> FaultProxy:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _any(self) -> None:
                proxy._handle(self)

            do_GET = do_HEAD = do_POST = do_PATCH = do_DELETE = do_OPTIONS = _any

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def _take_fault(self, has_body: bool) -> tuple[bool, bool]:
        with self._lock:
            reject = self.faults.reject_first > 0
            if reject:
                self.faults.reject_first -= 1
            corrupt = not reject and has_body and self.faults.corrupt_bodies > 0
            if corrupt:
                self.faults.corrupt_bodies -= 1
            return reject, corrupt

    def _record(self, h: BaseHTTPRequestHandler, status: int, arrived: float) -> None:
        with self._lock:
            self.seen.append(Seen(h.command, h.path, status, arrived, time.monotonic()))

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        arrived = time.monotonic()
        length = int(h.headers.get("Content-Length") or 0)
        reject, corrupt = self._take_fault(length > 0)
        if reject:
            self._drain(h, length)
            h.send_response(self.faults.reject_status)
            if self.faults.retry_after is not None:
                h.send_header("Retry-After", self.faults.retry_after)
            h.send_header("Tus-Resumable", "1.0.0")
            h.send_header("Content-Length", "13")
            h.end_headers()
            h.wfile.write(b"slow down pls")
            self._record(h, self.faults.reject_status, arrived)
            return
        up = urlsplit(self.upstream)
        conn = http.client.HTTPConnection(up.hostname, up.port, timeout=60)
        try:
            conn.putrequest(h.command, h.path, skip_host=True, skip_accept_encoding=True)
            for name, value in h.headers.items():
                if name.lower() not in _HOP:
                    conn.putheader(name, value)
            conn.endheaders()
            if not self._forward_body(h, conn, length, corrupt):
                return  # the client went away mid-body: the server keeps what it got
            resp = conn.getresponse()
            body = resp.read()
            h.send_response(resp.status, resp.reason)
            for name, value in resp.getheaders():
                if name.lower() in _HOP or name.lower() == "content-length":
                    continue
                if name.lower() == "location":
                    value = value.replace(self.upstream, self.origin)
                h.send_header(name, value)
            h.send_header("Content-Length", str(len(body)))
            h.end_headers()
            if h.command != "HEAD":
                h.wfile.write(body)
            self._record(h, resp.status, arrived)
        finally:
            conn.close()

    def _drain(self, h: BaseHTTPRequestHandler, length: int) -> None:
        while length > 0:
            block = h.rfile.read(min(length, 1 << 20))
            if not block:
                return
            length -= len(block)

    def _forward_body(self, h: BaseHTTPRequestHandler, conn: http.client.HTTPConnection, length: int,
                      corrupt: bool) -> bool:
        left = length
        while left > 0:
            block = h.rfile.read1(min(left, 1 << 20))  # type: ignore[attr-defined]
            if not block:
                h.close_connection = True
                return False
            if corrupt:
                block = bytes([block[0] ^ 0xFF]) + block[1:]
                corrupt = False
            left -= len(block)
            with self._lock:
                self.body_bytes += len(block)
            conn.send(block)
        return True
