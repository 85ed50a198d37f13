"""--hook-url: a post-finish JSON POST per verified upload, sent by the process that verified it, with a
timeout per attempt and retries with backoff, received here by a real HTTP server on loopback."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from tus_calls import metric, poll, upload

from support import ServerProcess


class Receiver:
    """A hook receiver whose answers are scripted: 'hang' (never answers in time), or a status code."""

    def __init__(self, script: list[str | int]) -> None:
        self.script = script
        self.calls: list[dict[str, Any]] = []
        self.release = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                receiver.calls.append({"body": body, "hook": self.headers.get("Hook-Name")})
                answer = receiver.script.pop(0) if receiver.script else 200
                if answer == "hang":
                    receiver.release.wait(30)  # the server's --hook-timeout gives up on us first
                    return
                self.send_response(int(answer))
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/hooks"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def receiver_factory() -> Iterator[Callable[[list[str | int]], Receiver]]:
    made: list[Receiver] = []

    def make(script: list[str | int]) -> Receiver:
        made.append(Receiver(script))
        return made[-1]

    yield make
    for r in made:
        r.close()


def test_post_finish_hook_is_retried_through_a_timeout_and_an_error(
    server_factory: Callable[..., ServerProcess], receiver_factory: Callable[[list[str | int]], Receiver]
) -> None:
    receiver = receiver_factory(["hang", 500, 200])
    srv = server_factory("--hook-url", receiver.url, "--hook-timeout", "1s", "--hook-retries", "3")
    data = b"the finished file"
    url = upload(srv.url, data, filename="done.txt")
    poll(lambda: len(receiver.calls) >= 3, timeout=30)
    bodies = [c["body"] for c in receiver.calls]
    assert all(b == bodies[0] for b in bodies)  # the same event each attempt
    event = bodies[0]
    assert event["type"] == "post-finish" and receiver.calls[0]["hook"] == "post-finish"
    assert event["upload"]["id"] == url[-32:]
    assert event["upload"]["size"] == len(data)
    assert event["upload"]["sha256"] == hashlib.sha256(data).hexdigest()
    assert event["upload"]["metadata"] == {"filename": "done.txt"}
    assert metric(srv.origin, "tuskit_hook_failures_total") == 0


def test_hook_gives_up_after_its_retries_and_counts_it(
    server_factory: Callable[..., ServerProcess], receiver_factory: Callable[[list[str | int]], Receiver]
) -> None:
    receiver = receiver_factory([503, 503])
    srv = server_factory("--hook-url", receiver.url, "--hook-retries", "1")
    upload(srv.url, b"nobody wants to hear about me")
    poll(lambda: metric(srv.origin, "tuskit_hook_failures_total") == 1, timeout=30)
    assert len(receiver.calls) == 2  # one attempt and one retry, no more

