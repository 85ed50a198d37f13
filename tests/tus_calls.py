"""Small tus calls over real HTTP (requests), shared by the server feature tests."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import requests

from support import b64, create_upload, patch_upload, poll

T = TypeVar("T")


def create(url: str, length: int, headers: dict[str, str] | None = None, **metadata: str) -> requests.Response:
    """create_upload with metadata given as text keyword arguments."""
    meta = ",".join(f"{k} {b64(v)}" for k, v in metadata.items()) if metadata else None
    return create_upload(url, length, metadata=meta, headers=headers)


patch = patch_upload


def upload(endpoint: str, data: bytes, headers: dict[str, str] | None = None, **metadata: str) -> str:
    """Create and send `data` in one PATCH; returns the upload URL."""
    created = create(endpoint, len(data), headers, **metadata)
    assert created.status_code == 201, created.text
    url = created.headers["Location"]
    done = patch(url, 0, data, headers)
    assert done.status_code == 204, done.text
    return url


def processed_info(url: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    """GET {url}/info until post-processing has finished."""
    def probe() -> dict[str, Any] | None:
        info: dict[str, Any] = requests.get(url + "/info", headers=headers, timeout=10).json()
        return info if info["state"] == "processed" else None
    return poll(probe)


def sse_events(response: requests.Response,
               on_comment: Callable[[str], None] | None = None) -> Iterator[tuple[str, dict[str, Any]]]:
    """(id, event) pairs from a streaming text/event-stream response; comments go to `on_comment`."""
    event_id, data = "", ""
    for line in response.iter_lines(decode_unicode=True):
        if line.startswith(":") and on_comment is not None:
            on_comment(line[1:].strip())
        elif line.startswith("id: "):
            event_id = line[4:]
        elif line.startswith("data: "):
            data = line[6:]
        elif line == "" and data:
            yield event_id, json.loads(data)
            event_id, data = "", ""


def metric(origin: str, name: str, headers: dict[str, str] | None = None) -> float:
    """One sample of /metrics (labels included in `name`, e.g. 'tuskit_http_requests_total{code="429"}')."""
    for line in requests.get(origin + "/metrics", headers=headers, timeout=10).text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return 0.0
