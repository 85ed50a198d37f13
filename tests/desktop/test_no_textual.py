"""The engine and `tuskit sync` must work where Textual is not installed: nothing under them imports it."""

from __future__ import annotations

import subprocess
import sys

_PROBE = """
import sys
import tuskit.desktop.engine.engine, tuskit.desktop.cli, tuskit.desktop.progress_log
from tuskit.cli import build_parser
build_parser("sync")
assert "tuskit.desktop.engine.engine" in sys.modules
print("textual" in sys.modules, any(m.startswith("textual.") for m in sys.modules))
"""


def test_engine_and_sync_cli_do_not_import_textual() -> None:
    out = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
