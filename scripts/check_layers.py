#!/usr/bin/env python3
"""Check the layer rules of pyproject.toml's [tool.importlinter] (import-linter) against the code.

import-linter finds modules by walking the installed package's folder, but the source tree maps several
folders onto `tuskit` (package-dir): an editable install has no folder in which tuskit.server sits inside
tuskit. So this installs a plain copy into a temporary directory and lints that.

    python scripts/check_layers.py
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="tuskit-layers-") as tmp:
        pip = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--root-user-action=ignore"]
        subprocess.run([*pip, "--target", tmp, str(ROOT)], check=True)
        env = {**os.environ, "PYTHONPATH": tmp}
        # run from the temporary directory, so the copy, not the source tree, is what `tuskit` means
        return subprocess.run(["lint-imports", "--config", str(ROOT / "pyproject.toml")], cwd=tmp, env=env).returncode


if __name__ == "__main__":
    sys.exit(main())
