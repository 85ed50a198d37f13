"""Header values every request of ours sends or reads, in one place for the tus transport and the
thumbnail fetch alike: the bearer token we send, the `Retry-After` the server sends back."""

from __future__ import annotations

import time
from email.utils import parsedate_to_datetime


def auth_headers(token: str | None) -> dict[str, str]:
    """`Authorization: Bearer <token>`, or nothing for a server without tokens."""
    return {"Authorization": f"Bearer {token}"} if token else {}


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """`Retry-After` as seconds from now: delta-seconds or an HTTP date; None if absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None
    return max(0.0, when - (time.time() if now is None else now))
