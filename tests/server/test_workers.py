"""`tuskit server --workers N`: one parent and N forked workers on one port and one Redis, behaving as one
server: /metrics adds up every worker, a lease held on one worker is released for a request on another,
a worker that dies is replaced, and SIGTERM drains all of them. Which worker holds a connection is read
from the operating system (psutil), so the tests do not depend on how the kernel spreads connections."""

from __future__ import annotations

import collections
import itertools
import os
import signal
import socket
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from urllib.parse import urlsplit

import psutil
import pytest
import redis
import requests
from tus_calls import create, metric, poll

from tuskit.server import workers
from tuskit.server.redis import keys

from support import TUS, ServerProcess, raw_connect, read_response, request_head

CONNECTIONS = 24  # all on one of 2 workers: a chance of 2 in 2**24


def worker_pids(server: ServerProcess) -> set[int]:
    """The server's live worker processes (not its redis, not a dead worker its parent has yet to reap)."""
    pids = set()
    for child in psutil.Process(server.proc.pid).children():
        try:
            if child.name() != "redis-server" and child.status() != psutil.STATUS_ZOMBIE:
                pids.add(child.pid)
        except psutil.NoSuchProcess:
            continue
    return pids


def all_gone(pids: set[int]) -> bool:
    def gone(pid: int) -> bool:
        try:
            return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True
    return all(gone(pid) for pid in pids)


def worker_of(server: ServerProcess, sock: socket.socket) -> int | None:
    """The worker that accepted this client connection (None while none has)."""
    port = sock.getsockname()[1]
    for pid in worker_pids(server):
        try:
            if any(c.raddr and c.raddr.port == port for c in psutil.Process(pid).net_connections(kind="tcp")):
                return pid
        except psutil.NoSuchProcess:
            continue
    return None


def get(sock: socket.socket, url: str) -> int:
    """A keep-alive GET on an open connection: its status."""
    sock.sendall(request_head("GET", url, {}))
    return read_response(sock).status


@pytest.fixture
def two(server_factory: Callable[..., ServerProcess]) -> ServerProcess:
    return server_factory("--workers", "2", "--network-timeout", "300s", "--list-without-tokens")


@pytest.fixture
def connections(two: ServerProcess) -> Iterator[list[socket.socket]]:
    """CONNECTIONS keep-alive connections, each with one request answered (so a worker has accepted it)."""
    with ExitStack() as stack:
        socks = [stack.enter_context(raw_connect(two.url)) for _ in range(CONNECTIONS)]
        for sock in socks:
            assert get(sock, two.origin + "/healthz") == 200
        yield socks


def on_other_workers(server: ServerProcess, socks: list[socket.socket]) -> dict[int, socket.socket]:
    """One connection per worker."""
    found: dict[int, socket.socket] = {}
    for sock in socks:
        pid = poll(lambda s=sock: worker_of(server, s), what="the worker of a connection")
        found.setdefault(pid, sock)
    assert len(found) == 2, "every connection went to one worker"
    return found


def stalled_patch(sock: socket.socket, url: str, length: int, sent: bytes) -> None:
    sock.sendall(request_head("PATCH", url, {**TUS, "Upload-Offset": "0", "Content-Length": str(length),
                                             "Content-Type": "application/offset+octet-stream"}) + sent)


def test_one_worker_is_one_process(server_factory: Callable[..., ServerProcess]) -> None:
    server = server_factory("--workers", "1")
    assert worker_pids(server) == set()
    assert [p.name() for p in psutil.Process(server.proc.pid).children()] == ["redis-server"]
    assert metric(server.origin, "tuskit_workers") == 1


