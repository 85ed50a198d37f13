"""The server's processes under faults (issue 9): a second server on the same data dir, an embedded Redis
killed with -9 (restarted, or the server exits non-zero so a service manager restarts it), and start-up
failures that are one line and a non-zero exit, never a traceback or a server on the wrong port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import requests
from tus_calls import metric, poll, upload

from support import TUS, ServerProcess, free_port, raw_connect, start_server


def run_cli(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """`tuskit server ARGS` that is expected to give up at start: its output and exit code. A server that
    starts instead is killed at the timeout and the test fails on its exit code."""
    cmd = [sys.executable, "-m", "tuskit", "server", "--host", "127.0.0.1", *args]
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        out = (exc.stdout or b"").decode() if isinstance(exc.stdout, bytes) else exc.stdout or ""
        return subprocess.CompletedProcess(cmd, -1, out, "")


def assert_one_line_failure(done: subprocess.CompletedProcess[str], *words: str) -> None:
    output = done.stdout + done.stderr
    assert done.returncode not in (0, -1), output  # -1: it was still running (it started after all)
    assert "Traceback" not in output, output
    errors = [line for line in output.splitlines() if line.startswith("tuskit server: ")]
    assert len(errors) == 1, output
    for word in words:
        assert word in errors[0], output


def redis_pid(data_dir: Path) -> int | None:
    """The embedded redis's pid, None while it has none (between a death and its restart)."""
    try:
        return int((data_dir / "redis" / "redis.pid").read_text())
    except (FileNotFoundError, ValueError):
        return None


def healthy(server: ServerProcess) -> bool:
    try:
        return requests.get(server.origin + "/healthz", timeout=5).status_code == 200
    except requests.ConnectionError:
        return False


