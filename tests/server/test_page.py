"""The upload page's HTTP side (its browser side is tests/interop/test_page_browser.py): a strict
Content-Security-Policy, versioned assets, off with --no-page, and no base path that would shadow it."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
import requests

from tuskit.server.config import ServerConfig

from support import ServerProcess


def test_the_page_and_its_assets_are_served_with_a_strict_policy(
        server_factory: Callable[..., ServerProcess]) -> None:
    server = server_factory()
    page = requests.get(server.origin + "/", timeout=10)
    assert page.status_code == 200 and page.headers["Content-Type"] == "text/html; charset=utf-8"
    policy = page.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "script-src 'self'" in policy and "connect-src 'self'" in policy
    assert "unsafe" not in policy and "http" not in page.text.replace('href="/', "").split("<body")[0]
    config = json.loads(page.text.split('data-config="')[1].split('"')[0].replace("&quot;", '"'))
    assert config == {"endpoint": "/files/", "tokens": False, "listing": False, "chunkSize": 32 * 1024 * 1024}
    script = page.text.split('src="')[1].split('"')[0]
    asset = requests.get(server.origin + script, timeout=10)
    assert asset.headers["Content-Type"].startswith("text/javascript") and "immutable" in asset.headers["Cache-Control"]
    assert requests.get(server.origin + "/page/page.js", timeout=10).headers["Cache-Control"] == "no-cache"
    assert requests.get(server.origin + "/page/app.js", timeout=10).status_code == 404

    off = server_factory("--no-page")
    assert requests.get(off.origin + "/", timeout=10).status_code == 404
    assert requests.get(off.origin + "/page/page.js", timeout=10).status_code == 404


@pytest.mark.parametrize("base", ["/uploads/", "/page/"])
def test_base_paths_that_would_shadow_the_front_doors_are_refused(base: str) -> None:
    with pytest.raises(ValueError, match="collide"):
        ServerConfig(base_path=base)


def test_a_root_base_path_needs_the_page_off() -> None:
    with pytest.raises(ValueError, match="upload page at /: pass --no-page"):
        ServerConfig(base_path="/")
    assert ServerConfig(base_path="/", page=False).base_path == "/"