def test_workers_share_one_port_and_metrics_add_up(two: ServerProcess,
                                                  connections: list[socket.socket]) -> None:
    assert len(worker_pids(two)) == 2
    assert sum("listening on" in line for line in two.output) == 1
    assert metric(two.origin, "tuskit_workers") == 2
    on_other_workers(two, connections)  # the load is spread

    before = {name: metric(two.origin, name) for name in
              ("tuskit_uploads_created_total", "tuskit_uploads_finished_total", "tuskit_bytes_received_total",
               'tuskit_http_requests_total{code="201"}', 'tuskit_http_requests_total{code="204"}')}
    path = urlsplit(two.url).path
    for i, sock in enumerate(connections):
        body = b"x" * (i + 1)
        sock.sendall(request_head("POST", two.url, {**TUS, "Upload-Length": str(len(body))}))
        created = read_response(sock, "POST")
        assert created.status == 201
        location = urlsplit(created.headers["Location"]).path
        assert location.startswith(path)
        sock.sendall(request_head("PATCH", two.origin + location, {
            **TUS, "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream",
            "Content-Length": str(len(body))}) + body)
        assert read_response(sock, "PATCH").status == 204
    after = {name: metric(two.origin, name) for name in before}
    n = len(connections)
    assert after["tuskit_uploads_created_total"] - before["tuskit_uploads_created_total"] == n
    assert after['tuskit_http_requests_total{code="201"}'] - before['tuskit_http_requests_total{code="201"}'] == n
    assert after['tuskit_http_requests_total{code="204"}'] - before['tuskit_http_requests_total{code="204"}'] == n
    assert after["tuskit_bytes_received_total"] - before["tuskit_bytes_received_total"] == n * (n + 1) // 2
    finished = poll(lambda: (m := metric(two.origin, "tuskit_uploads_finished_total")) - before[
        "tuskit_uploads_finished_total"] >= n and m)
    assert finished - before["tuskit_uploads_finished_total"] == n
    per_worker = [metric(two.origin, f'tuskit_worker_requests_total{{worker="{i}"}}') for i in (0, 1)]
    assert all(count > 0 for count in per_worker)


def test_connections_opened_one_after_another_are_shared_out_evenly(two: ServerProcess) -> None:
    """Workers take connections by how many each holds (http.accept), not by a hash of the client's address,
    which left one of 2 workers with 6 or more of 8 keep-alive connections in 29% of runs."""
    with ExitStack() as stack:
        socks = []
        for _ in range(16):
            sock = stack.enter_context(raw_connect(two.url))
            assert get(sock, two.origin + "/healthz") == 200  # accepted, and counted by its worker
            socks.append(sock)
        held = collections.Counter(worker_of(two, sock) for sock in socks)
        assert sorted(held.values()) == [8, 8], held


def test_a_stalled_patch_on_one_worker_is_released_by_a_head_on_another(
    two: ServerProcess, connections: list[socket.socket]
) -> None:
    body = os.urandom(2 * 1024 * 1024)
    url = create(two.url, len(body)).headers["Location"]
    (writer_pid, writer), (_, asker) = on_other_workers(two, connections).items()
    waits = metric(two.origin, "tuskit_lock_waits_total")
    stalled_patch(writer, url, len(body), body[:300_000])
    poll(lambda: metric(two.origin, "tuskit_active_patches") == 1, what="the PATCH streaming on its worker")

    asker.sendall(request_head("HEAD", url, TUS))
    head = read_response(asker, "HEAD")
    assert head.status == 200 and 0 <= int(head.headers["Upload-Offset"]) <= 300_000
    # the writer's worker saved what it had and closed the stale connection
    assert writer.recv(65536) == b""
    poll(lambda: metric(two.origin, "tuskit_lock_waits_total") == waits + 1, what="the wait, counted")
    assert writer_pid in worker_pids(two)


def test_a_replacement_worker_leaves_the_other_workers_leases_alone(
    two: ServerProcess, connections: list[socket.socket]
) -> None:
    """Stale leases are cleared once, by the parent before any worker starts: a worker that starts later
    must not take the lease from under a PATCH another worker is streaming."""
    body = os.urandom(1024 * 1024)
    url = create(two.url, len(body)).headers["Location"]
    (_, writer), (other_pid, _) = on_other_workers(two, connections).items()
    stalled_patch(writer, url, len(body), body[:1000])
    lease = keys.lock(url.rsplit("/", 1)[1])
    with redis.Redis(unix_socket_path=str(two.data_dir / "redis" / "redis.sock")) as client:
        poll(lambda: client.exists(lease), what="the writer's lease")
        os.kill(other_pid, signal.SIGKILL)
        poll(lambda: len(worker_pids(two) - {other_pid}) == 2, what="a replacement")
        poll(lambda: metric(two.origin, "tuskit_workers") == 2, what="the replacement, serving")
        assert client.exists(lease)
    writer.sendall(body[1000:])
    assert read_response(writer, "PATCH").status == 204


