"""`GET /healthz` says whether this process can take uploads (Redis reachable, disk above a threshold);
a Redis outage is 503 + Retry-After for clients and the server reconnects by itself; operators' routes
stay reachable whatever --base-path is."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import requests
from storage import Storage
from tus_calls import poll, upload

from tuskit.server.config import ServerConfig
from tuskit.server.redis.embedded import EmbeddedRedis

from support import TUS, ServerProcess, start_server


@pytest.mark.file_store  # the disk check is the file store's
def test_healthy_server_reports_its_checks(tus_server: ServerProcess) -> None:
    response = requests.get(tus_server.origin + "/healthz", timeout=10)
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok" and body["redis"] == "ok" and body["disk"] == "ok"
    assert body["disk_free_bytes"] >= body["disk_free_minimum"] > 0


@pytest.mark.file_store
def test_low_disk_is_unhealthy(server_factory: Callable[..., ServerProcess]) -> None:
    srv = server_factory("--min-free-disk", "1000000TiB")
    response = requests.get(srv.origin + "/healthz", timeout=10)
    assert response.status_code == 503 and response.headers["Retry-After"].isdigit()
    assert response.json()["disk"].startswith("only ")


def test_redis_outage_is_503_and_the_server_reconnects(tmp_path: Path,
                                                       server_factory: Callable[..., ServerProcess]) -> None:
    redis = EmbeddedRedis(tmp_path / "own-redis")
    redis.start()
    try:
        srv = server_factory("--redis-url", redis.url)
        url = upload(srv.url, b"stored before the outage")
        redis.stop()

        health = requests.get(srv.origin + "/healthz", timeout=30)
        assert health.status_code == 503 and health.json()["redis"].startswith("unavailable")
        created = requests.post(srv.url, headers={**TUS, "Upload-Length": "5"}, timeout=30)
        assert created.status_code == 503 and created.headers["Retry-After"].isdigit()
        assert "redis" in created.text and "Traceback" not in "".join(srv.output)

        redis.start()  # same data dir and socket: the state comes back from its append-only file
        poll(lambda: requests.get(srv.origin + "/healthz", timeout=30).status_code == 200, timeout=30)
        assert requests.post(srv.url, headers={**TUS, "Upload-Length": "5"}, timeout=30).status_code == 201
        assert requests.get(url, timeout=10).content == b"stored before the outage"
    finally:
        redis.stop()


def test_ops_routes_survive_a_root_base_path(server_factory: Callable[..., ServerProcess]) -> None:
    srv = server_factory("--base-path", "/", "--no-page")
    origin = srv.url.rstrip("/")
    assert requests.get(origin + "/healthz", timeout=10).status_code == 200
    assert requests.get(origin + "/metrics", timeout=10).text.startswith("# HELP")
    url = upload(srv.url, b"at the root")
    assert url.startswith(origin + "/") and requests.get(url, timeout=10).content == b"at the root"
    assert requests.get(url + "/info", timeout=10).json()["size"] == 11


@pytest.mark.parametrize("base", ["/metrics/", "/healthz/", "/events/"])
def test_base_path_that_would_shadow_an_ops_route_is_refused(base: str) -> None:
    with pytest.raises(ValueError, match="collide"):
        ServerConfig(base_path=base)


def test_a_store_that_cannot_take_bytes_is_unhealthy(server_factory: Callable[..., ServerProcess],
                                                     storage: Storage) -> None:
    """A load balancer must stop sending uploads to a server whose bytes have nowhere to go: its bucket
    went away, or its uploads folder did (an unmounted volume)."""
    srv = server_factory()
    assert requests.get(srv.origin + "/healthz", timeout=10).json()["storage"] == "ok"
    uploads = srv.data_dir / "uploads"
    if storage.kind == "file":
        uploads.rename(uploads.with_name("elsewhere"))
    else:  # the server's prefix in a bucket of its own, which is then deleted
        bucket = "gone-" + storage.new_prefix()
        storage.client().create_bucket(Bucket=bucket)
        srv.stop()
        srv = start_server(srv.data_dir, "--storage", f"s3://{bucket}/x", "--s3-endpoint", storage.endpoint,
                           env=storage.env)
        storage.client().delete_bucket(Bucket=bucket)
    try:
        health = poll(lambda: [r for r in [requests.get(srv.origin + "/healthz", timeout=10)] if r.status_code == 503],
                      timeout=30, what="the store's failure, seen by /healthz")[0]
        assert health.headers["Retry-After"].isdigit()
        assert health.json()["storage"] != "ok" and health.json()["redis"] == "ok", health.json()
    finally:
        if storage.kind == "file":
            uploads.with_name("elsewhere").rename(uploads)
        else:
            srv.stop()
