"""Bearer tokens mapped to owners (`--tokens FILE`): who is asking, so uploads stay their owner's.

The file holds one `TOKEN OWNER` pair per line (`#` starts a comment). Tokens are kept only as SHA-256
digests and looked up by the digest of what a client presents, so neither a memory dump nor lookup
timing gives a token away.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

_SCHEME = "bearer "


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class TokenTable:
    def __init__(self, owners: dict[str, str]) -> None:
        """`owners`: token -> owner name."""
        self._owners = {_digest(token): owner for token, owner in owners.items()}

    @classmethod
    def load(cls, path: Path) -> TokenTable:
        """Read a tokens file; a malformed line is an error naming the line, not a silent skip."""
        owners: dict[str, str] = {}
        for number, raw in enumerate(Path(path).read_text().splitlines(), start=1):
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            fields = line.split()
            if len(fields) != 2:
                raise ValueError(f"{path}:{number}: expected 'TOKEN OWNER', got {len(fields)} fields")
            token, owner = fields
            if token in owners:
                raise ValueError(f"{path}:{number}: token listed twice")
            owners[token] = owner
        if not owners:
            raise ValueError(f"{path}: no tokens (lines of 'TOKEN OWNER')")
        return cls(owners)

    def owner_of(self, token: str | None) -> str | None:
        """The owner a presented token belongs to, or None."""
        return None if not token else self._owners.get(_digest(token))


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header (scheme case-insensitive)."""
    if authorization and authorization[:len(_SCHEME)].lower() == _SCHEME:
        return authorization[len(_SCHEME):].strip() or None
    return None
