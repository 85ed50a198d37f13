"""Location URLs behind a reverse proxy: trusted headers only when the operator says so."""

from __future__ import annotations

import pytest

from tuskit.server.http.urls import public_origin


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, "http://internal:1080"),
        ({"X-Forwarded-Proto": "https", "X-Forwarded-Host": "up.example.com"}, "https://up.example.com"),
        ({"X-Forwarded-Proto": "https, http", "X-Forwarded-Host": "a.example, b.example"}, "https://a.example"),
        ({"Forwarded": 'for=1.2.3.4;proto=https;host="files.example:8443", for=5.6.7.8'}, "https://files.example:8443"),
        ({"Forwarded": "proto=https;host=f.example", "X-Forwarded-Host": "other.example"}, "https://f.example"),
        ({"X-Forwarded-Proto": "gopher", "X-Forwarded-Host": "bad host/evil"}, "http://internal:1080"),
        ({"X-Forwarded-Host": "[::1]:9000"}, "http://[::1]:9000"),
    ],
)
def test_trusted_proxy_headers_shape_the_origin(headers: dict[str, str], expected: str) -> None:
    assert public_origin(headers, "http", "internal:1080", trust_proxy=True) == expected


def test_proxy_headers_are_ignored_unless_trusted() -> None:
    headers = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "evil.example", "Forwarded": "host=evil.example"}
    assert public_origin(headers, "http", "internal:1080", trust_proxy=False) == "http://internal:1080"
