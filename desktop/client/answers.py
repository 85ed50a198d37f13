"""Reading what the server (or the network) answered, in one place for every request we make: the one-line
reason of a refusal, and a failed request in the operating system's words."""

from __future__ import annotations

import re

import requests
import urllib3


def reason_of(resp: requests.Response) -> str:
    """The server's one-line reason; an HTML error page says nothing its reason phrase does not."""
    if resp.headers.get("Content-Type", "").startswith("text/html"):
        return resp.reason or ""
    text = (resp.text or "").strip().splitlines()
    return text[0][:200] if text else resp.reason or ""


def could_not_connect(exc: requests.RequestException) -> bool:
    """Refused, unroutable, unresolvable or timed out while connecting: nothing was sent."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    cause = exc.args[0] if exc.args else None
    return isinstance(exc, requests.ConnectionError) and isinstance(
        getattr(cause, "reason", None), urllib3.exceptions.NewConnectionError)


def describe(exc: requests.RequestException) -> str:
    """The OS's words for it ("Connection refused") rather than urllib3's nested retry story."""
    text = str(exc)
    if m := re.search(r"\[Errno -?\d+\] ([^\"')]+)", text):
        return m.group(1).strip()
    if isinstance(exc, requests.Timeout):
        return "timed out"
    return f"{type(exc).__name__}: {text[:200]}"