def test_events_of_one_worker_reach_a_stream_on_another(two: ServerProcess,
                                                         connections: list[socket.socket]) -> None:
    (_, listener), (_, creator) = on_other_workers(two, connections).items()
    listener.sendall(request_head("GET", two.origin + "/events", {"Accept": "text/event-stream"}))
    seen = listener.recv(65536)
    assert seen.startswith(b"HTTP/1.1 200")
    creator.sendall(request_head("POST", two.url, {**TUS, "Upload-Length": "5"}))
    created = read_response(creator, "POST")
    assert created.status == 201
    upload_id = created.headers["Location"].rsplit("/", 1)[1].encode()
    while upload_id not in seen:
        chunk = listener.recv(65536)
        assert chunk, "the event stream ended"
        seen += chunk
    assert b'"created"' in seen


def test_a_rate_limit_holds_across_workers(server_factory: Callable[..., ServerProcess]) -> None:
    """One budget per client in Redis, whichever worker answers: a burst of 4 admits 4 requests, not 4 per
    worker (the rate refills one request per 100s, so no refill lands inside the test)."""
    server = server_factory("--workers", "2", "--rate-limit", "0.01", "--rate-burst", "4")
    with ExitStack() as stack:
        socks = [stack.enter_context(raw_connect(server.url)) for _ in range(CONNECTIONS)]
        on_other_workers(server, socks)  # accepted, before any request (a 429 may close its connection)
        statuses = []
        for sock in socks:
            sock.sendall(request_head("HEAD", server.url + "f" * 32, TUS))
            statuses.append(read_response(sock, "HEAD").status)
    assert statuses.count(404) == 4 and statuses.count(429) == CONNECTIONS - 4, statuses


def test_a_killed_worker_is_replaced_and_counters_carry_on(two: ServerProcess) -> None:
    requests_before = sum(metric(two.origin, f'tuskit_worker_requests_total{{worker="{i}"}}') for i in (0, 1))
    old = worker_pids(two)
    victim = min(old)
    os.kill(victim, signal.SIGKILL)
    new = poll(lambda: (pids := worker_pids(two)) - old and len(pids) == 2 and pids, what="a replacement")
    assert victim not in new
    poll(lambda: any(f"(pid {victim})" in line and "SIGKILL" in line for line in two.output), what="a log line")
    for _ in range(CONNECTIONS):  # fresh connections land on both workers: all are answered
        assert requests.get(two.origin + "/healthz", timeout=10).status_code == 200
    assert metric(two.origin, "tuskit_worker_restarts_total") == 1
    assert metric(two.origin, "tuskit_workers") == 2
    requests_after = sum(metric(two.origin, f'tuskit_worker_requests_total{{worker="{i}"}}') for i in (0, 1))
    assert requests_after >= requests_before + CONNECTIONS  # the dead worker's count was kept


def test_sigterm_drains_every_worker(two: ServerProcess, connections: list[socket.socket]) -> None:
    """Each worker's streaming PATCH saves its bytes and answers 503 with its offset; the parent exits 0."""
    writers = on_other_workers(two, connections)
    sent = {}
    for i, sock in enumerate(writers.values()):
        body = os.urandom(1024 * 1024)
        sent[sock] = 100_000 * (i + 1)
        stalled_patch(sock, create(two.url, len(body)).headers["Location"], len(body), body[:sent[sock]])
    total = sum(sent.values())
    poll(lambda: metric(two.origin, "tuskit_bytes_received_total") >= total, what="the bytes, received")
    poll(lambda: metric(two.origin, "tuskit_active_patches") == len(writers), what="a PATCH on each worker")
    pids = worker_pids(two)

    two.proc.send_signal(signal.SIGTERM)
    for sock, count in sent.items():
        answer = read_response(sock, "PATCH")
        assert answer.status == 503
        assert answer.headers["Upload-Offset"] == str(count)
    assert two.proc.wait(60) == 0
    assert all_gone(pids)


def test_a_worker_that_keeps_dying_young_waits_longer_each_time() -> None:
    pauses = [workers.pause_after(n) for n in range(12)]
    assert pauses[0] == 0  # a worker that lived long is replaced at once
    assert pauses[1] > 0 and all(a <= b for a, b in itertools.pairwise(pauses))
    assert pauses[-1] == workers.MAX_PAUSE


def test_sigterm_right_after_start_stops_every_worker_cleanly(two: ServerProcess) -> None:
    pids = worker_pids(two)
    two.proc.send_signal(signal.SIGTERM)
    assert two.proc.wait(30) == 0
    assert all_gone(pids)
