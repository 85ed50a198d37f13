"""The server's list of our uploads, page after page: `GET /uploads?limit=N&cursor=C` on the server's
origin (beside the tus endpoint, not under it), with our bearer token, newest first. Each page answers
`{"uploads": [...], "next": "<cursor>" | null}`; an item carries id, url, state, size, offset, filename,
relativePath, sha256, type, created, finished and thumbnail, and is passed on as the server sent it.

Blocking HTTP, for `tuskit ls`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import requests

from .answers import could_not_connect, describe, reason_of
from .headers import auth_headers

PAGE = 100
"""Uploads asked for per request; the server may send fewer."""


class ListingError(Exception):
    """Why the listing could not be read (one line, for the command's error message)."""


def listing_url(server_url: str) -> str:
    """`http://host:1080/files/` -> `http://host:1080/uploads`."""
    parts = urlsplit(server_url)
    return f"{parts.scheme}://{parts.netloc}/uploads"


def list_uploads(server_url: str, token: str | None, limit: int | None = None, page_size: int = PAGE,
                 timeout: float = 30.0) -> Iterator[dict[str, Any]]:
    """Every upload the token owns, newest first, following `next` until the last page or `limit` items."""
    url = listing_url(server_url)
    cursor: str | None = None
    given = 0
    with requests.Session() as http:
        while True:
            page = page_size if limit is None else min(page_size, limit - given)
            params: dict[str, str | int] = {"limit": page, **({"cursor": cursor} if cursor else {})}
            body = _page(http, url, params, token, timeout)
            for item in body["uploads"]:
                yield item
                given += 1
                if limit is not None and given >= limit:
                    return
            following = body.get("next")
            if not following or not body["uploads"]:
                return
            if following == cursor:
                raise ListingError(f"{url}: the server sent the same page cursor twice")
            cursor = following


def _page(http: requests.Session, url: str, params: dict[str, str | int], token: str | None,
          timeout: float) -> dict[str, Any]:
    try:
        resp = http.get(url, params=params, headers=auth_headers(token), timeout=timeout)
    except requests.RequestException as exc:
        prefix = "cannot connect to" if could_not_connect(exc) else "no answer from"
        raise ListingError(f"{prefix} {url}: {describe(exc)}") from exc
    if resp.status_code == 404:
        raise ListingError(f"{url}: 404 {reason_of(resp)} (this server has no upload listing)")
    if resp.status_code != 200:
        raise ListingError(f"{url}: {resp.status_code} {reason_of(resp)}")
    try:
        body = resp.json()
    except ValueError:
        raise ListingError(f"{url}: the answer is not JSON") from None
    if not isinstance(body, dict) or not isinstance(body.get("uploads"), list):
        raise ListingError(f"{url}: the answer has no \"uploads\" list")
    return body
