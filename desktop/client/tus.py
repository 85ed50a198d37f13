"""One attempt at uploading one file version over tus: tuspy speaks the protocol, we own the transport.

tuspy 1.1's `Uploader` gives us the protocol: creation headers, Upload-Metadata encoding, chunk lengths
and offset bookkeeping. Around its caveats:
- it reads a whole chunk into memory and reports nothing until the chunk is acknowledged: our PATCH body
  streams blocks from the file with `os.pread`, reporting progress, honouring the shared bandwidth limit
  and checking for cancellation between blocks;
- it sends requests without timeouts through module-level `requests` calls: ours go through a
  per-worker `requests.Session` (keep-alive) with explicit connect/read timeouts;
- it retries with a fixed delay and ignores Retry-After: we run with `retries=0`, classify every failure
  into an `UploadError` and leave the policy (backoff, gates, restarts) to the engine;
- its fingerprint (size + MD5 of the first 64 KiB) and URL storage are off (`store_url=False`): the journal
  is our fingerprint and remembers the URL, so no HEAD happens in its constructor; we HEAD ourselves.
"""

from __future__ import annotations

import os
import re
import threading
import time
from dataclasses import dataclass
from typing import Any, BinaryIO, Protocol

import requests
import urllib3
from tusclient.client import TusClient
from tusclient.uploader import Uploader

from .errors import (
    CHECKSUM,
    FATAL,
    GONE,
    NETWORK,
    RATE_LIMITED,
    RETRYABLE,
    UNREACHABLE,
    Cancelled,
    FileChanged,
    UploadError,
)
from .headers import auth_headers, parse_retry_after
from .throttle import Throttle

BLOCK = 256 * 1024  # progress and cancellation granularity inside a chunk
# files up to this size go in the creation request itself (creation-with-upload): one round trip instead of
# two, which is what a distant server's latency costs per small file; a crash mid-POST wastes at most this
SMALL_FILE = 1024 * 1024
FAST_CHUNK = 0.5  # seconds: a chunk sent faster than this makes the next one twice as big


class UploadHooks(Protocol):
    """What an attempt tells the engine, and asks of it. Called on the worker thread."""

    cancelled: threading.Event

    def before_request(self) -> None:
        """Block while the server asked everyone to wait; raise Cancelled if cancelled meanwhile."""

    def started(self, url: str, offset: int) -> None:
        """The upload exists on the server (just created, or found by HEAD at `offset`)."""

    def sent(self, n: int) -> None:
        """`n` more bytes went onto the socket."""

    def confirmed(self, offset: int) -> None:
        """The server acknowledged everything up to `offset`; may raise FileChanged."""


def classify(resp: requests.Response, action: str) -> UploadError:
    """A non-success answer as an UploadError carrying the server's one-line reason."""
    text = (resp.text or "").strip().splitlines()
    reason = f"{action}: {resp.status_code} {text[0][:200] if text else resp.reason}"
    status = resp.status_code
    if status in (429, 503):
        return UploadError(RATE_LIMITED, reason, status, parse_retry_after(resp.headers.get("Retry-After")))
    if status == 460:
        return UploadError(CHECKSUM, reason, status)
    if status in (404, 410):
        return UploadError(GONE, reason, status)
    if status in (408, 409, 423) or status >= 500:
        return UploadError(RETRYABLE, reason, status, parse_retry_after(resp.headers.get("Retry-After")))
    return UploadError(FATAL, reason, status)


