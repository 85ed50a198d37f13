"""tuskit: resumable uploads over tus 1.0 — a Tornado server and a folder-sync desktop app."""

__version__ = "0.1.0"
