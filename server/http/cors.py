"""CORS in one place: every response, errors included, so browsers (Uppy, tus-js-client) can read them, for
both protocols the endpoint speaks (a preflight never says which one the request will use)."""

from __future__ import annotations

from tuskit import protocol, rufh

ALLOWED_METHODS = "POST, HEAD, PATCH, DELETE, OPTIONS, GET, PUT"  # PUT: the IETF draft creates with it too


def cors_headers(origin: str | None, allowed: tuple[str, ...]) -> dict[str, str]:
    """Headers for a response to a request from `origin`; none when the origin is not allowed."""
    if origin is None:
        return {}
    if "*" in allowed:
        allow = "*"
    elif origin in allowed:
        allow = origin
    else:
        return {}
    headers = {
        "Access-Control-Allow-Origin": allow,
        "Access-Control-Expose-Headers": ", ".join((*protocol.EXPOSED_HEADERS, *rufh.EXPOSED_HEADERS)),
    }
    if allow != "*":
        headers["Vary"] = "Origin"
    return headers


def preflight_headers() -> dict[str, str]:
    return {
        "Access-Control-Allow-Methods": ALLOWED_METHODS,
        "Access-Control-Allow-Headers": ", ".join((*protocol.REQUEST_HEADERS, *rufh.REQUEST_HEADERS)),
        "Access-Control-Max-Age": "86400",
    }

