"""`tuskit server --config FILE`: TOML keys are flag names; a flag beats TUSKIT_*, which beats the file,
which beats the default; unknown keys and bad values stop the server with the key's name."""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import requests

from tuskit.cli import build_parser
from tuskit.server.config_file import ConfigFileError

from support import TUS, ServerProcess

DOCS = Path(__file__).resolve().parents[2] / "docs"


def resolve(argv: list[str]) -> argparse.Namespace:
    args = build_parser("server").parse_args(["server", *argv])
    resolved: argparse.Namespace = args.config_layer.resolve(args)
    return resolved


def test_flags_beat_the_environment_which_beats_the_file_which_beats_defaults(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "etc" / "server.toml"
    config.parent.mkdir()
    config.write_text('max-size = "10MiB"\nport = 1234\nhost = "0.0.0.0"\ncors-origins = ["https://a.example", '
                      '"https://b.example"]\nbehind-proxy = true\nthumbnail-sizes = [1024, 128]\n'
                      'data-dir = "data"\nexpire-after = 90\n')
    monkeypatch.setenv("TUSKIT_PORT", "2222")  # before the parser is built: the environment is its default
    args = resolve(["--config", str(config), "--max-size", "5MiB"])
    assert args.max_size == 5 * 1024**2  # the flag
    assert args.port == 2222  # the environment
    assert args.host == "0.0.0.0" and args.behind_proxy is True  # the file
    assert args.cors_origins == ("https://a.example", "https://b.example")
    assert args.thumbnail_sizes == (128, 1024) and args.expire_after == 90.0
    assert args.data_dir == config.parent / "data"  # relative to the file, not to where the server starts
    assert args.network_timeout == 60.0 and args.tokens is None  # defaults
    assert resolve(["--config", str(config), "--behind-proxy"]).behind_proxy is True

    monkeypatch.setenv("TUSKIT_CONFIG", str(config))  # the file itself may come from the environment
    assert resolve([]).host == "0.0.0.0"


def test_without_a_file_nothing_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TUSKIT_CONFIG", raising=False)
    args = resolve(["--port", "0"])
    assert (args.port, args.host, args.base_path, args.config) == (0, "127.0.0.1", "/files/", None)


@pytest.mark.parametrize(("text", "error"), [
    ('max_size = "1GiB"\n', "unknown key 'max_size' (did you mean 'max-size'?)"),
    ('colour = "blue"\n', "unknown key 'colour'"),
    ('config = "other.toml"\n', "unknown key 'config'"),
    ('max-size = "lots"\n', "bad value for 'max-size': not a size: 'lots'"),
    ('port = "eighty"\n', "bad value for 'port'"),
    ('behind-proxy = "yes"\n', "bad value for 'behind-proxy': expected true or false"),
    ('host = 127\n', "bad value for 'host': expected a string"),
    ('[server]\nport = 1\n', "unknown key 'server'"),
    ('port = \n', "Invalid value"),
])
def test_mistakes_name_the_key(tmp_path: Path, text: str, error: str) -> None:
    config = tmp_path / "server.toml"
    config.write_text(text)
    with pytest.raises(ConfigFileError) as raised:
        resolve(["--config", str(config)])
    assert error in str(raised.value) and str(config) in str(raised.value)


def test_the_documented_example_is_valid() -> None:
    args = resolve(["--config", str(DOCS / "server.toml")])
    assert args.behind_proxy is True and args.max_size == 20 * 1024**3
    assert args.accept == ("image/*", "application/pdf") and args.rate_limit == 20.0


def test_a_server_runs_from_its_file(server_factory: Callable[..., ServerProcess], tmp_path: Path) -> None:
    config = tmp_path / "server.toml"
    config.write_text('base-path = "/up/"\nmax-size = "1MiB"\npublic-listing = true\n')
    server = server_factory("--config", str(config))
    assert server.url.endswith("/up/")
    assert requests.options(server.url, timeout=10).headers["Tus-Max-Size"] == str(1024**2)
    assert requests.post(server.url, headers={**TUS, "Upload-Length": str(2 * 1024**2)}, timeout=10).status_code == 413
    assert requests.get(server.url.removesuffix("/up/") + "/uploads", timeout=10).status_code == 200


def test_a_bad_file_stops_the_server_with_the_key(tmp_path: Path) -> None:
    config = tmp_path / "server.toml"
    config.write_text('max-szie = "1GiB"\n')
    done = subprocess.run([sys.executable, "-m", "tuskit", "server", "--config", str(config), "--port", "0",
                           "--data-dir", str(tmp_path / "data")], capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert f"tuskit server: {config}: unknown key 'max-szie' (did you mean 'max-size'?)" in done.stderr
