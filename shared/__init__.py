"""tuskit: resumable uploads over tus 1.0 — a Tornado server and a folder-sync desktop app."""

from typing import Any


def __getattr__(name: str) -> Any:
    """`tuskit.__version__`, read from the installed distribution's metadata (pyproject.toml is the one place
    it is written) when asked for: importlib.metadata costs ~0.1 s, which every command would pay at start."""
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("tuskit")
        except PackageNotFoundError:  # imported from a source tree that was never installed
            return "0+unknown"
    raise AttributeError(f"module 'tuskit' has no attribute {name!r}")