def test_a_second_server_on_the_same_data_dir_is_refused_and_the_first_keeps_serving(
    server_factory: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    port = str(free_port())
    first = server_factory("--port", port, data_dir=data_dir)
    url = upload(first.url, b"before the second server")

    second = run_cli("--port", port, "--data-dir", str(data_dir))
    assert_one_line_failure(second, f"another tuskit server (pid {first.proc.pid}) is using {data_dir}")

    assert first.proc.poll() is None
    assert healthy(first)
    assert requests.get(url, timeout=10).content == b"before the second server"
    assert requests.post(first.url, headers={**TUS, "Upload-Length": "1"}, timeout=10).status_code == 201


def test_a_redis_left_by_a_killed_server_is_stale_and_replaced(
    server_factory: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    """Only a Redis whose owner is gone is stale: after kill -9 of the server, the next one starts."""
    data_dir = tmp_path / "data"
    first = server_factory(data_dir=data_dir)
    url = upload(first.url, b"kept across the crash")
    first.kill()
    again = server_factory(data_dir=data_dir)
    assert requests.get(again.url + url.rsplit("/", 1)[1], timeout=10).content == b"kept across the crash"


@pytest.mark.parametrize("workers", ["1", "2"])
def test_an_embedded_redis_killed_with_9_is_restarted(
    server_factory: Callable[..., ServerProcess], tmp_path: Path, workers: str
) -> None:
    """By the server's only process, or by the parent of its workers."""
    data_dir = tmp_path / "data"
    server = server_factory("--workers", workers, data_dir=data_dir)
    url = upload(server.url, b"stored before redis died")
    dead = redis_pid(data_dir)
    assert dead is not None
    os.kill(dead, signal.SIGKILL)

    poll(lambda: redis_pid(data_dir) not in (dead, None) and healthy(server), timeout=20, what="redis restarted")
    assert any("restart" in line and "redis" in line for line in server.output), "".join(server.output)
    assert requests.get(url, timeout=10).content == b"stored before redis died"
    assert upload(server.url, b"and after")
    assert server.proc.poll() is None


def failing_redis_after_first_start(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """A redis-server that runs once; any later start fails (its binary is a script that checks a file)."""
    from tuskit.server.redis.embedded import redis_server_binary

    broken = tmp_path / "redis-broken"
    wrapper = tmp_path / "redis-server"
    wrapper.write_text(f'#!/bin/sh\nif [ -e "{broken}" ]; then echo "cannot start" >&2; exit 1; fi\n'
                       f'exec "{redis_server_binary()}" "$@"\n')
    wrapper.chmod(0o755)
    return {"TUSKIT_REDIS_SERVER": str(wrapper)}, broken


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_redis_that_cannot_come_back_ends_the_server_non_zero(
    server_factory: Callable[..., ServerProcess], tmp_path: Path, workers: str
) -> None:
    env, broken = failing_redis_after_first_start(tmp_path)
    data_dir = tmp_path / "data"
    server = server_factory("--workers", workers, data_dir=data_dir, env=env)
    broken.touch()
    pid = redis_pid(data_dir)
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    assert server.proc.wait(60) not in (0, None)
    assert "Traceback" not in "".join(server.output)
    assert any("could not be restarted" in line for line in server.output), "".join(server.output)


def test_port_in_use_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = run_cli("--port", str(port), "--data-dir", str(tmp_path / "data"))
    assert_one_line_failure(done, str(port))
    # the embedded redis it started is gone with it: the data dir is free for the next server
    assert start_server(tmp_path / "data").stop() == 0


def test_a_port_served_by_workers_is_in_use_for_another_server(
    server_factory: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    """Workers listen with SO_REUSEPORT, which would let a second server with workers join their port and
    take half of its connections: the second server must find the port in use."""
    port = str(free_port())
    first = server_factory("--port", port, "--workers", "2")
    done = run_cli("--port", port, "--workers", "2", "--data-dir", str(tmp_path / "other"))
    assert_one_line_failure(done, f"127.0.0.1:{port}", "in use")
    assert healthy(first)


def test_an_unreachable_redis_url_is_one_line(tmp_path: Path) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    done = run_cli("--port", "0", "--data-dir", str(tmp_path / "data"), "--redis-url", url)
    assert_one_line_failure(done, url)


def test_a_data_dir_that_cannot_be_created_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("not a directory")
    data_dir = tmp_path / "a-file" / "data"
    done = run_cli("--port", "0", "--data-dir", str(data_dir))
    assert_one_line_failure(done, str(data_dir))


@pytest.mark.parametrize("port", ["99999", "-1"])
def test_a_port_out_of_range_is_an_error(tmp_path: Path, port: str) -> None:
    done = run_cli("--port", port, "--data-dir", str(tmp_path / "data"), timeout=20)
    assert_one_line_failure(done, "--port", port)


def test_a_lease_orphaned_by_a_redis_outage_is_released_for_another_process(
    server_factory: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    """A PATCH that a Redis outage ended could not release its lease; its process drops the lease at its
    own next acquire, and must also drop it when another process (or worker) asks for the upload."""
    from faults import tus_ops
    from faults.redis_process import RedisProcess

    redis = RedisProcess(tmp_path / "redis")
    redis.start()
    try:
        a = server_factory("--redis-url", redis.url, "--workers", "1")
        b = server_factory("--redis-url", redis.url, "--workers", "1")
        body = os.urandom(1024 * 1024)
        url = tus_ops.create(a.url, tus_ops.Source(body))
        sock = raw_connect(url)
        try:
            sock.sendall(tus_ops.patch_head(url, 0, len(body)) + body[:1000])
            poll(lambda: metric(a.origin, "tuskit_active_patches") == 1)
            redis.stop()
            sock.sendall(body[1000:])
            assert (response := tus_ops.answer(sock)) is not None and response.status == 503
        finally:
            sock.close()
        redis.start()  # with the lease, which has most of its 10s to live
        poll(lambda: healthy(a) and healthy(b), what="both servers back on redis")
        head = requests.head(b.url + url.rsplit("/", 1)[1], headers=TUS, timeout=30)
        assert head.status_code == 200, head.status_code  # not 423 after waiting 5s for the lease
    finally:
        redis.stop()
