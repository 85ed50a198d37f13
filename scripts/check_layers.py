#!/usr/bin/env python3
"""Check the layer rules of pyproject.toml's [tool.importlinter] (import-linter) against the code.

import-linter finds modules by walking the installed package's folder, but the source tree maps several
folders onto `tuskit` (package-dir): an editable install has no folder in which tuskit.server sits inside
tuskit. So this installs a plain copy into a temporary directory and lints that. The copy is built from
a fresh copy of the sources: setuptools reuses ./build, where modules moved away since would linger.

    python scripts/check_layers.py
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ("pyproject.toml", "README.md", "shared", "server", "desktop")


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="tuskit-layers-") as tmp:
        src, site = Path(tmp) / "src", Path(tmp) / "site"
        src.mkdir()
        for name in SOURCES:
            if (ROOT / name).is_dir():
                shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy2(ROOT / name, src / name)
        pip = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--root-user-action=ignore"]
        subprocess.run([*pip, "--target", str(site), str(src)], check=True)
        env = {**os.environ, "PYTHONPATH": str(site)}
        # run from the installed copy, so it, not the source tree, is what `tuskit` means
        lint = ["lint-imports", "--config", str(ROOT / "pyproject.toml")]
        return subprocess.run(lint, cwd=site, env=env).returncode


if __name__ == "__main__":
    sys.exit(main())
