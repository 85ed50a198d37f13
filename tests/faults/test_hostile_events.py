"""`GET /events` against callers who would make it disclose or hold what it should not.

Without tokens the stream is off unless the operator opts in (an upload's ID is the key to it). A replay
reads the history page by page, keeps only the caller's events, goes a bounded depth per response (a
reconnect with Last-Event-ID continues), and a reader that stops reading is dropped instead of buffered.
"""

from __future__ import annotations

import json
import secrets
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import redis
import requests
from tus_calls import sse_events

from support import ServerProcess, peak_rss, poll

ALICE = "alice-token-1b2c"
BOB = "bob-token-9f8e"
STREAM = "tuskit:events"  # the server's event history (tuskit.server.redis.keys.EVENT_STREAM)


def _tokens(tmp_path: Path) -> str:
    path = tmp_path / "tokens.txt"
    path.write_text(f"{ALICE} alice\n{BOB} bob\n")
    return str(path)


def _history(redis_url: str, owners: list[str]) -> list[str]:
    """Append one event per entry of `owners` to the history; returns their upload IDs."""
    client = redis.Redis.from_url(redis_url)
    upload_ids = []
    pipe = client.pipeline(transaction=False)
    for i, owner in enumerate(owners):
        upload_id = secrets.token_hex(16)
        upload_ids.append(upload_id)
        event = {"type": "progress", "id": upload_id, "owner": owner, "ts": time.time(), "offset": i,
                 "length": 10**12, "padding": "p" * 150}
        pipe.xadd(STREAM, {"event": json.dumps(event)})
        if i % 2000 == 1999:
            pipe.execute()
    pipe.execute()
    client.close()
    return upload_ids


def _open(server: ServerProcess, token: str, last_event_id: str, rcvbuf: int | None = None) -> socket.socket:
    parts = urlsplit(server.origin)
    sock = socket.socket()
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(30)
    sock.connect((parts.hostname, parts.port))
    # HTTP/1.0: the response is the bytes until the server closes (no chunked framing to take apart)
    sock.sendall(f"GET /events?access_token={token} HTTP/1.0\r\nHost: {parts.netloc}\r\n"
                 f"Last-Event-ID: {last_event_id}\r\n\r\n".encode())
    return sock


def _frames(sock: socket.socket, deadline: float) -> Iterator[tuple[str, dict[str, object] | None]]:
    """(id, event) per SSE frame until the server ends the response; event None for an `id:`-only frame."""
    pending = b""
    in_body = False
    event_id, data = "", ""
    while time.monotonic() < deadline:
        chunk = sock.recv(65536)
        if not chunk:
            return
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for raw in lines:
            line = raw.decode().rstrip("\r")
            if not in_body:
                assert not line.startswith("HTTP/") or " 200 " in line, line
                in_body = line == ""
            elif line.startswith("id: "):
                event_id = line[4:]
            elif line.startswith("data: "):
                data = line[6:]
            elif line == "" and event_id:
                yield event_id, json.loads(data) if data else None
                event_id, data = "", ""
    raise AssertionError("the event stream neither ended nor delivered in time")


def test_events_are_off_without_tokens_unless_the_operator_opts_in(
    server_factory: Callable[..., ServerProcess]
) -> None:
    closed = server_factory()
    refused = requests.get(closed.origin + "/events", timeout=10)
    assert refused.status_code == 404
    assert "--public-events" in refused.text and refused.text.count("\n") == 1
    opened = server_factory("--public-events")
    with requests.get(opened.origin + "/events", stream=True, timeout=10) as stream:
        assert stream.status_code == 200
        assert stream.headers["Content-Type"].startswith("text/event-stream")


def test_replays_that_never_read_hold_bounded_memory(
    server_factory: Callable[..., ServerProcess], redis_url: str, tmp_path: Path
) -> None:
    """16 callers replay a 40,000-event history and never read: the server used to build the whole
    replay in memory for each of them (and keep it while they stalled)."""
    server = server_factory("--redis-url", redis_url, "--tokens", _tokens(tmp_path))
    _history(redis_url, ["alice"] * 40_000)
    before = peak_rss(server.proc.pid)
    socks = [_open(server, ALICE, "0-0", rcvbuf=4096) for _ in range(16)]
    try:
        for sock in socks:  # each replay is under way: its first event reached the caller
            poll(lambda s=sock: b"\nid: " in s.recv(65536, socket.MSG_PEEK), what="a replayed event")
        grown = peak_rss(server.proc.pid) - before
    finally:
        for sock in socks:
            sock.close()
    assert grown < 40 * 1024 * 1024, f"16 stalled replays grew the server by {grown / 2**20:.0f} MiB"


def test_a_replay_shows_only_the_callers_events_a_bounded_depth_per_response(
    server_factory: Callable[..., ServerProcess], redis_url: str, tmp_path: Path
) -> None:
    """Alice's three events hide among 25,000 of Bob's. Each response scans a bounded depth, then ends with
    the ID it reached; her reconnects (as EventSource does, with Last-Event-ID) find all three, in order,
    and nothing of Bob's."""
    server = server_factory("--redis-url", redis_url, "--tokens", _tokens(tmp_path))
    owners = ["bob"] * 25_000
    for at in (5, 15_000, 24_000):
        owners[at] = "alice"
    ids = _history(redis_url, owners)
    wanted = [ids[5], ids[15_000], ids[24_000]]
    seen: list[str] = []
    ended = 0
    last = "0-0"
    deadline = time.monotonic() + 60
    while len(seen) < len(wanted):
        with _open(server, ALICE, last) as sock:
            for event_id, event in _frames(sock, deadline):
                last = event_id
                if event is not None:
                    assert event["owner"] == "alice", event
                    seen.append(str(event["id"]))
                if len(seen) == len(wanted):
                    break
            else:
                ended += 1
    assert seen == wanted
    assert ended >= 2, "one response replayed the whole history"


def test_a_reader_that_stops_reading_is_dropped(
    server_factory: Callable[..., ServerProcess], redis_url: str, tmp_path: Path
) -> None:
    server = server_factory("--redis-url", redis_url, "--tokens", _tokens(tmp_path), "--network-timeout", "2s")
    _history(redis_url, ["alice"] * 40_000)
    with _open(server, ALICE, "0-0", rcvbuf=4096) as sock:
        poll(lambda: any("dropped a slow event stream reader" in line for line in server.output), timeout=60,
             what="the server to drop the reader")
        received = 0
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and (chunk := sock.recv(65536)):
            received += len(chunk)
        assert time.monotonic() < deadline, "the connection stayed open"
    assert received < 40_000 * 200, "the whole history was buffered for a reader that did not read"


def test_live_events_still_reach_a_public_stream(server_factory: Callable[..., ServerProcess]) -> None:
    """The opt-in keeps today's dashboards working: a replay from the start, then live events."""
    server = server_factory("--public-events")
    created = requests.post(server.url, headers={"Tus-Resumable": "1.0.0", "Upload-Length": "3"}, timeout=10)
    upload_id = created.headers["Location"].rsplit("/", 1)[1]
    with requests.get(server.origin + "/events", headers={"Last-Event-ID": "0-0"}, stream=True,
                      timeout=30) as stream:
        for _event_id, event in sse_events(stream):
            if event["id"] == upload_id:
                assert event["type"] == "created"
                break
