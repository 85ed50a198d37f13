"""The few tus operations the failure tests repeat: create, a raw streaming PATCH, HEAD, resume to the end.

A raw socket is used for PATCHes that a fault interrupts, because the test must see exactly what the
client saw (a response, or a closed connection) rather than a client library's retry.
"""

from __future__ import annotations

import base64
import hashlib
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

import requests

from support import TUS


@dataclass(frozen=True)
class Source:
    body: bytes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.body).hexdigest()


def create(endpoint: str, source: Source) -> str:
    """A new upload of `source`'s length that declares its SHA-256, so the server verifies the whole file."""
    metadata = "filename " + base64.b64encode(b"fault.bin").decode() + ",sha256 " + \
        base64.b64encode(source.sha256.encode()).decode()
    created = requests.post(endpoint, headers={**TUS, "Upload-Length": str(len(source.body)),
                                               "Upload-Metadata": metadata}, timeout=30)
    assert created.status_code == 201, created.text
    return str(created.headers["Location"])


def offset(upload_url: str) -> int:
    head = requests.head(upload_url, headers=TUS, timeout=30)
    assert head.status_code == 200, (head.status_code, head.headers)
    return int(head.headers["Upload-Offset"])


def patch(upload_url: str, at: int, data: bytes) -> requests.Response:
    headers = {**TUS, "Upload-Offset": str(at), "Content-Type": "application/offset+octet-stream"}
    return requests.patch(upload_url, data=data, headers=headers, timeout=60)


def resume(upload_url: str, source: Source) -> requests.Response:
    """What a client does after any interruption: HEAD, then send the rest from the server's offset."""
    at = offset(upload_url)
    return patch(upload_url, at, source.body[at:])


def patch_head(upload_url: str, at: int, length: int) -> bytes:
    """The request head of a PATCH announcing `length` body bytes at offset `at`."""
    parts = urlsplit(upload_url)
    return (f"PATCH {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\nTus-Resumable: 1.0.0\r\n"
            f"Upload-Offset: {at}\r\nContent-Type: application/offset+octet-stream\r\n"
            f"Content-Length: {length}\r\n\r\n").encode()


def open_raw(upload_url: str, timeout: float = 60) -> socket.socket:
    parts = urlsplit(upload_url)
    assert parts.hostname is not None and parts.port is not None
    return socket.create_connection((parts.hostname, parts.port), timeout=timeout)


def read_response(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes (b"" when it closed without answering)."""
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
            if b"\r\n\r\n" in received and _complete(received):
                break
    except (ConnectionResetError, TimeoutError):
        pass
    return received


def _complete(response: bytes) -> bool:
    head, _, body = response.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value.strip())
    return True


def status_of(response: bytes) -> int:
    return int(response.split(b" ", 2)[1]) if response.startswith(b"HTTP/1.1 ") else 0


def header_of(response: bytes, name: str) -> str | None:
    head = response.partition(b"\r\n\r\n")[0].decode("latin-1")
    for line in head.split("\r\n")[1:]:
        key, _, value = line.partition(":")
        if key.strip().lower() == name.lower():
            return value.strip()
    return None
