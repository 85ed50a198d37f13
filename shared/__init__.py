"""tuskit: resumable uploads over tus 1.0 — a Tornado server and a folder-sync desktop app."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("tuskit")  # pyproject.toml is the one place the version is written
except PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"
