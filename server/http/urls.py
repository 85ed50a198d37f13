"""The public origin of a request (scheme://host) for Location URLs, honouring a reverse proxy's headers.

Only with --behind-proxy: otherwise any client could make us hand out URLs pointing anywhere.
`Forwarded` (RFC 7239) wins over the X-Forwarded-* pair, as proxies that send both mean the same thing.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

_PAIR = re.compile(r'\s*([A-Za-z]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;,\s]*)\s*')
_HOST = re.compile(r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(?::[0-9]{1,5})?")


def _first_forwarded(value: str) -> dict[str, str]:
    """The parameters of the first (client-nearest) element of a Forwarded header."""
    first = value.split(",")[0]
    params: dict[str, str] = {}
    for part in first.split(";"):
        m = _PAIR.fullmatch(part)
        if m:
            params[m.group(1).lower()] = m.group(2).strip('"')
    return params


def public_origin(headers: Mapping[str, str], scheme: str, host: str, trust_proxy: bool) -> str:
    if trust_proxy:
        fwd = _first_forwarded(headers["Forwarded"]) if "Forwarded" in headers else {}
        proto = fwd.get("proto") or headers.get("X-Forwarded-Proto", "").split(",")[0].strip()
        fhost = fwd.get("host") or headers.get("X-Forwarded-Host", "").split(",")[0].strip()
        if proto.lower() in ("http", "https"):
            scheme = proto.lower()
        if fhost and _HOST.fullmatch(fhost):
            host = fhost
    return f"{scheme}://{host}"
