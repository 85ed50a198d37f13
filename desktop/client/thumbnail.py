"""Fetch an upload's thumbnail from the server, waiting while the server is still making it.

Blocking HTTP: front ends call it (through `Engine.thumbnail`) from a thread, never on a UI loop. Turning
the bytes into something to look at is the front end's business (`tuskit.desktop.ui.thumbnail`).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import requests

from .headers import auth_headers, parse_retry_after

THUMBNAIL_SIZE = 256
MAX_WAITS = 5
"""How many `Retry-After` answers (thumbnail still being made) to sit out before giving up."""
MAX_WAIT_SECONDS = 10.0


@dataclass(frozen=True)
class Missing:
    """Why there is no thumbnail to show; the detail view prints it in place of the picture."""

    reason: str


def thumbnail_url(upload_url: str, size: int = THUMBNAIL_SIZE) -> str:
    return f"{upload_url.rstrip('/')}/thumbnail?size={size}"


def fetch_thumbnail(upload_url: str, token: str | None, cancelled: threading.Event,
                    size: int = THUMBNAIL_SIZE, timeout: float = 10.0) -> bytes | Missing:
    """The thumbnail's bytes, waiting out `Retry-After` while the server is still making it."""
    headers = auth_headers(token)
    url = thumbnail_url(upload_url, size)
    for _ in range(MAX_WAITS + 1):
        try:
            response = requests.get(url, headers=headers, timeout=timeout)
        except requests.RequestException as exc:
            return Missing(f"server unreachable: {exc.__class__.__name__}")
        if response.status_code == 200:
            return response.content
        reason = response.text.strip().splitlines()[0] if response.text.strip() else response.reason
        wait = parse_retry_after(response.headers.get("Retry-After"))
        if wait is None:
            return Missing(f"{response.status_code}: {reason}")
        if cancelled.wait(min(wait, MAX_WAIT_SECONDS)):
            return Missing("cancelled")
    return Missing("the server is still making the thumbnail; open the details again later")
