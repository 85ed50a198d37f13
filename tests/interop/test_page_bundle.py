"""The upload page's committed bundle is what scripts/build_page.mjs makes from its sources and the locked npm
packages, and every file the page serves is package data of the wheel."""

from __future__ import annotations

import fnmatch
import json
import subprocess
import tomllib
from pathlib import Path

import pytest

from tuskit.server.http.page import PageAssets

ROOT = Path(__file__).resolve().parents[2]
ASSETS = ROOT / "server" / "http" / "assets"


def _locked(name: str) -> str:
    lock = json.loads((ROOT / "tests" / "interop" / "package-lock.json").read_text())
    version: str = lock["packages"][f"node_modules/{name}"]["version"]
    return version


def test_the_bundle_names_the_locked_versions() -> None:
    first_line = (ASSETS / "page.js").read_text().splitlines()[0]
    assert f"esbuild {_locked('esbuild')} with tus-js-client {_locked('tus-js-client')}" in first_line
    licenses = (ASSETS / "page-licenses.txt").read_text()
    assert f"tus-js-client {_locked('tus-js-client')} (MIT)" in licenses


@pytest.mark.usefixtures("node_packages")
def test_rebuilding_the_bundle_reproduces_the_committed_files(tmp_path: Path) -> None:
    subprocess.run(["node", str(ROOT / "scripts" / "build_page.mjs"), str(tmp_path)], check=True, capture_output=True,
                   timeout=120)
    for name in ("page.js", "page-licenses.txt"):
        assert (tmp_path / name).read_bytes() == (ASSETS / name).read_bytes(), \
            f"{name} is stale: run `node scripts/build_page.mjs` and commit the result"


def test_every_served_file_is_package_data() -> None:
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    shipped = patterns["tuskit.server.http"]
    for name in ["index.html", *PageAssets.load().files]:
        assert any(fnmatch.fnmatch(f"assets/{name}", pattern) for pattern in shipped), name
