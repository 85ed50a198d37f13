"""Signed download links: an HMAC over (upload id, expiry) lets anyone holding the URL download one
finished upload until it expires, without a token. Used by `tuskit sign` and checked by the server.

The secret is `--signing-secret` or, by default, 32 random bytes created once in the data dir, which
every process sharing that dir (scale-out) and the `tuskit sign` command read alike.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import re
import secrets
from pathlib import Path
from urllib.parse import urlencode

from tuskit import errors

SECRET_FILE = "signing.key"
EXPIRES_ARG = "expires"
SIGNATURE_ARG = "signature"
_EXPIRES = re.compile(r"[0-9]{1,12}")  # unix seconds in ASCII digits (str.isdigit() also takes "²")


def data_dir_secret(data_dir: Path) -> bytes:
    """The data dir's signing secret, created on first use; a complete file is linked into place, so
    processes starting together all read the one secret that won."""
    path = Path(data_dir) / SECRET_FILE
    if not path.exists():
        tmp = path.with_name(f"{SECRET_FILE}.{secrets.token_hex(4)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
        tmp.unlink()
    return path.read_text().strip().encode()


def _mac(secret: bytes, upload_id: str, expires: int) -> str:
    return hmac.new(secret, f"{upload_id}\n{expires}".encode(), hashlib.sha256).hexdigest()


def signed_query(secret: bytes, upload_id: str, expires: int) -> str:
    """The query string that makes `{base}{id}` downloadable until `expires` (unix seconds)."""
    return urlencode({EXPIRES_ARG: expires, SIGNATURE_ARG: _mac(secret, upload_id, expires)})


def check(secret: bytes, upload_id: str, expires: str, signature: str, now: float) -> None:
    """403 unless the signature is ours for this upload and expiry, and the expiry is still ahead."""
    expected = _mac(secret, upload_id, int(expires)).encode() if _EXPIRES.fullmatch(expires) else b""
    if not expected or not hmac.compare_digest(expected, signature.encode()):
        raise errors.FORBIDDEN("invalid download signature")
    if int(expires) <= now:
        raise errors.FORBIDDEN("download link expired")
