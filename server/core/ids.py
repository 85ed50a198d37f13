"""Upload IDs: made by the server, checked against one strict pattern before any lookup or path.

Nothing a client sends is ever joined into a path; an ID that does not match is simply "not found".
"""

from __future__ import annotations

import re
import secrets
from urllib.parse import urlsplit

from tuskit import errors

_ID = re.compile(r"[0-9a-f]{32}")


def new_id() -> str:
    return secrets.token_hex(16)


def is_valid(upload_id: str) -> bool:
    return bool(_ID.fullmatch(upload_id))


def check(upload_id: str) -> str:
    """The ID itself if well-formed, else 404 (as for any unknown upload)."""
    if not is_valid(upload_id):
        raise errors.NOT_FOUND()
    return upload_id


def id_from_url(url: str, base_path: str) -> str:
    """The upload ID named by a partial's URL in Upload-Concat (absolute URL or path under base_path)."""
    path = urlsplit(url).path
    if not path.startswith(base_path) or not is_valid(path[len(base_path):]):
        raise errors.INVALID_CONCAT(f"Upload-Concat names {url!r}, which is not an upload of this server")
    return path[len(base_path):]
