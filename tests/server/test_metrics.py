"""`GET /metrics` in Prometheus text format counts what the process did: requests by status, bytes
received, uploads created/finished/failed, PATCHes streaming now, lock waits."""

from __future__ import annotations

import hashlib
import os
import socket
from urllib.parse import urlsplit

import requests
from tus_calls import create, metric, patch, poll, upload

from support import TUS, ServerProcess

NAMES = ("tuskit_uploads_created_total", "tuskit_uploads_finished_total", "tuskit_uploads_failed_total",
         "tuskit_bytes_received_total", 'tuskit_http_requests_total{code="404"}',
         'tuskit_http_requests_total{code="460"}', "tuskit_lock_waits_total")


def snapshot(origin: str) -> dict[str, float]:
    return {name: metric(origin, name) for name in NAMES}


def test_exposition_format(tus_server: ServerProcess) -> None:
    response = requests.get(tus_server.origin + "/metrics", timeout=10)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    lines = response.text.splitlines()
    for name in ("tuskit_http_requests_total", "tuskit_active_patches", "tuskit_rate_limited_total"):
        assert f"# TYPE {name} {'gauge' if name == 'tuskit_active_patches' else 'counter'}" in lines
    samples = [line for line in lines if not line.startswith("#")]
    assert samples and all(len(line.split()) == 2 and float(line.split()[1]) >= 0 for line in samples)


def test_counters_follow_what_happened(tus_server: ServerProcess) -> None:
    before = snapshot(tus_server.origin)
    data = os.urandom(70_000)
    upload(tus_server.url, data, sha256=hashlib.sha256(data).hexdigest())
    bad = create(tus_server.url, 3, sha256="0" * 64).headers["Location"]
    assert patch(bad, 0, b"abc").status_code == 460
    assert requests.head(tus_server.url + "f" * 32, headers=TUS, timeout=10).status_code == 404
    after = poll(lambda: (s := snapshot(tus_server.origin))["tuskit_uploads_failed_total"] > before[
        "tuskit_uploads_failed_total"] and s)
    delta = {name: after[name] - before[name] for name in NAMES}
    assert delta["tuskit_uploads_created_total"] == 2
    assert delta["tuskit_uploads_finished_total"] == 1
    assert delta["tuskit_uploads_failed_total"] == 1
    assert delta["tuskit_bytes_received_total"] == len(data) + 3
    assert delta['tuskit_http_requests_total{code="404"}'] == 1
    assert delta['tuskit_http_requests_total{code="460"}'] == 1


def test_active_patches_and_lock_waits(tus_server: ServerProcess) -> None:
    body = os.urandom(300_000)
    url = create(tus_server.url, len(body)).headers["Location"]
    waits = metric(tus_server.origin, "tuskit_lock_waits_total")
    parts = urlsplit(url)
    stalled = socket.create_connection((parts.hostname, parts.port), timeout=30)
    try:
        stalled.sendall(f"PATCH {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\nTus-Resumable: 1.0.0\r\n"
                        f"Upload-Offset: 0\r\nContent-Type: application/offset+octet-stream\r\n"
                        f"Content-Length: {len(body)}\r\n\r\n".encode() + body[:1000])
        poll(lambda: metric(tus_server.origin, "tuskit_active_patches") == 1)
        # a HEAD for the same upload has to wait for (and release) the stalled writer's lease
        assert requests.head(url, headers=TUS, timeout=30).status_code == 200
        assert metric(tus_server.origin, "tuskit_lock_waits_total") == waits + 1
        poll(lambda: metric(tus_server.origin, "tuskit_active_patches") == 0)
    finally:
        stalled.close()
