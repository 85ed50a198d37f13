"""Every state change of an upload reaches `GET /events` as a Server-Sent Event, from whichever process
caused it; a client that reconnects with Last-Event-ID gets what it missed from the Redis stream.
(Without --tokens the stream is served only with --public-events: tests/faults/test_hostile_events.py.)"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from PIL import Image
from tus_calls import b64, create, patch, poll, sse_events, upload

from support import TUS, ServerProcess, start_server


@pytest.fixture(scope="module")
def events_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server without tokens whose operator opted in to serving /events to everyone."""
    server = start_server(tmp_path_factory.mktemp("events"), "--public-events")
    yield server
    server.stop()


class SseClient:
    """A live /events connection read by a thread; `events` fills as they arrive.

    A raw HTTP/1.0 socket rather than requests: closing a requests stream from another thread waits for
    the reader's next byte (a keep-alive comment, 15 s later), while shutting a socket down is immediate.
    """

    def __init__(self, origin: str) -> None:
        parts = urlsplit(origin)
        self.sock = socket.create_connection((parts.hostname, parts.port), timeout=30)
        self.sock.sendall(f"GET /events HTTP/1.0\r\nHost: {parts.netloc}\r\n\r\n".encode())
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.connected = threading.Event()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()
        assert self.connected.wait(10), "no ': connected' comment from /events"

    def _lines(self) -> Iterator[str]:
        pending = b""
        while chunk := self.sock.recv(65536):
            pending += chunk
            *lines, pending = pending.split(b"\n")
            yield from (line.decode().rstrip("\r") for line in lines)

    def _read(self) -> None:
        event_id, data, in_body = "", "", False
        with contextlib.suppress(OSError):
            for line in self._lines():
                if not in_body:
                    assert not line.startswith("HTTP/") or " 200 " in line, line
                    in_body = line == ""
                elif line.startswith(":"):
                    self.connected.set()
                elif line.startswith("id: "):
                    event_id = line[4:]
                elif line.startswith("data: "):
                    data = line[6:]
                elif line == "" and data:
                    self.events.append((event_id, json.loads(data)))
                    data = ""

    def kinds(self, upload_id: str) -> list[str]:
        return [e["type"] for _, e in self.events if e["id"] == upload_id]

    def wait_for(self, upload_id: str, kind: str) -> list[str]:
        return poll(lambda: self.kinds(upload_id) if kind in self.kinds(upload_id) else None)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self.thread.join(10)


def test_every_state_change_is_streamed_across_processes(
    server_factory: Callable[..., ServerProcess], redis_url: str
) -> None:
    a = server_factory("--redis-url", redis_url, "--public-events")
    b = server_factory("--redis-url", redis_url, "--public-events")
    live = SseClient(b.origin)  # watching B while everything happens on A
    try:
        buf = io.BytesIO()
        Image.new("RGB", (120, 80), "purple").save(buf, "PNG")
        image = buf.getvalue()
        url = create(a.url, len(image), sha256=hashlib.sha256(image).hexdigest()).headers["Location"]
        assert patch(url, 0, image[:100]).status_code == 204
        assert patch(url, 100, image[100:]).status_code == 204
        upload_id = url[-32:]
        kinds = live.wait_for(upload_id, "processed")
        assert kinds == ["created", "progress", "finished", "verified", "processed"], live.events
        events = {e["type"]: e for _, e in live.events if e["id"] == upload_id}
        assert events["progress"]["offset"] == 100 and events["progress"]["length"] == len(image)
        assert events["verified"]["sha256"] == hashlib.sha256(image).hexdigest()
        assert events["processed"]["content_type"] == "image/png" and events["processed"]["image"]["width"] == 120

        wrong = create(a.url, 5, sha256="0" * 64).headers["Location"]
        assert patch(wrong, 0, b"hello").status_code == 460
        assert live.wait_for(wrong[-32:], "verification-failed") == ["created", "finished", "verification-failed"]

        doomed = create(a.url, 10).headers["Location"]
        assert requests.delete(doomed, headers=TUS, timeout=10).status_code == 204
        assert live.wait_for(doomed[-32:], "terminated") == ["created", "terminated"]

        ids = [event_id for event_id, _ in live.events]
        assert ids == sorted(ids, key=lambda i: tuple(map(int, i.split("-"))))  # stream order, no repeats
        assert len(set(ids)) == len(ids)
    finally:
        live.close()


def test_last_event_id_replays_what_was_missed_then_goes_live(events_server: ServerProcess) -> None:
    first = upload(events_server.url, b"first file")
    with requests.get(events_server.origin + "/events", headers={"Last-Event-ID": "0-0"}, stream=True,
                      timeout=30) as stream:
        history = []
        for entry in sse_events(stream):
            history.append(entry)
            if entry[1]["id"] == first[-32:] and entry[1]["type"] == "verified":
                break
    resume_from = next(event_id for event_id, e in history if e["id"] == first[-32:] and e["type"] == "created")

    second = upload(events_server.url, b"second file", filename="b.txt")  # happens while nobody listens
    with requests.get(events_server.origin + "/events", params={"last_event_id": resume_from}, stream=True,
                      timeout=30) as stream:
        replayed: list[tuple[str, dict[str, Any]]] = []
        for entry in sse_events(stream):
            replayed.append(entry)
            if entry[1]["id"] == second[-32:] and entry[1]["type"] == "verified":
                break
    order = [tuple(map(int, event_id.split("-"))) for event_id, _ in replayed]
    assert order == sorted(order) and order[0] > tuple(map(int, resume_from.split("-")))
    mine = [(e["id"], e["type"]) for _, e in replayed if e["id"] in (first[-32:], second[-32:])]
    assert (first[-32:], "created") not in mine  # strictly after Last-Event-ID
    assert (first[-32:], "verified") in mine
    assert [k for i, k in mine if i == second[-32:]] == ["created", "finished", "verified"]


def test_event_payloads_name_the_owner_field(events_server: ServerProcess) -> None:
    url = upload(events_server.url, b"x", {"Upload-Metadata": "filename " + b64("x.txt")})
    with requests.get(events_server.origin + "/events", headers={"Last-Event-ID": "0-0"}, stream=True,
                      timeout=30) as stream:
        for _id, event in sse_events(stream):
            if event["id"] == url[-32:]:
                assert event["owner"] == ""  # auth off: everything belongs to the anonymous owner
                break