class TusSession:
    """A worker's connection to one server: keep-alive session, auth header, timeouts."""

    def __init__(self, server_url: str, token: str | None, timeout: float) -> None:
        self.client = TusClient(server_url, headers=auth_headers(token))
        self.http = requests.Session()
        self.timeout = (min(timeout, 15.0), timeout)
        self._extensions: frozenset[str] | None = None

    def supports(self, extension: str) -> bool:
        """Whether the server announces a tus extension (OPTIONS, asked once per session)."""
        if self._extensions is None:
            resp = self.request("OPTIONS", self.client.url, "discover")
            if resp.status_code >= 300:
                err = classify(resp, "discover")
                if err.kind == RATE_LIMITED:  # the server's state, not an answer about extensions
                    raise err
                self._extensions = frozenset()
                return False
            announced = resp.headers.get("Tus-Extension", "")
            self._extensions = frozenset(e.strip() for e in announced.split(",") if e.strip())
        return extension in self._extensions

    def request(self, method: str, url: str, action: str, **kwargs: Any) -> requests.Response:
        try:
            return self.http.request(method, url, timeout=self.timeout, **kwargs)
        except requests.RequestException as exc:
            if _could_not_connect(exc):
                raise UploadError(UNREACHABLE, f"{action}: cannot connect: {_describe(exc)}") from exc
            raise UploadError(NETWORK, f"{action}: {_describe(exc)}") from exc

    def close(self) -> None:
        self.http.close()


def _could_not_connect(exc: requests.RequestException) -> bool:
    """Refused, unroutable, unresolvable or timed out while connecting: nothing was sent."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    cause = exc.args[0] if exc.args else None
    return isinstance(exc, requests.ConnectionError) and isinstance(
        getattr(cause, "reason", None), urllib3.exceptions.NewConnectionError)


def _describe(exc: requests.RequestException) -> str:
    """The OS's words for it ("Connection refused") rather than urllib3's nested retry story."""
    text = str(exc)
    if m := re.search(r"\[Errno -?\d+\] ([^\"')]+)", text):
        return m.group(1).strip()
    if isinstance(exc, requests.Timeout):
        return "timed out"
    return f"{type(exc).__name__}: {text[:200]}"


class _ChunkBody:
    """A PATCH body read from the file block by block; `len()` gives requests its Content-Length."""

    def __init__(self, fd: int, offset: int, length: int, hooks: UploadHooks, throttle: Throttle) -> None:
        self.fd, self.offset, self.length = fd, offset, length
        self.hooks, self.throttle = hooks, throttle

    def __len__(self) -> int:
        return self.length

    def __iter__(self) -> Any:
        pos, end = self.offset, self.offset + self.length
        while pos < end:
            n = min(BLOCK, end - pos)
            if not self.throttle.take(n, self.hooks.cancelled):
                raise Cancelled
            block = os.pread(self.fd, n, pos)
            if len(block) != n:
                raise FileChanged("the file became shorter during its upload")
            yield block
            pos += n
            self.hooks.sent(n)


@dataclass
class _Answer:
    """What tuspy's `upload_chunk` reads back from `self.request`."""

    status_code: int
    response_headers: dict[str, str]


