"""How an upload attempt ends when it does not succeed: the failure kinds the engine's policy decides on,
and the two ways the engine itself stops an attempt.

The transport raises these; the engine's pure policy reads them. They live apart from the transport so
that reading them does not import requests or tuspy.
"""

from __future__ import annotations

# UploadError kinds, which the engine maps to policy
UNREACHABLE = "unreachable"  # no connection at all (offline, asleep, server down): wait for the server
NETWORK = "network"  # a connection that broke or timed out mid-request
RATE_LIMITED = "rate-limited"  # 429 / 503: the whole server wants us to wait
CHECKSUM = "checksum"  # 460: the bytes the server got do not hash to what we declared
GONE = "gone"  # 404 / 410 on an upload URL: expired or failed on the server; start over
RETRYABLE = "retryable"  # 409 / 423 / other 5xx: try again after a backoff
FATAL = "fatal"  # any other 4xx: trying again will not help


class UploadError(Exception):
    def __init__(self, kind: str, reason: str, status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason
        self.status = status
        self.retry_after = retry_after
        # a PATCH refused by the rate limit (429) reached nothing: the server still has exactly this offset
        self.exact_offset: int | None = None


class Cancelled(Exception):
    """The engine asked this attempt to stop (pause, remove, shutdown)."""


class FileChanged(Exception):
    """The file no longer matches the version being uploaded."""
