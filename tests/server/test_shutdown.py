"""SIGTERM while a PATCH streams: the bytes that arrived are saved, the PATCH ends with 503 + the saved
Upload-Offset, the process exits cleanly (open event streams do not hold it up), and after a restart
the upload continues from exactly that offset."""

from __future__ import annotations

import hashlib
import os
import signal
import socket
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import requests
from tus_calls import create, metric, patch, poll

from support import TUS, ServerProcess


def read_response(sock: socket.socket) -> tuple[int, dict[str, str]]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head = data.split(b"\r\n\r\n", 1)[0].decode()
    status_line, *header_lines = head.split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (h.split(":", 1) for h in header_lines)}
    return int(status_line.split()[1]), headers


def test_sigterm_saves_in_flight_bytes_and_answers_503(server_factory: Callable[..., ServerProcess],
                                                       tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    srv = server_factory("--public-events", data_dir=data_dir)
    body = os.urandom(3 * 1024 * 1024)
    sent = 1_234_567
    url = create(srv.url, len(body)).headers["Location"]
    parts = urlsplit(url)
    events = requests.get(srv.origin + "/events", stream=True, timeout=30)  # a dashboard stays connected
    writer = socket.create_connection((parts.hostname, parts.port), timeout=30)
    try:
        writer.sendall(f"PATCH {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\nTus-Resumable: 1.0.0\r\n"
                       f"Upload-Offset: 0\r\nContent-Type: application/offset+octet-stream\r\n"
                       f"Content-Length: {len(body)}\r\n\r\n".encode() + body[:sent])
        poll(lambda: metric(srv.origin, "tuskit_bytes_received_total") == sent)

        srv.proc.send_signal(signal.SIGTERM)
        status, headers = read_response(writer)
        assert status == 503
        assert headers["upload-offset"] == str(sent)
        assert headers["retry-after"].isdigit()
        assert srv.proc.wait(30) == 0
    finally:
        writer.close()
        events.close()

    again = server_factory(data_dir=data_dir)
    resumed_url = again.url + parts.path.rsplit("/", 1)[1]
    head = requests.head(resumed_url, headers=TUS, timeout=10)
    assert head.headers["Upload-Offset"] == str(sent)
    assert patch(resumed_url, sent, body[sent:]).status_code == 204
    stored = requests.get(resumed_url, timeout=30).content
    assert hashlib.sha256(stored).digest() == hashlib.sha256(body).digest()


def test_sigterm_right_after_start_is_a_clean_stop(server_factory: Callable[..., ServerProcess]) -> None:
    """'listening on' is printed only once SIGTERM is handled: a supervisor may stop us at once."""
    srv = server_factory()
    srv.proc.send_signal(signal.SIGTERM)
    assert srv.proc.wait(30) == 0
    poll(lambda: any("shutting down" in line for line in srv.output))  # the output pump may lag the exit