class _TusFile(Uploader):
    """tuspy's Uploader with our transport; `length` is the version's size, not the file's current one."""

    def __init__(self, tus: TusSession, stream: BinaryIO, length: int, chunk_size: int, metadata: dict[str, str],
                 hooks: UploadHooks, throttle: Throttle) -> None:
        self._tus, self._length, self._hooks, self._throttle = tus, length, hooks, throttle
        super().__init__(file_stream=stream, client=tus.client, chunk_size=chunk_size, metadata=metadata,
                         retries=0, store_url=False)

    def get_file_size(self) -> int:
        return self._length

    def create_url(self) -> str:
        resp = self._tus.request("POST", self.client.url, "create", headers=self.get_url_creation_headers())
        location = resp.headers.get("Location")
        if resp.status_code != 201 or not location:
            raise classify(resp, "create") if resp.status_code >= 300 else UploadError(
                RETRYABLE, f"create: {resp.status_code} without a Location header", resp.status_code)
        return requests.compat.urljoin(self.client.url, location)

    def create_with_upload(self) -> tuple[str, int]:
        """POST the whole (small) file in the creation request; returns the URL and the server's offset."""
        headers = {**self.get_url_creation_headers(), "Content-Type": "application/offset+octet-stream"}
        body = _ChunkBody(self.file_stream.fileno(), 0, self._length, self._hooks, self._throttle)
        resp = self._tus.request("POST", self.client.url, "create", headers=headers, data=body)
        location, offset = resp.headers.get("Location"), resp.headers.get("Upload-Offset", "0")
        if resp.status_code != 201 or not location or not offset.isdigit():
            raise classify(resp, "create") if resp.status_code >= 300 else UploadError(
                RETRYABLE, f"create: {resp.status_code} without Location/Upload-Offset", resp.status_code)
        return requests.compat.urljoin(self.client.url, location), int(offset)

    def get_offset(self) -> int:
        resp = self._tus.request("HEAD", self.url, "resume", headers=self.get_headers())
        if resp.status_code >= 300:
            raise classify(resp, "resume")
        offset, length = resp.headers.get("Upload-Offset"), resp.headers.get("Upload-Length")
        if offset is None or not offset.isdigit():
            raise UploadError(RETRYABLE, f"resume: {resp.status_code} without a valid Upload-Offset", resp.status_code)
        if length is not None and length != str(self._length):
            raise UploadError(GONE, f"resume: the server's upload is {length} bytes, the file {self._length}")
        return int(offset)

    def _do_request(self) -> None:
        length = self.get_request_length()
        headers = {**self.get_headers(), "Upload-Offset": str(self.offset),
                   "Content-Type": "application/offset+octet-stream"}
        body = _ChunkBody(self.file_stream.fileno(), self.offset, length, self._hooks, self._throttle)
        resp = self._tus.request("PATCH", self.url, "send", data=body, headers=headers)
        if resp.status_code >= 300:
            err = classify(resp, "send")
            if resp.status_code == 429:  # refused before the offset was even looked at
                err.exact_offset = self.offset
            raise err
        offset = resp.headers.get("Upload-Offset")
        if offset is None or not offset.isdigit():
            raise UploadError(RETRYABLE, f"send: {resp.status_code} without a valid Upload-Offset", resp.status_code)
        self.request = _Answer(resp.status_code, {k.lower(): v for k, v in resp.headers.items()})


def upload(tus: TusSession, path: str, size: int, url: str | None, metadata: dict[str, str], chunk_size: int,
           hooks: UploadHooks, throttle: Throttle, max_chunk_size: int | None = None,
           known_offset: int | None = None) -> str:
    """Create (or resume `url`) and send chunks until the server has `size` bytes; returns the URL.

    Resuming asks the server for its offset with a HEAD, unless the last attempt ended with an
    `exact_offset` (`known_offset`): under a request-rate limit that HEAD would spend the one request the
    wait allowed, and the PATCH after it would be refused again, for ever.

    With `max_chunk_size`, a chunk that took less than FAST_CHUNK seconds doubles the next one (up to that
    size): every PATCH costs the server a state update and an fsync, which dominates short requests on a
    fast link, while a slow link keeps the small chunks. Chunks stream from disk, so size costs no memory.
    """
    with open(path, "rb", buffering=0) as stream:
        tus_file = _TusFile(tus, stream, size, chunk_size, metadata, hooks, throttle)
        hooks.before_request()
        if url:
            tus_file.url = url
            tus_file.offset = tus_file.get_offset() if known_offset is None else known_offset
            hooks.started(tus_file.url, tus_file.offset)
        elif 0 < size <= SMALL_FILE and tus.supports("creation-with-upload"):
            tus_file.url, tus_file.offset = tus_file.create_with_upload()
            hooks.started(tus_file.url, 0)
            hooks.confirmed(tus_file.offset)
        else:
            tus_file.url = tus_file.create_url()
            tus_file.offset = 0
            hooks.started(tus_file.url, 0)
        while tus_file.offset < size:
            hooks.before_request()
            began = time.monotonic()
            tus_file.upload_chunk()
            if max_chunk_size and time.monotonic() - began < FAST_CHUNK:
                tus_file.chunk_size = min(2 * tus_file.chunk_size, max_chunk_size)
            hooks.confirmed(tus_file.offset)
        return str(tus_file.url)
