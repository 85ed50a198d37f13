"""The embedded redis-server: started from a relative data dir, it still finds its own files."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import redis

from tuskit.server.redis.embedded import DataDirInUse, EmbeddedRedis


def test_a_relative_data_dir_works(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # redis-server changes into its --dir; a relative --logfile or socket would then point nowhere
    monkeypatch.chdir(tmp_path)
    with EmbeddedRedis(Path("rel")) as server:
        client = redis.Redis.from_url(server.url)
        client.set("k", "v")
        assert client.get("k") == b"v"
        client.close()
    assert (tmp_path / "rel" / "redis" / "redis.log").is_file()


def test_its_files_are_private(tmp_path: Path) -> None:
    """The AOF holds every upload's metadata and owner: readable by the server's user only, like the
    uploads themselves (0640), whatever the umask, also for files an older version left readable."""
    directory = tmp_path / "data" / "redis"
    directory.mkdir(parents=True)
    (directory / "appendonly.aof").touch(mode=0o644)
    with EmbeddedRedis(tmp_path / "data") as server:
        client = redis.Redis.from_url(server.url)
        client.set("k", "v")
        client.close()
        assert stat.S_IMODE(directory.stat().st_mode) & 0o077 == 0
        files = [p for p in directory.iterdir() if p.is_file()]
        assert {p.name for p in files} >= {"appendonly.aof", "redis.log", "redis.pid"}
        for path in files:
            assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, path.name


def test_a_data_dir_has_one_owner_until_it_stops(tmp_path: Path) -> None:
    with EmbeddedRedis(tmp_path) as first:
        with pytest.raises(DataDirInUse, match=f"another tuskit server \\(pid {os.getpid()}\\) is using"):
            EmbeddedRedis(tmp_path).start()
        with redis.Redis.from_url(first.url) as client:
            assert client.ping()  # the refused one touched nothing
    with EmbeddedRedis(tmp_path) as second, redis.Redis.from_url(second.url) as client:
        assert client.ping()
