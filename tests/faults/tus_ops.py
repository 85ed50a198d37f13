"""What the failure tests add to the shared tus helpers (tests/support.py): an upload that declares its
SHA-256, resuming from HEAD, and reading the answer to a PATCH that a fault may have left unanswered.

A raw socket is used for PATCHes that a fault interrupts, because the test must see exactly what the
client saw (a response, or a closed connection) rather than a client library's retry.
"""

from __future__ import annotations

import hashlib
import http.client
import socket
import time
from dataclasses import dataclass

import requests

from support import OFFSET_TYPE, TUS, RawResponse, b64, patch_upload, read_response, request_head


@dataclass(frozen=True)
class Source:
    body: bytes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.body).hexdigest()


def create(endpoint: str, source: Source) -> str:
    """A new upload of `source`'s length that declares its SHA-256, so the server verifies the whole file."""
    created = requests.post(endpoint, timeout=30, headers={
        **TUS, "Upload-Length": str(len(source.body)),
        "Upload-Metadata": f"filename {b64('fault.bin')},sha256 {b64(source.sha256)}"})
    assert created.status_code == 201, created.text
    return str(created.headers["Location"])


def offset(upload_url: str) -> int:
    head = requests.head(upload_url, headers=TUS, timeout=30)
    assert head.status_code == 200, (head.status_code, head.headers)
    return int(head.headers["Upload-Offset"])


def head_when_back(upload_url: str, retryable: tuple[int, ...] = (503,), timeout: float = 40) -> requests.Response:
    """HEAD until the server answers 200 again, meanwhile only `retryable` answers (a 503 with Retry-After)."""
    deadline = time.monotonic() + timeout
    while True:
        head = requests.head(upload_url, headers=TUS, timeout=30)
        if head.status_code == 200:
            return head
        assert head.status_code in retryable, (head.status_code, head.text)
        if head.status_code == 503:
            assert int(head.headers["Retry-After"]) > 0
        assert time.monotonic() < deadline, "the upload never became available again"
        time.sleep(0.2)  # a client's retry delay: the loop polls for the answer


def resume(upload_url: str, source: Source) -> requests.Response:
    """What a client does after any interruption: HEAD, then send the rest from the server's offset."""
    at = offset(upload_url)
    return patch_upload(upload_url, at, source.body[at:])


def patch_head(upload_url: str, at: int, length: int, headers: dict[str, str] | None = None) -> bytes:
    """The request head of a PATCH announcing `length` body bytes at offset `at`."""
    return request_head("PATCH", upload_url, {**TUS, "Upload-Offset": str(at), "Content-Type": OFFSET_TYPE,
                                              "Content-Length": str(length), **(headers or {})})


def answer(sock: socket.socket) -> RawResponse | None:
    """The server's answer on `sock`, or None when the connection ended without one."""
    try:
        return read_response(sock, "PATCH")
    except (http.client.RemoteDisconnected, http.client.IncompleteRead, ConnectionResetError, TimeoutError):
        return None
