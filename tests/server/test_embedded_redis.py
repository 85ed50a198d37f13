"""The embedded redis-server: started from a relative data dir, it still finds its own files."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from tuskit.server.redis.embedded import EmbeddedRedis


def test_a_relative_data_dir_works(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # redis-server changes into its --dir; a relative --logfile or socket would then point nowhere
    monkeypatch.chdir(tmp_path)
    with EmbeddedRedis(Path("rel")) as server:
        client = redis.Redis.from_url(server.url)
        client.set("k", "v")
        assert client.get("k") == b"v"
        client.close()
    assert (tmp_path / "rel" / "redis" / "redis.log").is_file()
